// Package gguf reads and writes GGUF files, the model format of llama.cpp
// and ggml (versions 2 and 3, little-endian).
//
// A GGUF file is a header, typed key/value metadata, a table of tensor
// descriptions, then the tensor data, each tensor aligned in a data section
// that starts on an alignment boundary. Open maps the file read-only: the
// weights are used where they lie in the page cache, never copied into the Go
// heap, so opening a multi-gigabyte model costs only the parse of its
// header. The metadata is decoded into Go values at open time (it is small
// and needed at once: hyperparameters, the vocabulary).
//
// Every file is untrusted input. Parse checks everything before using it: a
// length or count is compared with the bytes left in the file before
// anything is allocated, so a forged header cannot make it allocate more
// than a small multiple of the file's own size, and fixed caps (MaxKeyLen,
// MaxStringLen, MaxArrayLen, MaxArrayDepth, MaxKVs, MaxTensors, MaxDims,
// MaxElements) bound each item. Tensor shapes, types, offsets and byte
// ranges are checked (aligned, inside the file, not overlapping), so
// TensorData never indexes outside the file. A bad file gives an error that
// wraps ErrBadFile and names the key or tensor and, where it helps, the byte
// offset; no input makes the package panic (FuzzParse checks this).
//
// A tensor of a type this package does not know (a newer ggml type) does not
// fail the parse: its Size is -1 and TensorData returns nil for it, so that
// a model loader can refuse it by name with the list of the types it
// supports, instead of the parser giving a vaguer error.
package gguf

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
)

var (
	// ErrBadFile is wrapped by every error about a malformed file: bad
	// magic, unsupported version, truncation, a count or length that does
	// not fit, a bad tensor, and a metadata value of the wrong type for its
	// key.
	ErrBadFile = errors.New("bad GGUF file")
	// ErrMissingKey is wrapped by the typed getters when the key is absent,
	// so that callers can tell "absent, use the default" from "present but
	// malformed".
	ErrMissingKey = errors.New("missing GGUF key")
)

// Limits on what a file may claim. A file that passes these is still
// checked against its own length; they exist so that one item cannot ask
// for an absurd amount of memory or work even in a large file.
const (
	// MaxKeyLen is the longest metadata key or tensor name, in bytes (the
	// GGUF specification limits keys to 65535 bytes).
	MaxKeyLen = 1<<16 - 1
	// MaxStringLen is the longest string value (chat templates, the
	// longest strings in real files, are tens of kilobytes).
	MaxStringLen = 16 << 20
	// MaxArrayLen is the most elements in one array (real vocabularies and
	// merge lists have up to a few hundred thousand).
	MaxArrayLen = 1 << 26
	// MaxArrayDepth is how deep arrays may nest: an array of arrays of
	// arrays of arrays, no deeper (llama.cpp itself writes no nested arrays).
	MaxArrayDepth = 4
	// MaxKVs is the most metadata pairs in a file.
	MaxKVs = 1 << 20
	// MaxTensors is the most tensors in a file (large models have a few
	// thousand).
	MaxTensors = 1 << 20
	// MaxDims is the most dimensions of a tensor (GGML_MAX_DIMS).
	MaxDims = 4
	// MaxElements is the most elements in one tensor (2^50: a petabyte of
	// bytes for 1-byte types), so that element counts and byte sizes never
	// overflow an int64.
	MaxElements = 1 << 50
	// DefaultAlignment is the alignment of the data section and of every
	// tensor when the file has no general.alignment key.
	DefaultAlignment = 32
)

// AlignmentKey is the metadata key that sets the alignment (a UINT32, a
// power of two).
const AlignmentKey = "general.alignment"

const (
	magic        = "GGUF"
	headerSize   = 4 + 4 + 8 + 8
	minKVSize    = 8 + 1 + 4 + 1         // key length + 1-byte key + type + 1-byte value
	minTensorLen = 8 + 1 + 4 + 8 + 4 + 8 // name length + 1-byte name + n_dims + one dim + type + offset
)

// TensorInfo describes one tensor: its name, type, shape and where its bytes
// lie in the data section.
type TensorInfo struct {
	Name string
	Type TensorType
	// Dims is the shape, innermost (contiguous) dimension first, as ggml's
	// ne: a rows x cols matrix is {cols, rows}.
	Dims []int64
	// Offset is where the tensor starts, relative to the data section
	// (File.DataOffset); a multiple of File.Alignment.
	Offset int64
	// Size is the tensor's length in bytes, or -1 when its type is not
	// Known (then the parser cannot tell how long it is).
	Size int64
}

// Elements is the number of elements: the product of Dims.
func (t *TensorInfo) Elements() int64 {
	n := int64(1)
	for _, d := range t.Dims {
		n *= d
	}
	return n
}

// kv is one metadata pair.
type kv struct {
	key string
	val Value
}

// File is a parsed GGUF file. Its metadata and tensor table are plain Go
// values; the tensor bytes stay in the mapping (Open) or in the caller's
// slice (Parse) until Close.
//
// A File is safe for concurrent use. Slices returned by TensorData must not
// be used after Close: for a mapped file the memory is gone and touching it
// crashes the process. The file must not be truncated or rewritten in place
// while it is open (the mapping would fault); replace it by renaming a new
// file over it, as Writer.WriteFile does.
type File struct {
	Version uint32
	// Alignment is the alignment of the data section and of every tensor
	// offset: general.alignment, or DefaultAlignment.
	Alignment int64
	// Tensors is the tensor table, in file order. Do not modify it.
	Tensors []TensorInfo
	// DataOffset is the absolute offset of the data section in the file.
	DataOffset int64

	kvs     []kv
	keys    map[string]int
	tensors map[string]int
	size    int64

	mu     sync.RWMutex
	data   []byte             // the whole file; nil once closed
	unmap  func([]byte) error // releases data (Open); nil for Parse
	closed bool
}

// Parse parses a GGUF file held in memory, checking it as the package
// documentation describes (Open does the same checks). The tensor data
// returned by TensorData refers into data, which must not be modified while
// the File is in use; the metadata is copied out of it.
func Parse(data []byte) (*File, error) {
	f := &File{data: data, size: int64(len(data))}
	if err := f.parse(); err != nil {
		return nil, err
	}
	return f, nil
}

// Close releases the file's mapping; tensor data is unavailable afterwards
// (TensorData returns nil), while the metadata and tensor table stay
// readable. Closing twice is harmless.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	data, unmap := f.data, f.unmap
	f.data, f.unmap = nil, nil
	if unmap != nil && len(data) > 0 {
		return unmap(data)
	}
	return nil
}

// Size is the length of the file in bytes.
func (f *File) Size() int64 { return f.size }

// Tensor finds a tensor by name. The result points into f.Tensors.
func (f *File) Tensor(name string) (*TensorInfo, bool) {
	i, ok := f.tensors[name]
	if !ok {
		return nil, false
	}
	return &f.Tensors[i], true
}

// TensorData is the tensor's bytes (len == t.Size) as they lie in the file:
// a view of the mapping, not a copy, so it must be treated as read-only and
// not used after Close. It is nil when the type is unknown (Size -1), after
// Close, or when t does not describe a range of this file.
//
// The slice starts at DataOffset+Offset, a multiple of Alignment from the
// start of the file; a mapping starts on a page boundary, so for Open the
// data is aligned in memory to Alignment (up to the page size). For Parse
// the alignment in memory depends on where the caller's slice starts.
func (f *File) TensorData(t *TensorInfo) []byte {
	if t == nil || t.Size < 0 || t.Offset < 0 {
		return nil
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	data := f.data
	if data == nil || t.Offset > int64(len(data))-f.DataOffset || t.Size > int64(len(data))-f.DataOffset-t.Offset {
		return nil
	}
	start := f.DataOffset + t.Offset
	end := start + t.Size
	return data[start:end:end]
}

// Keys is the metadata keys in file order.
func (f *File) Keys() []string {
	out := make([]string, len(f.kvs))
	for i, p := range f.kvs {
		out[i] = p.key
	}
	return out
}

// Value is the metadata value of key.
func (f *File) Value(key string) (Value, bool) {
	i, ok := f.keys[key]
	if !ok {
		return Value{}, false
	}
	return f.kvs[i].val, true
}

// lookup is the value of key or an error wrapping ErrMissingKey.
func (f *File) lookup(key string) (Value, error) {
	v, ok := f.Value(key)
	if !ok {
		return Value{}, fmt.Errorf("%w: %s", ErrMissingKey, key)
	}
	return v, nil
}

func wrongType(key string, v Value, want string) error {
	return fmt.Errorf("%w: key %s is %s, want %s", ErrBadFile, key, v.TypeName(), want)
}

// String is the STRING value of key.
func (f *File) String(key string) (string, error) {
	v, err := f.lookup(key)
	if err != nil {
		return "", err
	}
	s, ok := v.AsString()
	if !ok {
		return "", wrongType(key, v, "string")
	}
	return s, nil
}

// Uint is the value of key, of any integer type, which must not be negative
// (converters write the same hyperparameter as UINT32 or UINT64, some as
// INT32).
func (f *File) Uint(key string) (uint64, error) {
	v, err := f.lookup(key)
	if err != nil {
		return 0, err
	}
	if !v.typ.isInteger() {
		return 0, wrongType(key, v, "an unsigned integer")
	}
	u, ok := v.AsUint()
	if !ok {
		return 0, fmt.Errorf("%w: key %s = %d is negative", ErrBadFile, key, int64(v.num))
	}
	return u, nil
}

// Int is the value of key, of any integer type, which must fit an int64.
func (f *File) Int(key string) (int64, error) {
	v, err := f.lookup(key)
	if err != nil {
		return 0, err
	}
	if !v.typ.isInteger() {
		return 0, wrongType(key, v, "an integer")
	}
	i, ok := v.AsInt()
	if !ok {
		return 0, fmt.Errorf("%w: key %s = %d does not fit an int64", ErrBadFile, key, v.num)
	}
	return i, nil
}

// Float is the value of key: a FLOAT32 or FLOAT64, or an integer
// (converted).
func (f *File) Float(key string) (float64, error) {
	v, err := f.lookup(key)
	if err != nil {
		return 0, err
	}
	x, ok := v.AsFloat()
	if !ok {
		return 0, wrongType(key, v, "a number")
	}
	return x, nil
}

// Bool is the BOOL value of key.
func (f *File) Bool(key string) (bool, error) {
	v, err := f.lookup(key)
	if err != nil {
		return false, err
	}
	b, ok := v.AsBool()
	if !ok {
		return false, wrongType(key, v, "bool")
	}
	return b, nil
}

// Strings is the ARRAY of STRING value of key (a copy the caller owns).
func (f *File) Strings(key string) ([]string, error) {
	v, err := f.lookup(key)
	if err != nil {
		return nil, err
	}
	s, ok := v.AsStrings()
	if !ok {
		return nil, wrongType(key, v, "array of string")
	}
	return s, nil
}

// Float32s is the ARRAY of FLOAT32 value of key, or an ARRAY of FLOAT64
// converted (a copy the caller owns).
func (f *File) Float32s(key string) ([]float32, error) {
	v, err := f.lookup(key)
	if err != nil {
		return nil, err
	}
	s, ok := v.AsFloat32s()
	if !ok {
		return nil, wrongType(key, v, "array of float32")
	}
	return s, nil
}

// Ints is the value of key, an ARRAY of any integer type, as int64s.
func (f *File) Ints(key string) ([]int64, error) {
	v, err := f.lookup(key)
	if err != nil {
		return nil, err
	}
	s, bad, ok := v.AsInts()
	if !ok {
		if bad >= 0 {
			return nil, fmt.Errorf("%w: key %s[%d] = %d does not fit an int64", ErrBadFile, key, bad, v.arr.([]uint64)[bad])
		}
		return nil, wrongType(key, v, "array of integers")
	}
	return s, nil
}

// badf is an error wrapping ErrBadFile.
func badf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadFile, fmt.Sprintf(format, args...))
}

// decoder reads little-endian values from data at off. Every read checks
// the bytes left first; on failure the caller makes an error that says what
// was being read.
type decoder struct {
	data []byte
	off  int
}

func (d *decoder) left() uint64 { return uint64(len(d.data) - d.off) }

func (d *decoder) u32() (uint32, bool) {
	if d.left() < 4 {
		return 0, false
	}
	v := binary.LittleEndian.Uint32(d.data[d.off:])
	d.off += 4
	return v, true
}

func (d *decoder) u64() (uint64, bool) {
	if d.left() < 8 {
		return 0, false
	}
	v := binary.LittleEndian.Uint64(d.data[d.off:])
	d.off += 8
	return v, true
}

// bytes takes the next n bytes (a view, not a copy).
func (d *decoder) bytes(n uint64) ([]byte, bool) {
	if d.left() < n {
		return nil, false
	}
	b := d.data[d.off : d.off+int(n)]
	d.off += int(n)
	return b, true
}

// name reads a key or tensor name: what says which (for errors).
func (d *decoder) name(what string, index uint64) (string, error) {
	at := d.off
	n, ok := d.u64()
	if !ok {
		return "", badf("truncated %s %d length at offset %d (file is %d bytes)", what, index, at, len(d.data))
	}
	switch {
	case n == 0:
		return "", badf("%s %d at offset %d is empty", what, index, at)
	case n > MaxKeyLen:
		return "", badf("%s %d at offset %d is %d bytes long (limit %d)", what, index, at, n, MaxKeyLen)
	}
	b, ok := d.bytes(n)
	if !ok {
		return "", badf("%s %d at offset %d: length %d exceeds the %d bytes left in the file", what, index, at, n, d.left())
	}
	return string(b), nil
}

// value reads a value of type t for key; depth is the number of arrays
// enclosing it.
func (d *decoder) value(key string, t ValueType, depth int) (Value, error) {
	at := d.off
	if size := t.fixedSize(); size > 0 {
		b, ok := d.bytes(uint64(size))
		if !ok {
			return Value{}, badf("key %q: truncated %v value at offset %d (file is %d bytes)", key, t, at, len(d.data))
		}
		v := Value{typ: t}
		switch size {
		case 1:
			v.num = uint64(b[0])
			if t == TypeInt8 {
				v.num = uint64(int64(int8(b[0])))
			}
			if t == TypeBool && b[0] > 1 {
				return Value{}, badf("key %q: bool value %d at offset %d (must be 0 or 1)", key, b[0], at)
			}
		case 2:
			v.num = uint64(binary.LittleEndian.Uint16(b))
			if t == TypeInt16 {
				v.num = uint64(int64(int16(v.num)))
			}
		case 4:
			v.num = uint64(binary.LittleEndian.Uint32(b))
			if t == TypeInt32 {
				v.num = uint64(int64(int32(v.num)))
			}
		case 8:
			v.num = binary.LittleEndian.Uint64(b)
		}
		return v, nil
	}
	switch t {
	case TypeString:
		s, err := d.str(key, at)
		if err != nil {
			return Value{}, err
		}
		return Value{typ: TypeString, str: s}, nil
	case TypeArray:
		return d.array(key, depth+1)
	}
	return Value{}, badf("key %q: unknown value type %d at offset %d", key, uint32(t), at)
}

// strLen reads and checks a string's length.
func (d *decoder) strLen(key string, at int) (uint64, error) {
	n, ok := d.u64()
	if !ok {
		return 0, badf("key %q: truncated string length at offset %d (file is %d bytes)", key, at, len(d.data))
	}
	if n > MaxStringLen {
		return 0, badf("key %q: string at offset %d is %d bytes long (limit %d)", key, at, n, MaxStringLen)
	}
	if n > d.left() {
		return 0, badf("key %q: string at offset %d: length %d exceeds the %d bytes left in the file", key, at, n, d.left())
	}
	return n, nil
}

func (d *decoder) str(key string, at int) (string, error) {
	n, err := d.strLen(key, at)
	if err != nil {
		return "", err
	}
	b, _ := d.bytes(n)
	return string(b), nil
}

// array reads an array's element type, count and elements. level is the
// array's own nesting level (1 for a top-level array).
func (d *decoder) array(key string, level int) (Value, error) {
	at := d.off
	et, ok := d.u32()
	if !ok {
		return Value{}, badf("key %q: truncated array header at offset %d (file is %d bytes)", key, at, len(d.data))
	}
	elem := ValueType(et)
	if !elem.valid() {
		return Value{}, badf("key %q: array at offset %d has unknown element type %d", key, at, et)
	}
	if elem == TypeArray && level >= MaxArrayDepth {
		return Value{}, badf("key %q: arrays nested deeper than %d at offset %d", key, MaxArrayDepth, at)
	}
	n, ok := d.u64()
	if !ok {
		return Value{}, badf("key %q: truncated array header at offset %d (file is %d bytes)", key, at, len(d.data))
	}
	if n > MaxArrayLen {
		return Value{}, badf("key %q: array at offset %d has %d elements (limit %d)", key, at, n, MaxArrayLen)
	}
	// Checked before allocating: n elements take at least n*minSize bytes.
	if min := elem.minSize(); n*min > d.left() {
		return Value{}, badf("key %q: array at offset %d of %d %v elements needs at least %d bytes, %d left in the file", key, at, n, elem, n*min, d.left())
	}
	v := Value{typ: TypeArray, elem: elem}
	count := int(n)
	if size := elem.fixedSize(); size > 0 {
		b, _ := d.bytes(n * uint64(size))
		switch elem {
		case TypeUint8:
			v.arr = slices.Clone(b)
		case TypeInt8:
			v.arr = decodeArray(b, count, 1, func(b []byte) int8 { return int8(b[0]) })
		case TypeBool:
			a := make([]bool, count)
			for i, c := range b {
				if c > 1 {
					return Value{}, badf("key %q: array element %d: bool value %d at offset %d (must be 0 or 1)", key, i, c, d.off-len(b)+i)
				}
				a[i] = c == 1
			}
			v.arr = a
		case TypeUint16:
			v.arr = decodeArray(b, count, 2, binary.LittleEndian.Uint16)
		case TypeInt16:
			v.arr = decodeArray(b, count, 2, func(b []byte) int16 { return int16(binary.LittleEndian.Uint16(b)) })
		case TypeUint32:
			v.arr = decodeArray(b, count, 4, binary.LittleEndian.Uint32)
		case TypeInt32:
			v.arr = decodeArray(b, count, 4, func(b []byte) int32 { return int32(binary.LittleEndian.Uint32(b)) })
		case TypeFloat32:
			v.arr = decodeArray(b, count, 4, func(b []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b)) })
		case TypeUint64:
			v.arr = decodeArray(b, count, 8, binary.LittleEndian.Uint64)
		case TypeInt64:
			v.arr = decodeArray(b, count, 8, func(b []byte) int64 { return int64(binary.LittleEndian.Uint64(b)) })
		case TypeFloat64:
			v.arr = decodeArray(b, count, 8, func(b []byte) float64 { return math.Float64frombits(binary.LittleEndian.Uint64(b)) })
		}
		return v, nil
	}
	if elem == TypeString {
		a, err := d.strings(key, count)
		if err != nil {
			return Value{}, err
		}
		v.arr = a
		return v, nil
	}
	a := make([]Value, count)
	for i := range a {
		e, err := d.array(key, level+1)
		if err != nil {
			return Value{}, err
		}
		a[i] = e
	}
	v.arr = a
	return v, nil
}

func decodeArray[T any](b []byte, n, size int, get func([]byte) T) []T {
	a := make([]T, n)
	for i := range a {
		a[i] = get(b[i*size:])
	}
	return a
}

// strings reads n strings. The first pass checks every length and finds the
// end; then the whole run (lengths included) becomes one Go string and each
// element is a substring of it: one allocation for a 150k-token vocabulary
// rather than 150k.
func (d *decoder) strings(key string, n int) ([]string, error) {
	start := d.off
	for i := 0; i < n; i++ {
		l, err := d.strLen(key, d.off)
		if err != nil {
			return nil, fmt.Errorf("%w (array element %d)", err, i)
		}
		d.off += int(l)
	}
	run := d.data[start:d.off]
	blob := string(run)
	a := make([]string, n)
	p := 0
	for i := range a {
		l := int(binary.LittleEndian.Uint64(run[p:]))
		a[i] = blob[p+8 : p+8+l]
		p += 8 + l
	}
	return a, nil
}

// parse decodes and validates the whole file.
func (f *File) parse() error {
	data := f.data
	if len(data) < headerSize {
		if len(data) >= 4 && string(data[:4]) != magic {
			return badf("magic %q at offset 0, want %q: not a GGUF file", data[:4], magic)
		}
		return badf("truncated header: file is %d bytes, a header is %d", len(data), headerSize)
	}
	if string(data[:4]) != magic {
		return badf("magic %q at offset 0, want %q: not a GGUF file", data[:4], magic)
	}
	d := &decoder{data: data, off: 4}
	f.Version, _ = d.u32()
	switch {
	case f.Version == 2 || f.Version == 3:
	case f.Version == 1:
		return badf("version 1 is not supported (only versions 2 and 3; convert the file with a current llama.cpp)")
	case f.Version != 0 && f.Version&0xffff == 0:
		return badf("version %#x: a big-endian file? only little-endian files are supported", f.Version)
	default:
		return badf("unsupported version %d (supported: 2, 3)", f.Version)
	}
	nTensors, _ := d.u64()
	nKV, _ := d.u64()
	if nTensors > MaxTensors {
		return badf("tensor_count %d at offset 8 exceeds the limit %d", nTensors, MaxTensors)
	}
	if nKV > MaxKVs {
		return badf("metadata_kv_count %d at offset 16 exceeds the limit %d", nKV, MaxKVs)
	}
	// Checked before allocating: each pair and tensor takes a minimum.
	if need := nKV*minKVSize + nTensors*minTensorLen; need > d.left() {
		return badf("%d metadata pairs and %d tensors need at least %d bytes, the file has %d after the header", nKV, nTensors, need, d.left())
	}

	f.kvs = make([]kv, 0, nKV)
	f.keys = make(map[string]int, nKV)
	for i := uint64(0); i < nKV; i++ {
		at := d.off
		key, err := d.name("key", i)
		if err != nil {
			return err
		}
		if _, dup := f.keys[key]; dup {
			return badf("duplicate key %q at offset %d", key, at)
		}
		t, ok := d.u32()
		if !ok {
			return badf("key %q: truncated value type at offset %d (file is %d bytes)", key, d.off, len(data))
		}
		v, err := d.value(key, ValueType(t), 0)
		if err != nil {
			return err
		}
		f.keys[key] = len(f.kvs)
		f.kvs = append(f.kvs, kv{key, v})
	}

	f.Alignment = DefaultAlignment
	if v, ok := f.Value(AlignmentKey); ok {
		if v.typ != TypeUint32 {
			return badf("key %s is %s, want uint32", AlignmentKey, v.TypeName())
		}
		a := v.num
		if a == 0 || a&(a-1) != 0 {
			return badf("key %s = %d is not a power of two", AlignmentKey, a)
		}
		f.Alignment = int64(a)
	}

	if err := f.parseTensors(d, nTensors); err != nil {
		return err
	}
	return f.checkTensors()
}

// parseTensors reads the tensor table and places the data section.
func (f *File) parseTensors(d *decoder, n uint64) error {
	f.Tensors = make([]TensorInfo, n)
	f.tensors = make(map[string]int, n)
	dims := make([]int64, 0, MaxDims*n)
	for i := range f.Tensors {
		at := d.off
		name, err := d.name("tensor name", uint64(i))
		if err != nil {
			return err
		}
		if j, dup := f.tensors[name]; dup {
			return badf("duplicate tensor name %q (tensors %d and %d, info at offset %d)", name, j, i, at)
		}
		trunc := func() error {
			return badf("tensor %q: truncated tensor info at offset %d (file is %d bytes)", name, at, len(d.data))
		}
		nd, ok := d.u32()
		if !ok {
			return trunc()
		}
		if nd < 1 || nd > MaxDims {
			return badf("tensor %q (info at offset %d) has %d dimensions, want 1 to %d", name, at, nd, MaxDims)
		}
		t := &f.Tensors[i]
		t.Name = name
		t.Dims = dims[len(dims) : len(dims)+int(nd) : len(dims)+int(nd)]
		dims = dims[:len(dims)+int(nd)]
		elements := int64(1)
		for j := range t.Dims {
			ne, ok := d.u64()
			if !ok {
				return trunc()
			}
			if ne < 1 || ne > MaxElements {
				return badf("tensor %q (info at offset %d): dimension %d is %d, want 1 to %d", name, at, j, ne, int64(MaxElements))
			}
			t.Dims[j] = int64(ne)
			if int64(ne) > MaxElements/elements {
				return badf("tensor %q (info at offset %d): shape %v has more than %d elements", name, at, t.Dims[:j+1], int64(MaxElements))
			}
			elements *= int64(ne)
		}
		typ, ok := d.u32()
		if !ok {
			return trunc()
		}
		t.Type = TensorType(typ)
		t.Size = -1
		if t.Type.Known() {
			if bs := int64(t.Type.BlockSize()); t.Dims[0]%bs != 0 {
				return badf("tensor %q (info at offset %d): %v rows of %d elements are not a whole number of %d-element blocks", name, at, t.Type, t.Dims[0], bs)
			}
			t.Size, _ = t.Type.RowBytes(elements) // fits: elements <= 2^50, blocks are < 2^9 bytes
		}
		off, ok := d.u64()
		if !ok {
			return trunc()
		}
		if off > uint64(len(d.data)) {
			return badf("tensor %q (info at offset %d): data offset %d is beyond the end of the file (%d bytes)", name, at, off, len(d.data))
		}
		if off%uint64(f.Alignment) != 0 {
			return badf("tensor %q (info at offset %d): data offset %d is not a multiple of the alignment %d", name, at, off, f.Alignment)
		}
		t.Offset = int64(off)
		f.tensors[name] = i
	}
	// The data section starts at the next alignment boundary.
	f.DataOffset = (int64(d.off) + f.Alignment - 1) &^ (f.Alignment - 1)
	if n > 0 && f.DataOffset > int64(len(d.data)) {
		return badf("truncated: the data section would start at offset %d, the file is %d bytes", f.DataOffset, len(d.data))
	}
	return nil
}

// checkTensors checks that every tensor's bytes lie inside the file and that
// no two tensors share bytes. A tensor of unknown type has an unknown
// length; it is taken as one byte long, which still catches two tensors at
// the same offset or one starting inside another.
func (f *File) checkTensors() error {
	dataLen := int64(len(f.data)) - f.DataOffset
	order := make([]int, len(f.Tensors))
	for i := range order {
		order[i] = i
		t := &f.Tensors[i]
		size := max(t.Size, 1)
		if t.Offset > dataLen || size > dataLen-t.Offset {
			if t.Size < 0 {
				return badf("tensor %q of unknown type %v starts at byte %d (data section offset %d + %d), beyond the end of the file (%d bytes)",
					t.Name, t.Type, f.DataOffset+t.Offset, f.DataOffset, t.Offset, len(f.data))
			}
			return badf("tensor %q: bytes %d to %d (data section offset %d + %d, %d bytes) lie beyond the end of the file (%d bytes)",
				t.Name, f.DataOffset+t.Offset, f.DataOffset+t.Offset+size, f.DataOffset, t.Offset, size, len(f.data))
		}
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(f.Tensors[a].Offset, f.Tensors[b].Offset) })
	var end int64
	for k, i := range order {
		t := &f.Tensors[i]
		if k > 0 && t.Offset < end {
			p := &f.Tensors[order[k-1]]
			for _, j := range order[:k] { // name the tensor it overlaps
				if q := &f.Tensors[j]; q.Offset+max(q.Size, 1) > t.Offset {
					p = q
				}
			}
			return badf("tensor %q (offset %d, %s) overlaps tensor %q (offset %d, %s)", t.Name, t.Offset, sizeText(t), p.Name, p.Offset, sizeText(p))
		}
		end = max(end, t.Offset+max(t.Size, 1))
	}
	return nil
}

func sizeText(t *TensorInfo) string {
	if t.Size < 0 {
		return "unknown size"
	}
	return fmt.Sprintf("%d bytes", t.Size)
}
