//go:build !purego

package quant

// The Q8_0/Q4_0 decoders (dequant_amd64.s): rows runs of nb >= 1 blocks,
// strides in bytes on both sides. The Go drivers check every length first.

//go:noescape
func dequantQ8Run(rows, nb int, dst *float32, ldd int, src *byte, lds int)

//go:noescape
func dequantQ4Run(rows, nb int, dst *float32, ldd int, src *byte, lds int)

//go:noescape
func decodeF16Run(rows, n8 int, dst *float32, ldd int, src *byte, lds int)

func dequantQ8(dst []float32, dstStride int, src []byte, srcStride int, rows, nb int) {
	if haveAsm {
		dequantQ8Asm(dst, dstStride, src, srcStride, rows, nb)
		return
	}
	dequantQ8Go(dst, dstStride, src, srcStride, rows, nb)
}

func dequantQ4(dst []float32, dstStride int, src []byte, srcStride int, rows, nb int) {
	if haveAsm {
		dequantQ4Asm(dst, dstStride, src, srcStride, rows, nb)
		return
	}
	dequantQ4Go(dst, dstStride, src, srcStride, rows, nb)
}

func dequantQ8Asm(dst []float32, dstStride int, src []byte, srcStride int, rows, nb int) {
	_ = dst[(rows-1)*dstStride+nb*BlockSize-1]
	_ = src[(rows-1)*srcStride+nb*Q8_0BlockBytes-1]
	dequantQ8Run(rows, nb, &dst[0], 4*dstStride, &src[0], srcStride)
}

func dequantQ4Asm(dst []float32, dstStride int, src []byte, srcStride int, rows, nb int) {
	_ = dst[(rows-1)*dstStride+nb*BlockSize-1]
	_ = src[(rows-1)*srcStride+nb*Q4_0BlockBytes-1]
	dequantQ4Run(rows, nb, &dst[0], 4*dstStride, &src[0], srcStride)
}

func decodeF16Rows(dst []float32, dstStride int, src []byte, srcStride int, rows, n int) {
	if haveAsm {
		decodeF16RowsAsm(dst, dstStride, src, srcStride, rows, n)
		return
	}
	decodeF16RowsGo(dst, dstStride, src, srcStride, rows, n)
}

// decodeF16RowsAsm converts the multiple-of-8 prefix of every run in
// assembly and the rest in Go (the bits are the same either way).
func decodeF16RowsAsm(dst []float32, dstStride int, src []byte, srcStride int, rows, n int) {
	if n8 := n / 8; n8 > 0 {
		_ = dst[(rows-1)*dstStride+8*n8-1]
		_ = src[(rows-1)*srcStride+16*n8-1]
		decodeF16Run(rows, n8, &dst[0], 4*dstStride, &src[0], srcStride)
	}
	if n%8 != 0 {
		for r := 0; r < rows; r++ {
			decodeF16Go(dst[r*dstStride+n&^7:r*dstStride+n], src[r*srcStride+2*(n&^7):r*srcStride+2*n])
		}
	}
}
