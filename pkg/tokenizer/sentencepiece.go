package tokenizer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"unicode/utf8"
)

// ErrBadTokenizer is wrapped by every error about a malformed tokenizer file.
var ErrBadTokenizer = errors.New("bad tokenizer file")

// SentencePiece is the BPE tokenizer of llama2.c (tokenizer.bin): pieces with
// merge scores, byte fallback through "<0xAB>" pieces, and SentencePiece's
// dummy leading space. Encode reproduces llama2.c's encode() (greedy
// highest-score merge, leftmost on ties); Decode follows its decode() (the
// leading space of the piece after BOS is dropped).
type SentencePiece struct {
	pieces   [][]byte
	scores   []float32
	lookup   map[string]int
	byteID   [256]int // id of the "<0xAB>" piece, or -1
	byteOf   []int    // per id: byte value if it is a byte piece, else -1
	bos, eos int
	maxLen   int
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

// ParseSentencePiece parses the bytes of a tokenizer.bin (see LoadSentencePiece).
func ParseSentencePiece(data []byte, vocabSize int) (*SentencePiece, error) {
	if vocabSize < 3 || vocabSize > 1<<22 {
		return nil, fmt.Errorf("%w: vocab size %d out of range 3..%d", ErrBadTokenizer, vocabSize, 1<<22)
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
	if maxLen < 1 || maxLen > 1<<16 {
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
	return NewSentencePiece(pieces, scores, SPBOS, SPEOS)
}

// NewSentencePiece builds a tokenizer from pieces and merge scores.
func NewSentencePiece(pieces []string, scores []float32, bos, eos int) (*SentencePiece, error) {
	if len(pieces) != len(scores) || len(pieces) < 3 {
		return nil, fmt.Errorf("%w: %d pieces, %d scores", ErrBadTokenizer, len(pieces), len(scores))
	}
	t := &SentencePiece{
		pieces: make([][]byte, len(pieces)),
		scores: append([]float32(nil), scores...),
		lookup: make(map[string]int, len(pieces)),
		byteOf: make([]int, len(pieces)),
		bos:    bos,
		eos:    eos,
	}
	for i := range t.byteID {
		t.byteID[i] = -1
	}
	for i, p := range pieces {
		t.pieces[i] = []byte(p)
		if len(p) > t.maxLen {
			t.maxLen = len(p)
		}
		if _, dup := t.lookup[p]; !dup {
			t.lookup[p] = i
		}
		t.byteOf[i] = -1
		if b, ok := parseBytePiece(p); ok {
			t.byteOf[i] = int(b)
			if t.byteID[b] < 0 {
				t.byteID[b] = i
			}
		}
	}
	return t, nil
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

// Encode follows llama2.c: optional BOS, the dummy-prefix " " piece when the
// text is non-empty, one piece per UTF-8 character (or one byte-fallback piece
// per byte when the character is not in the vocabulary), then repeated
// merging of the adjacent pair whose concatenation has the highest score.
func (t *SentencePiece) Encode(text string, bos bool) []int {
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
	// Quadratic like the reference; prompts through this path are short and
	// reproducing its tie-breaking exactly matters more.
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

// Decode concatenates the pieces; byte pieces become their byte, special ids
// produce nothing, and a piece right after BOS loses its leading space.
func (t *SentencePiece) Decode(ids []int) string {
	var out bytes.Buffer
	prev := -1
	for _, id := range ids {
		b := t.TokenBytes(id)
		if prev == t.bos && len(b) > 0 && b[0] == ' ' {
			b = b[1:]
		}
		out.Write(b)
		prev = id
	}
	return out.String()
}

func (t *SentencePiece) TokenBytes(id int) []byte {
	if id < 0 || id >= len(t.pieces) || id == t.bos || id == t.eos || id == SPUnk {
		return nil
	}
	if b := t.byteOf[id]; b >= 0 {
		return []byte{byte(b)}
	}
	return append([]byte(nil), t.pieces[id]...)
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
