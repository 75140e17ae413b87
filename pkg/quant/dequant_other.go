//go:build purego || !amd64

package quant

func dequantQ8(dst []float32, dstStride int, src []byte, srcStride int, rows, nb int) {
	dequantQ8Go(dst, dstStride, src, srcStride, rows, nb)
}

func dequantQ4(dst []float32, dstStride int, src []byte, srcStride int, rows, nb int) {
	dequantQ4Go(dst, dstStride, src, srcStride, rows, nb)
}

func decodeF16Rows(dst []float32, dstStride int, src []byte, srcStride int, rows, n int) {
	decodeF16RowsGo(dst, dstStride, src, srcStride, rows, n)
}

// The assembly entry points, for the tests that compare the two families.
func dequantQ8Asm(dst []float32, dstStride int, src []byte, srcStride int, rows, nb int) {
	panic("quant: no assembly")
}
func dequantQ4Asm(dst []float32, dstStride int, src []byte, srcStride int, rows, nb int) {
	panic("quant: no assembly")
}
func decodeF16RowsAsm(dst []float32, dstStride int, src []byte, srcStride int, rows, n int) {
	panic("quant: no assembly")
}
