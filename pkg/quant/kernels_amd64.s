//go:build !purego

#include "textflag.h"

// AVX2 + F16C kernels for Q8_0/Q4_0 weights times Q8_0 activations. Each
// follows the float order of the package comment exactly; per block b and
// per (weight row, activation row) pair:
//
//   lanes   VPMADDUBSW + VPMADDWD(ones): 8 int32, lane j = sum of the
//           products of elements 4j..4j+3 (exact)
//   s       dw*da, the two float16 scales widened exactly by VCVTPH2PS
//   acc    += float32(lanes)*s, as VCVTDQ2PS, VMULPS, VADDPS (never FMA)
//
// and finally the HSUM tree. VPMADDUBSW multiplies unsigned by signed bytes:
// Q8_0 uses |w| (VPABSB) times a with the sign of w (VPSIGNB); |w| <= 128
// and |a| <= 127 so a word holds at most 2*128*127 = 32512 and never
// saturates (a -128 activation could wrap in VPSIGNB; QuantizeActivations
// never produces one). Q4_0 uses the unsigned nibble q in [0,15] times a, and
// subtracts 8*(a0+a1) per word (computed once per activation block):
// |15*127*2| + |8*128*2| < 32767, exact too.
//
// The scale products s = dw*da of a tile are computed once per block, all
// at once: the R weight scales are gathered into one GPR and widened by one
// VCVTPH2PS, then multiplied by each activation scale (one VMULPS per
// activation row) into the s-table at the bottom of the frame, s(i,r) at
// 16*i+4*r(SP); each pair then broadcasts its s from there. The products are
// the same float32 multiplies as in Go, so this changes no bits.
//
// Register conventions in the tiles: Y15 int16 ones, Y14 |w| (Q8_0), Y13 w
// (Q8_0) or the unpacked nibbles (Q4_0), Y12 the pair's lanes, Y11 the
// weight scales, Y10 scale scratch, Y0.. the accumulators. AX is the byte
// offset of the current block in the activation rows (and, for Q8_0, in the
// weight rows); BX the offset in Q4_0 weight rows; CX the activation row
// length in bytes (nb*34). The weight rows are prefetched PF bytes ahead:
// with R rows streaming at once the hardware prefetchers alone leave part
// of the memory latency exposed.

DATA q4mask<>+0(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA q4mask<>+8(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA q4mask<>+16(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA q4mask<>+24(SB)/8, $0x0f0f0f0f0f0f0f0f
GLOBL q4mask<>(SB), RODATA|NOPTR, $32

DATA q4shift<>+0(SB)/8, $0
DATA q4shift<>+8(SB)/8, $0
DATA q4shift<>+16(SB)/8, $0x0000000400000004
DATA q4shift<>+24(SB)/8, $0x0000000400000004
GLOBL q4shift<>(SB), RODATA|NOPTR, $32

DATA q4eights<>+0(SB)/8, $0x0808080808080808
DATA q4eights<>+8(SB)/8, $0x0808080808080808
DATA q4eights<>+16(SB)/8, $0x0808080808080808
DATA q4eights<>+24(SB)/8, $0x0808080808080808
GLOBL q4eights<>(SB), RODATA|NOPTR, $32

DATA q8absmask<>+0(SB)/8, $0x7fffffff7fffffff
DATA q8absmask<>+8(SB)/8, $0x7fffffff7fffffff
DATA q8absmask<>+16(SB)/8, $0x7fffffff7fffffff
DATA q8absmask<>+24(SB)/8, $0x7fffffff7fffffff
GLOBL q8absmask<>(SB), RODATA|NOPTR, $32

// VPERMD indices undoing the lane interleave of VPACKSSDW/VPACKSSWB.
DATA q8perm<>+0(SB)/4, $0
DATA q8perm<>+4(SB)/4, $4
DATA q8perm<>+8(SB)/4, $1
DATA q8perm<>+12(SB)/4, $5
DATA q8perm<>+16(SB)/4, $2
DATA q8perm<>+20(SB)/4, $6
DATA q8perm<>+24(SB)/4, $3
DATA q8perm<>+28(SB)/4, $7
GLOBL q8perm<>(SB), RODATA|NOPTR, $32

DATA q8c127<>+0(SB)/4, $0x42fe0000
GLOBL q8c127<>(SB), RODATA|NOPTR, $4
DATA q8one<>+0(SB)/4, $0x3f800000
GLOBL q8one<>(SB), RODATA|NOPTR, $4
DATA q8inf<>+0(SB)/4, $0x7f800000
GLOBL q8inf<>(SB), RODATA|NOPTR, $4


#define PF 1024

// ONES sets Y15 to 16 int16 ones, the VPMADDWD multiplier.
#define ONES \
	VPCMPEQW Y15, Y15, Y15; \
	VPSRLW   $15, Y15, Y15

// HSUM reduces the 8 lanes of Y (X is its low half) with the fixed tree
// ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)) and stores the float at dst.
#define HSUM(Y, X, dst) \
	VEXTRACTF128 $1, Y, X12; \
	VADDPS       X12, X, X; \
	VMOVHLPS     X, X, X12; \
	VADDPS       X12, X, X; \
	VMOVSHDUP    X, X12; \
	VADDSS       X12, X, X; \
	VMOVSS       X, dst

// WS2, WS3, WS4 widen the float16 scales of the current block of 2, 3 or 4
// weight rows (at p+off) to float32 lanes 0.. of X11 (the other lanes are
// unused), using the GPRs T1 and T2.
#define WS2(p0, p1, off, T1, T2) \
	MOVWLZX   (p0)(off*1), T1; \
	MOVWLZX   (p1)(off*1), T2; \
	SHLQ      $16, T2; \
	ORQ       T2, T1; \
	VMOVQ     T1, X11; \
	VCVTPH2PS X11, X11

#define WS3(p0, p1, p2, off, T1, T2) \
	MOVWLZX   (p0)(off*1), T1; \
	MOVWLZX   (p1)(off*1), T2; \
	SHLQ      $16, T2; \
	ORQ       T2, T1; \
	MOVWLZX   (p2)(off*1), T2; \
	SHLQ      $32, T2; \
	ORQ       T2, T1; \
	VMOVQ     T1, X11; \
	VCVTPH2PS X11, X11

#define WS4(p0, p1, p2, p3, off, T1, T2) \
	MOVWLZX   (p0)(off*1), T1; \
	MOVWLZX   (p1)(off*1), T2; \
	SHLQ      $16, T2; \
	ORQ       T2, T1; \
	MOVWLZX   (p2)(off*1), T2; \
	SHLQ      $32, T2; \
	ORQ       T2, T1; \
	MOVWLZX   (p3)(off*1), T2; \
	SHLQ      $48, T2; \
	ORQ       T2, T1; \
	VMOVQ     T1, X11; \
	VCVTPH2PS X11, X11

// SROW stores s(i,r) = dw_r*da_i for r = 0..3 at dst, for the activation
// block at p+AX.
#define SROW(p, dst) \
	VPBROADCASTW (p)(AX*1), X10; \
	VCVTPH2PS    X10, X10; \
	VMULPS       X10, X11, X10; \
	VMOVUPS      X10, dst

// Q8W loads the Q8_0 weight quants at p+AX: Y13 = w, Y14 = |w|.
#define Q8W(p) \
	PREFETCHT0 PF(p)(AX*1); \
	VMOVDQU    2(p)(AX*1), Y13; \
	VPABSB     Y13, Y14

// Q8LANES sets Y12 to the 8 lanes, as float32, of w (Y13, Y14) times the
// activation quants in register A.
#define Q8LANES(A) \
	VPSIGNB    Y13, A, Y12; \
	VPMADDUBSW Y12, Y14, Y12; \
	VPMADDWD   Y15, Y12, Y12; \
	VCVTDQ2PS  Y12, Y12

// Q8PAIR adds one block's contribution, with its scale product at s, to
// acc; Q8PAIRM loads the activation quants from memory first.
#define Q8PAIR(A, s, acc) \
	Q8LANES(A); \
	VBROADCASTSS s, Y10; \
	VMULPS       Y10, Y12, Y12; \
	VADDPS       Y12, acc, acc

#define Q8PAIRM(amem, s, acc) \
	VMOVDQU amem, Y12; \
	Q8PAIR(Y12, s, acc)

// Q4W loads the Q4_0 weight quants at p+BX: Y13 = the 32 nibbles in element
// order. The 16 bytes go to both halves; the high half is shifted right by
// 4 bits per dword, which brings each byte's high nibble down (the bits
// shifted in from the next byte are masked off), so the register holds the
// low nibbles (elements 0-15) then the high nibbles (elements 16-31).
#define Q4W(p) \
	PREFETCHT0     PF(p)(BX*1); \
	VBROADCASTI128 2(p)(BX*1), Y13; \
	VPSRLVD        q4shift<>(SB), Y13, Y13; \
	VPAND          q4mask<>(SB), Y13, Y13

// A8 sets Y to the words 8*(a[2k]+a[2k+1]) of the activation block at p+AX.
#define A8(p, Y) \
	VMOVDQU    q4eights<>(SB), Y; \
	VPMADDUBSW 2(p)(AX*1), Y, Y

// Q4PAIR adds one block's contribution to acc: (q-8)*a summed in words as
// q*a - 8*a (a8), then in dwords; the scale product is at s.
#define Q4PAIR(amem, a8, s, acc) \
	VPMADDUBSW   amem, Y13, Y12; \
	VPSUBW       a8, Y12, Y12; \
	VPMADDWD     Y15, Y12, Y12; \
	VCVTDQ2PS    Y12, Y12; \
	VBROADCASTSS s, Y10; \
	VMULPS       Y10, Y12, Y12; \
	VADDPS       Y12, acc, acc

// DOTSCALE sets Y10 to s = dw*da broadcast, for the weight block at w+woff
// and the activation block at a+AX (the 1x1 kernels).
#define DOTSCALE(w, woff, a) \
	VPBROADCASTW (w)(woff*1), Y11; \
	VCVTPH2PS    X11, Y11; \
	VPBROADCASTW (a)(AX*1), Y10; \
	VCVTPH2PS    X10, Y10; \
	VMULPS       Y10, Y11, Y10

// func cpuidECX1() uint32
TEXT ·cpuidECX1(SB), NOSPLIT, $0-4
	MOVL  $1, AX
	XORL  CX, CX
	CPUID
	MOVL  CX, ret+0(FP)
	RET

// func cvtF16(f float32) uint16 (the hardware conversion, for the tests)
TEXT ·cvtF16(SB), NOSPLIT, $0-10
	VMOVSS    f+0(FP), X0
	VCVTPS2PH $0, X0, X1
	VMOVD     X1, AX
	MOVW      AX, ret+8(FP)
	RET

// func quantQ8(nb int, dst *byte, src *float32)
//
// quantize_row_q8_0_ref, 32 floats per iteration: amax with VMAXPS ordered
// so that a NaN element never replaces the running maximum (as the Go
// "a > amax" test), d = amax/127 and id = 1/d as scalars (id = 0 when 1/d is
// +Inf), fp16(d) with VCVTPS2PH (round to nearest even), v = x*id with NaN
// mapped to 0, and round half away from zero computed exactly as
// t + trunc(2*(v-t)) with t = trunc(v).
TEXT ·quantQ8(SB), NOSPLIT, $0-24
	MOVQ    nb+0(FP), CX
	MOVQ    dst+8(FP), DI
	MOVQ    src+16(FP), SI
	VMOVDQU q8absmask<>(SB), Y15
	VMOVDQU q8perm<>(SB), Y10
	VMOVSS  q8c127<>(SB), X14
	VMOVSS  q8one<>(SB), X13
	VMOVSS  q8inf<>(SB), X11

qloop:
	VMOVUPS 0(SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS 64(SI), Y2
	VMOVUPS 96(SI), Y3
	VXORPS  Y8, Y8, Y8
	VANDPS  Y15, Y0, Y4
	VMAXPS  Y8, Y4, Y8
	VANDPS  Y15, Y1, Y4
	VMAXPS  Y8, Y4, Y8
	VANDPS  Y15, Y2, Y4
	VMAXPS  Y8, Y4, Y8
	VANDPS  Y15, Y3, Y4
	VMAXPS  Y8, Y4, Y8
	VEXTRACTF128 $1, Y8, X4
	VMAXPS  X4, X8, X8
	VMOVHLPS X8, X8, X4
	VMAXPS  X4, X8, X8
	VMOVSHDUP X8, X4
	VMAXSS  X4, X8, X8
	VDIVSS  X14, X8, X9
	VDIVSS  X9, X13, X12
	VCMPSS  $4, X11, X12, X4
	VANDPS  X4, X12, X12
	VCVTPS2PH $0, X9, X4
	VMOVD   X4, AX
	MOVW    AX, (DI)
	VBROADCASTSS X12, Y12
	VMULPS  Y12, Y0, Y0
	VMULPS  Y12, Y1, Y1
	VMULPS  Y12, Y2, Y2
	VMULPS  Y12, Y3, Y3
	VCMPPS  $7, Y0, Y0, Y4
	VANDPS  Y4, Y0, Y0
	VCMPPS  $7, Y1, Y1, Y4
	VANDPS  Y4, Y1, Y1
	VCMPPS  $7, Y2, Y2, Y4
	VANDPS  Y4, Y2, Y2
	VCMPPS  $7, Y3, Y3, Y4
	VANDPS  Y4, Y3, Y3
	VROUNDPS $3, Y0, Y4
	VSUBPS  Y4, Y0, Y5
	VADDPS  Y5, Y5, Y5
	VROUNDPS $3, Y5, Y5
	VADDPS  Y5, Y4, Y0
	VROUNDPS $3, Y1, Y4
	VSUBPS  Y4, Y1, Y5
	VADDPS  Y5, Y5, Y5
	VROUNDPS $3, Y5, Y5
	VADDPS  Y5, Y4, Y1
	VROUNDPS $3, Y2, Y4
	VSUBPS  Y4, Y2, Y5
	VADDPS  Y5, Y5, Y5
	VROUNDPS $3, Y5, Y5
	VADDPS  Y5, Y4, Y2
	VROUNDPS $3, Y3, Y4
	VSUBPS  Y4, Y3, Y5
	VADDPS  Y5, Y5, Y5
	VROUNDPS $3, Y5, Y5
	VADDPS  Y5, Y4, Y3
	VCVTTPS2DQ Y0, Y0
	VCVTTPS2DQ Y1, Y1
	VCVTTPS2DQ Y2, Y2
	VCVTTPS2DQ Y3, Y3
	VPACKSSDW Y1, Y0, Y0
	VPACKSSDW Y3, Y2, Y2
	VPACKSSWB Y2, Y0, Y0
	VPERMD  Y0, Y10, Y0
	VMOVDQU Y0, 2(DI)
	ADDQ    $128, SI
	ADDQ    $34, DI
	DECQ    CX
	JNZ     qloop
	VZEROUPPER
	RET

// func q8dot(nb int, w, a *byte) float32
TEXT ·q8dot(SB), NOSPLIT, $0-28
	MOVQ  nb+0(FP), CX
	IMULQ $34, CX
	MOVQ  w+8(FP), DI
	MOVQ  a+16(FP), SI
	ONES
	VXORPS Y0, Y0, Y0
	XORQ  AX, AX

blk:
	DOTSCALE(DI, AX, SI)
	VMOVDQU 2(SI)(AX*1), Y8
	Q8W(DI)
	Q8LANES(Y8)
	VMULPS Y10, Y12, Y12
	VADDPS Y12, Y0, Y0
	ADDQ $34, AX
	CMPQ AX, CX
	JLT  blk

	HSUM(Y0, X0, ret+24(FP))
	VZEROUPPER
	RET

// func q4dot(nb int, w, a *byte) float32
TEXT ·q4dot(SB), NOSPLIT, $0-28
	MOVQ  nb+0(FP), CX
	IMULQ $34, CX
	MOVQ  w+8(FP), DI
	MOVQ  a+16(FP), SI
	ONES
	VXORPS Y0, Y0, Y0
	XORQ  AX, AX
	XORQ  BX, BX

blk:
	DOTSCALE(DI, BX, SI)
	A8(SI, Y8)
	Q4W(DI)
	VPMADDUBSW 2(SI)(AX*1), Y13, Y12
	VPSUBW     Y8, Y12, Y12
	VPMADDWD   Y15, Y12, Y12
	VCVTDQ2PS  Y12, Y12
	VMULPS     Y10, Y12, Y12
	VADDPS     Y12, Y0, Y0
	ADDQ $18, BX
	ADDQ $34, AX
	CMPQ AX, CX
	JLT  blk

	HSUM(Y0, X0, ret+24(FP))
	VZEROUPPER
	RET

// The Mat tiles, one shape per activation count (see tileRows in
// kernels_amd64.go), all built from the same macros in the same pattern; a
// change to one must be made to all (the tests compare every shape with the
// pure-Go family bit for bit). In each: activation rows SI, R9, R10, R11; weight rows
// DI, R8, R12, R13; R14 the output of activation row 0, R15 ldo in bytes;
// DX the tiles left. The accumulator of activation i and weight row r is
// Y(R*i+r). For Q4_0, BX walks the weight rows and equals the row length at
// the end of a tile, which places the next tile's rows; the 8*a words of the
// activation blocks stay in registers.

// func q8m1r4(nb int, w *byte, nt int, a *byte, lda int, out *float32, ldo int)
TEXT ·q8m1r4(SB), NOSPLIT, $16-56
	MOVQ  nb+0(FP), CX
	IMULQ $34, CX
	MOVQ  w+8(FP), DI
	MOVQ  nt+16(FP), DX
	MOVQ  a+24(FP), SI
	MOVQ  out+40(FP), R14
	ONES
	LEAQ  (DI)(CX*1), R8
	LEAQ  (R8)(CX*1), R12
	LEAQ  (R12)(CX*1), R13

tile:
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	XORQ   AX, AX

blk:
	WS4(DI, R8, R12, R13, AX, BX, R9)
	SROW(SI, 0(SP))
	VMOVDQU 2(SI)(AX*1), Y8
	Q8W(DI)
	Q8PAIR(Y8, 0(SP), Y0)
	Q8W(R8)
	Q8PAIR(Y8, 4(SP), Y1)
	Q8W(R12)
	Q8PAIR(Y8, 8(SP), Y2)
	Q8W(R13)
	Q8PAIR(Y8, 12(SP), Y3)
	ADDQ $34, AX
	CMPQ AX, CX
	JLT  blk

	HSUM(Y0, X0, 0(R14))
	HSUM(Y1, X1, 4(R14))
	HSUM(Y2, X2, 8(R14))
	HSUM(Y3, X3, 12(R14))
	ADDQ $16, R14
	LEAQ (R13)(CX*1), DI
	LEAQ (DI)(CX*1), R8
	LEAQ (R8)(CX*1), R12
	LEAQ (R12)(CX*1), R13
	DECQ DX
	JNZ  tile
	VZEROUPPER
	RET

// func q8m2r4(nb int, w *byte, nt int, a *byte, lda int, out *float32, ldo int)
TEXT ·q8m2r4(SB), NOSPLIT, $32-56
	MOVQ  nb+0(FP), CX
	IMULQ $34, CX
	MOVQ  w+8(FP), DI
	MOVQ  nt+16(FP), DX
	MOVQ  a+24(FP), SI
	MOVQ  lda+32(FP), R11
	LEAQ  (SI)(R11*1), R9
	MOVQ  ldo+48(FP), R15
	SHLQ  $2, R15
	MOVQ  out+40(FP), R14
	ONES
	LEAQ  (DI)(CX*1), R8
	LEAQ  (R8)(CX*1), R12
	LEAQ  (R12)(CX*1), R13

tile:
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	XORQ   AX, AX

blk:
	WS4(DI, R8, R12, R13, AX, BX, R10)
	SROW(SI, 0(SP))
	SROW(R9, 16(SP))
	Q8W(DI)
	Q8PAIRM(2(SI)(AX*1), 0(SP), Y0)
	Q8PAIRM(2(R9)(AX*1), 16(SP), Y4)
	Q8W(R8)
	Q8PAIRM(2(SI)(AX*1), 4(SP), Y1)
	Q8PAIRM(2(R9)(AX*1), 20(SP), Y5)
	Q8W(R12)
	Q8PAIRM(2(SI)(AX*1), 8(SP), Y2)
	Q8PAIRM(2(R9)(AX*1), 24(SP), Y6)
	Q8W(R13)
	Q8PAIRM(2(SI)(AX*1), 12(SP), Y3)
	Q8PAIRM(2(R9)(AX*1), 28(SP), Y7)
	ADDQ $34, AX
	CMPQ AX, CX
	JLT  blk

	MOVQ R14, AX
	HSUM(Y0, X0, 0(AX))
	HSUM(Y1, X1, 4(AX))
	HSUM(Y2, X2, 8(AX))
	HSUM(Y3, X3, 12(AX))
	ADDQ R15, AX
	HSUM(Y4, X4, 0(AX))
	HSUM(Y5, X5, 4(AX))
	HSUM(Y6, X6, 8(AX))
	HSUM(Y7, X7, 12(AX))
	ADDQ $16, R14
	LEAQ (R13)(CX*1), DI
	LEAQ (DI)(CX*1), R8
	LEAQ (R8)(CX*1), R12
	LEAQ (R12)(CX*1), R13
	DECQ DX
	JNZ  tile
	VZEROUPPER
	RET

// func q8m3r3(nb int, w *byte, nt int, a *byte, lda int, out *float32, ldo int)
TEXT ·q8m3r3(SB), NOSPLIT, $48-56
	MOVQ  nb+0(FP), CX
	IMULQ $34, CX
	MOVQ  w+8(FP), DI
	MOVQ  nt+16(FP), DX
	MOVQ  a+24(FP), SI
	MOVQ  lda+32(FP), R11
	LEAQ  (SI)(R11*1), R9
	LEAQ  (R9)(R11*1), R10
	MOVQ  ldo+48(FP), R15
	SHLQ  $2, R15
	MOVQ  out+40(FP), R14
	ONES
	LEAQ  (DI)(CX*1), R8
	LEAQ  (R8)(CX*1), R12

tile:
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	XORQ   AX, AX

blk:
	WS3(DI, R8, R12, AX, BX, R11)
	SROW(SI, 0(SP))
	SROW(R9, 16(SP))
	SROW(R10, 32(SP))
	Q8W(DI)
	Q8PAIRM(2(SI)(AX*1), 0(SP), Y0)
	Q8PAIRM(2(R9)(AX*1), 16(SP), Y3)
	Q8PAIRM(2(R10)(AX*1), 32(SP), Y6)
	Q8W(R8)
	Q8PAIRM(2(SI)(AX*1), 4(SP), Y1)
	Q8PAIRM(2(R9)(AX*1), 20(SP), Y4)
	Q8PAIRM(2(R10)(AX*1), 36(SP), Y7)
	Q8W(R12)
	Q8PAIRM(2(SI)(AX*1), 8(SP), Y2)
	Q8PAIRM(2(R9)(AX*1), 24(SP), Y5)
	Q8PAIRM(2(R10)(AX*1), 40(SP), Y8)
	ADDQ $34, AX
	CMPQ AX, CX
	JLT  blk

	MOVQ R14, AX
	HSUM(Y0, X0, 0(AX))
	HSUM(Y1, X1, 4(AX))
	HSUM(Y2, X2, 8(AX))
	ADDQ R15, AX
	HSUM(Y3, X3, 0(AX))
	HSUM(Y4, X4, 4(AX))
	HSUM(Y5, X5, 8(AX))
	ADDQ R15, AX
	HSUM(Y6, X6, 0(AX))
	HSUM(Y7, X7, 4(AX))
	HSUM(Y8, X8, 8(AX))
	ADDQ $12, R14
	LEAQ (R12)(CX*1), DI
	LEAQ (DI)(CX*1), R8
	LEAQ (R8)(CX*1), R12
	DECQ DX
	JNZ  tile
	VZEROUPPER
	RET

// func q8m4r2(nb int, w *byte, nt int, a *byte, lda int, out *float32, ldo int)
TEXT ·q8m4r2(SB), NOSPLIT, $64-56
	MOVQ  nb+0(FP), CX
	IMULQ $34, CX
	MOVQ  w+8(FP), DI
	MOVQ  nt+16(FP), DX
	MOVQ  a+24(FP), SI
	MOVQ  lda+32(FP), R11
	LEAQ  (SI)(R11*1), R9
	LEAQ  (R9)(R11*1), R10
	LEAQ  (R10)(R11*1), R11
	MOVQ  ldo+48(FP), R15
	SHLQ  $2, R15
	MOVQ  out+40(FP), R14
	ONES
	LEAQ  (DI)(CX*1), R8

tile:
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	XORQ   AX, AX

blk:
	WS2(DI, R8, AX, BX, R12)
	SROW(SI, 0(SP))
	SROW(R9, 16(SP))
	SROW(R10, 32(SP))
	SROW(R11, 48(SP))
	Q8W(DI)
	Q8PAIRM(2(SI)(AX*1), 0(SP), Y0)
	Q8PAIRM(2(R9)(AX*1), 16(SP), Y2)
	Q8PAIRM(2(R10)(AX*1), 32(SP), Y4)
	Q8PAIRM(2(R11)(AX*1), 48(SP), Y6)
	Q8W(R8)
	Q8PAIRM(2(SI)(AX*1), 4(SP), Y1)
	Q8PAIRM(2(R9)(AX*1), 20(SP), Y3)
	Q8PAIRM(2(R10)(AX*1), 36(SP), Y5)
	Q8PAIRM(2(R11)(AX*1), 52(SP), Y7)
	ADDQ $34, AX
	CMPQ AX, CX
	JLT  blk

	MOVQ R14, AX
	HSUM(Y0, X0, 0(AX))
	HSUM(Y1, X1, 4(AX))
	ADDQ R15, AX
	HSUM(Y2, X2, 0(AX))
	HSUM(Y3, X3, 4(AX))
	ADDQ R15, AX
	HSUM(Y4, X4, 0(AX))
	HSUM(Y5, X5, 4(AX))
	ADDQ R15, AX
	HSUM(Y6, X6, 0(AX))
	HSUM(Y7, X7, 4(AX))
	ADDQ $8, R14
	LEAQ (R8)(CX*1), DI
	LEAQ (DI)(CX*1), R8
	DECQ DX
	JNZ  tile
	VZEROUPPER
	RET

// func q4m1r4(nb int, w *byte, nt int, a *byte, lda int, out *float32, ldo int)
TEXT ·q4m1r4(SB), NOSPLIT, $16-56
	MOVQ  nb+0(FP), CX
	MOVQ  CX, BX
	IMULQ $18, BX
	IMULQ $34, CX
	MOVQ  w+8(FP), DI
	MOVQ  nt+16(FP), DX
	MOVQ  a+24(FP), SI
	MOVQ  out+40(FP), R14
	ONES
	LEAQ  (DI)(BX*1), R8
	LEAQ  (R8)(BX*1), R12
	LEAQ  (R12)(BX*1), R13

tile:
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	XORQ   AX, AX
	XORQ   BX, BX

blk:
	WS4(DI, R8, R12, R13, BX, R9, R10)
	SROW(SI, 0(SP))
	A8(SI, Y8)
	Q4W(DI)
	Q4PAIR(2(SI)(AX*1), Y8, 0(SP), Y0)
	Q4W(R8)
	Q4PAIR(2(SI)(AX*1), Y8, 4(SP), Y1)
	Q4W(R12)
	Q4PAIR(2(SI)(AX*1), Y8, 8(SP), Y2)
	Q4W(R13)
	Q4PAIR(2(SI)(AX*1), Y8, 12(SP), Y3)
	ADDQ $18, BX
	ADDQ $34, AX
	CMPQ AX, CX
	JLT  blk

	HSUM(Y0, X0, 0(R14))
	HSUM(Y1, X1, 4(R14))
	HSUM(Y2, X2, 8(R14))
	HSUM(Y3, X3, 12(R14))
	ADDQ $16, R14
	LEAQ (R13)(BX*1), DI
	LEAQ (DI)(BX*1), R8
	LEAQ (R8)(BX*1), R12
	LEAQ (R12)(BX*1), R13
	DECQ DX
	JNZ  tile
	VZEROUPPER
	RET

// func q4m2r4(nb int, w *byte, nt int, a *byte, lda int, out *float32, ldo int)
TEXT ·q4m2r4(SB), NOSPLIT, $32-56
	MOVQ  nb+0(FP), CX
	MOVQ  CX, BX
	IMULQ $18, BX
	IMULQ $34, CX
	MOVQ  w+8(FP), DI
	MOVQ  nt+16(FP), DX
	MOVQ  a+24(FP), SI
	MOVQ  lda+32(FP), R11
	LEAQ  (SI)(R11*1), R9
	MOVQ  ldo+48(FP), R15
	SHLQ  $2, R15
	MOVQ  out+40(FP), R14
	ONES
	LEAQ  (DI)(BX*1), R8
	LEAQ  (R8)(BX*1), R12
	LEAQ  (R12)(BX*1), R13

tile:
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	XORQ   AX, AX
	XORQ   BX, BX

blk:
	WS4(DI, R8, R12, R13, BX, R10, R11)
	SROW(SI, 0(SP))
	SROW(R9, 16(SP))
	A8(SI, Y8)
	A8(R9, Y9)
	Q4W(DI)
	Q4PAIR(2(SI)(AX*1), Y8, 0(SP), Y0)
	Q4PAIR(2(R9)(AX*1), Y9, 16(SP), Y4)
	Q4W(R8)
	Q4PAIR(2(SI)(AX*1), Y8, 4(SP), Y1)
	Q4PAIR(2(R9)(AX*1), Y9, 20(SP), Y5)
	Q4W(R12)
	Q4PAIR(2(SI)(AX*1), Y8, 8(SP), Y2)
	Q4PAIR(2(R9)(AX*1), Y9, 24(SP), Y6)
	Q4W(R13)
	Q4PAIR(2(SI)(AX*1), Y8, 12(SP), Y3)
	Q4PAIR(2(R9)(AX*1), Y9, 28(SP), Y7)
	ADDQ $18, BX
	ADDQ $34, AX
	CMPQ AX, CX
	JLT  blk

	MOVQ R14, AX
	HSUM(Y0, X0, 0(AX))
	HSUM(Y1, X1, 4(AX))
	HSUM(Y2, X2, 8(AX))
	HSUM(Y3, X3, 12(AX))
	ADDQ R15, AX
	HSUM(Y4, X4, 0(AX))
	HSUM(Y5, X5, 4(AX))
	HSUM(Y6, X6, 8(AX))
	HSUM(Y7, X7, 12(AX))
	ADDQ $16, R14
	LEAQ (R13)(BX*1), DI
	LEAQ (DI)(BX*1), R8
	LEAQ (R8)(BX*1), R12
	LEAQ (R12)(BX*1), R13
	DECQ DX
	JNZ  tile
	VZEROUPPER
	RET

// func q4m3r3(nb int, w *byte, nt int, a *byte, lda int, out *float32, ldo int)
TEXT ·q4m3r3(SB), NOSPLIT, $48-56
	MOVQ  nb+0(FP), CX
	MOVQ  CX, BX
	IMULQ $18, BX
	IMULQ $34, CX
	MOVQ  w+8(FP), DI
	MOVQ  nt+16(FP), DX
	MOVQ  a+24(FP), SI
	MOVQ  lda+32(FP), R11
	LEAQ  (SI)(R11*1), R9
	LEAQ  (R9)(R11*1), R10
	MOVQ  ldo+48(FP), R15
	SHLQ  $2, R15
	MOVQ  out+40(FP), R14
	ONES
	LEAQ  (DI)(BX*1), R8
	LEAQ  (R8)(BX*1), R12

tile:
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	XORQ   AX, AX
	XORQ   BX, BX

blk:
	WS3(DI, R8, R12, BX, R11, R13)
	SROW(SI, 0(SP))
	SROW(R9, 16(SP))
	SROW(R10, 32(SP))
	A8(SI, Y9)
	A8(R9, Y11)
	A8(R10, Y14)
	Q4W(DI)
	Q4PAIR(2(SI)(AX*1), Y9, 0(SP), Y0)
	Q4PAIR(2(R9)(AX*1), Y11, 16(SP), Y3)
	Q4PAIR(2(R10)(AX*1), Y14, 32(SP), Y6)
	Q4W(R8)
	Q4PAIR(2(SI)(AX*1), Y9, 4(SP), Y1)
	Q4PAIR(2(R9)(AX*1), Y11, 20(SP), Y4)
	Q4PAIR(2(R10)(AX*1), Y14, 36(SP), Y7)
	Q4W(R12)
	Q4PAIR(2(SI)(AX*1), Y9, 8(SP), Y2)
	Q4PAIR(2(R9)(AX*1), Y11, 24(SP), Y5)
	Q4PAIR(2(R10)(AX*1), Y14, 40(SP), Y8)
	ADDQ $18, BX
	ADDQ $34, AX
	CMPQ AX, CX
	JLT  blk

	MOVQ R14, AX
	HSUM(Y0, X0, 0(AX))
	HSUM(Y1, X1, 4(AX))
	HSUM(Y2, X2, 8(AX))
	ADDQ R15, AX
	HSUM(Y3, X3, 0(AX))
	HSUM(Y4, X4, 4(AX))
	HSUM(Y5, X5, 8(AX))
	ADDQ R15, AX
	HSUM(Y6, X6, 0(AX))
	HSUM(Y7, X7, 4(AX))
	HSUM(Y8, X8, 8(AX))
	ADDQ $12, R14
	LEAQ (R12)(BX*1), DI
	LEAQ (DI)(BX*1), R8
	LEAQ (R8)(BX*1), R12
	DECQ DX
	JNZ  tile
	VZEROUPPER
	RET

// func q4m4r2(nb int, w *byte, nt int, a *byte, lda int, out *float32, ldo int)
TEXT ·q4m4r2(SB), NOSPLIT, $64-56
	MOVQ  nb+0(FP), CX
	MOVQ  CX, BX
	IMULQ $18, BX
	IMULQ $34, CX
	MOVQ  w+8(FP), DI
	MOVQ  nt+16(FP), DX
	MOVQ  a+24(FP), SI
	MOVQ  lda+32(FP), R11
	LEAQ  (SI)(R11*1), R9
	LEAQ  (R9)(R11*1), R10
	LEAQ  (R10)(R11*1), R11
	MOVQ  ldo+48(FP), R15
	SHLQ  $2, R15
	MOVQ  out+40(FP), R14
	ONES
	LEAQ  (DI)(BX*1), R8

tile:
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	XORQ   AX, AX
	XORQ   BX, BX

blk:
	WS2(DI, R8, BX, R12, R13)
	SROW(SI, 0(SP))
	SROW(R9, 16(SP))
	SROW(R10, 32(SP))
	SROW(R11, 48(SP))
	A8(SI, Y8)
	A8(R9, Y9)
	A8(R10, Y11)
	A8(R11, Y14)
	Q4W(DI)
	Q4PAIR(2(SI)(AX*1), Y8, 0(SP), Y0)
	Q4PAIR(2(R9)(AX*1), Y9, 16(SP), Y2)
	Q4PAIR(2(R10)(AX*1), Y11, 32(SP), Y4)
	Q4PAIR(2(R11)(AX*1), Y14, 48(SP), Y6)
	Q4W(R8)
	Q4PAIR(2(SI)(AX*1), Y8, 4(SP), Y1)
	Q4PAIR(2(R9)(AX*1), Y9, 20(SP), Y3)
	Q4PAIR(2(R10)(AX*1), Y11, 36(SP), Y5)
	Q4PAIR(2(R11)(AX*1), Y14, 52(SP), Y7)
	ADDQ $18, BX
	ADDQ $34, AX
	CMPQ AX, CX
	JLT  blk

	MOVQ R14, AX
	HSUM(Y0, X0, 0(AX))
	HSUM(Y1, X1, 4(AX))
	ADDQ R15, AX
	HSUM(Y2, X2, 0(AX))
	HSUM(Y3, X3, 4(AX))
	ADDQ R15, AX
	HSUM(Y4, X4, 0(AX))
	HSUM(Y5, X5, 4(AX))
	ADDQ R15, AX
	HSUM(Y6, X6, 0(AX))
	HSUM(Y7, X7, 4(AX))
	ADDQ $8, R14
	LEAQ (R8)(BX*1), DI
	LEAQ (DI)(BX*1), R8
	DECQ DX
	JNZ  tile
	VZEROUPPER
	RET

DATA f16consts<>+0(SB)/4, $0x00007fff
DATA f16consts<>+4(SB)/4, $0x00008000
DATA f16consts<>+8(SB)/4, $0x38000000
DATA f16consts<>+12(SB)/4, $0x00007bff
DATA f16consts<>+16(SB)/4, $0x00000400
DATA f16consts<>+20(SB)/4, $0x33800000
GLOBL f16consts<>(SB), RODATA|NOPTR, $24

// func decodeF16(n8 int, dst *float32, src *byte)
//
// F16ToF32 on 8 halves at a time, with the same integer algorithm (not
// VCVTPH2PS, which may quiet signalling NaNs): em = h&0x7fff; normal and
// Inf/NaN values are em<<13 plus the exponent rebias 112<<23, added twice
// when em > 0x7bff (exponent 31 becomes 255, payload kept); zeros and
// subnormals (em < 0x400) are float32(em)*2^-24, exact; then the sign.
TEXT ·decodeF16(SB), NOSPLIT, $0-24
	MOVQ         n8+0(FP), CX
	MOVQ         dst+8(FP), DI
	MOVQ         src+16(FP), SI
	VPBROADCASTD f16consts<>+0(SB), Y15
	VPBROADCASTD f16consts<>+4(SB), Y14
	VPBROADCASTD f16consts<>+8(SB), Y13
	VPBROADCASTD f16consts<>+12(SB), Y12
	VPBROADCASTD f16consts<>+16(SB), Y11
	VPBROADCASTD f16consts<>+20(SB), Y10

f16loop:
	VPMOVZXWD (SI), Y0
	VPAND     Y15, Y0, Y1
	VPAND     Y14, Y0, Y0
	VPSLLD    $16, Y0, Y0
	VPSLLD    $13, Y1, Y2
	VPADDD    Y13, Y2, Y2
	VPCMPGTD  Y12, Y1, Y3
	VPAND     Y13, Y3, Y3
	VPADDD    Y3, Y2, Y2
	VPCMPGTD  Y1, Y11, Y3
	VCVTDQ2PS Y1, Y4
	VMULPS    Y10, Y4, Y4
	VBLENDVPS Y3, Y4, Y2, Y2
	VPOR      Y0, Y2, Y2
	VMOVUPS   Y2, (DI)
	ADDQ      $16, SI
	ADDQ      $32, DI
	DECQ      CX
	JNZ       f16loop
	VZEROUPPER
	RET

// func decodeBF16(n8 int, dst *float32, src *byte)
TEXT ·decodeBF16(SB), NOSPLIT, $0-24
	MOVQ n8+0(FP), CX
	MOVQ dst+8(FP), DI
	MOVQ src+16(FP), SI

bf16loop:
	VPMOVZXWD (SI), Y0
	VPSLLD    $16, Y0, Y0
	VMOVDQU   Y0, (DI)
	ADDQ      $16, SI
	ADDQ      $32, DI
	DECQ      CX
	JNZ       bf16loop
	VZEROUPPER
	RET
