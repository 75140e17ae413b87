package model

import (
	"fmt"
	"sort"

	"github.com/semantic-kv/semantic/pkg/gguf"
)

// GGUFOptions control WriteGGUF.
type GGUFOptions struct {
	// Type is the type of every matrix (the norms stay F32, as llama.cpp's
	// quantizer writes them; a matrix whose rows are not whole blocks of a
	// quantized type falls back as fallbackType says: Q8_0 for the
	// K-quants when it can, else F16). The zero value is F32.
	Type gguf.TensorType
	// Mix, if not empty, chooses each matrix's type as llama.cpp's
	// quantizer does for a file type that mixes types (MixQ4_K_M; see
	// MixType) instead of Type.
	Mix string
	// Untied writes output.weight even when the classifier is the embedding.
	Untied bool
	// Metadata is added after the architecture keys (the tokenizer.* keys of
	// a vocabulary, a chat template, ...), in sorted key order.
	Metadata map[string]any
}

// WriteGGUF returns a GGUF file of a float32 model in its architecture's
// tensor names and layout (llama.cpp's), with every matrix encoded as
// opts.Type by the reference quantizers. It is how the project makes its own
// test and benchmark files (random weights of real model shapes) and
// quantizes a float model (see cmd/semantic-quantize).
func WriteGGUF(m *Model, opts GGUFOptions) (*gguf.Writer, error) {
	for _, t := range m.tensorList() {
		if t.Type != gguf.TensorF32 {
			return nil, fmt.Errorf("WriteGGUF: model has %v weights; it writes float32 models", t.Type)
		}
	}
	if err := opts.checkMix(); err != nil {
		return nil, err
	}
	c := m.Config
	w := gguf.NewWriter()
	a := c.Arch.String()
	type kv struct {
		k string
		v any
	}
	kvs := []kv{
		{"general.architecture", a},
		{"general.name", m.Name},
		{a + ".context_length", uint32(c.SeqLen)},
		{a + ".embedding_length", uint32(c.Dim)},
		{a + ".block_count", uint32(c.Layers)},
		{a + ".feed_forward_length", uint32(c.HiddenDim)},
		{a + ".attention.head_count", uint32(c.Heads)},
		{a + ".attention.head_count_kv", uint32(c.KVHeads)},
		{a + ".attention.layer_norm_rms_epsilon", c.NormEps},
		{a + ".rope.freq_base", c.RopeTheta},
		{a + ".rope.dimension_count", uint32(c.HeadDim())},
		{"general.file_type", uint32(opts.fileType())},
	}
	if c.HeadSize > 0 {
		kvs = append(kvs, kv{a + ".attention.key_length", uint32(c.HeadSize)}, kv{a + ".attention.value_length", uint32(c.HeadSize)})
	}
	if c.RopeScale != 0 && c.RopeScale != 1 {
		kvs = append(kvs, kv{a + ".rope.scaling.type", "linear"}, kv{a + ".rope.scaling.factor", c.RopeScale})
	}
	for _, kv := range kvs {
		if err := w.AddKV(kv.k, kv.v); err != nil {
			return nil, err
		}
	}
	for _, k := range sortedKeys(opts.Metadata) {
		if err := w.AddKV(k, opts.Metadata[k]); err != nil {
			return nil, err
		}
	}
	add := func(name string, t Tensor, typ gguf.TensorType) error {
		// Rows that are not whole blocks cannot be quantized; like
		// llama.cpp's quantizer, fall back to another type.
		typ = fallbackType(typ, t.Cols)
		q, err := Quantize(t, typ)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		dims := []int64{int64(t.Cols), int64(t.Rows)}
		if t.Rows == 1 {
			dims = dims[:1]
		}
		return w.AddTensor(name, typ, dims, q.Bytes())
	}
	vec := func(name string, v []float32) error { return add(name, F32(1, len(v), v), gguf.TensorF32) }
	if err := add("token_embd.weight", m.Embedding, MixType(opts.Mix, opts.Type, "token_embd", 0, c.Layers, m.SharedClassifier() && !opts.Untied)); err != nil {
		return nil, err
	}
	for i := range m.Layers {
		l := &m.Layers[i]
		p := fmt.Sprintf("blk.%d.", i)
		for _, v := range l.vectors(c) {
			if *v.v == nil {
				continue
			}
			if err := vec(p+v.name, *v.v); err != nil {
				return nil, err
			}
		}
		for _, lm := range l.matrices(c) {
			if err := add(p+lm.name+".weight", *lm.t, MixType(opts.Mix, opts.Type, lm.name, i, c.Layers, false)); err != nil {
				return nil, err
			}
		}
	}
	if err := vec("output_norm.weight", m.FinalNorm); err != nil {
		return nil, err
	}
	if !m.SharedClassifier() || opts.Untied {
		if err := add("output.weight", m.Classifier, MixType(opts.Mix, opts.Type, "output", 0, c.Layers, false)); err != nil {
			return nil, err
		}
	}
	if m.RopeFreqs != nil {
		if err := vec("rope_freqs.weight", m.RopeFreqs); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// fileType is llama.cpp's general.file_type for a model whose matrices are
// all of type t (LLAMA_FTYPE_*).
func fileType(t gguf.TensorType) int {
	switch t {
	case gguf.TensorF16:
		return 1
	case gguf.TensorQ4_0:
		return 2
	case gguf.TensorQ8_0:
		return 7
	case gguf.TensorBF16:
		return 32
	}
	return 0
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
