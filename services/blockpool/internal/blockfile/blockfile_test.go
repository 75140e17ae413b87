package blockfile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/semantic-kv/semantic/pkg/kvspec"
)

var spec = kvspec.Spec{Layers: 1, KVHeads: 2, HeadDim: 4, TokensPerBlock: 8, DType: kvspec.DTypeFloat16, ModelTag: "m"}

func sample() (*Header, []byte) {
	p := make([]byte, spec.BlockBytes())
	for i := range p {
		p[i] = byte(i * 7)
	}
	return &Header{Checksum: kvspec.Checksum(p), TokenCount: 5, PayloadSize: uint64(len(p)), Hash: kvspec.Hash{1, 2}, Parent: kvspec.Hash{3}, Spec: spec}, p
}

func TestRoundTripAndCorruption(t *testing.T) {
	dir := t.TempDir()
	h, p := sample()
	if err := Write(dir, "b.blk", h, p, false); err != nil {
		t.Fatal(err)
	}
	got, payload, err := Read(dir, "b.blk", h.Hash, h.Checksum, spec)
	if err != nil || got != *h || !bytes.Equal(payload, p) {
		t.Fatal(got, err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "b.blk"))
	for _, off := range []int{0, 5, 30, 97, len(raw) - len(p) - 1, len(raw) - 1} {
		bad := bytes.Clone(raw)
		bad[off] ^= 0x10
		os.WriteFile(filepath.Join(dir, "x.blk"), bad, 0o644)
		if _, _, err := Read(dir, "x.blk", h.Hash, h.Checksum, spec); !errors.Is(err, ErrCorrupt) {
			t.Errorf("flip at %d: %v", off, err)
		}
	}
	os.WriteFile(filepath.Join(dir, "short.blk"), raw[:len(raw)-1], 0o644)
	if _, _, err := Read(dir, "short.blk", h.Hash, h.Checksum, spec); !errors.Is(err, ErrCorrupt) {
		t.Error("truncated:", err)
	}
	if _, _, err := Read(dir, "b.blk", kvspec.Hash{9}, h.Checksum, spec); !errors.Is(err, ErrCorrupt) {
		t.Error("other hash:", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 3 {
		t.Error("temporary files left:", len(ents))
	}
}

func FuzzDecodeHeader(f *testing.F) {
	h, _ := sample()
	good := h.Encode(nil)
	f.Add(good)
	f.Add(good[:50])
	f.Add([]byte("SKVB"))
	f.Add([]byte{})
	long := *h
	long.Spec.ModelTag = string(bytes.Repeat([]byte("t"), 128))
	f.Add(long.Encode(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, n, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		if n > len(b) || n > MaxHeaderLen {
			t.Fatalf("length %d of %d", n, len(b))
		}
		// Whatever decodes must re-encode to the same bytes.
		if re := got.Encode(nil); !bytes.Equal(re, b[:n]) {
			t.Fatalf("re-encode differs")
		}
	})
}
