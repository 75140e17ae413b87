package engine

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/semantic-kv/semantic/pkg/model"
)

// samplerModes are the params the sampling benchmarks compare.
var samplerModes = []struct {
	name string
	p    SamplingParams
}{
	{"greedy", SamplingParams{}},
	{"all", SamplingParams{Temperature: 1}},
	{"top-k40", SamplingParams{Temperature: 1, TopK: 40}},
	{"top-p0.9", SamplingParams{Temperature: 1, TopP: 0.9}},
	{"top-k40+top-p0.9", SamplingParams{Temperature: 1, TopK: 40, TopP: 0.9}},
}

// BenchmarkSamplerOldNew: one draw over 32k logits, the reference sampler
// (full sort.Slice for any cut) against the current one, in the same run.
// "flat" logits are uniform in [-1, 1] (a top-p 0.9 nucleus of ~85% of the
// vocabulary, the worst case for top-p); "peaked" are uniform in [-12, 12]
// (a nucleus of a few hundred ids, closer to a trained model).
func BenchmarkSamplerOldNew(b *testing.B) {
	for _, shape := range []struct {
		name   string
		spread float32
	}{{"flat", 1}, {"peaked", 12}} {
		r := &model.SplitMix64{State: 9}
		logits := make([]float32, 32000)
		for i := range logits {
			logits[i] = r.Uniform(shape.spread)
		}
		for _, c := range samplerModes {
			b.Run(fmt.Sprintf("%s/%s/old", shape.name, c.name), func(b *testing.B) {
				s := newRefSampler(c.p)
				for i := 0; i < b.N; i++ {
					s.Sample(logits)
				}
			})
			b.Run(fmt.Sprintf("%s/%s/new", shape.name, c.name), func(b *testing.B) {
				s := NewSampler(c.p)
				for i := 0; i < b.N; i++ {
					s.Sample(logits)
				}
			})
		}
	}
}

// BenchmarkSampleStep: what sampling adds to a decode step at batch 1. The
// model is builtin:small's shape with a 32k vocabulary (dim 512, 8 layers,
// ~42M parameters, the shape of llama2.c's stories42M), or the model named
// by $SEMANTIC_BENCH_MODEL. Each iteration is one engine step (context
// 128-384) followed by one draw per mode, new and reference, from the
// step's logits; the metrics are each draw's time as a percentage of the
// step's (<mode>-% for the current sampler, <mode>-old-% for the
// reference), and the step itself in ms.
func BenchmarkSampleStep(b *testing.B) {
	m := sampleStepModel(b)
	e := newEngine(b, m, 16, 0)
	r := &model.SplitMix64{State: 3}
	const lo, hi = 128, 384
	seq := newSeq(e, hi)
	if _, err := e.Step([]StepInput{{Seq: seq, Tokens: randTokens(r, lo, m.Config.Vocab)}}); err != nil {
		b.Fatal(err)
	}
	type timed struct {
		name   string
		sample func([]float32) uint32
		d      time.Duration
	}
	var samplers []*timed
	for _, c := range samplerModes {
		samplers = append(samplers,
			&timed{name: c.name, sample: NewSampler(c.p).Sample},
			&timed{name: c.name + "-old", sample: newRefSampler(c.p).Sample})
	}
	tok := uint32(r.Next() % uint64(m.Config.Vocab))
	var step time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if seq.Len >= hi {
			seq.Len = lo
		}
		t0 := time.Now()
		logits, err := e.Step([]StepInput{{Seq: seq, Tokens: []uint32{tok}}})
		if err != nil {
			b.Fatal(err)
		}
		step += time.Since(t0)
		for _, s := range samplers {
			t := time.Now()
			tok = s.sample(logits[0])
			s.d += time.Since(t)
		}
	}
	b.StopTimer()
	b.ReportMetric(step.Seconds()*1000/float64(b.N), "step-ms")
	for _, s := range samplers {
		b.ReportMetric(100*float64(s.d)/float64(step), s.name+"-%")
	}
}

// sampleStepModel is $SEMANTIC_BENCH_MODEL when set, else builtin:small's
// config with a 32k vocabulary (random weights, generated once per run).
func sampleStepModel(b *testing.B) *model.Model {
	b.Helper()
	b.StopTimer()
	defer b.StartTimer()
	if os.Getenv("SEMANTIC_BENCH_MODEL") != "" {
		return loadSmall(b)
	}
	m, err := small32k()
	if err != nil {
		b.Fatal(err)
	}
	return m
}

var small32k = sync.OnceValues(func() (*model.Model, error) {
	return model.Random("small-32k", model.Config{Dim: 512, HiddenDim: 1376, Layers: 8, Heads: 8, KVHeads: 4,
		Vocab: 32000, SeqLen: 2048, NormEps: 1e-5, RopeTheta: 10000}, 0x5EED_0000_0000_0032)
})
