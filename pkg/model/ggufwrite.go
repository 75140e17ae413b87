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
	// quantized type is written F16). The zero value is F32.
	Type gguf.TensorType
	// Untied writes output.weight even when the classifier is the embedding.
	Untied bool
	// Metadata is added after the architecture keys (the tokenizer.* keys of
	// a vocabulary, a chat template, ...), in sorted key order.
	Metadata map[string]any
}

// WriteGGUF returns a GGUF file of a float32 model in the llama
// architecture's tensor names and layout, with every matrix encoded as
// opts.Type by the reference quantizers. It is how the project makes its own
// test and benchmark files (random weights of real model shapes) and
// quantizes a float model (see cmd/semantic-quantize).
func WriteGGUF(m *Model, opts GGUFOptions) (*gguf.Writer, error) {
	for _, t := range m.tensorList() {
		if t.Type != gguf.TensorF32 {
			return nil, fmt.Errorf("WriteGGUF: model has %v weights; it writes float32 models", t.Type)
		}
	}
	c := m.Config
	w := gguf.NewWriter()
	kvs := []struct {
		k string
		v any
	}{
		{"general.architecture", "llama"},
		{"general.name", m.Name},
		{"llama.context_length", uint32(c.SeqLen)},
		{"llama.embedding_length", uint32(c.Dim)},
		{"llama.block_count", uint32(c.Layers)},
		{"llama.feed_forward_length", uint32(c.HiddenDim)},
		{"llama.attention.head_count", uint32(c.Heads)},
		{"llama.attention.head_count_kv", uint32(c.KVHeads)},
		{"llama.attention.layer_norm_rms_epsilon", c.NormEps},
		{"llama.rope.freq_base", c.RopeTheta},
		{"llama.rope.dimension_count", uint32(c.HeadDim())},
		{"general.file_type", uint32(fileType(opts.Type))},
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
		if bs := typ.BlockSize(); bs > 1 && t.Cols%bs != 0 {
			// Rows that are not whole blocks cannot be quantized; like
			// llama.cpp's quantizer, fall back to a half-precision type.
			typ = gguf.TensorF16
		}
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
	if err := add("token_embd.weight", m.Embedding, opts.Type); err != nil {
		return nil, err
	}
	for i := range m.Layers {
		l := &m.Layers[i]
		p := fmt.Sprintf("blk.%d.", i)
		if err := vec(p+"attn_norm.weight", l.AttNorm); err != nil {
			return nil, err
		}
		if err := vec(p+"ffn_norm.weight", l.FFNNorm); err != nil {
			return nil, err
		}
		for _, lm := range l.matrices(c) {
			if err := add(p+lm.name+".weight", *lm.t, opts.Type); err != nil {
				return nil, err
			}
		}
	}
	if err := vec("output_norm.weight", m.FinalNorm); err != nil {
		return nil, err
	}
	if !m.SharedClassifier() || opts.Untied {
		if err := add("output.weight", m.Classifier, opts.Type); err != nil {
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
