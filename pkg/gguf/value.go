package gguf

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Value is one metadata value: a scalar, or an array of scalars or of
// arrays. It is immutable and safe to copy; it never refers into the file's
// mapping, so it stays valid after File.Close.
//
// Arrays are kept as typed Go slices decoded once at parse time ([]float32
// for FLOAT32, []string for STRING, ...), so the 100k-150k element
// vocabularies of real models cost one slice each, and the strings of a
// string array share a single allocation. Only nested arrays hold []Value.
type Value struct {
	typ  ValueType
	elem ValueType // element type of an array
	num  uint64    // integers (signed ones sign-extended), bool 0/1, float bits (float32 in the low 32)
	str  string
	arr  any // []uint8, []int8, []uint16, []int16, []uint32, []int32, []float32, []bool, []string, []uint64, []int64, []float64 or []Value
}

// Type is the value's type (TypeArray for an array).
func (v Value) Type() ValueType { return v.typ }

// ElemType is the type of an array's elements (TypeArray for an array of
// arrays); it is meaningless for a scalar.
func (v Value) ElemType() ValueType { return v.elem }

// IsArray reports whether v is an array.
func (v Value) IsArray() bool { return v.typ == TypeArray }

// Len is the number of elements of an array, 0 for a scalar.
func (v Value) Len() int {
	switch a := v.arr.(type) {
	case nil:
		return 0
	case []uint8:
		return len(a)
	case []int8:
		return len(a)
	case []uint16:
		return len(a)
	case []int16:
		return len(a)
	case []uint32:
		return len(a)
	case []int32:
		return len(a)
	case []float32:
		return len(a)
	case []bool:
		return len(a)
	case []string:
		return len(a)
	case []uint64:
		return len(a)
	case []int64:
		return len(a)
	case []float64:
		return len(a)
	case []Value:
		return len(a)
	}
	return 0
}

// TypeName describes the value's type for messages: "uint32", "string",
// "array of string", "array of array of int32"...
func (v Value) TypeName() string {
	if v.typ != TypeArray {
		return v.typ.String()
	}
	if v.elem == TypeArray {
		if a, ok := v.arr.([]Value); ok && len(a) > 0 {
			return "array of " + a[0].TypeName()
		}
	}
	return "array of " + v.elem.String()
}

// AsString is the value of a STRING.
func (v Value) AsString() (string, bool) {
	if v.typ != TypeString {
		return "", false
	}
	return v.str, true
}

// AsBool is the value of a BOOL.
func (v Value) AsBool() (bool, bool) {
	if v.typ != TypeBool {
		return false, false
	}
	return v.num != 0, true
}

// AsUint is the value of any integer type, if it is not negative.
func (v Value) AsUint() (uint64, bool) {
	if !v.typ.isInteger() || (v.typ.isSigned() && int64(v.num) < 0) {
		return 0, false
	}
	return v.num, true
}

// AsInt is the value of any integer type, if it fits an int64.
func (v Value) AsInt() (int64, bool) {
	if !v.typ.isInteger() || (v.typ == TypeUint64 && v.num > math.MaxInt64) {
		return 0, false
	}
	return int64(v.num), true
}

// AsFloat is the value of a FLOAT32 or FLOAT64, or of any integer type
// (converted, possibly rounded).
func (v Value) AsFloat() (float64, bool) {
	switch {
	case v.typ == TypeFloat32:
		return float64(math.Float32frombits(uint32(v.num))), true
	case v.typ == TypeFloat64:
		return math.Float64frombits(v.num), true
	case v.typ.isSigned():
		return float64(int64(v.num)), true
	case v.typ.isInteger():
		return float64(v.num), true
	}
	return 0, false
}

// AsStrings is a copy of an ARRAY of STRING (the caller owns it).
func (v Value) AsStrings() ([]string, bool) {
	a, ok := v.arr.([]string)
	if !ok {
		return nil, false
	}
	return slices.Clone(a), true
}

// AsFloat32s is an ARRAY of FLOAT32 (copied), or of FLOAT64 (converted).
func (v Value) AsFloat32s() ([]float32, bool) {
	switch a := v.arr.(type) {
	case []float32:
		return slices.Clone(a), true
	case []float64:
		out := make([]float32, len(a))
		for i, x := range a {
			out[i] = float32(x)
		}
		return out, true
	}
	return nil, false
}

// AsInts is an ARRAY of any integer type as int64s. It fails (returning the
// index of the first offender) when a UINT64 element does not fit an int64.
func (v Value) AsInts() ([]int64, int, bool) {
	switch a := v.arr.(type) {
	case []uint8:
		return convertInts(a), -1, true
	case []int8:
		return convertInts(a), -1, true
	case []uint16:
		return convertInts(a), -1, true
	case []int16:
		return convertInts(a), -1, true
	case []uint32:
		return convertInts(a), -1, true
	case []int32:
		return convertInts(a), -1, true
	case []int64:
		return slices.Clone(a), -1, true
	case []uint64:
		for i, x := range a {
			if x > math.MaxInt64 {
				return nil, i, false
			}
		}
		return convertInts(a), -1, true
	}
	return nil, -1, false
}

func convertInts[T uint8 | int8 | uint16 | int16 | uint32 | int32 | uint64](a []T) []int64 {
	out := make([]int64, len(a))
	for i, x := range a {
		out[i] = int64(x)
	}
	return out
}

// Array is the elements of an array as Values (nil for a scalar). For an
// array of scalars it allocates a Value per element: prefer the typed
// accessors (AsStrings, AsFloat32s, AsInts) for big arrays.
func (v Value) Array() []Value {
	if v.typ != TypeArray {
		return nil
	}
	if a, ok := v.arr.([]Value); ok {
		return slices.Clone(a)
	}
	n := v.Len()
	out := make([]Value, n)
	for i := range out {
		out[i] = v.index(i)
	}
	return out
}

// index is element i of an array of scalars as a Value.
func (v Value) index(i int) Value {
	e := Value{typ: v.elem}
	switch a := v.arr.(type) {
	case []uint8:
		e.num = uint64(a[i])
	case []int8:
		e.num = uint64(int64(a[i]))
	case []uint16:
		e.num = uint64(a[i])
	case []int16:
		e.num = uint64(int64(a[i]))
	case []uint32:
		e.num = uint64(a[i])
	case []int32:
		e.num = uint64(int64(a[i]))
	case []float32:
		e.num = uint64(math.Float32bits(a[i]))
	case []bool:
		if a[i] {
			e.num = 1
		}
	case []string:
		e.str = a[i]
	case []uint64:
		e.num = a[i]
	case []int64:
		e.num = uint64(a[i])
	case []float64:
		e.num = math.Float64bits(a[i])
	case []Value:
		return a[i]
	}
	return e
}

// Any is the value as a plain Go value: uint8, int8, uint16, int16, uint32,
// int32, float32, bool, string, uint64, int64 or float64 for a scalar; a
// slice of one of those for an array of scalars (a copy: the caller owns
// it); []any for an array of arrays. Writer.AddKV accepts every result, so
// metadata can be copied from one file to another.
func (v Value) Any() any {
	switch v.typ {
	case TypeUint8:
		return uint8(v.num)
	case TypeInt8:
		return int8(v.num)
	case TypeUint16:
		return uint16(v.num)
	case TypeInt16:
		return int16(v.num)
	case TypeUint32:
		return uint32(v.num)
	case TypeInt32:
		return int32(v.num)
	case TypeFloat32:
		return math.Float32frombits(uint32(v.num))
	case TypeBool:
		return v.num != 0
	case TypeString:
		return v.str
	case TypeUint64:
		return v.num
	case TypeInt64:
		return int64(v.num)
	case TypeFloat64:
		return math.Float64frombits(v.num)
	case TypeArray:
		switch a := v.arr.(type) {
		case []uint8:
			return slices.Clone(a)
		case []int8:
			return slices.Clone(a)
		case []uint16:
			return slices.Clone(a)
		case []int16:
			return slices.Clone(a)
		case []uint32:
			return slices.Clone(a)
		case []int32:
			return slices.Clone(a)
		case []float32:
			return slices.Clone(a)
		case []bool:
			return slices.Clone(a)
		case []string:
			return slices.Clone(a)
		case []uint64:
			return slices.Clone(a)
		case []int64:
			return slices.Clone(a)
		case []float64:
			return slices.Clone(a)
		case []Value:
			out := make([]any, len(a))
			for i, e := range a {
				out[i] = e.Any()
			}
			return out
		}
	}
	return nil
}

// String formats the value for people: strings quoted, arrays shortened to
// their first elements and their length.
func (v Value) String() string {
	if v.typ == TypeString {
		return fmt.Sprintf("%q", v.str)
	}
	if v.typ != TypeArray {
		return fmt.Sprint(v.Any())
	}
	const show = 8
	n := v.Len()
	var sb strings.Builder
	sb.WriteByte('[')
	for i := 0; i < n && i < show; i++ {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(v.index(i).String())
	}
	if n > show {
		fmt.Fprintf(&sb, " ... (%d elements)", n)
	}
	sb.WriteByte(']')
	return sb.String()
}
