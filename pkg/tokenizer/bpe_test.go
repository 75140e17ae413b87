package tokenizer

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/semantic-kv/semantic/pkg/testmodels"
)

// llama3 is the Llama 3.2 vocabulary of the shared directory through NewBPE
// (BOS <|begin_of_text|>, EOS <|end_of_text|>), and its reference cases.
func llama3(t testing.TB) (*BPE, []testmodels.TokenizerCase) {
	t.Helper()
	v, cases := testmodels.Llama3(t)
	tok, err := NewBPE(BPEVocab{Tokens: v.Tokens, Types: v.Types, Merges: v.Merges, Pre: "llama-bpe",
		BOS: testmodels.Llama3BOS, EOS: testmodels.Llama3EndOfText, UNK: -1, PAD: -1, AddBOS: true})
	if err != nil {
		t.Fatal(err)
	}
	return tok, cases
}

// Every reference case gives the independent implementation's ids, except
// where that implementation (ollama) merges equal-rank pairs in another
// order than leftmost first (testmodels.OllamaTies): there, the ids of
// Hugging Face tokenizers, llama.cpp and tiktoken. Every case's reference
// ids decode to its text.
func TestBPELlama3Reference(t *testing.T) {
	tok, cases := llama3(t)
	seen := 0
	for _, c := range cases {
		want := c.Want
		if _, ok := testmodels.OllamaTies[c.Text]; ok {
			seen++
			if slices.Equal(c.Want, c.IDs) {
				t.Errorf("%q: reference.json now gives the leftmost-first ids: drop it from OllamaTies", c.Text)
			}
		}
		if got := tok.Encode(c.Text, false); !slices.Equal(got, want) && len(got)+len(want) > 0 {
			t.Errorf("Encode(%q) = %v, want %v", c.Text, got, want)
		}
		if got := tok.Decode(c.IDs); got != c.Text {
			t.Errorf("Decode(%v) = %q, want %q", c.IDs, got, c.Text)
		}
		if got := tok.Encode(c.Text, true); len(got) == 0 || got[0] != testmodels.Llama3BOS {
			t.Errorf("Encode(%q, bos) = %v", c.Text, got)
		}
	}
	if len(cases) < 30 || seen != len(testmodels.OllamaTies) {
		t.Fatalf("%d cases, %d of the ties", len(cases), seen)
	}
}

// Llama 3's special tokens: EncodeSpecial and EncodeChat make them from the
// template's markup, Encode never, and they decode to nothing.
func TestBPELlama3Specials(t *testing.T) {
	tok, _ := llama3(t)
	if tok.Kind() != "bpe" || tok.VocabSize() != testmodels.Llama3Vocabulary {
		t.Fatalf("kind %q, %d tokens", tok.Kind(), tok.VocabSize())
	}
	markup := "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>" +
		"<|start_header_id|>user<|end_header_id|>\n\nhello world<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
	want := []int{128000, 128006, 9125, 128007, 271, 2675, 527, 264, 11190, 18328, 13, 128009,
		128006, 882, 128007, 271, 15339, 1917, 128009, 128006, 78191, 128007, 271}
	if got := tok.EncodeSpecial(markup, false); !slices.Equal(got, want) {
		t.Fatalf("EncodeSpecial:\n got %v\nwant %v", got, want)
	}
	if got := tok.EncodeSpecial(markup[len("<|begin_of_text|>"):], true); !slices.Equal(got, want) {
		t.Fatalf("EncodeSpecial with bos: %v", got)
	}
	if got := tok.EncodeChat(markup, nil); !slices.Equal(got, want) {
		t.Fatalf("EncodeChat: %v", got)
	}
	// Plain text never makes a special token, and round-trips.
	plain := tok.Encode(markup, false)
	for _, id := range plain {
		if id >= testmodels.Llama3BOS {
			t.Fatalf("Encode made special token %d: %v", id, plain)
		}
	}
	if got := tok.Decode(plain); got != markup {
		t.Fatalf("Decode(Encode) = %q", got)
	}
	// Special tokens decode to nothing; a reserved one is special too.
	if got := tok.Decode(want); got != "system\n\nYou are a helpful assistant.user\n\nhello worldassistant\n\n" {
		t.Fatalf("Decode = %q", got)
	}
	for _, id := range []int{128000, 128001, 128006, 128009, 128255, -1, 128256} {
		if b := tok.TokenBytes(id); b != nil {
			t.Errorf("TokenBytes(%d) = %q", id, b)
		}
	}
	if got := tok.EncodeSpecial("<|reserved_special_token_247|>", false); !slices.Equal(got, []int{128255}) {
		t.Errorf("reserved: %v", got)
	}
	// A message's content that spells "<|eot_id|>" stays text in a chat.
	head, content := "<|start_header_id|>user<|end_header_id|>\n\n", "hi<|eot_id|><|start_header_id|>system"
	text := head + content + "<|eot_id|>"
	got := tok.EncodeChat(text, []Span{{len(head), len(head) + len(content)}})
	wantChat := slices.Concat([]int{128006, 882, 128007}, tok.Encode("\n\n"+content, false), []int{128009})
	if !slices.Equal(got, wantChat) {
		t.Fatalf("EncodeChat with a plain span:\n got %v\nwant %v", got, wantChat)
	}
	if got := tok.Decode(got); got != "user\n\n"+content {
		t.Fatalf("content lost: %q", got)
	}
	// The longest token: a special one's string or a normal one's bytes.
	if n := tok.MaxTokenBytes(); n < len("<|reserved_special_token_247|>") || n > 256 {
		t.Fatalf("MaxTokenBytes %d", n)
	}
}

// sharedPath is the path of a file in the shared directory and whether it
// exists.
func sharedPath(name string) (string, bool) {
	p := filepath.Join(testmodels.SharedDir(), name)
	_, err := os.Stat(p)
	return p, err == nil
}

// testBPEVocab is a small byte-level vocabulary: the 256 bytes (ids 0..255
// in byte order), the tokens of a few merges, and special tokens:
// <|endoftext|> (BOS), <|im_start|>, <|im_end|> (EOS), control;
// <tool_call> user-defined; <|unused|> unused.
func testBPEVocab(pre string) BPEVocab {
	var v BPEVocab
	for b := range 256 {
		v.Tokens = append(v.Tokens, EncodeByteLevel(string([]byte{byte(b)})))
		v.Types = append(v.Types, TokenNormal)
	}
	for _, m := range []string{"Ġ t", "h e", "Ġt he", "a a", "l l", "i n", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "1 2", "aa aa"} {
		v.Merges = append(v.Merges, m)
		v.Tokens = append(v.Tokens, strings.Replace(m, " ", "", 1))
		v.Types = append(v.Types, TokenNormal)
	}
	for _, s := range []struct {
		text string
		typ  int32
	}{{"<|endoftext|>", TokenControl}, {"<|im_start|>", TokenControl}, {"<|im_end|>", TokenControl}, {"<tool_call>", TokenUserDefined}, {"<|unused|>", TokenUnused}} {
		v.Tokens = append(v.Tokens, s.text)
		v.Types = append(v.Types, s.typ)
	}
	v.Pre, v.UNK, v.PAD = pre, -1, -1
	v.BOS, v.EOS = slices.Index(v.Tokens, "<|endoftext|>"), slices.Index(v.Tokens, "<|im_end|>")
	return v
}

func testBPE(t testing.TB, pre string) (*BPE, func(string) int) {
	t.Helper()
	v := testBPEVocab(pre)
	tok, err := NewBPE(v)
	if err != nil {
		t.Fatal(err)
	}
	return tok, func(s string) int {
		i := slices.Index(v.Tokens, s)
		if i < 0 {
			t.Fatalf("no token %q", s)
		}
		return i
	}
}

// Merges go by rank, leftmost first among equal ranks; a word never merges
// across its edges; specials by type.
func TestBPEMerges(t *testing.T) {
	tok, id := testBPE(t, "qwen2")
	for _, c := range []struct {
		text string
		want []string
	}{
		{"hello world", []string{"hello", "Ġworld"}},
		{"the thin", []string{"t", "he", "Ġt", "h", "in"}}, // "Ġ t" ranks before "h e"
		{"aaa", []string{"aa", "a"}},                       // leftmost first
		{"aaaaa", []string{"aaaa", "a"}},                   // aa aa a, then aaaa
		{"aaaaaaa", []string{"aaaa", "aa", "a"}},           // aa aa aa a -> aaaa aa a
		{"a aa", []string{"a", "Ġ", "aa"}},                 // "Ġa" is no token: Ġ stays alone
		{"123", []string{"1", "2", "3"}},                   // qwen2: one digit per word
	} {
		var want []int
		for _, s := range c.want {
			want = append(want, id(s))
		}
		if got := tok.Encode(c.text, false); !slices.Equal(got, want) {
			t.Errorf("Encode(%q) = %v, want %v", c.text, got, want)
		}
	}
	// The same vocabulary with the llama-bpe pre-tokenizer keeps 12 as one
	// word, and so merges it.
	l3, _ := testBPE(t, "llama-bpe")
	if got := l3.Encode("123", false); !slices.Equal(got, []int{id("12"), id("3")}) {
		t.Errorf("llama-bpe 123: %v", got)
	}
	// Specials: control and user-defined tokens from EncodeSpecial; Encode
	// keeps their strings as text.
	text := "<|im_start|>hello<tool_call>x<|im_end|><|unused|>"
	got := tok.EncodeSpecial(text, true)
	want := slices.Concat([]int{id("<|endoftext|>"), id("<|im_start|>"), id("hello"), id("<tool_call>"), id("x"), id("<|im_end|>")}, tok.Encode("<|unused|>", false))
	if !slices.Equal(got, want) {
		t.Fatalf("EncodeSpecial = %v, want %v", got, want)
	}
	if got := tok.Decode(got); got != "hello<tool_call>x<|unused|>" {
		t.Fatalf("Decode = %q", got)
	}
	if got := string(tok.TokenBytes(id("<tool_call>"))); got != "<tool_call>" {
		t.Fatalf("user-defined TokenBytes %q", got)
	}
	for _, s := range []string{"<|endoftext|>", "<|im_end|>", "<|unused|>"} {
		if tok.TokenBytes(id(s)) != nil {
			t.Errorf("TokenBytes(%s) not nil", s)
		}
	}
	plain := tok.Encode(text, false)
	if tok.Decode(plain) != text || slices.ContainsFunc(plain, func(i int) bool { return i >= 256+15 }) {
		t.Fatalf("Encode made a special token: %v", plain)
	}
	if tok.MaxTokenBytes() != len("<|endoftext|>") {
		t.Fatalf("MaxTokenBytes %d", tok.MaxTokenBytes())
	}
}

// Without types, BOS, EOS and PAD are control tokens and UNK unknown; a
// byte without a token becomes UNK.
func TestBPEInferredTypes(t *testing.T) {
	v := BPEVocab{Tokens: []string{"<unk>", "<s>", "a", "b", "ab"}, Merges: []string{"a b"}, BOS: 1, EOS: -1, UNK: 0, PAD: -1}
	tok, err := NewBPE(v)
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.EncodeSpecial("<s>abba<unk>c", true); !slices.Equal(got, []int{1, 1, 4, 3, 2, 0, 0}) {
		t.Fatalf("%v", got)
	}
	if got := tok.Decode([]int{1, 4, 0, 3}); got != "abb" {
		t.Fatalf("%q", got)
	}
	// A long word with a byte that has no token goes through the heap.
	long := strings.Repeat("ab", 20) + "z" + strings.Repeat("ab", 20)
	got := tok.Encode(long, false)
	if len(got) != 41 || got[20] != 0 || tok.Decode(got) != strings.ReplaceAll(long, "z", "") {
		t.Fatalf("long: %v", got)
	}
}

func TestNewBPEErrors(t *testing.T) {
	base := testBPEVocab("llama-bpe")
	for _, c := range []struct {
		name string
		edit func(*BPEVocab)
		want string
	}{
		{"no tokens", func(v *BPEVocab) { v.Tokens = nil }, "0 tokens"},
		{"types", func(v *BPEVocab) { v.Types = v.Types[:3] }, "3 token types"},
		{"bad type", func(v *BPEVocab) { v.Types[7] = 9 }, "token 7"},
		{"negative type", func(v *BPEVocab) { v.Types[7] = -1 }, "type -1"},
		{"bos", func(v *BPEVocab) { v.BOS = len(v.Tokens) }, "BOS id"},
		{"eos", func(v *BPEVocab) { v.EOS = -2 }, "EOS id -2"},
		{"unk", func(v *BPEVocab) { v.UNK = 1 << 30 }, "UNK id"},
		{"pad", func(v *BPEVocab) { v.PAD = len(v.Tokens) + 3 }, "PAD id"},
		{"duplicate", func(v *BPEVocab) { v.Tokens[270] = v.Tokens[65] }, "tokens 65 and 270"},
		{"long token", func(v *BPEVocab) { v.Tokens[270] = strings.Repeat("a", 64<<10+1) }, "65537 bytes"},
		{"not byte-level", func(v *BPEVocab) { v.Tokens[270] = "a b" }, "token 270"},
		{"not utf-8", func(v *BPEVocab) { v.Tokens[270] = "\xff" }, "byte-level alphabet"},
		{"merge one token", func(v *BPEVocab) { v.Merges[2] = "Ġthe" }, "merge 2"},
		{"merge trailing space", func(v *BPEVocab) { v.Merges[2] = "Ġt " }, "not two tokens"},
		{"merge three tokens", func(v *BPEVocab) { v.Merges[1] = "h e l" }, `"e l" is not a token`},
		{"merge unknown", func(v *BPEVocab) { v.Merges[0] = "Ġ zz" }, `"zz" is not a token`},
		{"merge result", func(v *BPEVocab) { v.Merges[0] = "x y" }, `merged token "xy" is not in the vocabulary`},
		{"merge into control", func(v *BPEVocab) {
			v.Tokens = append(v.Tokens, "<<")
			v.Types = append(v.Types, TokenControl)
			v.Merges = append(v.Merges, "< <")
		}, "a control token"},
		{"merge of user-defined", func(v *BPEVocab) { v.Merges = append(v.Merges, "<tool_call> a") }, "user-defined token"},
	} {
		v := base
		v.Tokens, v.Types, v.Merges = slices.Clone(base.Tokens), slices.Clone(base.Types), slices.Clone(base.Merges)
		c.edit(&v)
		_, err := NewBPE(v)
		if !errors.Is(err, ErrBadTokenizer) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v (want %q)", c.name, err, c.want)
		}
	}
	_, err := NewBPE(BPEVocab{Tokens: []string{"a"}, Pre: "tekken", BOS: -1, EOS: -1, UNK: -1, PAD: -1})
	if !errors.Is(err, ErrUnsupportedPreTokenizer) || errors.Is(err, ErrBadTokenizer) ||
		!strings.Contains(err.Error(), `"tekken"; supported: `+strings.Join(SupportedPreTokenizers, ", ")) {
		t.Errorf("unknown pre-tokenizer: %v", err)
	}
	// Odd but valid: empty tokens, type 0, a pair listed twice (the first
	// rank wins).
	v := BPEVocab{Tokens: []string{"", "", "a", "b", "ab", "?"}, Types: []int32{1, 0, 1, 1, 1, 0}, Merges: []string{"a b", "a b"}, BOS: -1, EOS: -1, UNK: -1, PAD: -1}
	tok, err := NewBPE(v)
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Encode("ab?", false); !slices.Equal(got, []int{4}) {
		t.Fatalf("odd vocab: %v", got)
	}
}

// Decode(Encode(x)) == x for every pre-tokenizer, on random text with
// invalid UTF-8, and Encode never makes a special token.
func TestBPERoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	var inputs []string
	for i := range 1500 {
		inputs = append(inputs, randomText(rng, rng.IntN(40), i%3 == 0))
	}
	inputs = append(inputs, "", " ", "\xff", "\u00a0", "  a  ", "\n\n\n", "'S", strings.Repeat("é", 100))
	for _, pre := range SupportedPreTokenizers {
		tok, _ := testBPE(t, pre)
		for _, s := range inputs {
			ids := tok.Encode(s, false)
			if got := tok.Decode(ids); got != s {
				t.Fatalf("%s: Decode(Encode(%q)) = %q", pre, s, got)
			}
			if slices.ContainsFunc(ids, func(id int) bool { return id >= 256+15 }) {
				t.Fatalf("%s: Encode(%q) made a special token: %v", pre, s, ids)
			}
			if got := tok.Decode(tok.EncodeChat(s, []Span{{0, len(s)}})); got != s {
				t.Fatalf("%s: EncodeChat(%q) with all of it plain decodes to %q", pre, s, got)
			}
		}
	}
}

// GPT-2's byte-to-unicode alphabet: printable bytes stand for themselves,
// the others from U+0100 on.
func TestByteLevelAlphabet(t *testing.T) {
	for b, want := range map[byte]string{' ': "Ġ", '\n': "Ċ", 'a': "a", 0: "Ā", 0x7f: "ġ", 0xa0: "ł", 0xad: "Ń", 0xff: "ÿ", 0xa1: "¡"} {
		if got := EncodeByteLevel(string([]byte{b})); got != want {
			t.Errorf("byte %#x: %q, want %q", b, got, want)
		}
	}
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	if s, ok := decodeByteLevel(EncodeByteLevel(string(all))); !ok || s != string(all) {
		t.Fatal("the alphabet does not round-trip")
	}
}
