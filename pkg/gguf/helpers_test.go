package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

// raw builds GGUF bytes field by field, so tests can write files the Writer
// refuses to.
type raw struct{ b []byte }

func (r *raw) u8(v uint8) *raw   { r.b = append(r.b, v); return r }
func (r *raw) u32(v uint32) *raw { r.b = binary.LittleEndian.AppendUint32(r.b, v); return r }
func (r *raw) u64(v uint64) *raw { r.b = binary.LittleEndian.AppendUint64(r.b, v); return r }
func (r *raw) str(s string) *raw { return r.u64(uint64(len(s))).bytes([]byte(s)) }
func (r *raw) bytes(b []byte) *raw {
	r.b = append(r.b, b...)
	return r
}

// key starts a metadata pair: the key and its value type.
func (r *raw) key(k string, t ValueType) *raw { return r.str(k).u32(uint32(t)) }

// header starts a file.
func header(version uint32, nTensors, nKV uint64) *raw {
	r := &raw{b: []byte("GGUF")}
	return r.u32(version).u64(nTensors).u64(nKV)
}

// rinfo is a tensor info for rawFile.
type rinfo struct {
	name string
	dims []uint64
	typ  TensorType
	off  uint64
}

func (r *raw) info(t rinfo) *raw {
	r.str(t.name).u32(uint32(len(t.dims)))
	for _, d := range t.dims {
		r.u64(d)
	}
	return r.u32(uint32(t.typ)).u64(t.off)
}

// rawFile is a version 3 file: nKV pairs written by kvs, the tensor infos,
// padding to align, then dataLen bytes of data.
func rawFile(nKV uint64, kvs func(*raw), infos []rinfo, align, dataLen int) []byte {
	r := header(3, uint64(len(infos)), nKV)
	if kvs != nil {
		kvs(r)
	}
	for _, t := range infos {
		r.info(t)
	}
	for len(r.b)%align != 0 {
		r.u8(0)
	}
	return append(r.b, make([]byte, dataLen)...)
}

// randBytes is n deterministic pseudo-random bytes.
func randBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// encode writes w to memory.
func encode(t testing.TB, w *Writer) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := w.WriteTo(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("WriteTo returned %d, wrote %d bytes", n, buf.Len())
	}
	return buf.Bytes()
}

// wantBad checks that err wraps ErrBadFile and mentions every one of want.
func wantBad(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one mentioning %q", want)
	}
	if !errors.Is(err, ErrBadFile) {
		t.Fatalf("error %q does not wrap ErrBadFile", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}
