package tokenizer

import (
	"strings"
	"testing"
)

// FuzzBPERoundTrip: Decode(Encode(x)) == x for every string x, with every
// pre-tokenizer (and the Llama 3.2 vocabulary when the shared files are
// there). That includes invalid UTF-8: a byte that is not part of a valid
// sequence is a character of its own to the pre-tokenizer (of no class,
// like punctuation), and since the vocabulary has a token for each of the
// 256 bytes its ids stand for exactly those bytes; Decode gives them back
// as they were (TokenBytes too, for a streaming caller to pass on with
// CompleteUTF8). With every byte plain, EncodeChat is Encode.
func FuzzBPERoundTrip(f *testing.F) {
	var toks []*BPE
	for _, pre := range SupportedPreTokenizers {
		tok, _ := testBPE(f, pre)
		toks = append(toks, tok)
	}
	if _, ok := sharedPath("tokenizers/llama3.2/encoder.json"); ok {
		tok, _ := llama3(f)
		toks = append(toks, tok)
	}
	for _, s := range []string{"", "hello world", "  two  spaces \n\n", "don't I'M", "1234567", "é ü 🙂 日本語",
		"\xff\xfe", "a\xc3", "<|im_end|><tool_call>", "\u00a0\u3000\v", strings.Repeat("a", 40)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, tok := range toks {
			ids := tok.Encode(s, false)
			if got := tok.Decode(ids); got != s {
				t.Fatalf("%s: Decode(Encode(%q)) = %q", tok.preName, s, got)
			}
			var streamed []byte
			for _, id := range ids {
				streamed = append(streamed, tok.TokenBytes(id)...)
			}
			if string(streamed) != s {
				t.Fatalf("%s: TokenBytes of Encode(%q) = %q", tok.preName, s, streamed)
			}
			if got := tok.Decode(tok.EncodeChat(s, []Span{{0, len(s)}})); got != s {
				t.Fatalf("%s: EncodeChat(%q) all plain decodes to %q", tok.preName, s, got)
			}
			tok.EncodeSpecial(s, true)
			tok.EncodeChat(s, []Span{{len(s) / 3, len(s) / 2}})
		}
	})
}

// FuzzNewBPE: hostile vocabularies are refused with an error or work,
// never panic. data is lines: tokens, then "--", then merges; the bytes of
// meta pick the pre-tokenizer, the special ids and each token's type.
func FuzzNewBPE(f *testing.F) {
	v := testBPEVocab("llama-bpe")
	f.Add(strings.Join(v.Tokens[250:], "\n")+"\n--\n"+strings.Join(v.Merges, "\n"), []byte{0, 1, 2, 3, 1, 1, 1, 3, 4}, "the hello world")
	f.Add("a\nb\nab\n--\na b\nb a\n a", []byte{3, 0, 255, 255, 1, 1, 1, 6}, "abba")
	f.Add("Ġ\nĠĠ\n--\nĠ Ġ", []byte{1, 1, 1, 1, 1, 1, 1}, "   ")
	f.Fuzz(func(t *testing.T, data string, meta []byte, text string) {
		toks, merges, _ := strings.Cut(data, "\n--\n")
		v := BPEVocab{Tokens: strings.Split(toks, "\n"), BOS: -1, EOS: -1, UNK: -1, PAD: -1}
		if merges != "" {
			v.Merges = strings.Split(merges, "\n")
		}
		at := func(i int) int {
			if i < len(meta) {
				return int(meta[i])
			}
			return 0
		}
		v.Pre = SupportedPreTokenizers[at(0)%len(SupportedPreTokenizers)]
		if at(0) >= 128 {
			v.Pre = "nonsense"
		}
		for i, dst := range []*int{&v.BOS, &v.EOS, &v.UNK, &v.PAD} {
			*dst = at(i+1) - 2 // -2 and out-of-range ids are errors
		}
		if len(meta) > 5 {
			v.Types = make([]int32, len(v.Tokens))
			for i := range v.Types {
				v.Types[i] = int32(at(5+i)%9) - 1 // -1 and 7 are errors
			}
		}
		tok, err := NewBPE(v)
		if err != nil {
			return
		}
		for _, ids := range [][]int{tok.Encode(text, true), tok.EncodeSpecial(text, true), tok.EncodeChat(text, []Span{{1, 3}})} {
			for _, id := range ids {
				if id < 0 || id >= tok.VocabSize() {
					t.Fatalf("id %d outside the vocabulary of %d", id, tok.VocabSize())
				}
				if len(tok.TokenBytes(id)) > tok.MaxTokenBytes() {
					t.Fatalf("token %d longer than MaxTokenBytes %d", id, tok.MaxTokenBytes())
				}
			}
			tok.Decode(ids)
		}
		tok.TokenBytes(-1)
		tok.TokenBytes(tok.VocabSize())
	})
}
