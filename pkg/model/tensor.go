package model

import (
	"fmt"

	"github.com/semantic-kv/semantic/pkg/gguf"
	"github.com/semantic-kv/semantic/pkg/quant"
)

// Tensor is a weight matrix of Rows rows of Cols elements, row-major [out][in]
// as in llama2.c: row i of Wq produces element i of q. Float32 weights live in
// F32; every other type keeps ggml's encoded rows in Data, usually a view
// into a memory-mapped GGUF file, so a quantized model is never expanded in
// memory.
type Tensor struct {
	Type       gguf.TensorType
	Rows, Cols int
	F32        []float32 // Type F32
	Data       []byte    // other types: Rows rows of RowBytes() bytes
}

// SupportedTypes are the weight types the engine multiplies with. Anything
// else is refused at load.
var SupportedTypes = []gguf.TensorType{gguf.TensorF32, gguf.TensorF16, gguf.TensorBF16, gguf.TensorQ8_0, gguf.TensorQ4_0,
	gguf.TensorQ4_K, gguf.TensorQ5_K, gguf.TensorQ6_K}

// codec decodes and encodes the rows of one encoded (non-F32) type: the
// one table Row, Quantize and IsSupported read.
type codec struct {
	decode func(dst []float32, src []byte)
	encode func(dst []byte, src []float32) // the reference quantizer
}

var codecs = map[gguf.TensorType]codec{
	gguf.TensorF16:  {quant.DecodeF16, encodeHalf(quant.F32ToF16)},
	gguf.TensorBF16: {quant.DecodeBF16, encodeHalf(quant.F32ToBF16)},
	gguf.TensorQ8_0: {quant.DequantizeQ8_0, quant.QuantizeQ8_0},
	gguf.TensorQ4_0: {quant.DequantizeQ4_0, quant.QuantizeQ4_0},
	gguf.TensorQ4_K: {quant.DequantizeQ4_K, quant.QuantizeQ4_K},
	gguf.TensorQ5_K: {quant.DequantizeQ5_K, quant.QuantizeQ5_K},
	gguf.TensorQ6_K: {quant.DequantizeQ6_K, quant.QuantizeQ6_K},
}

// encodeHalf writes each value as a little-endian 16-bit float.
func encodeHalf(conv func(float32) uint16) func(dst []byte, src []float32) {
	return func(dst []byte, src []float32) {
		for i, v := range src {
			h := conv(v)
			dst[2*i], dst[2*i+1] = byte(h), byte(h>>8)
		}
	}
}

// IsSupported reports whether the engine can multiply with type t.
func IsSupported(t gguf.TensorType) bool {
	_, ok := codecs[t]
	return ok || t == gguf.TensorF32
}

// IsQuantized reports whether t is a block-quantized type (multiplied with
// quantized activations, never decoded to float): Q8_0 and Q4_0, which take
// Q8_0 activations, and the K-quants (IsKQuant).
func IsQuantized(t gguf.TensorType) bool {
	return t == gguf.TensorQ8_0 || t == gguf.TensorQ4_0 || IsKQuant(t)
}

// IsKQuant reports whether t is one of the supported K-quants (Q4_K, Q5_K,
// Q6_K: 256-element super-blocks), which are multiplied with activations
// quantized to Q8_K super-blocks.
func IsKQuant(t gguf.TensorType) bool {
	return t == gguf.TensorQ4_K || t == gguf.TensorQ5_K || t == gguf.TensorQ6_K
}

// F32 wraps a float32 matrix.
func F32(rows, cols int, data []float32) Tensor {
	return Tensor{Type: gguf.TensorF32, Rows: rows, Cols: cols, F32: data}
}

// RowBytes is the encoded size of one row.
func (t *Tensor) RowBytes() int {
	n, err := t.Type.RowBytes(int64(t.Cols))
	if err != nil {
		return -1
	}
	return int(n)
}

// Len is the number of elements.
func (t *Tensor) Len() int { return t.Rows * t.Cols }

// Bytes is the tensor's encoded bytes (float32 little-endian for F32).
func (t *Tensor) Bytes() []byte {
	if t.Type == gguf.TensorF32 {
		return float32Bytes(t.F32)
	}
	return t.Data
}

// Check verifies that the tensor's storage matches its shape and type.
func (t *Tensor) Check(name string, rows, cols int) error {
	if t.Rows != rows || t.Cols != cols {
		return fmt.Errorf("%w: tensor %s is %dx%d, want %dx%d", ErrBadConfig, name, t.Rows, t.Cols, rows, cols)
	}
	if !IsSupported(t.Type) {
		return fmt.Errorf("%w: tensor %s has type %v (supported: %v)", ErrBadConfig, name, t.Type, SupportedTypes)
	}
	if t.Type == gguf.TensorF32 {
		if len(t.F32) != rows*cols {
			return fmt.Errorf("%w: tensor %s holds %d floats, want %d", ErrBadConfig, name, len(t.F32), rows*cols)
		}
		return nil
	}
	rb := t.RowBytes()
	if rb < 0 || len(t.Data) != rows*rb {
		return fmt.Errorf("%w: tensor %s holds %d bytes, want %d rows of %d", ErrBadConfig, name, len(t.Data), rows, rb)
	}
	return nil
}

// Row decodes row r into dst[:Cols] as float32 (the exact stored values:
// quantized rows are dequantized block by block, as ggml does).
func (t *Tensor) Row(dst []float32, r int) {
	dst = dst[:t.Cols]
	switch t.Type {
	case gguf.TensorF32:
		copy(dst, t.F32[r*t.Cols:(r+1)*t.Cols])
		return
	}
	c, ok := codecs[t.Type]
	if !ok {
		panic(fmt.Sprintf("model: Row of unsupported tensor type %v", t.Type))
	}
	rb := t.RowBytes()
	c.decode(dst, t.Data[r*rb:(r+1)*rb])
}

// Dequantize returns the whole tensor as float32, for tests and references.
func (t *Tensor) Dequantize() []float32 {
	out := make([]float32, t.Rows*t.Cols)
	for r := 0; r < t.Rows; r++ {
		t.Row(out[r*t.Cols:], r)
	}
	return out
}

// Quantize encodes a float32 tensor as typ with the reference algorithms
// (the same ones llama.cpp's quantizer uses without an importance matrix),
// for tests, benchmarks and the project's own quantized test files. The
// columns must be whole blocks of typ: a multiple of 32 for Q8_0 and Q4_0,
// of 256 for the K-quants.
func Quantize(src Tensor, typ gguf.TensorType) (Tensor, error) {
	if src.Type != gguf.TensorF32 {
		return Tensor{}, fmt.Errorf("%w: quantize from %v (want F32)", ErrBadConfig, src.Type)
	}
	out := Tensor{Type: typ, Rows: src.Rows, Cols: src.Cols}
	if typ == gguf.TensorF32 {
		out.F32 = append([]float32(nil), src.F32...)
		return out, nil
	}
	c, ok := codecs[typ]
	if !ok {
		return Tensor{}, fmt.Errorf("%w: quantize to %v (supported: %v)", ErrBadConfig, typ, SupportedTypes)
	}
	rb := out.RowBytes()
	if rb < 0 {
		return Tensor{}, fmt.Errorf("%w: %d columns is not a multiple of %v's block size %d", ErrBadConfig, src.Cols, typ, typ.BlockSize())
	}
	out.Data = make([]byte, src.Rows*rb)
	for r := 0; r < src.Rows; r++ {
		c.encode(out.Data[r*rb:(r+1)*rb], src.F32[r*src.Cols:(r+1)*src.Cols])
	}
	return out, nil
}

// bytes is the size of the tensor's weights as stored.
func (t *Tensor) bytes() int64 {
	if t.Type == gguf.TensorF32 {
		return 4 * int64(len(t.F32))
	}
	return int64(len(t.Data))
}
