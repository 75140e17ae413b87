package engine

import (
	"math"
)

// SamplingParams choose how a token is drawn from logits.
//
//   - Temperature <= 0: greedy, the lowest id among the maximal logits.
//   - otherwise softmax(logits/Temperature), restricted to the TopK most
//     likely ids (TopK <= 0: all), then to the smallest most-likely prefix
//     whose probability reaches TopP (TopP <= 0 or >= 1: all), renormalised,
//     and drawn with the sampler's own PRNG seeded by Seed. The draw walks
//     the candidates most likely first when a cut applies, in id order when
//     none does (no sort).
//
// "Most likely first" is logit descending, ties by id ascending (-0 == +0),
// NaN logits never candidates. Probabilities are math.Exp((logit-max)/T) in
// float64, summed in candidate order. How the candidates are found (a
// bounded heap for top-k, a radix sort for top-p alone) does not change any
// of this: the same params and the same logits sequence give the same
// tokens.
type SamplingParams struct {
	Temperature float32
	TopK        int
	TopP        float32
	Seed        uint64
}

// Sampler holds one sequence's sampling state (its PRNG and scratch). Not
// safe for concurrent use; make one per request.
type Sampler struct {
	p     SamplingParams
	state uint64
	idx   []uint32 // candidate ids (token ids: the engine's token type)
	prob  []float64
	pre   []float64 // top-p: the nucleus's probabilities, in order
	keys  []uint64  // radix sort: descKey<<32 | id
	tmp   []uint64
}

// NewSampler returns a sampler whose draws depend only on p.
func NewSampler(p SamplingParams) *Sampler { return &Sampler{p: p, state: p.Seed} }

// Params returns the params the sampler was made with (e.g. to tell a
// greedy sampler, which costs an argmax, from one that draws).
func (s *Sampler) Params() SamplingParams { return s.p }

// next is splitmix64 (see model.SplitMix64), giving a float64 in [0,1) from
// the top 53 bits.
func (s *Sampler) next() float64 {
	s.state += 0x9E3779B97F4A7C15
	z := s.state
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	z ^= z >> 31
	return float64(z>>11) * (1.0 / (1 << 53))
}

// Argmax is the lowest index of the largest value (NaN never wins), as a
// token id.
func Argmax(logits []float32) uint32 {
	best := 0
	for i, v := range logits {
		if v > logits[best] || (logits[best] != logits[best] && v == v) {
			best = i
		}
	}
	return uint32(best)
}

// heapMaxK is the largest TopK selected with a bounded heap. A heap costs
// one compare per id plus log(k) per id that enters it (about k*ln(n/k) in
// random order, every id when logits ascend); above this the radix sort of
// every id (four linear passes) is the safer bound.
const heapMaxK = 1024

// Sample draws one token id from logits (which it does not modify). With
// nothing to draw from (no logits, or every logit NaN) it returns 0: a
// token id has no value outside the vocabulary to say "none", and the
// engine's logits always hold one entry per id of a non-empty vocabulary.
func (s *Sampler) Sample(logits []float32) uint32 {
	if len(logits) == 0 {
		return 0
	}
	if !(s.p.Temperature > 0) {
		return Argmax(logits)
	}
	k := s.p.TopK
	if k >= len(logits) {
		k = 0 // a cut at or past the vocabulary cuts nothing
	}
	tp := s.p.TopP
	cutP := tp > 0 && tp < 1
	if k <= 0 && !cutP {
		return s.sampleAll(logits)
	}
	if k <= 0 {
		return s.sampleTopP(logits)
	}
	var idx []uint32
	if k <= heapMaxK {
		idx = s.topK(logits, k)
	} else {
		idx = s.sortAll(logits)
		if k < len(idx) {
			idx = idx[:k]
		}
	}
	if len(idx) == 0 {
		return 0 // every logit NaN
	}
	return s.drawSorted(logits, idx, cutP)
}

// drawSorted draws from idx (candidates most likely first, already cut to
// top-k): softmax over them, the top-p cut, and the walk.
func (s *Sampler) drawSorted(logits []float32, idx []uint32, cutP bool) uint32 {
	t := float64(s.p.Temperature)
	maxv := float64(logits[idx[0]])
	if cap(s.prob) < len(idx) {
		s.prob = make([]float64, len(idx))
	}
	prob := s.prob[:len(idx)]
	var sum float64
	for j, i := range idx {
		p := math.Exp(scaled(logits[i], maxv, t))
		prob[j] = p
		sum += p
	}
	if cutP {
		tp := float64(s.p.TopP)
		var cum float64
		for j, p := range prob {
			cum += p / sum
			if cum >= tp {
				idx, prob = idx[:j+1], prob[:j+1]
				break
			}
		}
	}
	return s.drawPrefix(idx, prob)
}

// scaled is (v-maxv)/t, the exponent of a candidate's probability. x/1 == x
// exactly, so T = 1 skips the division and changes no bit.
func scaled(v float32, maxv, t float64) float64 {
	x := float64(v) - maxv
	if t != 1 {
		x /= t
	}
	return x
}

// drawPrefix draws from the final candidates idx with probabilities prob
// (most likely first), renormalised by their sum in that order.
func (s *Sampler) drawPrefix(idx []uint32, prob []float64) uint32 {
	var sum float64
	for _, p := range prob {
		sum += p
	}
	u := s.next() * sum
	var cum float64
	for j, p := range prob {
		cum += p
		if u < cum {
			return idx[j]
		}
	}
	return idx[len(idx)-1]
}

// sampleTopP is the top-p cut with no top-k, without sorting the
// vocabulary. The cut walks candidates most likely first adding p/sum,
// where sum is the total in that same order; it is found here from the
// total in id order instead, which differs by a few roundings: every
// probability is computed once (in id order, as sampleAll does) with a
// histogram of its binary exponent, the most likely exponent buckets that
// hold tp (plus a margin) of the mass are the only ids sorted (a bucket
// never splits ties and every id in it is more likely than any below), and
// the walk over them finds the cut. The cut is kept only when neither side
// of it is within the rounding bound of tp, which makes it the cut the
// full-order sum would give; otherwise (or when the nucleus needs nearly
// every bucket, or a probability is not finite) the full sort decides.
// After the cut everything is summed in candidate order as before, so the
// token is the same.
func (s *Sampler) sampleTopP(logits []float32) uint32 {
	maxf, found := maxLogit(logits)
	if !found {
		return 0
	}
	t := float64(s.p.Temperature)
	if math.IsInf(float64(maxf), 0) || math.IsInf(t, 1) {
		// Inf-Inf or -Inf/Inf: NaN probabilities, whose (odd) draw only
		// the full order reproduces.
		return s.sortedTopP(logits)
	}
	maxv := float64(maxf)
	n := len(logits)
	if cap(s.prob) < n {
		s.prob = make([]float64, n)
	}
	prob := s.prob[:n] // by id; -1 marks NaN (not a candidate)
	// mass[e] sums the probabilities with binary exponent field e: p <= 1,
	// so e <= 1023 (p == 1).
	var mass [1024]float64
	var sum float64
	cands := 0
	for i, v := range logits {
		if v != v {
			prob[i] = -1
			continue
		}
		p := math.Exp(scaled(v, maxv, t))
		prob[i] = p
		sum += p
		mass[math.Float64bits(p)>>52] += p
		cands++
	}
	// Two sums of the same cands terms in different orders, each cum
	// after j more roundings: |cum_j - cum'_j| <= (2j + 2*cands + 2) u
	// (u = 2^-53) to first order; twice that bound, with j <= cands.
	eps := float64(8*cands+32) * 0x1p-53
	tp := float64(s.p.TopP)
	target := (tp + 1e-9) * sum
	var acc float64
	cut := 1023
	for ; cut > 0; cut-- {
		acc += mass[cut]
		if acc >= target {
			break
		}
	}
	if acc < target {
		return s.sortedTopP(logits) // the nucleus spans (nearly) everything
	}
	pmin := math.Float64frombits(uint64(cut) << 52)
	if cap(s.keys) < n {
		s.keys = make([]uint64, n)
	}
	keys := s.keys[:0]
	for i, v := range logits {
		if prob[i] >= pmin {
			keys = append(keys, uint64(descKey(v))<<32|uint64(i))
		}
	}
	idx := s.radixIDs(keys)
	var cum, prev float64
	m := -1
	for j, i := range idx {
		prev = cum
		cum += prob[i] / sum
		if cum >= tp {
			m = j
			break
		}
	}
	if m < 0 || cum < tp+eps || (m > 0 && prev >= tp-eps) {
		return s.sortedTopP(logits) // too close to call: the full order decides
	}
	if cap(s.pre) < m+1 {
		s.pre = make([]float64, m+1)
	}
	pre := s.pre[:m+1]
	for j, i := range idx[:m+1] {
		pre[j] = prob[i]
	}
	return s.drawPrefix(idx[:m+1], pre)
}

// sortedTopP is the top-p cut over every id in full order.
func (s *Sampler) sortedTopP(logits []float32) uint32 {
	idx := s.sortAll(logits)
	if len(idx) == 0 {
		return 0
	}
	return s.drawSorted(logits, idx, true)
}

// worse orders candidates: a is less likely than b (logit lower, or equal
// and a later id). Neither is NaN.
func worse(logits []float32, a, b uint32) bool {
	la, lb := logits[a], logits[b]
	if la != lb {
		return la < lb
	}
	return a > b
}

// topK returns the k most likely non-NaN ids, most likely first, with a
// heap of size k whose root is the least likely kept id: the same list as
// a full sort cut to k, since the order is total (ties broken by id).
func (s *Sampler) topK(logits []float32, k int) []uint32 {
	h := s.idx[:0]
	for i, v := range logits {
		if v != v {
			continue
		}
		if len(h) < k {
			h = append(h, uint32(i))
			// sift up
			for c := len(h) - 1; c > 0; {
				p := (c - 1) / 2
				if !worse(logits, h[c], h[p]) {
					break
				}
				h[c], h[p] = h[p], h[c]
				c = p
			}
			continue
		}
		// Ids arrive in increasing order, so a tie with the root loses
		// (the root's id is smaller): only a strictly larger logit enters.
		if !(v > logits[h[0]]) {
			continue
		}
		h[0] = uint32(i)
		siftDownWorst(logits, h, 0, len(h))
	}
	// Heap sort: moving the least likely to the end leaves the most likely
	// first.
	for end := len(h) - 1; end > 0; end-- {
		h[0], h[end] = h[end], h[0]
		siftDownWorst(logits, h, 0, end)
	}
	s.idx = h
	return h
}

// siftDownWorst restores the heap property (least likely at the root) of
// h[:n] below position c.
func siftDownWorst(logits []float32, h []uint32, c, n int) {
	for {
		m := 2*c + 1
		if m >= n {
			return
		}
		if r := m + 1; r < n && worse(logits, h[r], h[m]) {
			m = r
		}
		if !worse(logits, h[m], h[c]) {
			return
		}
		h[c], h[m] = h[m], h[c]
		c = m
	}
}

// descKey maps a logit to a uint32 that sorts ascending as the logit sorts
// descending, with -0 and +0 equal (they compare equal as floats).
func descKey(v float32) uint32 {
	if v == 0 {
		v = 0
	}
	b := math.Float32bits(v)
	if b>>31 != 0 {
		b = ^b
	} else {
		b |= 1 << 31
	}
	return ^b
}

// sortAll returns every non-NaN id, most likely first, ties by id.
func (s *Sampler) sortAll(logits []float32) []uint32 {
	n := len(logits)
	if cap(s.keys) < n {
		s.keys = make([]uint64, n)
	}
	keys := s.keys[:0]
	for i, v := range logits {
		if v == v {
			keys = append(keys, uint64(descKey(v))<<32|uint64(i))
		}
	}
	return s.radixIDs(keys)
}

// radixIDs sorts keys (descKey<<32 | id, built in increasing id order) by
// their key with an LSD radix sort on its four bytes and returns the ids in
// that order (in s.idx). Each pass is stable and the ids entered in
// increasing order, so ties keep id order without comparing ids. A pass
// whose byte is the same for every id is skipped (often the top byte: sign
// and high exponent bits).
func (s *Sampler) radixIDs(keys []uint64) []uint32 {
	m := len(keys)
	if cap(s.tmp) < m {
		s.tmp = make([]uint64, cap(keys))
	}
	if m == 0 {
		return s.idx[:0]
	}
	tmp := s.tmp[:m]
	// One read counts all four bytes; then one scatter per byte that varies.
	var count [4][256]int
	for _, x := range keys {
		count[0][byte(x>>32)]++
		count[1][byte(x>>40)]++
		count[2][byte(x>>48)]++
		count[3][byte(x>>56)]++
	}
	for d := range count {
		shift := uint(32 + 8*d)
		c := &count[d]
		if c[byte(keys[0]>>shift)] == m {
			continue
		}
		pos := 0
		for b, n := range c {
			c[b] = pos
			pos += n
		}
		for _, x := range keys {
			b := byte(x >> shift)
			tmp[c[b]] = x
			c[b]++
		}
		keys, tmp = tmp, keys
	}
	if cap(s.idx) < m {
		s.idx = make([]uint32, m)
	}
	idx := s.idx[:m]
	for j, x := range keys {
		idx[j] = uint32(x)
	}
	s.idx = idx
	return idx
}

// sampleAll draws from softmax(logits/T) over the whole vocabulary, walking
// the ids in order: with no top-k or top-p cut there is nothing to sort.
// One max pass in float32, then math.Exp in float64 into a reused buffer
// (the walk needs each probability again), summed in id order.
func (s *Sampler) sampleAll(logits []float32) uint32 {
	maxf, found := maxLogit(logits)
	if !found {
		return 0
	}
	maxv := float64(maxf)
	t := float64(s.p.Temperature)
	n := len(logits)
	if cap(s.prob) < n {
		s.prob = make([]float64, n)
	}
	prob := s.prob[:n]
	var sum float64
	last := 0
	for i, v := range logits {
		p := 0.0
		if v == v {
			p = math.Exp(scaled(v, maxv, t))
			last = i
		}
		prob[i] = p
		sum += p
	}
	u := s.next() * sum
	var cum float64
	for i, p := range prob {
		cum += p
		if p > 0 && u < cum {
			return uint32(i)
		}
	}
	return uint32(last)
}

// maxLogit is the largest non-NaN logit; found is false when every logit is
// NaN (nothing can be drawn).
func maxLogit(logits []float32) (maxf float32, found bool) {
	maxf = float32(math.Inf(-1))
	for _, v := range logits {
		if v == v {
			found = true
			if v > maxf {
				maxf = v
			}
		}
	}
	return maxf, found
}
