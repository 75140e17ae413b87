//go:build !purego

package quant

import "golang.org/x/sys/cpu"

// haveAsm selects the kernel family once for the life of the process (both
// compute the same bits; the assembly is faster). The kernels need AVX2 and
// F16C (the float16 scales are converted with VCVTPH2PS and the activation
// scales rounded with VCVTPS2PH). This x/sys/cpu version does not report
// F16C, so it is read from CPUID leaf 1 (ECX bit 29); the OS support for YMM
// state is covered by HasAVX.
var haveAsm = cpu.X86.HasAVX && cpu.X86.HasAVX2 && cpuidECX1()&(1<<29) != 0

func quantizeQ8(dst []byte, src []float32) {
	if haveAsm {
		quantizeQ8Asm(dst, src)
		return
	}
	quantizeQ8Go(dst, src)
}

func dotQ8(nb int, w, a []byte) float32 {
	if haveAsm {
		return dotQ8Asm(nb, w, a)
	}
	return dotQ8Go(nb, w, a)
}

func dotQ4(nb int, w, a []byte) float32 {
	if haveAsm {
		return dotQ4Asm(nb, w, a)
	}
	return dotQ4Go(nb, w, a)
}

func matQ8(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
	if haveAsm {
		matQ8Asm(nb, rows, w, n, a, lda, out, ldo)
		return
	}
	matQ8Go(nb, rows, w, n, a, lda, out, ldo)
}

func matQ4(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
	if haveAsm {
		matQ4Asm(nb, rows, w, n, a, lda, out, ldo)
		return
	}
	matQ4Go(nb, rows, w, n, a, lda, out, ldo)
}

// The assembly. Every kernel takes nb >= 1 blocks per row and nt >= 1 tiles;
// the Go drivers below check all lengths first, so the assembly only ever
// touches bytes inside the slices it was given.

func cpuidECX1() uint32

//go:noescape
func quantQ8(nb int, dst *byte, src *float32)

//go:noescape
func cvtF16(f float32) uint16

//go:noescape
func q8dot(nb int, w, a *byte) float32

//go:noescape
func q4dot(nb int, w, a *byte) float32

// The Mat tiles: q8mXrY computes X activation rows times nt tiles of Y
// consecutive weight rows, out[i*ldo+r] for i < X and r < Y*nt (ldo in
// floats, lda in bytes).

//go:noescape
func q8m1r4(nb int, w *byte, nt int, a *byte, lda int, out *float32, ldo int)

//go:noescape
func q8m2r4(nb int, w *byte, nt int, a *byte, lda int, out *float32, ldo int)

//go:noescape
func q8m3r3(nb int, w *byte, nt int, a *byte, lda int, out *float32, ldo int)

//go:noescape
func q8m4r2(nb int, w *byte, nt int, a *byte, lda int, out *float32, ldo int)

//go:noescape
func q4m1r4(nb int, w *byte, nt int, a *byte, lda int, out *float32, ldo int)

//go:noescape
func q4m2r4(nb int, w *byte, nt int, a *byte, lda int, out *float32, ldo int)

//go:noescape
func q4m3r3(nb int, w *byte, nt int, a *byte, lda int, out *float32, ldo int)

//go:noescape
func q4m4r2(nb int, w *byte, nt int, a *byte, lda int, out *float32, ldo int)

//go:noescape
func decodeF16(n8 int, dst *float32, src *byte)

//go:noescape
func decodeBF16(n8 int, dst *float32, src *byte)

func f32ToF16Asm(f float32) uint16 { return cvtF16(f) }

// decodeF16Asm and decodeBF16Asm convert the multiple-of-8 prefix in
// assembly and the rest in Go (the bits are the same either way).
func decodeF16Asm(dst []float32, src []byte) {
	n8 := len(dst) / 8
	if n8 > 0 {
		_ = src[16*n8-1]
		decodeF16(n8, &dst[0], &src[0])
	}
	decodeF16Go(dst[8*n8:], src[16*n8:])
}

func decodeBF16Asm(dst []float32, src []byte) {
	n8 := len(dst) / 8
	if n8 > 0 {
		_ = src[16*n8-1]
		decodeBF16(n8, &dst[0], &src[0])
	}
	decodeBF16Go(dst[8*n8:], src[16*n8:])
}

func decodeF16Any(dst []float32, src []byte) {
	if haveAsm {
		decodeF16Asm(dst, src)
		return
	}
	decodeF16Go(dst, src)
}

func decodeBF16Any(dst []float32, src []byte) {
	if haveAsm {
		decodeBF16Asm(dst, src)
		return
	}
	decodeBF16Go(dst, src)
}

func quantizeQ8Asm(dst []byte, src []float32) {
	nb := len(src) / BlockSize
	if nb == 0 {
		return
	}
	_ = dst[nb*Q8_0BlockBytes-1]
	_ = src[nb*BlockSize-1]
	quantQ8(nb, &dst[0], &src[0])
}

func dotQ8Asm(nb int, w, a []byte) float32 {
	_ = w[nb*Q8_0BlockBytes-1]
	_ = a[nb*Q8_0BlockBytes-1]
	return q8dot(nb, &w[0], &a[0])
}

func dotQ4Asm(nb int, w, a []byte) float32 {
	_ = w[nb*Q4_0BlockBytes-1]
	_ = a[nb*Q8_0BlockBytes-1]
	return q4dot(nb, &w[0], &a[0])
}

type tileFunc func(nb int, w *byte, nt int, a *byte, lda int, out *float32, ldo int)

// tileRows[m] is the number of weight rows per tile for m activation rows:
// m*R accumulators plus 6 working registers must fit the 16 YMM registers.
var tileRows = [5]int{0, 4, 4, 3, 2}

var (
	q8tiles = [5]tileFunc{nil, q8m1r4, q8m2r4, q8m3r3, q8m4r2}
	q4tiles = [5]tileFunc{nil, q4m1r4, q4m2r4, q4m3r3, q4m4r2}
)

// matQ8Asm and matQ4Asm use the AVX-512 tiles where the CPU has them
// (useAVX512, kernels512_amd64.go), else the AVX2 tiles: same bits.
func matQ8Asm(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
	if useAVX512 {
		matQ8AVX512(nb, rows, w, n, a, lda, out, ldo)
		return
	}
	matQ8AVX2(nb, rows, w, n, a, lda, out, ldo)
}

func matQ4Asm(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
	if useAVX512 {
		matQ4AVX512(nb, rows, w, n, a, lda, out, ldo)
		return
	}
	matQ4AVX2(nb, rows, w, n, a, lda, out, ldo)
}

func matQ8AVX2(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
	matAsm(nb, Q8_0BlockBytes, rows, w, n, a, lda, out, ldo, &q8tiles, q8dot)
}

func matQ4AVX2(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
	matAsm(nb, Q4_0BlockBytes, rows, w, n, a, lda, out, ldo, &q4tiles, q4dot)
}

// matChunkBytes bounds the weight rows processed for one group of 4
// activation rows when there are more than 4: the chunk then stays in L2
// while the next groups reuse it.
const matChunkBytes = 64 << 10

// matExtent makes the checks the Mat assembly relies on (the exported
// functions have already reported any violation with a clearer message) and
// returns the bytes of a weight row and the weight rows of one pass: all of
// them for up to 4 activation rows, else about matChunkBytes (which stay in
// cache for every group of activation rows) in a multiple of step, the
// tile heights' common multiple.
func matExtent(nb, wbb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int, step int) (rb, chunk int) {
	rb, ab := nb*wbb, nb*Q8_0BlockBytes
	_ = w[rows*rb-1]
	_ = a[(n-1)*lda+ab-1]
	_ = out[(n-1)*ldo+rows-1]
	chunk = rows
	if n > 4 {
		chunk = max(step, matChunkBytes/rb/step*step)
	}
	return rb, chunk
}

// matAsm walks the weights in tiles. Which tile computes an element never
// changes its bits (every kernel follows the same per-element order), so the
// tiling is free to follow the shape: all n activation rows share one pass
// over the weights when n <= 4; beyond that, groups of 4 share a chunk of
// weight rows that stays in cache. Rows left over by a tile shape are done
// with the 1x1 kernel.
func matAsm(nb, wbb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int, tiles *[5]tileFunc, dot func(nb int, w, a *byte) float32) {
	rb, chunk := matExtent(nb, wbb, rows, w, n, a, lda, out, ldo, 12)
	for r0 := 0; r0 < rows; r0 += chunk {
		r1 := min(rows, r0+chunk)
		for i0 := 0; i0 < n; i0 += 4 {
			m := min(4, n-i0)
			R := tileRows[m]
			nt := (r1 - r0) / R
			if nt > 0 {
				tiles[m](nb, &w[r0*rb], nt, &a[i0*lda], lda, &out[i0*ldo+r0], ldo)
			}
			for r := r0 + nt*R; r < r1; r++ {
				for i := i0; i < i0+m; i++ {
					out[i*ldo+r] = dot(nb, &w[r*rb], &a[i*lda])
				}
			}
		}
	}
}
