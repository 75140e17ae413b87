package engine

import (
	"fmt"
	"math"
	"testing"

	"github.com/semantic-kv/semantic/pkg/model"
)

// archCase is a random-weight model of one architecture and its options.
type archCase struct {
	name   string
	cfg    model.Config
	freqs  bool // Llama 3.1 rope frequency factors
	untied bool
}

func archCases() []archCase {
	base := model.Config{Dim: 96, HiddenDim: 160, Layers: 2, Heads: 6, KVHeads: 2, Vocab: 300, SeqLen: 256, NormEps: 1e-5, RopeTheta: 500000}
	with := func(f func(*model.Config)) model.Config {
		c := base
		f(&c)
		return c
	}
	llama := with(func(c *model.Config) { c.Arch = model.ArchLlama })
	qwen2 := with(func(c *model.Config) { c.Arch, c.RopeTheta, c.NormEps = model.ArchQwen2, 1e6, 1e-6 })
	// Qwen3's head size is not dim/heads (here 32 against 96/6 = 16), so q
	// and the attention output are wider than the residual stream.
	qwen3 := with(func(c *model.Config) { c.Arch, c.HeadSize, c.RopeTheta, c.NormEps = model.ArchQwen3, 32, 1e6, 1e-6 })
	return []archCase{
		{"llama3.1-rope-freqs/tied", llama, true, false},
		{"llama3.1-rope-freqs/untied", llama, true, true},
		{"llama-linear-rope/untied", with(func(c *model.Config) { c.Arch, c.RopeScale = model.ArchLlama, 4 }), false, true},
		{"qwen2/tied", qwen2, false, false},
		{"qwen2/untied", qwen2, false, true},
		{"qwen3/tied", qwen3, false, false},
		{"qwen3/untied", qwen3, false, true},
		{"qwen3-head-equal/untied", with(func(c *model.Config) { c.Arch = model.ArchQwen3 }), false, true},
	}
}

// build generates the case's float32 model.
func (ac archCase) build(t testing.TB) *model.Model {
	t.Helper()
	m, err := model.Random("arch-"+ac.name, ac.cfg, 11)
	if err != nil {
		t.Fatal(err)
	}
	if ac.freqs {
		// Original context 64, so positions well past a short wavelength
		// band exercise all three regions of the scaling.
		if err := m.SetRopeFreqs(model.Llama3RopeFreqs(ac.cfg.HeadDim(), float64(ac.cfg.RopeTheta), 8, 1, 4, 64)); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// TestArchitecturesMatchReference: for each architecture (Llama 3.1 rope
// factors, linear rope scaling, Qwen2 biases and NEOX rope, Qwen3 Q/K norms
// with a head size of its own), tied and untied, and every weight type the
// writer can produce, a GGUF file written by the project's writer loads with
// the architecture it was written with, its logits agree with the float64
// reference forward pass (written from the published definitions, see
// refForward), and warm equals cold bit for bit.
func TestArchitecturesMatchReference(t *testing.T) {
	prompt := randTokens(&model.SplitMix64{State: 5}, 40, 300)
	forEachKernel(t, func(t *testing.T) {
		for _, ac := range archCases() {
			base := ac.build(t)
			for _, typ := range model.SupportedTypes {
				t.Run(fmt.Sprintf("%s/%v", ac.name, typ), func(t *testing.T) {
					m := writeLoad(t, base, typ, ac.untied)
					if m.Config.Arch != ac.cfg.Arch || m.Config.HeadDim() != ac.cfg.HeadDim() || m.Config.RopeScale != ac.cfg.RopeScale || (m.RopeFreqs != nil) != ac.freqs {
						t.Fatalf("loaded config %+v (rope factors %v), wrote %+v", m.Config, m.RopeFreqs != nil, ac.cfg)
					}
					tol, ok := typeTolerance[typ]
					if !ok {
						t.Fatalf("no tolerance stated for %v", typ)
					}
					worst := checkAgainstReference(t, m, prompt, 23)
					if worst > tol {
						t.Fatalf("max |engine-reference| / max|reference| = %.3g > %.3g", worst, tol)
					}
					t.Logf("max relative logit error vs float64 reference: %.2g", worst)
				})
			}
		}
	})
}

// checkAgainstReference runs prompt through m token by token (cold) and
// returns the worst logit error against refForward relative to the largest
// reference logit of the position; it fails the test unless a warm run (the
// first warmAt positions' pages copied, the rest in one step) gives the
// cold logits bit for bit.
func checkAgainstReference(t *testing.T, m *model.Model, prompt []uint32, warmAt int) float64 {
	t.Helper()
	ref := refForward(m, prompt)
	e := newEngine(t, m, 16, 2)
	cold := newSeq(e, len(prompt))
	var worst float64
	var last []float32
	for i, tok := range prompt {
		lg, err := e.Step([]StepInput{{Seq: cold, Tokens: []uint32{tok}}})
		if err != nil {
			t.Fatal(err)
		}
		var scale, diff float64
		for j, v := range ref[i] {
			scale = math.Max(scale, math.Abs(v))
			diff = math.Max(diff, math.Abs(float64(lg[0][j])-v))
		}
		worst = math.Max(worst, diff/scale)
		last = lg[0]
	}
	warm := newSeq(e, len(prompt))
	for b := range warm.Blocks {
		copy(warm.Blocks[b].Data, cold.Blocks[b].Data)
	}
	warm.Len = warmAt
	lw, err := e.Step([]StepInput{{Seq: warm, Tokens: prompt[warmAt:]}})
	if err != nil {
		t.Fatal(err)
	}
	if !sameBits(lw[0], last) {
		t.Fatal("warm logits differ from cold")
	}
	return worst
}

// TestArchitectureFeaturesMatter: each architecture feature changes the
// output (so the reference agreement above is not agreement by omission):
// dropping the biases, the Q/K norms, the rope factors or the linear scale,
// or using the other rope pairing, moves the logits far beyond tolerance.
func TestArchitectureFeaturesMatter(t *testing.T) {
	prompt := randTokens(&model.SplitMix64{State: 9}, 24, 300)
	logits := func(m *model.Model) []float32 {
		e := newEngine(t, m, 16, 2)
		lg, err := e.Step([]StepInput{{Seq: newSeq(e, len(prompt)), Tokens: prompt}})
		if err != nil {
			t.Fatal(err)
		}
		return lg[0]
	}
	far := func(a, b []float32) bool {
		var scale, diff float64
		for i := range a {
			scale = math.Max(scale, math.Abs(float64(a[i])))
			diff = math.Max(diff, math.Abs(float64(a[i]-b[i])))
		}
		return diff/scale > 1e-2
	}
	for _, ac := range archCases() {
		if ac.untied {
			continue
		}
		m := ac.build(t)
		want := logits(m)
		// Each variant changes one thing a faithful engine must honour.
		var variants []func(*model.Model)
		switch ac.cfg.Arch {
		case model.ArchQwen2:
			variants = append(variants, func(m *model.Model) {
				for i := range m.Layers {
					m.Layers[i].Bq, m.Layers[i].Bk, m.Layers[i].Bv = nil, nil, nil
				}
				m.Config.Arch = model.ArchLlama // biases optional there, rope adjacent
			})
		case model.ArchQwen3:
			variants = append(variants, func(m *model.Model) {
				for i := range m.Layers {
					for j := range m.Layers[i].QNorm {
						m.Layers[i].QNorm[j], m.Layers[i].KNorm[j] = 1, 1
					}
				}
			})
		case model.ArchLlama:
			variants = append(variants, func(m *model.Model) { m.RopeFreqs, m.Config.RopeScale = nil, 0 })
		}
		for i, v := range variants {
			other, err := model.Random("arch-"+ac.name, ac.cfg, 11)
			if err != nil {
				t.Fatal(err)
			}
			other.RopeFreqs = m.RopeFreqs
			v(other)
			if !far(want, logits(other)) {
				t.Errorf("%s: variant %d gives the same logits: the feature is not applied", ac.name, i)
			}
		}
	}
}
