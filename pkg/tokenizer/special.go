package tokenizer

import (
	"cmp"
	"slices"
	"sort"
	"strings"
)

// specialSet finds the strings of the special tokens (control, user-defined
// and unknown pieces) in a text, for EncodeSpecial and EncodeChat.
type specialSet struct {
	toks   []specialTok       // by rank: longer first, then lower id; distinct texts
	first  [256]bool          // some token starts with this byte
	single [256]int32         // rank of the one-byte token that is this byte, or -1
	pairs  map[uint16][]int32 // ranks of the longer tokens by their first two bytes, ascending
}

type specialTok struct {
	text string
	id   int32
}

// match is a special token found at text[pos:end].
type match struct {
	pos, end int
	id       int32
}

func newSpecialSet(pieces []string, ids []int32) specialSet {
	s := specialSet{pairs: map[uint16][]int32{}}
	for i := range s.single {
		s.single[i] = -1
	}
	slices.SortFunc(ids, func(a, b int32) int {
		if c := cmp.Compare(len(pieces[b]), len(pieces[a])); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	seen := map[string]bool{}
	for _, id := range ids {
		p := pieces[id]
		if seen[p] {
			continue // the same text twice: the lower id takes every match
		}
		seen[p] = true
		r := int32(len(s.toks))
		s.toks = append(s.toks, specialTok{text: p, id: id})
		s.first[p[0]] = true
		if len(p) == 1 {
			s.single[p[0]] = r
		} else {
			k := uint16(p[0])<<8 | uint16(p[1])
			s.pairs[k] = append(s.pairs[k], r)
		}
	}
	return s
}

// partition returns the special tokens in text, by position, as llama.cpp's
// tokenizer_st_partition finds them: token by token, longest first (equal
// lengths: lower id first; llama.cpp's order there is unspecified), each
// taking its leftmost non-overlapping occurrences in the text that the
// tokens before it did not take. Occurrences that overlap a plain span are
// not candidates.
//
// It finds every occurrence in one scan (O(len(text) × tokens sharing a
// two-byte prefix)) and then accepts them in that order. Testing only an
// occurrence's first and last byte against the taken bytes suffices: every
// token taken before is at least as long, so one that overlaps the
// occurrence covers one of its ends.
func (s *specialSet) partition(text string, plain []Span) []match {
	if len(s.toks) == 0 || text == "" {
		return nil
	}
	type occ struct {
		rank int32
		pos  int
	}
	var occs []occ
	for p := 0; p < len(text); p++ {
		c := text[p]
		if !s.first[c] {
			continue
		}
		if r := s.single[c]; r >= 0 {
			occs = append(occs, occ{r, p})
		}
		if p+1 < len(text) {
			for _, r := range s.pairs[uint16(c)<<8|uint16(text[p+1])] {
				if strings.HasPrefix(text[p:], s.toks[r].text) {
					occs = append(occs, occ{r, p})
				}
			}
		}
	}
	if len(occs) == 0 {
		return nil
	}
	if spans := mergeSpans(plain, len(text)); len(spans) > 0 {
		kept := occs[:0]
		for _, o := range occs {
			end := o.pos + len(s.toks[o.rank].text)
			// The first span that ends after pos overlaps iff it starts before end.
			i := sort.Search(len(spans), func(i int) bool { return spans[i].End > o.pos })
			if i == len(spans) || spans[i].Start >= end {
				kept = append(kept, o)
			}
		}
		occs = kept
	}
	// Scanned by position, so a stable sort by rank orders by (rank, pos).
	slices.SortStableFunc(occs, func(a, b occ) int { return cmp.Compare(a.rank, b.rank) })
	taken := make([]bool, len(text))
	var out []match
	for _, o := range occs {
		tok := &s.toks[o.rank]
		end := o.pos + len(tok.text)
		if taken[o.pos] || taken[end-1] {
			continue
		}
		for i := o.pos; i < end; i++ {
			taken[i] = true
		}
		out = append(out, match{pos: o.pos, end: end, id: tok.id})
	}
	slices.SortFunc(out, func(a, b match) int { return cmp.Compare(a.pos, b.pos) })
	return out
}

// encodeParts appends the ids of text: the special tokens that partition
// finds (none overlapping a plain span) as their ids, and each run of text
// between them through fragment, which encodes a non-empty run of plain
// text. It is EncodeSpecial and EncodeChat for every tokenizer that has
// special-token strings.
func (s *specialSet) encodeParts(ids []int, text string, plain []Span, fragment func([]int, string) []int) []int {
	last := 0
	for _, m := range s.partition(text, plain) {
		if m.pos > last {
			ids = fragment(ids, text[last:m.pos])
		}
		ids = append(ids, int(m.id))
		last = m.end
	}
	if last < len(text) {
		ids = fragment(ids, text[last:])
	}
	return ids
}

// mergeSpans clips spans to [0, n), drops empty ones and merges the rest
// into sorted disjoint spans.
func mergeSpans(spans []Span, n int) []Span {
	var out []Span
	for _, sp := range spans {
		sp.Start, sp.End = max(sp.Start, 0), min(sp.End, n)
		if sp.Start < sp.End {
			out = append(out, sp)
		}
	}
	slices.SortFunc(out, func(a, b Span) int { return cmp.Compare(a.Start, b.Start) })
	merged := out[:0]
	for _, sp := range out {
		if k := len(merged) - 1; k >= 0 && sp.Start <= merged[k].End {
			merged[k].End = max(merged[k].End, sp.End)
			continue
		}
		merged = append(merged, sp)
	}
	return merged
}
