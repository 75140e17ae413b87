package tokenizer

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// BPEVocab is a byte-level BPE vocabulary as stored in a GGUF file's
// tokenizer.ggml.* keys (tokenizer.ggml.model = "gpt2": Llama 3, Qwen 2 and
// 3, SmolLM2, GPT-2 and most models since).
type BPEVocab struct {
	// Tokens are the tokens, indexed by id. Normal tokens are written in
	// GPT-2's byte-to-unicode alphabet (each byte one character: "Ġhello"
	// is " hello"); control, user-defined and unknown tokens are their
	// text as is ("<|eot_id|>").
	Tokens []string
	// Types are the Token* types (0 is taken as TokenUnused); nil means
	// UNK is TokenUnknown, BOS, EOS and PAD are TokenControl, the rest
	// TokenNormal.
	Types []int32
	// Merges are tokenizer.ggml.merges: "left right", two normal tokens
	// whose concatenation is a normal token, by priority (the first merges
	// first).
	Merges []string
	// Pre is tokenizer.ggml.pre, the pre-tokenizer (see
	// SupportedPreTokenizers); "" means "default".
	Pre string
	// Special ids, -1 when absent.
	BOS, EOS, UNK, PAD int
	// AddBOS is tokenizer.ggml.add_bos_token (default BPEDefaultAddBOS(Pre)).
	// The tokenizer does not use it (Encode's bos argument decides): it is
	// here for the caller, so that the vocabulary read from a file is
	// complete.
	AddBOS bool
}

// maxMerges bounds a vocabulary's merges (Llama 3 has 280,147). Ranks below
// 2^24 are exact as float32 heap scores.
const maxMerges = 1 << 23

// BPE is a byte-level BPE tokenizer (GPT-2's scheme, as llama.cpp's
// llm_tokenizer_bpe and Hugging Face's tokenizers): the text is cut into
// words by the vocabulary's pre-tokenizer (see pretokenize.go), each word
// starts as one symbol per byte, and the adjacent pair with the best
// (lowest) merge rank is merged repeatedly, leftmost on ties, until no pair
// has a merge. With the Llama 3 pre-tokenizers a word that is a token as a
// whole is that token (ignore_merges).
//
// Merges are looked up by the two symbols' ids in one table (pair of ids to
// rank and merged id). Words of up to 32 bytes, nearly all of them, are
// merged in arrays on the stack; longer ones in a linked list with a
// priority queue of candidate pairs (SentencePiece's loop, see
// spm_encode.go): O(n log n), never a rescan per merge. Recent words'
// ids are kept in a bounded cache.
//
// Special tokens (control, user-defined, unknown) are recognised by
// EncodeSpecial and EncodeChat as in SentencePiece; Encode never makes
// them, and merges only make normal tokens (NewBPE refuses a merge into
// anything else). Decode is exact: Decode(Encode(x, false)) == x for every
// string x, invalid UTF-8 included, when the vocabulary has a token for
// each of the 256 bytes (all byte-level vocabularies do); there is no
// clean-up of spaces before punctuation.
//
// A BPE is immutable and safe for concurrent use.
type BPE struct {
	tokens []string // per id, as given
	// text is the bytes a token stands for: decoded for normal tokens, as
	// is for user-defined ones, the byte of a "<0xAB>" byte token; "" for
	// every other token and for BOS, EOS and UNK.
	text   []string
	byteID [256]int32        // normal token of each single byte, -1 if none
	merges map[uint64]uint64 // left id<<32 | right id -> rank<<32 | merged id
	// words maps the text of each normal token to its id, for
	// ignoreMerges; nil otherwise.
	words    map[string]int32
	spec     specialSet
	pre      *preTokenizer
	preName  string // as given
	bos, unk int
	cache    *wordCache
	maxBytes int
}

// GPT-2's bytes_to_unicode: bytes that are printable characters stand for
// themselves ('!'..'~', '¡'..'¬', '®'..'ÿ'); the other 68 (controls, space,
// DEL, the C1 range, NBSP, soft hyphen) are U+0100 onwards, in byte order.
var byteRune, runeByte = func() (br [256]rune, rb [0x144]int16) {
	for i := range rb {
		rb[i] = -1
	}
	n := rune(0x100)
	for b := range 256 {
		r := rune(b)
		if !(b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE) {
			r = n
			n++
		}
		br[b], rb[r] = r, int16(b)
	}
	return br, rb
}()

// decodeByteLevel turns a token written in the byte-to-unicode alphabet
// into its bytes; ok is false if it has a character outside the alphabet.
func decodeByteLevel(tok string) (string, bool) {
	var sb strings.Builder
	sb.Grow(len(tok))
	for _, r := range tok {
		if r < 0 || int(r) >= len(runeByte) || runeByte[r] < 0 {
			return "", false
		}
		sb.WriteByte(byte(runeByte[r]))
	}
	return sb.String(), true
}

// EncodeByteLevel writes bytes in GPT-2's byte-to-unicode alphabet, the
// form of the normal tokens and merges of a BPEVocab.
func EncodeByteLevel(text string) string {
	var sb strings.Builder
	sb.Grow(2 * len(text))
	for i := 0; i < len(text); i++ {
		sb.WriteRune(byteRune[text[i]])
	}
	return sb.String()
}

var typeNames = [...]string{"undefined", "normal", "unknown", "control", "user-defined", "unused", "byte"}

// NewBPE builds a tokenizer from a GGUF-style byte-level BPE vocabulary.
// Everything is checked, since the vocabulary comes from a file: 1..2^22
// tokens of at most 64 KiB, no two alike; types 0..6 and as many as
// tokens; special ids in range or -1; normal tokens in the byte-to-unicode
// alphabet; at most 2^23 merges, each two normal tokens separated by a
// space whose concatenation is a normal token; a known pre-tokenizer.
// Errors wrap ErrBadTokenizer (ErrUnsupportedPreTokenizer for an unknown
// pre-tokenizer) and name the token, type or merge.
func NewBPE(v BPEVocab) (*BPE, error) {
	n := len(v.Tokens)
	if err := checkVocabShape(n, v.Types, v.BOS, v.EOS, v.UNK, v.PAD); err != nil {
		return nil, err
	}
	if len(v.Merges) > maxMerges {
		return nil, fmt.Errorf("%w: %d merges (at most %d)", ErrBadTokenizer, len(v.Merges), maxMerges)
	}
	pre, ok := lookupPreTokenizer(v.Pre)
	if !ok {
		return nil, fmt.Errorf("%w %q; supported: %s", ErrUnsupportedPreTokenizer, v.Pre, supportedPreTokenizers())
	}
	t := &BPE{
		tokens:  slices.Clone(v.Tokens),
		text:    make([]string, n),
		merges:  make(map[uint64]uint64, len(v.Merges)),
		pre:     pre,
		preName: v.Pre,
		bos:     v.BOS,
		unk:     v.UNK,
		cache:   newWordCache(),
	}
	for i := range t.byteID {
		t.byteID[i] = -1
	}
	types := make([]int32, n)
	ids := make(map[string]int32, n) // token as written -> id
	var special []int32
	for id, tok := range v.Tokens {
		if len(tok) > maxPieceLen {
			return nil, fmt.Errorf("%w: token %d is %d bytes long (max %d)", ErrBadTokenizer, id, len(tok), maxPieceLen)
		}
		typ := bpeInferType(v, id)
		if v.Types != nil {
			typ = v.Types[id]
		}
		if typ < 0 || int(typ) >= len(typeNames) {
			return nil, fmt.Errorf("%w: token %d (%q) has type %d (want 0..%d)", ErrBadTokenizer, id, tok, typ, len(typeNames)-1)
		}
		types[id] = typ
		if tok == "" {
			continue // never matched, never made; llama.cpp renames it
		}
		if prev, dup := ids[tok]; dup {
			return nil, fmt.Errorf("%w: tokens %d and %d are both %q", ErrBadTokenizer, prev, id, tok)
		}
		ids[tok] = int32(id)
		switch typ {
		case TokenNormal:
			text, ok := decodeByteLevel(tok)
			if !ok {
				return nil, fmt.Errorf("%w: normal token %d (%q) is not in the byte-level alphabet", ErrBadTokenizer, id, tok)
			}
			t.text[id] = text
			if len(text) == 1 && t.byteID[text[0]] < 0 {
				t.byteID[text[0]] = int32(id)
			}
		case TokenByte:
			if b, ok := parseBytePiece(tok); ok {
				t.text[id] = string([]byte{b})
			}
		case TokenUserDefined:
			t.text[id] = tok
			special = append(special, int32(id))
		case TokenControl, TokenUnknown:
			special = append(special, int32(id))
		}
	}
	if err := t.addMerges(v.Merges, ids, types); err != nil {
		return nil, err
	}
	if pre.ignoreMerges {
		t.words = make(map[string]int32, n)
		for id, typ := range types {
			if typ == TokenNormal && t.text[id] != "" {
				if _, dup := t.words[t.text[id]]; !dup {
					t.words[t.text[id]] = int32(id)
				}
			}
		}
	}
	t.maxBytes = 1
	for id, tok := range v.Tokens {
		t.maxBytes = max(t.maxBytes, len(t.text[id]))
		if types[id] == TokenControl || types[id] == TokenUnknown {
			t.maxBytes = max(t.maxBytes, len(tok))
		}
	}
	for _, id := range []int{v.BOS, v.EOS, v.UNK} {
		if id >= 0 {
			t.text[id] = ""
		}
	}
	t.spec = newSpecialSet(t.tokens, special)
	return t, nil
}

// ErrUnsupportedPreTokenizer is wrapped when a vocabulary names a
// pre-tokenizer this package does not implement (a well-formed file asking
// for something else, not a bad one); the message lists those it does.
var ErrUnsupportedPreTokenizer = errors.New("unsupported pre-tokenizer")

// bpeInferType is the type of token id when the vocabulary has no types.
func bpeInferType(v BPEVocab, id int) int32 {
	switch id {
	case v.UNK:
		return TokenUnknown
	case v.BOS, v.EOS, v.PAD:
		return TokenControl
	}
	return TokenNormal
}

// addMerges parses and checks the merges into t.merges; a pair listed
// twice keeps its first rank.
func (t *BPE) addMerges(merges []string, ids map[string]int32, types []int32) error {
	var buf []byte
	for rank, m := range merges {
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%w: merge %d (%q): %s", ErrBadTokenizer, rank, m, fmt.Sprintf(format, args...))
		}
		// The first space after the first character, as llama.cpp splits.
		sp := -1
		if len(m) > 1 {
			if k := strings.IndexByte(m[1:], ' '); k >= 0 {
				sp = k + 1
			}
		}
		if sp < 0 || sp == len(m)-1 {
			return bad("not two tokens separated by a space")
		}
		var pair [3]int32
		buf = append(append(buf[:0], m[:sp]...), m[sp+1:]...)
		for i, part := range []string{m[:sp], m[sp+1:], string(buf)} {
			id, ok := ids[part]
			switch {
			case !ok && i == 2:
				return bad("the merged token %q is not in the vocabulary", part)
			case !ok:
				return bad("%q is not a token", part)
			case types[id] != TokenNormal:
				return bad("%q is token %d, a %s token, not a normal one", part, id, typeNames[types[id]])
			}
			pair[i] = id
		}
		key := uint64(pair[0])<<32 | uint64(pair[1])
		if _, dup := t.merges[key]; !dup {
			t.merges[key] = uint64(rank)<<32 | uint64(pair[2])
		}
	}
	return nil
}

func (t *BPE) VocabSize() int { return len(t.tokens) }

func (t *BPE) Kind() string { return "bpe" }

// MaxTokenBytes is the longest text one token stands for: a normal
// token's bytes, a user-defined token's text, a special token's string; at
// least 1.
func (t *BPE) MaxTokenBytes() int { return t.maxBytes }

// Encode tokenizes text as plain text: optional BOS (none if the
// vocabulary has no BOS token), then the pre-tokenizer's words, each merged
// on its own. Special-token strings in text are ordinary text.
func (t *BPE) Encode(text string, bos bool) []int {
	var ids []int
	if bos && t.bos >= 0 {
		ids = make([]int, 1, len(text)/4+2)
		ids[0] = t.bos
	}
	if text != "" {
		ids = t.encodeText(ids, text)
	}
	return ids
}

// EncodeSpecial is Encode, except that the control, user-defined and
// unknown tokens written in text ("<|begin_of_text|>", "<|im_end|>")
// become their ids (longest first, as llama.cpp's partition; see
// SentencePiece.EncodeSpecial). The text between them is pre-tokenized
// fragment by fragment.
func (t *BPE) EncodeSpecial(text string, bos bool) []int {
	var ids []int
	if bos && t.bos >= 0 {
		ids = append(ids, t.bos)
	}
	return t.spec.encodeParts(ids, text, nil, t.encodeText)
}

// EncodeChat is EncodeSpecial without BOS, except that no special token is
// recognised where it overlaps a plain span.
func (t *BPE) EncodeChat(text string, plain []Span) []int {
	return t.spec.encodeParts(nil, text, plain, t.encodeText)
}

// Decode concatenates the tokens' bytes (see TokenBytes).
func (t *BPE) Decode(ids []int) string {
	var sb strings.Builder
	for _, id := range ids {
		if id >= 0 && id < len(t.text) {
			sb.WriteString(t.text[id])
		}
	}
	return sb.String()
}

// TokenBytes is the text of one token: the bytes of a normal token, a
// user-defined token's text, a byte token's byte; nil for BOS, EOS, UNK,
// control, unknown and unused tokens and invalid ids.
func (t *BPE) TokenBytes(id int) []byte {
	if id < 0 || id >= len(t.text) || t.text[id] == "" {
		return nil
	}
	return []byte(t.text[id])
}

// encodeText appends the ids of a non-empty run of plain text.
func (t *BPE) encodeText(dst []int, s string) []int {
	sc := scratchPool.Get().(*scratch)
	defer putScratch(sc)
	t.pre.split(s, func(w string) { dst = t.encodeWord(dst, w, sc) })
	return dst
}

// encodeWord appends the ids of one pre-tokenized word, through the cache.
func (t *BPE) encodeWord(dst []int, w string, sc *scratch) []int {
	if dst, ok := t.cache.get(dst, w); ok {
		return dst
	}
	if len(w) == 1 {
		return t.emitByte(dst, w[0])
	}
	n := len(dst)
	if id, ok := t.words[w]; ok { // ignoreMerges (else words is nil)
		dst = append(dst, int(id))
	} else if len(w) <= smallWord {
		dst = t.mergeSmall(dst, w)
	} else {
		dst = inChunks(dst, w, func(dst []int, s string) []int { return t.mergeHeap(dst, s, sc) })
	}
	t.cache.put(w, dst[n:])
	return dst
}

// emitByte appends the token of a byte that merged with nothing: its byte
// token, else UNK, else nothing.
func (t *BPE) emitByte(dst []int, b byte) []int {
	if id := t.byteID[b]; id >= 0 {
		return append(dst, int(id))
	}
	if t.unk >= 0 {
		return append(dst, t.unk)
	}
	return dst
}

// noRank marks a pair that has no merge.
const noRank = math.MaxInt32

// pair is the merge of tokens l and r: its rank and the merged token.
func (t *BPE) pair(l, r int32) (rank, id int32) {
	if l < 0 || r < 0 {
		return noRank, -1
	}
	v, ok := t.merges[uint64(l)<<32|uint64(r)]
	if !ok {
		return noRank, -1
	}
	return int32(v >> 32), int32(v)
}

// mergeSmall appends the ids of w by BPE merging, in arrays on the stack
// for a word of at most smallWord bytes (the common case): every merge
// scans the pairs for the lowest rank (leftmost on ties: the heap's
// choice); each pair is looked up once, when it comes to be. Longer words
// go to mergeHeap.
func (t *BPE) mergeSmall(dst []int, w string) []int {
	var (
		ids  [smallWord]int32 // symbol i's token, -1 for a byte without one
		rank [smallWord]int32 // pair i (symbols i, i+1): rank of its merge, noRank if none
		into [smallWord]int32 // ... and the merged token
	)
	n := len(w)
	for i := range n {
		ids[i] = t.byteID[w[i]]
	}
	for i := 0; i+1 < n; i++ {
		rank[i], into[i] = t.pair(ids[i], ids[i+1])
	}
	for n > 1 {
		best := 0
		for i := 1; i+1 < n; i++ {
			if rank[i] < rank[best] {
				best = i
			}
		}
		if rank[best] == noRank {
			break
		}
		// Symbol best+1 joins best; the symbols and pairs after it move
		// down one.
		ids[best] = into[best]
		copy(ids[best+1:n-1], ids[best+2:n])
		if best+2 <= n-1 {
			copy(rank[best+1:n-2], rank[best+2:n-1])
			copy(into[best+1:n-2], into[best+2:n-1])
		}
		n--
		if best+1 < n {
			rank[best], into[best] = t.pair(ids[best], ids[best+1])
		}
		if best > 0 {
			rank[best-1], into[best-1] = t.pair(ids[best-1], ids[best])
		}
	}
	for _, id := range ids[:n] {
		if id >= 0 {
			dst = append(dst, int(id))
		} else if t.unk >= 0 { // a byte without a token
			dst = append(dst, t.unk)
		}
	}
	return dst
}

// mergeHeap is the merge of a long word in the linked list and priority
// queue of spm_encode.go, a rank r scored -r (higher scores merge first).
func (t *BPE) mergeHeap(dst []int, w string, sc *scratch) []int {
	syms := sc.syms[:0]
	for i := range len(w) {
		k := int32(i)
		syms = append(syms, symbol{start: k, end: k + 1, prev: k - 1, next: k + 1, id: t.byteID[w[i]]})
	}
	syms[len(syms)-1].next = -1
	h := mergeList(syms, sc.heap[:0], func(h []bigram, l, r int32) []bigram {
		if l < 0 || r < 0 {
			return h
		}
		rank, id := t.pair(syms[l].id, syms[r].id)
		if rank == noRank {
			return h
		}
		return pushHeap(h, bigram{score: -float32(rank), left: l, right: r, size: syms[r].end - syms[l].start, id: id})
	})
	for i := int32(0); i >= 0; i = syms[i].next {
		if s := syms[i]; s.id >= 0 {
			dst = append(dst, int(s.id))
		} else {
			dst = t.emitByte(dst, w[s.start])
		}
	}
	sc.syms, sc.heap = syms, h
	return dst
}
