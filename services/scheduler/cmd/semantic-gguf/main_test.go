package main

import (
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
	if err := quantize(testmodels.File(t, "stories260K.gguf"), out, gguf.TensorQ8_0); err != nil {
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
	c := shapes["15M"]
	c.Layers, c.Vocab = 1, 4096
	m, err := model.Random("r", c, 1)
	if err != nil {
		t.Fatal(err)
	}
	w, err := model.WriteGGUF(m, model.GGUFOptions{Type: gguf.TensorQ4_0, Untied: true, Metadata: syntheticVocab(c.Vocab)})
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
