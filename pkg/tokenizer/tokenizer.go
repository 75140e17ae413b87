// Package tokenizer turns text into token ids and back for the engine's
// models: a byte-level tokenizer for the built-in models and a
// SentencePiece-style BPE reader for llama2.c tokenizer.bin files.
package tokenizer

import "unicode/utf8"

// Tokenizer converts between text and token ids. Implementations are
// immutable after construction and safe for concurrent use.
type Tokenizer interface {
	// Encode tokenizes text; bos prepends the BOS id.
	Encode(text string, bos bool) []int
	// Decode turns ids back into text. Special tokens (BOS, EOS, unknown)
	// produce no text; invalid ids are skipped.
	Decode(ids []int) string
	// TokenBytes is the raw bytes of one token, for streaming. A token may be
	// part of a multi-byte UTF-8 character: the caller buffers incomplete
	// sequences. Special and invalid ids return nil.
	TokenBytes(id int) []byte
	// VocabSize is the number of ids.
	VocabSize() int
}

// Byte-level vocabulary: the llama convention for the special ids, then one
// id per byte value.
const (
	ByteUnk    = 0
	ByteBOS    = 1
	ByteEOS    = 2
	ByteOffset = 3 // id of byte value 0
	ByteVocab  = 256 + ByteOffset
)

// Byte is the byte-level tokenizer of the built-in models: 0 = <unk>,
// 1 = BOS, 2 = EOS, 3+b = byte b. Every string round-trips exactly.
type Byte struct{}

// NewByte returns the byte-level tokenizer.
func NewByte() Byte { return Byte{} }

func (Byte) Encode(text string, bos bool) []int {
	out := make([]int, 0, len(text)+1)
	if bos {
		out = append(out, ByteBOS)
	}
	for i := 0; i < len(text); i++ {
		out = append(out, int(text[i])+ByteOffset)
	}
	return out
}

func (b Byte) Decode(ids []int) string {
	buf := make([]byte, 0, len(ids))
	for _, id := range ids {
		buf = append(buf, b.TokenBytes(id)...)
	}
	return string(buf)
}

func (Byte) TokenBytes(id int) []byte {
	if id < ByteOffset || id >= ByteVocab {
		return nil
	}
	return []byte{byte(id - ByteOffset)}
}

func (Byte) VocabSize() int { return ByteVocab }

// CompleteUTF8 splits buf into the longest prefix that does not end inside a
// multi-byte UTF-8 sequence and the incomplete remainder, for streaming
// callers of TokenBytes. Invalid bytes are passed through, not held.
func CompleteUTF8(buf []byte) (done, rest []byte) {
	// A UTF-8 sequence is at most 4 bytes, so only the last 3 bytes can be an
	// incomplete start.
	for i := len(buf) - 1; i >= 0 && i >= len(buf)-3; i-- {
		c := buf[i]
		if c < 0x80 {
			break
		}
		if c >= 0xC0 { // start byte
			if !utf8.FullRune(buf[i:]) {
				return buf[:i], buf[i:]
			}
			break
		}
	}
	return buf, nil
}
