package gguf

import (
	"fmt"
	"math"
)

// ValueType is the type tag of a metadata value (gguf_type in llama.cpp).
type ValueType uint32

// The metadata value types. The numbers are part of the file format.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

var valueTypeNames = [...]string{
	TypeUint8: "uint8", TypeInt8: "int8", TypeUint16: "uint16", TypeInt16: "int16",
	TypeUint32: "uint32", TypeInt32: "int32", TypeFloat32: "float32", TypeBool: "bool",
	TypeString: "string", TypeArray: "array", TypeUint64: "uint64", TypeInt64: "int64",
	TypeFloat64: "float64",
}

// String is the type's name ("uint32", "string", "array", ...), or
// "valuetype(N)" for a number the format does not define.
func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("valuetype(%d)", uint32(t))
}

// valid reports whether t is one of the 13 types of the format.
func (t ValueType) valid() bool { return t <= TypeFloat64 }

// fixedSize is the encoded size of a scalar of type t: 0 for STRING and
// ARRAY, whose size depends on their contents.
func (t ValueType) fixedSize() int {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	}
	return 0
}

// minSize is the fewest bytes one value of type t can take in a file: what
// an array count is checked against before anything is allocated. A string
// is at least its 8-byte length; a nested array at least its 4-byte element
// type and 8-byte count.
func (t ValueType) minSize() uint64 {
	switch t {
	case TypeString:
		return 8
	case TypeArray:
		return 12
	}
	return uint64(t.fixedSize())
}

func (t ValueType) isInteger() bool {
	switch t {
	case TypeUint8, TypeInt8, TypeUint16, TypeInt16, TypeUint32, TypeInt32, TypeUint64, TypeInt64:
		return true
	}
	return false
}

func (t ValueType) isSigned() bool {
	return t == TypeInt8 || t == TypeInt16 || t == TypeInt32 || t == TypeInt64
}

// TensorType is a ggml tensor type id (enum ggml_type).
type TensorType uint32

// The ggml tensor types. The numbers are part of the file format; the gaps
// (4, 5, 31-33, 36-38) are types ggml has removed.
const (
	TensorF32     TensorType = 0
	TensorF16     TensorType = 1
	TensorQ4_0    TensorType = 2
	TensorQ4_1    TensorType = 3
	TensorQ5_0    TensorType = 6
	TensorQ5_1    TensorType = 7
	TensorQ8_0    TensorType = 8
	TensorQ8_1    TensorType = 9
	TensorQ2_K    TensorType = 10
	TensorQ3_K    TensorType = 11
	TensorQ4_K    TensorType = 12
	TensorQ5_K    TensorType = 13
	TensorQ6_K    TensorType = 14
	TensorQ8_K    TensorType = 15
	TensorIQ2_XXS TensorType = 16
	TensorIQ2_XS  TensorType = 17
	TensorIQ3_XXS TensorType = 18
	TensorIQ1_S   TensorType = 19
	TensorIQ4_NL  TensorType = 20
	TensorIQ3_S   TensorType = 21
	TensorIQ2_S   TensorType = 22
	TensorIQ4_XS  TensorType = 23
	TensorI8      TensorType = 24
	TensorI16     TensorType = 25
	TensorI32     TensorType = 26
	TensorI64     TensorType = 27
	TensorF64     TensorType = 28
	TensorIQ1_M   TensorType = 29
	TensorBF16    TensorType = 30
	TensorTQ1_0   TensorType = 34
	TensorTQ2_0   TensorType = 35
	TensorMXFP4   TensorType = 39
)

// typeTraits is ggml's type_traits table: the name, the elements per block
// and the bytes per block of every type this package knows.
var typeTraits = map[TensorType]struct {
	name        string
	block, size int
}{
	TensorF32:     {"F32", 1, 4},
	TensorF16:     {"F16", 1, 2},
	TensorQ4_0:    {"Q4_0", 32, 18},
	TensorQ4_1:    {"Q4_1", 32, 20},
	TensorQ5_0:    {"Q5_0", 32, 22},
	TensorQ5_1:    {"Q5_1", 32, 24},
	TensorQ8_0:    {"Q8_0", 32, 34},
	TensorQ8_1:    {"Q8_1", 32, 36},
	TensorQ2_K:    {"Q2_K", 256, 84},
	TensorQ3_K:    {"Q3_K", 256, 110},
	TensorQ4_K:    {"Q4_K", 256, 144},
	TensorQ5_K:    {"Q5_K", 256, 176},
	TensorQ6_K:    {"Q6_K", 256, 210},
	TensorQ8_K:    {"Q8_K", 256, 292},
	TensorIQ2_XXS: {"IQ2_XXS", 256, 66},
	TensorIQ2_XS:  {"IQ2_XS", 256, 74},
	TensorIQ3_XXS: {"IQ3_XXS", 256, 98},
	TensorIQ1_S:   {"IQ1_S", 256, 50},
	TensorIQ4_NL:  {"IQ4_NL", 32, 18},
	TensorIQ3_S:   {"IQ3_S", 256, 110},
	TensorIQ2_S:   {"IQ2_S", 256, 82},
	TensorIQ4_XS:  {"IQ4_XS", 256, 136},
	TensorI8:      {"I8", 1, 1},
	TensorI16:     {"I16", 1, 2},
	TensorI32:     {"I32", 1, 4},
	TensorI64:     {"I64", 1, 8},
	TensorF64:     {"F64", 1, 8},
	TensorIQ1_M:   {"IQ1_M", 256, 56},
	TensorBF16:    {"BF16", 1, 2},
	TensorTQ1_0:   {"TQ1_0", 256, 54},
	TensorTQ2_0:   {"TQ2_0", 256, 66},
	TensorMXFP4:   {"MXFP4", 32, 17},
}

// String is the type's name as llama.cpp's tools print it, upper case
// ("F32", "Q8_0", "Q4_K", ...), or "type(N)" for a type this package does
// not know.
func (t TensorType) String() string {
	if tr, ok := typeTraits[t]; ok {
		return tr.name
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// Known reports whether this package knows t's block layout (and so can size
// a tensor of type t).
func (t TensorType) Known() bool {
	_, ok := typeTraits[t]
	return ok
}

// BlockSize is the number of elements in one block of t: 1 for the plain
// types (F32, F16, BF16, I8...), 32 for Q4_0/Q8_0 and the other legacy
// quants, 256 for the K-quants. It is 0 for an unknown type.
func (t TensorType) BlockSize() int { return typeTraits[t].block }

// BlockBytes is the size in bytes of one block of t (Q8_0: 34, Q4_0: 18,
// Q4_K: 144, Q6_K: 210, F32: 4, ...). It is 0 for an unknown type.
func (t TensorType) BlockBytes() int { return typeTraits[t].size }

// RowBytes is the size in bytes of n consecutive elements of type t. Only
// whole blocks can be stored, so n must be a multiple of t.BlockSize(); an
// unknown type, a negative n or a size that does not fit an int64 is an
// error too.
func (t TensorType) RowBytes(n int64) (int64, error) {
	tr, ok := typeTraits[t]
	if !ok {
		return 0, fmt.Errorf("gguf: tensor type %v has an unknown block layout", t)
	}
	if n < 0 {
		return 0, fmt.Errorf("gguf: negative element count %d", n)
	}
	if n%int64(tr.block) != 0 {
		return 0, fmt.Errorf("gguf: %d elements of %v: not a multiple of the block size %d", n, t, tr.block)
	}
	blocks := n / int64(tr.block)
	if blocks > math.MaxInt64/int64(tr.size) {
		return 0, fmt.Errorf("gguf: %d elements of %v: size overflows", n, t)
	}
	return blocks * int64(tr.size), nil
}
