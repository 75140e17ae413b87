// Package model holds the weights of a llama-family transformer and loads
// them: deterministic built-in models generated from a seed, and llama2.c
// checkpoints. It has no compute; package engine runs the forward pass.
package model

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"unsafe"

	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/tokenizer"
)

// Config is the shape of a model.
type Config struct {
	Dim, HiddenDim, Layers, Heads, KVHeads, Vocab, SeqLen int
	NormEps                                               float32
	RopeTheta                                             float32
}

// HeadDim is the size of one attention head.
func (c Config) HeadDim() int { return c.Dim / c.Heads }

// KVDim is the size of one position's K (or V) in one layer.
func (c Config) KVDim() int { return c.KVHeads * c.HeadDim() }

// Limits on a config; they keep every size computation far from overflow and
// reject headers that are obviously not a checkpoint.
const (
	MaxDim    = 1 << 15
	MaxHidden = 1 << 17
	MaxLayers = kvspec.MaxLayers
	MaxHeads  = 1 << 10
	MaxVocab  = 1 << 20
	MaxSeqLen = 1 << 20
)

// ErrBadConfig is wrapped by every config validation error.
var ErrBadConfig = errors.New("bad model config")

// Validate checks that the config describes a model the engine can run.
func (c Config) Validate() error {
	check := func(name string, v, lo, hi int) error {
		if v < lo || v > hi {
			return fmt.Errorf("%w: %s = %d, want %d..%d", ErrBadConfig, name, v, lo, hi)
		}
		return nil
	}
	for _, e := range []error{
		check("dim", c.Dim, 2, MaxDim),
		check("hidden_dim", c.HiddenDim, 1, MaxHidden),
		check("n_layers", c.Layers, 1, MaxLayers),
		check("n_heads", c.Heads, 1, MaxHeads),
		check("n_kv_heads", c.KVHeads, 1, min(MaxHeads, kvspec.MaxKVHeads)),
		check("vocab_size", c.Vocab, 1, MaxVocab),
		check("seq_len", c.SeqLen, 1, MaxSeqLen),
	} {
		if e != nil {
			return e
		}
	}
	if c.Dim%c.Heads != 0 {
		return fmt.Errorf("%w: dim %d not divisible by n_heads %d", ErrBadConfig, c.Dim, c.Heads)
	}
	if c.Heads%c.KVHeads != 0 {
		return fmt.Errorf("%w: n_heads %d not divisible by n_kv_heads %d", ErrBadConfig, c.Heads, c.KVHeads)
	}
	if hd := c.HeadDim(); hd%2 != 0 || hd > kvspec.MaxHeadDim {
		return fmt.Errorf("%w: head size %d must be even and at most %d", ErrBadConfig, hd, kvspec.MaxHeadDim)
	}
	if !(c.NormEps > 0) || !(c.RopeTheta > 1) || math.IsInf(float64(c.RopeTheta), 0) {
		return fmt.Errorf("%w: norm eps %v / rope theta %v", ErrBadConfig, c.NormEps, c.RopeTheta)
	}
	return nil
}

// Layer is one transformer block. Matrices are row-major [out][in], as in
// llama2.c: row i of Wq produces element i of q.
type Layer struct {
	AttNorm []float32 // [Dim]
	Wq      []float32 // [Dim][Dim]
	Wk      []float32 // [KVDim][Dim]
	Wv      []float32 // [KVDim][Dim]
	Wo      []float32 // [Dim][Dim]
	FFNNorm []float32 // [Dim]
	W1      []float32 // [HiddenDim][Dim] (gate)
	W2      []float32 // [Dim][HiddenDim] (down)
	W3      []float32 // [HiddenDim][Dim] (up)
}

// Model is an immutable set of weights plus what callers need around them.
type Model struct {
	Name   string
	Config Config
	// Tag identifies the weights: name plus a hash of the config and every
	// weight byte. It is stamped on each KV block's spec so a cache written
	// by one model is never read by another.
	Tag string
	// Tokenizer is nil when the model has none; callers then send ids.
	Tokenizer tokenizer.Tokenizer
	BOS, EOS  int // -1 if none

	Embedding  []float32 // [Vocab][Dim]
	Layers     []Layer
	FinalNorm  []float32 // [Dim]
	Classifier []float32 // [Vocab][Dim]; aliases Embedding when shared
}

// CacheSpec is the geometry of this model's KV blocks.
func (m *Model) CacheSpec(tokensPerBlock int, dtype kvspec.DType) kvspec.Spec {
	return kvspec.Spec{
		Layers:         m.Config.Layers,
		KVHeads:        m.Config.KVHeads,
		HeadDim:        m.Config.HeadDim(),
		TokensPerBlock: tokensPerBlock,
		DType:          dtype,
		ModelTag:       m.Tag,
	}
}

// NumParams counts the weights (a shared classifier once).
func (m *Model) NumParams() int64 {
	n := int64(len(m.Embedding) + len(m.FinalNorm))
	for _, l := range m.Layers {
		n += int64(len(l.AttNorm) + len(l.Wq) + len(l.Wk) + len(l.Wv) + len(l.Wo) +
			len(l.FFNNorm) + len(l.W1) + len(l.W2) + len(l.W3))
	}
	if !m.sharedClassifier() {
		n += int64(len(m.Classifier))
	}
	return n
}

func (m *Model) sharedClassifier() bool {
	return len(m.Classifier) > 0 && len(m.Embedding) > 0 && &m.Classifier[0] == &m.Embedding[0]
}

// tensors lists every weight tensor in llama2.c checkpoint order.
func (m *Model) tensors() [][]float32 {
	var t [][]float32
	t = append(t, m.Embedding)
	for _, f := range []func(*Layer) []float32{
		func(l *Layer) []float32 { return l.AttNorm },
		func(l *Layer) []float32 { return l.Wq },
		func(l *Layer) []float32 { return l.Wk },
		func(l *Layer) []float32 { return l.Wv },
		func(l *Layer) []float32 { return l.Wo },
		func(l *Layer) []float32 { return l.FFNNorm },
		func(l *Layer) []float32 { return l.W1 },
		func(l *Layer) []float32 { return l.W2 },
		func(l *Layer) []float32 { return l.W3 },
	} {
		for i := range m.Layers {
			t = append(t, f(&m.Layers[i]))
		}
	}
	t = append(t, m.FinalNorm)
	if !m.sharedClassifier() {
		t = append(t, m.Classifier)
	}
	return t
}

// computeTag hashes the config and all weights (as little-endian float32) and
// prefixes a sanitised model name; the result is at most 128 bytes.
func (m *Model) computeTag() string {
	h := sha256.New()
	h.Write([]byte("semantic.model.v1"))
	var b [8]byte
	c := m.Config
	for _, v := range []int{c.Dim, c.HiddenDim, c.Layers, c.Heads, c.KVHeads, c.Vocab, c.SeqLen} {
		binary.LittleEndian.PutUint64(b[:], uint64(v))
		h.Write(b[:])
	}
	binary.LittleEndian.PutUint32(b[:], math.Float32bits(c.NormEps))
	binary.LittleEndian.PutUint32(b[4:], math.Float32bits(c.RopeTheta))
	h.Write(b[:])
	if m.sharedClassifier() {
		h.Write([]byte{1})
	} else {
		h.Write([]byte{0})
	}
	for _, t := range m.tensors() {
		h.Write(float32Bytes(t))
	}
	name := sanitize(m.Name)
	if len(name) > 64 {
		name = name[:64]
	}
	return name + "-" + hex.EncodeToString(h.Sum(nil))[:24]
}

func sanitize(s string) string {
	var sb strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			sb.WriteRune(r)
		default:
			sb.WriteByte('-')
		}
	}
	if sb.Len() == 0 {
		return "model"
	}
	return sb.String()
}

// float32Bytes returns the little-endian bytes of f: a view on little-endian
// hosts, an encoded copy otherwise.
func float32Bytes(f []float32) []byte {
	if len(f) == 0 {
		return nil
	}
	if littleEndian {
		return unsafe.Slice((*byte)(unsafe.Pointer(&f[0])), 4*len(f))
	}
	out := make([]byte, 4*len(f))
	for i, v := range f {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
	}
	return out
}

var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// ErrUnknownModel is returned for a model reference Load does not understand.
var ErrUnknownModel = errors.New("unknown model")

// Load resolves a model reference:
//
//	builtin:tiny | builtin:small             deterministic generated weights
//	llama2c:PATH[,tokenizer=PATH]            llama2.c checkpoint (+ tokenizer.bin)
//
// cacheDir is accepted for API stability but unused: generating the built-in
// weights (splitmix64, well under a second for builtin:small) is as fast as
// reading and verifying a cached copy would be.
func Load(ref string, cacheDir string) (*Model, error) {
	_ = cacheDir
	switch {
	case strings.HasPrefix(ref, "builtin:"):
		return Builtin(strings.TrimPrefix(ref, "builtin:"))
	case strings.HasPrefix(ref, "llama2c:"):
		rest := strings.TrimPrefix(ref, "llama2c:")
		path, tok := rest, ""
		if i := strings.LastIndex(rest, ",tokenizer="); i >= 0 {
			path, tok = rest[:i], rest[i+len(",tokenizer="):]
		}
		if path == "" {
			return nil, fmt.Errorf("%w: %q: empty checkpoint path", ErrUnknownModel, ref)
		}
		m, err := LoadLlama2c(path)
		if err != nil {
			return nil, err
		}
		if tok != "" {
			t, err := tokenizer.LoadSentencePiece(tok, m.Config.Vocab)
			if err != nil {
				return nil, err
			}
			m.Tokenizer = t
		}
		return m, nil
	}
	return nil, fmt.Errorf("%w: %q (want builtin:tiny, builtin:small or llama2c:PATH[,tokenizer=PATH])", ErrUnknownModel, ref)
}

// modelName is the display name of a checkpoint path.
func modelName(path string) string {
	return strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
}
