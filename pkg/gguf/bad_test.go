package gguf

import (
	"errors"
	"runtime"
	"strings"
	"testing"
)

// TestBadFiles: every malformed file is refused with an error that wraps
// ErrBadFile and names what is wrong.
func TestBadFiles(t *testing.T) {
	f32 := func(name string, n, off uint64) rinfo { return rinfo{name, []uint64{n}, TensorF32, off} }
	oneKV := func(kv func(*raw)) []byte { return rawFile(1, kv, nil, 1, 0) }
	// pad is a long string value: with it a file can end in a truncated
	// item after passing the check of its counts against its length.
	pad := strings.Repeat("p", 64)
	truncInfo := rawFile(1, func(r *raw) { r.key("pad", TypeString).str(pad) }, []rinfo{f32("w", 4, 0)}, 1, 0)
	cases := []struct {
		name string
		data []byte
		want []string
	}{
		{"empty", nil, []string{"truncated header", "0 bytes"}},
		{"short header", []byte("GGUF\x03\x00\x00\x00"), []string{"truncated header"}},
		{"magic", append([]byte("GGML"), header(3, 0, 0).b[4:]...), []string{`magic "GGML"`, "not a GGUF file"}},
		{"short magic", []byte("GGM"), []string{"truncated header"}},
		{"version 1", header(1, 0, 0).b, []string{"version 1 is not supported"}},
		{"version 0", header(0, 0, 0).b, []string{"unsupported version 0"}},
		{"version 4", header(4, 0, 0).b, []string{"unsupported version 4"}},
		{"big-endian", header(3<<24, 0, 0).b, []string{"big-endian"}},
		{"kv count over cap", header(3, 0, 1<<40).b, []string{"metadata_kv_count 1099511627776", "limit"}},
		{"kv count beyond file", header(3, 0, 100).b, []string{"100 metadata pairs", "need at least"}},
		{"tensor count over cap", header(3, MaxTensors+1, 0).b, []string{"tensor_count 1048577", "limit"}},
		{"tensor count beyond file", header(3, 1000, 0).b, []string{"1000 tensors", "need at least"}},
		{"truncated key", header(3, 0, 2).key("a", TypeString).str(pad).u32(0).b, []string{"truncated key 1 length at offset 109"}},
		{"key too long", header(3, 0, 1).u64(1 << 40).bytes(make([]byte, 16)).b, []string{"key 0 at offset 24", "limit 65535"}},
		{"key beyond file", header(3, 0, 1).u64(100).bytes(make([]byte, 16)).b, []string{"key 0 at offset 24", "exceeds"}},
		{"empty key", header(3, 0, 1).u64(0).bytes(make([]byte, 16)).b, []string{"key 0 at offset 24 is empty"}},
		{"duplicate key", rawFile(2, func(r *raw) {
			r.key("general.name", TypeUint8).u8(1)
			r.key("general.name", TypeUint8).u8(2)
		}, nil, 1, 0), []string{`duplicate key "general.name"`}},
		{"unknown value type", oneKV(func(r *raw) { r.key("x.y", 13).u32(0) }), []string{`key "x.y"`, "unknown value type 13"}},
		{"truncated scalar", oneKV(func(r *raw) { r.key("x.u64", TypeUint64).u32(0).u8(0) }), []string{`key "x.u64"`, "truncated uint64"}},
		{"truncated value type", header(3, 0, 2).key("a", TypeString).str(pad).str("k").u8(0).u8(0).b, []string{`key "k"`, "truncated value type"}},
		{"bool 2", oneKV(func(r *raw) { r.key("flag", TypeBool).u8(2) }), []string{`key "flag"`, "bool value 2"}},
		{"string too long", oneKV(func(r *raw) { r.key("tmpl", TypeString).u64(1 << 30) }), []string{`key "tmpl"`, "limit 16777216"}},
		{"string beyond file", oneKV(func(r *raw) { r.key("tmpl", TypeString).u64(100).u8(0) }), []string{`key "tmpl"`, "length 100 exceeds"}},
		{"array over cap", oneKV(func(r *raw) { r.key("arr", TypeArray).u32(uint32(TypeUint32)).u64(1 << 40) }), []string{`key "arr"`, "1099511627776 elements", "limit"}},
		{"array beyond file", oneKV(func(r *raw) { r.key("arr", TypeArray).u32(uint32(TypeFloat32)).u64(1 << 20).u32(0) }),
			[]string{`key "arr"`, "1048576 float32 elements needs at least 4194304 bytes"}},
		{"string array beyond file", oneKV(func(r *raw) { r.key("toks", TypeArray).u32(uint32(TypeString)).u64(1 << 20).str("a") }),
			[]string{`key "toks"`, "needs at least"}},
		{"string array element", oneKV(func(r *raw) {
			r.key("toks", TypeArray).u32(uint32(TypeString)).u64(2).str("a").u64(1 << 20).u64(0)
		}), []string{`key "toks"`, "array element 1", "exceeds"}},
		{"array unknown element type", oneKV(func(r *raw) { r.key("arr", TypeArray).u32(42).u64(0) }), []string{`key "arr"`, "unknown element type 42"}},
		{"truncated array header", oneKV(func(r *raw) { r.key("arr", TypeArray).u32(uint32(TypeInt8)).u32(0) }), []string{`key "arr"`, "truncated array header"}},
		{"bool array", oneKV(func(r *raw) { r.key("flags", TypeArray).u32(uint32(TypeBool)).u64(3).u8(0).u8(1).u8(7) }),
			[]string{`key "flags"`, "array element 2: bool value 7"}},
		{"nested too deep", oneKV(func(r *raw) {
			r.key("deep", TypeArray)
			for range MaxArrayDepth {
				r.u32(uint32(TypeArray)).u64(1)
			}
			r.u32(uint32(TypeUint8)).u64(1).u8(0)
		}), []string{`key "deep"`, "nested deeper than 4"}},
		{"nested element truncated", oneKV(func(r *raw) {
			r.key("nest", TypeArray).u32(uint32(TypeArray)).u64(2).u32(uint32(TypeInt32)).u64(1).u32(5).u32(uint32(TypeInt32)).u64(1)
		}), []string{`key "nest"`, "needs at least 4 bytes"}},
		{"alignment type", oneKV(func(r *raw) { r.key(AlignmentKey, TypeUint64).u64(64) }), []string{"general.alignment is uint64, want uint32"}},
		{"alignment not a power of two", oneKV(func(r *raw) { r.key(AlignmentKey, TypeUint32).u32(48) }), []string{"general.alignment = 48 is not a power of two"}},
		{"alignment zero", oneKV(func(r *raw) { r.key(AlignmentKey, TypeUint32).u32(0) }), []string{"general.alignment = 0"}},
		{"empty tensor name", rawFile(0, nil, []rinfo{f32("", 4, 0)}, 32, 16), []string{"tensor name 0", "empty"}},
		{"duplicate tensor", rawFile(0, nil, []rinfo{f32("w", 4, 0), f32("w", 4, 32)}, 32, 64), []string{`duplicate tensor name "w"`}},
		{"no dims", rawFile(0, nil, []rinfo{{"w", nil, TensorF32, 0}}, 32, 16), []string{`tensor "w"`, "0 dimensions"}},
		{"5 dims", rawFile(0, nil, []rinfo{{"w", []uint64{1, 1, 1, 1, 1}, TensorF32, 0}}, 32, 16), []string{`tensor "w"`, "5 dimensions"}},
		{"zero dim", rawFile(0, nil, []rinfo{{"w", []uint64{4, 0}, TensorF32, 0}}, 32, 16), []string{`tensor "w"`, "dimension 1 is 0"}},
		{"huge dim", rawFile(0, nil, []rinfo{{"w", []uint64{1 << 63}, TensorF32, 0}}, 32, 16), []string{`tensor "w"`, "dimension 0 is 9223372036854775808"}},
		{"elements overflow", rawFile(0, nil, []rinfo{{"w", []uint64{1 << 40, 1 << 40}, TensorF32, 0}}, 32, 16),
			[]string{`tensor "w"`, "more than 1125899906842624 elements"}},
		{"not whole blocks", rawFile(0, nil, []rinfo{{"blk.0.attn_q.weight", []uint64{33, 2}, TensorQ8_0, 0}}, 32, 128),
			[]string{`tensor "blk.0.attn_q.weight"`, "Q8_0", "33 elements", "32-element blocks"}},
		{"unaligned offset", rawFile(0, nil, []rinfo{f32("w", 4, 16)}, 32, 64), []string{`tensor "w"`, "offset 16 is not a multiple of the alignment 32"}},
		{"offset beyond file", rawFile(0, nil, []rinfo{f32("w", 4, 1<<40)}, 32, 64), []string{`tensor "w"`, "beyond the end"}},
		{"data beyond file", rawFile(0, nil, []rinfo{f32("w", 4, 0), f32("v", 16, 32)}, 32, 64), []string{`tensor "v"`, "beyond the end"}},
		{"unknown type beyond file", rawFile(0, nil, []rinfo{{"w", []uint64{4}, 77, 64}}, 32, 64), []string{`tensor "w"`, "beyond the end"}},
		{"overlap", rawFile(0, nil, []rinfo{f32("a", 32, 0), f32("b", 8, 96), f32("c", 8, 64)}, 32, 192),
			[]string{`tensor "c"`, `overlaps tensor "a"`}},
		{"same offset", rawFile(0, nil, []rinfo{f32("a", 4, 32), f32("b", 4, 32)}, 32, 64), []string{"overlaps", `"a"`, `"b"`}},
		{"unknown type overlap", rawFile(0, nil, []rinfo{f32("a", 4, 0), {"u", []uint64{32}, 99, 0}}, 32, 64), []string{"overlaps", `"a"`, `"u"`}},
		{"truncated tensor info", truncInfo[:len(truncInfo)-6], []string{`tensor "w"`, "truncated tensor info"}},
		{"no data section", rawFile(0, nil, []rinfo{f32("w", 4, 0)}, 1, 0), []string{"data section would start at offset 64"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := Parse(c.data)
			if f != nil {
				t.Errorf("Parse returned a File with the error %v", err)
			}
			wantBad(t, err, c.want...)
		})
	}
}

// TestTruncated: every prefix of a valid file that cuts into its contents
// is refused (only the padding after the last tensor may be missing).
func TestTruncated(t *testing.T) {
	w, _ := roundTripWriter(t, 3, 32)
	b := encode(t, w)
	f, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	var end int64
	for _, ti := range f.Tensors {
		end = max(end, f.DataOffset+ti.Offset+ti.Size)
	}
	for n := range int(end) {
		if _, err := Parse(b[:n]); !errors.Is(err, ErrBadFile) {
			t.Fatalf("prefix of %d bytes: %v", n, err)
		}
	}
	if _, err := Parse(b[:end]); err != nil {
		t.Errorf("without the final padding: %v", err)
	}
}

// TestNoAllocationFromCounts: a tiny file that claims a huge array, string,
// key or table is refused without allocating what it claims.
func TestNoAllocationFromCounts(t *testing.T) {
	files := map[string][]byte{
		"array 2^40": rawFile(1, func(r *raw) {
			r.key("tokenizer.ggml.scores", TypeArray).u32(uint32(TypeFloat32)).u64(1 << 40).bytes(make([]byte, 1000))
		}, nil, 1, 0),
		"array 2^25 of strings": rawFile(1, func(r *raw) {
			r.key("tokenizer.ggml.tokens", TypeArray).u32(uint32(TypeString)).u64(1 << 25).bytes(make([]byte, 1000))
		}, nil, 1, 0),
		"array 2^24 of arrays": rawFile(1, func(r *raw) {
			r.key("nested", TypeArray).u32(uint32(TypeArray)).u64(1 << 24).bytes(make([]byte, 1000))
		}, nil, 1, 0),
		"string 2^23": rawFile(1, func(r *raw) { r.key("s", TypeString).u64(1 << 23).bytes(make([]byte, 1000)) }, nil, 1, 0),
		"kv count":    header(3, 0, MaxKVs).bytes(make([]byte, 1000)).b,
		"tensors":     header(3, MaxTensors, 0).bytes(make([]byte, 1000)).b,
	}
	for name, b := range files {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		const runs = 10
		for range runs {
			if _, err := Parse(b); !errors.Is(err, ErrBadFile) {
				t.Fatalf("%s: %v", name, err)
			}
		}
		runtime.ReadMemStats(&after)
		if perRun := (after.TotalAlloc - before.TotalAlloc) / runs; perRun > 1<<20 {
			t.Errorf("%s: %d bytes allocated per Parse of a %d-byte file", name, perRun, len(b))
		}
	}
}
