package quant

import "testing"

// TestDequantizeNoOutOfBounds: the strided decoders read and write only
// inside their slices (buffers that end or start at an inaccessible page).
func TestDequantizeNoOutOfBounds(t *testing.T) {
	for _, atEnd := range []bool{true, false} {
		for _, shape := range [][2]int{{1, 1}, {1, 4}, {3, 1}, {16, 4}, {5, 3}} {
			rows, nb := shape[0], shape[1]
			ldd := nb*BlockSize + 3
			dst := guardedF32(t, (rows-1)*ldd+nb*BlockSize, atEnd)
			for _, bb := range []int{Q8_0BlockBytes, Q4_0BlockBytes} {
				lds := nb*bb + 5
				src := guarded(t, (rows-1)*lds+nb*bb, atEnd)
				if bb == Q8_0BlockBytes {
					DequantizeQ8_0Rows(dst, ldd, src, lds, rows, nb)
				} else {
					DequantizeQ4_0Rows(dst, ldd, src, lds, rows, nb)
				}
			}
			src := guarded(t, 2*nb*BlockSize, atEnd)
			DecodeF16Rows(dst, 0, src, 0, 1, nb*BlockSize)
		}
	}
}
