//go:build !purego

package quant

// The K-quant assembly (kquant_amd64.s). Like the Q8_0/Q4_0 kernels it
// needs AVX2 and F16C (haveAsm), and every entry point takes nb >= 1
// super-blocks per row; the Go drivers check all lengths first.

//go:noescape
func quantQ8K(nb int, dst *byte, src *float32)

// The K tiles: kXmM computes M activation rows times nr consecutive weight
// rows of type X, out[i*ldo+r] for i < M and r < nr (ldo in floats, lda in
// bytes). Each weight super-block is unpacked once for the M rows.

//go:noescape
func k4m1(nb int, w *byte, nr int, a *byte, lda int, out *float32, ldo int)

//go:noescape
func k4m2(nb int, w *byte, nr int, a *byte, lda int, out *float32, ldo int)

//go:noescape
func k4m3(nb int, w *byte, nr int, a *byte, lda int, out *float32, ldo int)

//go:noescape
func k4m4(nb int, w *byte, nr int, a *byte, lda int, out *float32, ldo int)

//go:noescape
func k5m1(nb int, w *byte, nr int, a *byte, lda int, out *float32, ldo int)

//go:noescape
func k5m2(nb int, w *byte, nr int, a *byte, lda int, out *float32, ldo int)

//go:noescape
func k5m3(nb int, w *byte, nr int, a *byte, lda int, out *float32, ldo int)

//go:noescape
func k5m4(nb int, w *byte, nr int, a *byte, lda int, out *float32, ldo int)

//go:noescape
func k6m1(nb int, w *byte, nr int, a *byte, lda int, out *float32, ldo int)

//go:noescape
func k6m2(nb int, w *byte, nr int, a *byte, lda int, out *float32, ldo int)

//go:noescape
func k6m3(nb int, w *byte, nr int, a *byte, lda int, out *float32, ldo int)

//go:noescape
func k6m4(nb int, w *byte, nr int, a *byte, lda int, out *float32, ldo int)

var kTiles = [...][5]tileFunc{
	kQ4: {nil, k4m1, k4m2, k4m3, k4m4},
	kQ5: {nil, k5m1, k5m2, k5m3, k5m4},
	kQ6: {nil, k6m1, k6m2, k6m3, k6m4},
}

func quantizeQ8K(dst []byte, src []float32) {
	if haveAsm {
		quantizeQ8KAsm(dst, src)
		return
	}
	quantizeQ8KGo(dst, src)
}

func dotK(t kType, nb int, w, a []byte) float32 {
	if haveAsm {
		return dotKAsm(t, nb, w, a)
	}
	return dotKGoFuncs[t](nb, w, a)
}

func matK(t kType, nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
	if haveAsm {
		matKAsm(t, nb, rows, w, n, a, lda, out, ldo)
		return
	}
	matKGo(t, nb, rows, w, n, a, lda, out, ldo)
}

func quantizeQ8KAsm(dst []byte, src []float32) {
	nb := len(src) / KBlockSize
	if nb == 0 {
		return
	}
	_ = dst[nb*Q8_KBlockBytes-1]
	_ = src[nb*KBlockSize-1]
	quantQ8K(nb, &dst[0], &src[0])
}

func dotKAsm(t kType, nb int, w, a []byte) float32 {
	_ = w[nb*t.blockBytes()-1]
	_ = a[nb*Q8_KBlockBytes-1]
	var out [1]float32
	switch t {
	case kQ4:
		k4m1(nb, &w[0], 1, &a[0], 0, &out[0], 0)
	case kQ5:
		k5m1(nb, &w[0], 1, &a[0], 0, &out[0], 0)
	default:
		k6m1(nb, &w[0], 1, &a[0], 0, &out[0], 0)
	}
	return out[0]
}

// matKAsm walks the weight rows in order, each row once per group of up to
// 4 activation rows. All n rows share one pass when n <= 4; beyond that,
// groups of 4 share a chunk of about matChunkBytes of weight rows, which
// stays in L2 while the next groups reuse it. Which kernel computes an
// element never changes its bits.
func matKAsm(t kType, nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
	rb, ab := nb*t.blockBytes(), nb*Q8_KBlockBytes
	// The checks the assembly relies on (the exported functions have
	// already reported any violation with a clearer message).
	_ = w[rows*rb-1]
	_ = a[(n-1)*lda+ab-1]
	_ = out[(n-1)*ldo+rows-1]
	tiles := &kTiles[t]
	chunk := rows
	if n > 4 {
		chunk = max(4, matChunkBytes/rb)
	}
	for r0 := 0; r0 < rows; r0 += chunk {
		r1 := min(rows, r0+chunk)
		for i0 := 0; i0 < n; i0 += 4 {
			m := min(4, n-i0)
			tiles[m](nb, &w[r0*rb], r1-r0, &a[i0*lda], lda, &out[i0*ldo+r0], ldo)
		}
	}
}
