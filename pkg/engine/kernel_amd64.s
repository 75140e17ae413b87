//go:build !purego

#include "textflag.h"

// Register tile kernels for C[i][j] = dot(X row i, W row j) over k floats
// (k a positive multiple of 8). Every output element has its own 8-lane
// accumulator updated with one FMA per 8 k, in k order, then reduced by the
// same HSUM sequence, so an element's bits never depend on which kernel
// (3x4, 2x4, 1x4) or which tile computed it: that is what makes the matmul
// batch invariant.

// HSUM reduces the 8 lanes of Y (X is its low half) with a fixed tree,
// ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)), and stores the float at dst.
#define HSUMR(Y, X) \
	VEXTRACTF128 $1, Y, X15; \
	VADDPS       X15, X, X; \
	VMOVHLPS     X, X, X15; \
	VADDPS       X15, X, X; \
	VMOVSHDUP    X, X15; \
	VADDSS       X15, X, X

#define HSUM(Y, X, dst) \
	HSUMR(Y, X); \
	VMOVSS X, dst

// func kern3x4(k int, x *float32, ldx int, w *float32, ldw int, c *float32, ldc int)
TEXT ·kern3x4(SB), NOSPLIT, $0-56
	MOVQ k+0(FP), CX
	MOVQ x+8(FP), SI
	MOVQ ldx+16(FP), R8
	MOVQ w+24(FP), DI
	MOVQ ldw+32(FP), R9
	MOVQ c+40(FP), DX
	MOVQ ldc+48(FP), R10
	SHLQ $2, CX
	SHLQ $2, R8
	SHLQ $2, R9
	SHLQ $2, R10
	LEAQ (SI)(R8*1), R11
	LEAQ (R11)(R8*1), R12
	LEAQ (DI)(R9*1), R13
	LEAQ (R13)(R9*1), R14
	LEAQ (R14)(R9*1), BX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	XORQ AX, AX

loop3:
	VMOVUPS (SI)(AX*1), Y12
	VMOVUPS (R11)(AX*1), Y13
	VMOVUPS (R12)(AX*1), Y14
	VMOVUPS (DI)(AX*1), Y15
	VFMADD231PS Y15, Y12, Y0
	VFMADD231PS Y15, Y13, Y4
	VFMADD231PS Y15, Y14, Y8
	VMOVUPS (R13)(AX*1), Y15
	VFMADD231PS Y15, Y12, Y1
	VFMADD231PS Y15, Y13, Y5
	VFMADD231PS Y15, Y14, Y9
	VMOVUPS (R14)(AX*1), Y15
	VFMADD231PS Y15, Y12, Y2
	VFMADD231PS Y15, Y13, Y6
	VFMADD231PS Y15, Y14, Y10
	VMOVUPS (BX)(AX*1), Y15
	VFMADD231PS Y15, Y12, Y3
	VFMADD231PS Y15, Y13, Y7
	VFMADD231PS Y15, Y14, Y11
	ADDQ $32, AX
	CMPQ AX, CX
	JLT  loop3

	HSUM(Y0, X0, 0(DX))
	HSUM(Y1, X1, 4(DX))
	HSUM(Y2, X2, 8(DX))
	HSUM(Y3, X3, 12(DX))
	ADDQ R10, DX
	HSUM(Y4, X4, 0(DX))
	HSUM(Y5, X5, 4(DX))
	HSUM(Y6, X6, 8(DX))
	HSUM(Y7, X7, 12(DX))
	ADDQ R10, DX
	HSUM(Y8, X8, 0(DX))
	HSUM(Y9, X9, 4(DX))
	HSUM(Y10, X10, 8(DX))
	HSUM(Y11, X11, 12(DX))
	VZEROUPPER
	RET

// func kern2x4(k int, x *float32, ldx int, w *float32, ldw int, c *float32, ldc int)
TEXT ·kern2x4(SB), NOSPLIT, $0-56
	MOVQ k+0(FP), CX
	MOVQ x+8(FP), SI
	MOVQ ldx+16(FP), R8
	MOVQ w+24(FP), DI
	MOVQ ldw+32(FP), R9
	MOVQ c+40(FP), DX
	MOVQ ldc+48(FP), R10
	SHLQ $2, CX
	SHLQ $2, R8
	SHLQ $2, R9
	SHLQ $2, R10
	LEAQ (SI)(R8*1), R11
	LEAQ (DI)(R9*1), R13
	LEAQ (R13)(R9*1), R14
	LEAQ (R14)(R9*1), BX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	XORQ AX, AX

loop2:
	VMOVUPS (SI)(AX*1), Y12
	VMOVUPS (R11)(AX*1), Y13
	VMOVUPS (DI)(AX*1), Y15
	VFMADD231PS Y15, Y12, Y0
	VFMADD231PS Y15, Y13, Y4
	VMOVUPS (R13)(AX*1), Y15
	VFMADD231PS Y15, Y12, Y1
	VFMADD231PS Y15, Y13, Y5
	VMOVUPS (R14)(AX*1), Y15
	VFMADD231PS Y15, Y12, Y2
	VFMADD231PS Y15, Y13, Y6
	VMOVUPS (BX)(AX*1), Y15
	VFMADD231PS Y15, Y12, Y3
	VFMADD231PS Y15, Y13, Y7
	ADDQ $32, AX
	CMPQ AX, CX
	JLT  loop2

	HSUM(Y0, X0, 0(DX))
	HSUM(Y1, X1, 4(DX))
	HSUM(Y2, X2, 8(DX))
	HSUM(Y3, X3, 12(DX))
	ADDQ R10, DX
	HSUM(Y4, X4, 0(DX))
	HSUM(Y5, X5, 4(DX))
	HSUM(Y6, X6, 8(DX))
	HSUM(Y7, X7, 12(DX))
	VZEROUPPER
	RET

// func kern1x4(k int, x *float32, ldx int, w *float32, ldw int, c *float32, ldc int)
// Two accumulator sets per element would break the shared order, so the 1-row
// kernel keeps one accumulator per element like the others; decode is bound
// by streaming W anyway.
TEXT ·kern1x4(SB), NOSPLIT, $0-56
	MOVQ k+0(FP), CX
	MOVQ x+8(FP), SI
	MOVQ w+24(FP), DI
	MOVQ ldw+32(FP), R9
	MOVQ c+40(FP), DX
	SHLQ $2, CX
	SHLQ $2, R9
	LEAQ (DI)(R9*1), R13
	LEAQ (R13)(R9*1), R14
	LEAQ (R14)(R9*1), BX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	XORQ AX, AX

loop1:
	VMOVUPS (SI)(AX*1), Y12
	VFMADD231PS (DI)(AX*1), Y12, Y0
	VFMADD231PS (R13)(AX*1), Y12, Y1
	VFMADD231PS (R14)(AX*1), Y12, Y2
	VFMADD231PS (BX)(AX*1), Y12, Y3
	ADDQ $32, AX
	CMPQ AX, CX
	JLT  loop1

	HSUM(Y0, X0, 0(DX))
	HSUM(Y1, X1, 4(DX))
	HSUM(Y2, X2, 8(DX))
	HSUM(Y3, X3, 12(DX))
	VZEROUPPER
	RET

// func dot8(k int, x *float32, y *float32) float32
// One element with the same accumulation order as the tile kernels; used by
// attention for q.k when the head size is a multiple of 8.
TEXT ·dot8(SB), NOSPLIT, $0-28
	MOVQ k+0(FP), CX
	MOVQ x+8(FP), SI
	MOVQ y+16(FP), DI
	SHLQ $2, CX
	VXORPS Y0, Y0, Y0
	XORQ AX, AX

loopd:
	VMOVUPS (SI)(AX*1), Y12
	VFMADD231PS (DI)(AX*1), Y12, Y0
	ADDQ $32, AX
	CMPQ AX, CX
	JLT  loopd

	HSUM(Y0, X0, ret+24(FP))
	VZEROUPPER
	RET

// func axpy8(k int, a float32, x *float32, y *float32)
// y[i] += a*x[i] with FMA; used by attention to accumulate a*V. Each y[i] is
// a separate sum, so vector width does not change any element's order.
TEXT ·axpy8(SB), NOSPLIT, $0-32
	MOVQ k+0(FP), CX
	VBROADCASTSS a+8(FP), Y1
	MOVQ x+16(FP), SI
	MOVQ y+24(FP), DI
	SHLQ $2, CX
	XORQ AX, AX

loopa:
	VMOVUPS (DI)(AX*1), Y0
	VFMADD231PS (SI)(AX*1), Y1, Y0
	VMOVUPS Y0, (DI)(AX*1)
	ADDQ $32, AX
	CMPQ AX, CX
	JLT  loopa
	VZEROUPPER
	RET

// func scoresRun(n, hd int, q *float32, k *float32, stride int, scale float32, out *float32)
// out[t] = dot(q, k + t*stride) / scale for t < n, each dot in dot8's order
// (one 8-lane FMA accumulator over hd, then HSUM), so it equals dot()/scale
// bit for bit. hd is a positive multiple of 8.
TEXT ·scoresRun(SB), NOSPLIT, $0-56
	MOVQ n+0(FP), BX
	MOVQ hd+8(FP), CX
	MOVQ q+16(FP), SI
	MOVQ k+24(FP), DI
	MOVQ stride+32(FP), R8
	VMOVSS scale+40(FP), X14
	MOVQ out+48(FP), DX
	SHLQ $2, CX
	SHLQ $2, R8
	TESTQ BX, BX
	JEQ  sdone

srow:
	VXORPS Y0, Y0, Y0
	XORQ AX, AX

sk:
	VMOVUPS (SI)(AX*1), Y12
	VFMADD231PS (DI)(AX*1), Y12, Y0
	ADDQ $32, AX
	CMPQ AX, CX
	JLT  sk
	HSUMR(Y0, X0)
	VDIVSS X14, X0, X0
	VMOVSS X0, (DX)
	ADDQ $4, DX
	ADDQ R8, DI
	DECQ BX
	JNZ  srow

sdone:
	VZEROUPPER
	RET

// func accumRun(n, hd int, a *float32, v *float32, stride int, out *float32)
// out[i] += a[t]*v[t*stride+i] for t = 0..n-1 in order, one FMA per term:
// the same per-element sequence as n calls of axpy8, with out kept in
// registers. hd is a positive multiple of 32.
TEXT ·accumRun(SB), NOSPLIT, $0-48
	MOVQ n+0(FP), BX
	MOVQ hd+8(FP), CX
	MOVQ a+16(FP), SI
	MOVQ v+24(FP), DI
	MOVQ stride+32(FP), R8
	MOVQ out+40(FP), DX
	SHLQ $2, R8
	TESTQ BX, BX
	JEQ  adone

achunk:
	VMOVUPS 0(DX), Y0
	VMOVUPS 32(DX), Y1
	VMOVUPS 64(DX), Y2
	VMOVUPS 96(DX), Y3
	MOVQ DI, R9
	XORQ AX, AX

at:
	VBROADCASTSS (SI)(AX*4), Y4
	VFMADD231PS 0(R9), Y4, Y0
	VFMADD231PS 32(R9), Y4, Y1
	VFMADD231PS 64(R9), Y4, Y2
	VFMADD231PS 96(R9), Y4, Y3
	ADDQ R8, R9
	INCQ AX
	CMPQ AX, BX
	JLT  at
	VMOVUPS Y0, 0(DX)
	VMOVUPS Y1, 32(DX)
	VMOVUPS Y2, 64(DX)
	VMOVUPS Y3, 96(DX)
	ADDQ $128, DX
	ADDQ $128, DI
	SUBQ $32, CX
	JNZ  achunk

adone:
	VZEROUPPER
	RET
