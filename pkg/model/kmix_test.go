package model

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/semantic-kv/semantic/pkg/gguf"
)

// writeOpen writes m with opts and opens the file.
func writeOpen(t *testing.T, m *Model, opts GGUFOptions) *gguf.File {
	t.Helper()
	w, err := WriteGGUF(m, opts)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func tensorType(t *testing.T, f *gguf.File, name string) gguf.TensorType {
	t.Helper()
	ti, ok := f.Tensor(name)
	if !ok {
		t.Fatalf("no tensor %s", name)
	}
	return ti.Type
}

// TestUseMoreBits: llama.cpp's use_more_bits for 8, 12 and 32 layers,
// worked out by hand: layers < n/8, layers >= 7n/8, and (i - n/8) % 3 == 2.
func TestUseMoreBits(t *testing.T) {
	for n, want := range map[int][]int{
		8:  {0, 3, 6, 7},
		12: {0, 3, 6, 9, 10, 11},
		32: {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31},
	} {
		var got []int
		for i := 0; i < n; i++ {
			if useMoreBits(i, n) {
				got = append(got, i)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("use_more_bits over %d layers: %v, want %v", n, got, want)
		}
	}
}

// TestQ4_K_MMix: WriteGGUF with MixQ4_K_M chooses llama.cpp's types: Q6_K
// for output.weight and for attn_v / ffn_down in the use_more_bits layers,
// Q4_K elsewhere (token_embd included when the output is untied, Q6_K when
// token_embd is the output), general.file_type 15; rows that are not whole
// super-blocks fall back to Q8_0, or F16.
func TestQ4_K_MMix(t *testing.T) {
	c := Config{Dim: 256, HiddenDim: 512, Layers: 8, Heads: 4, KVHeads: 2, Vocab: 260, SeqLen: 64, NormEps: 1e-5, RopeTheta: 10000}
	m, err := Random("mix", c, 1)
	if err != nil {
		t.Fatal(err)
	}
	f := writeOpen(t, m, GGUFOptions{Mix: MixQ4_K_M, Untied: true})
	if ft, err := f.Uint("general.file_type"); err != nil || ft != 15 {
		t.Fatalf("general.file_type = %d, %v", ft, err)
	}
	more := map[int]bool{0: true, 3: true, 6: true, 7: true}
	for i := 0; i < c.Layers; i++ {
		for _, name := range []string{"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_down", "ffn_up"} {
			want := gguf.TensorQ4_K
			if (name == "attn_v" || name == "ffn_down") && more[i] {
				want = gguf.TensorQ6_K
			}
			if got := tensorType(t, f, fmt.Sprintf("blk.%d.%s.weight", i, name)); got != want {
				t.Errorf("blk.%d.%s: %v, want %v", i, name, got, want)
			}
		}
		if got := tensorType(t, f, fmt.Sprintf("blk.%d.attn_norm.weight", i)); got != gguf.TensorF32 {
			t.Errorf("norm %v", got)
		}
	}
	if got := tensorType(t, f, "output.weight"); got != gguf.TensorQ6_K {
		t.Errorf("output.weight %v", got)
	}
	if got := tensorType(t, f, "token_embd.weight"); got != gguf.TensorQ4_K {
		t.Errorf("untied token_embd.weight %v", got)
	}
	// Tied: token_embd is the output, so Q6_K.
	c.Layers = 1
	m, err = Random("tied", c, 2)
	if err != nil {
		t.Fatal(err)
	}
	m.Classifier = m.Embedding
	f = writeOpen(t, m, GGUFOptions{Mix: MixQ4_K_M})
	if _, ok := f.Tensor("output.weight"); ok {
		t.Fatal("tied model wrote output.weight")
	}
	if got := tensorType(t, f, "token_embd.weight"); got != gguf.TensorQ6_K {
		t.Errorf("tied token_embd.weight %v", got)
	}
	// Fallbacks: ffn_down's 288 columns are whole 32-blocks (Q8_0), 264 are
	// not (F16); the other matrices have 256 columns and stay K.
	for hidden, want := range map[int]gguf.TensorType{288: gguf.TensorQ8_0, 264: gguf.TensorF16} {
		c.HiddenDim = hidden
		m, err := Random("fallback", c, 3)
		if err != nil {
			t.Fatal(err)
		}
		for _, opts := range []GGUFOptions{{Mix: MixQ4_K_M}, {Type: gguf.TensorQ4_K}, {Type: gguf.TensorQ6_K}} {
			f := writeOpen(t, m, opts)
			if got := tensorType(t, f, "blk.0.ffn_down.weight"); got != want {
				t.Errorf("%+v hidden %d: ffn_down %v, want %v", opts, hidden, got, want)
			}
			if got := tensorType(t, f, "blk.0.ffn_up.weight"); !IsKQuant(got) {
				t.Errorf("%+v: ffn_up %v", opts, got)
			}
		}
	}
	// Plain K types: llama.cpp's file types (Q4_K as --pure Q4_K_S writes it).
	for typ, want := range map[gguf.TensorType]uint64{gguf.TensorQ4_K: 14, gguf.TensorQ5_K: 16, gguf.TensorQ6_K: 18, gguf.TensorQ8_0: 7} {
		f := writeOpen(t, m, GGUFOptions{Type: typ})
		if ft, _ := f.Uint("general.file_type"); ft != want {
			t.Errorf("%v: general.file_type %d, want %d", typ, ft, want)
		}
	}
	if _, err := WriteGGUF(m, GGUFOptions{Mix: "Q3_K_M"}); err == nil {
		t.Error("unknown mix accepted")
	}
	if mix, err := ParseMix("q4_k_m"); err != nil || mix != MixQ4_K_M {
		t.Errorf("ParseMix = %q, %v", mix, err)
	}
	if _, err := ParseMix("Q5_K_M"); err == nil {
		t.Error("ParseMix accepted Q5_K_M")
	}
}

// TestKQuantTensors: Quantize refuses rows that are not whole super-blocks,
// and a K tensor's rows dequantize to what the quant package decodes; a
// file with a non-finite K scale is refused at load.
func TestKQuantTensors(t *testing.T) {
	r := &SplitMix64{State: 5}
	src := make([]float32, 3*512)
	for i := range src {
		src[i] = r.Uniform(1)
	}
	for _, typ := range []gguf.TensorType{gguf.TensorQ4_K, gguf.TensorQ5_K, gguf.TensorQ6_K} {
		if !IsSupported(typ) || !IsQuantized(typ) || !IsKQuant(typ) {
			t.Fatalf("%v: supported %v quantized %v", typ, IsSupported(typ), IsQuantized(typ))
		}
		if _, err := Quantize(F32(2, 288, src[:576]), typ); err == nil {
			t.Errorf("%v: 288 columns accepted", typ)
		}
		q, err := Quantize(F32(3, 512, src), typ)
		if err != nil {
			t.Fatal(err)
		}
		if err := q.Check("w", 3, 512); err != nil {
			t.Fatal(err)
		}
		deq := q.Dequantize()
		var worst float64
		for i, v := range deq {
			worst = max(worst, float64(kAbs32(v-src[i])))
		}
		if worst > 0.25 {
			t.Errorf("%v: worst reconstruction error %g of uniform(-1, 1) weights", typ, worst)
		}
		bad := q
		bad.Data = append([]byte(nil), q.Data...)
		off := 0
		if typ == gguf.TensorQ6_K {
			off = 208
		}
		n, _ := typ.RowBytes(256)
		bad.Data[int(n)*3+off+1] = 0x7c // block 3's d becomes Inf
		if at := firstNonFinite(&bad); at != 3 {
			t.Errorf("%v: firstNonFinite = %d, want 3", typ, at)
		}
		if at := firstNonFinite(&q); at != -1 {
			t.Errorf("%v: firstNonFinite of a good tensor = %d", typ, at)
		}
	}
	if IsKQuant(gguf.TensorQ8_0) || IsKQuant(gguf.TensorQ3_K) || IsSupported(gguf.TensorQ3_K) {
		t.Error("Q8_0 or Q3_K misclassified")
	}
}

func kAbs32(v float32) float32 {
	if v < 0 {
		return -v
	}
	return v
}
