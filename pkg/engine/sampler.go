package engine

import (
	"math"
	"sort"
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
// The same params and the same logits sequence give the same tokens.
type SamplingParams struct {
	Temperature float32
	TopK        int
	TopP        float32
	Seed        uint64
}

// Sampler holds one sequence's sampling state (its PRNG). Not safe for
// concurrent use; make one per request.
type Sampler struct {
	p     SamplingParams
	state uint64
	idx   []int
	prob  []float64
}

// NewSampler returns a sampler whose draws depend only on p.
func NewSampler(p SamplingParams) *Sampler { return &Sampler{p: p, state: p.Seed} }

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

// Argmax is the lowest index of the largest value (NaN never wins).
func Argmax(logits []float32) int {
	best := 0
	for i, v := range logits {
		if v > logits[best] || (logits[best] != logits[best] && v == v) {
			best = i
		}
	}
	return best
}

// Sample draws one token id from logits (which it does not modify).
func (s *Sampler) Sample(logits []float32) int {
	if len(logits) == 0 {
		return -1
	}
	if !(s.p.Temperature > 0) {
		return Argmax(logits)
	}
	n := len(logits)
	if tp := s.p.TopP; (s.p.TopK <= 0 || s.p.TopK >= n) && !(tp > 0 && tp < 1) {
		return s.sampleAll(logits)
	}
	// Sort ids by logit descending, ties by id, so the candidate order (and
	// so the draw) is fully determined.
	s.idx = s.idx[:0]
	for i := 0; i < n; i++ {
		if v := logits[i]; v == v {
			s.idx = append(s.idx, i)
		}
	}
	if len(s.idx) == 0 {
		return 0
	}
	idx := s.idx
	sort.Slice(idx, func(a, b int) bool {
		la, lb := logits[idx[a]], logits[idx[b]]
		if la != lb {
			return la > lb
		}
		return idx[a] < idx[b]
	})
	if k := s.p.TopK; k > 0 && k < len(idx) {
		idx = idx[:k]
	}
	t := float64(s.p.Temperature)
	maxv := float64(logits[idx[0]])
	s.prob = s.prob[:0]
	var sum float64
	for _, i := range idx {
		p := math.Exp((float64(logits[i]) - maxv) / t)
		s.prob = append(s.prob, p)
		sum += p
	}
	if tp := float64(s.p.TopP); tp > 0 && tp < 1 {
		var cum float64
		for j, p := range s.prob {
			cum += p / sum
			if cum >= tp {
				idx, s.prob = idx[:j+1], s.prob[:j+1]
				break
			}
		}
		sum = 0
		for _, p := range s.prob {
			sum += p
		}
	}
	u := s.next() * sum
	var cum float64
	for j, p := range s.prob {
		cum += p
		if u < cum {
			return idx[j]
		}
	}
	return idx[len(idx)-1]
}

// sampleAll draws from softmax(logits/T) over the whole vocabulary, walking
// the ids in order: with no top-k or top-p cut there is nothing to sort (a
// sort of a 32k vocabulary costs about 5 ms a token).
func (s *Sampler) sampleAll(logits []float32) int {
	maxv, found := math.Inf(-1), false
	for _, v := range logits {
		if v == v {
			maxv, found = math.Max(maxv, float64(v)), true
		}
	}
	if !found {
		return 0
	}
	t := float64(s.p.Temperature)
	s.prob = s.prob[:0]
	var sum float64
	last := 0
	for i, v := range logits {
		p := 0.0
		if v == v {
			p = math.Exp((float64(v) - maxv) / t)
			last = i
		}
		s.prob = append(s.prob, p)
		sum += p
	}
	u := s.next() * sum
	var cum float64
	for i, p := range s.prob {
		cum += p
		if p > 0 && u < cum {
			return i
		}
	}
	return last
}
