//go:build !purego

package quant

import "golang.org/x/sys/cpu"

// haveAVX512 reports whether the AVX-512 tiles (kernels512_amd64.s) can run:
// they need AVX-512 F (ZMM), BW (byte ops, VPMOVB2M, VPBLENDMB), VL (the
// EVEX forms on YMM) and VNNI (VPDPBUSD), plus everything the AVX2 family
// needs (F16C for VCVTPH2PS). HasAVX512F also means the OS saves ZMM state.
var haveAVX512 = haveAsm && cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW &&
	cpu.X86.HasAVX512VL && cpu.X86.HasAVX512VNNI

// useAVX512 selects the AVX-512 tiles in matQ8Asm/matQ4Asm. Both tile
// families compute the same bits; the tests turn it off to exercise the
// AVX2 tiles on machines that have AVX-512, and the noavx512 build tag
// (avx512Off) turns it off for a whole binary, to compare the two in
// benchmarks of packages that use this one.
var useAVX512 = haveAVX512 && !avx512Off

// The AVX-512 tiles: qXzMrR computes M activation rows times nt tiles of R
// consecutive weight rows, out[i*ldo+r] for i < M and r < R*nt (same
// arguments as the AVX2 tiles).

//go:noescape
func q8z1r8(nb int, w *byte, nt int, a *byte, lda int, out *float32, ldo int)

//go:noescape
func q8z2r4(nb int, w *byte, nt int, a *byte, lda int, out *float32, ldo int)

//go:noescape
func q8z4r4(nb int, w *byte, nt int, a *byte, lda int, out *float32, ldo int)

//go:noescape
func q4z1r8(nb int, w *byte, nt int, a *byte, lda int, out *float32, ldo int)

//go:noescape
func q4z2r4(nb int, w *byte, nt int, a *byte, lda int, out *float32, ldo int)

//go:noescape
func q4z4r4(nb int, w *byte, nt int, a *byte, lda int, out *float32, ldo int)

// zTiles are one format's AVX-512 tiles, for 1, 2 and 4 activation rows.
type zTiles struct{ m1, m2, m4 tileFunc }

var (
	q8ztiles = zTiles{q8z1r8, q8z2r4, q8z4r4}
	q4ztiles = zTiles{q4z1r8, q4z2r4, q4z4r4}
)

func matQ8AVX512(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
	if !haveAVX512 {
		panic("quant: no AVX-512")
	}
	matZ(nb, Q8_0BlockBytes, rows, w, n, a, lda, out, ldo, &q8ztiles, &q8tiles, q8dot)
}

func matQ4AVX512(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
	if !haveAVX512 {
		panic("quant: no AVX-512")
	}
	matZ(nb, Q4_0BlockBytes, rows, w, n, a, lda, out, ldo, &q4ztiles, &q4tiles, q4dot)
}

// matZ is matAsm with the AVX-512 tiles: groups of 4 activation rows use the
// 4x4 tile, 2 the 2x4, 1 the 1x8, 3 the 2x4 and the 1x8. The weight rows a
// tile shape leaves over go to the AVX2 tiles (then the 1x1 kernel). Which
// kernel computes an element never changes its bits, so this mix is free.
func matZ(nb, wbb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int, z *zTiles, tiles *[5]tileFunc, dot func(nb int, w, a *byte) float32) {
	rb, chunk := matExtent(nb, wbb, rows, w, n, a, lda, out, ldo, 24)
	for r0 := 0; r0 < rows; r0 += chunk {
		r1 := min(rows, r0+chunk)
		// run does activation rows [i, i+m) over weight rows [r0, r1) with
		// a tile of R weight rows, and the leftover rows with the AVX2 path.
		run := func(tile tileFunc, R, i, m int) {
			nt := (r1 - r0) / R
			if nt > 0 {
				tile(nb, &w[r0*rb], nt, &a[i*lda], lda, &out[i*ldo+r0], ldo)
			}
			if r := r0 + nt*R; r < r1 {
				matAsm(nb, wbb, r1-r, w[r*rb:], m, a[i*lda:], lda, out[i*ldo+r:], ldo, tiles, dot)
			}
		}
		for i0 := 0; i0 < n; i0 += 4 {
			switch m := min(4, n-i0); m {
			case 4:
				run(z.m4, 4, i0, 4)
			case 3:
				run(z.m2, 4, i0, 2)
				run(z.m1, 8, i0+2, 1)
			case 2:
				run(z.m2, 4, i0, 2)
			case 1:
				run(z.m1, 8, i0, 1)
			}
		}
	}
}
