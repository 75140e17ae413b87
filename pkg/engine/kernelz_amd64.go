//go:build !purego

package engine

import "golang.org/x/sys/cpu"

//go:noescape
func kernz8x4(n4, k int, p *float32, w *float32, ldw int, c *float32, ldc int)

//go:noescape
func kernz2x4(n4, k int, p *float32, w *float32, ldw int, c *float32, ldc int)

//go:noescape
func kernz4x8(k int, p *float32, w *float32, ldw int, c *float32, ldc int)

//go:noescape
func kernz2x8(k int, p *float32, w *float32, ldw int, c *float32, ldc int)

//go:noescape
func accumRun2(n, hd int, a0, a1 *float32, v *float32, stride int, o0, o1 *float32)

// haveZ: the AVX-512 pair tiles can run (AVX512DQ for VBROADCASTF32X8; the
// x/sys/cpu flags include the OS's saving of the ZMM state).
var haveZ = haveAsm && cpu.X86.HasAVX512F && cpu.X86.HasAVX512DQ

// asmPairRun computes C[i][j] = dot(X row i, W row j) for rows i < 2*pairs
// (pairs is 4 or 1) and j < 4*n4, from X packed by packPairs (k floats a
// row), W rows of stride ldw, C rows of stride ldc.
func asmPairRun(pairs, n4, k int, p []float32, w []float32, ldw int, c []float32, ldc int) {
	if n4 == 0 {
		return
	}
	_ = p[2*pairs*k-1]
	_ = w[(4*n4-1)*ldw+k-1]
	_ = c[(2*pairs-1)*ldc+4*n4-1]
	if pairs == 4 {
		kernz8x4(n4, k, &p[0], &w[0], ldw, &c[0], ldc)
	} else {
		kernz2x4(n4, k, &p[0], &w[0], ldw, &c[0], ldc)
	}
}

// asmPair8 computes C[i][j] = dot(X row i, W row j) for rows i < 2*pairs
// (pairs is 2 or 1) and j < 8, from X packed by packPairs.
func asmPair8(pairs, k int, p []float32, w []float32, ldw int, c []float32, ldc int) {
	_ = p[2*pairs*k-1]
	_ = w[7*ldw+k-1]
	_ = c[(2*pairs-1)*ldc+7]
	if pairs == 2 {
		kernz4x8(k, &p[0], &w[0], ldw, &c[0], ldc)
	} else {
		kernz2x8(k, &p[0], &w[0], ldw, &c[0], ldc)
	}
}

// asmAccum2 is asmAccum for two weight rows a0, a1 into o0, o1 over the same
// V rows (hd a multiple of 64).
func asmAccum2(n, hd int, a0, a1, v []float32, stride int, o0, o1 []float32) {
	if n == 0 {
		return
	}
	_ = a0[n-1]
	_ = a1[n-1]
	_ = v[(n-1)*stride+hd-1]
	_ = o0[hd-1]
	_ = o1[hd-1]
	accumRun2(n, hd, &a0[0], &a1[0], &v[0], stride, &o0[0], &o1[0])
}
