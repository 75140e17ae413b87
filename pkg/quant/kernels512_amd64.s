//go:build !purego

#include "textflag.h"

// AVX-512 (F, BW, VL, VNNI) tiles for Q8_0/Q4_0 weights times Q8_0
// activations, with exactly the per-element arithmetic of the AVX2 tiles in
// kernels_amd64.s: per block b and per (weight row, activation row) element,
// 8 exact int32 lanes, VCVTDQ2PS, one VMULPS by s = dw*da (the float16
// scales widened exactly, their product rounded once to float32), one VADDPS
// into the element's 8-lane accumulator, and at the end the HSUM tree
// ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)). What changes is only that a ZMM
// register carries two elements side by side (low 256 bits one, high 256
// bits the other), so every instruction does the work of two.
//
// Integer lanes: VPDPBUSD multiplies unsigned by signed bytes and sums each 4
// into an int32 lane, exactly (no int16 step, so no saturation anywhere).
//   Q8_0: one operand biased by 128 to make it unsigned, and the bias taken
//         back exactly: sum (a+128)*w - 128*(sum of w over each 4) in the
//         decode tile (the 128*sum is per weight block, VPDPBUSD of 128s
//         times w), sum (w+128)*a - 128*(sum of a) in the tiles that pair
//         activation rows (there the correction is per activation block and
//         each element's lanes start from it). Either takes fewer
//         instructions than |w| times a with w's sign (VPABSB, then VPMOVB2M
//         and VPBLENDMB of a and -a, there being no EVEX VPSIGNB), and holds
//         for any quants, -128 included.
//   Q4_0: the nibbles q in [0,15] times a, accumulated into -8*(sum of a over
//         each 4) (VPDPBUSD of 8s times a, negated, once per activation
//         block): the lanes sum (q-8)*a exactly, the integers the AVX2
//         kernel's VPMADDUBSW/VPSUBW(A8)/VPMADDWD sequence produces.
//
// Two tile shapes:
//   z1r8  decode: one activation row times 8 weight rows, paired (r, r+1)
//         in one register: the weight block of row r in the low half, row
//         r+1 in the high half, the activation block broadcast to both
//         halves; the scale vector is [dw_r*da x8 | dw_r+1*da x8], copied
//         (VPERMPS) from the block's 8 products dw_j*da computed at once.
//   z2r4, z4r4  several activation rows: the activation rows are paired
//         instead (i, i+1 in the two halves, set up once per block) and each
//         weight block is broadcast to both halves; the scale vector is
//         [dw*da_i x8 | dw*da_i+1 x8].
//
// Register conventions: AX the byte offset of the current block in the
// activation rows (and in Q8_0 weight rows), BX the offset in Q4_0 weight
// rows, CX the activation row length nb*34, DX the tiles left (the z1r8
// tiles keep that count on the stack: their scale gather needs two GPRs),
// R14 the output. Z28 zero, Z24 the bytes 0x80, K2 = 0xff00 (the high 8
// words of a YMM: the second scale of a pair goes there). Z11-Z15, Z22 and
// Z30/X31 are scratch.

DATA z8bias<>+0(SB)/4, $0x80808080
GLOBL z8bias<>(SB), RODATA|NOPTR, $4

DATA z4mask<>+0(SB)/4, $0x0f0f0f0f
GLOBL z4mask<>(SB), RODATA|NOPTR, $4

DATA z4eights<>+0(SB)/4, $0x08080808
GLOBL z4eights<>(SB), RODATA|NOPTR, $4

// VPSRLVD counts that bring the high nibbles of a 16-byte Q4_0 block down:
// 0 for the 128-bit chunks holding elements 0-15, 4 for elements 16-31.
DATA z4shift<>+0(SB)/8, $0
DATA z4shift<>+8(SB)/8, $0
DATA z4shift<>+16(SB)/8, $0x0000000400000004
DATA z4shift<>+24(SB)/8, $0x0000000400000004
DATA z4shift<>+32(SB)/8, $0
DATA z4shift<>+40(SB)/8, $0
DATA z4shift<>+48(SB)/8, $0x0000000400000004
DATA z4shift<>+56(SB)/8, $0x0000000400000004
GLOBL z4shift<>(SB), RODATA|NOPTR, $64

// The VPERMPS indices of q8z1r8's pairs: [2j x8 | 2j+1 x8] for j = 0..3, as
// bytes (widened by VPMOVZXBD).
DATA z8idx<>+0(SB)/8, $0x0000000000000000
DATA z8idx<>+8(SB)/8, $0x0101010101010101
DATA z8idx<>+16(SB)/8, $0x0202020202020202
DATA z8idx<>+24(SB)/8, $0x0303030303030303
DATA z8idx<>+32(SB)/8, $0x0404040404040404
DATA z8idx<>+40(SB)/8, $0x0505050505050505
DATA z8idx<>+48(SB)/8, $0x0606060606060606
DATA z8idx<>+56(SB)/8, $0x0707070707070707
GLOBL z8idx<>(SB), RODATA|NOPTR, $64

#define PFZ 1024

// ZSETUP: Z28 = 0, Z24 = 0x80 bytes, K2 = 0xff00.
#define ZSETUP \
	VPXORD       Z28, Z28, Z28; \
	VPBROADCASTD z8bias<>(SB), Z24; \
	MOVL         $0xff00, BX; \
	KMOVW        BX, K2

// Q4CONST: Z25 the nibble mask, Z26 the shift counts, Z27 the 8s.
#define Q4CONST \
	VPBROADCASTD z4mask<>(SB), Z25; \
	VMOVDQU64    z4shift<>(SB), Z26; \
	VPBROADCASTD z4eights<>(SB), Z27

// HSUMZ reduces both 256-bit halves of Z with HSUM's tree, one half at a
// time in place (the same as pkg/engine's HSUMZ): VSHUFF32X4 $0xB1 swaps the
// 128-bit chunks within each half (l_i + l_i+4), VPERMILPS $0x4E the 64-bit
// pairs ((l0+l4)+(l2+l6), (l1+l5)+(l3+l7)), VMOVSHDUP the last pair. The
// low half's sum goes to d0, the high half's to d1. X is Z's low 128 bits.
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

// SPAIR sets Zd (Yd its low half) to the 16 float32 [h(p0) x8 | h(p1) x8]
// of the float16 scales at p0+off and p1+off (exact widening).
#define SPAIR(p0, p1, off, Yd, Zd) \
	VPBROADCASTW (p0)(off*1), Yd; \
	VPBROADCASTW (p1)(off*1), K2, Yd; \
	VCVTPH2PS    Yd, Zd

// SONE sets Zd to the float16 scale at p+off, widened, in all 16 lanes.
#define SONE(p, off, Yd, Zd) \
	VPBROADCASTW (p)(off*1), Yd; \
	VCVTPH2PS    Yd, Zd

// FINISH adds one pair of elements' block contribution to acc: Z11 holds
// the int32 lanes, sc the pair's scale products.
#define FINISH(sc, acc) \
	VCVTDQ2PS Z11, Z11; \
	VMULPS    sc, Z11, Z11; \
	VADDPS    Z11, acc, acc

// ---- Q8_0 -----------------------------------------------------------------

// Q8ABCAST sets Za to a+128 for the activation block at p+AX, in both
// halves (the decode tile's unsigned operand).
#define Q8ABCAST(p, Za) \
	VBROADCASTI64X4 2(p)(AX*1), Za; \
	VPXORD          Z24, Za, Za

// Q8APAIR sets Za to the activation blocks at p0+AX and p1+AX, one per
// half, as they are (signed), and Zn to -128*(the sum of each 4 of them):
// the tiles that pair activation rows make the weights the unsigned operand
// instead, w+128 (Q8WROW), whose lanes sum (w+128)*a - 128*a = w*a exactly;
// the correction is then per activation block, and each element's lanes
// start from it (one VPDPBUSD per element, no subtraction).
#define Q8APAIR(p0, p1, Ya, Za, Zn) \
	VMOVDQU64    2(p0)(AX*1), Ya; \
	VINSERTI64X4 $1, 2(p1)(AX*1), Za, Za; \
	VPXORD       Zn, Zn, Zn; \
	VPDPBUSD     Za, Z24, Zn; \
	VPSUBD       Zn, Z28, Zn

// Q8WSUM sets Z14 to 128*(the sum of each 4 weight quants of Z13).
#define Q8WSUM \
	VPXORD   Z14, Z14, Z14; \
	VPDPBUSD Z13, Z24, Z14

// Q8LANESZ sets Z11 to the int32 lanes sum a*w of the weight quants in Z13
// (Z14 their Q8WSUM) and the activation quants (Za, as a+128).
#define Q8LANESZ(Za) \
	VPXORD   Z11, Z11, Z11; \
	VPDPBUSD Z13, Za, Z11; \
	VPSUBD   Z14, Z11, Z11

// Q8WPAIR: one pair of weight rows (p0, p1) against the broadcast
// activation block (Z8, as a+128), into acc; idx picks the pair's two scale
// products out of the block's table Z23 (see S8).
#define Q8WPAIR(p0, p1, idx, acc) \
	PREFETCHT0   PFZ(p0)(AX*1); \
	PREFETCHT0   PFZ(p1)(AX*1); \
	VMOVDQU      2(p0)(AX*1), Y13; \
	VINSERTI64X4 $1, 2(p1)(AX*1), Z13, Z13; \
	Q8WSUM; \
	Q8LANESZ(Z8); \
	VPERMPS      Z23, idx, Z15; \
	FINISH(Z15, acc)

// S8 sets lanes 0-7 of Z23 to the scale products s_j = dw_j*da of the
// current block for the 8 weight rows (the AVX2 tiles' WS4 and SROW, for 8
// rows): the float16 scales at offset off of the rows are gathered in the
// GPRs T1 and T2 (4 each), widened by one VCVTPH2PS and multiplied by da
// (the float16 at amem) once. The products are the same float32
// multiplies, so the pairs' VPERMPS copies of them change no bits.
#define S8(off, T1, T2, amem) \
	MOVWLZX      (DI)(off*1), T1; \
	MOVWLZX      (R8)(off*1), T2; \
	SHLQ         $16, T2; \
	ORQ          T2, T1; \
	MOVWLZX      (R9)(off*1), T2; \
	SHLQ         $32, T2; \
	ORQ          T2, T1; \
	MOVWLZX      (R10)(off*1), T2; \
	SHLQ         $48, T2; \
	ORQ          T2, T1; \
	VMOVQ        T1, X23; \
	MOVWLZX      (R11)(off*1), T1; \
	MOVWLZX      (R12)(off*1), T2; \
	SHLQ         $16, T2; \
	ORQ          T2, T1; \
	MOVWLZX      (R13)(off*1), T2; \
	SHLQ         $32, T2; \
	ORQ          T2, T1; \
	MOVWLZX      (R15)(off*1), T2; \
	SHLQ         $48, T2; \
	ORQ          T2, T1; \
	VPINSRQ      $1, T1, X23, X23; \
	VCVTPH2PS    X23, Y23; \
	VPBROADCASTW amem, X10; \
	VCVTPH2PS    X10, Y10; \
	VMULPS       Y10, Y23, Y23

// func q8z1r8(nb int, w *byte, nt int, a *byte, lda int, out *float32, ldo int)
//
// Weight rows DI, R8, R9, R10, R11, R12, R13, R15 (DI + j*CX); the
// accumulator of the pair (2j, 2j+1) is Zj, its scale indices Z(16+j). The
// tiles left are counted on the stack (S8 needs BX and DX).
TEXT ·q8z1r8(SB), NOSPLIT, $8-56
	MOVQ  nb+0(FP), CX
	IMULQ $34, CX
	MOVQ  w+8(FP), DI
	MOVQ  nt+16(FP), DX
	MOVQ  DX, 0(SP)
	MOVQ  a+24(FP), SI
	MOVQ  out+40(FP), R14
	ZSETUP
	VPMOVZXBD z8idx<>+0(SB), Z16
	VPMOVZXBD z8idx<>+16(SB), Z17
	VPMOVZXBD z8idx<>+32(SB), Z18
	VPMOVZXBD z8idx<>+48(SB), Z19

tile:
	LEAQ   (DI)(CX*1), R8
	LEAQ   (DI)(CX*2), R9
	LEAQ   (R8)(CX*2), R10
	LEAQ   (DI)(CX*4), R11
	LEAQ   (R8)(CX*4), R12
	LEAQ   (R9)(CX*4), R13
	LEAQ   (R10)(CX*4), R15
	VXORPS Z0, Z0, Z0
	VXORPS Z1, Z1, Z1
	VXORPS Z2, Z2, Z2
	VXORPS Z3, Z3, Z3
	XORQ   AX, AX

blk:
	Q8ABCAST(SI, Z8)
	S8(AX, BX, DX, (SI)(AX*1))
	Q8WPAIR(DI, R8, Z16, Z0)
	Q8WPAIR(R9, R10, Z17, Z1)
	Q8WPAIR(R11, R12, Z18, Z2)
	Q8WPAIR(R13, R15, Z19, Z3)
	ADDQ $34, AX
	CMPQ AX, CX
	JLT  blk

	HSUMZ(Z0, X0, 0(R14), 4(R14))
	HSUMZ(Z1, X1, 8(R14), 12(R14))
	HSUMZ(Z2, X2, 16(R14), 20(R14))
	HSUMZ(Z3, X3, 24(R14), 28(R14))
	ADDQ $32, R14
	LEAQ (R11)(CX*4), DI
	DECQ 0(SP)
	JNZ  tile
	VZEROUPPER
	RET

// Q8WROW: one weight row p, as w+128, broadcast to both halves of Z13,
// against the activation pairs; Q8AELEM does one pair (Za, Zn from
// Q8APAIR; scales Zs) into acc.
#define Q8WROW(p) \
	PREFETCHT0      PFZ(p)(AX*1); \
	VBROADCASTI64X4 2(p)(AX*1), Z13; \
	VPXORD          Z24, Z13, Z13; \
	SONE(p, AX, Y15, Z15)

#define Q8AELEM(Za, Zn, Zs, acc) \
	VMOVDQA64 Zn, Z11; \
	VPDPBUSD  Za, Z13, Z11; \
	VMULPS    Zs, Z15, Z22; \
	FINISH(Z22, acc)

// func q8z2r4(nb int, w *byte, nt int, a *byte, lda int, out *float32, ldo int)
//
// Activation rows SI, R9 (one pair: Z16 quants, Z17 -128*sums, Z18 scales);
// weight rows DI, R8, R12, R13; the accumulator of weight row j is Zj.
TEXT ·q8z2r4(SB), NOSPLIT, $0-56
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
	ZSETUP

tile:
	LEAQ   (DI)(CX*1), R8
	LEAQ   (DI)(CX*2), R12
	LEAQ   (R8)(CX*2), R13
	VXORPS Z0, Z0, Z0
	VXORPS Z1, Z1, Z1
	VXORPS Z2, Z2, Z2
	VXORPS Z3, Z3, Z3
	XORQ   AX, AX

blk:
	Q8APAIR(SI, R9, Y16, Z16, Z17)
	SPAIR(SI, R9, AX, Y18, Z18)
	Q8WROW(DI)
	Q8AELEM(Z16, Z17, Z18, Z0)
	Q8WROW(R8)
	Q8AELEM(Z16, Z17, Z18, Z1)
	Q8WROW(R12)
	Q8AELEM(Z16, Z17, Z18, Z2)
	Q8WROW(R13)
	Q8AELEM(Z16, Z17, Z18, Z3)
	ADDQ $34, AX
	CMPQ AX, CX
	JLT  blk

	HSUMZ(Z0, X0, 0(R14), 0(R14)(R15*1))
	HSUMZ(Z1, X1, 4(R14), 4(R14)(R15*1))
	HSUMZ(Z2, X2, 8(R14), 8(R14)(R15*1))
	HSUMZ(Z3, X3, 12(R14), 12(R14)(R15*1))
	ADDQ $16, R14
	LEAQ (R13)(CX*1), DI
	DECQ DX
	JNZ  tile
	VZEROUPPER
	RET

// func q8z4r4(nb int, w *byte, nt int, a *byte, lda int, out *float32, ldo int)
//
// Activation rows SI, R9 (pair 0: Z16-Z18) and R10, R11 (pair 1: Z19-Z21);
// weight rows DI, R8, R12, R13; the accumulator of pair q and weight row j
// is Z(4q+j).
TEXT ·q8z4r4(SB), NOSPLIT, $0-56
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
	ZSETUP

tile:
	LEAQ   (DI)(CX*1), R8
	LEAQ   (DI)(CX*2), R12
	LEAQ   (R8)(CX*2), R13
	VXORPS Z0, Z0, Z0
	VXORPS Z1, Z1, Z1
	VXORPS Z2, Z2, Z2
	VXORPS Z3, Z3, Z3
	VXORPS Z4, Z4, Z4
	VXORPS Z5, Z5, Z5
	VXORPS Z6, Z6, Z6
	VXORPS Z7, Z7, Z7
	XORQ   AX, AX

blk:
	Q8APAIR(SI, R9, Y16, Z16, Z17)
	SPAIR(SI, R9, AX, Y18, Z18)
	Q8APAIR(R10, R11, Y19, Z19, Z20)
	SPAIR(R10, R11, AX, Y21, Z21)
	Q8WROW(DI)
	Q8AELEM(Z16, Z17, Z18, Z0)
	Q8AELEM(Z19, Z20, Z21, Z4)
	Q8WROW(R8)
	Q8AELEM(Z16, Z17, Z18, Z1)
	Q8AELEM(Z19, Z20, Z21, Z5)
	Q8WROW(R12)
	Q8AELEM(Z16, Z17, Z18, Z2)
	Q8AELEM(Z19, Z20, Z21, Z6)
	Q8WROW(R13)
	Q8AELEM(Z16, Z17, Z18, Z3)
	Q8AELEM(Z19, Z20, Z21, Z7)
	ADDQ $34, AX
	CMPQ AX, CX
	JLT  blk

	MOVQ R14, AX
	HSUMZ(Z0, X0, 0(AX), 0(AX)(R15*1))
	HSUMZ(Z1, X1, 4(AX), 4(AX)(R15*1))
	HSUMZ(Z2, X2, 8(AX), 8(AX)(R15*1))
	HSUMZ(Z3, X3, 12(AX), 12(AX)(R15*1))
	LEAQ (AX)(R15*2), AX
	HSUMZ(Z4, X4, 0(AX), 0(AX)(R15*1))
	HSUMZ(Z5, X5, 4(AX), 4(AX)(R15*1))
	HSUMZ(Z6, X6, 8(AX), 8(AX)(R15*1))
	HSUMZ(Z7, X7, 12(AX), 12(AX)(R15*1))
	ADDQ $16, R14
	LEAQ (R13)(CX*1), DI
	DECQ DX
	JNZ  tile
	VZEROUPPER
	RET

// ---- Q4_0 -----------------------------------------------------------------

// Q4NEG8 sets Zn to -8*(the sum of each 4 activation quants of Za).
#define Q4NEG8(Za, Zn) \
	VPXORD   Zn, Zn, Zn; \
	VPDPBUSD Za, Z27, Zn; \
	VPSUBD   Zn, Z28, Zn

// Q4LANESZ sets Z11 to the int32 lanes sum (q-8)*a of the nibbles in Z13
// and the activation quants Za (Zn = -8*sum a).
#define Q4LANESZ(Za, Zn) \
	VMOVDQA64 Zn, Z11; \
	VPDPBUSD  Za, Z13, Z11

// Q4NIB turns Z13, holding a Q4_0 block's 16 bytes in each of its four
// 128-bit chunks, into the 32 nibbles of each half in element order: the
// odd chunks are shifted right 4 bits per dword (high nibbles down), then
// all are masked.
#define Q4NIB \
	VPSRLVD Z26, Z13, Z13; \
	VPANDD  Z25, Z13, Z13

// Q4WPAIR: one pair of Q4_0 weight rows (p0, p1; offset BX) against the
// broadcast activation block (Z8, Z9 = -8*sum), into acc; idx picks the
// pair's scale products out of Z23 (S8).
#define Q4WPAIR(p0, p1, idx, acc) \
	PREFETCHT0  PFZ(p0)(BX*1); \
	PREFETCHT0  PFZ(p1)(BX*1); \
	VMOVDQU     2(p0)(BX*1), X13; \
	VINSERTI128 $1, 2(p1)(BX*1), Y13, Y13; \
	VSHUFI64X2  $0x50, Z13, Z13, Z13; \
	Q4NIB; \
	Q4LANESZ(Z8, Z9); \
	VPERMPS     Z23, idx, Z15; \
	FINISH(Z15, acc)

// func q4z1r8(nb int, w *byte, nt int, a *byte, lda int, out *float32, ldo int)
//
// As q8z1r8. The weight rows are nb*18 bytes apart, the activation row
// nb*34: BX walks the weight rows (and ends a tile equal to their length,
// which places the next tile's rows), SI walks the activation row itself up
// to CX, so that AX and DX are free for S8; the tiles left are on the stack.
TEXT ·q4z1r8(SB), NOSPLIT, $8-56
	MOVQ  w+8(FP), DI
	MOVQ  nt+16(FP), DX
	MOVQ  DX, 0(SP)
	MOVQ  out+40(FP), R14
	ZSETUP
	Q4CONST
	VPMOVZXBD z8idx<>+0(SB), Z16
	VPMOVZXBD z8idx<>+16(SB), Z17
	VPMOVZXBD z8idx<>+32(SB), Z18
	VPMOVZXBD z8idx<>+48(SB), Z19

tile:
	MOVQ   nb+0(FP), BX
	MOVQ   BX, CX
	IMULQ  $18, BX
	IMULQ  $34, CX
	MOVQ   a+24(FP), SI
	ADDQ   SI, CX
	LEAQ   (DI)(BX*1), R8
	LEAQ   (DI)(BX*2), R9
	LEAQ   (R8)(BX*2), R10
	LEAQ   (DI)(BX*4), R11
	LEAQ   (R8)(BX*4), R12
	LEAQ   (R9)(BX*4), R13
	LEAQ   (R10)(BX*4), R15
	VXORPS Z0, Z0, Z0
	VXORPS Z1, Z1, Z1
	VXORPS Z2, Z2, Z2
	VXORPS Z3, Z3, Z3
	XORQ   BX, BX

blk:
	VBROADCASTI64X4 2(SI), Z8
	Q4NEG8(Z8, Z9)
	S8(BX, AX, DX, (SI))
	Q4WPAIR(DI, R8, Z16, Z0)
	Q4WPAIR(R9, R10, Z17, Z1)
	Q4WPAIR(R11, R12, Z18, Z2)
	Q4WPAIR(R13, R15, Z19, Z3)
	ADDQ $18, BX
	ADDQ $34, SI
	CMPQ SI, CX
	JLT  blk

	HSUMZ(Z0, X0, 0(R14), 4(R14))
	HSUMZ(Z1, X1, 8(R14), 12(R14))
	HSUMZ(Z2, X2, 16(R14), 20(R14))
	HSUMZ(Z3, X3, 24(R14), 28(R14))
	ADDQ $32, R14
	LEAQ (R11)(BX*4), DI
	DECQ 0(SP)
	JNZ  tile
	VZEROUPPER
	RET

// Q4WROW: one Q4_0 weight row p (offset BX), its nibbles in both halves.
#define Q4WROW(p) \
	PREFETCHT0      PFZ(p)(BX*1); \
	VBROADCASTI32X4 2(p)(BX*1), Z13; \
	Q4NIB; \
	SONE(p, BX, Y15, Z15)

#define Q4AELEM(Za, Zn, Zs, acc) \
	Q4LANESZ(Za, Zn); \
	VMULPS Zs, Z15, Z22; \
	FINISH(Z22, acc)

#define Q4APAIR(p0, p1, Ya, Za, Zn) \
	VMOVDQU64    2(p0)(AX*1), Ya; \
	VINSERTI64X4 $1, 2(p1)(AX*1), Za, Za; \
	Q4NEG8(Za, Zn)

// func q4z2r4(nb int, w *byte, nt int, a *byte, lda int, out *float32, ldo int)
//
// As q8z2r4. BX walks the weight rows and equals their length at the end of
// a tile, which places the next tile's rows.
TEXT ·q4z2r4(SB), NOSPLIT, $0-56
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
	MOVQ  BX, R10
	ZSETUP
	Q4CONST

tile:
	LEAQ   (DI)(R10*1), R8
	LEAQ   (DI)(R10*2), R12
	LEAQ   (R8)(R10*2), R13
	VXORPS Z0, Z0, Z0
	VXORPS Z1, Z1, Z1
	VXORPS Z2, Z2, Z2
	VXORPS Z3, Z3, Z3
	XORQ   AX, AX
	XORQ   BX, BX

blk:
	Q4APAIR(SI, R9, Y16, Z16, Z17)
	SPAIR(SI, R9, AX, Y18, Z18)
	Q4WROW(DI)
	Q4AELEM(Z16, Z17, Z18, Z0)
	Q4WROW(R8)
	Q4AELEM(Z16, Z17, Z18, Z1)
	Q4WROW(R12)
	Q4AELEM(Z16, Z17, Z18, Z2)
	Q4WROW(R13)
	Q4AELEM(Z16, Z17, Z18, Z3)
	ADDQ $18, BX
	ADDQ $34, AX
	CMPQ AX, CX
	JLT  blk

	HSUMZ(Z0, X0, 0(R14), 0(R14)(R15*1))
	HSUMZ(Z1, X1, 4(R14), 4(R14)(R15*1))
	HSUMZ(Z2, X2, 8(R14), 8(R14)(R15*1))
	HSUMZ(Z3, X3, 12(R14), 12(R14)(R15*1))
	ADDQ $16, R14
	LEAQ (R13)(R10*1), DI
	DECQ DX
	JNZ  tile
	VZEROUPPER
	RET

// func q4z4r4(nb int, w *byte, nt int, a *byte, lda int, out *float32, ldo int)
//
// As q8z4r4; the Q4_0 row length is kept on the stack (no GPR is left).
TEXT ·q4z4r4(SB), NOSPLIT, $8-56
	MOVQ  nb+0(FP), CX
	MOVQ  CX, BX
	IMULQ $18, BX
	MOVQ  BX, 0(SP)
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
	ZSETUP
	Q4CONST

tile:
	MOVQ   0(SP), BX
	LEAQ   (DI)(BX*1), R8
	LEAQ   (DI)(BX*2), R12
	LEAQ   (R8)(BX*2), R13
	VXORPS Z0, Z0, Z0
	VXORPS Z1, Z1, Z1
	VXORPS Z2, Z2, Z2
	VXORPS Z3, Z3, Z3
	VXORPS Z4, Z4, Z4
	VXORPS Z5, Z5, Z5
	VXORPS Z6, Z6, Z6
	VXORPS Z7, Z7, Z7
	XORQ   AX, AX
	XORQ   BX, BX

blk:
	Q4APAIR(SI, R9, Y16, Z16, Z17)
	SPAIR(SI, R9, AX, Y18, Z18)
	Q4APAIR(R10, R11, Y19, Z19, Z20)
	SPAIR(R10, R11, AX, Y21, Z21)
	Q4WROW(DI)
	Q4AELEM(Z16, Z17, Z18, Z0)
	Q4AELEM(Z19, Z20, Z21, Z4)
	Q4WROW(R8)
	Q4AELEM(Z16, Z17, Z18, Z1)
	Q4AELEM(Z19, Z20, Z21, Z5)
	Q4WROW(R12)
	Q4AELEM(Z16, Z17, Z18, Z2)
	Q4AELEM(Z19, Z20, Z21, Z6)
	Q4WROW(R13)
	Q4AELEM(Z16, Z17, Z18, Z3)
	Q4AELEM(Z19, Z20, Z21, Z7)
	ADDQ $18, BX
	ADDQ $34, AX
	CMPQ AX, CX
	JLT  blk

	MOVQ R14, AX
	HSUMZ(Z0, X0, 0(AX), 0(AX)(R15*1))
	HSUMZ(Z1, X1, 4(AX), 4(AX)(R15*1))
	HSUMZ(Z2, X2, 8(AX), 8(AX)(R15*1))
	HSUMZ(Z3, X3, 12(AX), 12(AX)(R15*1))
	LEAQ (AX)(R15*2), AX
	HSUMZ(Z4, X4, 0(AX), 0(AX)(R15*1))
	HSUMZ(Z5, X5, 4(AX), 4(AX)(R15*1))
	HSUMZ(Z6, X6, 8(AX), 8(AX)(R15*1))
	HSUMZ(Z7, X7, 12(AX), 12(AX)(R15*1))
	ADDQ $16, R14
	LEAQ (R13)(BX*1), DI
	DECQ DX
	JNZ  tile
	VZEROUPPER
	RET
