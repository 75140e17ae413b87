// Package tokenizer turns text into token ids and back for the engine's
// models: a byte-level tokenizer for the built-in models, a SentencePiece
// BPE tokenizer for llama2.c tokenizer.bin files and GGUF vocabularies
// (tokenizer.ggml.model "llama"), and a byte-level BPE tokenizer for GGUF
// vocabularies of the GPT-2 kind (tokenizer.ggml.model "gpt2": Llama 3,
// Qwen, SmolLM2).
package tokenizer

import "unicode/utf8"

// Tokenizer converts between text and token ids. Implementations are
// immutable after construction and safe for concurrent use.
type Tokenizer interface {
	// Encode tokenizes text as plain user text; bos prepends the BOS id.
	// Strings that spell special tokens ("</s>", "<|im_end|>") are
	// tokenized like any other text, so text from a user cannot forge them.
	Encode(text string, bos bool) []int
	// EncodeSpecial is Encode, except that the strings of the special
	// (control, user-defined) tokens written in text become those tokens.
	// It is for trusted text only: a chat template's markup, an operator's
	// prompt.
	EncodeSpecial(text string, bos bool) []int
	// EncodeChat tokenizes a rendered chat prompt: special-token strings
	// are recognised as in EncodeSpecial, except inside the plain spans
	// (the bytes that came from message contents), which can never produce
	// a special token. The text between special tokens is encoded as one
	// piece, across span boundaries, so the result is what EncodeSpecial
	// gives whenever the contents spell no special token. No BOS is added:
	// the template decides.
	EncodeChat(text string, plain []Span) []int
	// Decode turns ids back into text. Special tokens (BOS, EOS, unknown)
	// produce no text; invalid ids are skipped.
	Decode(ids []int) string
	// TokenBytes is the raw bytes of one token, for streaming. A token may be
	// part of a multi-byte UTF-8 character: the caller buffers incomplete
	// sequences. Special and invalid ids return nil.
	TokenBytes(id int) []byte
	// VocabSize is the number of ids.
	VocabSize() int
	// Kind names the algorithm: "byte", "sentencepiece" or "bpe".
	Kind() string
	// MaxTokenBytes bounds the bytes of text one token stands for (a
	// piece, a special token's string, a byte): a text of n bytes gives at
	// least n/MaxTokenBytes tokens, so a text that cannot fit a context is
	// refused before it is tokenized.
	MaxTokenBytes() int
}

// Span is the byte range [Start, End) of a text.
type Span struct{ Start, End int }

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

// EncodeSpecial is Encode: the byte vocabulary has no special-token strings.
func (b Byte) EncodeSpecial(text string, bos bool) []int { return b.Encode(text, bos) }

// EncodeChat is Encode without BOS.
func (b Byte) EncodeChat(text string, _ []Span) []int { return b.Encode(text, false) }

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

func (Byte) Kind() string { return "byte" }

func (Byte) MaxTokenBytes() int { return 1 }

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
