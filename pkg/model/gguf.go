package model

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/semantic-kv/semantic/pkg/gguf"
	"github.com/semantic-kv/semantic/pkg/progress"
	"github.com/semantic-kv/semantic/pkg/quant"
)

// ErrUnsupported is wrapped by every refusal of a well-formed file that asks
// for something the engine does not implement (an architecture, a weight
// type, an option). The message lists what is supported: the engine never
// runs a model it would compute wrongly.
var ErrUnsupported = errors.New("unsupported model")

// SupportedArchitectures are the GGUF general.architecture values LoadGGUF
// accepts.
var SupportedArchitectures = func() []string {
	s := make([]string, len(Architectures))
	for i, a := range Architectures {
		s[i] = string(a)
	}
	return s
}()

// LoadGGUF maps a GGUF file and builds the model over the mapping: quantized
// and half-precision matrices are used where they lie in the file, never
// copied or expanded. Every tensor's type, shape and byte range is checked,
// quantization scales must be finite, and anything the engine does not
// implement is refused with an error that says what is supported.
func LoadGGUF(path string) (*Model, error) { return loadGGUF(path, nil) }

// loadGGUF is LoadGGUF reporting the progress of its long phase (reading
// every weight to check it is finite: the whole file comes from disk) to log.
func loadGGUF(path string, log *slog.Logger) (*Model, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gguf %s: %w", path, err)
	}
	m, err := fromGGUF(f, modelName(path), log)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("gguf %s: %w", path, err)
	}
	m.closer = f
	return m, nil
}

// ggufLoader reads one file's keys with errors that name the key.
type ggufLoader struct {
	f    *gguf.File
	arch string
	used map[string]bool // tensors consumed
}

func (g *ggufLoader) uint(key string, def int64, required bool) (int, error) {
	v, err := g.f.Uint(key)
	if errors.Is(err, gguf.ErrMissingKey) && !required {
		return int(def), nil
	}
	if err != nil {
		return 0, err
	}
	if v > math.MaxInt32 {
		return 0, fmt.Errorf("%w: %s = %d is out of range", ErrBadConfig, key, v)
	}
	return int(v), nil
}

func (g *ggufLoader) float(key string, def float64) (float64, error) {
	v, err := g.f.Float(key)
	if errors.Is(err, gguf.ErrMissingKey) {
		return def, nil
	}
	return v, err
}

func (g *ggufLoader) config() (Config, error) {
	a := g.arch + "."
	c := Config{Arch: Arch(g.arch)}
	r, _ := c.Arch.rules()
	var err error
	ints := []struct {
		dst      *int
		key      string
		def      int64
		required bool
	}{
		{&c.SeqLen, a + "context_length", 0, true},
		{&c.Dim, a + "embedding_length", 0, true},
		{&c.Layers, a + "block_count", 0, true},
		{&c.HiddenDim, a + "feed_forward_length", 0, true},
		{&c.Heads, a + "attention.head_count", 0, true},
	}
	for _, k := range ints {
		if *k.dst, err = g.uint(k.key, k.def, k.required); err != nil {
			return c, err
		}
	}
	if c.KVHeads, err = g.uint(a+"attention.head_count_kv", int64(c.Heads), false); err != nil {
		return c, err
	}
	eps, err := g.float(a+"attention.layer_norm_rms_epsilon", 1e-5)
	if err != nil {
		return c, err
	}
	theta, err := g.float(a+"rope.freq_base", 10000)
	if err != nil {
		return c, err
	}
	c.NormEps, c.RopeTheta = float32(eps), float32(theta)
	if c.Heads == 0 {
		return c, fmt.Errorf("%w: %sattention.head_count is 0", ErrBadConfig, a)
	}
	hd := c.Dim / c.Heads
	if r.headSize {
		// The head size is its own key (Qwen3: 128 for dim 1024 and 16
		// heads), defaulting to dim/heads.
		if c.HeadSize, err = g.uint(a+"attention.key_length", int64(hd), false); err != nil {
			return c, err
		}
		hd = c.HeadSize
	} else if c.Dim%c.Heads != 0 {
		return c, fmt.Errorf("%w: %sembedding_length %d is not a multiple of %sattention.head_count %d", ErrBadConfig, a, c.Dim, a, c.Heads)
	}
	// Options the engine does not implement: refuse rather than compute
	// something else.
	for _, k := range []string{"rope.dimension_count", "attention.key_length", "attention.value_length"} {
		v, err := g.uint(a+k, int64(hd), false)
		if err != nil {
			return c, err
		}
		if v != hd {
			return c, fmt.Errorf("%w: %s%s = %d; only models whose %s equals the head size (%d) are supported", ErrUnsupported, a, k, v, k, hd)
		}
	}
	if n, err := g.uint(a+"expert_count", 0, false); err != nil || n > 0 {
		if err != nil {
			return c, err
		}
		return c, fmt.Errorf("%w: %sexpert_count = %d: mixture-of-experts models are not supported", ErrUnsupported, a, n)
	}
	if w, err := g.uint(a+"attention.sliding_window", 0, false); err != nil || (w > 0 && w < c.SeqLen) {
		if err != nil {
			return c, err
		}
		return c, fmt.Errorf("%w: %sattention.sliding_window = %d: sliding-window attention is not supported", ErrUnsupported, a, w)
	}
	if c.RopeScale, err = g.ropeScaling(); err != nil {
		return c, err
	}
	return c, nil
}

// ropeScaling reads rope.scaling.*: none, or linear with a factor. Llama
// 3.1's scaling needs no key: its factors are the rope_freqs.weight tensor.
// YaRN and LongRoPE are refused.
func (g *ggufLoader) ropeScaling() (float32, error) {
	a := g.arch + "."
	typ, err := g.f.String(a + "rope.scaling.type")
	if errors.Is(err, gguf.ErrMissingKey) {
		typ = "none"
	} else if err != nil {
		return 0, err
	}
	factor, err := g.float(a+"rope.scaling.factor", 0)
	if err != nil {
		return 0, err
	}
	switch typ {
	case "none":
		return 0, nil
	case "linear":
		if !(factor >= 1 && factor <= 1024) {
			return 0, fmt.Errorf("%w: %srope.scaling.factor = %v, want 1..1024 for linear scaling", ErrBadConfig, a, factor)
		}
		return float32(factor), nil
	}
	return 0, fmt.Errorf("%w: %srope.scaling.type = %q: supported rope scaling: none, linear, and Llama 3.1's rope_freqs.weight factors", ErrUnsupported, a, typ)
}

// tensor finds name, checks it is a rows x cols matrix of a supported type,
// and wraps its bytes (a view into the mapping).
func (g *ggufLoader) tensor(name string, rows, cols int) (Tensor, error) {
	ti, ok := g.f.Tensor(name)
	if !ok {
		return Tensor{}, fmt.Errorf("%w: tensor %s is missing", ErrBadConfig, name)
	}
	g.used[name] = true
	want := []int64{int64(cols), int64(rows)}
	if rows == 1 {
		want = want[:1]
	}
	if !slices.Equal(ti.Dims, want) {
		return Tensor{}, fmt.Errorf("%w: tensor %s has dimensions %v, want %v (innermost first)", ErrBadConfig, name, ti.Dims, want)
	}
	if !IsSupported(ti.Type) {
		return Tensor{}, fmt.Errorf("%w: tensor %s has type %v; supported weight types: %v", ErrUnsupported, name, ti.Type, SupportedTypes)
	}
	data := g.f.TensorData(ti)
	t := Tensor{Type: ti.Type, Rows: rows, Cols: cols}
	if ti.Type == gguf.TensorF32 {
		if len(data)%4 != 0 || len(data) != 4*rows*cols {
			return Tensor{}, fmt.Errorf("%w: tensor %s holds %d bytes, want %d", ErrBadConfig, name, len(data), 4*rows*cols)
		}
		t.F32 = float32View(data)
	} else {
		t.Data = data
	}
	return t, t.Check(name, rows, cols)
}

// vector reads a norm weight as float32 (copied: it is tiny).
func (g *ggufLoader) vector(name string, n int) ([]float32, error) {
	t, err := g.tensor(name, 1, n)
	if err != nil {
		return nil, err
	}
	if IsQuantized(t.Type) {
		return nil, fmt.Errorf("%w: norm tensor %s has type %v (want F32, F16 or BF16)", ErrUnsupported, name, t.Type)
	}
	out := make([]float32, n)
	t.Row(out, 0)
	return out, nil
}

func fromGGUF(f *gguf.File, fileName string, log *slog.Logger) (*Model, error) {
	arch, err := f.String("general.architecture")
	if err != nil {
		return nil, err
	}
	if !slices.Contains(SupportedArchitectures, arch) {
		return nil, fmt.Errorf("%w: general.architecture %q; supported architectures: %s", ErrUnsupported, arch, strings.Join(SupportedArchitectures, ", "))
	}
	g := &ggufLoader{f: f, arch: arch, used: map[string]bool{}}
	c, err := g.config()
	if err != nil {
		return nil, err
	}
	emb, ok := f.Tensor("token_embd.weight")
	if !ok {
		return nil, fmt.Errorf("%w: tensor token_embd.weight is missing", ErrBadConfig)
	}
	if len(emb.Dims) != 2 || emb.Dims[1] > MaxVocab {
		return nil, fmt.Errorf("%w: tensor token_embd.weight has dimensions %v", ErrBadConfig, emb.Dims)
	}
	c.Vocab = int(emb.Dims[1])
	if v, err := g.uint(arch+".vocab_size", int64(c.Vocab), false); err != nil {
		return nil, err
	} else if v != c.Vocab {
		return nil, fmt.Errorf("%w: %s.vocab_size = %d but token_embd.weight has %d rows", ErrBadConfig, arch, v, c.Vocab)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	// The file's name, as for llama2.c checkpoints: general.name is often
	// only the architecture or the base model's name.
	m := &Model{Name: fileName, Config: c, BOS: -1, EOS: -1, Layers: make([]Layer, c.Layers),
		Info: Info{Architecture: arch, Format: "gguf"}}
	if m.Embedding, err = g.tensor("token_embd.weight", c.Vocab, c.Dim); err != nil {
		return nil, err
	}
	for i := range m.Layers {
		l := &m.Layers[i]
		p := fmt.Sprintf("blk.%d.", i)
		for _, v := range l.vectors(c) {
			if _, ok := f.Tensor(p + v.name); v.p == absent || (v.p == optional && !ok) {
				continue // absent ones left over are refused below
			}
			if *v.v, err = g.vector(p+v.name, v.n); err != nil {
				return nil, err
			}
		}
		if err := l.checkVectors(c, i); err != nil {
			return nil, err
		}
		for _, lm := range l.matrices(c) {
			if *lm.t, err = g.tensor(p+lm.name+".weight", lm.rows, lm.cols); err != nil {
				return nil, err
			}
		}
	}
	if m.FinalNorm, err = g.vector("output_norm.weight", c.Dim); err != nil {
		return nil, err
	}
	if _, ok := f.Tensor("output.weight"); ok {
		if m.Classifier, err = g.tensor("output.weight", c.Vocab, c.Dim); err != nil {
			return nil, err
		}
	} else {
		m.Classifier = m.Embedding // tied output embedding
	}
	if r, _ := c.Arch.rules(); r.ropeFreqs {
		if ti, ok := f.Tensor("rope_freqs.weight"); ok && len(ti.Dims) == 1 {
			if m.RopeFreqs, err = g.vector("rope_freqs.weight", int(ti.Dims[0])); err != nil {
				return nil, err
			}
			if err := checkRopeFreqs(c, m.RopeFreqs); err != nil {
				return nil, err
			}
		}
	}
	// A tensor the architecture does not consume (an output bias, a
	// layer's extra norm, ...) would change the answer if ignored.
	for _, t := range f.Tensors {
		if !g.used[t.Name] {
			return nil, fmt.Errorf("%w: tensor %s (%v) is not part of the %s architecture as implemented", ErrUnsupported, t.Name, t.Type, arch)
		}
	}
	if err := checkFinite(m, log); err != nil {
		return nil, err
	}
	if err := loadVocab(f, m); err != nil {
		return nil, err
	}
	m.finish()
	return m, nil
}

// checkFinite refuses NaN or Inf weights and quantization scales: one would
// turn every logit it touches into NaN. Tensors are scanned in parallel; the
// bytes scanned are reported to log (nil: not reported).
func checkFinite(m *Model, log *slog.Logger) error {
	type item struct {
		name string
		t    *Tensor
	}
	items := []item{{"token_embd.weight", &m.Embedding}}
	for i := range m.Layers {
		l := &m.Layers[i]
		for _, lm := range l.matrices(m.Config) {
			items = append(items, item{fmt.Sprintf("blk.%d.%s.weight", i, lm.name), lm.t})
		}
		an, fn := F32(1, len(l.AttNorm), l.AttNorm), F32(1, len(l.FFNNorm), l.FFNNorm)
		items = append(items, item{fmt.Sprintf("blk.%d.attn_norm.weight", i), &an}, item{fmt.Sprintf("blk.%d.ffn_norm.weight", i), &fn})
	}
	on := F32(1, len(m.FinalNorm), m.FinalNorm)
	items = append(items, item{"output_norm.weight", &on})
	if !m.SharedClassifier() {
		items = append(items, item{"output.weight", &m.Classifier})
	}
	var total int64
	for _, it := range items {
		total += it.t.bytes()
	}
	rep := progress.New(log, "checking model weights", total, "bytes")
	defer rep.Done()
	errs := make([]error, len(items))
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i, it := range items {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if at := firstNonFinite(it.t); at >= 0 {
				what := "weight"
				if IsQuantized(it.t.Type) {
					what = "scale of the block"
				}
				errs[i] = fmt.Errorf("%w: tensor %s: non-finite %s at element %d", ErrBadConfig, it.name, what, at)
			}
			rep.Add(it.t.bytes())
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// firstNonFinite is the index of the first non-finite weight (float types)
// or block scale (quantized types), or -1.
func firstNonFinite(t *Tensor) int {
	switch t.Type {
	case gguf.TensorF32:
		for i, v := range t.F32 {
			if math.Float32bits(v)&0x7f800000 == 0x7f800000 {
				return i
			}
		}
	case gguf.TensorF16:
		for i := 0; i+1 < len(t.Data); i += 2 {
			if t.Data[i+1]&0x7c == 0x7c {
				return i / 2
			}
		}
	case gguf.TensorBF16:
		for i := 0; i+1 < len(t.Data); i += 2 {
			if t.Data[i+1]&0x7f == 0x7f && t.Data[i]&0x80 != 0 {
				return i / 2
			}
		}
	case gguf.TensorQ8_0:
		return quant.CheckScales(quant.Q8_0BlockBytes, t.Data)
	case gguf.TensorQ4_0:
		return quant.CheckScales(quant.Q4_0BlockBytes, t.Data)
	case gguf.TensorQ4_K:
		return quant.CheckScalesQ4_K(quant.Q4_KBlockBytes, t.Data)
	case gguf.TensorQ5_K:
		return quant.CheckScalesQ4_K(quant.Q5_KBlockBytes, t.Data)
	case gguf.TensorQ6_K:
		return quant.CheckScalesQ6_K(t.Data)
	}
	return -1
}
