package tokenizer

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestByte(t *testing.T) {
	tok := NewByte()
	for _, s := range []string{"", "hello", "héllo wörld ✓ 🙂", "\x00\xff\xfe"} {
		ids := tok.Encode(s, true)
		if ids[0] != ByteBOS || len(ids) != len(s)+1 {
			t.Fatalf("%q: %v", s, ids)
		}
		if got := tok.Decode(append(ids, ByteEOS)); got != s {
			t.Fatalf("%q round trip: %q", s, got)
		}
		var buf []byte
		for _, id := range ids {
			buf = append(buf, tok.TokenBytes(id)...)
		}
		if string(buf) != s {
			t.Fatalf("TokenBytes %q", buf)
		}
	}
	if tok.VocabSize() != 259 || tok.TokenBytes(-1) != nil || tok.TokenBytes(259) != nil {
		t.Fatal("vocab")
	}
}

func TestCompleteUTF8(t *testing.T) {
	s := []byte("a✓🙂")
	for cut := 0; cut <= len(s); cut++ {
		done, rest := CompleteUTF8(s[:cut])
		if string(done)+string(rest) != string(s[:cut]) {
			t.Fatal("split lost bytes")
		}
		want := map[int]int{0: 0, 1: 1, 2: 1, 3: 1, 4: 4, 5: 4, 6: 4, 7: 4, 8: 8}[cut]
		if len(done) != want {
			t.Fatalf("cut %d: done %q", cut, done)
		}
	}
}

// testVocab is a small SentencePiece vocabulary: specials, all byte
// fallbacks, some characters and merges with scores.
func testVocab() ([]string, []float32) {
	pieces := []string{"<unk>", "<s>", "</s>"}
	scores := []float32{0, 0, 0}
	for b := 0; b < 256; b++ {
		pieces = append(pieces, fmt.Sprintf("<0x%02X>", b))
		scores = append(scores, 0)
	}
	for i, p := range []string{" ", "h", "e", "l", "o", "w", "r", "d", "é", "he", "ll", "llo", "hello", " hello", " w", "or", "ld", "orld", " world"} {
		pieces = append(pieces, p)
		scores = append(scores, float32(len(p))+float32(i)/100)
	}
	return pieces, scores
}

func TestSentencePiece(t *testing.T) {
	pieces, scores := testVocab()
	path := filepath.Join(t.TempDir(), "tokenizer.bin")
	var buf bytes.Buffer
	if err := WriteLlama2c(&buf, pieces, scores); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := LoadSentencePiece(path, len(pieces))
	if err != nil {
		t.Fatal(err)
	}
	id := func(p string) int { return slices.Index(pieces, p) }
	// The dummy prefix makes "hello" into " hello", one piece.
	if got := tok.Encode("hello world", true); !slices.Equal(got, []int{SPBOS, id(" hello"), id(" world")}) {
		t.Fatalf("encode: %v", got)
	}
	// Decode drops the leading space after BOS only.
	if got := tok.Decode([]int{SPBOS, id(" hello"), id(" world"), SPEOS}); got != "hello world" {
		t.Fatalf("decode %q", got)
	}
	if got := tok.Decode([]int{id(" hello")}); got != " hello" {
		t.Fatalf("decode without BOS %q", got)
	}
	// "é" is a piece; "ü" is not: byte fallback, <0xC3><0xBC>.
	ids := tok.Encode("hé ü", false)
	if !slices.Contains(ids, id("é")) || !slices.Contains(ids, id("<0xC3>")) || !slices.Contains(ids, id("<0xBC>")) {
		t.Fatalf("byte fallback: %v", ids)
	}
	if string(tok.TokenBytes(id("<0xBC>"))) != "\xbc" || tok.TokenBytes(SPBOS) != nil {
		t.Fatal("TokenBytes")
	}
	for _, s := range []string{"hello world", "hé ü 🙂 wörld", "x", "  two  spaces ", "\x00\xff"} {
		if got := tok.Decode(tok.Encode(s, true)); got != s {
			t.Fatalf("round trip %q -> %q", s, got)
		}
	}
	if tok.Encode("", false) != nil || tok.VocabSize() != len(pieces) {
		t.Fatal("empty")
	}
}

func TestSentencePieceErrors(t *testing.T) {
	pieces, scores := testVocab()
	var buf bytes.Buffer
	WriteLlama2c(&buf, pieces, scores)
	data := buf.Bytes()
	for _, c := range []struct {
		data  []byte
		vocab int
		want  string
	}{
		{data[:2], len(pieces), "offset 0"},
		{data[:len(data)-3], len(pieces), "truncated"},
		{data, len(pieces) + 1, "truncated"},
		{data, 1, "vocab size"},
		{[]byte{0, 0, 0, 0}, 5, "max_token_length"},
	} {
		_, err := ParseSentencePiece(c.data, c.vocab)
		if !errors.Is(err, ErrBadTokenizer) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v (want %q)", err, c.want)
		}
	}
	if _, err := LoadSentencePiece("/nonexistent/tok.bin", 300); err == nil || !strings.Contains(err.Error(), "/nonexistent/tok.bin") {
		t.Errorf("missing file: %v", err)
	}
}

func FuzzSentencePiece(f *testing.F) {
	pieces, scores := testVocab()
	var buf bytes.Buffer
	WriteLlama2c(&buf, pieces, scores)
	tok, err := ParseSentencePiece(buf.Bytes(), len(pieces))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes(), "hello world")
	f.Fuzz(func(t *testing.T, data []byte, text string) {
		// Every string round-trips, invalid UTF-8 too: the vocabulary has
		// all 256 byte pieces.
		if got := tok.Decode(tok.Encode(text, true)); got != text {
			t.Fatalf("round trip %q -> %q", text, got)
		}
		if tk, err := ParseSentencePiece(data, 300); err == nil {
			tk.Decode(tk.Encode(text, true))
		}
	})
}
