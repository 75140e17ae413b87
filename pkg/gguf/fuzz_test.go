package gguf

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParse: no input makes Parse panic or fail with anything but
// ErrBadFile, and whatever parses can be used in full and written back by
// the Writer to a file that parses to the same metadata.
func FuzzParse(f *testing.F) {
	for _, v := range []struct {
		version uint32
		align   int64
	}{{3, 32}, {2, 64}, {3, 1}} {
		w, _ := roundTripWriter(f, v.version, v.align)
		f.Add(encode(f, w))
	}
	small := NewWriter()
	small.AddKV("general.architecture", "llama")
	small.AddKV("tokenizer.ggml.tokens", []string{"<unk>", "<s>", "</s>", "a"})
	small.AddKV("n", [][]uint32{{1}, {2, 3}})
	small.AddTensor("w", TensorQ8_0, []int64{32}, make([]byte, 34))
	f.Add(encode(f, small))
	f.Add(rawFile(0, nil, []rinfo{{"u", []uint64{256}, 99, 0}, {"w", []uint64{4}, TensorF32, 32}}, 32, 48))
	f.Add(header(3, 0, 0).b)

	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrBadFile) {
				t.Fatalf("error %v does not wrap ErrBadFile", err)
			}
			return
		}
		w := NewWriter()
		w.SetVersion(file.Version)
		for _, k := range file.Keys() {
			v, _ := file.Value(k)
			_ = v.String()
			_ = v.Array()
			file.String(k)
			file.Uint(k)
			file.Int(k)
			file.Float(k)
			file.Bool(k)
			file.Strings(k)
			file.Float32s(k)
			file.Ints(k)
			if err := w.AddKV(k, v); err != nil {
				t.Fatalf("parsed key %q cannot be written: %v", k, err)
			}
		}
		w.SetAlignment(file.Alignment)
		for i := range file.Tensors {
			ti := &file.Tensors[i]
			d := file.TensorData(ti)
			if ti.Size < 0 {
				if d != nil {
					t.Fatalf("tensor %s of unknown type has data", ti.Name)
				}
				continue
			}
			if int64(len(d)) != ti.Size {
				t.Fatalf("tensor %s: %d bytes of data, size %d", ti.Name, len(d), ti.Size)
			}
			if err := w.AddTensor(ti.Name, ti.Type, ti.Dims, d); err != nil {
				t.Fatalf("parsed tensor %s cannot be written: %v", ti.Name, err)
			}
		}
		var buf bytes.Buffer
		if _, err := w.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		again, err := Parse(buf.Bytes())
		if err != nil {
			t.Fatalf("rewritten file does not parse: %v", err)
		}
		for _, k := range file.Keys() {
			v1, _ := file.Value(k)
			v2, ok := again.Value(k)
			b1, _, _ := appendParsed(nil, v1, 0)
			b2, _, _ := appendParsed(nil, v2, 0)
			if !ok || !bytes.Equal(b1, b2) {
				t.Fatalf("key %q changed when rewritten: %v, then %v", k, v1, v2)
			}
		}
		file.Close()
		file.Close()
	})
}
