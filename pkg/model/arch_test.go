package model

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/semantic-kv/semantic/pkg/gguf"
)

// archGGUF is a random model of the given config written as float32 GGUF.
func archGGUF(t *testing.T, c Config, freqs []float32) (*Model, []byte) {
	t.Helper()
	m, err := Random("arch", c, 3)
	if err != nil {
		t.Fatal(err)
	}
	if freqs != nil {
		if err := m.SetRopeFreqs(freqs); err != nil {
			t.Fatal(err)
		}
	}
	w, err := WriteGGUF(m, GGUFOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return m, buf.Bytes()
}

var (
	archBase  = Config{Dim: 64, HiddenDim: 96, Layers: 2, Heads: 4, KVHeads: 2, Vocab: 40, SeqLen: 128, NormEps: 1e-6, RopeTheta: 1e6}
	qwen2Cfg  = func() Config { c := archBase; c.Arch = ArchQwen2; return c }()
	qwen3Cfg  = func() Config { c := archBase; c.Arch, c.HeadSize = ArchQwen3, 32; return c }()
	llama3Cfg = func() Config { c := archBase; c.Arch = ArchLlama; return c }()
)

// TestArchRoundTrip: each architecture's file, as the writer writes it,
// loads with the same config and the same vectors (biases, Q/K norms, rope
// factors), and its tag differs from the same weights read as llama.
func TestArchRoundTrip(t *testing.T) {
	freqs := Llama3RopeFreqs(16, 5e5, 8, 1, 4, 64)
	for _, tc := range []struct {
		c     Config
		freqs []float32
	}{{qwen2Cfg, nil}, {qwen3Cfg, nil}, {llama3Cfg, freqs}} {
		t.Run(tc.c.Arch.String(), func(t *testing.T) {
			src, data := archGGUF(t, tc.c, tc.freqs)
			m, err := loadBytes(t, data)
			if err != nil {
				t.Fatal(err)
			}
			if m.Config != tc.c || m.Info.Architecture != string(tc.c.Arch) {
				t.Fatalf("config %+v (%s), want %+v", m.Config, m.Info.Architecture, tc.c)
			}
			if !slices.Equal(m.RopeFreqs, tc.freqs) {
				t.Fatalf("rope factors %v, want %v", m.RopeFreqs, tc.freqs)
			}
			for i := range m.Layers {
				got, want := m.Layers[i].vectors(m.Config), src.Layers[i].vectors(src.Config)
				for j := range got {
					if !slices.Equal(*got[j].v, *want[j].v) {
						t.Fatalf("layer %d %s differs", i, got[j].name)
					}
				}
			}
			if err := m.Check(); err != nil {
				t.Fatal(err)
			}
		})
	}
	// The factors are the published Llama 3.1 shape: 1 for short
	// wavelengths, the full factor for long ones, monotonic between.
	if freqs[0] != 1 || freqs[len(freqs)-1] != 8 || !slices.IsSorted(freqs) {
		t.Fatalf("Llama3RopeFreqs = %v", freqs)
	}
}

// TestLlamaTagsUnchanged: adding architectures did not change the tags of
// llama models (a changed tag sends every agent's cache cold).
func TestLlamaTagsUnchanged(t *testing.T) {
	for name, want := range map[string]string{
		"tiny":  "builtin-tiny-a4085604f9f5cef3bb1db618",
		"small": "builtin-small-679f1d673088e5be18a9caed",
	} {
		m, err := Builtin(name)
		if err != nil {
			t.Fatal(err)
		}
		if m.Tag != want {
			t.Errorf("builtin:%s tag %s, want %s", name, m.Tag, want)
		}
	}
}

// TestArchRefusals: a file that lacks what its architecture requires, or
// carries what it does not use, is refused with an error naming the tensor
// or key.
func TestArchRefusals(t *testing.T) {
	_, q2 := archGGUF(t, qwen2Cfg, nil)
	_, q3 := archGGUF(t, qwen3Cfg, nil)
	_, l3 := archGGUF(t, llama3Cfg, Llama3RopeFreqs(16, 5e5, 8, 1, 4, 64))
	drop := func(data []byte, name string) []byte {
		return rewrite(t, data, nil, func(ti *gguf.TensorInfo, d []byte) ([]byte, bool) { return d, ti.Name != name }, nil)
	}
	setKey := func(data []byte, key string, val any) []byte {
		return rewrite(t, data, func(k string, v any) (any, bool) {
			if k == key {
				return val, true
			}
			return v, true
		}, nil, nil)
	}
	withTensor := func(data []byte, name string, vals []float32) []byte {
		f, err := gguf.Parse(data)
		if err != nil {
			t.Fatal(err)
		}
		w := gguf.NewWriter()
		for _, k := range f.Keys() {
			v, _ := f.Value(k)
			w.AddKV(k, v.Any())
		}
		for i := range f.Tensors {
			ti := f.Tensors[i]
			if ti.Name != name {
				w.AddTensor(ti.Name, ti.Type, ti.Dims, f.TensorData(&ti))
			}
		}
		b := make([]byte, 4*len(vals))
		for i, v := range vals {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
		w.AddTensor(name, gguf.TensorF32, []int64{int64(len(vals))}, b)
		var buf bytes.Buffer
		w.WriteTo(&buf)
		return buf.Bytes()
	}
	badFreqs := []float32{1, 1, 2, -1, 4, 8, 8, 8}
	cases := []struct {
		name string
		data []byte
		want []string
		err  error
	}{
		{"qwen2 missing bias", drop(q2, "blk.1.attn_k.bias"), []string{"blk.1.attn_k.bias", "missing"}, ErrBadConfig},
		{"qwen3 missing k norm", drop(q3, "blk.0.attn_k_norm.weight"), []string{"blk.0.attn_k_norm.weight", "missing"}, ErrBadConfig},
		{"qwen3 value length", setKey(q3, "qwen3.attention.value_length", uint32(16)), []string{"value_length"}, ErrUnsupported},
		{"qwen2 head size", rewrite(t, q2, nil, nil, map[string]any{"qwen2.attention.key_length": uint32(32)}), []string{"key_length", "head size"}, ErrUnsupported},
		{"qwen2 rope factors", withTensor(q2, "rope_freqs.weight", badFreqs[4:]), []string{"rope_freqs.weight", "not part of the qwen2"}, ErrUnsupported},
		{"rope factors length", withTensor(l3, "rope_freqs.weight", badFreqs[4:]), []string{"rope_freqs.weight", "want head size / 2"}, ErrBadConfig},
		{"rope factor negative", withTensor(l3, "rope_freqs.weight", badFreqs), []string{"rope_freqs.weight[3]"}, ErrBadConfig},
		{"rope scaling yarn", rewrite(t, q2, nil, nil, map[string]any{"qwen2.rope.scaling.type": "yarn", "qwen2.rope.scaling.factor": float32(4)}), []string{"yarn", "supported rope scaling"}, ErrUnsupported},
		{"rope linear factor", rewrite(t, l3, nil, nil, map[string]any{"llama.rope.scaling.type": "linear", "llama.rope.scaling.factor": float32(0.5)}), []string{"rope.scaling.factor"}, ErrBadConfig},
		{"llama partial biases", withTensor(l3, "blk.0.attn_q.bias", make([]float32, 64)), []string{"some of the q/k/v biases"}, ErrBadConfig},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := loadBytes(t, c.data)
			if m != nil || !errors.Is(err, c.err) {
				t.Fatalf("got %v, want an error wrapping %v", err, c.err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	// Linear scaling with a valid factor loads.
	m, err := loadBytes(t, rewrite(t, l3, nil, nil, map[string]any{"llama.rope.scaling.type": "linear", "llama.rope.scaling.factor": float32(2)}))
	if err != nil || m.Config.RopeScale != 2 {
		t.Fatalf("linear scaling: %v", err)
	}
}

// TestArchTagCoversVectors: the tag hashes every architecture's own
// weights, so two models that differ only in a bias, a Q/K norm or a rope
// factor never share cached KV.
func TestArchTagCoversVectors(t *testing.T) {
	for _, c := range []Config{qwen2Cfg, qwen3Cfg, llama3Cfg} {
		var freqs []float32
		if c.Arch == ArchLlama {
			freqs = Llama3RopeFreqs(16, 5e5, 8, 1, 4, 64)
		}
		a, _ := archGGUF(t, c, freqs)
		b, _ := archGGUF(t, c, freqs)
		switch c.Arch {
		case ArchQwen2:
			b.Layers[1].Bk[3] += 0.25
		case ArchQwen3:
			b.Layers[0].KNorm[2] += 0.25
		case ArchLlama:
			b.RopeFreqs[2] += 0.25
		}
		b.finish()
		if a.Tag == b.Tag {
			t.Errorf("%s: changing one of the architecture's own weights keeps the tag %s", c.Arch, a.Tag)
		}
	}
}
