package engine

import (
	"testing"

	"github.com/semantic-kv/semantic/pkg/model"
)

// hd64Model is a small random model with builtin:small's head size (64), so
// the tests cover the 64-wide V accumulation and multi-row attention jobs
// over a few hundred positions (builtin:tiny has head size 16).
func hd64Model(t testing.TB) *model.Model {
	t.Helper()
	c := model.Config{Dim: 128, HiddenDim: 196, Layers: 2, Heads: 2, KVHeads: 1, Vocab: 259, SeqLen: 512, NormEps: 1e-5, RopeTheta: 10000}
	r := &model.SplitMix64{State: 64}
	u := func(n int, a float32) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = r.Uniform(a)
		}
		return s
	}
	ones := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = 1
		}
		return s
	}
	m := &model.Model{Name: "hd64", Config: c, Tag: "test-hd64", BOS: 1, EOS: 2,
		Embedding: model.F32(c.Vocab, c.Dim, u(c.Vocab*c.Dim, 1)), FinalNorm: ones(c.Dim), Classifier: model.F32(c.Vocab, c.Dim, u(c.Vocab*c.Dim, 0.3))}
	a := float32(0.15)
	for l := 0; l < c.Layers; l++ {
		m.Layers = append(m.Layers, model.Layer{
			AttNorm: ones(c.Dim), FFNNorm: ones(c.Dim),
			Wq: model.F32(c.Dim, c.Dim, u(c.Dim*c.Dim, a)), Wk: model.F32(c.KVDim(), c.Dim, u(c.KVDim()*c.Dim, a)),
			Wv: model.F32(c.KVDim(), c.Dim, u(c.KVDim()*c.Dim, a)), Wo: model.F32(c.Dim, c.Dim, u(c.Dim*c.Dim, a/2)),
			W1: model.F32(c.HiddenDim, c.Dim, u(c.HiddenDim*c.Dim, a)), W2: model.F32(c.Dim, c.HiddenDim, u(c.Dim*c.HiddenDim, a/2)),
			W3: model.F32(c.HiddenDim, c.Dim, u(c.HiddenDim*c.Dim, a)),
		})
	}
	return m
}

// TestLongPromptInvariance: with head size 64 and prompts long enough for
// multi-row, multi-page attention jobs, logits and pages are bit-identical
// whether the prompt is prefilled at once, in random chunks, or one token
// at a time, and whether sequences run alone or batched.
func TestLongPromptInvariance(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		m := hd64Model(t)
		r := &model.SplitMix64{State: 31}
		const n = 300
		prompt := randTokens(r, n, m.Config.Vocab)
		for _, tpb := range []int{16, 7} {
			e := newEngine(t, m, tpb, 2)
			ref := newSeq(e, n)
			perPos := make([][]float32, n)
			for i, tok := range prompt {
				out, err := e.Step([]StepInput{{Seq: ref, Tokens: []uint32{tok}}})
				if err != nil {
					t.Fatal(err)
				}
				perPos[i] = out[0]
			}
			for trial := 0; trial < 3; trial++ {
				e := newEngine(t, m, tpb, 1+trial)
				s := newSeq(e, n)
				// A second sequence shares every step, so jobs of both mix.
				other := newSeq(e, n)
				otherPrompt := randTokens(r, n, m.Config.Vocab)
				for pos := 0; pos < n; {
					k := 1 + intn(r, n-pos)
					if trial == 0 {
						k = n
					}
					in := []StepInput{{Seq: s, Tokens: prompt[pos : pos+k]}}
					if other.Len < n {
						in = append(in, StepInput{Seq: other, Tokens: otherPrompt[other.Len:min(n, other.Len+1+intn(r, 40))]})
					}
					out, err := e.Step(in)
					if err != nil {
						t.Fatal(err)
					}
					pos += k
					if !sameBits(out[0], perPos[pos-1]) {
						t.Fatalf("tpb %d trial %d: logits at position %d differ", tpb, trial, pos-1)
					}
				}
				for b := range s.Blocks {
					if !sameBits(s.Blocks[b].Data, ref.Blocks[b].Data) {
						t.Fatalf("tpb %d trial %d: block %d differs", tpb, trial, b)
					}
				}
			}
		}
	})
}
