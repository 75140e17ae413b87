package quant

import (
	"math/rand/v2"
	"testing"
)

// TestNoOutOfBoundsK is TestNoOutOfBounds for the K-quant kernels and the
// Q8_K quantizer: every buffer ends (or starts) at an inaccessible page, so
// an assembly read or write past the slices it was given faults.
func TestNoOutOfBoundsK(t *testing.T) {
	rng := rand.New(rand.NewPCG(33, 34))
	for _, atEnd := range []bool{true, false} {
		for _, k := range []int{256, 512, 4096} {
			nb := k / 256
			ab := nb * Q8_KBlockBytes
			for _, f := range kFamilies {
				bb := nb * f.t.blockBytes()
				for _, shape := range [][2]int{{1, 1}, {3, 1}, {5, 2}, {7, 3}, {9, 4}, {2, 5}, {13, 8}} {
					rows, n := shape[0], shape[1]
					x := guardedF32(t, n*k, atEnd)
					for i := range x {
						x[i] = float32(rng.NormFloat64())
					}
					a := guarded(t, n*ab, atEnd)
					QuantizeActivationsK(a, x)
					if haveAsm {
						quantizeQ8KAsm(a, x)
					}
					w := guarded(t, rows*bb, atEnd)
					for r := 0; r < rows; r++ {
						f.quantize(w[r*bb:(r+1)*bb], x[:k])
					}
					out := guardedF32(t, n*rows, atEnd)
					f.mat(k, rows, w, n, a, ab, out, rows)
					if haveAsm {
						matKAsm(f.t, nb, rows, w, n, a, ab, out, rows)
						_ = dotKAsm(f.t, nb, w[(rows-1)*bb:], a[(n-1)*ab:])
					}
					_ = f.dot(k, w[(rows-1)*bb:], a[(n-1)*ab:])
					d := guardedF32(t, k, atEnd)
					f.deq(d, w[:bb])
				}
			}
		}
	}
}
