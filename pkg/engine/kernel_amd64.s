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

// HSUM8HALVES(Ya, Yb, Yd): Yd = [Ya.lo | Yb.lo] + [Ya.hi | Yb.hi].
#define HSUM8HALVES(Ya, Yb, Yd) \
	VPERM2F128 $0x20, Yb, Ya, Y12; \
	VPERM2F128 $0x31, Yb, Ya, Y13; \
	VADDPS     Y13, Y12, Yd

// HSUM8SHUF(lo, hi, Ya, Yb, Yd): Yd = shuf(Ya, Yb, lo) + shuf(Ya, Yb, hi).
#define HSUM8SHUF(lo, hi, Ya, Yb, Yd) \
	VSHUFPS $lo, Yb, Ya, Y12; \
	VSHUFPS $hi, Yb, Ya, Y13; \
	VADDPS  Y13, Y12, Yd

// HSUM8 reduces Y0..Y7 with HSUM's tree, all eight at once, and stores the
// eight sums (Y0's first) at dst: the lanes are paired by transposes instead
// of extracted register by register, but every sum is still
// ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)) of its own register, so the bits
// are HSUM's (about 3 instructions a sum instead of 7). Scratch Y8..Y13.
//   step 1: [Yi.lo | Yj.lo] + [Yi.hi | Yj.hi] = s_l = l+l4 for pairs (i, j)
//   step 2: shuffles pair s0 with s2 and s1 with s3 for two such registers
//   step 3: shuffles pair the two halves' results, then one permute puts
//           the sums in register order.
#define HSUM8(dst) \
	HSUM8HALVES(Y0, Y1, Y8); \
	HSUM8HALVES(Y2, Y3, Y9); \
	HSUM8HALVES(Y4, Y5, Y10); \
	HSUM8HALVES(Y6, Y7, Y11); \
	HSUM8SHUF(0x44, 0xEE, Y8, Y9, Y8); \
	HSUM8SHUF(0x44, 0xEE, Y10, Y11, Y10); \
	HSUM8SHUF(0x88, 0xDD, Y8, Y10, Y12); \
	VMOVDQU    hsum8perm<>(SB), Y13; \
	VPERMPS    Y12, Y13, Y12; \
	VMOVUPS    Y12, dst

// The 3x4 and 1x4 tiles, shared by the matmul kernels and their runs along
// a page (attention scores), so that both compute every element with the
// very same instructions in the very same order. Registers: X rows SI, R11,
// R12; W rows DI, R13, R14, BX; k byte offset AX; accumulators Y0..Y11
// (row i, column j in Y(4i+j)); Y12..Y15 scratch.
#define ZERO3X4 \
	VXORPS Y0, Y0, Y0; \
	VXORPS Y1, Y1, Y1; \
	VXORPS Y2, Y2, Y2; \
	VXORPS Y3, Y3, Y3; \
	VXORPS Y4, Y4, Y4; \
	VXORPS Y5, Y5, Y5; \
	VXORPS Y6, Y6, Y6; \
	VXORPS Y7, Y7, Y7; \
	VXORPS Y8, Y8, Y8; \
	VXORPS Y9, Y9, Y9; \
	VXORPS Y10, Y10, Y10; \
	VXORPS Y11, Y11, Y11

#define FMA3X4 \
	VMOVUPS (SI)(AX*1), Y12; \
	VMOVUPS (R11)(AX*1), Y13; \
	VMOVUPS (R12)(AX*1), Y14; \
	VMOVUPS (DI)(AX*1), Y15; \
	VFMADD231PS Y15, Y12, Y0; \
	VFMADD231PS Y15, Y13, Y4; \
	VFMADD231PS Y15, Y14, Y8; \
	VMOVUPS (R13)(AX*1), Y15; \
	VFMADD231PS Y15, Y12, Y1; \
	VFMADD231PS Y15, Y13, Y5; \
	VFMADD231PS Y15, Y14, Y9; \
	VMOVUPS (R14)(AX*1), Y15; \
	VFMADD231PS Y15, Y12, Y2; \
	VFMADD231PS Y15, Y13, Y6; \
	VFMADD231PS Y15, Y14, Y10; \
	VMOVUPS (BX)(AX*1), Y15; \
	VFMADD231PS Y15, Y12, Y3; \
	VFMADD231PS Y15, Y13, Y7; \
	VFMADD231PS Y15, Y14, Y11

// STORE3X4 reduces the accumulators into the C rows at p, p+R10, p+2*R10
// (it advances p by 2*R10).
#define STORE3X4(p) \
	HSUM(Y0, X0, 0(p)); \
	HSUM(Y1, X1, 4(p)); \
	HSUM(Y2, X2, 8(p)); \
	HSUM(Y3, X3, 12(p)); \
	ADDQ R10, p; \
	HSUM(Y4, X4, 0(p)); \
	HSUM(Y5, X5, 4(p)); \
	HSUM(Y6, X6, 8(p)); \
	HSUM(Y7, X7, 12(p)); \
	ADDQ R10, p; \
	HSUM(Y8, X8, 0(p)); \
	HSUM(Y9, X9, 4(p)); \
	HSUM(Y10, X10, 8(p)); \
	HSUM(Y11, X11, 12(p))

// The 1x4 tile: X row SI, W rows DI, R13, R14, BX, accumulators Y0..Y3.
#define ZERO1X4 \
	VXORPS Y0, Y0, Y0; \
	VXORPS Y1, Y1, Y1; \
	VXORPS Y2, Y2, Y2; \
	VXORPS Y3, Y3, Y3

#define FMA1X4 \
	VMOVUPS (SI)(AX*1), Y12; \
	VFMADD231PS (DI)(AX*1), Y12, Y0; \
	VFMADD231PS (R13)(AX*1), Y12, Y1; \
	VFMADD231PS (R14)(AX*1), Y12, Y2; \
	VFMADD231PS (BX)(AX*1), Y12, Y3

// STORE1X4 reduces Y0..Y3 into the C row at DX (also the first row of kern2x4).
#define STORE1X4 \
	HSUM(Y0, X0, 0(DX)); \
	HSUM(Y1, X1, 4(DX)); \
	HSUM(Y2, X2, 8(DX)); \
	HSUM(Y3, X3, 12(DX))

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
	ZERO3X4
	XORQ AX, AX

loop3:
	FMA3X4
	ADDQ $32, AX
	CMPQ AX, CX
	JLT  loop3

	STORE3X4(DX)
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

	STORE1X4
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
	ZERO1X4
	XORQ AX, AX

loop1:
	FMA1X4
	ADDQ $32, AX
	CMPQ AX, CX
	JLT  loop1

	STORE1X4
	VZEROUPPER
	RET

// func kern1x8run(n8, k int, x *float32, w *float32, ldw int, c *float32)
// The 1-row tile over 8 W rows, n8 times along the columns: c[j] = dot(x,
// W row j) for j < 8*n8. The same per-element accumulator and HSUM tree as
// kern1x4 (so the same bits), with twice the independent FMA chains and W
// streams in flight: decode at batch 1 (n8 = 1 per call, bound by streaming
// W), and attention scores of one query vector against a page's K rows
// (stride ldw). The tile count lives in its argument slot: every
// general register but SP, BP and R15 is taken.
TEXT ·kern1x8run(SB), NOSPLIT, $0-48
	MOVQ k+8(FP), CX
	MOVQ x+16(FP), SI
	MOVQ w+24(FP), DI
	MOVQ ldw+32(FP), R9
	MOVQ c+40(FP), DX
	SHLQ $2, CX
	SHLQ $2, R9
	CMPQ n8+0(FP), $0
	JEQ  r18done

r18group:
	LEAQ (DI)(R9*1), R13
	LEAQ (R13)(R9*1), R14
	LEAQ (R14)(R9*1), BX
	LEAQ (BX)(R9*1), R8
	LEAQ (R8)(R9*1), R10
	LEAQ (R10)(R9*1), R11
	LEAQ (R11)(R9*1), R12
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	XORQ AX, AX

r18loop:
	VMOVUPS (SI)(AX*1), Y12
	VFMADD231PS (DI)(AX*1), Y12, Y0
	VFMADD231PS (R13)(AX*1), Y12, Y1
	VFMADD231PS (R14)(AX*1), Y12, Y2
	VFMADD231PS (BX)(AX*1), Y12, Y3
	VFMADD231PS (R8)(AX*1), Y12, Y4
	VFMADD231PS (R10)(AX*1), Y12, Y5
	VFMADD231PS (R11)(AX*1), Y12, Y6
	VFMADD231PS (R12)(AX*1), Y12, Y7
	ADDQ $32, AX
	CMPQ AX, CX
	JLT  r18loop

	HSUM8((DX))
	ADDQ $32, DX
	LEAQ (R12)(R9*1), DI
	DECQ n8+0(FP)
	JNZ  r18group

r18done:
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
// registers (64 columns at a time: eight independent FMA chains, then 32).
// hd is a positive multiple of 32.
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

achunk64:
	CMPQ CX, $64
	JLT  achunk
	VMOVUPS 0(DX), Y0
	VMOVUPS 32(DX), Y1
	VMOVUPS 64(DX), Y2
	VMOVUPS 96(DX), Y3
	VMOVUPS 128(DX), Y4
	VMOVUPS 160(DX), Y5
	VMOVUPS 192(DX), Y6
	VMOVUPS 224(DX), Y7
	MOVQ DI, R9
	XORQ AX, AX

at64:
	VBROADCASTSS (SI)(AX*4), Y8
	VFMADD231PS 0(R9), Y8, Y0
	VFMADD231PS 32(R9), Y8, Y1
	VFMADD231PS 64(R9), Y8, Y2
	VFMADD231PS 96(R9), Y8, Y3
	VFMADD231PS 128(R9), Y8, Y4
	VFMADD231PS 160(R9), Y8, Y5
	VFMADD231PS 192(R9), Y8, Y6
	VFMADD231PS 224(R9), Y8, Y7
	ADDQ R8, R9
	INCQ AX
	CMPQ AX, BX
	JLT  at64
	VMOVUPS Y0, 0(DX)
	VMOVUPS Y1, 32(DX)
	VMOVUPS Y2, 64(DX)
	VMOVUPS Y3, 96(DX)
	VMOVUPS Y4, 128(DX)
	VMOVUPS Y5, 160(DX)
	VMOVUPS Y6, 192(DX)
	VMOVUPS Y7, 224(DX)
	ADDQ $256, DX
	ADDQ $256, DI
	SUBQ $64, CX
	JMP  achunk64

achunk:
	TESTQ CX, CX
	JEQ  adone
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
	JMP  achunk

adone:
	VZEROUPPER
	RET

// expc: 8-lane constants of the float32 exp (Cephes expf): clamp bounds,
// log2(e), 0.5, ln2 split in two (Cody-Waite), polynomial p0..p5, 1.0 and
// the int32 exponent bias 127. Entry i is at expc<>+32*i.
// hi
DATA expc<>+0(SB)/4, $0x42b0c0a5
DATA expc<>+4(SB)/4, $0x42b0c0a5
DATA expc<>+8(SB)/4, $0x42b0c0a5
DATA expc<>+12(SB)/4, $0x42b0c0a5
DATA expc<>+16(SB)/4, $0x42b0c0a5
DATA expc<>+20(SB)/4, $0x42b0c0a5
DATA expc<>+24(SB)/4, $0x42b0c0a5
DATA expc<>+28(SB)/4, $0x42b0c0a5
// lo
DATA expc<>+32(SB)/4, $0xc2b0c0a5
DATA expc<>+36(SB)/4, $0xc2b0c0a5
DATA expc<>+40(SB)/4, $0xc2b0c0a5
DATA expc<>+44(SB)/4, $0xc2b0c0a5
DATA expc<>+48(SB)/4, $0xc2b0c0a5
DATA expc<>+52(SB)/4, $0xc2b0c0a5
DATA expc<>+56(SB)/4, $0xc2b0c0a5
DATA expc<>+60(SB)/4, $0xc2b0c0a5
// log2e
DATA expc<>+64(SB)/4, $0x3fb8aa3b
DATA expc<>+68(SB)/4, $0x3fb8aa3b
DATA expc<>+72(SB)/4, $0x3fb8aa3b
DATA expc<>+76(SB)/4, $0x3fb8aa3b
DATA expc<>+80(SB)/4, $0x3fb8aa3b
DATA expc<>+84(SB)/4, $0x3fb8aa3b
DATA expc<>+88(SB)/4, $0x3fb8aa3b
DATA expc<>+92(SB)/4, $0x3fb8aa3b
// half
DATA expc<>+96(SB)/4, $0x3f000000
DATA expc<>+100(SB)/4, $0x3f000000
DATA expc<>+104(SB)/4, $0x3f000000
DATA expc<>+108(SB)/4, $0x3f000000
DATA expc<>+112(SB)/4, $0x3f000000
DATA expc<>+116(SB)/4, $0x3f000000
DATA expc<>+120(SB)/4, $0x3f000000
DATA expc<>+124(SB)/4, $0x3f000000
// c1
DATA expc<>+128(SB)/4, $0x3f318000
DATA expc<>+132(SB)/4, $0x3f318000
DATA expc<>+136(SB)/4, $0x3f318000
DATA expc<>+140(SB)/4, $0x3f318000
DATA expc<>+144(SB)/4, $0x3f318000
DATA expc<>+148(SB)/4, $0x3f318000
DATA expc<>+152(SB)/4, $0x3f318000
DATA expc<>+156(SB)/4, $0x3f318000
// c2
DATA expc<>+160(SB)/4, $0xb95e8083
DATA expc<>+164(SB)/4, $0xb95e8083
DATA expc<>+168(SB)/4, $0xb95e8083
DATA expc<>+172(SB)/4, $0xb95e8083
DATA expc<>+176(SB)/4, $0xb95e8083
DATA expc<>+180(SB)/4, $0xb95e8083
DATA expc<>+184(SB)/4, $0xb95e8083
DATA expc<>+188(SB)/4, $0xb95e8083
// p0
DATA expc<>+192(SB)/4, $0x39506967
DATA expc<>+196(SB)/4, $0x39506967
DATA expc<>+200(SB)/4, $0x39506967
DATA expc<>+204(SB)/4, $0x39506967
DATA expc<>+208(SB)/4, $0x39506967
DATA expc<>+212(SB)/4, $0x39506967
DATA expc<>+216(SB)/4, $0x39506967
DATA expc<>+220(SB)/4, $0x39506967
// p1
DATA expc<>+224(SB)/4, $0x3ab743ce
DATA expc<>+228(SB)/4, $0x3ab743ce
DATA expc<>+232(SB)/4, $0x3ab743ce
DATA expc<>+236(SB)/4, $0x3ab743ce
DATA expc<>+240(SB)/4, $0x3ab743ce
DATA expc<>+244(SB)/4, $0x3ab743ce
DATA expc<>+248(SB)/4, $0x3ab743ce
DATA expc<>+252(SB)/4, $0x3ab743ce
// p2
DATA expc<>+256(SB)/4, $0x3c088908
DATA expc<>+260(SB)/4, $0x3c088908
DATA expc<>+264(SB)/4, $0x3c088908
DATA expc<>+268(SB)/4, $0x3c088908
DATA expc<>+272(SB)/4, $0x3c088908
DATA expc<>+276(SB)/4, $0x3c088908
DATA expc<>+280(SB)/4, $0x3c088908
DATA expc<>+284(SB)/4, $0x3c088908
// p3
DATA expc<>+288(SB)/4, $0x3d2aa9c1
DATA expc<>+292(SB)/4, $0x3d2aa9c1
DATA expc<>+296(SB)/4, $0x3d2aa9c1
DATA expc<>+300(SB)/4, $0x3d2aa9c1
DATA expc<>+304(SB)/4, $0x3d2aa9c1
DATA expc<>+308(SB)/4, $0x3d2aa9c1
DATA expc<>+312(SB)/4, $0x3d2aa9c1
DATA expc<>+316(SB)/4, $0x3d2aa9c1
// p4
DATA expc<>+320(SB)/4, $0x3e2aaaaa
DATA expc<>+324(SB)/4, $0x3e2aaaaa
DATA expc<>+328(SB)/4, $0x3e2aaaaa
DATA expc<>+332(SB)/4, $0x3e2aaaaa
DATA expc<>+336(SB)/4, $0x3e2aaaaa
DATA expc<>+340(SB)/4, $0x3e2aaaaa
DATA expc<>+344(SB)/4, $0x3e2aaaaa
DATA expc<>+348(SB)/4, $0x3e2aaaaa
// p5
DATA expc<>+352(SB)/4, $0x3f000000
DATA expc<>+356(SB)/4, $0x3f000000
DATA expc<>+360(SB)/4, $0x3f000000
DATA expc<>+364(SB)/4, $0x3f000000
DATA expc<>+368(SB)/4, $0x3f000000
DATA expc<>+372(SB)/4, $0x3f000000
DATA expc<>+376(SB)/4, $0x3f000000
DATA expc<>+380(SB)/4, $0x3f000000
// one
DATA expc<>+384(SB)/4, $0x3f800000
DATA expc<>+388(SB)/4, $0x3f800000
DATA expc<>+392(SB)/4, $0x3f800000
DATA expc<>+396(SB)/4, $0x3f800000
DATA expc<>+400(SB)/4, $0x3f800000
DATA expc<>+404(SB)/4, $0x3f800000
DATA expc<>+408(SB)/4, $0x3f800000
DATA expc<>+412(SB)/4, $0x3f800000
// i127
DATA expc<>+416(SB)/4, $0x0000007f
DATA expc<>+420(SB)/4, $0x0000007f
DATA expc<>+424(SB)/4, $0x0000007f
DATA expc<>+428(SB)/4, $0x0000007f
DATA expc<>+432(SB)/4, $0x0000007f
DATA expc<>+436(SB)/4, $0x0000007f
DATA expc<>+440(SB)/4, $0x0000007f
DATA expc<>+444(SB)/4, $0x0000007f
GLOBL expc<>(SB), RODATA|NOPTR, $448

// EXPF sets X = exp(X) on 8 lanes, the same sequence of roundings on every
// call path (goExp is its pure-Go twin, without fusion). Y14 and Y13 must
// hold the clamp bounds (expc entries 0 and 1); T1..T3 are clobbered. NaN
// stays NaN; exp(x) = 0 for x <= -88.37 (so -Inf gives 0) and is finite for
// every finite x. Algorithm: n = floor(x*log2e + 0.5), r = x - n*ln2 (two
// FMAs with ln2 split), exp(r) by Cephes' degree-5 polynomial, times 2^n
// built in the exponent bits.
#define EXPF(X, T1, T2, T3) \
	VMINPS       X, Y14, X; \
	VMAXPS       X, Y13, X; \
	VMOVUPS      expc<>+64(SB), T1; \
	VFMADD213PS  expc<>+96(SB), X, T1; \
	VROUNDPS     $1, T1, T1; \
	VFNMADD231PS expc<>+128(SB), T1, X; \
	VFNMADD231PS expc<>+160(SB), T1, X; \
	VMOVUPS      expc<>+192(SB), T2; \
	VFMADD213PS  expc<>+224(SB), X, T2; \
	VFMADD213PS  expc<>+256(SB), X, T2; \
	VFMADD213PS  expc<>+288(SB), X, T2; \
	VFMADD213PS  expc<>+320(SB), X, T2; \
	VFMADD213PS  expc<>+352(SB), X, T2; \
	VMULPS       X, X, T3; \
	VFMADD213PS  X, T3, T2; \
	VADDPS       expc<>+384(SB), T2, T2; \
	VCVTTPS2DQ   T1, T1; \
	VPADDD       expc<>+416(SB), T1, T1; \
	VPSLLD       $23, T1, T1; \
	VMULPS       T1, T2, X

// func expRun(n8 int, x *float32, out *float32)
// out[i] = exp(x[i]) for i < n8 (a multiple of 8).
TEXT ·expRun(SB), NOSPLIT, $0-24
	MOVQ n8+0(FP), CX
	MOVQ x+8(FP), SI
	MOVQ out+16(FP), DI
	VMOVUPS expc<>+0(SB), Y14
	VMOVUPS expc<>+32(SB), Y13
	SHLQ $2, CX
	XORQ AX, AX
	TESTQ CX, CX
	JEQ  edone

eloop:
	VMOVUPS (SI)(AX*1), Y0
	EXPF(Y0, Y1, Y2, Y3)
	VMOVUPS Y0, (DI)(AX*1)
	ADDQ $32, AX
	CMPQ AX, CX
	JLT  eloop

edone:
	VZEROUPPER
	RET

// func expSumRun(n8 int, s *float32, scale float32, m float32) float32
// s[t] = exp(s[t]/scale - m) in place for t < n8 (a multiple of 8) and
// returns their sum: lane j sums t = j, j+8, ... in order, then the HSUM
// tree (goExpSum is the twin).
TEXT ·expSumRun(SB), NOSPLIT, $0-28
	MOVQ n8+0(FP), CX
	MOVQ s+8(FP), SI
	VBROADCASTSS scale+16(FP), Y11
	VBROADCASTSS m+20(FP), Y12
	VMOVUPS expc<>+0(SB), Y14
	VMOVUPS expc<>+32(SB), Y13
	VXORPS Y5, Y5, Y5
	SHLQ $2, CX
	XORQ AX, AX
	TESTQ CX, CX
	JEQ  xdone

xloop:
	VMOVUPS (SI)(AX*1), Y0
	VDIVPS  Y11, Y0, Y0
	VSUBPS  Y12, Y0, Y0
	EXPF(Y0, Y1, Y2, Y3)
	VMOVUPS Y0, (SI)(AX*1)
	VADDPS  Y0, Y5, Y5
	ADDQ $32, AX
	CMPQ AX, CX
	JLT  xloop

xdone:
	HSUM(Y5, X5, ret+24(FP))
	VZEROUPPER
	RET

// func siluRun(n8 int, h1 *float32, h3 *float32, out *float32)
// out[i] = (h1[i] * (1/(1+exp(-h1[i])))) * h3[i] for i < n8 (a multiple of 8).
TEXT ·siluRun(SB), NOSPLIT, $0-32
	MOVQ n8+0(FP), CX
	MOVQ h1+8(FP), SI
	MOVQ h3+16(FP), DI
	MOVQ out+24(FP), DX
	VMOVUPS expc<>+0(SB), Y14
	VMOVUPS expc<>+32(SB), Y13
	VMOVUPS expc<>+384(SB), Y12
	VXORPS  Y11, Y11, Y11
	SHLQ $2, CX
	XORQ AX, AX
	TESTQ CX, CX
	JEQ  udone

uloop:
	VMOVUPS (SI)(AX*1), Y4
	VSUBPS  Y4, Y11, Y0
	EXPF(Y0, Y1, Y2, Y3)
	VADDPS  Y12, Y0, Y0
	VDIVPS  Y0, Y12, Y1
	VMULPS  Y1, Y4, Y4
	VMULPS  (DI)(AX*1), Y4, Y4
	VMOVUPS Y4, (DX)(AX*1)
	ADDQ $32, AX
	CMPQ AX, CX
	JLT  uloop

udone:
	VZEROUPPER
	RET

// func maxRun(n8 int, s *float32) float32
// The largest of s[0..n8) (n8 a positive multiple of 8; no NaN expected).
TEXT ·maxRun(SB), NOSPLIT, $0-20
	MOVQ n8+0(FP), CX
	MOVQ s+8(FP), SI
	SHLQ $2, CX
	VMOVUPS (SI), Y0
	MOVQ $32, AX

mloop:
	CMPQ AX, CX
	JGE  mdone
	VMAXPS (SI)(AX*1), Y0, Y0
	ADDQ $32, AX
	JMP  mloop

mdone:
	VEXTRACTF128 $1, Y0, X1
	VMAXPS       X1, X0, X0
	VMOVHLPS     X0, X0, X1
	VMAXPS       X1, X0, X0
	VMOVSHDUP    X0, X1
	VMAXSS       X1, X0, X0
	VMOVSS       X0, ret+16(FP)
	VZEROUPPER
	RET

// func kern3x4run(n4, k int, x *float32, ldx int, w *float32, ldw int, c *float32, ldc int)
// n4 consecutive kern3x4 tiles along the columns: C[i][4g+j] for i < 3,
// g < n4, j < 4 (attention scores of 3 query rows against 4*n4 K rows).
// Same per-element order as kern3x4 (and dot8).
TEXT ·kern3x4run(SB), NOSPLIT, $0-64
	MOVQ n4+0(FP), R8
	MOVQ k+8(FP), CX
	MOVQ x+16(FP), SI
	MOVQ ldx+24(FP), R11
	MOVQ w+32(FP), DI
	MOVQ ldw+40(FP), R9
	MOVQ c+48(FP), DX
	MOVQ ldc+56(FP), R10
	SHLQ $2, CX
	SHLQ $2, R11
	SHLQ $2, R9
	SHLQ $2, R10
	LEAQ (SI)(R11*1), R12
	LEAQ (R12)(R11*1), R11
	XCHGQ R11, R12
	TESTQ R8, R8
	JEQ  r3done

r3group:
	LEAQ (DI)(R9*1), R13
	LEAQ (R13)(R9*1), R14
	LEAQ (R14)(R9*1), BX
	ZERO3X4
	XORQ AX, AX

r3loop:
	FMA3X4
	ADDQ $32, AX
	CMPQ AX, CX
	JLT  r3loop

	MOVQ DX, AX
	STORE3X4(AX)
	ADDQ $16, DX
	LEAQ (BX)(R9*1), DI
	DECQ R8
	JNZ  r3group

r3done:
	VZEROUPPER
	RET

// func kern1x4run(n4, k int, x *float32, w *float32, ldw int, c *float32)
// n4 consecutive kern1x4 tiles along the columns (one query row).
TEXT ·kern1x4run(SB), NOSPLIT, $0-48
	MOVQ n4+0(FP), R8
	MOVQ k+8(FP), CX
	MOVQ x+16(FP), SI
	MOVQ w+24(FP), DI
	MOVQ ldw+32(FP), R9
	MOVQ c+40(FP), DX
	SHLQ $2, CX
	SHLQ $2, R9
	TESTQ R8, R8
	JEQ  r1done

r1group:
	LEAQ (DI)(R9*1), R13
	LEAQ (R13)(R9*1), R14
	LEAQ (R14)(R9*1), BX
	ZERO1X4
	XORQ AX, AX

r1loop:
	FMA1X4
	ADDQ $32, AX
	CMPQ AX, CX
	JLT  r1loop

	STORE1X4
	ADDQ $16, DX
	LEAQ (BX)(R9*1), DI
	DECQ R8
	JNZ  r1group

r1done:
	VZEROUPPER
	RET

// hsum8perm is HSUM8's last permutation: lane i of the result takes lane
// perm[i] of [s0 s2 s4 s6 | s1 s3 s5 s7].
DATA hsum8perm<>+0(SB)/4, $0
DATA hsum8perm<>+4(SB)/4, $4
DATA hsum8perm<>+8(SB)/4, $1
DATA hsum8perm<>+12(SB)/4, $5
DATA hsum8perm<>+16(SB)/4, $2
DATA hsum8perm<>+20(SB)/4, $6
DATA hsum8perm<>+24(SB)/4, $3
DATA hsum8perm<>+28(SB)/4, $7
GLOBL hsum8perm<>(SB), RODATA|NOPTR, $32
