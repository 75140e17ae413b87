package engine

import (
	"fmt"
	"math"
	"sort"
	"testing"

	"github.com/semantic-kv/semantic/pkg/model"
)

// refSampler is the sampler as it was before the heap and radix selection
// (a full sort.Slice of the vocabulary for every cut): the reference the
// new one must match token for token, and the "old" side of the benchmarks.
type refSampler struct {
	p     SamplingParams
	state uint64
	idx   []int
	prob  []float64
}

func newRefSampler(p SamplingParams) *refSampler { return &refSampler{p: p, state: p.Seed} }

func (s *refSampler) next() float64 {
	s.state += 0x9E3779B97F4A7C15
	z := s.state
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	z ^= z >> 31
	return float64(z>>11) * (1.0 / (1 << 53))
}

// Sample returns the token id as the engine's token type (uint32); the
// reference's candidate lists stay []int as they were.
func (s *refSampler) Sample(logits []float32) uint32 {
	if len(logits) == 0 {
		return 0
	}
	if !(s.p.Temperature > 0) {
		return Argmax(logits)
	}
	n := len(logits)
	if tp := s.p.TopP; (s.p.TopK <= 0 || s.p.TopK >= n) && !(tp > 0 && tp < 1) {
		return s.sampleAll(logits)
	}
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
			return uint32(idx[j])
		}
	}
	return uint32(idx[len(idx)-1])
}

func (s *refSampler) sampleAll(logits []float32) uint32 {
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
			return uint32(i)
		}
	}
	return uint32(last)
}

// refOrder is every non-NaN id sorted the reference way.
func refOrder(logits []float32) []int {
	var idx []int
	for i, v := range logits {
		if v == v {
			idx = append(idx, i)
		}
	}
	sort.Slice(idx, func(a, b int) bool {
		la, lb := logits[idx[a]], logits[idx[b]]
		if la != lb {
			return la > lb
		}
		return idx[a] < idx[b]
	})
	return idx
}

var (
	nan  = float32(math.NaN())
	inf  = float32(math.Inf(1))
	negz = float32(math.Copysign(0, -1))
)

// genLogits makes logits of one of several shapes: smooth, heavy ties,
// special values sprinkled in (NaN, ±Inf, -0), a huge or tiny spread, all
// one value, all NaN, all -Inf, ascending (the heap's worst case).
func genLogits(r *model.SplitMix64, n, shape int) []float32 {
	l := make([]float32, n)
	for i := range l {
		switch shape {
		case 0: // smooth
			l[i] = r.Uniform(8)
		case 1: // heavy ties
			l[i] = float32(int(r.Next()%7)) - 3
		case 2: // specials among ties and values
			switch r.Next() % 10 {
			case 0:
				l[i] = nan
			case 1:
				l[i] = float32(math.Inf(-1))
			case 2:
				l[i] = negz
			case 3:
				l[i] = 0
			default:
				l[i] = float32(int(r.Next()%5)) * 0.5
			}
		case 3: // huge spread: most probabilities underflow
			l[i] = r.Uniform(1000)
		case 4: // tiny spread: near-uniform
			l[i] = 1 + r.Uniform(1e-6)
		case 5: // one value
			l[i] = 2.5
		case 6:
			l[i] = nan
		case 7:
			l[i] = float32(math.Inf(-1))
		case 8: // ascending, with a NaN now and then
			l[i] = float32(i) * 0.01
			if r.Next()%50 == 0 {
				l[i] = nan
			}
		case 9: // +Inf present: the reference's NaN probabilities
			l[i] = r.Uniform(4)
			if r.Next()%(uint64(n)+1) == 0 || i == n/2 {
				l[i] = inf
			}
		}
	}
	return l
}

// TestSamplerMatchesReference: the heap, the radix sort and the faster
// no-cut pass draw exactly the token the full-sort sampler drew, for every
// shape of logits, params and seed, over several draws per sampler (so the
// PRNG stays in step too).
func TestSamplerMatchesReference(t *testing.T) {
	r := &model.SplitMix64{State: 77}
	temps := []float32{0, -1, 1e-6, 0.1, 0.7, 1, 2, 100}
	topPs := []float32{0, -0.5, 1, 1.5, 1e-7, 0.1, 0.5, 0.9, 0.999, 0.99999994}
	sizes := []int{1, 2, 3, 17, 300, 2000}
	if !testing.Short() {
		sizes = append(sizes, 32000)
	}
	cases := 0
	for _, n := range sizes {
		topKs := []int{0, -3, 1, 2, 40, n - 1, n, n + 5, heapMaxK, heapMaxK + 1, 5000}
		for shape := 0; shape < 10; shape++ {
			for _, temp := range temps {
				for _, k := range topKs {
					for _, tp := range topPs {
						if (n == 32000 && r.Next()%16 != 0) || (n == 2000 && r.Next()%3 != 0) {
							continue // a sample of the big vocabularies keeps the test short
						}
						p := SamplingParams{Temperature: temp, TopK: k, TopP: tp, Seed: r.Next()}
						got, want := NewSampler(p), newRefSampler(p)
						for draw := 0; draw < 3; draw++ {
							l := genLogits(r, n, shape)
							g, w := got.Sample(l), want.Sample(l)
							if g != w {
								t.Fatalf("n=%d shape=%d %+v draw %d: got %d, reference %d", n, shape, p, draw, g, w)
							}
							cases++
						}
					}
				}
			}
		}
	}
	t.Logf("%d draws matched", cases)
}

// TestSamplerSelection: the heap's top-k and the radix sort list the ids in
// the reference order (logit descending, ties by id, -0 == +0, no NaN).
func TestSamplerSelection(t *testing.T) {
	r := &model.SplitMix64{State: 5}
	for _, n := range []int{1, 2, 9, 257, 5000} {
		for shape := 0; shape < 10; shape++ {
			l := genLogits(r, n, shape)
			want := refOrder(l)
			s := NewSampler(SamplingParams{Temperature: 1})
			if got := s.sortAll(l); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("n=%d shape=%d: sortAll\n got %v\nwant %v", n, shape, got, want)
			}
			for _, k := range []int{1, 2, 3, 40, n} {
				w := want
				if k < len(w) {
					w = w[:k]
				}
				if got := s.topK(l, k); fmt.Sprint(got) != fmt.Sprint(w) {
					t.Fatalf("n=%d shape=%d k=%d: topK\n got %v\nwant %v", n, shape, k, got, w)
				}
			}
		}
	}
}

// TestSamplerTopPPartial: on peaked logits the top-p cut sorts only the
// most likely exponent buckets (s.idx holds the ids it sorted), not the
// vocabulary, and still draws the reference's tokens.
func TestSamplerTopPPartial(t *testing.T) {
	r := &model.SplitMix64{State: 11}
	const n = 32000
	for _, tp := range []float32{0.1, 0.5, 0.9, 0.95} {
		p := SamplingParams{Temperature: 1, TopP: tp, Seed: r.Next()}
		got, want := NewSampler(p), newRefSampler(p)
		for draw := 0; draw < 5; draw++ {
			l := make([]float32, n)
			for i := range l {
				l[i] = r.Uniform(12)
			}
			if g, w := got.Sample(l), want.Sample(l); g != w {
				t.Fatalf("top-p %v draw %d: got %d, reference %d", tp, draw, g, w)
			}
			if len(got.idx) >= n/4 {
				t.Fatalf("top-p %v draw %d: sorted %d of %d ids", tp, draw, len(got.idx), n)
			}
		}
	}
}
