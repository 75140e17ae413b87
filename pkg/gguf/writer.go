package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
)

// Writer builds a GGUF file: metadata in the order added, then tensors in
// the order added, each tensor's data aligned. It writes only what Parse
// accepts (every limit of the reader is enforced here too), which makes it
// the reference for this package's tests and the tool the project uses to
// make model files of random weights for tests and benchmarks.
//
// A Writer is not safe for concurrent use.
type Writer struct {
	version   uint32
	alignment int64
	kvs       []writerKV
	keys      map[string]bool
	tensors   []writerTensor
	names     map[string]bool
}

type writerKV struct {
	key     string
	typ     ValueType
	payload []byte // the encoded value, after its type
	align   bool   // general.alignment: written from Writer.alignment
}

type writerTensor struct {
	name string
	typ  TensorType
	dims []int64
	data []byte
}

// NewWriter returns an empty Writer for a version 3 file with the default
// alignment (32).
func NewWriter() *Writer {
	return &Writer{version: 3, alignment: DefaultAlignment, keys: map[string]bool{}, names: map[string]bool{}}
}

// SetVersion sets the file version, 2 or 3 (they differ only for big-endian
// files, which this package does not write). Another value makes WriteTo
// fail.
func (w *Writer) SetVersion(v uint32) { w.version = v }

// SetAlignment sets the alignment of the data section and of each tensor: a
// power of two that fits a uint32 (another value makes WriteTo fail). When
// it is not the default 32 the file gets a general.alignment key (after the
// keys added, unless one was added with AddKV: its value is then replaced).
func (w *Writer) SetAlignment(a int64) { w.alignment = a }

// AddKV adds a metadata pair. v is one of the Go types string, bool, uint8,
// int8, uint16, int16, uint32, int32, uint64, int64, float32, float64 (or a
// type defined on one of them); a slice of one of those for an array; a
// slice of slices ([][]int32, []any holding slices, ...) for nested arrays,
// at most MaxArrayDepth deep; or a Value read from a file. The elements of
// an array of scalars must all have the same type; an empty []any is an
// empty array of arrays. int and uint are refused (their size is not
// fixed), as is anything else.
//
// Adding general.alignment (a uint32 power of two) is the same as calling
// SetAlignment, except that the key is written where it was added.
func (w *Writer) AddKV(key string, v any) error {
	if key == "" {
		return errors.New("gguf: AddKV: empty key")
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("gguf: AddKV: key of %d bytes (limit %d)", len(key), MaxKeyLen)
	}
	if w.keys[key] {
		return fmt.Errorf("gguf: AddKV: duplicate key %q", key)
	}
	payload, typ, err := appendValue(nil, v, 0)
	if err != nil {
		return fmt.Errorf("gguf: AddKV %s: %w", key, err)
	}
	kv := writerKV{key: key, typ: typ, payload: payload}
	if key == AlignmentKey {
		a := uint64(0)
		if typ == TypeUint32 {
			a = uint64(binary.LittleEndian.Uint32(payload))
		}
		if typ != TypeUint32 || a == 0 || a&(a-1) != 0 {
			return fmt.Errorf("gguf: AddKV %s: want a uint32 power of two, got %v (%T)", key, v, v)
		}
		w.alignment = int64(a)
		kv.align = true
	}
	w.keys[key] = true
	w.kvs = append(w.kvs, kv)
	return nil
}

// AddTensor adds a tensor of type typ and shape dims (innermost first, as
// ggml's ne: a rows x cols matrix is {cols, rows}). data must hold exactly
// the tensor's bytes (typ.RowBytes of its element count) and the innermost
// dimension must be a whole number of blocks. data is not copied: it must
// not change until the file is written.
func (w *Writer) AddTensor(name string, typ TensorType, dims []int64, data []byte) error {
	if name == "" {
		return errors.New("gguf: AddTensor: empty name")
	}
	if len(name) > MaxKeyLen {
		return fmt.Errorf("gguf: AddTensor: name of %d bytes (limit %d)", len(name), MaxKeyLen)
	}
	if w.names[name] {
		return fmt.Errorf("gguf: AddTensor: duplicate tensor %q", name)
	}
	if !typ.Known() {
		return fmt.Errorf("gguf: AddTensor %s: unknown tensor type %v", name, typ)
	}
	if len(dims) < 1 || len(dims) > MaxDims {
		return fmt.Errorf("gguf: AddTensor %s: %d dimensions, want 1 to %d", name, len(dims), MaxDims)
	}
	n := int64(1)
	for _, d := range dims {
		if d < 1 || d > MaxElements/n {
			return fmt.Errorf("gguf: AddTensor %s: bad shape %v", name, dims)
		}
		n *= d
	}
	if dims[0]%int64(typ.BlockSize()) != 0 {
		return fmt.Errorf("gguf: AddTensor %s: innermost dimension %d is not a multiple of the %v block size %d", name, dims[0], typ, typ.BlockSize())
	}
	size, err := typ.RowBytes(n)
	if err != nil {
		return fmt.Errorf("gguf: AddTensor %s: %w", name, err)
	}
	if int64(len(data)) != size {
		return fmt.Errorf("gguf: AddTensor %s: %d bytes of data, want %d for %d %v elements", name, len(data), size, n, typ)
	}
	w.names[name] = true
	w.tensors = append(w.tensors, writerTensor{name, typ, append([]int64(nil), dims...), data})
	return nil
}

// WriteTo writes the file to out.
func (w *Writer) WriteTo(out io.Writer) (int64, error) {
	if w.version != 2 && w.version != 3 {
		return 0, fmt.Errorf("gguf: cannot write version %d (only 2 and 3)", w.version)
	}
	a := w.alignment
	if a <= 0 || a > math.MaxUint32 || a&(a-1) != 0 {
		return 0, fmt.Errorf("gguf: alignment %d is not a power of two that fits a uint32", a)
	}
	hasAlignKey := w.keys[AlignmentKey]
	nkv := len(w.kvs)
	if a != DefaultAlignment && !hasAlignKey {
		nkv++
	}
	cw := &countWriter{w: out}
	bw := bufio.NewWriterSize(cw, 1<<16)
	var scratch [8]byte
	u32 := func(v uint32) { binary.LittleEndian.PutUint32(scratch[:], v); bw.Write(scratch[:4]) }
	u64 := func(v uint64) { binary.LittleEndian.PutUint64(scratch[:], v); bw.Write(scratch[:8]) }
	str := func(s string) { u64(uint64(len(s))); bw.WriteString(s) }
	var zeros [4096]byte
	pad := func(n int64) { // zeros up to the next multiple of a
		for p := (a - n%a) % a; p > 0; p -= min(p, int64(len(zeros))) {
			bw.Write(zeros[:min(p, int64(len(zeros)))])
		}
	}
	bw.WriteString(magic)
	u32(w.version)
	u64(uint64(len(w.tensors)))
	u64(uint64(nkv))
	for _, kv := range w.kvs {
		str(kv.key)
		if kv.align {
			u32(uint32(TypeUint32))
			u32(uint32(a))
			continue
		}
		u32(uint32(kv.typ))
		bw.Write(kv.payload)
	}
	if a != DefaultAlignment && !hasAlignKey {
		str(AlignmentKey)
		u32(uint32(TypeUint32))
		u32(uint32(a))
	}
	var off int64
	for _, t := range w.tensors {
		str(t.name)
		u32(uint32(len(t.dims)))
		for _, d := range t.dims {
			u64(uint64(d))
		}
		u32(uint32(t.typ))
		u64(uint64(off))
		off += (int64(len(t.data)) + a - 1) &^ (a - 1)
	}
	// The data section starts aligned. A file without tensors has no data
	// section and no padding (as llama.cpp writes it), which also keeps a
	// huge alignment from costing a huge file.
	if len(w.tensors) > 0 {
		pad(cw.n + int64(bw.Buffered())) // every byte so far: flushed plus buffered
	}
	for _, t := range w.tensors {
		bw.Write(t.data)
		pad(int64(len(t.data)))
	}
	err := bw.Flush()
	return cw.n, err
}

// WriteFile writes the file to path through a temporary file in the same
// directory renamed over path at the end, so that a process that has the
// old file mapped keeps reading it unchanged (rewriting a mapped file in
// place would crash that process) and no half-written file is ever at
// path. The file is not fsynced.
func (w *Writer) WriteFile(path string) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = w.WriteTo(tmp); err != nil {
		return err
	}
	if err = tmp.Chmod(0o644); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// appendValue appends the encoding of v (without its type tag) to b and
// returns its type. depth is the number of arrays enclosing v.
func appendValue(b []byte, v any, depth int) ([]byte, ValueType, error) {
	switch x := v.(type) {
	case uint8:
		return append(b, x), TypeUint8, nil
	case int8:
		return append(b, byte(x)), TypeInt8, nil
	case bool:
		if x {
			return append(b, 1), TypeBool, nil
		}
		return append(b, 0), TypeBool, nil
	case uint16:
		return binary.LittleEndian.AppendUint16(b, x), TypeUint16, nil
	case int16:
		return binary.LittleEndian.AppendUint16(b, uint16(x)), TypeInt16, nil
	case uint32:
		return binary.LittleEndian.AppendUint32(b, x), TypeUint32, nil
	case int32:
		return binary.LittleEndian.AppendUint32(b, uint32(x)), TypeInt32, nil
	case float32:
		return binary.LittleEndian.AppendUint32(b, math.Float32bits(x)), TypeFloat32, nil
	case uint64:
		return binary.LittleEndian.AppendUint64(b, x), TypeUint64, nil
	case int64:
		return binary.LittleEndian.AppendUint64(b, uint64(x)), TypeInt64, nil
	case float64:
		return binary.LittleEndian.AppendUint64(b, math.Float64bits(x)), TypeFloat64, nil
	case string:
		if len(x) > MaxStringLen {
			return nil, 0, fmt.Errorf("string of %d bytes (limit %d)", len(x), MaxStringLen)
		}
		b = binary.LittleEndian.AppendUint64(b, uint64(len(x)))
		return append(b, x...), TypeString, nil
	case Value:
		return appendParsed(b, x, depth)
	// Arrays of scalars without reflection.
	case []uint8:
		return appendFixed(b, x, TypeUint8, depth, func(b []byte, v uint8) []byte { return append(b, v) })
	case []int32:
		return appendFixed(b, x, TypeInt32, depth, func(b []byte, v int32) []byte { return binary.LittleEndian.AppendUint32(b, uint32(v)) })
	case []uint32:
		return appendFixed(b, x, TypeUint32, depth, binary.LittleEndian.AppendUint32)
	case []float32:
		return appendFixed(b, x, TypeFloat32, depth, func(b []byte, v float32) []byte {
			return binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		})
	case []int8:
		return appendFixed(b, x, TypeInt8, depth, func(b []byte, v int8) []byte { return append(b, byte(v)) })
	case []bool:
		return appendFixed(b, x, TypeBool, depth, func(b []byte, v bool) []byte {
			if v {
				return append(b, 1)
			}
			return append(b, 0)
		})
	case []uint16:
		return appendFixed(b, x, TypeUint16, depth, binary.LittleEndian.AppendUint16)
	case []int16:
		return appendFixed(b, x, TypeInt16, depth, func(b []byte, v int16) []byte { return binary.LittleEndian.AppendUint16(b, uint16(v)) })
	case []uint64:
		return appendFixed(b, x, TypeUint64, depth, binary.LittleEndian.AppendUint64)
	case []int64:
		return appendFixed(b, x, TypeInt64, depth, func(b []byte, v int64) []byte { return binary.LittleEndian.AppendUint64(b, uint64(v)) })
	case []float64:
		return appendFixed(b, x, TypeFloat64, depth, func(b []byte, v float64) []byte {
			return binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
		})
	case []string:
		if err := checkArray(len(x), depth); err != nil {
			return nil, 0, err
		}
		b = appendArrayHeader(b, TypeString, len(x))
		for i, s := range x {
			if len(s) > MaxStringLen {
				return nil, 0, fmt.Errorf("element %d: string of %d bytes (limit %d)", i, len(s), MaxStringLen)
			}
			b = binary.LittleEndian.AppendUint64(b, uint64(len(s)))
			b = append(b, s...)
		}
		return b, TypeArray, nil
	case nil:
		return nil, 0, errors.New("nil value")
	}
	return appendReflect(b, reflect.ValueOf(v), depth)
}

func checkArray(n, depth int) error {
	if depth+1 > MaxArrayDepth {
		return fmt.Errorf("arrays nested deeper than %d", MaxArrayDepth)
	}
	if n > MaxArrayLen {
		return fmt.Errorf("array of %d elements (limit %d)", n, MaxArrayLen)
	}
	return nil
}

func appendArrayHeader(b []byte, elem ValueType, n int) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(elem))
	return binary.LittleEndian.AppendUint64(b, uint64(n))
}

func appendFixed[T any](b []byte, x []T, elem ValueType, depth int, put func([]byte, T) []byte) ([]byte, ValueType, error) {
	if err := checkArray(len(x), depth); err != nil {
		return nil, 0, err
	}
	b = appendArrayHeader(b, elem, len(x))
	for _, v := range x {
		b = put(b, v)
	}
	return b, TypeArray, nil
}

// appendReflect encodes the remaining kinds: types defined on the scalar
// types, and slices of anything appendValue takes.
func appendReflect(b []byte, rv reflect.Value, depth int) ([]byte, ValueType, error) {
	switch rv.Kind() {
	case reflect.Bool:
		return appendValue(b, rv.Bool(), depth)
	case reflect.Int8:
		return appendValue(b, int8(rv.Int()), depth)
	case reflect.Int16:
		return appendValue(b, int16(rv.Int()), depth)
	case reflect.Int32:
		return appendValue(b, int32(rv.Int()), depth)
	case reflect.Int64:
		return appendValue(b, rv.Int(), depth)
	case reflect.Uint8:
		return appendValue(b, uint8(rv.Uint()), depth)
	case reflect.Uint16:
		return appendValue(b, uint16(rv.Uint()), depth)
	case reflect.Uint32:
		return appendValue(b, uint32(rv.Uint()), depth)
	case reflect.Uint64:
		return appendValue(b, rv.Uint(), depth)
	case reflect.Float32:
		return appendValue(b, float32(rv.Float()), depth)
	case reflect.Float64:
		return appendValue(b, rv.Float(), depth)
	case reflect.String:
		return appendValue(b, rv.String(), depth)
	case reflect.Int, reflect.Uint, reflect.Uintptr:
		return nil, 0, fmt.Errorf("type %v has no fixed size: use int32, int64, uint32 or uint64", rv.Type())
	case reflect.Slice:
		n := rv.Len()
		if err := checkArray(n, depth); err != nil {
			return nil, 0, err
		}
		hdr := len(b)
		b = appendArrayHeader(b, TypeArray, n)
		var elem ValueType
		if n == 0 {
			et := rv.Type().Elem()
			if et.Kind() == reflect.Interface {
				return b, TypeArray, nil // []any{}: an empty array of arrays
			}
			// The element type of an empty slice is its zero value's.
			_, t, err := appendValue(nil, reflect.Zero(et).Interface(), depth+1)
			if err != nil {
				return nil, 0, err
			}
			elem = t
		}
		for i := 0; i < n; i++ {
			var t ValueType
			var err error
			if b, t, err = appendValue(b, rv.Index(i).Interface(), depth+1); err != nil {
				return nil, 0, fmt.Errorf("element %d: %w", i, err)
			}
			if i == 0 {
				elem = t
			} else if t != elem {
				return nil, 0, fmt.Errorf("element %d is %v, element 0 is %v: array elements must have one type", i, t, elem)
			}
		}
		binary.LittleEndian.PutUint32(b[hdr:], uint32(elem))
		return b, TypeArray, nil
	}
	return nil, 0, fmt.Errorf("unsupported type %v", rv.Type())
}

// appendParsed encodes a Value read from a file.
func appendParsed(b []byte, v Value, depth int) ([]byte, ValueType, error) {
	if v.typ != TypeArray {
		if !v.typ.valid() {
			return nil, 0, fmt.Errorf("invalid value type %v", v.typ)
		}
		return appendValue(b, v.Any(), depth)
	}
	a, ok := v.arr.([]Value)
	if !ok {
		return appendValue(b, v.arr, depth)
	}
	if err := checkArray(len(a), depth); err != nil {
		return nil, 0, err
	}
	b = appendArrayHeader(b, TypeArray, len(a))
	for i, e := range a {
		var t ValueType
		var err error
		if b, t, err = appendParsed(b, e, depth+1); err != nil {
			return nil, 0, err
		}
		if t != TypeArray {
			return nil, 0, fmt.Errorf("element %d of an array of arrays is %v", i, t)
		}
	}
	return b, TypeArray, nil
}
