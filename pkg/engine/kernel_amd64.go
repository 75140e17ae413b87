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
