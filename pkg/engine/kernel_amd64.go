//go:build !purego

package engine

import "golang.org/x/sys/cpu"

//go:noescape
func kern3x4(k int, x *float32, ldx int, w *float32, ldw int, c *float32, ldc int)

//go:noescape
func kern2x4(k int, x *float32, ldx int, w *float32, ldw int, c *float32, ldc int)

//go:noescape
func kern1x4(k int, x *float32, ldx int, w *float32, ldw int, c *float32, ldc int)

//go:noescape
func dot8(k int, x *float32, y *float32) float32

//go:noescape
func axpy8(k int, a float32, x *float32, y *float32)

// haveAsm is fixed for the life of the process: the whole engine uses one
// kernel family, so every result is computed with one accumulation order.
var haveAsm = cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasAVX

func asmTile(rows, k int, x []float32, ldx int, w []float32, ldw int, c []float32, ldc int) {
	switch rows {
	case 3:
		kern3x4(k, &x[0], ldx, &w[0], ldw, &c[0], ldc)
	case 2:
		kern2x4(k, &x[0], ldx, &w[0], ldw, &c[0], ldc)
	default:
		kern1x4(k, &x[0], ldx, &w[0], ldw, &c[0], ldc)
	}
}

// asmRow8 computes c[0..7] = dot(x, W row j) for the 8 rows of w (stride
// ldw), k a multiple of 8.
func asmRow8(k int, x, w []float32, ldw int, c []float32) {
	_ = x[k-1]
	_ = w[7*ldw+k-1]
	_ = c[7]
	kern1x8run(1, k, &x[0], &w[0], ldw, &c[0])
}

func asmDot(k int, x, y []float32) float32 { return dot8(k, &x[0], &y[0]) }

func asmAxpy(k int, a float32, x, y []float32) { axpy8(k, a, &x[0], &y[0]) }

//go:noescape
func scoresRun(n, hd int, q *float32, k *float32, stride int, scale float32, out *float32)

//go:noescape
func accumRun(n, hd int, a *float32, v *float32, stride int, out *float32)

func asmScores(n, hd int, q, k []float32, stride int, scale float32, out []float32) {
	_ = k[(n-1)*stride+hd-1]
	_ = out[n-1]
	scoresRun(n, hd, &q[0], &k[0], stride, scale, &out[0])
}

func asmAccum(n, hd int, a, v []float32, stride int, out []float32) {
	_ = v[(n-1)*stride+hd-1]
	_ = a[n-1]
	accumRun(n, hd, &a[0], &v[0], stride, &out[0])
}

//go:noescape
func expRun(n8 int, x *float32, out *float32)

//go:noescape
func expSumRun(n8 int, s *float32, scale float32, m float32) float32

//go:noescape
func siluRun(n8 int, h1 *float32, h3 *float32, out *float32)

func asmExp(x, out []float32) {
	if len(x) == 0 {
		return
	}
	_ = out[len(x)-1]
	expRun(len(x), &x[0], &out[0])
}

func asmExpSum(s []float32, scale, m float32) float32 {
	if len(s) == 0 {
		return 0
	}
	return expSumRun(len(s), &s[0], scale, m)
}

func asmSilu(h1, h3, out []float32) {
	if len(h1) == 0 {
		return
	}
	_ = h3[len(h1)-1]
	_ = out[len(h1)-1]
	siluRun(len(h1), &h1[0], &h3[0], &out[0])
}

//go:noescape
func maxRun(n8 int, s *float32) float32

func asmMax(s []float32) float32 { return maxRun(len(s), &s[0]) }

//go:noescape
func kern3x4run(n4, k int, x *float32, ldx int, w *float32, ldw int, c *float32, ldc int)

//go:noescape
func kern1x8run(n8, k int, x *float32, w *float32, ldw int, c *float32)

//go:noescape
func kern1x4run(n4, k int, x *float32, w *float32, ldw int, c *float32)

// asmTileRun computes rows (1-3) x 4*n4 elements C[i][j] = dot(x row i,
// w row j), as n4 calls of asmTile would.
func asmTileRun(rows, n4, k int, x []float32, ldx int, w []float32, ldw int, c []float32, ldc int) {
	if n4 == 0 {
		return
	}
	_ = x[(rows-1)*ldx+k-1]
	_ = w[(4*n4-1)*ldw+k-1]
	_ = c[(rows-1)*ldc+4*n4-1]
	switch rows {
	case 3:
		kern3x4run(n4, k, &x[0], ldx, &w[0], ldw, &c[0], ldc)
	case 1:
		// Eight K rows a tile where it can (HSUM8 reduces them together),
		// then a 4-row tile: the same bits either way.
		if n8 := n4 / 2; n8 > 0 {
			kern1x8run(n8, k, &x[0], &w[0], ldw, &c[0])
		}
		if n4%2 == 1 {
			o := 8 * (n4 / 2)
			kern1x4run(1, k, &x[0], &w[o*ldw], ldw, &c[o])
		}
	default:
		for g := 0; g < n4; g++ {
			asmTile(rows, k, x, ldx, w[4*g*ldw:], ldw, c[4*g:], ldc)
		}
	}
}
