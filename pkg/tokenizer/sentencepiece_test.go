package tokenizer

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// The four prompts of the llama2.c reference encode to run.c's ids, through
// tokenizer.bin (legacy path) and through the GGUF metadata of the same
// model (NewSentencePiece).
func TestStoriesReferencePrompts(t *testing.T) {
	cases := referenceCases(t)
	toks := map[string]*SentencePiece{"tok512.bin": tok512(t), "stories260K.gguf": storiesGGUF(t)}
	for name, tok := range toks {
		for _, c := range cases {
			if got := tok.Encode(c.PromptText, true); !slices.Equal(got, c.PromptTokenIDs) {
				t.Errorf("%s: Encode(%q) = %v, run.c %v", name, c.PromptText, got, c.PromptTokenIDs)
			}
			// The continuation text too (run.c's printed text): same ids
			// through both files and the old algorithm.
			want := quadraticFrom(toks["tok512.bin"]).encode(c.StdoutText, true)
			if got := tok.Encode(c.StdoutText, true); !slices.Equal(got, want) {
				t.Errorf("%s: Encode(stdout) differs from run.c's algorithm:\n got %v\nwant %v", name, got, want)
			}
			if got := tok.Decode(tok.Encode(c.StdoutText, true)); got != c.StdoutText {
				t.Errorf("%s: round trip %q", name, got)
			}
		}
	}
}

func TestStoriesGGUFVocab(t *testing.T) {
	v := storiesGGUFVocab(t)
	if len(v.Tokens) != 512 || len(v.Scores) != 512 || len(v.Types) != 512 || v.BOS != 1 || v.EOS != 2 || v.UNK != 0 || v.PAD != -1 {
		t.Fatalf("vocab: %d tokens, %d scores, %d types, bos %d eos %d unk %d pad %d", len(v.Tokens), len(v.Scores), len(v.Types), v.BOS, v.EOS, v.UNK, v.PAD)
	}
	// "<s>" and "</s>" are control tokens in this vocabulary, "<unk>" unknown.
	if v.Tokens[1] != "<s>" || v.Types[1] != TokenControl || v.Tokens[2] != "</s>" || v.Types[2] != TokenControl || v.Types[0] != TokenUnknown {
		t.Fatalf("specials: %q %d, %q %d, %d", v.Tokens[1], v.Types[1], v.Tokens[2], v.Types[2], v.Types[0])
	}
	gguf, bin := storiesGGUF(t), tok512(t)
	if !gguf.split || !bin.split {
		t.Fatal("the stories vocabulary has no inner '▁': words should be encoded one by one")
	}
	// The same vocabulary in both files: '▁' in one, ' ' in the other.
	for id := range 512 {
		if a, b := gguf.TokenBytes(id), bin.TokenBytes(id); string(a) != string(b) {
			t.Fatalf("token %d: %q vs %q", id, a, b)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		s := randomText(rng, rng.IntN(40), true)
		if a, b := gguf.Encode(s, true), bin.Encode(s, true); !slices.Equal(a, b) {
			t.Fatalf("%q: gguf %v, tokenizer.bin %v", s, a, b)
		}
	}
}

// The priority-queue encoder gives run.c's ids: random text on the stories
// vocabulary and on the small test vocabulary.
func TestEncodeMatchesQuadratic(t *testing.T) {
	pieces, scores := testVocab()
	small, err := newSentencePiece(SPMVocab{Tokens: pieces, Scores: scores, BOS: 1, EOS: 2, UNK: 0, PAD: -1, AddSpacePrefix: true}, true)
	if err != nil {
		t.Fatal(err)
	}
	toks := map[string]*SentencePiece{"test vocab": small, "tok512.bin": tok512(t)}
	for name, tok := range toks {
		// Run.c's byte fallbacks never merge, the new encoder's raw
		// characters could: the same only if every character of a normal
		// piece is a piece.
		for _, p := range tok.lookup {
			for _, r := range tok.text[p] {
				if _, ok := tok.lookup[string(r)]; !ok {
					t.Fatalf("%s: piece %q has character %q that is not a piece", name, tok.text[p], r)
				}
			}
		}
		q := quadraticFrom(tok)
		rng := rand.New(rand.NewPCG(3, 4))
		for i := range 2000 {
			s := randomText(rng, rng.IntN(30), i%2 == 0)
			if got, want := tok.Encode(s, i%3 == 0), q.encode(s, i%3 == 0); !slices.Equal(got, want) {
				t.Fatalf("%s: Encode(%q) = %v, run.c %v", name, s, got, want)
			}
		}
	}
}

// Encoding word by word gives what merging the whole text at once gives
// (the pre-split argument of encodeText), including for vocabularies with
// leading runs of '▁' like llama's.
func TestPreSplitEquivalence(t *testing.T) {
	vocabs := map[string]*SentencePiece{"tok512.bin": tok512(t), "synthetic 32k": synthetic32k(t)}
	for name, tok := range vocabs {
		if !tok.split {
			t.Fatalf("%s: not split", name)
		}
		whole := *tok
		whole.split, whole.cache = false, nil
		rng := rand.New(rand.NewPCG(5, 6))
		for i := range 1000 {
			s := randomText(rng, rng.IntN(60), i%2 == 0)
			if got, want := tok.Encode(s, true), whole.Encode(s, true); !slices.Equal(got, want) {
				t.Fatalf("%s: words %v, whole %v for %q", name, got, want, s)
			}
		}
	}
	// A piece with a '▁' after a non-space could be made across a word
	// start: such a vocabulary is merged as one list, and does merge it.
	tok, err := NewSentencePiece(SPMVocab{
		Tokens: []string{"<unk>", "▁", "o", "f", "t", "h", "e", "▁o", "▁of", "▁t", "▁th", "▁the", "▁of▁the"},
		Scores: []float32{0, -1, -1, -1, -1, -1, -1, -2, -3, -4, -5, -6, -7},
		BOS:    -1, EOS: -1, UNK: 0, PAD: -1, AddSpacePrefix: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if tok.split {
		t.Fatal("split with an inner '▁'")
	}
	if got := tok.Encode("of the", false); !slices.Equal(got, []int{12}) {
		t.Fatalf("of the: %v", got)
	}
}

// Decode(Encode(x, true)) == x for every string when the vocabulary has
// all 256 byte pieces and adds the dummy prefix: Encode puts a space before
// x, and Decode drops the leading space of the piece after BOS (run.c's
// rule). Invalid UTF-8 round-trips too (byte by byte), and so does a
// literal U+2581 (it is not a space here, so it falls back to bytes).
// Without BOS the dummy space stays: Decode(Encode(x, false)) == " "+x.
func TestRoundTrip(t *testing.T) {
	toks := map[string]*SentencePiece{"tok512.bin": tok512(t), "stories260K.gguf": storiesGGUF(t), "synthetic 32k": synthetic32k(t)}
	rng := rand.New(rand.NewPCG(7, 8))
	var inputs []string
	for i := range 3000 {
		inputs = append(inputs, randomText(rng, rng.IntN(50), i%3 == 0))
	}
	inputs = append(inputs, "", " ", "  ", " a", "a ", "   leading", "trailing   ", "\u2581", " \u2581 ", "\n", "\xff", "<s>", "</s>")
	for name, tok := range toks {
		for _, s := range inputs {
			if got := tok.Decode(tok.Encode(s, true)); got != s {
				t.Fatalf("%s: Decode(Encode(%q, true)) = %q", name, s, got)
			}
			want := s
			if s != "" {
				want = " " + s
			}
			if got := tok.Decode(tok.Encode(s, false)); got != want {
				t.Fatalf("%s: Decode(Encode(%q, false)) = %q", name, s, got)
			}
			if got := tok.Encode(s, false); slices.Contains(got, tok.bos) || slices.Contains(got, tok.eos) {
				t.Fatalf("%s: Encode(%q) made a control token: %v", name, s, got)
			}
		}
	}
}

func FuzzEncodeRoundTrip(f *testing.F) {
	pieces, scores := testVocab()
	small, err := newSentencePiece(SPMVocab{Tokens: pieces, Scores: scores, BOS: 1, EOS: 2, UNK: 0, PAD: -1, AddSpacePrefix: true}, true)
	if err != nil {
		f.Fatal(err)
	}
	toks := []*SentencePiece{small}
	if path, ok := modelPath("tok512.bin"); ok {
		tok, err := LoadSentencePiece(path, 512)
		if err != nil {
			f.Fatal(err)
		}
		toks = append(toks, tok)
	}
	for _, s := range []string{"", "hello world", "  two  spaces ", "é ü 🙂", "\xff\xfe", "<s>x</s>", "\u2581a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, tok := range toks {
			ids := tok.Encode(s, true)
			if got := tok.Decode(ids); got != s {
				t.Fatalf("round trip %q -> %q", s, got)
			}
			if len(s) < 200 {
				if want := quadraticFrom(tok).encode(s, true); !slices.Equal(ids, want) {
					t.Fatalf("%q: %v, run.c %v", s, ids, want)
				}
			}
			tok.EncodeSpecial(s, true)
			tok.EncodeChat(s, []Span{{len(s) / 3, len(s) / 2}})
		}
	})
}

// Pathological inputs finish, without panicking, in time that grows like
// n log n; the times are logged, not asserted.
func TestLargeInputs(t *testing.T) {
	bpe, _ := testBPE(t, "llama-bpe")
	toks := map[string]Tokenizer{"tok512.bin": tok512(t), "synthetic 32k": synthetic32k(t), "bpe": bpe}
	inputs := map[string]string{
		"a×1e6":       strings.Repeat("a", 1e6),
		"space×1e6":   strings.Repeat(" ", 1e6),
		"é×1e6":       strings.Repeat("é", 1e6),
		"invalid×1e6": strings.Repeat("\xff\xc3", 5e5),
		"words×1e5":   strings.Repeat("the cat ", 125000),
		"<s>×1e5":     strings.Repeat("<s>", 33333),
		"empty":       "",
	}
	for name, tok := range toks {
		for what, s := range inputs {
			start := time.Now()
			ids := tok.Encode(s, true)
			t.Logf("%s: %s: %d tokens in %v", name, what, len(ids), time.Since(start))
			if got := tok.Decode(ids); got != s {
				t.Errorf("%s: %s does not round-trip", name, what)
			}
			if name == "tok512.bin" { // the same merging, plus the scan for specials
				start := time.Now()
				ids := tok.EncodeSpecial(s, true)
				t.Logf("%s: %s: EncodeSpecial: %d tokens in %v", name, what, len(ids), time.Since(start))
			}
		}
	}
}

// EncodeSpecial turns the strings of control tokens into their ids; Encode
// keeps them text.
func TestEncodeSpecialStories(t *testing.T) {
	tok := storiesGGUF(t)
	text := "<s>Once upon a time</s><s>Lily</s>"
	got := tok.EncodeSpecial(text, false)
	var want []int
	want = append(want, 1)
	want = append(want, tok.Encode("Once upon a time", false)...)
	want = append(want, 2, 1)
	want = append(want, tok.Encode("Lily", false)...)
	want = append(want, 2)
	if !slices.Equal(got, want) {
		t.Fatalf("EncodeSpecial = %v, want %v", got, want)
	}
	plain := tok.Encode(text, true)
	if slices.Contains(plain[1:], 1) || slices.Contains(plain, 2) || tok.Decode(plain) != text {
		t.Fatalf("Encode recognised a special token: %v", plain)
	}
	// With bos, and the dummy space before every text fragment, as llama.cpp.
	if got := tok.EncodeSpecial("a</s>b", true); !slices.Equal(got, slices.Concat([]int{1}, tok.Encode("a", false), []int{2}, tok.Encode("b", false))) {
		t.Fatalf("a</s>b: %v", got)
	}
	if got := tok.EncodeSpecial("", true); !slices.Equal(got, []int{1}) {
		t.Fatalf("empty: %v", got)
	}
	// tokenizer.bin's control pieces are "\n<s>\n" and "\n</s>\n".
	bin := tok512(t)
	if got := bin.EncodeSpecial("hi\n</s>\n", false); !slices.Equal(got, slices.Concat(bin.Encode("hi", false), []int{2})) {
		t.Fatalf("tok512: %v", got)
	}
	if got := bin.EncodeSpecial("<unk>", false); !slices.Equal(got, []int{0}) {
		t.Fatalf("tok512 <unk>: %v", got)
	}
}

// specialVocab has control, user-defined and unknown tokens that overlap.
func specialVocab(t *testing.T, addSpacePrefix bool) *SentencePiece {
	tok, _ := specialVocabTypes(t, addSpacePrefix)
	return tok
}

func specialVocabTypes(t *testing.T, addSpacePrefix bool) (*SentencePiece, []int32) {
	t.Helper()
	tokens := []string{"<unk>", "<s>", "</s>", "<|a|>", "x<|", "[INST]", "▁", "x", "a", "b", "<", "|", ">", "▁x", "<|a|>x", "[", "]", "I", "N", "S", "T", "▁▁", "<unused0>"}
	types := make([]int32, len(tokens))
	for i := range types {
		types[i] = TokenNormal
	}
	types[0], types[1], types[2], types[3] = TokenUnknown, TokenControl, TokenControl, TokenControl
	types[4], types[5], types[14], types[22] = TokenUserDefined, TokenUserDefined, TokenControl, TokenUnused
	var bytes []string
	for b := range 256 {
		bytes = append(bytes, fmt.Sprintf("<0x%02X>", b))
	}
	tokens = append(tokens, bytes...)
	for range bytes {
		types = append(types, TokenByte)
	}
	tok, err := NewSentencePiece(SPMVocab{Tokens: tokens, Types: types, BOS: 1, EOS: 2, UNK: 0, PAD: -1, AddBOS: true, AddSpacePrefix: addSpacePrefix})
	if err != nil {
		t.Fatal(err)
	}
	return tok, types
}

func TestEncodeSpecialPartition(t *testing.T) {
	tok, types := specialVocabTypes(t, false)
	for _, c := range []struct {
		text string
		want []int
	}{
		// Longest first: "<|a|>x" (6 bytes) beats "<|a|>" and "x<|".
		{"<|a|>x", []int{14}},
		// "<|a|>" (5) is taken before "x<|" (3) although "x<|" starts first:
		// llama.cpp goes token by token, not left to right.
		{"x<|a|>", []int{7, 3}},
		{"x<|b", []int{4, 9}},
		{"[INST]a[INST]", []int{5, 8, 5}},
		{"<s></s><unk>", []int{1, 2, 0}},
		// Unused tokens are never special.
		{"<unused0>", []int{10, 23 + 'u', 23 + 'n', 23 + 'u', 23 + 's', 23 + 'e', 23 + 'd', 23 + '0', 12}},
	} {
		if got := tok.EncodeSpecial(c.text, false); !slices.Equal(got, c.want) {
			t.Errorf("EncodeSpecial(%q) = %v, want %v", c.text, got, c.want)
		}
		if got := tok.Decode(tok.Encode(c.text, false)); got != c.text {
			t.Errorf("Encode(%q) does not round-trip: %q", c.text, got)
		}
		for _, id := range tok.Encode(c.text, false) {
			if typ := types[id]; typ != TokenNormal && typ != TokenByte {
				t.Errorf("Encode(%q) made token %d of type %d", c.text, id, typ)
			}
		}
	}
	// TokenBytes by type.
	for id, want := range map[int]string{0: "", 1: "", 2: "", 3: "", 4: "x<|", 5: "[INST]", 6: " ", 13: " x", 21: "  ", 22: "", 23 + 'A': "A"} {
		if got := string(tok.TokenBytes(id)); got != want {
			t.Errorf("TokenBytes(%d) = %q, want %q", id, got, want)
		}
	}
	// The dummy prefix goes before every text fragment (llama.cpp), and not
	// before a special token at the start.
	tok = specialVocab(t, true)
	if got := tok.EncodeSpecial("[INST]x[INST]", true); !slices.Equal(got, []int{1, 5, 13, 5}) {
		t.Errorf("with prefix: %v", got)
	}
	if got := tok.EncodeSpecial("x[INST]x", false); !slices.Equal(got, []int{13, 5, 13}) {
		t.Errorf("with prefix: %v", got)
	}
}

func TestEncodeChat(t *testing.T) {
	tok := storiesGGUF(t)
	// Template markup around two contents; the second spells "</s><s>".
	head, c1, mid, c2, tail := "<s>User: ", "Hello there", "</s>\n<s>User: ", "bye</s><s>now", "</s>"
	text := head + c1 + mid + c2 + tail
	spans := []Span{{len(head), len(head) + len(c1)}, {len(head + c1 + mid), len(head + c1 + mid + c2)}}
	got := tok.EncodeChat(text, spans)
	want := slices.Concat([]int{1}, tok.Encode("User: "+c1, false), []int{2}, tok.Encode("\n", false), []int{1}, tok.Encode("User: "+c2, false), []int{2})
	if !slices.Equal(got, want) {
		t.Fatalf("EncodeChat:\n got %v\nwant %v", got, want)
	}
	// Without special strings in the contents it is EncodeSpecial.
	text2 := head + c1 + mid + "fine" + tail
	spans2 := []Span{{len(head), len(head) + len(c1)}, {len(head + c1 + mid), len(text2) - len(tail)}}
	if got, want := tok.EncodeChat(text2, spans2), tok.EncodeSpecial(text2, false); !slices.Equal(got, want) {
		t.Fatalf("EncodeChat %v, EncodeSpecial %v", got, want)
	}
	// A span that only touches a special token does not hide it; one that
	// overlaps it by a byte does; odd spans are tolerated.
	if got := tok.EncodeChat("a</s>b", []Span{{0, 1}, {5, 6}}); !slices.Contains(got, 2) {
		t.Fatalf("touching span hid </s>: %v", got)
	}
	if got := tok.EncodeChat("a</s>b", []Span{{4, 5}}); slices.Contains(got, 2) {
		t.Fatalf("overlapping span kept </s>: %v", got)
	}
	for _, sp := range [][]Span{{{-5, 100}}, {{3, 1}}, {{4, 5}, {0, 2}, {1, 3}}, nil} {
		tok.EncodeChat("a</s>b", sp)
	}
	if got := NewByte().EncodeChat("<s>x", []Span{{0, 1}}); !slices.Equal(got, NewByte().Encode("<s>x", false)) {
		t.Fatalf("byte EncodeChat %v", got)
	}
}

func TestNewSentencePieceErrors(t *testing.T) {
	ok := SPMVocab{Tokens: []string{"<unk>", "a"}, BOS: -1, EOS: -1, UNK: 0, PAD: -1}
	for _, c := range []struct {
		name string
		edit func(*SPMVocab)
		want string
	}{
		{"empty", func(v *SPMVocab) { v.Tokens = nil }, "0 tokens"},
		{"scores", func(v *SPMVocab) { v.Scores = []float32{1} }, "1 scores"},
		{"types", func(v *SPMVocab) { v.Types = []int32{1, 1, 1} }, "3 token types"},
		{"bos", func(v *SPMVocab) { v.BOS = 2 }, "BOS id 2"},
		{"eos", func(v *SPMVocab) { v.EOS = -2 }, "EOS id -2"},
		{"unk", func(v *SPMVocab) { v.UNK = 5 }, "UNK id 5"},
		{"pad", func(v *SPMVocab) { v.PAD = 2 }, "PAD id 2"},
		{"piece", func(v *SPMVocab) { v.Tokens = []string{"a", strings.Repeat("b", 64<<10+1)} }, "65537 bytes"},
	} {
		v := ok
		c.edit(&v)
		if _, err := NewSentencePiece(v); !errors.Is(err, ErrBadTokenizer) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v (want %q)", c.name, err, c.want)
		}
	}
	if _, err := NewSentencePiece(ok); err != nil {
		t.Fatal(err)
	}
	// Odd but valid: no scores, no types, NaN scores, unknown type values,
	// empty pieces, duplicates, no byte pieces and no UNK.
	tok, err := NewSentencePiece(SPMVocab{
		Tokens: []string{"", "a", "a", "b", "ab", "<0x41>"}, Scores: []float32{0, 0, 0, 0, float32(math.NaN()), 0},
		Types: []int32{0, 1, 1, 9, 1, 1}, BOS: -1, EOS: -1, UNK: -1, PAD: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	// "ab" merges (a NaN score still merges), "b" alone is not a normal
	// token, ' ', 'b' and 'é' have neither byte piece nor UNK: dropped.
	if got := tok.Encode("ab b é", true); !slices.Equal(got, []int{4}) {
		t.Fatalf("odd vocab: %v", got)
	}
}

// Without the dummy prefix nothing is added or dropped.
func TestNoSpacePrefix(t *testing.T) {
	tok := specialVocab(t, false)
	if got := tok.Encode("x", true); !slices.Equal(got, []int{1, 7}) {
		t.Fatalf("%v", got)
	}
	if got := tok.Decode([]int{1, 13}); got != " x" {
		t.Fatalf("decode %q", got)
	}
	rng := rand.New(rand.NewPCG(9, 10))
	for range 500 {
		s := randomText(rng, rng.IntN(20), true)
		if got := tok.Decode(tok.Encode(s, true)); got != s {
			t.Fatalf("round trip %q -> %q", s, got)
		}
	}
}

func TestKinds(t *testing.T) {
	var tk Tokenizer = NewByte()
	if tk.Kind() != "byte" || !slices.Equal(tk.EncodeSpecial("<s>", true), tk.Encode("<s>", true)) {
		t.Fatal("byte")
	}
	pieces, scores := testVocab()
	sp, err := NewSentencePiece(SPMVocab{Tokens: pieces, Scores: scores, BOS: 1, EOS: 2, UNK: 0, PAD: -1})
	if err != nil {
		t.Fatal(err)
	}
	tk = sp
	if tk.Kind() != "sentencepiece" {
		t.Fatal("sentencepiece")
	}
}

// Encode from many goroutines at once (the word cache is shared): run
// under -race.
func TestConcurrentEncode(t *testing.T) {
	bpe, _ := testBPE(t, "llama-bpe")
	text := englishText(4 << 10)
	var wg sync.WaitGroup
	for name, tok := range map[string]Tokenizer{"synthetic 32k": synthetic32k(t), "bpe": bpe} {
		want := tok.Encode(text, true)
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(g), 11))
				for range 20 {
					if got := tok.Encode(text, true); !slices.Equal(got, want) {
						t.Errorf("%s: concurrent encode differs", name)
						return
					}
					s := randomText(rng, 30, true)
					if tok.Decode(tok.Encode(s, true)) != s {
						t.Errorf("%s: concurrent round trip", name)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	if !utf8.ValidString(text) {
		t.Fatal("english text")
	}
}

// merger is a tokenizer with the two merge loops.
type merger interface {
	mergeSmall(dst []int, s string) []int
	mergeHeap(dst []int, s string, sc *scratch) []int
}

// The two merge loops (arrays for short words, heap for long texts) make
// the same choices, in SentencePiece and in byte-level BPE.
func TestMergeSmallMatchesHeap(t *testing.T) {
	bpe, _ := testBPE(t, "gpt2")
	toks := map[string]merger{"tok512.bin": tok512(t), "synthetic 32k": synthetic32k(t), "special": specialVocab(t, true), "bpe": bpe}
	if _, ok := sharedPath("tokenizers/llama3.2/encoder.json"); ok {
		toks["llama 3.2 bpe"], _ = llama3(t)
	}
	rng := rand.New(rand.NewPCG(12, 13))
	sc := new(scratch)
	for name, tok := range toks {
		for i := range 5000 {
			s := randomText(rng, 1+rng.IntN(8), i%2 == 0)
			if len(s) > smallWord {
				s = strings.ToValidUTF8(s[:smallWord], "")
			}
			if s == "" {
				continue
			}
			if a, b := tok.mergeSmall(nil, s), tok.mergeHeap(nil, s, sc); !slices.Equal(a, b) {
				t.Fatalf("%s: %q: small %v, heap %v", name, s, a, b)
			}
		}
	}
}

// partitionRef is llama.cpp's tokenizer_st_partition as written there: a
// list of fragments, split token by token (in rank order) at each token's
// leftmost occurrences; an occurrence that overlaps a plain span is passed
// over.
func partitionRef(s *specialSet, text string, plain []Span) []match {
	type frag struct {
		tok      bool
		pos, end int
		id       int32
	}
	overlaps := func(p, e int) bool {
		for _, sp := range plain {
			if max(sp.Start, p, 0) < min(sp.End, e, len(text)) {
				return true
			}
		}
		return false
	}
	frags := []frag{{pos: 0, end: len(text)}}
	for _, tok := range s.toks {
		var out []frag
		for _, f := range frags {
			if f.tok {
				out = append(out, f)
				continue
			}
			base := f.pos
			for from := f.pos; ; {
				i := strings.Index(text[from:f.end], tok.text)
				if i < 0 {
					break
				}
				p := from + i
				if overlaps(p, p+len(tok.text)) {
					from = p + 1
					continue
				}
				if p > base {
					out = append(out, frag{pos: base, end: p})
				}
				out = append(out, frag{tok: true, pos: p, end: p + len(tok.text), id: tok.id})
				base, from = p+len(tok.text), p+len(tok.text)
			}
			if base < f.end {
				out = append(out, frag{pos: base, end: f.end})
			}
		}
		frags = out
	}
	var ms []match
	for _, f := range frags {
		if f.tok {
			ms = append(ms, match{pos: f.pos, end: f.end, id: f.id})
		}
	}
	return ms
}

func TestPartitionMatchesLlamaCpp(t *testing.T) {
	tok := specialVocab(t, true)
	atoms := []string{"<|a|>", "<|a|>x", "x<|", "<|", "a|>", "|>", "x", "a", "[INST]", "[INS", "NST]", "<s>", "</s>", "<unk>", "s>", "<", "/", " "}
	rng := rand.New(rand.NewPCG(14, 15))
	found := 0
	for range 5000 {
		var sb strings.Builder
		for range rng.IntN(12) {
			sb.WriteString(atoms[rng.IntN(len(atoms))])
		}
		text := sb.String()
		var plain []Span
		for range rng.IntN(3) {
			a := rng.IntN(len(text) + 1)
			plain = append(plain, Span{a, a + rng.IntN(6)})
		}
		got, want := tok.spec.partition(text, plain), partitionRef(&tok.spec, text, plain)
		if len(got) != len(want) || (len(got) > 0 && !slices.Equal(got, want)) {
			t.Fatalf("%q %v: partition %v, llama.cpp %v", text, plain, got, want)
		}
		found += len(got)
	}
	if found < 5000 {
		t.Fatalf("only %d special tokens found", found)
	}
}

// A llama2.c vocabulary without a " " piece gets no dummy prefix (run.c
// would emit an invalid id), and then Decode keeps a leading space.
func TestLegacyWithoutSpacePiece(t *testing.T) {
	pieces := []string{"<unk>", "<s>", "</s>"}
	for b := range 256 {
		pieces = append(pieces, fmt.Sprintf("<0x%02X>", b))
	}
	tok, err := newSentencePiece(SPMVocab{Tokens: pieces, BOS: 1, EOS: 2, UNK: 0, PAD: -1, AddSpacePrefix: true}, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Encode(" hi", true); !slices.Equal(got, []int{1, 3 + ' ', 3 + 'h', 3 + 'i'}) {
		t.Fatalf("%v", got)
	}
	for _, s := range []string{" hi", "héllo", "  ", ""} {
		if got := tok.Decode(tok.Encode(s, true)); got != s {
			t.Fatalf("%q -> %q", s, got)
		}
	}
}
