package tokenizer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
)

// ErrBadTokenizer is wrapped by every error about a malformed tokenizer file
// or vocabulary.
var ErrBadTokenizer = errors.New("bad tokenizer file")

// Token types, the values of GGUF's tokenizer.ggml.token_type (SentencePiece's
// piece types). Other values (0 = undefined) are accepted and treated like
// TokenUnused: such a token is never produced by encoding and decodes to
// nothing.
const (
	// TokenNormal is an ordinary piece: produced by merges, decoded with
	// '▁' as a space.
	TokenNormal = 1
	// TokenUnknown is the <unk> piece: emitted for bytes that have no byte
	// piece, decoded to nothing.
	TokenUnknown = 2
	// TokenControl is a control piece (<s>, </s>, <|im_end|>): never made
	// from text by Encode, decoded to nothing.
	TokenControl = 3
	// TokenUserDefined is a piece that is matched as a whole string by
	// EncodeSpecial (never made by merges), decoded to its text as is.
	TokenUserDefined = 4
	// TokenUnused is a reserved piece: never produced, decoded to nothing.
	TokenUnused = 5
	// TokenByte is a byte-fallback piece "<0xAB>": decoded to the byte.
	TokenByte = 6
)

// Bounds on a vocabulary, so that a corrupt file cannot make the
// constructor allocate without limit.
const (
	maxVocab    = 1 << 22 // tokens
	maxPieceLen = 64 << 10
)

// spaceMark is SentencePiece's visible space U+2581, which stands for ' ' in
// the pieces of GGUF vocabularies.
const spaceMark = "\u2581"

// SPMVocab is a SentencePiece vocabulary as stored in a GGUF file's
// tokenizer.ggml.* keys (tokenizer.ggml.model = "llama").
type SPMVocab struct {
	// Tokens are the pieces, indexed by id, with '▁' (U+2581) for spaces
	// as GGUF files write them (a plain ' ' is accepted too: llama2.c's
	// tokenizer.bin uses it).
	Tokens []string
	// Scores are the merge priorities (higher merges first); nil means all
	// 0. A NaN score orders like -Inf.
	Scores []float32
	// Types are the Token* types; nil means: UNK is TokenUnknown, BOS, EOS
	// and PAD are TokenControl, "<0xAB>" pieces are TokenByte, the rest
	// TokenNormal (what llama2.c's files imply).
	Types []int32
	// Special ids, -1 when absent.
	BOS, EOS, UNK, PAD int
	// AddBOS is tokenizer.ggml.add_bos_token (default true for llama). The
	// tokenizer does not use it (Encode's bos argument decides): it is
	// here for the caller, so that the vocabulary read from a file is
	// complete.
	AddBOS bool
	// AddSpacePrefix is tokenizer.ggml.add_space_prefix (default true):
	// SentencePiece's dummy prefix, a space before the text, so that the
	// first word is tokenized like every other word ("▁Once", not "Once").
	AddSpacePrefix bool
}

// SentencePiece is a SentencePiece BPE tokenizer (llama, mistral, llama2.c
// vocabularies): the text is split into UTF-8 characters, and the adjacent
// pair whose concatenation is the highest-scoring piece is merged
// repeatedly (leftmost on ties) until no pair is a piece; characters left
// over that are not pieces become byte-fallback pieces "<0xAB>".
//
// It is the algorithm of llama.cpp's llm_tokenizer_spm and gives the same
// ids as llama2.c's run.c encode() on its vocabularies, but it keeps the
// candidate pairs in a priority queue over a linked list of symbols, so a
// text of n characters costs O(n log n), where run.c rescans every pair
// after every merge (O(n²): a tenth of a second for a 2000-token prompt,
// minutes for a long document). When the vocabulary allows it (see
// encodeText) the text is merged word by word, short words in arrays on the
// stack, and a bounded cache keeps recent words' ids.
//
// A SentencePiece is immutable and safe for concurrent use.
type SentencePiece struct {
	pieces []string  // per id: the piece as given
	text   []string  // per id: decoded text of normal ('▁' → ' ') and user-defined tokens
	scores []float32 // per id: merge priority, NaN → -Inf
	byteOf []int16   // per id: value of a byte token, else -1

	// lookup maps the text of each normal token ('▁' as ' ') to its id,
	// the lowest id for duplicates. Only normal tokens are made from text:
	// control, unknown, unused and byte pieces never (SentencePiece does
	// not produce them either), and user-defined ones only as whole
	// strings in EncodeSpecial. So "</s>" typed by a user stays text.
	lookup map[string]int32
	maxLen int        // longest key of lookup
	ascii  [128]int32 // lookup of single ASCII characters, -1 if none
	ascii2 []int32    // lookup of two ASCII characters a, b at a<<7|b, -1 if none
	byteID [256]int32 // byte-fallback token of each byte, or -1
	spec   specialSet // control, user-defined and unknown tokens by text

	bos, eos, unk int
	prefix        bool // Encode adds the dummy-prefix space (AddSpacePrefix, and for llama2.c only if " " is a token), Decode drops it

	// legacy is llama2.c's tokenizer.bin: run.c only merges pieces whose
	// score is above -1e10 and adds the dummy prefix only when " " is a
	// piece.
	legacy bool
	// split: no normal token contains a space right after a non-space
	// byte, so no merge can cross the start of a word and words can be
	// encoded one by one (see encodeText).
	split bool
	cache *wordCache
	// maxBytes is MaxTokenBytes.
	maxBytes int
}

// Special ids of llama2.c's vocabulary.
const (
	SPUnk = 0
	SPBOS = 1
	SPEOS = 2
)

// LoadSentencePiece reads a llama2.c tokenizer.bin holding vocabSize pieces:
// int32 max_token_length, then per piece float32 score, int32 length, bytes.
func LoadSentencePiece(path string, vocabSize int) (*SentencePiece, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	t, err := ParseSentencePiece(data, vocabSize)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	return t, nil
}

// ParseSentencePiece parses the bytes of a tokenizer.bin (see
// LoadSentencePiece). llama2.c's conventions apply: id 0 is <unk>, 1 BOS, 2
// EOS, "<0xAB>" pieces are byte fallbacks, spaces are plain ' ', and
// encoding reproduces run.c's encode().
func ParseSentencePiece(data []byte, vocabSize int) (*SentencePiece, error) {
	if vocabSize < 3 || vocabSize > maxVocab {
		return nil, fmt.Errorf("%w: vocab size %d out of range 3..%d", ErrBadTokenizer, vocabSize, maxVocab)
	}
	off := 0
	need := func(n int, what string) error {
		if len(data)-off < n {
			return fmt.Errorf("%w: truncated at byte offset %d reading %s (need %d bytes, %d left)", ErrBadTokenizer, off, what, n, len(data)-off)
		}
		return nil
	}
	if err := need(4, "max_token_length"); err != nil {
		return nil, err
	}
	maxLen := int(int32(binary.LittleEndian.Uint32(data[off:])))
	off += 4
	if maxLen < 1 || maxLen > maxPieceLen {
		return nil, fmt.Errorf("%w: max_token_length %d out of range", ErrBadTokenizer, maxLen)
	}
	pieces := make([]string, vocabSize)
	scores := make([]float32, vocabSize)
	for i := 0; i < vocabSize; i++ {
		if err := need(8, fmt.Sprintf("piece %d header", i)); err != nil {
			return nil, err
		}
		scores[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[off:]))
		n := int(int32(binary.LittleEndian.Uint32(data[off+4:])))
		if n < 0 || n > maxLen {
			return nil, fmt.Errorf("%w: piece %d at byte offset %d has length %d (max_token_length %d)", ErrBadTokenizer, i, off+4, n, maxLen)
		}
		off += 8
		if err := need(n, fmt.Sprintf("piece %d", i)); err != nil {
			return nil, err
		}
		pieces[i] = string(data[off : off+n])
		off += n
	}
	return newSentencePiece(SPMVocab{
		Tokens: pieces, Scores: scores,
		BOS: SPBOS, EOS: SPEOS, UNK: SPUnk, PAD: -1,
		AddBOS: true, AddSpacePrefix: true,
	}, true)
}

// NewSentencePiece builds a tokenizer from a GGUF-style vocabulary. It
// checks the shapes (equal lengths, special ids in range or -1, 1..2^22
// tokens of at most 64 KiB each); errors wrap ErrBadTokenizer.
func NewSentencePiece(v SPMVocab) (*SentencePiece, error) {
	return newSentencePiece(v, false)
}

func newSentencePiece(v SPMVocab, legacy bool) (*SentencePiece, error) {
	n := len(v.Tokens)
	if err := checkVocabShape(n, v.Types, v.BOS, v.EOS, v.UNK, v.PAD); err != nil {
		return nil, err
	}
	if v.Scores != nil && len(v.Scores) != n {
		return nil, fmt.Errorf("%w: %d tokens but %d scores", ErrBadTokenizer, n, len(v.Scores))
	}
	t := &SentencePiece{
		pieces: slices.Clone(v.Tokens),
		text:   make([]string, n),
		scores: make([]float32, n),
		byteOf: make([]int16, n),
		lookup: make(map[string]int32, n),
		bos:    v.BOS,
		eos:    v.EOS,
		unk:    v.UNK,
		legacy: legacy,
		split:  true,
	}
	for i := range t.byteID {
		t.byteID[i] = -1
	}
	var special, normal []int32
	size := 0
	for id, p := range v.Tokens {
		if len(p) > maxPieceLen {
			return nil, fmt.Errorf("%w: token %d is %d bytes long (max %d)", ErrBadTokenizer, id, len(p), maxPieceLen)
		}
		if v.Scores != nil {
			s := v.Scores[id]
			if s != s { // NaN: order it last rather than break the heap's order
				s = float32(math.Inf(-1))
			}
			t.scores[id] = s
		}
		typ := inferType(v, id)
		if v.Types != nil {
			typ = v.Types[id]
		}
		if typ < TokenNormal || typ > TokenByte {
			typ = 0
		}
		t.byteOf[id] = -1
		switch typ {
		case TokenNormal:
			normal = append(normal, int32(id))
			size += len(p)
		case TokenByte:
			if b, ok := parseBytePiece(p); ok {
				t.byteOf[id] = int16(b)
				if t.byteID[b] < 0 {
					t.byteID[b] = int32(id)
				}
			}
		case TokenUserDefined:
			t.text[id] = p
			fallthrough
		case TokenControl, TokenUnknown:
			if p != "" {
				special = append(special, int32(id))
			}
		}
	}
	// The normal tokens' texts, '▁' as ' ', in one block of memory: the
	// map's keys are compared on every hit, and adjacent keys cache better
	// than thousands of scattered strings.
	var arena strings.Builder
	arena.Grow(size)
	ends := make([]int, len(normal))
	for i, id := range normal {
		p := v.Tokens[id]
		for p != "" {
			k := strings.Index(p, spaceMark)
			if k < 0 {
				arena.WriteString(p)
				break
			}
			arena.WriteString(p[:k])
			arena.WriteByte(' ')
			p = p[k+len(spaceMark):]
		}
		ends[i] = arena.Len()
	}
	texts := arena.String()
	for i, id := range normal {
		start := 0
		if i > 0 {
			start = ends[i-1]
		}
		norm, p := texts[start:ends[i]], v.Tokens[id]
		t.text[id] = norm
		// In GGUF vocabularies every space is '▁': a piece with a plain ' '
		// can never match (llama.cpp escapes the text's spaces), so it is
		// left out rather than let it shadow the '▁' one.
		if p == "" || (!legacy && strings.Contains(p, " ")) {
			continue
		}
		if _, dup := t.lookup[norm]; !dup {
			t.lookup[norm] = id
			t.maxLen = max(t.maxLen, len(norm))
			if t.split && !splittable(norm) {
				t.split = false
			}
		}
	}
	for c := range t.ascii {
		t.ascii[c] = -1
		if id, ok := t.lookup[string(rune(c))]; ok {
			t.ascii[c] = id
		}
	}
	t.ascii2 = make([]int32, 128*128)
	for i := range t.ascii2 {
		t.ascii2[i] = -1
		if id, ok := t.lookup[string([]byte{byte(i >> 7), byte(i & 127)})]; ok {
			t.ascii2[i] = id
		}
	}
	_, space := t.lookup[" "]
	t.prefix = v.AddSpacePrefix && (space || !legacy)
	t.spec = newSpecialSet(v.Tokens, special)
	if t.split {
		t.cache = newWordCache()
	}
	t.maxBytes = 1
	for _, p := range t.pieces {
		t.maxBytes = max(t.maxBytes, len(p))
	}
	return t, nil
}

// checkVocabShape checks what every GGUF vocabulary has: 1..maxVocab
// tokens, as many types if any, and special ids in range or -1.
func checkVocabShape(n int, types []int32, bos, eos, unk, pad int) error {
	if n < 1 || n > maxVocab {
		return fmt.Errorf("%w: %d tokens (want 1..%d)", ErrBadTokenizer, n, maxVocab)
	}
	if types != nil && len(types) != n {
		return fmt.Errorf("%w: %d tokens but %d token types", ErrBadTokenizer, n, len(types))
	}
	for _, s := range []struct {
		name string
		id   int
	}{{"BOS", bos}, {"EOS", eos}, {"UNK", unk}, {"PAD", pad}} {
		if s.id < -1 || s.id >= n {
			return fmt.Errorf("%w: %s id %d outside the vocabulary (%d tokens; -1 for none)", ErrBadTokenizer, s.name, s.id, n)
		}
	}
	return nil
}

// inferType is the type of token id when the vocabulary has no types.
func inferType(v SPMVocab, id int) int32 {
	switch id {
	case v.UNK:
		return TokenUnknown
	case v.BOS, v.EOS, v.PAD:
		return TokenControl
	}
	if _, ok := parseBytePiece(v.Tokens[id]); ok {
		return TokenByte
	}
	return TokenNormal
}

// splittable reports whether a piece (spaces as ' ') can be made without
// merging across a word start, a ' ' that follows a non-space byte.
// Leading runs of spaces ("  if", whitespace-only pieces) are fine.
func splittable(piece string) bool {
	for i := 1; i < len(piece); i++ {
		if piece[i] == ' ' && piece[i-1] != ' ' {
			return false
		}
	}
	return true
}

// parseBytePiece recognises the byte-fallback pieces "<0x00>".."<0xFF>".
func parseBytePiece(p string) (byte, bool) {
	if len(p) != 6 || p[:3] != "<0x" || p[5] != '>' {
		return 0, false
	}
	hex := func(c byte) (byte, bool) {
		switch {
		case c >= '0' && c <= '9':
			return c - '0', true
		case c >= 'A' && c <= 'F':
			return c - 'A' + 10, true
		case c >= 'a' && c <= 'f':
			return c - 'a' + 10, true
		}
		return 0, false
	}
	hi, ok1 := hex(p[3])
	lo, ok2 := hex(p[4])
	return hi<<4 | lo, ok1 && ok2
}

func (t *SentencePiece) VocabSize() int { return len(t.pieces) }

func (t *SentencePiece) Kind() string { return "sentencepiece" }

// MaxTokenBytes is the longest piece in bytes (as given, so '▁' counts 3:
// an overestimate is safe), at least 1.
func (t *SentencePiece) MaxTokenBytes() int { return t.maxBytes }

// Encode tokenizes text as plain text: optional BOS, then, when the text is
// not empty, the dummy-prefix space and the text, merged as described on
// SentencePiece. Special-token strings in text are not recognised (see
// EncodeSpecial). With bos but no BOS token in the vocabulary, none is
// added.
func (t *SentencePiece) Encode(text string, bos bool) []int {
	var ids []int
	if bos && t.bos >= 0 {
		ids = make([]int, 1, len(text)/3+2)
		ids[0] = t.bos
	}
	if text != "" {
		ids = t.encodeFragment(ids, text)
	}
	return ids
}

// EncodeSpecial is Encode, except that the control, user-defined and
// unknown pieces written in text ("<s>", "</s>", "<|im_end|>", "[INST]"
// when user-defined) become their ids.
//
// It follows llama.cpp's tokenize with parse_special: the special strings
// are found longest first (equal lengths: lower id first), each taking
// every non-overlapping occurrence, leftmost first, in the text that
// longer ones left; the text between them is encoded fragment by fragment,
// and with AddSpacePrefix every text fragment gets the dummy-prefix space,
// not only the first one: llama.cpp adds it to a fragment at the start of
// the text or right after a special token, and text fragments only occur
// there. So "<s>Hi</s>" gives BOS, "▁Hi", EOS, as does the HF slow
// tokenizer in legacy mode, which encodes each chunk separately.
func (t *SentencePiece) EncodeSpecial(text string, bos bool) []int {
	var ids []int
	if bos && t.bos >= 0 {
		ids = append(ids, t.bos)
	}
	return t.encodeParts(ids, text, nil)
}

// EncodeChat is EncodeSpecial without BOS, except that no special token is
// recognised where it overlaps a plain span: a message's content that
// spells "</s>" stays text. Spans may be in any order, overlap, or reach
// outside text.
func (t *SentencePiece) EncodeChat(text string, plain []Span) []int {
	return t.encodeParts(nil, text, plain)
}

func (t *SentencePiece) encodeParts(ids []int, text string, plain []Span) []int {
	return t.spec.encodeParts(ids, text, plain, t.encodeFragment)
}

// encodeFragment appends the ids of a non-empty run of plain text.
func (t *SentencePiece) encodeFragment(ids []int, s string) []int {
	if t.prefix {
		s = " " + s
	}
	return t.encodeText(ids, s)
}

// Decode concatenates the tokens' bytes (see TokenBytes). When Encode adds
// the dummy prefix, the piece right after BOS loses its leading space, as
// in run.c's decode(). So Decode(Encode(x, true)) == x for every string x,
// invalid UTF-8 included, when the vocabulary has a BOS token and all 256
// byte pieces (without BOS, the dummy space stays: " "+x).
func (t *SentencePiece) Decode(ids []int) string {
	var out bytes.Buffer
	prev := -1
	for _, id := range ids {
		if b, ok := t.byteOfID(id); ok {
			if !(prev == t.bos && t.bos >= 0 && t.prefix && b == ' ') {
				out.WriteByte(b)
			}
		} else if s := t.textOf(id); s != "" {
			if prev == t.bos && t.bos >= 0 && t.prefix && s[0] == ' ' {
				s = s[1:]
			}
			out.WriteString(s)
		}
		prev = id
	}
	return out.String()
}

// TokenBytes is the text of one token: its byte for a byte piece, the
// piece with '▁' as ' ' for a normal one, the piece as is for a
// user-defined one, and nil for BOS, EOS, UNK and control, unknown and
// unused pieces (they are not text).
func (t *SentencePiece) TokenBytes(id int) []byte {
	if b, ok := t.byteOfID(id); ok {
		return []byte{b}
	}
	if s := t.textOf(id); s != "" {
		return []byte(s)
	}
	return nil
}

func (t *SentencePiece) byteOfID(id int) (byte, bool) {
	if id < 0 || id >= len(t.pieces) || t.byteOf[id] < 0 || id == t.bos || id == t.eos || id == t.unk {
		return 0, false
	}
	return byte(t.byteOf[id]), true
}

// textOf is the decoded text of a normal or user-defined token, "" for
// every other id.
func (t *SentencePiece) textOf(id int) string {
	if id < 0 || id >= len(t.pieces) || id == t.bos || id == t.eos || id == t.unk {
		return ""
	}
	return t.text[id]
}

// WriteLlama2c writes pieces and scores in llama2.c's tokenizer.bin format.
func WriteLlama2c(w io.Writer, pieces []string, scores []float32) error {
	if len(pieces) != len(scores) {
		return fmt.Errorf("%d pieces, %d scores", len(pieces), len(scores))
	}
	maxLen := 1
	for _, p := range pieces {
		maxLen = max(maxLen, len(p))
	}
	var buf bytes.Buffer
	binary.Write(&buf, binary.LittleEndian, int32(maxLen))
	for i, p := range pieces {
		binary.Write(&buf, binary.LittleEndian, scores[i])
		binary.Write(&buf, binary.LittleEndian, int32(len(p)))
		buf.WriteString(p)
	}
	_, err := w.Write(buf.Bytes())
	return err
}
