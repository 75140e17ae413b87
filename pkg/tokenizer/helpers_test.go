package tokenizer

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/semantic-kv/semantic/pkg/gguf"
	"github.com/semantic-kv/semantic/pkg/testmodels"
)

// modelPath is the path of a file in the shared test-model directory (see
// package testmodels) and whether it exists.
func modelPath(name string) (string, bool) {
	p := filepath.Join(testmodels.Dir(), name)
	_, err := os.Stat(p)
	return p, err == nil
}

// modelFile is the path of a file a test needs: a missing file skips the
// test, or fails it when CI=true.
func modelFile(t testing.TB, name string) string { return testmodels.File(t, name) }

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
	f, err := gguf.Open(modelFile(t, "stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if m, _ := f.String("tokenizer.ggml.model"); m != "llama" {
		t.Fatalf("tokenizer.ggml.model %q", m)
	}
	v := SPMVocab{BOS: -1, EOS: -1, UNK: -1, PAD: -1, AddBOS: true, AddSpacePrefix: true}
	if v.Tokens, err = f.Strings("tokenizer.ggml.tokens"); err != nil {
		t.Fatal(err)
	}
	v.Scores, _ = f.Float32s("tokenizer.ggml.scores")
	types, _ := f.Ints("tokenizer.ggml.token_type")
	for _, x := range types {
		v.Types = append(v.Types, int32(x))
	}
	for key, dst := range map[string]*int{"bos_token_id": &v.BOS, "eos_token_id": &v.EOS, "unknown_token_id": &v.UNK, "padding_token_id": &v.PAD} {
		if id, err := f.Uint("tokenizer.ggml." + key); err == nil && id != math.MaxUint32 {
			*dst = int(id)
		}
	}
	if b, err := f.Bool("tokenizer.ggml.add_bos_token"); err == nil {
		v.AddBOS = b
	}
	if b, err := f.Bool("tokenizer.ggml.add_space_prefix"); err == nil {
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
