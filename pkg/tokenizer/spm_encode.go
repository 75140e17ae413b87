package tokenizer

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// The merge loop. Symbols are byte ranges of the text in a doubly linked
// list; every adjacent pair whose text is a normal piece is a candidate in
// a max-heap ordered by the piece's score, then by the left symbol's
// position (leftmost wins ties, as in run.c and llama.cpp). Popping the
// best candidate merges the right symbol into the left one and queues the
// two new pairs; candidates made stale by an earlier merge are recognised
// by their size (symbols only grow, so the summed length changes) and
// dropped. Each merge costs O(log n), never a rescan. Texts of at most
// smallWord bytes (single words) take mergeSmall instead, which makes the
// same choices with a scan of a few cached pair scores.
//
// This is exactly run.c's loop (which rescans for the highest-scoring pair,
// leftmost on ties, after every merge): the heap's top is always the best
// current pair, since every current pair was queued when it came to be.
// One difference in what is merged: run.c looks up the concatenation of
// the two pieces' strings, so its byte-fallback symbols ("<0xC3>") never
// merge; here a character that is not a piece stays a symbol of its raw
// bytes and could merge if some piece contained it (llama.cpp's way). In
// vocabularies where every character of every normal piece is a piece
// itself (SentencePiece builds them that way; tok512.bin is one) the two
// are the same. And run.c may merge into any piece, this only into normal
// ones: the same unless pairs can spell a control or byte piece ("<s" +
// ">"), which tok512.bin's cannot.

// symbol is one node of the list: text[start:end], its token id (-1 for a
// character that is not a piece), and its neighbours (-1 at the ends).
// Positions are int32: texts are cut into chunks below 1 GiB.
type symbol struct {
	start, end int32
	prev, next int32
	id         int32
}

// bigram is a candidate merge of symbols left and right into token id,
// valid while the two still measure size bytes together.
type bigram struct {
	score       float32
	left, right int32
	size        int32
	id          int32
}

// before orders the heap: higher score first, then leftmost.
func (a *bigram) before(b *bigram) bool {
	return a.score > b.score || (a.score == b.score && a.left < b.left)
}

// scratch is the per-call working memory, pooled so that encoding a word
// allocates nothing.
type scratch struct {
	syms []symbol
	heap []bigram
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// maxScratch bounds what goes back into the pool: a 1 MB prompt's buffers
// are not worth keeping alive.
const maxScratch = 1 << 16

func putScratch(sc *scratch) {
	if cap(sc.syms) > maxScratch || cap(sc.heap) > maxScratch {
		return
	}
	scratchPool.Put(sc)
}

// maxChunk is the most bytes merged as one list (int32 positions). A text
// beyond it (no spaces for a gigabyte) is cut at a character boundary; no
// real input comes near.
const maxChunk = 1 << 30

// encodeText appends the ids of s (spaces as ' ', dummy prefix already
// added).
//
// Pre-splitting: when no normal piece has a space right after a non-space
// byte (t.split; true for llama's and the stories vocabularies, whose only
// inner '▁' are in leading runs like "▁▁▁"), no merge can join the bytes on
// both sides of a word start, a ' ' that follows a non-space byte. The
// words (leading spaces + non-spaces) are then independent: every merge in
// a word is the best pair of that word when it happens (it is the best of
// the whole text), so each word's merges are those of encoding it alone,
// and the result is the same as merging the whole text. Words keep the
// heap small and repeat, so their encodings are cached. Otherwise (a
// vocabulary with pieces like "of▁the") the whole text is one list.
func (t *SentencePiece) encodeText(dst []int, s string) []int {
	sc := scratchPool.Get().(*scratch)
	defer putScratch(sc)
	if !t.split {
		return t.encodeChunks(dst, s, sc)
	}
	for start := 0; start < len(s); {
		j := start
		for j < len(s) && s[j] == ' ' {
			j++
		}
		end := len(s)
		if j < len(s) {
			if k := strings.IndexByte(s[j:], ' '); k >= 0 {
				end = j + k
			}
		}
		dst = t.encodeWord(dst, s[start:end], sc)
		start = end
	}
	return dst
}

// encodeWord appends the ids of one word, through the cache.
func (t *SentencePiece) encodeWord(dst []int, w string, sc *scratch) []int {
	if dst, ok := t.cache.get(dst, w); ok {
		return dst
	}
	n := len(dst)
	dst = t.encodeChunks(dst, w, sc)
	t.cache.put(w, dst[n:])
	return dst
}

func (t *SentencePiece) encodeChunks(dst []int, s string, sc *scratch) []int {
	if len(s) <= maxChunk { // no closure to allocate in the common case
		return t.merge(dst, s, sc)
	}
	return inChunks(dst, s, func(dst []int, s string) []int { return t.merge(dst, s, sc) })
}

// inChunks appends merge's ids of s, cut at character boundaries into
// chunks of at most maxChunk bytes.
func inChunks(dst []int, s string, merge func([]int, string) []int) []int {
	for len(s) > maxChunk {
		cut := maxChunk
		for cut > maxChunk-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
			cut--
		}
		dst = merge(dst, s[:cut])
		s = s[cut:]
	}
	return merge(dst, s)
}

// smallWord is the longest text (bytes) that mergeSmall takes.
const smallWord = 32

// mergeSmall is merge for a short text, the common case of one word: the
// symbols live in arrays on the stack and every merge scans the few pairs
// for the best one (highest score, leftmost on ties: the same choice as the
// heap's), which beats maintaining a heap for a handful of symbols. Each
// pair is still looked up once, when it comes to be.
func (t *SentencePiece) mergeSmall(dst []int, s string) []int {
	var (
		bound [smallWord + 1]int32 // symbol i is s[bound[i]:bound[i+1]]
		ids   [smallWord]int32     // symbol i's token, -1 if not a piece
		pid   [smallWord]int32     // pair i (symbols i, i+1) merges into this token, or -1
		psc   [smallWord]float32   // ... with this score
	)
	n := 0
	for i := 0; i < len(s); n++ {
		c, size, id := s[i], 1, int32(-1)
		if c < utf8.RuneSelf {
			id = t.ascii[c]
		} else {
			_, size = utf8.DecodeRuneInString(s[i:])
			if v, ok := t.lookup[s[i:i+size]]; ok {
				id = v
			}
		}
		bound[n], ids[n] = int32(i), id
		i += size
	}
	bound[n] = int32(len(s))
	pair := func(i int) {
		pid[i] = -1
		if id, score, ok := t.pairID(s, bound[i], bound[i+2]); ok {
			pid[i], psc[i] = id, score
		}
	}
	for i := 0; i+1 < n; i++ {
		pair(i)
	}
	for n > 1 {
		best := -1
		for i := 0; i+1 < n; i++ {
			if pid[i] >= 0 && (best < 0 || psc[i] > psc[best]) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		// Symbol best+1 joins best; the symbols and pairs after it move
		// down one.
		ids[best] = pid[best]
		copy(bound[best+1:], bound[best+2:n+1])
		copy(ids[best+1:], ids[best+2:n])
		if best+2 < n-1 {
			copy(pid[best+1:], pid[best+2:n-1])
			copy(psc[best+1:], psc[best+2:n-1])
		}
		n--
		if best+1 < n {
			pair(best)
		}
		if best > 0 {
			pair(best - 1)
		}
	}
	for i := 0; i < n; i++ {
		dst = t.emit(dst, s, bound[i], bound[i+1], ids[i])
	}
	return dst
}

// emit appends the token of symbol s[start:end]: its id, or for a
// character that is not a piece its byte-fallback pieces, else <unk> per
// byte, else nothing.
func (t *SentencePiece) emit(dst []int, s string, start, end, id int32) []int {
	if id >= 0 {
		return append(dst, int(id))
	}
	for j := start; j < end; j++ {
		if id := t.byteID[s[j]]; id >= 0 {
			dst = append(dst, int(id))
		} else if t.unk >= 0 {
			dst = append(dst, t.unk)
		}
	}
	return dst
}

// merge appends the ids of s by BPE merging (see the top of this file).
func (t *SentencePiece) merge(dst []int, s string, sc *scratch) []int {
	switch {
	case s == "":
		return dst
	case len(s) <= smallWord:
		return t.mergeSmall(dst, s)
	}
	return t.mergeHeap(dst, s, sc)
}

// mergeHeap is merge with the linked list and the priority queue.
func (t *SentencePiece) mergeHeap(dst []int, s string, sc *scratch) []int {
	syms := sc.syms[:0]
	for i := 0; i < len(s); {
		c, n, id := s[i], 1, int32(-1)
		if c < utf8.RuneSelf {
			id = t.ascii[c]
		} else {
			_, n = utf8.DecodeRuneInString(s[i:])
			if v, ok := t.lookup[s[i:i+n]]; ok {
				id = v
			}
		}
		k := int32(len(syms))
		syms = append(syms, symbol{start: int32(i), end: int32(i + n), prev: k - 1, next: k + 1, id: id})
		i += n
	}
	syms[len(syms)-1].next = -1
	h := mergeList(syms, sc.heap[:0], func(h []bigram, l, r int32) []bigram { return t.pushPair(h, syms, s, l, r) })
	for i := int32(0); i >= 0; i = syms[i].next {
		dst = t.emit(dst, s, syms[i].start, syms[i].end, syms[i].id)
	}
	sc.syms, sc.heap = syms, h
	return dst
}

// mergeList is the merge loop over the linked list syms (see the top of
// this file), with the empty heap h: pair queues the candidate merge of
// symbols l and r, if any (either may be -1: none). It returns the heap's
// storage for reuse.
func mergeList(syms []symbol, h []bigram, pair func(h []bigram, l, r int32) []bigram) []bigram {
	for i := int32(1); i < int32(len(syms)); i++ {
		h = pair(h, i-1, i)
	}
	for len(h) > 0 {
		b := h[0]
		h = popHeap(h)
		l, r := &syms[b.left], &syms[b.right]
		if l.end == l.start || r.end == r.start || (l.end-l.start)+(r.end-r.start) != b.size {
			continue // stale: one side was merged since
		}
		l.end, l.id, l.next = r.end, b.id, r.next
		r.start = r.end
		if l.next >= 0 {
			syms[l.next].prev = b.left
		}
		h = pair(h, l.prev, b.left)
		h = pair(h, b.left, l.next)
	}
	return h
}

// pairID is the normal token whose text is s[start:end], the text of two
// adjacent symbols, and its score; ok is false when there is none (or, for
// llama2.c, when run.c would not merge it).
func (t *SentencePiece) pairID(s string, start, end int32) (id int32, score float32, ok bool) {
	switch {
	case end-start == 2 && s[start] < utf8.RuneSelf && s[start+1] < utf8.RuneSelf:
		// Two ASCII characters, the most common pair: a table, not a hash.
		if id = t.ascii2[int(s[start])<<7|int(s[start+1])]; id < 0 {
			return 0, 0, false
		}
	case int(end-start) > t.maxLen:
		return 0, 0, false
	default:
		if id, ok = t.lookup[s[start:end]]; !ok {
			return 0, 0, false
		}
	}
	score = t.scores[id]
	if t.legacy && !(score > -1e10) {
		return 0, 0, false // run.c starts its search at -1e10 and needs strictly more
	}
	return id, score, true
}

// pushPair queues the merge of symbols l and r if their text is a piece.
func (t *SentencePiece) pushPair(h []bigram, syms []symbol, s string, l, r int32) []bigram {
	if l < 0 || r < 0 {
		return h
	}
	start, end := syms[l].start, syms[r].end
	id, score, ok := t.pairID(s, start, end)
	if !ok {
		return h
	}
	return pushHeap(h, bigram{score: score, left: l, right: r, size: end - start, id: id})
}

// pushHeap adds b to the heap.
func pushHeap(h []bigram, b bigram) []bigram {
	h = append(h, b)
	// Sift up.
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !h[i].before(&h[p]) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
	return h
}

// popHeap removes the top of the heap.
func popHeap(h []bigram) []bigram {
	n := len(h) - 1
	h[0] = h[n]
	h = h[:n]
	for i := 0; ; {
		best, l := i, 2*i+1
		if l < n && h[l].before(&h[best]) {
			best = l
		}
		if r := l + 1; r < n && h[r].before(&h[best]) {
			best = r
		}
		if best == i {
			break
		}
		h[i], h[best] = h[best], h[i]
		i = best
	}
	return h
}

// The word cache: a direct-mapped table of atomic pointers, so a lookup
// takes no lock (Encode runs on many goroutines), memory is bounded
// (cacheSlots entries of under 200 bytes: 700 KiB at most), and a
// collision just replaces the entry. An entry is one pointer-free
// allocation, immutable once stored. Words of one or two bytes are not
// worth a lookup.
const (
	cacheSlots   = 1 << 12
	cacheMinWord = 3
	cacheMaxWord = 32
)

type wordCache struct {
	seed  maphash.Seed
	slots [cacheSlots]atomic.Pointer[cacheEntry]
}

type cacheEntry struct {
	wlen, nids uint8
	word       [cacheMaxWord]byte
	ids        [cacheMaxWord]int32
}

func newWordCache() *wordCache { return &wordCache{seed: maphash.MakeSeed()} }

// get appends the cached ids of word w to dst; ok is false when w is not
// cached (or c is nil, or w is too short or too long to be).
func (c *wordCache) get(dst []int, w string) (_ []int, ok bool) {
	if c == nil || len(w) > cacheMaxWord || len(w) < cacheMinWord {
		return dst, false
	}
	e := c.slots[maphash.String(c.seed, w)&(cacheSlots-1)].Load()
	if e == nil || int(e.wlen) != len(w) || string(e.word[:e.wlen]) != w {
		return dst, false
	}
	for _, id := range e.ids[:e.nids] {
		dst = append(dst, int(id))
	}
	return dst, true
}

// put caches ids as the encoding of word w, replacing whatever shared its
// slot. Words that get cannot return, and encodings of more ids than
// cacheMaxWord (never: at most one id per byte), are not stored.
func (c *wordCache) put(w string, ids []int) {
	if c == nil || len(w) > cacheMaxWord || len(w) < cacheMinWord || len(ids) > cacheMaxWord {
		return
	}
	e := &cacheEntry{wlen: uint8(len(w)), nids: uint8(len(ids))}
	copy(e.word[:], w)
	for i, id := range ids {
		e.ids[i] = int32(id)
	}
	c.slots[maphash.String(c.seed, w)&(cacheSlots-1)].Store(e)
}
