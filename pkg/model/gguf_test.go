package model

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/semantic-kv/semantic/pkg/chat"
	"github.com/semantic-kv/semantic/pkg/gguf"
	"github.com/semantic-kv/semantic/pkg/quant"
	"github.com/semantic-kv/semantic/pkg/testmodels"
)

// smallGGUF is a random model whose dimensions are whole Q8_0 blocks,
// written as GGUF with matrices of type typ.
func smallGGUF(t *testing.T, typ gguf.TensorType) []byte {
	t.Helper()
	c := Config{Dim: 64, HiddenDim: 96, Layers: 2, Heads: 4, KVHeads: 2, Vocab: 40, SeqLen: 128, NormEps: 1e-5, RopeTheta: 10000}
	m, err := Random("small", c, 1)
	if err != nil {
		t.Fatal(err)
	}
	w, err := WriteGGUF(m, GGUFOptions{Type: typ})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// rewrite copies a GGUF file, letting kv change or drop keys (return
// false) and tensor change or drop tensors, then appends extra keys.
func rewrite(t *testing.T, data []byte, kv func(k string, v any) (any, bool),
	tensor func(ti *gguf.TensorInfo, data []byte) ([]byte, bool), extra map[string]any) []byte {
	t.Helper()
	f, err := gguf.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	w := gguf.NewWriter()
	for _, k := range f.Keys() {
		v, _ := f.Value(k)
		val, keep := v.Any(), true
		if kv != nil {
			val, keep = kv(k, val)
		}
		if keep {
			if err := w.AddKV(k, val); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, k := range sortedKeys(extra) {
		if err := w.AddKV(k, extra[k]); err != nil {
			t.Fatal(err)
		}
	}
	for i := range f.Tensors {
		ti := f.Tensors[i]
		d := append([]byte(nil), f.TensorData(&ti)...)
		keep := true
		if tensor != nil {
			d, keep = tensor(&ti, d)
		}
		if keep {
			if err := w.AddTensor(ti.Name, ti.Type, ti.Dims, d); err != nil {
				t.Fatal(err)
			}
		}
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func loadBytes(t *testing.T, data []byte) (*Model, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Load(path, "")
	if err == nil {
		t.Cleanup(func() { m.Close() })
	}
	return m, err
}

// TestGGUFRefusals: a file the engine would compute wrongly is refused at
// load with an error that names the key or tensor and what is supported.
func TestGGUFRefusals(t *testing.T) {
	base := smallGGUF(t, gguf.TensorQ8_0)
	if m, err := loadBytes(t, base); err != nil || m.Info.Format != "gguf" || m.Tokenizer != nil {
		t.Fatalf("base file: %v", err)
	}
	setKey := func(key string, val any) []byte {
		return rewrite(t, base, func(k string, v any) (any, bool) {
			if k == key {
				return val, true
			}
			return v, true
		}, nil, nil)
	}
	nanScale := rewrite(t, base, nil, func(ti *gguf.TensorInfo, d []byte) ([]byte, bool) {
		if ti.Name == "blk.1.ffn_up.weight" {
			h := quant.F32ToF16(float32(math.NaN()))
			d[34*5], d[34*5+1] = byte(h), byte(h>>8) // block 5's scale
		}
		return d, true
	}, nil)
	// A tensor the architecture does not use (Qwen3's q norm in a llama
	// file).
	var bias []byte
	{
		f, _ := gguf.Parse(base)
		w := gguf.NewWriter()
		for _, k := range f.Keys() {
			v, _ := f.Value(k)
			w.AddKV(k, v.Any())
		}
		for i := range f.Tensors {
			ti := f.Tensors[i]
			w.AddTensor(ti.Name, ti.Type, ti.Dims, f.TensorData(&ti))
		}
		w.AddTensor("blk.0.attn_q_norm.weight", gguf.TensorF32, []int64{16}, make([]byte, 64))
		var buf bytes.Buffer
		w.WriteTo(&buf)
		bias = buf.Bytes()
	}
	// A matrix whose shape does not match the config.
	shape := rewrite(t, base, nil, func(ti *gguf.TensorInfo, d []byte) ([]byte, bool) {
		if ti.Name == "blk.0.ffn_gate.weight" {
			ti.Dims = []int64{64, 64}
			return d[:64*34*2], true
		}
		return d, true
	}, nil)
	cases := []struct {
		name string
		data []byte
		want []string
		err  error
	}{
		{"architecture", setKey("general.architecture", "mamba"), []string{"mamba", "supported architectures: llama"}, ErrUnsupported},
		{"missing tensor", rewrite(t, base, nil, func(ti *gguf.TensorInfo, d []byte) ([]byte, bool) {
			return d, ti.Name != "blk.1.attn_k.weight"
		}, nil), []string{"blk.1.attn_k.weight", "missing"}, ErrBadConfig},
		{"foreign tensor", bias, []string{"blk.0.attn_q_norm.weight", "not part of the llama architecture"}, ErrUnsupported},
		{"shape", shape, []string{"blk.0.ffn_gate.weight", "dimensions"}, ErrBadConfig},
		{"nan scale", nanScale, []string{"blk.1.ffn_up.weight", "non-finite", "element 5"}, ErrBadConfig},
		{"rope dims", setKey("llama.rope.dimension_count", uint32(8)), []string{"rope.dimension_count", "head size"}, ErrUnsupported},
		{"rope scaling", rewrite(t, base, nil, nil, map[string]any{"llama.rope.scaling.type": "yarn"}), []string{"rope.scaling.type", "yarn"}, ErrUnsupported},
		{"experts", rewrite(t, base, nil, nil, map[string]any{"llama.expert_count": uint32(8)}), []string{"expert_count"}, ErrUnsupported},
		{"sliding window", rewrite(t, base, nil, nil, map[string]any{"llama.attention.sliding_window": uint32(16)}), []string{"sliding_window"}, ErrUnsupported},
		{"heads", setKey("llama.attention.head_count", uint32(5)), []string{"head_count"}, ErrBadConfig},
		{"missing key", rewrite(t, base, func(k string, v any) (any, bool) { return v, k != "llama.block_count" }, nil, nil), []string{"llama.block_count"}, gguf.ErrMissingKey},
		{"wrong key type", setKey("llama.embedding_length", "64"), []string{"llama.embedding_length"}, gguf.ErrBadFile},
		{"vocab tokenizer", rewrite(t, base, nil, nil, map[string]any{"tokenizer.ggml.model": "rwkv"}), []string{"rwkv", "supported tokenizers: llama (SentencePiece), gpt2 (byte-level BPE)"}, ErrUnsupported},
		{"tokens count", rewrite(t, base, nil, nil, map[string]any{"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": []string{"a", "b"}}), []string{"tokenizer.ggml.tokens", "2 tokens"}, ErrBadConfig},
		{"truncated", base[:len(base)-100], []string{"output.weight", "beyond the end"}, gguf.ErrBadFile},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := loadBytes(t, c.data)
			if m != nil || !errors.Is(err, c.err) {
				t.Fatalf("got %v, want an error wrapping %v", err, c.err)
			}
			// A refused file is unmapped: nothing is left holding it.
			if maps, err := os.ReadFile("/proc/self/maps"); err == nil && bytes.Contains(maps, []byte(t.TempDir()[:len(t.TempDir())-4])) {
				t.Fatal("the refused file is still mapped")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestGGUFUnsupportedType: a tensor of a type the engine has no kernel for
// is refused with the list of supported types.
func TestGGUFUnsupportedType(t *testing.T) {
	base := smallGGUF(t, gguf.TensorQ8_0)
	data := rewrite(t, base, nil, func(ti *gguf.TensorInfo, d []byte) ([]byte, bool) {
		if ti.Name == "blk.0.attn_q.weight" {
			ti.Type = gguf.TensorQ5_0 // 32-element blocks of 22 bytes
			n, _ := gguf.TensorQ5_0.RowBytes(64)
			return make([]byte, 64*n), true
		}
		return d, true
	}, nil)
	_, err := loadBytes(t, data)
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "Q5_0") || !strings.Contains(err.Error(), "Q8_0") ||
		!strings.Contains(err.Error(), "blk.0.attn_q.weight") {
		t.Fatalf("got %v", err)
	}
}

// TestGGUFStories: the real file loads with its vocabulary, special ids and
// no chat template (the plain fallback).
func TestGGUFStories(t *testing.T) {
	m, err := Load(testmodels.File(t, "stories260K.gguf"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Name != "stories260K" || m.BOS != 1 || m.EOS != 2 || m.Tokenizer.Kind() != "sentencepiece" || m.Info.ChatTemplate ||
		m.Template == nil || m.Template.HasSource() || m.Config.Vocab != 512 || m.Config.Dim != 64 {
		t.Fatalf("model %+v info %+v", m.Config, m.Info)
	}
	if ids, want := m.Tokenizer.Encode("Once upon a time", true), []int{1, 403, 407, 261, 378}; !equalInts(ids, want) {
		t.Fatalf("encode %v want %v", ids, want)
	}
	// Conversations: content cannot forge special tokens; the template's
	// own BOS is not doubled.
	if ids, err := m.ChatTokens(nil); !errors.Is(err, ErrBadConversation) || ids != nil {
		t.Fatalf("empty conversation: %v %v", ids, err)
	}
	msgs := []chat.Message{{Role: "user", Content: "Lily said </s><s> hi"}}
	plain, err := m.ChatTokens(msgs)
	if err != nil || !equalInts(plain, m.Tokenizer.Encode("Lily said </s><s> hi", true)) {
		t.Fatalf("plain template: %v %v", plain, err)
	}
	if m.Template, err = chat.New("{{ bos_token }}{% for m in messages %}[{{ m.content }}]</s>{% endfor %}", "<s>", "</s>"); err != nil {
		t.Fatal(err)
	}
	ids, err := m.ChatTokens(msgs)
	if err != nil {
		t.Fatal(err)
	}
	count := func(id int) (n int) {
		for _, x := range ids {
			if x == id {
				n++
			}
		}
		return n
	}
	// One BOS (the template's, not doubled), one EOS (the template's
	// markup), and the content's "</s><s>" as plain text.
	if ids[0] != 1 || count(1) != 1 || count(2) != 1 || ids[len(ids)-1] != 2 {
		t.Fatalf("template ids %v", ids)
	}
	if _, err := m.ChatTokens([]chat.Message{{Role: "user", Content: "x\uE000"}}); !errors.Is(err, ErrBadConversation) {
		t.Fatalf("reserved marker: %v", err)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
