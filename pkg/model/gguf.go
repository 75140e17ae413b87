package model

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/semantic-kv/semantic/pkg/chat"
	"github.com/semantic-kv/semantic/pkg/gguf"
	"github.com/semantic-kv/semantic/pkg/quant"
	"github.com/semantic-kv/semantic/pkg/tokenizer"
)

// ErrUnsupported is wrapped by every refusal of a well-formed file that asks
// for something the engine does not implement (an architecture, a weight
// type, an option). The message lists what is supported: the engine never
// runs a model it would compute wrongly.
var ErrUnsupported = errors.New("unsupported model")

// SupportedArchitectures are the GGUF general.architecture values LoadGGUF
// accepts.
var SupportedArchitectures = []string{"llama"}

// SupportedTokenizers are the tokenizer.ggml.model values LoadGGUF accepts
// (a file without one loads without a tokenizer: callers send token ids).
var SupportedTokenizers = []string{"llama"}

// endOfTurnTexts are control tokens that end an assistant turn in the chat
// formats of common families, used when the file names no eot_token_id (as
// llama.cpp does).
var endOfTurnTexts = []string{"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>"}

// LoadGGUF maps a GGUF file and builds the model over the mapping: quantized
// and half-precision matrices are used where they lie in the file, never
// copied or expanded. Every tensor's type, shape and byte range is checked,
// quantization scales must be finite, and anything the engine does not
// implement is refused with an error that says what is supported.
func LoadGGUF(path string) (*Model, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gguf %s: %w", path, err)
	}
	m, err := fromGGUF(f, modelName(path))
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
	var c Config
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
	if c.Heads == 0 || c.Dim%c.Heads != 0 {
		return c, fmt.Errorf("%w: %sembedding_length %d is not a multiple of %sattention.head_count %d", ErrBadConfig, a, c.Dim, a, c.Heads)
	}
	hd := c.Dim / c.Heads
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
	if s, err := g.f.String(a + "rope.scaling.type"); err == nil && s != "none" {
		return c, fmt.Errorf("%w: %srope.scaling.type = %q: rope scaling is not supported yet (only none)", ErrUnsupported, a, s)
	} else if err != nil && !errors.Is(err, gguf.ErrMissingKey) {
		return c, err
	}
	return c, nil
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

func fromGGUF(f *gguf.File, fileName string) (*Model, error) {
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
		if l.AttNorm, err = g.vector(p+"attn_norm.weight", c.Dim); err != nil {
			return nil, err
		}
		if l.FFNNorm, err = g.vector(p+"ffn_norm.weight", c.Dim); err != nil {
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
	// A tensor the architecture does not consume (attention biases, rope
	// frequency factors, ...) would change the answer if ignored.
	for _, t := range f.Tensors {
		if !g.used[t.Name] {
			return nil, fmt.Errorf("%w: tensor %s (%v) is not part of the %s architecture as implemented (no biases, no rope scaling)", ErrUnsupported, t.Name, t.Type, arch)
		}
	}
	if err := checkFinite(m); err != nil {
		return nil, err
	}
	if err := loadVocab(f, m); err != nil {
		return nil, err
	}
	m.finish()
	return m, nil
}

// checkFinite refuses NaN or Inf weights and quantization scales: one would
// turn every logit it touches into NaN. Tensors are scanned in parallel.
func checkFinite(m *Model) error {
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
	}
	return -1
}

// loadVocab builds the tokenizer, special ids and chat template from the
// tokenizer.* keys. A file without tokenizer.ggml.model has no tokenizer.
func loadVocab(f *gguf.File, m *Model) error {
	kind, err := f.String("tokenizer.ggml.model")
	if errors.Is(err, gguf.ErrMissingKey) {
		return nil
	}
	if err != nil {
		return err
	}
	if !slices.Contains(SupportedTokenizers, kind) {
		return fmt.Errorf("%w: tokenizer.ggml.model %q; supported tokenizers: %s (byte-level BPE vocabularies are not supported yet)", ErrUnsupported, kind, strings.Join(SupportedTokenizers, ", "))
	}
	tokens, err := f.Strings("tokenizer.ggml.tokens")
	if err != nil {
		return err
	}
	if len(tokens) != m.Config.Vocab {
		return fmt.Errorf("%w: tokenizer.ggml.tokens has %d tokens but token_embd.weight has %d rows", ErrBadConfig, len(tokens), m.Config.Vocab)
	}
	v := tokenizer.SPMVocab{Tokens: tokens, BOS: -1, EOS: -1, UNK: -1, PAD: -1, AddBOS: true, AddSpacePrefix: true}
	if v.Scores, err = f.Float32s("tokenizer.ggml.scores"); err != nil && !errors.Is(err, gguf.ErrMissingKey) {
		return err
	}
	if types, err := f.Ints("tokenizer.ggml.token_type"); err == nil {
		v.Types = make([]int32, len(types))
		for i, t := range types {
			if t < math.MinInt32 || t > math.MaxInt32 {
				return fmt.Errorf("%w: tokenizer.ggml.token_type[%d] = %d", ErrBadConfig, i, t)
			}
			v.Types[i] = int32(t)
		}
	} else if !errors.Is(err, gguf.ErrMissingKey) {
		return err
	}
	for _, s := range []struct {
		dst *int
		key string
	}{
		{&v.BOS, "tokenizer.ggml.bos_token_id"},
		{&v.EOS, "tokenizer.ggml.eos_token_id"},
		{&v.UNK, "tokenizer.ggml.unknown_token_id"},
		{&v.PAD, "tokenizer.ggml.padding_token_id"},
	} {
		id, err := f.Int(s.key)
		if errors.Is(err, gguf.ErrMissingKey) || id == -1 || id == math.MaxUint32 {
			continue // absent; converters write -1 (as uint32 too) for "none"
		}
		if err != nil {
			return err
		}
		if id < 0 || id >= int64(len(tokens)) {
			return fmt.Errorf("%w: %s = %d is outside the vocabulary (%d tokens)", ErrBadConfig, s.key, id, len(tokens))
		}
		*s.dst = int(id)
	}
	for _, s := range []struct {
		dst *bool
		key string
	}{
		{&v.AddBOS, "tokenizer.ggml.add_bos_token"},
		{&v.AddSpacePrefix, "tokenizer.ggml.add_space_prefix"},
	} {
		b, err := f.Bool(s.key)
		if errors.Is(err, gguf.ErrMissingKey) {
			continue
		}
		if err != nil {
			return err
		}
		*s.dst = b
	}
	tok, err := tokenizer.NewSentencePiece(v)
	if err != nil {
		return err
	}
	m.Tokenizer = tok
	m.Info.Tokenizer = tok.Kind()
	m.EOS = v.EOS
	if v.AddBOS {
		m.BOS = v.BOS
	}
	// End-of-turn tokens: the file's own, else the well-known control
	// tokens of chat formats that the vocabulary has.
	stops := map[int]bool{}
	for _, key := range []string{"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"} {
		if id, err := f.Uint(key); err == nil && id < uint64(len(tokens)) {
			stops[int(id)] = true
		} else if err != nil && !errors.Is(err, gguf.ErrMissingKey) {
			return err
		}
	}
	if len(stops) == 0 {
		for id, t := range tokens {
			if (v.Types == nil || v.Types[id] == tokenizer.TokenControl || v.Types[id] == tokenizer.TokenUserDefined) && slices.Contains(endOfTurnTexts, t) {
				stops[id] = true
			}
		}
	}
	delete(stops, m.EOS)
	for id := range stops {
		m.StopTokens = append(m.StopTokens, id)
	}
	sort.Ints(m.StopTokens)
	// Chat template.
	src, err := f.String("tokenizer.chat_template")
	switch {
	case errors.Is(err, gguf.ErrMissingKey):
		m.Template = chat.Plain()
	case err != nil:
		return err
	default:
		text := func(id int) string {
			if id < 0 {
				return ""
			}
			return tokens[id]
		}
		// A template this engine cannot render does not stop the model
		// from serving prompts; conversations then fail with the reason.
		m.Info.ChatTemplate = true
		if m.Template, err = chat.New(src, text(v.BOS), text(v.EOS)); err != nil {
			m.Template, m.TemplateErr = nil, fmt.Errorf("tokenizer.chat_template: %w", err)
		}
	}
	return nil
}
