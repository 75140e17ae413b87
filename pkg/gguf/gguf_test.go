package gguf

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/semantic-kv/semantic/pkg/testmodels"
)

// roundTripKVs is one value of every type, arrays of every element type and
// nested arrays, with what Value.Any gives back when it differs from the
// input (nested arrays come back as []any).
var roundTripKVs = []struct {
	key  string
	v    any
	want any
}{
	{"t.u8", uint8(200), nil},
	{"t.i8", int8(-100), nil},
	{"t.u16", uint16(60000), nil},
	{"t.i16", int16(-30000), nil},
	{"t.u32", uint32(4_000_000_000), nil},
	{"t.i32", int32(-2_000_000_000), nil},
	{"t.f32", float32(1.5), nil},
	{"t.bool", true, nil},
	{"t.false", false, nil},
	{"t.str", "héllo, wörld", nil},
	{"t.empty", "", nil},
	{"t.u64", uint64(1<<63 + 5), nil},
	{"t.i64", int64(-1 << 62), nil},
	{"t.f64", 2.25, nil},
	{"a.u8", []uint8{1, 2, 255}, nil},
	{"a.i8", []int8{-1, 0, 127}, nil},
	{"a.u16", []uint16{1, 65535}, nil},
	{"a.i16", []int16{-32768, 5}, nil},
	{"a.u32", []uint32{7, 1 << 31}, nil},
	{"a.i32", []int32{-7, 1 << 30}, nil},
	{"a.f32", []float32{0.5, -1, float32(math.Inf(1))}, nil},
	{"a.bool", []bool{true, false, true}, nil},
	{"a.str", []string{"a", "", "ccc", "▁the"}, nil},
	{"a.u64", []uint64{math.MaxUint64, 0}, nil},
	{"a.i64", []int64{math.MinInt64, 3}, nil},
	{"a.f64", []float64{1e300, -0.25}, nil},
	{"a.emptystr", []string{}, nil},
	{"a.emptyf32", []float32{}, nil},
	{"n.i32", [][]int32{{1, 2}, {3}, {}}, []any{[]int32{1, 2}, []int32{3}, []int32{}}},
	{"n.mixed", []any{[]string{"x"}, []float32{1}}, []any{[]string{"x"}, []float32{1}}},
	{"n.deep", [][][][]int8{{{{1, -2}}}, {}}, []any{[]any{[]any{[]int8{1, -2}}}, []any{}}},
	{"n.empty", []any{}, []any{}},
	{"n.anyscalars", []any{uint16(1), uint16(2)}, []uint16{1, 2}},
}

type testTensor struct {
	name string
	typ  TensorType
	dims []int64
}

var roundTripTensors = []testTensor{
	{"f32", TensorF32, []int64{8, 3}},
	{"f16", TensorF16, []int64{16}},
	{"q8_0", TensorQ8_0, []int64{64, 2}},
	{"q4_0", TensorQ4_0, []int64{32, 3}},
	{"f32.4d", TensorF32, []int64{2, 3, 1, 2}},
}

// roundTripWriter is a Writer holding roundTripKVs and roundTripTensors
// (with random data), and that data by tensor name.
func roundTripWriter(t testing.TB, version uint32, align int64) (*Writer, map[string][]byte) {
	t.Helper()
	w := NewWriter()
	w.SetVersion(version)
	w.SetAlignment(align)
	for _, kv := range roundTripKVs {
		if err := w.AddKV(kv.key, kv.v); err != nil {
			t.Fatal(err)
		}
	}
	data := map[string][]byte{}
	for i, tt := range roundTripTensors {
		n := int64(1)
		for _, d := range tt.dims {
			n *= d
		}
		size, err := tt.typ.RowBytes(n)
		if err != nil {
			t.Fatal(err)
		}
		data[tt.name] = randBytes(uint64(i), int(size))
		if err := w.AddTensor(tt.name, tt.typ, tt.dims, data[tt.name]); err != nil {
			t.Fatal(err)
		}
	}
	return w, data
}

func checkRoundTrip(t *testing.T, f *File, version uint32, align int64, data map[string][]byte) {
	t.Helper()
	if f.Version != version || f.Alignment != align {
		t.Errorf("version %d alignment %d, want %d and %d", f.Version, f.Alignment, version, align)
	}
	var wantKeys []string
	for _, kv := range roundTripKVs {
		wantKeys = append(wantKeys, kv.key)
	}
	if align != DefaultAlignment {
		wantKeys = append(wantKeys, AlignmentKey)
	}
	if got := f.Keys(); !slices.Equal(got, wantKeys) {
		t.Errorf("keys %q, want %q", got, wantKeys)
	}
	for _, kv := range roundTripKVs {
		v, ok := f.Value(kv.key)
		if !ok {
			t.Errorf("key %s missing", kv.key)
			continue
		}
		want := kv.want
		if want == nil {
			want = kv.v
		}
		if got := v.Any(); !reflect.DeepEqual(got, want) {
			t.Errorf("key %s = %#v (%s), want %#v", kv.key, got, v.TypeName(), want)
		}
	}
	if f.DataOffset%align != 0 {
		t.Errorf("data offset %d is not aligned to %d", f.DataOffset, align)
	}
	if len(f.Tensors) != len(roundTripTensors) {
		t.Fatalf("%d tensors, want %d", len(f.Tensors), len(roundTripTensors))
	}
	for i, tt := range roundTripTensors {
		ti := &f.Tensors[i]
		if ti.Name != tt.name || ti.Type != tt.typ || !slices.Equal(ti.Dims, tt.dims) {
			t.Errorf("tensor %d is %s %v %v, want %s %v %v", i, ti.Name, ti.Type, ti.Dims, tt.name, tt.typ, tt.dims)
		}
		if ti.Offset%align != 0 {
			t.Errorf("tensor %s offset %d is not aligned to %d", tt.name, ti.Offset, align)
		}
		if got, ok := f.Tensor(tt.name); !ok || got != ti {
			t.Errorf("Tensor(%q) = %v, %v", tt.name, got, ok)
		}
		if ti.Size != int64(len(data[tt.name])) {
			t.Errorf("tensor %s size %d, want %d", tt.name, ti.Size, len(data[tt.name]))
		}
		if got := f.TensorData(ti); !bytes.Equal(got, data[tt.name]) {
			t.Errorf("tensor %s data differs", tt.name)
		}
	}
}

// TestRoundTrip: what the Writer writes, Parse and Open read back exactly,
// in both versions and several alignments.
func TestRoundTrip(t *testing.T) {
	for _, version := range []uint32{2, 3} {
		for _, align := range []int64{32, 64, 1, 4096} {
			t.Run(fmt.Sprintf("v%d/align%d", version, align), func(t *testing.T) {
				w, data := roundTripWriter(t, version, align)
				b := encode(t, w)
				f, err := Parse(b)
				if err != nil {
					t.Fatal(err)
				}
				checkRoundTrip(t, f, version, align, data)
				if f.Size() != int64(len(b)) {
					t.Errorf("Size %d, want %d", f.Size(), len(b))
				}

				path := filepath.Join(t.TempDir(), "m.gguf")
				if err := w.WriteFile(path); err != nil {
					t.Fatal(err)
				}
				onDisk, err := os.ReadFile(path)
				if err != nil || !bytes.Equal(onDisk, b) {
					t.Fatalf("WriteFile wrote other bytes than WriteTo (%v)", err)
				}
				of, err := Open(path)
				if err != nil {
					t.Fatal(err)
				}
				defer of.Close()
				checkRoundTrip(t, of, version, align, data)
			})
		}
	}
}

// TestCopyMetadata: every Value read from a file can be written again with
// AddKV (directly or through Any), giving the same bytes.
func TestCopyMetadata(t *testing.T) {
	w, _ := roundTripWriter(t, 3, 32)
	f, err := Parse(encode(t, w))
	if err != nil {
		t.Fatal(err)
	}
	direct, viaAny := NewWriter(), NewWriter()
	for _, k := range f.Keys() {
		v, _ := f.Value(k)
		if err := direct.AddKV(k, v); err != nil {
			t.Fatal(err)
		}
		if err := viaAny.AddKV(k, v.Any()); err != nil {
			t.Fatal(err)
		}
	}
	want := NewWriter()
	for _, kv := range roundTripKVs {
		if err := want.AddKV(kv.key, kv.v); err != nil {
			t.Fatal(err)
		}
	}
	wb := encode(t, want)
	if !bytes.Equal(encode(t, direct), wb) || !bytes.Equal(encode(t, viaAny), wb) {
		t.Error("copied metadata encodes differently")
	}
}

func TestGetters(t *testing.T) {
	w := NewWriter()
	for _, kv := range []struct {
		k string
		v any
	}{
		{"s", "text"}, {"u8", uint8(7)}, {"i32", int32(-3)}, {"i32pos", int32(12)}, {"u64big", uint64(math.MaxUint64)},
		{"f32", float32(0.25)}, {"f64", 1e-5}, {"b", true}, {"toks", []string{"a", "b"}}, {"scores", []float32{-1, 2}},
		{"scores64", []float64{0.5}}, {"types", []int32{1, -2}}, {"u8s", []uint8{3}}, {"u64s", []uint64{1, math.MaxUint64}},
	} {
		if err := w.AddKV(kv.k, kv.v); err != nil {
			t.Fatal(err)
		}
	}
	f, err := Parse(encode(t, w))
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, got, want any, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", name, err)
		} else if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", name, got, want)
		}
	}
	s, err := f.String("s")
	check("String", s, "text", err)
	u, err := f.Uint("u8")
	check("Uint u8", u, uint64(7), err)
	u, err = f.Uint("i32pos")
	check("Uint i32pos", u, uint64(12), err)
	u, err = f.Uint("u64big")
	check("Uint u64big", u, uint64(math.MaxUint64), err)
	i, err := f.Int("i32")
	check("Int", i, int64(-3), err)
	x, err := f.Float("f32")
	check("Float f32", x, 0.25, err)
	x, err = f.Float("f64")
	check("Float f64", x, 1e-5, err)
	x, err = f.Float("i32")
	check("Float i32", x, -3.0, err)
	b, err := f.Bool("b")
	check("Bool", b, true, err)
	ss, err := f.Strings("toks")
	check("Strings", ss, []string{"a", "b"}, err)
	ss[0] = "changed" // the caller owns the copy
	ss, err = f.Strings("toks")
	check("Strings again", ss, []string{"a", "b"}, err)
	fs, err := f.Float32s("scores")
	check("Float32s", fs, []float32{-1, 2}, err)
	fs, err = f.Float32s("scores64")
	check("Float32s f64", fs, []float32{0.5}, err)
	is, err := f.Ints("types")
	check("Ints", is, []int64{1, -2}, err)
	is, err = f.Ints("u8s")
	check("Ints u8", is, []int64{3}, err)

	for name, fn := range map[string]func(string) error{
		"String":   func(k string) error { _, err := f.String(k); return err },
		"Uint":     func(k string) error { _, err := f.Uint(k); return err },
		"Int":      func(k string) error { _, err := f.Int(k); return err },
		"Float":    func(k string) error { _, err := f.Float(k); return err },
		"Bool":     func(k string) error { _, err := f.Bool(k); return err },
		"Strings":  func(k string) error { _, err := f.Strings(k); return err },
		"Float32s": func(k string) error { _, err := f.Float32s(k); return err },
		"Ints":     func(k string) error { _, err := f.Ints(k); return err },
	} {
		err := fn("no.such.key")
		if !errors.Is(err, ErrMissingKey) || errors.Is(err, ErrBadFile) || !strings.Contains(err.Error(), "no.such.key") {
			t.Errorf("%s(missing key) = %v, want ErrMissingKey naming the key", name, err)
		}
		wrong := "b"
		if name == "Bool" {
			wrong = "s"
		}
		err = fn(wrong)
		if !errors.Is(err, ErrBadFile) || !strings.Contains(err.Error(), "key "+wrong) {
			t.Errorf("%s(%s) = %v, want ErrBadFile naming the key", name, wrong, err)
		}
	}
	_, err = f.Uint("i32")
	wantBad(t, err, "key i32", "negative")
	_, err = f.Int("u64big")
	wantBad(t, err, "key u64big", "int64")
	_, err = f.Ints("u64s")
	wantBad(t, err, "key u64s[1]")
	_, err = f.String("toks")
	wantBad(t, err, "key toks is array of string, want string")
}

// TestUnknownTensorType: a tensor of a type this package does not know
// parses (Size -1, no data) so a loader can name it.
func TestUnknownTensorType(t *testing.T) {
	b := rawFile(0, nil, []rinfo{
		{"new", []uint64{256, 2}, 99, 0},
		{"old", []uint64{4}, TensorF32, 64},
	}, 32, 128)
	f, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	ti, _ := f.Tensor("new")
	if ti.Size != -1 || f.TensorData(ti) != nil || ti.Type.String() != "type(99)" || ti.Elements() != 512 {
		t.Errorf("unknown tensor: size %d, data %v, type %v, %d elements", ti.Size, f.TensorData(ti), ti.Type, ti.Elements())
	}
	ti, _ = f.Tensor("old")
	if len(f.TensorData(ti)) != 16 {
		t.Errorf("known tensor data: %d bytes", len(f.TensorData(ti)))
	}
}

func TestNoTensors(t *testing.T) {
	w := NewWriter()
	if err := w.AddKV("general.architecture", "llama"); err != nil {
		t.Fatal(err)
	}
	f, err := Parse(encode(t, w))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Tensors) != 0 || len(f.Keys()) != 1 {
		t.Errorf("%d tensors, keys %q", len(f.Tensors), f.Keys())
	}
	// The header alone, without padding, is a file too.
	if _, err := Parse(header(3, 0, 0).b); err != nil {
		t.Error(err)
	}
}

func TestClose(t *testing.T) {
	w, data := roundTripWriter(t, 3, 32)
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ti, _ := f.Tensor("f32")
	if !bytes.Equal(f.TensorData(ti), data["f32"]) {
		t.Fatal("data differs")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if d := f.TensorData(ti); d != nil {
		t.Errorf("TensorData after Close = %d bytes, want nil", len(d))
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// The metadata does not live in the mapping.
	if s, err := f.String("t.str"); err != nil || s != "héllo, wörld" {
		t.Errorf("String after Close = %q, %v", s, err)
	}
	// Parse's Files close too.
	pf, err := Parse(encode(t, w))
	if err != nil {
		t.Fatal(err)
	}
	pf.Close()
	if pf.TensorData(&pf.Tensors[0]) != nil {
		t.Error("TensorData after Close of a parsed file")
	}
}

func TestTensorDataForeignInfo(t *testing.T) {
	w, _ := roundTripWriter(t, 3, 32)
	f, err := Parse(encode(t, w))
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range []*TensorInfo{nil, {Offset: -1, Size: 4}, {Offset: f.Size(), Size: 1}, {Offset: 0, Size: math.MaxInt64}} {
		if d := f.TensorData(ti); d != nil {
			t.Errorf("TensorData(%+v) = %d bytes, want nil", ti, len(d))
		}
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "missing.gguf")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Open(dir); err == nil {
		t.Error("directory opened")
	}
	empty := filepath.Join(dir, "empty.gguf")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Open(empty)
	wantBad(t, err, "truncated header")
	bad := filepath.Join(dir, "bad.gguf")
	if err := os.WriteFile(bad, rawFile(0, nil, []rinfo{{"w", []uint64{64}, TensorF32, 0}}, 32, 100), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Open(bad)
	wantBad(t, err, `tensor "w"`, "beyond the end")
}

func TestTensorTypes(t *testing.T) {
	for _, c := range []struct {
		t           TensorType
		name        string
		block, size int
	}{
		{TensorF32, "F32", 1, 4}, {TensorF16, "F16", 1, 2}, {TensorBF16, "BF16", 1, 2},
		{TensorQ4_0, "Q4_0", 32, 18}, {TensorQ4_1, "Q4_1", 32, 20}, {TensorQ5_0, "Q5_0", 32, 22},
		{TensorQ5_1, "Q5_1", 32, 24}, {TensorQ8_0, "Q8_0", 32, 34}, {TensorQ8_1, "Q8_1", 32, 36},
		{TensorQ2_K, "Q2_K", 256, 84}, {TensorQ3_K, "Q3_K", 256, 110}, {TensorQ4_K, "Q4_K", 256, 144},
		{TensorQ5_K, "Q5_K", 256, 176}, {TensorQ6_K, "Q6_K", 256, 210}, {TensorQ8_K, "Q8_K", 256, 292},
		{TensorIQ2_XXS, "IQ2_XXS", 256, 66}, {TensorIQ2_XS, "IQ2_XS", 256, 74}, {TensorIQ3_XXS, "IQ3_XXS", 256, 98},
		{TensorIQ1_S, "IQ1_S", 256, 50}, {TensorIQ4_NL, "IQ4_NL", 32, 18}, {TensorIQ3_S, "IQ3_S", 256, 110},
		{TensorIQ2_S, "IQ2_S", 256, 82}, {TensorIQ4_XS, "IQ4_XS", 256, 136}, {TensorIQ1_M, "IQ1_M", 256, 56},
		{TensorI8, "I8", 1, 1}, {TensorI16, "I16", 1, 2}, {TensorI32, "I32", 1, 4}, {TensorI64, "I64", 1, 8},
		{TensorF64, "F64", 1, 8}, {TensorTQ1_0, "TQ1_0", 256, 54}, {TensorTQ2_0, "TQ2_0", 256, 66},
		{TensorMXFP4, "MXFP4", 32, 17},
		{4, "type(4)", 0, 0}, {31, "type(31)", 0, 0}, {1000, "type(1000)", 0, 0},
	} {
		if c.t.String() != c.name || c.t.BlockSize() != c.block || c.t.BlockBytes() != c.size || c.t.Known() != (c.block > 0) {
			t.Errorf("%d: %q %d %d, want %q %d %d", uint32(c.t), c.t, c.t.BlockSize(), c.t.BlockBytes(), c.name, c.block, c.size)
		}
	}
	if n, err := TensorQ8_0.RowBytes(4096); n != 128*34 || err != nil {
		t.Errorf("Q8_0 RowBytes(4096) = %d, %v", n, err)
	}
	if n, err := TensorF16.RowBytes(3); n != 6 || err != nil {
		t.Errorf("F16 RowBytes(3) = %d, %v", n, err)
	}
	for _, c := range []struct {
		t TensorType
		n int64
	}{{TensorQ4_K, 100}, {TensorQ8_0, -32}, {99, 32}, {TensorF64, math.MaxInt64}} {
		if _, err := c.t.RowBytes(c.n); err == nil {
			t.Errorf("%v RowBytes(%d): no error", c.t, c.n)
		}
	}
}

func TestWriterErrors(t *testing.T) {
	w := NewWriter()
	for _, c := range []struct {
		key string
		v   any
	}{
		{"", "x"},
		{"int", 5},
		{"uint", []uint{1}},
		{"nil", nil},
		{"map", map[string]int32{}},
		{"mixed", []any{int32(1), "a"}},
		{"mixed2", []any{[]int32{1}, int32(1)}},
		{"deep", [][][][][]int8{{{{{1}}}}}},
		{"nilany", []any{nil}},
		{AlignmentKey, uint64(64)},
		{AlignmentKey, uint32(48)},
		{strings.Repeat("k", MaxKeyLen+1), "x"},
		{"long", strings.Repeat("s", MaxStringLen+1)},
	} {
		if err := w.AddKV(c.key, c.v); err == nil {
			t.Errorf("AddKV(%.20q, %T) succeeded", c.key, c.v)
		}
	}
	if err := w.AddKV("dup", "a"); err != nil {
		t.Fatal(err)
	}
	if err := w.AddKV("dup", "b"); err == nil {
		t.Error("duplicate key accepted")
	}
	type tokenType int32
	if err := w.AddKV("named", []tokenType{1, 2}); err != nil {
		t.Errorf("slice of a type defined on int32: %v", err)
	}
	for _, c := range []struct {
		name string
		typ  TensorType
		dims []int64
		n    int
	}{
		{"", TensorF32, []int64{1}, 4},
		{"len", TensorF32, []int64{4}, 15},
		{"unknown", 99, []int64{4}, 4},
		{"block", TensorQ8_0, []int64{16, 2}, 34},
		{"nodims", TensorF32, nil, 0},
		{"5dims", TensorF32, []int64{1, 1, 1, 1, 1}, 4},
		{"zero", TensorF32, []int64{0}, 0},
		{"huge", TensorF32, []int64{1 << 40, 1 << 40}, 0},
	} {
		if err := w.AddTensor(c.name, c.typ, c.dims, make([]byte, c.n)); err == nil {
			t.Errorf("AddTensor(%s) succeeded", c.name)
		}
	}
	if err := w.AddTensor("t", TensorF32, []int64{1}, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	if err := w.AddTensor("t", TensorF32, []int64{1}, make([]byte, 4)); err == nil {
		t.Error("duplicate tensor accepted")
	}
	w.SetVersion(1)
	if _, err := w.WriteTo(&bytes.Buffer{}); err == nil {
		t.Error("version 1 written")
	}
	w.SetVersion(3)
	w.SetAlignment(24)
	if _, err := w.WriteTo(&bytes.Buffer{}); err == nil {
		t.Error("alignment 24 written")
	}
	w.SetAlignment(16)
	if _, err := Parse(encode(t, w)); err != nil {
		t.Error(err)
	}
	if err := w.WriteFile(filepath.Join(t.TempDir(), "no", "such", "dir")); err == nil {
		t.Error("WriteFile into a missing directory succeeded")
	}
}

// TestAlignmentKey: general.alignment added with AddKV sets the alignment,
// keeps its place, and follows a later SetAlignment.
func TestAlignmentKey(t *testing.T) {
	w := NewWriter()
	for _, kv := range []struct {
		k string
		v any
	}{{"a", "x"}, {AlignmentKey, uint32(64)}, {"b", "y"}} {
		if err := w.AddKV(kv.k, kv.v); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.AddTensor("t", TensorF32, []int64{3}, make([]byte, 12)); err != nil {
		t.Fatal(err)
	}
	for _, align := range []int64{64, 128, 32} {
		w.SetAlignment(align)
		f, err := Parse(encode(t, w))
		if err != nil {
			t.Fatal(err)
		}
		if f.Alignment != align || !slices.Equal(f.Keys(), []string{"a", AlignmentKey, "b"}) || f.DataOffset%align != 0 {
			t.Errorf("alignment %d, keys %q, data offset %d; want alignment %d", f.Alignment, f.Keys(), f.DataOffset, align)
		}
	}
}

// TestStories260K reads the real llama2.c model converted by llama.cpp.
func TestStories260K(t *testing.T) {
	path := testmodels.File(t, "stories260K.gguf")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Version != 3 || len(f.Tensors) != 48 {
		t.Errorf("version %d, %d tensors; want 3 and 48", f.Version, len(f.Tensors))
	}
	for i := range f.Tensors {
		ti := &f.Tensors[i]
		if ti.Type != TensorF32 || ti.Size != 4*ti.Elements() || int64(len(f.TensorData(ti))) != ti.Size {
			t.Errorf("tensor %s: %v, %d bytes for %d elements", ti.Name, ti.Type, ti.Size, ti.Elements())
		}
	}
	if a, err := f.String("general.architecture"); a != "llama" || err != nil {
		t.Errorf("general.architecture = %q, %v", a, err)
	}
	if n, err := f.Uint("llama.embedding_length"); n != 64 || err != nil {
		t.Errorf("llama.embedding_length = %d, %v", n, err)
	}
	tokens, err := f.Strings("tokenizer.ggml.tokens")
	if len(tokens) != 512 || err != nil || tokens[1] != "<s>" {
		t.Errorf("tokenizer.ggml.tokens: %d, %v", len(tokens), err)
	}
	scores, err := f.Float32s("tokenizer.ggml.scores")
	if len(scores) != 512 || err != nil {
		t.Errorf("tokenizer.ggml.scores: %d, %v", len(scores), err)
	}
	emb, ok := f.Tensor("token_embd.weight")
	if !ok || !slices.Equal(emb.Dims, []int64{64, 512}) {
		t.Errorf("token_embd.weight: %v", emb)
	}
}

func TestValue(t *testing.T) {
	w := NewWriter()
	for _, kv := range []struct {
		k string
		v any
	}{{"s", "a\"b"}, {"n", [][]int16{{1, 2}, {3}}}, {"big", make([]uint32, 20)}, {"f", float32(0.5)}, {"b", []bool{true}}} {
		if err := w.AddKV(kv.k, kv.v); err != nil {
			t.Fatal(err)
		}
	}
	f, err := Parse(encode(t, w))
	if err != nil {
		t.Fatal(err)
	}
	get := func(k string) Value { v, _ := f.Value(k); return v }
	s, n, big, fl, b := get("s"), get("n"), get("big"), get("f"), get("b")
	if s.Type() != TypeString || s.IsArray() || s.Len() != 0 || s.String() != `"a\"b"` {
		t.Errorf("string value: %v %v %d %s", s.Type(), s.IsArray(), s.Len(), s)
	}
	if !n.IsArray() || n.ElemType() != TypeArray || n.Len() != 2 || n.TypeName() != "array of array of int16" || n.String() != "[[1 2] [3]]" {
		t.Errorf("nested value: %v %d %q %s", n.ElemType(), n.Len(), n.TypeName(), n)
	}
	if e := n.Array(); len(e) != 2 || e[1].Len() != 1 || e[0].Array()[1].Any() != int16(2) {
		t.Errorf("nested elements: %v", e)
	}
	if big.String() != "[0 0 0 0 0 0 0 0 ... (20 elements)]" || big.ElemType() != TypeUint32 {
		t.Errorf("big array: %s", big)
	}
	if fl.String() != "0.5" || fl.Array() != nil || b.String() != "[true]" {
		t.Errorf("scalars: %s %v %s", fl, fl.Array(), b)
	}
	if _, ok := f.Tensor("none"); ok {
		t.Error("Tensor(none) found")
	}
	if ValueType(13).String() != "valuetype(13)" || TypeFloat64.String() != "float64" {
		t.Error("ValueType names")
	}
}

// TestConcurrentClose: TensorData and Close may race (the race detector
// checks the locking); TensorData then returns the data or nil.
func TestConcurrentClose(t *testing.T) {
	w, data := roundTripWriter(t, 3, 32)
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ti, _ := f.Tensor("q8_0")
	done := make(chan bool)
	for range 4 {
		go func() {
			ok := true
			for range 1000 {
				// Compared under no lock: a slice obtained before Close
				// must not be read after it, so only check the length.
				if d := f.TensorData(ti); d != nil && len(d) != len(data["q8_0"]) {
					ok = false
				}
			}
			done <- ok
		}()
	}
	f.Close()
	for range 4 {
		if !<-done {
			t.Error("TensorData returned a wrong slice")
		}
	}
}
