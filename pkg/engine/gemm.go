package engine

import "math"

// useAsm selects the kernel family for the whole process. It is a variable
// only so tests can run the pure-Go family too; it must not change while an
// Engine is stepping.
var useAsm = haveAsm

// useZ adds the AVX-512 pair tiles (kernelz_amd64.s) to the assembly family
// for products of two or more rows. They compute every element with the AVX2
// tiles' instructions, lane for lane, so switching them on or off never
// changes a bit (the tests run all three ways); they only do twice the work
// per instruction. Like useAsm, a variable only for the tests.
var useZ = haveZ

// zStreamRows is the most rows of A for which gemmCols uses the 8-column
// pair tiles (W streamed once from memory, eight rows at a time) rather
// than the 4-column ones (W blocked in cache for many rows of A).
var zStreamRows = 32

// goDot is the pure-Go twin of the assembly kernels' per-element order: 8
// lane accumulators over k in order, then the fixed HSUM tree. The explicit
// float32 conversions forbid the compiler from fusing multiply and add, so
// the order (and the rounding) is the same on every architecture.
func goDot(k int, x, y []float32) float32 {
	var l0, l1, l2, l3, l4, l5, l6, l7 float32
	x, y = x[:k], y[:k]
	for p := 0; p+8 <= k; p += 8 {
		a, b := x[p:p+8:p+8], y[p:p+8:p+8]
		l0 += float32(a[0] * b[0])
		l1 += float32(a[1] * b[1])
		l2 += float32(a[2] * b[2])
		l3 += float32(a[3] * b[3])
		l4 += float32(a[4] * b[4])
		l5 += float32(a[5] * b[5])
		l6 += float32(a[6] * b[6])
		l7 += float32(a[7] * b[7])
	}
	a0, a1, a2, a3 := l0+l4, l1+l5, l2+l6, l3+l7
	return (a0 + a2) + (a1 + a3)
}

func goTile(rows, k int, x []float32, ldx int, w []float32, ldw int, c []float32, ldc int) {
	for i := 0; i < rows; i++ {
		for j := 0; j < 4; j++ {
			c[i*ldc+j] = goDot(k, x[i*ldx:], w[j*ldw:])
		}
	}
}

// dot is q.k for attention: the kernels' order when the length is a multiple
// of 8, a plain sequential sum otherwise. The choice depends only on the
// model's head size, never on the batch.
func dot(k int, x, y []float32) float32 {
	if k%8 == 0 {
		if useAsm {
			return asmDot(k, x, y)
		}
		return goDot(k, x, y)
	}
	var s float32
	x, y = x[:k], y[:k]
	for i := range x {
		s += float32(x[i] * y[i])
	}
	return s
}

// axpy is y += a*x, element-wise (each y[i] is its own sum).
func axpy(k int, a float32, x, y []float32) {
	if useAsm && k%8 == 0 {
		asmAxpy(k, a, x, y)
		return
	}
	x, y = x[:k], y[:k]
	for i := range y {
		y[i] += float32(a * x[i])
	}
}

// gemmCols computes C[i][j] = dot(A row i, W row j) for rows i < m and
// columns j in [j0, j1). k must be a multiple of 8 and j0, j1 multiples of 4
// (the engine pads every dimension so they are). Rows of A are processed in
// blocks that stay in L2 while W's rows stream through; every element is one
// whole-k dot product, so neither the blocking nor the tile shape nor the
// column split between goroutines can change its value. pa, when not nil, is
// A's rows packed by packPairs, which the AVX-512 tiles read (useZ).
func gemmCols(m, k int, a []float32, lda int, pa []float32, w []float32, ldw int, c []float32, ldc int, j0, j1 int) {
	if m == 1 && useAsm {
		// Decode at batch 1 streams W from memory once per token: the
		// 1x8 tile keeps eight W streams and FMA chains in flight (1.3x
		// the 1x4 tile's bandwidth on one core), each element still its
		// own accumulator reduced by the same HSUM, so the bits are those
		// of every other tile.
		j := j0
		for ; j+8 <= j1; j += 8 {
			asmRow8(k, a, w[j*ldw:], ldw, c[j:])
		}
		for ; j < j1; j += 4 {
			asmTile(1, k, a, lda, w[j*ldw:], ldw, c[j:], ldc)
		}
		return
	}
	const mb = 48
	if useZ && pa != nil && m <= zStreamRows {
		// A few rows (a decode batch): W streams from memory once, eight
		// rows at a time (twice the streams of a 4-row tile), each used by
		// every row of A while in L1: two pairs, then one, and an odd last
		// row with the 1x8 AVX2 tile.
		even := m &^ 1
		j := j0
		for ; j+8 <= j1; j += 8 {
			wj := w[j*ldw:]
			i := 0
			for ; i+4 <= even; i += 4 {
				asmPair8(2, k, pa[i*k:], wj, ldw, c[i*ldc+j:], ldc)
			}
			if i < even {
				asmPair8(1, k, pa[i*k:], wj, ldw, c[i*ldc+j:], ldc)
			}
			if even < m {
				asmRow8(k, a[even*lda:], wj, ldw, c[even*ldc+j:])
			}
		}
		if j < j1 {
			for i := 0; i < even; i += 2 {
				asmPairRun(1, 1, k, pa[i*k:], w[j*ldw:], ldw, c[i*ldc+j:], ldc)
			}
			if even < m {
				asmTile(1, k, a[even*lda:], lda, w[j*ldw:], ldw, c[even*ldc+j:], ldc)
			}
		}
		return
	}
	if useZ && pa != nil {
		// Pairs of rows in the AVX-512 tiles, four pairs at a time, then
		// single pairs; an odd last row takes the AVX2 1x4 tile.
		even := m &^ 1
		for i0 := 0; i0 < even; i0 += mb {
			i1 := min(i0+mb, even)
			for j := j0; j < j1; j += 4 {
				wj := w[j*ldw:]
				for i := i0; i < i1; {
					pairs := 1
					if i+8 <= i1 {
						pairs = 4
					}
					asmPairRun(pairs, 1, k, pa[i*k:], wj, ldw, c[i*ldc+j:], ldc)
					i += 2 * pairs
				}
			}
		}
		if even < m {
			for j := j0; j < j1; j += 4 {
				asmTile(1, k, a[even*lda:], lda, w[j*ldw:], ldw, c[even*ldc+j:], ldc)
			}
		}
		return
	}
	tile := goTile
	if useAsm {
		tile = asmTile
	}
	for i0 := 0; i0 < m; i0 += mb {
		i1 := min(i0+mb, m)
		for j := j0; j < j1; j += 4 {
			wj := w[j*ldw:]
			for i := i0; i < i1; {
				r := min(3, i1-i)
				tile(r, k, a[i*lda:], lda, wj, ldw, c[i*ldc+j:], ldc)
				i += r
			}
		}
	}
}

// packPair interleaves rows x0 and x1 (k floats each, k a multiple of 8)
// into dst (2k floats): 8 of x0, 8 of x1, and so on.
func packPair(dst, x0, x1 []float32) {
	k := len(x0)
	_, _ = dst[2*k-1], x1[k-1]
	for t := 0; t < k; t += 8 {
		copy(dst[2*t:2*t+8], x0[t:t+8])
		copy(dst[2*t+8:2*t+16], x1[t:t+8])
	}
}

// packPairs lays rows 2p and 2p+1 of A (m rows of k floats, stride lda)
// side by side for the AVX-512 tiles: for each 8 floats of k, row 2p's then
// row 2p+1's, pair after pair (an odd last row is left out). It returns nil,
// and packs nothing, when the pair tiles are off or m < 2; dst is reused
// when large enough.
func packPairs(dst []float32, m, k int, a []float32, lda int) []float32 {
	if !useZ || m < 2 || k%8 != 0 {
		return nil
	}
	even := m &^ 1
	dst = grow(dst, even*k)
	for i := 0; i < even; i += 2 {
		packPair(dst[i*k:(i+2)*k], a[i*lda:i*lda+k], a[(i+1)*lda:(i+1)*lda+k])
	}
	return dst
}

// naiveGemm is the textbook triple loop, the baseline for benchmarks and a
// reference for tests (it sums in a different order, so compare with a
// tolerance).
func naiveGemm(m, n, k int, a []float32, lda int, w []float32, ldw int, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float32
			for p := 0; p < k; p++ {
				s += a[i*lda+p] * w[j*ldw+p]
			}
			c[i*ldc+j] = s
		}
	}
}

// scores sets out[t] = dot(q, k[t*stride:])/scale for t < n: the same values
// as calling dot per position, with the per-call overhead removed.
func scores(n, hd int, q, k []float32, stride int, scale float32, out []float32) {
	if n == 0 {
		return
	}
	if useAsm && hd%8 == 0 {
		asmScores(n, hd, q, k, stride, scale, out)
		return
	}
	for t := 0; t < n; t++ {
		out[t] = dot(hd, q, k[t*stride:]) / scale
	}
}

// accum adds a[t]*v[t*stride:] to out for t < n in order: the same values as
// calling axpy per position.
func accum(n, hd int, a, v []float32, stride int, out []float32) {
	if n == 0 {
		return
	}
	if useAsm && hd%32 == 0 {
		asmAccum(n, hd, a, v, stride, out)
		return
	}
	for t := 0; t < n; t++ {
		axpy(hd, a[t], v[t*stride:], out)
	}
}

// Constants of the float32 exp (Cephes expf), shared with the assembly
// table expc.
const (
	expHi   = float32(88.3762626647949)
	expLo   = float32(-88.3762626647949)
	expLog2 = float32(1.44269504088896341)
	expC1   = float32(0.693359375)
	expC2   = float32(-2.12194440e-4)
	expP0   = float32(1.9875691500e-4)
	expP1   = float32(1.3981999507e-3)
	expP2   = float32(8.3334519073e-3)
	expP3   = float32(4.1665795894e-2)
	expP4   = float32(1.6666665459e-1)
	expP5   = float32(5.0000001201e-1)
)

// goExp is the pure-Go twin of the assembly EXPF: clamp to [expLo, expHi],
// n = floor(x*log2e + 0.5), r = x - n*ln2 with ln2 split in two, a degree-5
// polynomial, times 2^n. Every operation is an explicit float32 rounding (no
// fusion), so the result is the same on every architecture; it differs from
// the FMA version in the last bit sometimes, like the other kernels of the
// pure-Go family. Relative error is a few ulp; exp(-Inf) = 0.
func goExp(x float32) float32 {
	if x != x {
		return x
	}
	if x > expHi {
		x = expHi
	}
	if x < expLo {
		x = expLo
	}
	fx := float32(math.Floor(float64(float32(float32(x*expLog2) + 0.5))))
	r := float32(x - float32(fx*expC1))
	r = float32(r - float32(fx*expC2))
	y := float32(float32(expP0*r) + expP1)
	y = float32(float32(y*r) + expP2)
	y = float32(float32(y*r) + expP3)
	y = float32(float32(y*r) + expP4)
	y = float32(float32(y*r) + expP5)
	z := float32(r * r)
	y = float32(float32(y*z) + r)
	y = float32(y + 1)
	return float32(y * math.Float32frombits(uint32(int32(fx)+127)<<23))
}

// vexp sets out[i] = exp(x[i]); len(x) must be a multiple of 8 on the
// assembly path.
func vexp(x, out []float32) {
	if useAsm && len(x)%8 == 0 {
		asmExp(x, out)
		return
	}
	for i, v := range x {
		out[i] = goExp(v)
	}
}

// expSum sets s[t] = exp(s[t]/scale - m) and returns the sum of the new
// values: lane j (of 8) sums t = j, j+8, ... in order, then the HSUM tree.
// len(s) is a multiple of 8. Both families follow this order.
func expSum(s []float32, scale, m float32) float32 {
	if useAsm {
		return asmExpSum(s, scale, m)
	}
	var l [8]float32
	for p := 0; p+8 <= len(s); p += 8 {
		c := s[p : p+8 : p+8]
		for j := range c {
			v := goExp(float32(float32(c[j]/scale) - m))
			c[j] = v
			l[j] += v
		}
	}
	a0, a1, a2, a3 := l[0]+l[4], l[1]+l[5], l[2]+l[6], l[3]+l[7]
	return (a0 + a2) + (a1 + a3)
}

// silu sets out[i] = (h1[i] * (1/(1+exp(-h1[i])))) * h3[i]; len(h1) is a
// multiple of 8.
func silu(h1, h3, out []float32) {
	if useAsm {
		asmSilu(h1, h3, out)
		return
	}
	h3, out = h3[:len(h1)], out[:len(h1)]
	for i, v := range h1 {
		v = float32(v * float32(1/float32(1+goExp(-v))))
		out[i] = float32(v * h3[i])
	}
}

// vmax is the largest element of s (len(s) a positive multiple of 8). max
// is exact, so the order does not matter.
func vmax(s []float32) float32 {
	if useAsm {
		return asmMax(s)
	}
	m := s[0]
	for _, x := range s[1:] {
		if x > m {
			m = x
		}
	}
	return m
}
