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
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"unsafe"

	"github.com/semantic-kv/semantic/pkg/chat"
	"github.com/semantic-kv/semantic/pkg/gguf"
	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/tokenizer"
)

// Config is the shape of a model.
type Config struct {
	// Arch is the architecture; "" is llama.
	Arch                                                  Arch
	Dim, HiddenDim, Layers, Heads, KVHeads, Vocab, SeqLen int
	// HeadSize is the size of one attention head when it is not Dim/Heads
	// (Qwen3); 0 means Dim/Heads.
	HeadSize  int
	NormEps   float32
	RopeTheta float32
	// RopeScale is linear rope scaling (GGUF rope.scaling.type "linear"):
	// positions are divided by it. 0 or 1 means none.
	RopeScale float32
}

// HeadDim is the size of one attention head.
func (c Config) HeadDim() int {
	if c.HeadSize > 0 {
		return c.HeadSize
	}
	return c.Dim / c.Heads
}

// QDim is the size of one position's queries (all heads) in one layer: Dim,
// except for architectures whose head size is set on its own.
func (c Config) QDim() int { return c.Heads * c.HeadDim() }

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
		check("head_size", c.HeadSize, 0, kvspec.MaxHeadDim),
	} {
		if e != nil {
			return e
		}
	}
	r, ok := c.Arch.rules()
	if !ok {
		return fmt.Errorf("%w: architecture %q; supported: %s", ErrUnsupported, c.Arch, archNames())
	}
	if c.HeadSize > 0 && c.HeadSize != c.Dim/c.Heads && !r.headSize {
		return fmt.Errorf("%w: head size %d is not dim/n_heads = %d/%d, which the %s architecture requires", ErrBadConfig, c.HeadSize, c.Dim, c.Heads, c.Arch)
	}
	if c.HeadSize == 0 && c.Dim%c.Heads != 0 {
		return fmt.Errorf("%w: dim %d not divisible by n_heads %d", ErrBadConfig, c.Dim, c.Heads)
	}
	if q := c.QDim(); q > MaxDim {
		return fmt.Errorf("%w: n_heads %d x head size %d = %d is more than %d", ErrBadConfig, c.Heads, c.HeadDim(), q, MaxDim)
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
	if c.RopeScale != 0 && (!(c.RopeScale >= 1) || c.RopeScale > 1024) {
		return fmt.Errorf("%w: linear rope scale %v, want 1..1024", ErrBadConfig, c.RopeScale)
	}
	return nil
}

// Layer is one transformer block. The vectors the architecture does not
// have are nil (see Layer.vectors).
type Layer struct {
	AttNorm      []float32 // [Dim]
	Wq           Tensor    // [QDim][Dim]
	Wk           Tensor    // [KVDim][Dim]
	Wv           Tensor    // [KVDim][Dim]
	Bq, Bk, Bv   []float32 // [QDim], [KVDim], [KVDim]: biases (Qwen2)
	QNorm, KNorm []float32 // [HeadDim]: per-head RMSNorm of Q and K (Qwen3)
	Wo           Tensor    // [Dim][QDim]
	FFNNorm      []float32 // [Dim]
	W1           Tensor    // [HiddenDim][Dim] (gate)
	W2           Tensor    // [Dim][HiddenDim] (down)
	W3           Tensor    // [HiddenDim][Dim] (up)
}

// layerMatrix is one of a layer's matrices with its GGUF name
// (blk.N.<name>.weight) and shape.
type layerMatrix struct {
	name       string
	t          *Tensor
	rows, cols int
}

// matrices lists the layer's matrices in GGUF file order: the one table that
// the GGUF loader and writer, the checks and the counts read.
func (l *Layer) matrices(c Config) []layerMatrix {
	kv, q := c.KVDim(), c.QDim()
	return []layerMatrix{
		{"attn_q", &l.Wq, q, c.Dim},
		{"attn_k", &l.Wk, kv, c.Dim},
		{"attn_v", &l.Wv, kv, c.Dim},
		{"attn_output", &l.Wo, c.Dim, q},
		{"ffn_gate", &l.W1, c.HiddenDim, c.Dim},
		{"ffn_down", &l.W2, c.Dim, c.HiddenDim},
		{"ffn_up", &l.W3, c.HiddenDim, c.Dim},
	}
}

// Check verifies that every weight matches the config: shapes, supported
// types, storage sizes. Loaders check as they build; the engine checks again
// because a model can also be assembled by hand.
func (m *Model) Check() error {
	c := m.Config
	if len(m.Layers) != c.Layers {
		return fmt.Errorf("%w: model has %d layers, config says %d", ErrBadConfig, len(m.Layers), c.Layers)
	}
	for i := range m.Layers {
		l := &m.Layers[i]
		if err := l.checkVectors(c, i); err != nil {
			return err
		}
		for _, lm := range l.matrices(c) {
			if err := lm.t.Check(fmt.Sprintf("blk.%d.%s", i, lm.name), lm.rows, lm.cols); err != nil {
				return err
			}
		}
	}
	if len(m.FinalNorm) != c.Dim {
		return fmt.Errorf("%w: final norm does not match the config", ErrBadConfig)
	}
	if err := checkRopeFreqs(c, m.RopeFreqs); err != nil {
		return err
	}
	if err := m.Embedding.Check("token_embd", c.Vocab, c.Dim); err != nil {
		return err
	}
	return m.Classifier.Check("output", c.Vocab, c.Dim)
}

// Info describes a model for logs, GetStats and GetAgent.
type Info struct {
	Architecture string   // "llama", "qwen2", "qwen3"
	Format       string   // "builtin", "llama2c", "gguf"
	WeightTypes  []string // distinct matrix types, e.g. ["Q8_0", "F32"]
	Tokenizer    string   // tokenizer kind ("byte", "sentencepiece", "bpe"; "" for none)
	ChatTemplate bool     // the model carries its own chat template
}

// Model is an immutable set of weights plus what callers need around them.
type Model struct {
	Name   string
	Config Config
	Info   Info
	// Tag identifies the weights: name plus a hash of the config and every
	// weight byte. It is stamped on each KV block's spec so a cache written
	// by one model is never read by another.
	Tag string
	// Tokenizer is nil when the model has none; callers then send ids.
	Tokenizer tokenizer.Tokenizer
	BOS, EOS  int // -1 if none
	// StopTokens end generation besides EOS (end-of-turn tokens such as
	// <|eot_id|>); EOS is not repeated here.
	StopTokens []int
	// Template renders conversations (the model's own chat template, or the
	// plain fallback); nil for models without a tokenizer.
	Template *chat.Template
	// TemplateErr is why the file's chat template could not be used (the
	// model still serves prompts; conversations fail with this error).
	TemplateErr error

	Embedding  Tensor // [Vocab][Dim]
	Layers     []Layer
	FinalNorm  []float32 // [Dim]
	Classifier Tensor    // [Vocab][Dim]; shares Embedding's storage when tied
	// RopeFreqs divides each rotated pair's rope frequency (Llama 3.1's
	// rope scaling, stored as rope_freqs.weight); nil means none.
	RopeFreqs []float32 // [HeadDim/2]

	closer io.Closer // the mapped file, if any
}

// Close releases the model's file mapping. The model must not be used after.
func (m *Model) Close() error {
	if m.closer == nil {
		return nil
	}
	c := m.closer
	m.closer = nil
	return c.Close()
}

// EndTokens lists the ids that end generation: EOS (if any) and the
// end-of-turn tokens.
func (m *Model) EndTokens() []int {
	var out []int
	if m.EOS >= 0 {
		out = append(out, m.EOS)
	}
	return append(out, m.StopTokens...)
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
	n := int64(len(m.FinalNorm) + len(m.RopeFreqs))
	for i := range m.Layers {
		for _, v := range m.Layers[i].vectors(m.Config) {
			n += int64(len(*v.v))
		}
	}
	for _, t := range m.tensorList() {
		n += int64(t.Len())
	}
	return n
}

// SharedClassifier reports whether the output projection is the token
// embedding (tied weights).
func (m *Model) SharedClassifier() bool {
	a, b := m.Classifier.Bytes(), m.Embedding.Bytes()
	return m.Classifier.Type == m.Embedding.Type && len(a) > 0 && len(b) > 0 && &a[0] == &b[0]
}

// tensors lists every weight tensor in llama2.c checkpoint order, as bytes.
func (m *Model) tensors() [][]byte {
	var t [][]byte
	t = append(t, m.Embedding.Bytes())
	for _, f := range []func(*Layer) []byte{
		func(l *Layer) []byte { return float32Bytes(l.AttNorm) },
		func(l *Layer) []byte { return l.Wq.Bytes() },
		func(l *Layer) []byte { return l.Wk.Bytes() },
		func(l *Layer) []byte { return l.Wv.Bytes() },
		func(l *Layer) []byte { return l.Wo.Bytes() },
		func(l *Layer) []byte { return float32Bytes(l.FFNNorm) },
		func(l *Layer) []byte { return l.W1.Bytes() },
		func(l *Layer) []byte { return l.W2.Bytes() },
		func(l *Layer) []byte { return l.W3.Bytes() },
	} {
		for i := range m.Layers {
			t = append(t, f(&m.Layers[i]))
		}
	}
	t = append(t, float32Bytes(m.FinalNorm))
	if !m.SharedClassifier() {
		t = append(t, m.Classifier.Bytes())
	}
	// The other architectures' vectors, only where present: a llama model's
	// list (and so its tag) is what it was before they existed.
	for i := range m.Layers {
		l := &m.Layers[i]
		for _, v := range l.vectors(m.Config) {
			if v.v != &l.AttNorm && v.v != &l.FFNNorm && *v.v != nil {
				t = append(t, float32Bytes(*v.v))
			}
		}
	}
	if m.RopeFreqs != nil {
		t = append(t, float32Bytes(m.RopeFreqs))
	}
	return t
}

// tensorList lists every matrix (the classifier once when tied).
func (m *Model) tensorList() []*Tensor {
	ts := []*Tensor{&m.Embedding}
	for i := range m.Layers {
		for _, lm := range m.Layers[i].matrices(m.Config) {
			ts = append(ts, lm.t)
		}
	}
	if !m.SharedClassifier() {
		ts = append(ts, &m.Classifier)
	}
	return ts
}

// weightTypes lists the distinct matrix types, most used first.
func (m *Model) weightTypes() []string {
	count := map[gguf.TensorType]int64{}
	for _, t := range m.tensorList() {
		count[t.Type] += int64(t.Len())
	}
	types := make([]gguf.TensorType, 0, len(count))
	for t := range count {
		types = append(types, t)
	}
	sort.Slice(types, func(i, j int) bool {
		if count[types[i]] != count[types[j]] {
			return count[types[i]] > count[types[j]]
		}
		return types[i] < types[j]
	})
	out := make([]string, len(types))
	for i, t := range types {
		out[i] = t.String()
	}
	return out
}

// computeTag hashes the config and all weights and prefixes a sanitised
// model name; the result is at most 128 bytes. Each tensor is hashed on its
// own goroutine (a multi-GB file is read once, at memory speed with the CPU's
// SHA extensions) and the digests are hashed in order with the config.
func (m *Model) computeTag() string {
	ts := m.tensors()
	sums := make([][32]byte, len(ts))
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i, t := range ts {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			sums[i] = sha256.Sum256(t)
		}()
	}
	wg.Wait()
	h := sha256.New()
	h.Write([]byte("semantic.model.v2"))
	var b [8]byte
	c := m.Config
	for _, v := range []int{c.Dim, c.HiddenDim, c.Layers, c.Heads, c.KVHeads, c.Vocab, c.SeqLen} {
		binary.LittleEndian.PutUint64(b[:], uint64(v))
		h.Write(b[:])
	}
	binary.LittleEndian.PutUint32(b[:], math.Float32bits(c.NormEps))
	binary.LittleEndian.PutUint32(b[4:], math.Float32bits(c.RopeTheta))
	h.Write(b[:])
	// Fields added after tag v2, hashed only when they differ from what a
	// model had before them, so existing models keep their tags (and their
	// agents' caches).
	if c.Arch.orLlama() != ArchLlama || c.HeadSize > 0 || (c.RopeScale != 0 && c.RopeScale != 1) {
		fmt.Fprintf(h, "arch=%s head=%d ropescale=%x", c.Arch, c.HeadDim(), math.Float32bits(c.RopeScale))
	}
	if m.SharedClassifier() {
		h.Write([]byte{1})
	} else {
		h.Write([]byte{0})
	}
	// Types: the same bytes read as another type are other weights.
	h.Write([]byte(strings.Join(m.weightTypes(), ",")))
	for _, s := range sums {
		h.Write(s[:])
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
//	gguf:PATH | PATH.gguf                    GGUF file (weights mapped, its own tokenizer and template)
//
// cacheDir is accepted for API stability but unused: generating the built-in
// weights (splitmix64, well under a second for builtin:small) is as fast as
// reading and verifying a cached copy would be.
func Load(ref string, cacheDir string) (*Model, error) {
	_ = cacheDir
	return LoadWith(ref, LoadOptions{})
}

// LoadOptions configure LoadWith.
type LoadOptions struct {
	// Log receives the progress of a long load (a large GGUF file's weights
	// read and checked) and its duration; nil logs nothing.
	Log *slog.Logger
}

// LoadWith is Load with options.
func LoadWith(ref string, opts LoadOptions) (*Model, error) {
	switch {
	case strings.HasPrefix(ref, "builtin:"):
		return Builtin(strings.TrimPrefix(ref, "builtin:"))
	case strings.HasPrefix(ref, "gguf:") || (strings.HasSuffix(ref, ".gguf") && !strings.Contains(ref, ":")):
		path := strings.TrimPrefix(ref, "gguf:")
		if path == "" {
			return nil, fmt.Errorf("%w: %q: empty GGUF path", ErrUnknownModel, ref)
		}
		return loadGGUF(path, opts.Log)
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
			m.Info.Tokenizer = t.Kind()
			m.Template = chat.Plain()
		}
		return m, nil
	}
	return nil, fmt.Errorf("%w: %q (want builtin:tiny, builtin:small, gguf:PATH, PATH.gguf or llama2c:PATH[,tokenizer=PATH])", ErrUnknownModel, ref)
}

// finish fills in what every loader derives the same way: the weight types
// and the tag.
func (m *Model) finish() {
	m.Info.WeightTypes = m.weightTypes()
	m.Tag = m.computeTag()
}

// modelName is the display name of a checkpoint path.
func modelName(path string) string {
	return strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
}

// float32View reads little-endian float32s: a view when the host is
// little-endian and b is 4-byte aligned (GGUF data is aligned to at least 32
// bytes in a page-aligned mapping), a decoded copy otherwise.
func float32View(b []byte) []float32 {
	n := len(b) / 4
	if n == 0 {
		return nil
	}
	if littleEndian && uintptr(unsafe.Pointer(&b[0]))%4 == 0 {
		return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), n)
	}
	out := make([]float32, n)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}
