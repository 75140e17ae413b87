package tokenizer

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// Benchmarks: run with
//
//	go test -run '^$' -bench . -benchtime 2s ./tokenizer/
//
// tokens/s is the number of ids produced per second of encoding;
// tokens/cpu-s per second of this process's CPU time (GC included), which
// other load on a shared machine distorts less. Variants: "cached" is the
// steady state of encoding the same text again (its words in the word
// cache); "cold" starts each call with an empty cache (one pass over a new
// text: only its own repeated words hit, every other word is a new entry;
// the benchmark's small heap makes those allocations cost more garbage
// collection than a server's would); "nocache" encodes every word afresh.
// "quadratic" is llama2.c's algorithm, which the package used before.

// commonWords are frequent English words: the head of englishText's Zipf
// distribution.
var commonWords = strings.Fields(`the of and to a in is it you that he was for on are with as I his they be at one
have this from or had by hot word but what some we can out other were all there when up use your how said an each she
which do their time if will way about many then them write would like so these her long make thing see him two has look
more day could go come did number sound no most people my over know water than call first who may down side been now
find any new work part take get place made live where after back little only round man year came show every good me give
our under name very through just form sentence great think say help low line differ turn cause much mean before move right
boy old too same tell does set three want air well also play small end put home read hand port large spell add even land
here must big high such follow act why ask men change went light kind off need house picture try us again animal point
mother world near build self earth father head stand own page should country found answer school grow study still learn
plant cover food sun four between state keep eye never last let thought city tree cross farm hard start might story saw far
sea draw left late run while press close night real life few north open seem together next white children begin got walk
example ease paper group always music those both mark often letter until mile river car feet care second book carry took
science eat room friend began idea fish mountain stop once base hear horse cut sure watch color face wood main enough plain
girl usual young ready above ever red list though feel talk bird soon body dog family direct pose leave song measure door
product black short numeral class wind question happen complete ship area half rock order fire south problem piece told knew
pass since top whole king space heard best hour better true during hundred five remember step early hold west ground interest
reach fast verb sing listen six table travel less morning ten simple several vowel toward war lay against pattern slow center
love person money serve appear road map rain rule govern pull cold notice voice unit power town fine certain fly fall lead
cry dark machine note wait plan figure star box noun field rest correct able pound done beauty drive stood contain front
teach week final gave green oh quick develop ocean warm free minute strong special mind behind clear tail produce fact street
inch multiply nothing course stay wheel full force blue object decide surface deep moon island foot system busy test record
boat common gold possible plane stead dry wonder laugh thousand ago ran check game shape equate miss brought heat snow tire
bring yes distant fill east paint language among Lily Tom Ben Sue Max park ball toy cat happy sad`)

// syllables make the rarer, invented words of the Zipf tail.
var syllables = strings.Fields("con ver sa tion in ter pro re de com per ex im ly ment ness able ing ed er est al ful ous ive ize ist ity an ca mo ra ti lo ne pe di fa go hu")

// vocabWords is the word universe of englishText: the common words, then
// 3000 invented ones.
var vocabWords = sync.OnceValue(func() []string {
	words := slices.Clone(commonWords)
	rng := rand.New(rand.NewPCG(42, 42))
	seen := map[string]bool{}
	for _, w := range words {
		seen[w] = true
	}
	for len(words) < len(commonWords)+3000 {
		var sb strings.Builder
		for range 2 + rng.IntN(3) {
			sb.WriteString(syllables[rng.IntN(len(syllables))])
		}
		if w := sb.String(); !seen[w] {
			seen[w] = true
			words = append(words, w)
		}
	}
	return words
})

// englishText is n bytes (about) of deterministic English-like prose:
// Zipf-distributed words (about 40% of a 10 KB text are distinct words, as
// in real prose), sentences of 5 to 20 words with capitals, commas, quotes
// and paragraphs.
func englishText(n int) string {
	words := vocabWords()
	rng := rand.New(rand.NewPCG(1, 1))
	zipf := rand.NewZipf(rng, 1.1, 3, uint64(len(words)-1))
	var sb strings.Builder
	for sb.Len() < n {
		for s := 3 + rng.IntN(5); s > 0 && sb.Len() < n; s-- {
			quote := rng.IntN(8) == 0
			if quote {
				sb.WriteByte('"')
			}
			k := 5 + rng.IntN(16)
			for i := range k {
				w := words[zipf.Uint64()]
				if i == 0 {
					r, size := utf8.DecodeRuneInString(w)
					w = strings.ToUpper(string(r)) + w[size:]
				}
				sb.WriteString(w)
				switch {
				case i == k-1:
					sb.WriteString([]string{".", ".", ".", "!", "?"}[rng.IntN(5)])
				case rng.IntN(9) == 0:
					sb.WriteString(",")
				}
				if i < k-1 {
					sb.WriteByte(' ')
				}
			}
			if quote {
				sb.WriteByte('"')
			}
			sb.WriteByte(' ')
		}
		sb.WriteString("\n\n")
	}
	return sb.String()
}

// synthetic32k is a 32000-token SentencePiece vocabulary shaped like
// llama's, built without training: specials, 256 byte pieces, characters,
// runs of '▁', frequent letter n-grams of englishText, every '▁'-prefix of
// the words of its universe, and '▁'-prefixes of more invented words to
// fill the size. Shorter pieces score higher (they merge first, as BPE
// learnt them first), then more frequent ones.
var synthetic32kVocab = sync.OnceValues(func() (SPMVocab, error) {
	type cand struct {
		piece string
		freq  int
	}
	seen := map[string]bool{}
	var tokens []string
	var types []int32
	var scores []float32
	add := func(p string, typ int32, score float32) {
		if !seen[p] {
			seen[p] = true
			tokens, types, scores = append(tokens, p), append(types, typ), append(scores, score)
		}
	}
	add("<unk>", TokenUnknown, 0)
	add("<s>", TokenControl, 0)
	add("</s>", TokenControl, 0)
	for b := range 256 {
		add(fmt.Sprintf("<0x%02X>", b), TokenByte, 0)
	}
	var merges []cand
	for n := 2; n <= 16; n++ {
		merges = append(merges, cand{strings.Repeat("▁", n), 1 << 20})
	}
	corpus := englishText(1 << 20)
	counts := map[string]int{}
	for _, w := range strings.Fields(corpus) {
		for _, r := range w {
			counts[string(r)] += 0 // characters are added below
		}
		rs := []rune(w)
		for i := 1; i < len(rs); i++ { // non-initial n-grams
			for n := 2; n <= 4 && i+n <= len(rs); n++ {
				counts[string(rs[i:i+n])]++
			}
		}
		p := "▁"
		for _, r := range rs {
			p += string(r)
			counts[p]++
		}
	}
	for p, c := range counts {
		if utf8.RuneCountInString(p) >= 2 && (c >= 8 || strings.HasPrefix(p, "▁")) {
			merges = append(merges, cand{p, c})
		}
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for len(merges) < 32000 {
		var sb strings.Builder
		sb.WriteString("▁")
		for range 1 + rng.IntN(4) {
			sb.WriteString(syllables[rng.IntN(len(syllables))])
		}
		merges = append(merges, cand{sb.String(), 1})
	}
	slices.SortFunc(merges, func(a, b cand) int {
		if c := cmp.Compare(utf8.RuneCountInString(a.piece), utf8.RuneCountInString(b.piece)); c != 0 {
			return c
		}
		if c := cmp.Compare(b.freq, a.freq); c != 0 {
			return c
		}
		return strings.Compare(a.piece, b.piece)
	})
	for i, m := range merges {
		if len(tokens) >= 32000-200 {
			break
		}
		add(m.piece, TokenNormal, -float32(i))
	}
	// Characters: every one in the corpus and some more, scored last.
	chars := "▁abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?\"'-:;()[]<>{}/\\|@#$%^&*+=_~`éüñßàèçö€™日本语"
	for _, r := range chars {
		add(string(r), TokenNormal, -1e6)
	}
	return SPMVocab{Tokens: tokens, Scores: scores, Types: types, BOS: 1, EOS: 2, UNK: 0, PAD: -1, AddBOS: true, AddSpacePrefix: true}, nil
})

func synthetic32k(tb testing.TB) *SentencePiece {
	tb.Helper()
	v, err := synthetic32kVocab()
	if err != nil {
		tb.Fatal(err)
	}
	tok, err := NewSentencePiece(v)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// noCache is tok without its word cache.
func noCache(tok *SentencePiece) *SentencePiece {
	c := *tok
	c.cache = nil
	return &c
}

// coldEncode empties the word cache before every encode.
func coldEncode(tok *SentencePiece) func(string, bool) []int {
	return func(text string, bos bool) []int {
		for i := range tok.cache.slots {
			tok.cache.slots[i].Store(nil)
		}
		return tok.Encode(text, bos)
	}
}

func benchEncode(b *testing.B, encode func(string, bool) []int, text string) {
	b.Helper()
	b.SetBytes(int64(len(text)))
	n := 0
	cpu := cpuTime()
	for b.Loop() {
		n += len(encode(text, true))
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "tokens/s")
	if cpu := cpuTime() - cpu; cpu > 0 {
		b.ReportMetric(float64(n)/cpu.Seconds(), "tokens/cpu-s")
	}
}

// BenchmarkEncodeEnglish encodes 10 KB of English prose with the stories
// vocabulary (512 tokens, tokenizer.bin) and a synthetic 32k one, with the
// new encoder and the old quadratic one.
func BenchmarkEncodeEnglish(b *testing.B) {
	text := englishText(10 << 10)
	stories := tok512(b)
	big := synthetic32k(b)
	b.Logf("10 KB: %d tokens (stories 512), %d tokens (synthetic 32k)", len(stories.Encode(text, true)), len(big.Encode(text, true)))
	b.Run("stories512/cached", func(b *testing.B) { benchEncode(b, stories.Encode, text) })
	b.Run("stories512/cold", func(b *testing.B) { benchEncode(b, coldEncode(stories), text) })
	b.Run("stories512/nocache", func(b *testing.B) { benchEncode(b, noCache(stories).Encode, text) })
	b.Run("stories512/quadratic", func(b *testing.B) { benchEncode(b, quadraticFrom(stories).encode, text) })
	b.Run("synthetic32k/cached", func(b *testing.B) { benchEncode(b, big.Encode, text) })
	b.Run("synthetic32k/cold", func(b *testing.B) { benchEncode(b, coldEncode(big), text) })
	b.Run("synthetic32k/nocache", func(b *testing.B) { benchEncode(b, noCache(big).Encode, text) })
	b.Run("synthetic32k/quadratic", func(b *testing.B) { benchEncode(b, newQuadratic(big.text, big.scores).encode, text) })
}

// BenchmarkEncodePrompt2000 encodes a prompt of about 2000 stories tokens.
func BenchmarkEncodePrompt2000(b *testing.B) {
	stories := tok512(b)
	text := prompt2000(stories)
	b.Run("new/cold", func(b *testing.B) { benchEncode(b, coldEncode(stories), text) })
	b.Run("new/nocache", func(b *testing.B) { benchEncode(b, noCache(stories).Encode, text) })
	b.Run("quadratic", func(b *testing.B) { benchEncode(b, quadraticFrom(stories).encode, text) })
}

// prompt2000 is the prefix of englishText that makes about 2000 tokens.
func prompt2000(tok *SentencePiece) string {
	text := englishText(8 << 10)
	lo, hi := 0, len(text)
	for lo < hi {
		mid := (lo + hi) / 2
		if len(tok.Encode(text[:mid], true)) < 2000 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return text[:lo]
}

// TestPrompt2000Timing logs what a 2000-token prompt costs, new and old (no
// timed assertion: shared machines).
func TestPrompt2000Timing(t *testing.T) {
	if testing.Short() {
		t.Skip("timing")
	}
	stories := noCache(tok512(t))
	text := prompt2000(stories)
	start := time.Now()
	ids := stories.Encode(text, true)
	fast := time.Since(start)
	start = time.Now()
	old := quadraticFrom(stories).encode(text, true)
	slow := time.Since(start)
	if !slices.Equal(ids, old) {
		t.Fatal("new and old encoders differ on the 2000-token prompt")
	}
	t.Logf("%d-token prompt (%d bytes): new %v, llama2.c's quadratic %v", len(ids), len(text), fast, slow)
}
