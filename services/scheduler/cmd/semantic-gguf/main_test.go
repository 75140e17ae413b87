package main

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/semantic-kv/semantic/pkg/gguf"
	"github.com/semantic-kv/semantic/pkg/model"
	"github.com/semantic-kv/semantic/pkg/testmodels"
)

// TestQuantizeKeepsVocabulary: a quantized stories260K keeps its tokenizer
// (the tokenizer.* keys are copied) and gets the requested type.
func TestQuantizeKeepsVocabulary(t *testing.T) {
	out := filepath.Join(t.TempDir(), "q8.gguf")
	if err := quantize(testmodels.File(t, "stories260K.gguf"), out, model.GGUFOptions{Type: gguf.TensorQ8_0}); err != nil {
		t.Fatal(err)
	}
	m, err := model.Load(out, "")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Tokenizer == nil || m.Info.WeightTypes[0] != "Q8_0" {
		t.Fatalf("info %+v", m.Info)
	}
	if ids := m.Tokenizer.Encode("Once upon a time", true); len(ids) != 5 || ids[1] != 403 {
		t.Fatalf("ids %v", ids)
	}
}

// TestSyntheticVocabularyLoads: the random benchmark files' vocabulary is a
// valid SentencePiece vocabulary of the requested size.
func TestSyntheticVocabularyLoads(t *testing.T) {
	c := model.RandomShapes["15M"]
	c.Layers, c.Vocab = 1, 4096
	m, err := model.Random("r", c, 1)
	if err != nil {
		t.Fatal(err)
	}
	w, err := model.WriteGGUF(m, model.GGUFOptions{Type: gguf.TensorQ4_0, Untied: true, Metadata: model.SyntheticVocab(c.Vocab)})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "r.gguf")
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	got, err := model.Load(path, "")
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if got.Tokenizer.VocabSize() != 4096 || got.SharedClassifier() {
		t.Fatalf("vocab %d", got.Tokenizer.VocabSize())
	}
	text := "the cat sat on a mat"
	if back := got.Tokenizer.Decode(got.Tokenizer.Encode(text, true)); back != text {
		t.Fatalf("round trip %q", back)
	}
}

// TestQuantizeQ4_K_M: --type Q4_K_M is llama.cpp's mix; stories260K's rows
// (64 and 172 wide) are not whole 256-element super-blocks, so every matrix
// falls back (Q8_0 for the 64-wide rows, F16 for ffn_down's 172), and the
// file still says Q4_K_M (general.file_type 15) and loads.
func TestQuantizeQ4_K_M(t *testing.T) {
	opts, err := parseType("q4_k_m")
	if err != nil || opts.Mix != model.MixQ4_K_M {
		t.Fatalf("parseType(q4_k_m) = %+v, %v", opts, err)
	}
	for _, s := range []string{"Q4_K", "q6_k", "Q5_K"} {
		if o, err := parseType(s); err != nil || !model.IsKQuant(o.Type) || o.Mix != "" {
			t.Fatalf("parseType(%s) = %+v, %v", s, o, err)
		}
	}
	if _, err := parseType("Q3_K"); err == nil {
		t.Fatal("Q3_K accepted")
	}
	out := filepath.Join(t.TempDir(), "q4km.gguf")
	if err := quantize(testmodels.File(t, "stories260K.gguf"), out, opts); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if ft, _ := f.Uint("general.file_type"); ft != 15 {
		t.Fatalf("general.file_type %d", ft)
	}
	for name, want := range map[string]gguf.TensorType{"blk.0.attn_v.weight": gguf.TensorQ8_0, "blk.0.ffn_down.weight": gguf.TensorF16, "token_embd.weight": gguf.TensorQ8_0} {
		if ti, ok := f.Tensor(name); !ok || ti.Type != want {
			t.Fatalf("%s: %v, want %v", name, ti.Type, want)
		}
	}
	m, err := model.Load(out, "")
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
}

// TestRandomQ4_K_M: the random benchmark files of a K-compatible shape are
// written with the mix (here 110M's dimensions, 2 layers, a small
// vocabulary, to keep the test quick) and load with Q4_K and Q6_K weights.
func TestRandomQ4_K_M(t *testing.T) {
	c := model.RandomShapes["110M"]
	c.Layers, c.Vocab = 2, 1024
	m, err := model.Random("r", c, 1)
	if err != nil {
		t.Fatal(err)
	}
	opts, _ := parseType("Q4_K_M")
	opts.Untied, opts.Metadata = true, model.SyntheticVocab(c.Vocab)
	w, err := model.WriteGGUF(m, opts)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "r.gguf")
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	got, err := model.Load(path, "")
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if fmt.Sprint(got.Info.WeightTypes) != "[Q4_K Q6_K]" {
		t.Fatalf("weight types %v", got.Info.WeightTypes)
	}
}
