package tokenizer

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Pre-tokenizers: how a byte-level BPE vocabulary cuts text into words
// before merging (no merge crosses a word's edge). Each family defines its
// cut by a regular expression, applied with leftmost-first alternation:
// at each position the first alternative that matches wins, and the next
// match starts where it ended. tokenizer.ggml.pre names the expression; the
// ones here are those of Hugging Face's tokenizer.json files, and of
// llama.cpp's llm_tokenizer_bpe, which reads the same names:
//
//	llama-bpe (Llama 3):  (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//	qwen2 (Qwen 2, 2.5, 3): the same with \p{N} (one digit per word) for \p{N}{1,3}
//	gpt2:                 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//	smollm (SmolLM, SmolLM2): every \p{N} on its own, then gpt2 on the text between
//	default:              llama.cpp's fallback, four expressions in sequence, each splitting
//	                      the pieces of the one before: [\p{P}\$\+<=>\^~\|]+, then gpt2,
//	                      then \p{N}+, then [0-9][0-9][0-9]
//
// In a sequence, an expression's matches and the text between them (what
// it does not match) are both pieces, as in llama.cpp's unicode_regex_split.
//
// Each expression is a hand-written scanner, not a regular expression:
// Go's regexp has no look-ahead, which \s+(?!\S) needs, and a scanner that
// tries the alternatives in order on one character class table is several
// times faster than a backtracking engine, allocates nothing, and can be
// tested alternative by alternative. The classes are Unicode's, as in the
// engines these expressions were written for (Oniguruma in Hugging Face
// tokenizers, llama.cpp's own tables): \p{L} is unicode.IsLetter, \p{N}
// unicode.IsNumber, \s is Unicode White_Space (unicode.IsSpace: \t \n \v
// \f \r, space, U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029,
// U+202F, U+205F, U+3000), the optional space of " ?" is U+0020 only, and
// (?i:...) folds ASCII letters only (llama.cpp writes it '[sS]'...).
// ollama v0.17.4 compiles the same expressions with regexp2's RE2 option,
// under which \s is ASCII [\t\n\f\r ]: for text with other white space
// (U+00A0 next to white space, U+3000, \v) its words, and so its ids, can
// differ from these; for every text of the Llama 3 reference set they
// agree.
//
// Bytes that are not UTF-8 are characters of their own, of no class (like
// punctuation), so every string is cut into pieces that concatenate back to
// it and the byte-level merges round-trip it exactly.

// preTokenizer is one tokenizer.ggml.pre: its expressions in order, and
// the llama.cpp settings that go with the name.
type preTokenizer struct {
	stages []preStage
	// ignoreMerges: a word that is a token as a whole is that token, merged
	// or not (llama.cpp's ignore_merges, Hugging Face's "ignore_merges":
	// true of Llama 3).
	ignoreMerges bool
	// addBOS is llama.cpp's default for tokenizer.ggml.add_bos_token.
	addBOS bool
}

// preStage is one expression: match returns the length in bytes of its
// match at s[i:] (s is the piece being split, its end the end of text for
// look-ahead), 0 for none. cover: it matches at every position.
type preStage struct {
	match func(s string, i int) int
	cover bool
}

var (
	preLlama3  = &preTokenizer{stages: []preStage{{scanLlama3, true}}, ignoreMerges: true, addBOS: true}
	preQwen2   = &preTokenizer{stages: []preStage{{scanQwen2, true}}}
	preGPT2    = &preTokenizer{stages: []preStage{{scanGPT2, true}}}
	preSmolLM  = &preTokenizer{stages: []preStage{{matchNumber, false}, {scanGPT2, true}}}
	preDefault = &preTokenizer{stages: []preStage{
		{matchPunct, false}, {scanGPT2, true}, {matchNumbers, false}, {matchThreeDigits, false},
	}}
)

// preTokenizers maps tokenizer.ggml.pre to its pre-tokenizer. Aliases are
// names llama.cpp gives the same expression and settings.
var preTokenizers = map[string]*preTokenizer{
	"default":          preDefault,
	"llama-bpe":        preLlama3,
	"llama3":           preLlama3,
	"llama-v3":         preLlama3,
	"falcon3":          preLlama3,
	"qwen2":            preQwen2,
	"deepseek-r1-qwen": preQwen2,
	"smollm":           preSmolLM,
	"gpt2":             preGPT2,
	"gpt-2":            preGPT2,
}

// SupportedPreTokenizers are the tokenizer.ggml.pre values NewBPE accepts
// (an empty one means "default", as in llama.cpp).
var SupportedPreTokenizers = []string{
	"llama-bpe", "llama3", "llama-v3", "falcon3", "qwen2", "deepseek-r1-qwen", "smollm", "gpt2", "gpt-2", "default",
}

// BPEDefaultAddBOS is what llama.cpp assumes for tokenizer.ggml.add_bos_token
// when a byte-level BPE file does not say: true for the Llama 3 names,
// false for the others (and for unknown names).
func BPEDefaultAddBOS(pre string) bool {
	p := preTokenizers[pre]
	return p != nil && p.addBOS
}

func lookupPreTokenizer(name string) (*preTokenizer, bool) {
	if name == "" {
		name = "default"
	}
	p, ok := preTokenizers[name]
	return p, ok
}

func supportedPreTokenizers() string { return strings.Join(SupportedPreTokenizers, ", ") }

// split calls emit with the pieces of s, in order; they concatenate to s.
func (p *preTokenizer) split(s string, emit func(string)) { p.run(0, s, emit) }

// run applies stages[k:] to s.
func (p *preTokenizer) run(k int, s string, emit func(string)) {
	st := &p.stages[k]
	out := emit
	if k+1 < len(p.stages) {
		out = func(w string) { p.run(k+1, w, emit) }
	}
	if st.cover {
		for i := 0; i < len(s); {
			n := st.match(s, i)
			out(s[i : i+n])
			i += n
		}
		return
	}
	// Leftmost matches; the text between them is a piece too.
	gap := 0
	for i := 0; i < len(s); {
		n := st.match(s, i)
		if n == 0 {
			_, size := charClass(s, i)
			i += size
			continue
		}
		if gap < i {
			out(s[gap:i])
		}
		out(s[i : i+n])
		i += n
		gap = i
	}
	if gap < len(s) {
		out(s[gap:])
	}
}

// Character classes of the expressions.
const (
	clsOther   uint8 = iota // none of the below: punctuation, symbols, marks, controls, bytes that are not UTF-8
	clsLetter               // \p{L}
	clsNumber               // \p{N}
	clsSpace                // \s other than \r and \n
	clsNewline              // \r or \n (\s too)
	clsNone                 // past the end of the text
)

var asciiClass = func() (t [utf8.RuneSelf]uint8) {
	for c := range t {
		switch r := rune(c); {
		case r == '\r' || r == '\n':
			t[c] = clsNewline
		case unicode.IsSpace(r):
			t[c] = clsSpace
		case unicode.IsLetter(r):
			t[c] = clsLetter
		case unicode.IsNumber(r):
			t[c] = clsNumber
		}
	}
	return t
}()

// charClass is the class and the length in bytes of the character at
// s[i:] (clsNone past the end).
func charClass(s string, i int) (uint8, int) {
	if i >= len(s) {
		return clsNone, 0
	}
	if c := s[i]; c < utf8.RuneSelf {
		return asciiClass[c], 1
	}
	r, n := utf8.DecodeRuneInString(s[i:])
	switch {
	case n == 1: // not UTF-8
		return clsOther, 1
	case unicode.IsLetter(r):
		return clsLetter, n
	case unicode.IsNumber(r):
		return clsNumber, n
	case unicode.IsSpace(r):
		return clsSpace, n
	}
	return clsOther, n
}

// span is the end of the run of characters of class cls that starts at
// s[i:] (i itself if there is none).
func span(s string, i int, cls uint8) int {
	for i < len(s) {
		if c := s[i]; c < utf8.RuneSelf {
			if asciiClass[c] != cls {
				break
			}
			i++
			continue
		}
		c, n := charClass(s, i)
		if c != cls {
			break
		}
		i += n
	}
	return i
}

// contraction matches 's 't 're 've 'm 'll 'd at s[i:] (s[i] is an apostrophe),
// ASCII case folded when fold is set; 0 for none.
func contraction(s string, i int, fold bool) int {
	at := func(k int) byte {
		if k >= len(s) {
			return 0
		}
		c := s[k]
		if fold && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		return c
	}
	switch at(i + 1) {
	case 's', 't', 'm', 'd':
		return 2
	case 'r', 'v':
		if at(i+2) == 'e' {
			return 3
		}
	case 'l':
		if at(i+2) == 'l' {
			return 3
		}
	}
	return 0
}

func scanLlama3(s string, i int) int { return scanLlama(s, i, 3) }
func scanQwen2(s string, i int) int  { return scanLlama(s, i, 1) }

// scanLlama is the Llama 3 expression (qwen2's with maxDigits 1), one
// alternative after the other:
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d) | [^\r\n\p{L}\p{N}]?\p{L}+ | \p{N}{1,maxDigits} |
//	 ?[^\s\p{L}\p{N}]+[\r\n]* | \s*[\r\n]+ | \s+(?!\S) | \s+
func scanLlama(s string, i, maxDigits int) int {
	if s[i] == '\'' {
		if n := contraction(s, i, true); n > 0 {
			return n
		}
	}
	cls, n := charClass(s, i)
	switch cls {
	case clsLetter:
		return span(s, i+n, clsLetter) - i
	case clsNumber:
		j := i + n
		for k := 1; k < maxDigits; k++ {
			c, m := charClass(s, j)
			if c != clsNumber {
				break
			}
			j += m
		}
		return j - i
	}
	next, m := charClass(s, i+n)
	// [^\r\n\p{L}\p{N}]?\p{L}+ with the optional character.
	if next == clsLetter && cls != clsNewline {
		return span(s, i+n+m, clsLetter) - i
	}
	//  ?[^\s\p{L}\p{N}]+[\r\n]*
	if cls == clsOther || (s[i] == ' ' && next == clsOther) {
		j := i // the run starts here, or after the space
		if cls != clsOther {
			j += n
		}
		j = span(s, j, clsOther)
		for j < len(s) && (s[j] == '\r' || s[j] == '\n') {
			j++
		}
		return j - i
	}
	return scanSpaces(s, i, true)
}

// scanGPT2 is GPT-2's expression:
//
//	's|'t|'re|'ve|'m|'ll|'d | ?\p{L}+ | ?\p{N}+ | ?[^\s\p{L}\p{N}]+ | \s+(?!\S) | \s+
func scanGPT2(s string, i int) int {
	if s[i] == '\'' {
		if n := contraction(s, i, false); n > 0 {
			return n
		}
	}
	cls, n := charClass(s, i)
	j := i + n
	if s[i] == ' ' {
		// " ?" takes the space when one of the three runs follows.
		if next, m := charClass(s, j); next == clsLetter || next == clsNumber || next == clsOther {
			cls, j = next, j+m
		}
	}
	switch cls {
	case clsLetter, clsNumber, clsOther:
		return span(s, j, cls) - i
	}
	return scanSpaces(s, i, false)
}

// scanSpaces matches at a white-space character: with newline,
// \s*[\r\n]+ (the run of white space up to its last \r or \n) if the run
// has one; else \s+(?!\S) (the run, or all of it but the last character
// when something other than white space follows); else \s+ (the one
// character).
func scanSpaces(s string, i int, newline bool) int {
	end, last, lastNL := i, i, -1
	for end < len(s) {
		cls, m := charClass(s, end)
		if cls == clsNewline {
			lastNL = end + m
		} else if cls != clsSpace {
			break
		}
		last = end
		end += m
	}
	switch {
	case newline && lastNL >= 0:
		return lastNL - i
	case end == len(s) || last == i:
		return end - i
	}
	return last - i
}

// matchNumber is \p{N}.
func matchNumber(s string, i int) int {
	if c, n := charClass(s, i); c == clsNumber {
		return n
	}
	return 0
}

// matchNumbers is \p{N}+.
func matchNumbers(s string, i int) int { return span(s, i, clsNumber) - i }

// matchThreeDigits is [0-9][0-9][0-9].
func matchThreeDigits(s string, i int) int {
	if i+3 <= len(s) && isDigit(s[i]) && isDigit(s[i+1]) && isDigit(s[i+2]) {
		return 3
	}
	return 0
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// matchPunct is [\p{P}\$\+<=>\^~\|]+.
func matchPunct(s string, i int) int {
	j := i
	for j < len(s) {
		r, n := utf8.DecodeRuneInString(s[j:])
		if n == 1 && r == utf8.RuneError {
			break
		}
		if !unicode.IsPunct(r) && !strings.ContainsRune("$+<=>^~|", r) {
			break
		}
		j += n
	}
	return j - i
}
