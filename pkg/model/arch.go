package model

import (
	"fmt"
	"math"
	"strings"
)

// Arch is a transformer architecture the engine implements, named as GGUF's
// general.architecture names it. Everything that differs between the
// architectures (the rope style, which extra weights a layer has) follows
// from it: none of it is a flag a user sets.
type Arch string

// The architectures.
const (
	// ArchLlama is Llama 1/2/3 (and llama2.c, SmolLM, Mistral 7B v0.1-style
	// files): RMSNorm, SwiGLU, grouped-query attention, rope on adjacent
	// pairs (GGUF's llama tensors have Q and K permuted by the converter so
	// that the adjacent-pair rotation equals Meta's rotate_half). Llama 3.1+
	// files carry rope frequency factors (rope_freqs.weight); Q/K/V biases
	// are optional.
	ArchLlama Arch = "llama"
	// ArchQwen2 is Qwen2 / Qwen2.5: llama plus Q/K/V biases, with NEOX-style
	// rope (element i of a head rotates with element i+head/2).
	ArchQwen2 Arch = "qwen2"
	// ArchQwen3 is Qwen3 (dense): no biases, an RMSNorm over each head of Q
	// and of K (weights of one head's size, shared by the heads) before the
	// rope, NEOX rope, and a head size that need not be dim/heads.
	ArchQwen3 Arch = "qwen3"
)

// Architectures lists the architectures the engine runs.
var Architectures = []Arch{ArchLlama, ArchQwen2, ArchQwen3}

// presence says whether a layer weight exists in an architecture.
type presence uint8

const (
	absent presence = iota
	optional
	required
)

// archRules is one architecture's differences from llama: the one table
// the loader, the writer, the checks, the generator and the engine read.
type archRules struct {
	neox      bool     // rope rotates (i, i+half) instead of (2i, 2i+1)
	biases    presence // attn_q.bias, attn_k.bias, attn_v.bias
	qkNorm    presence // attn_q_norm.weight, attn_k_norm.weight
	ropeFreqs bool     // rope_freqs.weight (Llama 3.1 frequency factors) allowed
	headSize  bool     // the head size may differ from dim/heads
}

var rules = map[Arch]archRules{
	ArchLlama: {biases: optional, ropeFreqs: true},
	ArchQwen2: {neox: true, biases: required},
	ArchQwen3: {neox: true, qkNorm: required, headSize: true},
}

// rules returns a's rules; the empty Arch is llama (llama2.c checkpoints and
// the built-in models).
func (a Arch) rules() (archRules, bool) {
	r, ok := rules[a.orLlama()]
	return r, ok
}

func (a Arch) orLlama() Arch {
	if a == "" {
		return ArchLlama
	}
	return a
}

// NeoxRope reports whether the architecture's rope rotates element i of a
// head with element i+head/2 (GPT-NeoX style) rather than adjacent pairs.
func (a Arch) NeoxRope() bool {
	r, _ := a.rules()
	return r.neox
}

func (a Arch) String() string { return string(a.orLlama()) }

func archNames() string {
	s := make([]string, len(Architectures))
	for i, a := range Architectures {
		s[i] = string(a)
	}
	return strings.Join(s, ", ")
}

// layerVector is one of a layer's vector weights with its GGUF name
// (blk.N.<name>) and length.
type layerVector struct {
	name string
	v    *[]float32
	n    int
	p    presence
}

// vectors lists the layer's vector weights for the architecture: the one
// table of names, lengths and presence.
func (l *Layer) vectors(c Config) []layerVector {
	r, _ := c.Arch.rules()
	kv, hd := c.KVDim(), c.HeadDim()
	return []layerVector{
		{"attn_norm.weight", &l.AttNorm, c.Dim, required},
		{"attn_q.bias", &l.Bq, c.QDim(), r.biases},
		{"attn_k.bias", &l.Bk, kv, r.biases},
		{"attn_v.bias", &l.Bv, kv, r.biases},
		{"attn_q_norm.weight", &l.QNorm, hd, r.qkNorm},
		{"attn_k_norm.weight", &l.KNorm, hd, r.qkNorm},
		{"ffn_norm.weight", &l.FFNNorm, c.Dim, required},
	}
}

// checkVectors verifies the layer's vectors against the rules: required
// ones present, absent ones absent, the three biases all or none, lengths.
func (l *Layer) checkVectors(c Config, layer int) error {
	vs := l.vectors(c)
	for _, v := range vs {
		name := fmt.Sprintf("blk.%d.%s", layer, v.name)
		switch {
		case *v.v == nil && v.p == required:
			return fmt.Errorf("%w: %s is missing (required by the %s architecture)", ErrBadConfig, name, c.Arch)
		case *v.v != nil && v.p == absent:
			return fmt.Errorf("%w: %s is not part of the %s architecture", ErrUnsupported, name, c.Arch)
		case *v.v != nil && len(*v.v) != v.n:
			return fmt.Errorf("%w: %s has %d values, want %d", ErrBadConfig, name, len(*v.v), v.n)
		}
	}
	if (l.Bq == nil) != (l.Bk == nil) || (l.Bq == nil) != (l.Bv == nil) {
		return fmt.Errorf("%w: layer %d has some of the q/k/v biases but not all", ErrBadConfig, layer)
	}
	if (l.QNorm == nil) != (l.KNorm == nil) {
		return fmt.Errorf("%w: layer %d has one of the q/k norms but not both", ErrBadConfig, layer)
	}
	return nil
}

// checkRopeFreqs verifies Llama 3.1-style rope frequency factors: one per
// rotated pair, finite and positive.
func checkRopeFreqs(c Config, f []float32) error {
	if f == nil {
		return nil
	}
	if r, _ := c.Arch.rules(); !r.ropeFreqs {
		return fmt.Errorf("%w: rope_freqs.weight is not part of the %s architecture", ErrUnsupported, c.Arch)
	}
	if len(f) != c.HeadDim()/2 {
		return fmt.Errorf("%w: rope_freqs.weight has %d values, want head size / 2 = %d", ErrBadConfig, len(f), c.HeadDim()/2)
	}
	for i, v := range f {
		if !(v > 0) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("%w: rope_freqs.weight[%d] = %v, want a finite positive factor", ErrBadConfig, i, v)
		}
	}
	return nil
}

// Llama3RopeFreqs computes the rope frequency factors of Llama 3.1's
// "llama3" rope scaling (as Meta's reference and llama.cpp's converter
// compute them, and store them in rope_freqs.weight): wavelengths shorter
// than origCtx/highFreq are kept (factor 1), longer than origCtx/lowFreq are
// stretched by factor, and the band between is interpolated smoothly. The
// engine divides each pair's frequency by its factor.
func Llama3RopeFreqs(headDim int, theta, factor, lowFreq, highFreq float64, origCtx int) []float32 {
	lowWave := float64(origCtx) / lowFreq
	highWave := float64(origCtx) / highFreq
	out := make([]float32, headDim/2)
	for i := range out {
		freq := 1 / math.Pow(theta, float64(2*i)/float64(headDim))
		wave := 2 * math.Pi / freq
		switch {
		case wave < highWave:
			out[i] = 1
		case wave > lowWave:
			out[i] = float32(factor)
		default:
			smooth := (float64(origCtx)/wave - lowFreq) / (highFreq - lowFreq)
			out[i] = float32(1 / ((1-smooth)/factor + smooth))
		}
	}
	return out
}
