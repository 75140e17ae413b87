//go:build !purego

#include "textflag.h"

// AVX-512 tiles with the AVX2 tiles' per-element arithmetic. A ZMM register
// holds the 8-lane accumulators of two output elements side by side (rows i
// and i+1 of X against one W row): its low 256 bits are exactly the YMM
// accumulator the AVX2 kernels keep for row i, its high 256 bits the one for
// row i+1. X comes pre-packed in pairs (packPairs: 8 floats of row i, then 8
// of row i+1, for each 8 of k) so one 512-bit load feeds both halves, and a W
// row's 8 floats are broadcast to both halves. Each lane still sees one FMA
// per 8 k in k order, and HSUMZ reduces each half with the AVX2 kernels'
// HSUM tree, so every element has the same bits whichever family, tile or
// batch computed it (TestGemmBatchInvariant). What doubles is the work per
// instruction: 16 multiply-adds per FMA instead of 8.

// HSUMZ reduces both 256-bit halves of Z with HSUM's tree,
// ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)), one half at a time in place, and
// stores the low half's sum at d0 and the high half's at d1. X is Z's low
// 128 bits; Z30 and X31 are scratch.
#define HSUMZ(Z, X, d0, d1) \
	VSHUFF32X4    $0xB1, Z, Z, Z30; \
	VADDPS        Z30, Z, Z; \
	VPERMILPS     $0x4E, Z, Z30; \
	VADDPS        Z30, Z, Z; \
	VMOVSHDUP     Z, Z30; \
	VADDPS        Z30, Z, Z; \
	VMOVSS        X, d0; \
	VEXTRACTF32X4 $2, Z, X31; \
	VMOVSS        X31, d1

// Registers of both kernels: pairs SI, R11, R12, R15 (8x4) or SI (2x4); W
// rows DI, R13, R14, BX (stride R9 bytes); k byte offset AX (a pair's offset
// is 2*AX), k bytes CX; tiles left R8; C at DX (stride R10 bytes);
// accumulators Z0..Z15 (pair q, W row j in Z(4q+j)).

#define BCASTW \
	VBROADCASTF32X8 (DI)(AX*1), Z20; \
	VBROADCASTF32X8 (R13)(AX*1), Z21; \
	VBROADCASTF32X8 (R14)(AX*1), Z22; \
	VBROADCASTF32X8 (BX)(AX*1), Z23

#define PAIRFMA(P, a0, a1, a2, a3) \
	VFMADD231PS Z20, P, a0; \
	VFMADD231PS Z21, P, a1; \
	VFMADD231PS Z22, P, a2; \
	VFMADD231PS Z23, P, a3

// STOREPAIR stores pair accumulators a0..a3 into rows DX and DX+R10 at
// columns 0..3, then advances DX by two rows.
#define STOREPAIR(a0, x0, a1, x1, a2, x2, a3, x3) \
	HSUMZ(a0, x0, 0(DX), 0(DX)(R10*1)); \
	HSUMZ(a1, x1, 4(DX), 4(DX)(R10*1)); \
	HSUMZ(a2, x2, 8(DX), 8(DX)(R10*1)); \
	HSUMZ(a3, x3, 12(DX), 12(DX)(R10*1)); \
	LEAQ  (DX)(R10*2), DX

#define ZEROZ4 \
	VXORPS Z0, Z0, Z0; \
	VXORPS Z1, Z1, Z1; \
	VXORPS Z2, Z2, Z2; \
	VXORPS Z3, Z3, Z3

#define ZEROZ16 \
	ZEROZ4; \
	VXORPS Z4, Z4, Z4; \
	VXORPS Z5, Z5, Z5; \
	VXORPS Z6, Z6, Z6; \
	VXORPS Z7, Z7, Z7; \
	VXORPS Z8, Z8, Z8; \
	VXORPS Z9, Z9, Z9; \
	VXORPS Z10, Z10, Z10; \
	VXORPS Z11, Z11, Z11; \
	VXORPS Z12, Z12, Z12; \
	VXORPS Z13, Z13, Z13; \
	VXORPS Z14, Z14, Z14; \
	VXORPS Z15, Z15, Z15

// RUNARGS loads the run kernels' arguments: tiles R8, k bytes CX, pair 0
// SI, W row 0 DI (stride R9 bytes), C DX (stride R10 bytes).
#define RUNARGS \
	MOVQ n4+0(FP), R8; \
	MOVQ k+8(FP), CX; \
	MOVQ p+16(FP), SI; \
	MOVQ w+24(FP), DI; \
	MOVQ ldw+32(FP), R9; \
	MOVQ c+40(FP), DX; \
	MOVQ ldc+48(FP), R10; \
	SHLQ $2, CX; \
	SHLQ $2, R9; \
	SHLQ $2, R10

// WROWS points R13, R14, BX at the W rows after DI.
#define WROWS \
	LEAQ (DI)(R9*1), R13; \
	LEAQ (R13)(R9*1), R14; \
	LEAQ (R14)(R9*1), BX

// The 8-column tiles, for products of a few rows (decode batches), where W
// streams from memory and is used by few rows: eight W streams in flight
// reach about 1.7x the bandwidth of four (a 65 MB matrix on one core: 34
// against 20 GB/s), as kern1x8run does for one row. Registers: pair 0 at SI
// (advancing 64 bytes a step; pair 1 at SI+2*CX), W rows DI, R13, R14, BX,
// R12, R15, R11, R10 (offset AX), k bytes CX; accumulators Z0..Z7 (pair 0,
// W rows 0..7) and Z8..Z15 (pair 1).

#define W8ROWS \
	MOVQ w+16(FP), DI; \
	MOVQ ldw+24(FP), R9; \
	SHLQ $2, R9; \
	LEAQ (DI)(R9*1), R13; \
	LEAQ (R13)(R9*1), R14; \
	LEAQ (R14)(R9*1), BX; \
	LEAQ (BX)(R9*1), R12; \
	LEAQ (R12)(R9*1), R15; \
	LEAQ (R15)(R9*1), R11; \
	LEAQ (R11)(R9*1), R10

// STORE8 stores accumulators a0..a7 (one pair, W rows 0..7) into rows DX
// and DX+R9 at columns 0..7, then advances DX by two rows.
#define STORE8(a0, x0, a1, x1, a2, x2, a3, x3, a4, x4, a5, x5, a6, x6, a7, x7) \
	HSUMZ(a0, x0, 0(DX), 0(DX)(R9*1)); \
	HSUMZ(a1, x1, 4(DX), 4(DX)(R9*1)); \
	HSUMZ(a2, x2, 8(DX), 8(DX)(R9*1)); \
	HSUMZ(a3, x3, 12(DX), 12(DX)(R9*1)); \
	HSUMZ(a4, x4, 16(DX), 16(DX)(R9*1)); \
	HSUMZ(a5, x5, 20(DX), 20(DX)(R9*1)); \
	HSUMZ(a6, x6, 24(DX), 24(DX)(R9*1)); \
	HSUMZ(a7, x7, 28(DX), 28(DX)(R9*1)); \
	LEAQ  (DX)(R9*2), DX

// PFNEXT8 prefetches 256 bytes of the next 8-row W tile, the one after the
// rows at DI (R8 = DI + 8*ldw, set before the loop; rows are contiguous, so
// that tile is 32*k bytes from R8): the k loop runs k/8 steps, so 256 bytes
// a step covers the whole tile by the time this one is done. A tile's loop
// has ~26 instructions per 8 W loads, too few loads in flight for the
// hardware prefetchers alone: with this the 8-column tiles stream 1.3-1.7x
// faster (a 65 MB matrix, m = 4-16). Past the matrix's end the prefetches
// touch lines that are never used; prefetches do not fault.
#define PFNEXT8 \
	PREFETCHT0 (R8)(AX*8); \
	PREFETCHT0 64(R8)(AX*8); \
	PREFETCHT0 128(R8)(AX*8); \
	PREFETCHT0 192(R8)(AX*8)

#define W8FMA(off, P, a) \
	VBROADCASTF32X8 off, Z18; \
	VFMADD231PS Z18, P, a

// func kernz8x4(n4, k int, p *float32, w *float32, ldw int, c *float32, ldc int)
//
// Rows 0..7 of X (four pairs, pair q at p + 2*k*q floats) against W rows
// 0..4*n4-1: C[i][j] for i < 8, j < 4*n4, one 8x4 tile after another along
// the columns (n4 = 1 in the matmul; a run along a KV page for attention
// scores). R15 is free: these functions touch no globals.
TEXT ·kernz8x4(SB), NOSPLIT, $0-56
	RUNARGS
	LEAQ (SI)(CX*2), R11
	LEAQ (R11)(CX*2), R12
	LEAQ (R12)(CX*2), R15
	TESTQ R8, R8
	JEQ  z8done

z8group:
	WROWS
	ZEROZ16
	XORQ AX, AX

z8loop:
	BCASTW
	VMOVUPS (SI)(AX*2), Z16
	VMOVUPS (R11)(AX*2), Z17
	VMOVUPS (R12)(AX*2), Z18
	VMOVUPS (R15)(AX*2), Z19
	PAIRFMA(Z16, Z0, Z1, Z2, Z3)
	PAIRFMA(Z17, Z4, Z5, Z6, Z7)
	PAIRFMA(Z18, Z8, Z9, Z10, Z11)
	PAIRFMA(Z19, Z12, Z13, Z14, Z15)
	ADDQ $32, AX
	CMPQ AX, CX
	JLT  z8loop

	MOVQ DX, AX
	STOREPAIR(Z0, X0, Z1, X1, Z2, X2, Z3, X3)
	STOREPAIR(Z4, X4, Z5, X5, Z6, X6, Z7, X7)
	STOREPAIR(Z8, X8, Z9, X9, Z10, X10, Z11, X11)
	STOREPAIR(Z12, X12, Z13, X13, Z14, X14, Z15, X15)
	LEAQ 16(AX), DX
	LEAQ (BX)(R9*1), DI
	DECQ R8
	JNZ  z8group

z8done:
	VZEROUPPER
	RET

// func kernz2x4(n4, k int, p *float32, w *float32, ldw int, c *float32, ldc int)
//
// One pair (rows 0 and 1 of X) against W rows 0..4*n4-1.
TEXT ·kernz2x4(SB), NOSPLIT, $0-56
	RUNARGS
	TESTQ R8, R8
	JEQ  z2done

z2group:
	WROWS
	ZEROZ4
	XORQ AX, AX

z2loop:
	BCASTW
	VMOVUPS (SI)(AX*2), Z16
	PAIRFMA(Z16, Z0, Z1, Z2, Z3)
	ADDQ $32, AX
	CMPQ AX, CX
	JLT  z2loop

	MOVQ DX, AX
	STOREPAIR(Z0, X0, Z1, X1, Z2, X2, Z3, X3)
	LEAQ 16(AX), DX
	LEAQ (BX)(R9*1), DI
	DECQ R8
	JNZ  z2group

z2done:
	VZEROUPPER
	RET

// func kernz4x8(k int, p *float32, w *float32, ldw int, c *float32, ldc int)
//
// Two pairs (rows 0..3 of X, packed) against W rows 0..7.
TEXT ·kernz4x8(SB), NOSPLIT, $0-48
	MOVQ k+0(FP), CX
	MOVQ p+8(FP), SI
	SHLQ $2, CX
	W8ROWS
	LEAQ (DI)(R9*8), R8
	ZEROZ16
	XORQ AX, AX

z48loop:
	PFNEXT8
	VMOVUPS (SI), Z16
	VMOVUPS (SI)(CX*2), Z17
	VBROADCASTF32X8 (DI)(AX*1), Z18
	VBROADCASTF32X8 (R13)(AX*1), Z19
	VBROADCASTF32X8 (R14)(AX*1), Z20
	VBROADCASTF32X8 (BX)(AX*1), Z21
	VBROADCASTF32X8 (R12)(AX*1), Z22
	VBROADCASTF32X8 (R15)(AX*1), Z23
	VBROADCASTF32X8 (R11)(AX*1), Z24
	VBROADCASTF32X8 (R10)(AX*1), Z25
	VFMADD231PS Z18, Z16, Z0
	VFMADD231PS Z19, Z16, Z1
	VFMADD231PS Z20, Z16, Z2
	VFMADD231PS Z21, Z16, Z3
	VFMADD231PS Z22, Z16, Z4
	VFMADD231PS Z23, Z16, Z5
	VFMADD231PS Z24, Z16, Z6
	VFMADD231PS Z25, Z16, Z7
	VFMADD231PS Z18, Z17, Z8
	VFMADD231PS Z19, Z17, Z9
	VFMADD231PS Z20, Z17, Z10
	VFMADD231PS Z21, Z17, Z11
	VFMADD231PS Z22, Z17, Z12
	VFMADD231PS Z23, Z17, Z13
	VFMADD231PS Z24, Z17, Z14
	VFMADD231PS Z25, Z17, Z15
	ADDQ $64, SI
	ADDQ $32, AX
	CMPQ AX, CX
	JLT  z48loop

	MOVQ c+32(FP), DX
	MOVQ ldc+40(FP), R9
	SHLQ $2, R9
	STORE8(Z0, X0, Z1, X1, Z2, X2, Z3, X3, Z4, X4, Z5, X5, Z6, X6, Z7, X7)
	STORE8(Z8, X8, Z9, X9, Z10, X10, Z11, X11, Z12, X12, Z13, X13, Z14, X14, Z15, X15)
	VZEROUPPER
	RET

// func kernz2x8(k int, p *float32, w *float32, ldw int, c *float32, ldc int)
//
// One pair (rows 0 and 1 of X, packed) against W rows 0..7.
TEXT ·kernz2x8(SB), NOSPLIT, $0-48
	MOVQ k+0(FP), CX
	MOVQ p+8(FP), SI
	SHLQ $2, CX
	W8ROWS
	ZEROZ4
	VXORPS Z4, Z4, Z4
	VXORPS Z5, Z5, Z5
	VXORPS Z6, Z6, Z6
	VXORPS Z7, Z7, Z7
	LEAQ (DI)(R9*8), R8
	XORQ AX, AX

z28loop:
	PFNEXT8
	VMOVUPS (SI), Z16
	W8FMA((DI)(AX*1), Z16, Z0)
	W8FMA((R13)(AX*1), Z16, Z1)
	W8FMA((R14)(AX*1), Z16, Z2)
	W8FMA((BX)(AX*1), Z16, Z3)
	W8FMA((R12)(AX*1), Z16, Z4)
	W8FMA((R15)(AX*1), Z16, Z5)
	W8FMA((R11)(AX*1), Z16, Z6)
	W8FMA((R10)(AX*1), Z16, Z7)
	ADDQ $64, SI
	ADDQ $32, AX
	CMPQ AX, CX
	JLT  z28loop

	MOVQ c+32(FP), DX
	MOVQ ldc+40(FP), R9
	SHLQ $2, R9
	STORE8(Z0, X0, Z1, X1, Z2, X2, Z3, X3, Z4, X4, Z5, X5, Z6, X6, Z7, X7)
	VZEROUPPER
	RET

// func accumRun2(n, hd int, a0, a1 *float32, v *float32, stride int, o0, o1 *float32)
//
// accumRun for two query vectors sharing the V rows: o0[i] += a0[t]*v[t][i]
// and o1[i] += a1[t]*v[t][i] for t = 0..n-1 in order, one FMA per term, so
// every element sees exactly accumRun's sequence; each V row is loaded once
// for both (eight independent FMA chains per 64 columns). hd is a positive
// multiple of 64.
TEXT ·accumRun2(SB), NOSPLIT, $0-64
	MOVQ n+0(FP), BX
	MOVQ hd+8(FP), CX
	MOVQ a0+16(FP), SI
	MOVQ a1+24(FP), R11
	MOVQ v+32(FP), DI
	MOVQ stride+40(FP), R8
	MOVQ o0+48(FP), DX
	MOVQ o1+56(FP), R12
	SHLQ $2, R8
	TESTQ BX, BX
	JEQ  a2done

a2chunk:
	VMOVUPS 0(DX), Z0
	VMOVUPS 64(DX), Z1
	VMOVUPS 128(DX), Z2
	VMOVUPS 192(DX), Z3
	VMOVUPS 0(R12), Z4
	VMOVUPS 64(R12), Z5
	VMOVUPS 128(R12), Z6
	VMOVUPS 192(R12), Z7
	MOVQ DI, R9
	XORQ AX, AX

a2t:
	VBROADCASTSS (SI)(AX*4), Z8
	VBROADCASTSS (R11)(AX*4), Z9
	VMOVUPS 0(R9), Z10
	VMOVUPS 64(R9), Z11
	VMOVUPS 128(R9), Z12
	VMOVUPS 192(R9), Z13
	VFMADD231PS Z10, Z8, Z0
	VFMADD231PS Z11, Z8, Z1
	VFMADD231PS Z12, Z8, Z2
	VFMADD231PS Z13, Z8, Z3
	VFMADD231PS Z10, Z9, Z4
	VFMADD231PS Z11, Z9, Z5
	VFMADD231PS Z12, Z9, Z6
	VFMADD231PS Z13, Z9, Z7
	ADDQ R8, R9
	INCQ AX
	CMPQ AX, BX
	JLT  a2t
	VMOVUPS Z0, 0(DX)
	VMOVUPS Z1, 64(DX)
	VMOVUPS Z2, 128(DX)
	VMOVUPS Z3, 192(DX)
	VMOVUPS Z4, 0(R12)
	VMOVUPS Z5, 64(R12)
	VMOVUPS Z6, 128(R12)
	VMOVUPS Z7, 192(R12)
	ADDQ $256, DX
	ADDQ $256, R12
	ADDQ $256, DI
	SUBQ $64, CX
	JNZ  a2chunk

a2done:
	VZEROUPPER
	RET
