package model

import (
	"fmt"
	"math"
	"sync"

	"github.com/semantic-kv/semantic/pkg/chat"
	"github.com/semantic-kv/semantic/pkg/tokenizer"
)

// builtinSpec is a named generated model.
type builtinSpec struct {
	cfg  Config
	seed uint64
}

var builtins = map[string]builtinSpec{
	// tiny: for tests; every forward pass is cheap.
	"tiny": {Config{Dim: 64, HiddenDim: 176, Layers: 4, Heads: 4, KVHeads: 2, Vocab: tokenizer.ByteVocab, SeqLen: 2048, NormEps: 1e-5, RopeTheta: 10000}, 0x5EED_0000_0000_0001},
	// small: the default for running and benchmarking, ~23M parameters,
	// room for 4K-token prompts plus generation.
	"small": {Config{Dim: 512, HiddenDim: 1376, Layers: 8, Heads: 8, KVHeads: 4, Vocab: tokenizer.ByteVocab, SeqLen: 8192, NormEps: 1e-5, RopeTheta: 10000}, 0x5EED_0000_0000_0002},
}

// BuiltinNames lists the sizes Builtin accepts.
func BuiltinNames() []string { return []string{"tiny", "small"} }

// SplitMix64 is the PRNG of the built-in weights (Steele, Lea & Flood 2014):
// a 64-bit counter advanced by the golden-ratio constant and finalised by two
// xor-shift-multiply rounds. It is defined here, not taken from math/rand, so
// the weights are the same on every machine and Go version.
type SplitMix64 struct{ State uint64 }

// Next returns the next 64 random bits.
func (s *SplitMix64) Next() uint64 {
	s.State += 0x9E3779B97F4A7C15
	z := s.State
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// Uniform returns a float32 uniform on [-a, a): the top 24 bits give u in
// [0,1) exactly, 2u-1 is exact, and the single rounding of the product by a
// is IEEE-defined, so the value is identical everywhere.
func (s *SplitMix64) Uniform(a float32) float32 {
	u := float32(s.Next()>>40) * (1.0 / (1 << 24))
	return (2*u - 1) * a
}

// Builtin generates the named built-in model ("tiny" or "small").
func Builtin(size string) (*Model, error) {
	spec, ok := builtins[size]
	if !ok {
		return nil, fmt.Errorf("%w: builtin:%s (sizes: tiny, small)", ErrUnknownModel, size)
	}
	m, err := Random("builtin:"+size, spec.cfg, spec.seed)
	if err != nil {
		return nil, err
	}
	m.Info.Format, m.Info.Tokenizer = "builtin", "byte"
	m.Tokenizer, m.Template = tokenizer.NewByte(), chat.Plain()
	m.BOS, m.EOS = tokenizer.ByteBOS, tokenizer.ByteEOS
	return m, nil
}

// Random generates float32 weights of shape c from seed, scaled so that
// activations stay O(1) through the layers (see below). The model has no
// tokenizer; BOS is 1 and EOS 2 (the llama convention). It is the built-in
// models' generator and makes benchmark files of real model shapes.
func Random(name string, c Config, seed uint64) (*Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	m := &Model{
		Name:   name,
		Config: c,
		Info:   Info{Architecture: c.Arch.String(), Format: "random"},
		BOS:    1,
		EOS:    2,
		Layers: make([]Layer, c.Layers),
	}
	kv, q := c.KVDim(), c.QDim()
	// Uniform(a) has standard deviation a/sqrt(3); a = sqrt(3/fan_in) keeps
	// each projection's output at unit variance for unit-RMS input (RMSNorm
	// guarantees that), so attention scores are O(1) and logits have spread
	// but no outliers. The residual writers (wo, w2) are further scaled by
	// 1/sqrt(2*layers) so the residual stream grows slowly with depth.
	fan := func(n int) float32 { return float32(math.Sqrt(3 / float64(n))) }
	res := float32(1 / math.Sqrt(2*float64(c.Layers)))
	type job struct {
		vec        *[]float32 // a vector, or
		mat        *Tensor    // a matrix of rows x cols
		rows, cols int
		base, a    float32 // values base + uniform on [-a, a) (a = 0: constant base)
	}
	var jobs []job
	jobs = append(jobs, job{nil, &m.Embedding, c.Vocab, c.Dim, 0, 1})
	for i := range m.Layers {
		l := &m.Layers[i]
		jobs = append(jobs,
			job{&l.AttNorm, nil, 1, c.Dim, 1, 0},
			job{nil, &l.Wq, q, c.Dim, 0, fan(c.Dim)},
			job{nil, &l.Wk, kv, c.Dim, 0, fan(c.Dim)},
			job{nil, &l.Wv, kv, c.Dim, 0, fan(c.Dim)},
			job{nil, &l.Wo, c.Dim, q, 0, fan(q) * res},
			job{&l.FFNNorm, nil, 1, c.Dim, 1, 0},
			job{nil, &l.W1, c.HiddenDim, c.Dim, 0, fan(c.Dim)},
			job{nil, &l.W2, c.Dim, c.HiddenDim, 0, fan(c.HiddenDim) * res},
			job{nil, &l.W3, c.HiddenDim, c.Dim, 0, fan(c.Dim)},
		)
	}
	jobs = append(jobs, job{&m.FinalNorm, nil, 1, c.Dim, 1, 0}, job{nil, &m.Classifier, c.Vocab, c.Dim, 0, 2 * fan(c.Dim)})
	// The vectors only some architectures have, after the llama ones so
	// that a llama model's weights do not depend on them: biases around 0,
	// Q/K norm weights around 1 (random, so a test sees them applied).
	for i := range m.Layers {
		for _, v := range m.Layers[i].vectors(c) {
			if v.p != required {
				continue
			}
			switch v.name {
			case "attn_q.bias", "attn_k.bias", "attn_v.bias":
				jobs = append(jobs, job{v.v, nil, 1, v.n, 0, 0.5})
			case "attn_q_norm.weight", "attn_k_norm.weight":
				jobs = append(jobs, job{v.v, nil, 1, v.n, 1, 0.5})
			}
		}
	}
	// Each tensor has its own stream (seed mixed with its index), so the
	// tensors can be generated in parallel and stay identical.
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := make([]float32, j.rows*j.cols)
			if j.a == 0 {
				for k := range t {
					t[k] = j.base
				}
			} else {
				r := SplitMix64{State: seed ^ (uint64(i+1) * 0xD1B54A32D192ED03)}
				for k := range t {
					t[k] = j.base + r.Uniform(j.a)
				}
			}
			if j.vec != nil {
				*j.vec = t
			} else {
				*j.mat = F32(j.rows, j.cols, t)
			}
		}()
	}
	wg.Wait()
	m.finish()
	return m, nil
}

// SetRopeFreqs gives a model Llama 3.1-style rope frequency factors (see
// Llama3RopeFreqs; nil removes them) and recomputes its tag. It is for
// generated models: loaders read the factors from the file.
func (m *Model) SetRopeFreqs(f []float32) error {
	if err := checkRopeFreqs(m.Config, f); err != nil {
		return err
	}
	m.RopeFreqs = f
	m.finish()
	return nil
}
