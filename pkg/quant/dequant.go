package quant

import (
	"encoding/binary"
	"fmt"
)

// DequantizeQ8_0Rows decodes rows runs of nb consecutive Q8_0 blocks: run r
// starts at src[r*srcStride] (bytes) and becomes the 32*nb elements at
// dst[r*dstStride] (elements), each the product DequantizeQ8_0 gives (it is
// this function with one run). It is how the engine reads one head's slice
// of a quantized KV page, so on amd64 it is AVX2 assembly; both families
// give the same bits for every input (a float32 multiply is correctly
// rounded, and NaN scales give the same quiet NaN).
func DequantizeQ8_0Rows(dst []float32, dstStride int, src []byte, srcStride int, rows, nb int) {
	checkRuns("DequantizeQ8_0Rows", len(dst), dstStride, len(src), srcStride, rows, nb*BlockSize, nb*Q8_0BlockBytes)
	if rows > 0 && nb > 0 {
		dequantQ8(dst, dstStride, src, srcStride, rows, nb)
	}
}

// DequantizeQ4_0Rows is DequantizeQ8_0Rows for Q4_0 blocks (DequantizeQ4_0
// is it with one run).
func DequantizeQ4_0Rows(dst []float32, dstStride int, src []byte, srcStride int, rows, nb int) {
	checkRuns("DequantizeQ4_0Rows", len(dst), dstStride, len(src), srcStride, rows, nb*BlockSize, nb*Q4_0BlockBytes)
	if rows > 0 && nb > 0 {
		dequantQ4(dst, dstStride, src, srcStride, rows, nb)
	}
}

// DecodeF16Rows converts rows runs of n little-endian halves, run r at
// src[r*srcStride] (bytes), to float32 at dst[r*dstStride] (elements), as
// DecodeF16 does (AVX2 on amd64, the same bits).
func DecodeF16Rows(dst []float32, dstStride int, src []byte, srcStride int, rows, n int) {
	checkRuns("DecodeF16Rows", len(dst), dstStride, len(src), srcStride, rows, n, 2*n)
	if rows > 0 && n > 0 {
		decodeF16Rows(dst, dstStride, src, srcStride, rows, n)
	}
}

func decodeF16RowsGo(dst []float32, dstStride int, src []byte, srcStride int, rows, n int) {
	for r := 0; r < rows; r++ {
		decodeF16Go(dst[r*dstStride:r*dstStride+n], src[r*srcStride:r*srcStride+2*n])
	}
}

// checkRuns validates a strided decode of rows runs, each of elems output
// elements from bytes input bytes: the strides must not make runs overlap
// and both slices must hold the last run.
func checkRuns(name string, ndst, dstStride, nsrc, srcStride, rows, elems, bytes int) {
	if elems < 0 || rows < 0 || (rows > 1 && (dstStride < elems || srcStride < bytes)) {
		panic(fmt.Sprintf("quant: %s: %d runs of %d elements, strides %d and %d", name, rows, elems, dstStride, srcStride))
	}
	if rows == 0 || elems == 0 {
		return
	}
	if needD, needS := (rows-1)*dstStride+elems, (rows-1)*srcStride+bytes; ndst < needD || nsrc < needS {
		panic(fmt.Sprintf("quant: %s: %d runs of %d elements need %d elements and %d bytes, have %d and %d", name, rows, elems, needD, needS, ndst, nsrc))
	}
}

// dequantQ8Go is the pure-Go Q8_0 decoder: y = float32(q) * d.
func dequantQ8Go(dst []float32, dstStride int, src []byte, srcStride int, rows, nb int) {
	for r := 0; r < rows; r++ {
		for b := 0; b < nb; b++ {
			o := r*srcStride + b*Q8_0BlockBytes
			x := src[o : o+Q8_0BlockBytes : o+Q8_0BlockBytes]
			y := dst[r*dstStride+b*BlockSize : r*dstStride+(b+1)*BlockSize]
			d := F16ToF32(binary.LittleEndian.Uint16(x))
			q := x[2:34]
			for i := range y {
				y[i] = float32(int8(q[i])) * d
			}
		}
	}
}

// dequantQ4Go is the pure-Go Q4_0 decoder: element j < 16 is the low nibble
// of byte j, element j+16 its high nibble, each minus 8, times d.
func dequantQ4Go(dst []float32, dstStride int, src []byte, srcStride int, rows, nb int) {
	for r := 0; r < rows; r++ {
		for b := 0; b < nb; b++ {
			o := r*srcStride + b*Q4_0BlockBytes
			x := src[o : o+Q4_0BlockBytes : o+Q4_0BlockBytes]
			y := dst[r*dstStride+b*BlockSize : r*dstStride+(b+1)*BlockSize]
			d := F16ToF32(binary.LittleEndian.Uint16(x))
			q := x[2:18]
			for j := 0; j < 16; j++ {
				y[j] = float32(int32(q[j]&0x0f)-8) * d
				y[j+16] = float32(int32(q[j]>>4)-8) * d
			}
		}
	}
}
