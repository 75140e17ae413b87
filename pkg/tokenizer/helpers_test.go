package tokenizer

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// modelPath is the path of a file in the shared test-model directory
// ($SEMANTIC_MODELS_DIR, else ../shared/models beside the directory holding
// go.work) and whether it exists.
func modelPath(name string) (string, bool) {
	dir := os.Getenv("SEMANTIC_MODELS_DIR")
	if dir == "" {
		wd, _ := os.Getwd()
		for d := wd; d != "" && d != filepath.Dir(d); d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
				dir = filepath.Join(d, "..", "shared", "models")
				break
			}
		}
	}
	p := filepath.Join(dir, name)
	_, err := os.Stat(p)
	return p, err == nil
}

// modelFile is modelPath for a test that needs the file: a missing file
// skips the test, or fails it when CI=true (CI must not pass by skipping
// the tests against the reference).
func modelFile(t testing.TB, name string) string {
	t.Helper()
	p, ok := modelPath(name)
	if !ok {
		if os.Getenv("CI") == "true" {
			t.Fatalf("required test model %s missing (%s)", name, p)
		}
		t.Skipf("test model %s not found (%s)", name, p)
	}
	return p
}

// referenceCase is one case of stories260K_greedy_reference.json: the
// prompt and the ids llama2.c's run.c encoded it to (BOS first).
type referenceCase struct {
	PromptText     string `json:"prompt_text"`
	PromptTokenIDs []int  `json:"prompt_token_ids"`
	StdoutText     string `json:"stdout_text"`
}

func referenceCases(t testing.TB) []referenceCase {
	t.Helper()
	data, err := os.ReadFile(modelFile(t, "stories260K_greedy_reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		Cases []referenceCase `json:"cases"`
	}
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatal(err)
	}
	if len(ref.Cases) == 0 {
		t.Fatal("no reference cases")
	}
	return ref.Cases
}

// tok512 is llama2.c's stories tokenizer.bin through the legacy path.
func tok512(t testing.TB) *SentencePiece {
	t.Helper()
	tok, err := LoadSentencePiece(modelFile(t, "tok512.bin"), 512)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// storiesGGUFVocab is the vocabulary in stories260K.gguf's metadata.
func storiesGGUFVocab(t testing.TB) SPMVocab {
	t.Helper()
	meta, err := readGGUFMeta(modelFile(t, "stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := meta["tokenizer.ggml.model"].(string); m != "llama" {
		t.Fatalf("tokenizer.ggml.model %q", m)
	}
	v := SPMVocab{BOS: -1, EOS: -1, UNK: -1, PAD: -1, AddBOS: true, AddSpacePrefix: true}
	var ok bool
	if v.Tokens, ok = meta["tokenizer.ggml.tokens"].([]string); !ok {
		t.Fatal("no tokenizer.ggml.tokens")
	}
	v.Scores, _ = meta["tokenizer.ggml.scores"].([]float32)
	v.Types, _ = meta["tokenizer.ggml.token_type"].([]int32)
	for key, dst := range map[string]*int{"bos_token_id": &v.BOS, "eos_token_id": &v.EOS, "unknown_token_id": &v.UNK, "padding_token_id": &v.PAD} {
		if id, ok := meta["tokenizer.ggml."+key].(uint32); ok && id != math.MaxUint32 {
			*dst = int(id)
		}
	}
	if b, ok := meta["tokenizer.ggml.add_bos_token"].(bool); ok {
		v.AddBOS = b
	}
	if b, ok := meta["tokenizer.ggml.add_space_prefix"].(bool); ok {
		v.AddSpacePrefix = b
	}
	return v
}

func storiesGGUF(t testing.TB) *SentencePiece {
	t.Helper()
	tok, err := NewSentencePiece(storiesGGUFVocab(t))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// readGGUFMeta reads the key-value metadata of a GGUF file: just enough of
// the format for the tokenizer keys, so these tests do not depend on the
// gguf package. Layout (little-endian): "GGUF", u32 version, u64 tensor
// count, u64 kv count, then per kv: u64-length string key, u32 type, value.
// Arrays are u32 element type, u64 count, elements. String arrays become
// []string, float32 arrays []float32, int32 arrays []int32, others []any.
func readGGUFMeta(path string) (map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r := &ggufReader{b: data}
	if string(r.next(4)) != "GGUF" {
		return nil, fmt.Errorf("%s: not a GGUF file", path)
	}
	if v := r.u32(); v < 2 || v > 3 {
		return nil, fmt.Errorf("%s: GGUF version %d", path, v)
	}
	r.u64() // tensors
	n := r.u64()
	meta := map[string]any{}
	for i := uint64(0); i < n && r.err == nil; i++ {
		key := r.str()
		meta[key] = r.value(r.u32())
	}
	if r.err != nil {
		return nil, fmt.Errorf("%s: %w", path, r.err)
	}
	return meta, nil
}

type ggufReader struct {
	b   []byte
	off int
	err error
}

func (r *ggufReader) next(n int) []byte {
	if r.err != nil || n < 0 || len(r.b)-r.off < n {
		if r.err == nil {
			r.err = fmt.Errorf("truncated at offset %d (need %d bytes)", r.off, n)
		}
		return make([]byte, max(n, 0))
	}
	r.off += n
	return r.b[r.off-n : r.off]
}

func (r *ggufReader) u32() uint32 { return binary.LittleEndian.Uint32(r.next(4)) }
func (r *ggufReader) u64() uint64 { return binary.LittleEndian.Uint64(r.next(8)) }
func (r *ggufReader) str() string {
	n := r.u64()
	if n > uint64(len(r.b)) {
		r.err = fmt.Errorf("string of %d bytes at offset %d", n, r.off)
		return ""
	}
	return string(r.next(int(n)))
}

func (r *ggufReader) value(typ uint32) any {
	switch typ {
	case 0:
		return r.next(1)[0]
	case 1:
		return int8(r.next(1)[0])
	case 2:
		return binary.LittleEndian.Uint16(r.next(2))
	case 3:
		return int16(binary.LittleEndian.Uint16(r.next(2)))
	case 4:
		return r.u32()
	case 5:
		return int32(r.u32())
	case 6:
		return math.Float32frombits(r.u32())
	case 7:
		return r.next(1)[0] != 0
	case 8:
		return r.str()
	case 9:
		et, n := r.u32(), r.u64()
		if n > uint64(len(r.b)-r.off) { // every element is at least a byte
			r.err = fmt.Errorf("array of %d elements at offset %d", n, r.off)
			return nil
		}
		switch et {
		case 8:
			out := make([]string, n)
			for i := range out {
				out[i] = r.str()
			}
			return out
		case 6:
			out := make([]float32, n)
			for i := range out {
				out[i] = math.Float32frombits(r.u32())
			}
			return out
		case 5:
			out := make([]int32, n)
			for i := range out {
				out[i] = int32(r.u32())
			}
			return out
		}
		out := make([]any, n)
		for i := range out {
			out[i] = r.value(et)
		}
		return out
	case 10:
		return r.u64()
	case 11:
		return int64(r.u64())
	case 12:
		return math.Float64frombits(r.u64())
	}
	r.err = fmt.Errorf("unknown GGUF value type %d at offset %d", typ, r.off)
	return nil
}

// quadratic is llama2.c's encoder as this package had it before the
// priority queue (a copy of run.c's encode()): the baseline that the new
// encoder must match id for id, and the "old" side of the benchmarks.
type quadratic struct {
	pieces [][]byte
	scores []float32
	lookup map[string]int
	byteID [256]int
	bos    int
}

func newQuadratic(pieces []string, scores []float32) *quadratic {
	q := &quadratic{pieces: make([][]byte, len(pieces)), scores: scores, lookup: map[string]int{}, bos: SPBOS}
	for i := range q.byteID {
		q.byteID[i] = -1
	}
	for i, p := range pieces {
		q.pieces[i] = []byte(p)
		if _, dup := q.lookup[p]; !dup {
			q.lookup[p] = i
		}
		if b, ok := parseBytePiece(p); ok && q.byteID[b] < 0 {
			q.byteID[b] = i
		}
	}
	return q
}

// quadraticFrom rebuilds the baseline from a tokenizer made by
// ParseSentencePiece (spaces as ' ').
func quadraticFrom(t *SentencePiece) *quadratic {
	scores := make([]float32, len(t.pieces))
	copy(scores, t.scores)
	return newQuadratic(t.pieces, scores)
}

func (t *quadratic) encode(text string, bos bool) []int {
	var ids []int
	if bos {
		ids = append(ids, t.bos)
	}
	start := len(ids)
	if text != "" {
		if id, ok := t.lookup[" "]; ok {
			ids = append(ids, id)
		}
	}
	for i := 0; i < len(text); {
		_, n := utf8.DecodeRuneInString(text[i:])
		if id, ok := t.lookup[text[i:i+n]]; ok {
			ids = append(ids, id)
		} else {
			for _, b := range []byte(text[i : i+n]) {
				if id := t.byteID[b]; id >= 0 {
					ids = append(ids, id)
				} else {
					ids = append(ids, SPUnk)
				}
			}
		}
		i += n
	}
	var buf []byte
	for {
		best, bestID, bestScore := -1, -1, float32(-1e10)
		for i := start; i+1 < len(ids); i++ {
			buf = append(append(buf[:0], t.pieces[ids[i]]...), t.pieces[ids[i+1]]...)
			if id, ok := t.lookup[string(buf)]; ok && t.scores[id] > bestScore {
				best, bestID, bestScore = i, id, t.scores[id]
			}
		}
		if best < 0 {
			break
		}
		ids[best] = bestID
		ids = append(ids[:best+1], ids[best+2:]...)
	}
	return ids
}

// randomText builds n atoms of text that exercise the tokenizer: words,
// runs of spaces, leading and trailing spaces, punctuation, newlines,
// multi-byte characters (in the vocabulary and not), U+2581 itself,
// special-token strings and a few invalid bytes when invalid is set.
func randomText(rng *rand.Rand, n int, invalid bool) string {
	atoms := []string{
		"Once", "upon", "a", "time", "the", "little", "girl", "Lily", "and", "Tom", "park", "was", "sad",
		"hello", "world", "he", "ll", "o", "x", "q", "Z", "ing", "ed", "'s", "don't",
		" ", " ", " ", "  ", "   ", "\t", "\n", "\n\n", ".", ",", "!", "?", "\"", "-", "(", ")", "1", "42", "2025",
		"é", "ü", "ñ", "ß", "日本", "语", "🙂", "👍🏽", "€", "™", "\u2581", "\u2581\u2581", "\u00a0",
		"<s>", "</s>", "<unk>", "<0x41>", "<", ">", "[INST]", "<|im_end|>", "\x00",
	}
	bad := []string{"\xff", "\xc3", "\xe2\x82", "\x80", "\xf0\x9f\x99"}
	var sb strings.Builder
	for range n {
		if invalid && rng.IntN(10) == 0 {
			sb.WriteString(bad[rng.IntN(len(bad))])
			continue
		}
		sb.WriteString(atoms[rng.IntN(len(atoms))])
		if rng.IntN(3) == 0 {
			sb.WriteByte(' ')
		}
	}
	return sb.String()
}
