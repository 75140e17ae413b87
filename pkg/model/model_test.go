package model

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/tokenizer"
)

func weightsHash(m *Model) [32]byte {
	h := sha256.New()
	for _, t := range m.tensors() {
		h.Write(t)
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func TestBuiltinDeterministic(t *testing.T) {
	for _, name := range BuiltinNames() {
		a, err := Load("builtin:"+name, "")
		if err != nil {
			t.Fatal(err)
		}
		b, err := Load("builtin:"+name, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if weightsHash(a) != weightsHash(b) || a.Tag != b.Tag {
			t.Fatalf("%s: two loads differ", name)
		}
		if !strings.HasPrefix(a.Tag, "builtin-"+name+"-") || len(a.Tag) > kvspec.MaxModelTagLen {
			t.Fatalf("tag %q", a.Tag)
		}
		if a.Tokenizer == nil || a.Tokenizer.VocabSize() != a.Config.Vocab || a.BOS != tokenizer.ByteBOS || a.EOS != tokenizer.ByteEOS {
			t.Fatalf("%s: tokenizer/special ids", name)
		}
		for _, tt := range a.tensors() {
			for _, v := range float32View(tt) {
				if math.IsNaN(float64(v)) || math.Abs(float64(v)) > 1 {
					t.Fatalf("%s: weight %v", name, v)
				}
			}
		}
		spec := a.CacheSpec(16, kvspec.DTypeFloat16)
		if err := spec.Validate(); err != nil || spec.ModelTag != a.Tag || spec.HeadDim != a.Config.HeadDim() {
			t.Fatalf("spec %v: %v", spec, err)
		}
		t.Logf("%s: %d params, tag %s", name, a.NumParams(), a.Tag)
	}
	// Golden values pin the generator: if these change, every cached block
	// in every pool is silently orphaned (the tag changes), so it must be a
	// deliberate decision.
	r := SplitMix64{State: 0}
	if got := r.Next(); got != 0xe220a8397b1dcdaf {
		t.Fatalf("splitmix64 first output %#x", got)
	}
	small, _ := Load("builtin:small", "")
	if n := small.NumParams(); n < 20e6 || n > 40e6 {
		t.Fatalf("small has %d params", n)
	}
}

func TestUnknownModel(t *testing.T) {
	for _, ref := range []string{"", "builtin:huge", "gguf:", "llama2c:", "x.bin"} {
		if _, err := Load(ref, ""); !errors.Is(err, ErrUnknownModel) {
			t.Errorf("%q: %v", ref, err)
		}
	}
	for _, ref := range []string{"llama2c:/nonexistent/x.bin", "gguf:/nonexistent/x.gguf", "/nonexistent/x.gguf"} {
		if _, err := Load(ref, ""); err == nil || !strings.Contains(err.Error(), "/nonexistent/x.") {
			t.Errorf("missing file %s: %v", ref, err)
		}
	}
}

// checkpoint writes tiny as a llama2.c checkpoint.
func checkpoint(t testing.TB) (*Model, []byte) {
	m, err := Builtin("tiny")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteLlama2c(&buf, m); err != nil {
		t.Fatal(err)
	}
	return m, buf.Bytes()
}

func TestLlama2cRoundTrip(t *testing.T) {
	m, data := checkpoint(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "tiny.bin")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	// A small tokenizer: specials, the byte pieces, a few merges.
	pieces := []string{"<unk>", "<s>", "</s>"}
	for b := 0; b < 256; b++ {
		pieces = append(pieces, "<0x"+strings.ToUpper(string("0123456789abcdef"[b>>4])+string("0123456789abcdef"[b&15]))+">")
	}
	scores := make([]float32, len(pieces))
	pieces = pieces[:m.Config.Vocab-0] // vocab 259 = 3 + 256
	tokPath := filepath.Join(dir, "tok.bin")
	f, _ := os.Create(tokPath)
	if err := tokenizer.WriteLlama2c(f, pieces, scores); err != nil {
		t.Fatal(err)
	}
	f.Close()
	got, err := Load("llama2c:"+path+",tokenizer="+tokPath, "")
	if err != nil {
		t.Fatal(err)
	}
	if weightsHash(got) != weightsHash(m) || got.Config != m.Config || got.SharedClassifier() {
		t.Fatal("weights differ after round trip")
	}
	if got.Name != "tiny" || !strings.HasPrefix(got.Tag, "tiny-") || got.Tag[len("tiny-"):] != m.Tag[len("builtin-tiny-"):] {
		t.Fatalf("name %q tag %q vs %q", got.Name, got.Tag, m.Tag)
	}
	if got.Tokenizer == nil || got.Tokenizer.Decode(got.Tokenizer.Encode("héllo", true)) != "héllo" {
		t.Fatal("tokenizer")
	}
	if got.NumParams() != m.NumParams() {
		t.Fatal("params")
	}
	noTok, err := Load("llama2c:"+path, "")
	if err != nil || noTok.Tokenizer != nil || noTok.BOS != 1 || noTok.EOS != 2 {
		t.Fatalf("without tokenizer: %v", err)
	}
}

func TestLlama2cErrors(t *testing.T) {
	_, data := checkpoint(t)
	hdr := func(vals ...int32) []byte {
		b := append([]byte(nil), data...)
		for i, v := range vals {
			binary.LittleEndian.PutUint32(b[4*i:], uint32(v))
		}
		return b
	}
	nan := append([]byte(nil), data...)
	binary.LittleEndian.PutUint32(nan[28+4*100:], math.Float32bits(float32(math.NaN())))
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "offset 0"},
		{"short header", data[:10], "offset 10"},
		{"truncated", data[:len(data)-100], "truncated"},
		{"trailing", append(append([]byte(nil), data...), 1, 2, 3, 4), "trailing"},
		{"zero dim", hdr(0), "dim"},
		{"negative layers", hdr(64, 176, -3), "n_layers"},
		{"heads not dividing", hdr(64, 176, 4, 5), "divisible"},
		{"kv heads not dividing", hdr(64, 176, 4, 4, 3), "divisible"},
		{"huge", hdr(1<<30, 1<<30, 1<<30, 1, 1, 1<<30, 1<<30), "dim"},
		{"nan", nan, "offset 428"},
	}
	for _, c := range cases {
		m, err := ParseLlama2c(c.data, "x")
		if m != nil || !errors.Is(err, ErrBadCheckpoint) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v (want %q)", c.name, err, c.want)
		}
	}
	path := filepath.Join(t.TempDir(), "bad.bin")
	os.WriteFile(path, data[:500], 0o644)
	if _, err := Load("llama2c:"+path, ""); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "offset") {
		t.Errorf("file error must name the file and offset: %v", err)
	}
}

func FuzzLoadLlama2c(f *testing.F) {
	_, data := checkpoint(f)
	f.Add(data)
	f.Add(data[:100])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseLlama2c(b, "fuzz")
		if err == nil {
			if m.Config.Validate() != nil || m.Embedding.Len() != m.Config.Vocab*m.Config.Dim {
				t.Fatal("accepted an invalid model")
			}
		}
	})
}
