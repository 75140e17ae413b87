package tokenizer

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
)

// pieces is what pre-tokenizer name cuts text into.
func pieces(t testing.TB, name, text string) []string {
	t.Helper()
	p, ok := lookupPreTokenizer(name)
	if !ok {
		t.Fatalf("no pre-tokenizer %q", name)
	}
	var out []string
	p.split(text, func(w string) { out = append(out, w) })
	return out
}

type preCase struct {
	text string
	want []string
}

func checkPieces(t *testing.T, name string, cases []preCase) {
	t.Helper()
	for _, c := range cases {
		if got := pieces(t, name, c.text); !slices.Equal(got, c.want) {
			t.Errorf("%s: %q -> %q, want %q", name, c.text, got, c.want)
		}
	}
}

// The Llama 3 expression, alternative by alternative.
func TestPreTokenizeLlama3(t *testing.T) {
	checkPieces(t, "llama-bpe", []preCase{
		// (?i:'s|'t|'re|'ve|'m|'ll|'d): both cases, before the letters rule.
		{"don't", []string{"don", "'t"}},
		{"DON'T I'M we'RE they'Ve he'LL she'D it'S", []string{"DON", "'T", " I", "'M", " we", "'RE", " they", "'Ve", " he", "'LL", " she", "'D", " it", "'S"}},
		{"x'sy", []string{"x", "'s", "y"}},
		{"'x", []string{"'x"}}, // not a contraction: [^\r\n\p{L}\p{N}]?\p{L}+
		{" 's", []string{" '", "s"}},
		// [^\r\n\p{L}\p{N}]?\p{L}+: one non-letter, non-digit, non-newline
		// character (a space, a tab, punctuation) joins the letters.
		{"hello world", []string{"hello", " world"}},
		{"\thello (world", []string{"\thello", " (", "world"}},
		{"(x", []string{"(x"}},
		{"\nx", []string{"\n", "x"}},
		{"über naïve Ωμέγα 日本語", []string{"über", " naïve", " Ωμέγα", " 日本語"}},
		// \p{N}{1,3}: digits in groups of three, never with a space.
		{"1234567", []string{"123", "456", "7"}},
		{"x 1234", []string{"x", " ", "123", "4"}},
		{"٣٤٥٦ ½Ⅻ", []string{"٣٤٥", "٦", " ", "½Ⅻ"}},
		{"1e10", []string{"1", "e", "10"}},
		//  ?[^\s\p{L}\p{N}]+[\r\n]*: punctuation runs take one space before
		// and the newlines after.
		{"a, b!!!\n\nc", []string{"a", ",", " b", "!!!\n\n", "c"}},
		{" ?!\r\n\r\nx", []string{" ?!\r\n\r\n", "x"}},
		{"x -42", []string{"x", " -", "42"}},
		{"\t.", []string{"\t", "."}}, // only a plain space is taken
		// \s*[\r\n]+: white space up to its last newline.
		{"a \n b", []string{"a", " \n", " b"}},
		{"x\n\n\ny", []string{"x", "\n\n\n", "y"}},
		{"   \n  \n\t \r\nz", []string{"   \n  \n\t \r\n", "z"}},
		{"\n \n", []string{"\n \n"}},
		// \s+(?!\S): a run of white space leaves its last character to the
		// next word, unless it ends the text.
		{"a  b", []string{"a", " ", " b"}},
		{"a    b", []string{"a", "   ", " b"}},
		{"end   ", []string{"end", "   "}},
		{"  \t x", []string{"  \t", " x"}},
		// \s is Unicode white space: NBSP, U+3000, \v, \f, U+2028.
		{"a\u00a0\u00a0b", []string{"a", "\u00a0", "\u00a0b"}},
		{"a\u3000\u3000b", []string{"a", "\u3000", "\u3000b"}},
		{"x\v\vy", []string{"x", "\v", "\vy"}},
		{"a\u2028b", []string{"a", "\u2028b"}},
		// \s+: one white-space character before a non-letter.
		{"x\t1", []string{"x", "\t", "1"}},
		// Zero-width and format characters are not white space.
		{"a\u200bb", []string{"a", "\u200bb"}},
	})
}

// Qwen 2's expression is Llama 3's with single digits.
func TestPreTokenizeQwen2(t *testing.T) {
	checkPieces(t, "qwen2", []preCase{
		{"1234567", []string{"1", "2", "3", "4", "5", "6", "7"}},
		{"x 12", []string{"x", " ", "1", "2"}},
		{"DON'T stop", []string{"DON", "'T", " stop"}},
		{"a  b\n\n", []string{"a", " ", " b", "\n\n"}},
	})
}

// GPT-2's expression: case-sensitive contractions, an optional plain space
// before letters, digits (any number) or punctuation, no newline rules.
func TestPreTokenizeGPT2(t *testing.T) {
	checkPieces(t, "gpt2", []preCase{
		{"don't DON'T", []string{"don", "'t", " DON", "'", "T"}},
		{"hello world 1234567 -42", []string{"hello", " world", " 1234567", " -", "42"}},
		{"a, b!!!\n\nc", []string{"a", ",", " b", "!!!", "\n", "\n", "c"}},
		{"\thello", []string{"\t", "hello"}},
		{"a  b", []string{"a", " ", " b"}},
		{"end   ", []string{"end", "   "}},
		{"x \n y", []string{"x", " \n", " y"}},
	})
	checkPieces(t, "gpt-2", []preCase{{"it's", []string{"it", "'s"}}})
}

// SmolLM: every digit alone, then GPT-2's expression on the text between.
func TestPreTokenizeSmolLM(t *testing.T) {
	checkPieces(t, "smollm", []preCase{
		{"x 123", []string{"x", " ", "1", "2", "3"}},
		{"a1b", []string{"a", "1", "b"}},
		{"it's 2025!", []string{"it", "'s", " ", "2", "0", "2", "5", "!"}},
	})
}

// llama.cpp's default: punctuation runs apart, then GPT-2, then numbers,
// then three ASCII digits at a time.
func TestPreTokenizeDefault(t *testing.T) {
	checkPieces(t, "default", []preCase{
		{"Hello, world!", []string{"Hello", ",", " world", "!"}},
		{"it's", []string{"it", "'", "s"}},
		{"x 12345", []string{"x", " ", "123", "45"}},
		{"a+b<=c|d", []string{"a", "+", "b", "<=", "c", "|", "d"}},
		{"1,000.5", []string{"1", ",", "000", ".", "5"}},
	})
	checkPieces(t, "", []preCase{{"a, b", []string{"a", ",", " b"}}})
}

// The pieces of every pre-tokenizer match those of the regular expressions
// as the Python regex module applies them (testdata/pretokenize.json, made
// by testdata/pretokenize_gen.py): an independent engine with look-ahead
// and Unicode classes.
func TestPreTokenizeMatchesRegex(t *testing.T) {
	data, err := os.ReadFile("testdata/pretokenize.json")
	if err != nil {
		t.Fatal(err)
	}
	var golden struct {
		Cases []struct {
			Text   string              `json:"text"`
			Pieces map[string][]string `json:"pieces"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(data, &golden); err != nil {
		t.Fatal(err)
	}
	if len(golden.Cases) < 400 {
		t.Fatalf("%d cases", len(golden.Cases))
	}
	for _, c := range golden.Cases {
		if len(c.Pieces) != 5 {
			t.Fatalf("%q: pieces for %d pre-tokenizers", c.Text, len(c.Pieces))
		}
		for name, want := range c.Pieces {
			if got := pieces(t, name, c.Text); !slices.Equal(got, want) && len(got)+len(want) > 0 {
				t.Errorf("%s: %q -> %q, regex %q", name, c.Text, got, want)
			}
		}
	}
}

// Every text is cut into non-empty pieces that concatenate back to it,
// invalid UTF-8 included; a byte that is not UTF-8 is a character of no
// class (like punctuation).
func TestPreTokenizeCoversText(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	inputs := []string{"", "\xff", "a\xffb", "\xc3", " \xe2\x82", "\xf0\x9f\x99 x", "1\x802"}
	for range 2000 {
		inputs = append(inputs, randomText(rng, rng.IntN(30), true))
	}
	for _, name := range SupportedPreTokenizers {
		for _, s := range inputs {
			ps := pieces(t, name, s)
			if strings.Join(ps, "") != s || slices.Contains(ps, "") {
				t.Fatalf("%s: %q -> %q", name, s, ps)
			}
		}
	}
	checkPieces(t, "llama-bpe", []preCase{
		{"a\xffb", []string{"a", "\xffb"}},
		{"x \xff\xfe\n", []string{"x", " \xff\xfe\n"}},
		{"\xc3(", []string{"\xc3("}},
	})
}

func TestPreTokenizerNames(t *testing.T) {
	for _, name := range SupportedPreTokenizers {
		if _, ok := lookupPreTokenizer(name); !ok {
			t.Errorf("%q listed but unknown", name)
		}
	}
	if len(SupportedPreTokenizers) != len(preTokenizers) {
		t.Errorf("%d names listed, %d known", len(SupportedPreTokenizers), len(preTokenizers))
	}
	for name, want := range map[string]bool{"llama-bpe": true, "llama3": true, "falcon3": true, "qwen2": false, "smollm": false, "gpt2": false, "default": false, "nonsense": false} {
		if got := BPEDefaultAddBOS(name); got != want {
			t.Errorf("BPEDefaultAddBOS(%q) = %v", name, got)
		}
	}
}
