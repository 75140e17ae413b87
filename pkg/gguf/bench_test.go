package gguf

import (
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
)

// writeModel writes a file of nTensors F32 matrices of rows x cols (random
// bytes) and, when vocab > 0, a vocabulary of that many tokens with scores
// and token types, as a real model has.
func writeModel(t testing.TB, path string, nTensors, rows, cols, vocab int) {
	t.Helper()
	w := NewWriter()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.AddKV("general.architecture", "llama"))
	must(w.AddKV("llama.embedding_length", uint32(cols)))
	if vocab > 0 {
		tokens := make([]string, vocab)
		scores := make([]float32, vocab)
		types := make([]int32, vocab)
		for i := range tokens {
			tokens[i] = fmt.Sprintf("▁tok%d", i)
			scores[i] = -float32(i)
			types[i] = 1
		}
		must(w.AddKV("tokenizer.ggml.tokens", tokens))
		must(w.AddKV("tokenizer.ggml.scores", scores))
		must(w.AddKV("tokenizer.ggml.token_type", types))
	}
	data := randBytes(1, rows*cols*4) // shared: only the bytes' count matters here
	for i := range nTensors {
		must(w.AddTensor(fmt.Sprintf("blk.%d.weight", i), TensorF32, []int64{int64(cols), int64(rows)}, data))
	}
	must(w.WriteFile(path))
}

// BenchmarkOpen: opening and validating a 100 MB model costs the parse of
// its header, not a read of its weights: time and allocations are the same
// whatever the size of the tensors (B/op is the metadata: the vocabulary
// when there is one).
func BenchmarkOpen(b *testing.B) {
	for _, vocab := range []int{0, 150_000} {
		path := filepath.Join(b.TempDir(), "m.gguf")
		writeModel(b, path, 25, 1024, 1024, vocab) // 25 x 4 MiB = 100 MiB of weights
		b.Run(fmt.Sprintf("100MB/vocab=%d", vocab), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				f, err := Open(path)
				if err != nil {
					b.Fatal(err)
				}
				if len(f.Tensors) != 25 || len(f.TensorData(&f.Tensors[24])) != 4<<20 {
					b.Fatal("wrong tensors")
				}
				f.Close()
			}
		})
	}
}

// TestOpenDoesNotCopy: Open maps the weights; it does not read them into
// the Go heap.
func TestOpenDoesNotCopy(t *testing.T) {
	if !mapSupported {
		t.Skip("no mmap on this platform: Open reads the file")
	}
	path := filepath.Join(t.TempDir(), "m.gguf")
	writeModel(t, path, 8, 1024, 1024, 0) // 32 MiB
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := 0
	for i := range f.Tensors {
		d := f.TensorData(&f.Tensors[i])
		sum += int(d[0]) + int(d[len(d)-1]) // touch the mapping
	}
	runtime.ReadMemStats(&after)
	f.Close()
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Errorf("Open of a 32 MiB file allocated %d bytes", alloc)
	}
	_ = sum
}
