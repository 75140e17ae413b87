//go:build !purego

#include "textflag.h"

// AVX2 + F16C kernels for the K-quants (Q4_K, Q5_K, Q6_K weights times Q8_K
// activations) and the Q8_K activation quantizer. They follow the K-quant
// float order of the package comment exactly. Per weight super-block (256
// elements) and activation row:
//
//   lanes   VPMADDUBSW (unsigned quants times signed activations, pairs of
//           products in int16), VPMADDWD with the sub-block's scale
//           broadcast to 16 words (pairs of pairs, times the scale, in
//           int32), VPADDD over the super-block: 8 exact int32 lanes, lane
//           j holding elements 4j..4j+3 of every 32-element group
//   Q4/Q5   mins: VPMADDWD of the activation bsums with the mins (each
//           duplicated to two words): lane s = m_s*(bsums[2s]+bsums[2s+1])
//   float   VCVTDQ2PS, VMULPS by d = da*dw (and dm = da*dmin), VSUBPS,
//           VADDPS into the row's accumulator (never FMA)
//
// and at the end of a row the KHSUM tree. Words never saturate: Q4_K
// 2*15*128, Q5_K 2*31*128, Q6_K q*a at most 2*63*128 and the 32*a
// correction 2*32*128, all below 32767; the int32 lanes stay below 2^24
// (Q6_K: 8 groups * 128 * 4 * 32*128 = 2^24 at worst), so the conversions
// are exact. Q6_K subtracts the offset 32 as ggml does: (q-32)*a in words
// as q*a (VPMADDUBSW) minus 32*(a0+a1) (VPMADDUBSW of the constant 32).
//
// A tile kXmM walks nr consecutive weight rows (one contiguous stream, which
// the hardware prefetcher follows: software prefetching measured no gain)
// with M activation rows; every weight super-block is unpacked once per
// tile and used for the M rows. Registers:
// Y0..Y3 the int32 lanes of activation rows 0..3, Y4..Y7 their float
// accumulators, Y15 the 0x0F mask; Q4/Q5: Y14 the super-block's scales and
// mins as bytes [sc0..sc7 m0..m7] in both halves, Y13/Y12 the low/high
// nibbles of 64 elements (then dw/dmw), Y11/Y10 their scales as words (then
// the mins), Y9/Y8 scratch; Q6: X14 the 16 int8 scales, Y13 qh (then dw),
// Y11 the 32 quants of a group, Y10 their scales as words, Y12 bytes of 32,
// a half's 64 ql bytes in two registers (Y2/Y3, or Y4/Y5 when 3 or 4 rows
// need Y0..Y3 and their accumulators live on the stack), Y7 the
// activations: each weight and activation byte is loaded once, as in
// ggml's kernel.
// GPRs: DI the weight super-block, SI R9 R10 R11 the activation rows, AX the
// offset of the current super-block in them, CX their length, DX the rows
// left, R14 the output of activation row 0, R15 ldo in bytes.

DATA kmask0f<>+0(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA kmask0f<>+8(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA kmask0f<>+16(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA kmask0f<>+24(SB)/8, $0x0f0f0f0f0f0f0f0f
GLOBL kmask0f<>(SB), RODATA|NOPTR, $32

// k4shuf: for sub-block s, VPSHUFB control words [s, 0x80]: sc_s
// zero-extended to every word.
DATA k4shuf<>+0(SB)/8, $0x8000800080008000
DATA k4shuf<>+8(SB)/8, $0x8000800080008000
DATA k4shuf<>+16(SB)/8, $0x8000800080008000
DATA k4shuf<>+24(SB)/8, $0x8000800080008000
DATA k4shuf<>+32(SB)/8, $0x8001800180018001
DATA k4shuf<>+40(SB)/8, $0x8001800180018001
DATA k4shuf<>+48(SB)/8, $0x8001800180018001
DATA k4shuf<>+56(SB)/8, $0x8001800180018001
DATA k4shuf<>+64(SB)/8, $0x8002800280028002
DATA k4shuf<>+72(SB)/8, $0x8002800280028002
DATA k4shuf<>+80(SB)/8, $0x8002800280028002
DATA k4shuf<>+88(SB)/8, $0x8002800280028002
DATA k4shuf<>+96(SB)/8, $0x8003800380038003
DATA k4shuf<>+104(SB)/8, $0x8003800380038003
DATA k4shuf<>+112(SB)/8, $0x8003800380038003
DATA k4shuf<>+120(SB)/8, $0x8003800380038003
DATA k4shuf<>+128(SB)/8, $0x8004800480048004
DATA k4shuf<>+136(SB)/8, $0x8004800480048004
DATA k4shuf<>+144(SB)/8, $0x8004800480048004
DATA k4shuf<>+152(SB)/8, $0x8004800480048004
DATA k4shuf<>+160(SB)/8, $0x8005800580058005
DATA k4shuf<>+168(SB)/8, $0x8005800580058005
DATA k4shuf<>+176(SB)/8, $0x8005800580058005
DATA k4shuf<>+184(SB)/8, $0x8005800580058005
DATA k4shuf<>+192(SB)/8, $0x8006800680068006
DATA k4shuf<>+200(SB)/8, $0x8006800680068006
DATA k4shuf<>+208(SB)/8, $0x8006800680068006
DATA k4shuf<>+216(SB)/8, $0x8006800680068006
DATA k4shuf<>+224(SB)/8, $0x8007800780078007
DATA k4shuf<>+232(SB)/8, $0x8007800780078007
DATA k4shuf<>+240(SB)/8, $0x8007800780078007
DATA k4shuf<>+248(SB)/8, $0x8007800780078007
GLOBL k4shuf<>(SB), RODATA|NOPTR, $256

// k4mins: words [m0 m0 m1 m1 m2 m2 m3 m3 | m4 m4 m5 m5 m6 m6 m7 m7] from
// the bytes [sc0..sc7 m0..m7].
DATA k4mins<>+0(SB)/8, $0x8009800980088008
DATA k4mins<>+8(SB)/8, $0x800b800b800a800a
DATA k4mins<>+16(SB)/8, $0x800d800d800c800c
DATA k4mins<>+24(SB)/8, $0x800f800f800e800e
GLOBL k4mins<>(SB), RODATA|NOPTR, $32

// ggml's scale unpacking (the utmp dance of its AVX2 kernel) as dword
// lanes: shifts [0 0 0 4], masks [kmask1 kmask2 kmask1 kmask2] and
// [0 kmask3 0 kmask3].
DATA k4sh<>+0(SB)/8, $0
DATA k4sh<>+8(SB)/8, $0x0000000400000000
DATA k4sh<>+16(SB)/8, $0
DATA k4sh<>+24(SB)/8, $0x0000000400000000
GLOBL k4sh<>(SB), RODATA|NOPTR, $32

DATA k4m1<>+0(SB)/8, $0x0f0f0f0f3f3f3f3f
DATA k4m1<>+8(SB)/8, $0x0f0f0f0f3f3f3f3f
DATA k4m1<>+16(SB)/8, $0x0f0f0f0f3f3f3f3f
DATA k4m1<>+24(SB)/8, $0x0f0f0f0f3f3f3f3f
GLOBL k4m1<>(SB), RODATA|NOPTR, $32

DATA k4m3<>+0(SB)/8, $0x0303030300000000
DATA k4m3<>+8(SB)/8, $0x0303030300000000
DATA k4m3<>+16(SB)/8, $0x0303030300000000
DATA k4m3<>+24(SB)/8, $0x0303030300000000
GLOBL k4m3<>(SB), RODATA|NOPTR, $32

DATA k5bit<>+0(SB)/8, $0x1010101010101010
DATA k5bit<>+8(SB)/8, $0x1010101010101010
DATA k5bit<>+16(SB)/8, $0x1010101010101010
DATA k5bit<>+24(SB)/8, $0x1010101010101010
GLOBL k5bit<>(SB), RODATA|NOPTR, $32

DATA k6m30<>+0(SB)/8, $0x3030303030303030
DATA k6m30<>+8(SB)/8, $0x3030303030303030
DATA k6m30<>+16(SB)/8, $0x3030303030303030
DATA k6m30<>+24(SB)/8, $0x3030303030303030
GLOBL k6m30<>(SB), RODATA|NOPTR, $32

DATA k6s32<>+0(SB)/8, $0x2020202020202020
DATA k6s32<>+8(SB)/8, $0x2020202020202020
DATA k6s32<>+16(SB)/8, $0x2020202020202020
DATA k6s32<>+24(SB)/8, $0x2020202020202020
GLOBL k6s32<>(SB), RODATA|NOPTR, $32

// k6shuf: for group g, the bytes [2g x8, 2g+1 x8]: VPMOVSXBW of the
// shuffled scales gives sc_2g in words 0-7 and sc_2g+1 in words 8-15.
DATA k6shuf<>+0(SB)/8, $0x0000000000000000
DATA k6shuf<>+8(SB)/8, $0x0101010101010101
DATA k6shuf<>+16(SB)/8, $0x0202020202020202
DATA k6shuf<>+24(SB)/8, $0x0303030303030303
DATA k6shuf<>+32(SB)/8, $0x0404040404040404
DATA k6shuf<>+40(SB)/8, $0x0505050505050505
DATA k6shuf<>+48(SB)/8, $0x0606060606060606
DATA k6shuf<>+56(SB)/8, $0x0707070707070707
DATA k6shuf<>+64(SB)/8, $0x0808080808080808
DATA k6shuf<>+72(SB)/8, $0x0909090909090909
DATA k6shuf<>+80(SB)/8, $0x0a0a0a0a0a0a0a0a
DATA k6shuf<>+88(SB)/8, $0x0b0b0b0b0b0b0b0b
DATA k6shuf<>+96(SB)/8, $0x0c0c0c0c0c0c0c0c
DATA k6shuf<>+104(SB)/8, $0x0d0d0d0d0d0d0d0d
DATA k6shuf<>+112(SB)/8, $0x0e0e0e0e0e0e0e0e
DATA k6shuf<>+120(SB)/8, $0x0f0f0f0f0f0f0f0f
GLOBL k6shuf<>(SB), RODATA|NOPTR, $128

// The Q8_K quantizer's constants (dwords): |x| mask, +Inf, 1.5*2^23
// (nearest_int's magic), the mantissa mask, 2^22, -127, 1.
DATA kqc<>+0(SB)/4, $0x7fffffff
DATA kqc<>+4(SB)/4, $0x7f800000
DATA kqc<>+8(SB)/4, $0x4b400000
DATA kqc<>+12(SB)/4, $0x007fffff
DATA kqc<>+16(SB)/4, $0x00400000
DATA kqc<>+20(SB)/4, $0xc2fe0000
DATA kqc<>+24(SB)/4, $0x3f800000
GLOBL kqc<>(SB), RODATA|NOPTR, $28

// VPERMD indices undoing the lane interleave of VPACKSSDW/VPACKSSWB.
DATA kqperm<>+0(SB)/4, $0
DATA kqperm<>+4(SB)/4, $4
DATA kqperm<>+8(SB)/4, $1
DATA kqperm<>+12(SB)/4, $5
DATA kqperm<>+16(SB)/4, $2
DATA kqperm<>+20(SB)/4, $6
DATA kqperm<>+24(SB)/4, $3
DATA kqperm<>+28(SB)/4, $7
GLOBL kqperm<>(SB), RODATA|NOPTR, $32

// KHSUM reduces the 8 lanes of Y (X is its low half) with the fixed tree
// ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)) and stores the float at dst.
#define KHSUM(Y, X, dst) \
	VEXTRACTF128 $1, Y, X8; \
	VADDPS       X8, X, X; \
	VMOVHLPS     X, X, X8; \
	VADDPS       X8, X, X; \
	VMOVSHDUP    X, X8; \
	VADDSS       X8, X, X; \
	VMOVSS       X, dst

// K4SCALES unpacks the 12 scale bytes of the Q4_K/Q5_K super-block at p
// into Y14 = [sc0..sc7 m0..m7] in both 128-bit halves. The 16 bytes loaded
// from p+4 are dwords u0 u1 u2 (the scales) and 4 quant bytes (unused):
// sc0-3 = u0&kmask1, sc4-7 = (u2&kmask2)|((u0>>6)&kmask3)<<4,
// m0-3 = u1&kmask1, m4-7 = ((u2>>4)&kmask2)|((u1>>6)&kmask3)<<4.
#define K4SCALES(p) \
	VBROADCASTI128 4(p), Y14; \
	VPSHUFD        $0x50, Y14, Y9; \
	VPSHUFD        $0x98, Y14, Y14; \
	VPSRLVD        k4sh<>(SB), Y14, Y14; \
	VPAND          k4m1<>(SB), Y14, Y14; \
	VPSRLD         $6, Y9, Y9; \
	VPAND          k4m3<>(SB), Y9, Y9; \
	VPSLLD         $4, Y9, Y9; \
	VPOR           Y9, Y14, Y14

// K4NIB loads 32 quant bytes: Y13 = low nibbles (sub-block 2j), Y12 = high
// nibbles (sub-block 2j+1).
#define K4NIB(mem) \
	VMOVDQU mem, Y13; \
	VPSRLW  $4, Y13, Y12; \
	VPAND   Y15, Y13, Y13; \
	VPAND   Y15, Y12, Y12

// K5NIB0..K5NIB3 load chunk j of a Q5_K super-block at p: K4NIB of its
// quant bytes, then the fifth bits or'ed in as bit 4: bit 2j (low nibbles)
// and 2j+1 (high nibbles) of each qh byte, brought to bit 4 by a word
// shift (bits that cross into the neighbouring byte land below bit 4 or
// above it and are masked off).
#define K5NIB0(p) \
	K4NIB(48(p)); \
	VMOVDQU 16(p), Y9; \
	VPSLLW  $4, Y9, Y10; \
	VPAND   k5bit<>(SB), Y10, Y10; \
	VPOR    Y10, Y13, Y13; \
	VPSLLW  $3, Y9, Y10; \
	VPAND   k5bit<>(SB), Y10, Y10; \
	VPOR    Y10, Y12, Y12

#define K5NIB1(p) \
	K4NIB(80(p)); \
	VMOVDQU 16(p), Y9; \
	VPSLLW  $2, Y9, Y10; \
	VPAND   k5bit<>(SB), Y10, Y10; \
	VPOR    Y10, Y13, Y13; \
	VPSLLW  $1, Y9, Y10; \
	VPAND   k5bit<>(SB), Y10, Y10; \
	VPOR    Y10, Y12, Y12

#define K5NIB2(p) \
	K4NIB(112(p)); \
	VMOVDQU 16(p), Y9; \
	VPAND   k5bit<>(SB), Y9, Y10; \
	VPOR    Y10, Y13, Y13; \
	VPSRLW  $1, Y9, Y10; \
	VPAND   k5bit<>(SB), Y10, Y10; \
	VPOR    Y10, Y12, Y12

#define K5NIB3(p) \
	K4NIB(144(p)); \
	VMOVDQU 16(p), Y9; \
	VPSRLW  $2, Y9, Y10; \
	VPAND   k5bit<>(SB), Y10, Y10; \
	VPOR    Y10, Y13, Y13; \
	VPSRLW  $3, Y9, Y10; \
	VPAND   k5bit<>(SB), Y10, Y10; \
	VPOR    Y10, Y12, Y12

// K4SC sets Y11 and Y10 to the scales of the two sub-blocks of a chunk,
// zero-extended to every word.
#define K4SC(clo, chi) \
	VPSHUFB clo, Y14, Y11; \
	VPSHUFB chi, Y14, Y10

// K4PAIR adds one activation row's products with the chunk (activations
// at lo and hi) to its lanes S.
#define K4PAIR(lo, hi, S) \
	VPMADDUBSW lo, Y13, Y9; \
	VPMADDWD   Y11, Y9, Y9; \
	VPADDD     Y9, S, S; \
	VPMADDUBSW hi, Y12, Y9; \
	VPMADDWD   Y10, Y9, Y9; \
	VPADDD     Y9, S, S

// K4FINSETUP: Y11 = the mins duplicated to word pairs, Y12 = dw and
// Y13 = dmin of the super-block at p, widened exactly, in every lane.
#define K4FINSETUP(p) \
	VPSHUFB      k4mins<>(SB), Y14, Y11; \
	VPBROADCASTW 0(p), Y12; \
	VCVTPH2PS    X12, Y12; \
	VPBROADCASTW 2(p), Y13; \
	VCVTPH2PS    X13, Y13

// K4FIN adds one activation row's super-block to its accumulator ACC:
// ACC += float32(float32(S)*d) - float32(float32(mins.bsums)*dm) with
// d = da*dw and dm = da*dmin (da at dmem, the bsums at bmem).
#define K4FIN(dmem, bmem, S, ACC) \
	VBROADCASTSS dmem, Y9; \
	VMULPS       Y12, Y9, Y10; \
	VMULPS       Y13, Y9, Y9; \
	VCVTDQ2PS    S, S; \
	VMULPS       Y10, S, S; \
	VPMADDWD     bmem, Y11, Y8; \
	VCVTDQ2PS    Y8, Y8; \
	VMULPS       Y9, Y8, Y8; \
	VSUBPS       Y8, S, S; \
	VADDPS       S, ACC, ACC

// K6R0..K6R3 set Y11 to the 32 six-bit quants of group r of a half: the
// low (r < 2) or high nibbles of the half's ql bytes in register QL (the
// first 32 bytes for groups 0 and 2, the next 32 for 1 and 3), or'ed with
// bits 2r..2r+1 of the qh bytes (Y13) brought to bits 4-5; Y6 is scratch.
#define K6R0(QL) \
	VPAND  Y15, QL, Y11; \
	VPSLLW $4, Y13, Y6; \
	VPAND  k6m30<>(SB), Y6, Y6; \
	VPOR   Y6, Y11, Y11

#define K6R1(QL) \
	VPAND  Y15, QL, Y11; \
	VPSLLW $2, Y13, Y6; \
	VPAND  k6m30<>(SB), Y6, Y6; \
	VPOR   Y6, Y11, Y11

#define K6R2(QL) \
	VPSRLW $4, QL, Y11; \
	VPAND  Y15, Y11, Y11; \
	VPAND  k6m30<>(SB), Y13, Y6; \
	VPOR   Y6, Y11, Y11

#define K6R3(QL) \
	VPSRLW $4, QL, Y11; \
	VPAND  Y15, Y11, Y11; \
	VPSRLW $2, Y13, Y6; \
	VPAND  k6m30<>(SB), Y6, Y6; \
	VPOR   Y6, Y11, Y11

// K6PAIRR adds one activation row's products with the group (activations
// at amem, loaded once into Y7) to its lanes S: (q-32)*a in words as q*a -
// 32*a.
#define K6PAIRR(amem, S) \
	VMOVDQU    amem, Y7; \
	VPMADDUBSW Y7, Y11, Y9; \
	VPMADDUBSW Y7, Y12, Y8; \
	VPSUBW     Y8, Y9, Y9; \
	VPMADDWD   Y10, Y9, Y9; \
	VPADDD     Y9, S, S

// K6SC sets Y10 to the group's scales as words: sc_2g in words 0-7,
// sc_2g+1 in words 8-15.
#define K6SC(ctl) \
	VPSHUFB   ctl, X14, X10; \
	VPMOVSXBW X10, Y10

// K6FIN adds one activation row's super-block to its accumulator:
// ACC += float32(float32(S)*d), d = da*dw (dw in Y13).
#define K6FIN(dmem, S, ACC) \
	VBROADCASTSS dmem, Y9; \
	VMULPS       Y13, Y9, Y9; \
	VCVTDQ2PS    S, S; \
	VMULPS       Y9, S, S; \
	VADDPS       S, ACC, ACC

// K6FINM is K6FIN with the accumulator in memory (the 3- and 4-row tiles
// keep them on the stack to free registers for the weights).
#define K6FINM(dmem, S, acc) \
	VBROADCASTSS dmem, Y9; \
	VMULPS       Y13, Y9, Y9; \
	VCVTDQ2PS    S, S; \
	VMULPS       Y9, S, S; \
	VADDPS       acc, S, S; \
	VMOVUPS      S, acc

// KQNI turns the products r (float32 lanes of Y) into nearest_int(r) as
// int32, 0 where r is not finite; T is scratch.
#define KQNI(Y, T) \
	VANDPS Y15, Y, T; \
	VCMPPS $1, Y14, T, T; \
	VADDPS Y13, Y, Y; \
	VPAND  Y12, Y, Y; \
	VPSUBD Y9, Y, Y; \
	VPAND  T, Y, Y

// func quantQ8K(nb int, dst *byte, src *float32)
//
// quantize_row_q8_K_ref, one super-block of 256 floats per iteration:
// amax with VMAXPS ordered so that a NaN element never replaces the running
// maximum; all zero: the block is zeroed; otherwise max is the first
// element whose |x| equals amax (the C loop's first strictly greater one),
// iscale = -127/max and d = 1/iscale as scalars, then per element
// r = iscale*x, nearest_int(r) as the C function computes it (add 1.5*2^23,
// mantissa minus 2^22), 0 where r is not finite, packed to bytes (the
// values are in [-127, 127], so the saturating packs are exact), and the
// bsums from the int32 values (VPHADDD tree).
TEXT ·quantQ8K(SB), NOSPLIT, $0-24
	MOVQ         nb+0(FP), CX
	MOVQ         dst+8(FP), DI
	MOVQ         src+16(FP), SI
	VPBROADCASTD kqc<>+0(SB), Y15
	VPBROADCASTD kqc<>+4(SB), Y14
	VPBROADCASTD kqc<>+8(SB), Y13
	VPBROADCASTD kqc<>+12(SB), Y12
	VPBROADCASTD kqc<>+16(SB), Y9
	VMOVDQU      kqperm<>(SB), Y10

qblk:
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	XORQ   AX, AX

qamax:
	VANDPS 0(SI)(AX*1), Y15, Y6
	VMAXPS Y4, Y6, Y4
	VANDPS 32(SI)(AX*1), Y15, Y7
	VMAXPS Y5, Y7, Y5
	ADDQ   $64, AX
	CMPQ   AX, $1024
	JLT    qamax
	VMAXPS       Y4, Y5, Y4
	VEXTRACTF128 $1, Y4, X5
	VMAXPS       X4, X5, X4
	VMOVHLPS     X4, X4, X5
	VMAXPS       X4, X5, X4
	VMOVSHDUP    X4, X5
	VMAXSS       X4, X5, X4
	VMOVD        X4, R8
	TESTL        R8, R8
	JZ           qzero

	// max: the first element with |x| == amax (there is one).
	VBROADCASTSS X4, Y8
	XORQ         AX, AX

qfind:
	VANDPS    0(SI)(AX*1), Y15, Y6
	VCMPPS    $0, Y8, Y6, Y6
	VMOVMSKPS Y6, R8
	TESTL     R8, R8
	JNZ       qfound
	ADDQ      $32, AX
	CMPQ      AX, $1024
	JLT       qfind
	XORQ      AX, AX // unreachable: take x[0]
	MOVL      $1, R8

qfound:
	BSFL         R8, R8
	LEAQ         (AX)(R8*4), AX
	VMOVSS       0(SI)(AX*1), X6
	VMOVSS       kqc<>+20(SB), X7
	VDIVSS       X6, X7, X11
	VMOVSS       kqc<>+24(SB), X7
	VDIVSS       X11, X7, X7
	VMOVSS       X7, 0(DI)
	VBROADCASTSS X11, Y11
	LEAQ         4(DI), R9
	LEAQ         260(DI), R10
	MOVQ         $8, R11

qgrp:
	VMULPS 0(SI), Y11, Y0
	VMULPS 32(SI), Y11, Y1
	VMULPS 64(SI), Y11, Y2
	VMULPS 96(SI), Y11, Y3
	KQNI(Y0, Y4)
	KQNI(Y1, Y5)
	KQNI(Y2, Y6)
	KQNI(Y3, Y7)
	VPADDD       Y1, Y0, Y4
	VPADDD       Y3, Y2, Y5
	VPHADDD      Y5, Y4, Y4
	VPHADDD      Y4, Y4, Y4
	VEXTRACTI128 $1, Y4, X5
	VPADDD       X5, X4, X4
	VPACKSSDW    X4, X4, X4
	VMOVD        X4, R8
	MOVL         R8, 0(R10)
	VPACKSSDW    Y1, Y0, Y0
	VPACKSSDW    Y3, Y2, Y2
	VPACKSSWB    Y2, Y0, Y0
	VPERMD       Y0, Y10, Y0
	VMOVDQU      Y0, 0(R9)
	ADDQ         $128, SI
	ADDQ         $32, R9
	ADDQ         $4, R10
	DECQ         R11
	JNZ          qgrp
	ADDQ         $292, DI
	DECQ         CX
	JNZ          qblk
	VZEROUPPER
	RET

qzero:
	VPXOR   Y0, Y0, Y0
	VMOVDQU Y0, 0(DI)
	VMOVDQU Y0, 32(DI)
	VMOVDQU Y0, 64(DI)
	VMOVDQU Y0, 96(DI)
	VMOVDQU Y0, 128(DI)
	VMOVDQU Y0, 160(DI)
	VMOVDQU Y0, 192(DI)
	VMOVDQU Y0, 224(DI)
	VMOVDQU Y0, 256(DI)
	MOVL    $0, 288(DI)
	ADDQ    $1024, SI
	ADDQ    $292, DI
	DECQ    CX
	JNZ     qblk
	VZEROUPPER
	RET

// func k4m1(nb int, w *byte, nr int, a *byte, lda int, out *float32, ldo int)
TEXT ·k4m1(SB), NOSPLIT, $0-56
	MOVQ  nb+0(FP), CX
	IMULQ $292, CX
	MOVQ  w+8(FP), DI
	MOVQ  nr+16(FP), DX
	MOVQ  a+24(FP), SI
	MOVQ  out+40(FP), R14
	MOVQ  ldo+48(FP), R15
	SHLQ  $2, R15
	VMOVDQU kmask0f<>(SB), Y15

row:
	VXORPS Y4, Y4, Y4
	XORQ   AX, AX

blk:
	VPXOR  Y0, Y0, Y0
	K4SCALES(DI)
	K4NIB(16(DI))
	K4SC(k4shuf<>+0(SB), k4shuf<>+32(SB))
	K4PAIR(4(SI)(AX*1), 36(SI)(AX*1), Y0)
	K4NIB(48(DI))
	K4SC(k4shuf<>+64(SB), k4shuf<>+96(SB))
	K4PAIR(68(SI)(AX*1), 100(SI)(AX*1), Y0)
	K4NIB(80(DI))
	K4SC(k4shuf<>+128(SB), k4shuf<>+160(SB))
	K4PAIR(132(SI)(AX*1), 164(SI)(AX*1), Y0)
	K4NIB(112(DI))
	K4SC(k4shuf<>+192(SB), k4shuf<>+224(SB))
	K4PAIR(196(SI)(AX*1), 228(SI)(AX*1), Y0)
	K4FINSETUP(DI)
	K4FIN(0(SI)(AX*1), 260(SI)(AX*1), Y0, Y4)
	ADDQ $144, DI
	ADDQ $292, AX
	CMPQ AX, CX
	JLT  blk

	KHSUM(Y4, X4, 0(R14))
	ADDQ $4, R14
	DECQ DX
	JNZ  row
	VZEROUPPER
	RET

// func k4m2(nb int, w *byte, nr int, a *byte, lda int, out *float32, ldo int)
TEXT ·k4m2(SB), NOSPLIT, $0-56
	MOVQ  nb+0(FP), CX
	IMULQ $292, CX
	MOVQ  w+8(FP), DI
	MOVQ  nr+16(FP), DX
	MOVQ  a+24(FP), SI
	MOVQ  lda+32(FP), R11
	LEAQ  (SI)(R11*1), R9
	MOVQ  out+40(FP), R14
	MOVQ  ldo+48(FP), R15
	SHLQ  $2, R15
	VMOVDQU kmask0f<>(SB), Y15

row:
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	XORQ   AX, AX

blk:
	VPXOR  Y0, Y0, Y0
	VPXOR  Y1, Y1, Y1
	K4SCALES(DI)
	K4NIB(16(DI))
	K4SC(k4shuf<>+0(SB), k4shuf<>+32(SB))
	K4PAIR(4(SI)(AX*1), 36(SI)(AX*1), Y0)
	K4PAIR(4(R9)(AX*1), 36(R9)(AX*1), Y1)
	K4NIB(48(DI))
	K4SC(k4shuf<>+64(SB), k4shuf<>+96(SB))
	K4PAIR(68(SI)(AX*1), 100(SI)(AX*1), Y0)
	K4PAIR(68(R9)(AX*1), 100(R9)(AX*1), Y1)
	K4NIB(80(DI))
	K4SC(k4shuf<>+128(SB), k4shuf<>+160(SB))
	K4PAIR(132(SI)(AX*1), 164(SI)(AX*1), Y0)
	K4PAIR(132(R9)(AX*1), 164(R9)(AX*1), Y1)
	K4NIB(112(DI))
	K4SC(k4shuf<>+192(SB), k4shuf<>+224(SB))
	K4PAIR(196(SI)(AX*1), 228(SI)(AX*1), Y0)
	K4PAIR(196(R9)(AX*1), 228(R9)(AX*1), Y1)
	K4FINSETUP(DI)
	K4FIN(0(SI)(AX*1), 260(SI)(AX*1), Y0, Y4)
	K4FIN(0(R9)(AX*1), 260(R9)(AX*1), Y1, Y5)
	ADDQ $144, DI
	ADDQ $292, AX
	CMPQ AX, CX
	JLT  blk

	KHSUM(Y4, X4, 0(R14))
	MOVQ R14, BX
	ADDQ R15, BX
	KHSUM(Y5, X5, 0(BX))
	ADDQ $4, R14
	DECQ DX
	JNZ  row
	VZEROUPPER
	RET

// func k4m3(nb int, w *byte, nr int, a *byte, lda int, out *float32, ldo int)
TEXT ·k4m3(SB), NOSPLIT, $0-56
	MOVQ  nb+0(FP), CX
	IMULQ $292, CX
	MOVQ  w+8(FP), DI
	MOVQ  nr+16(FP), DX
	MOVQ  a+24(FP), SI
	MOVQ  lda+32(FP), R11
	LEAQ  (SI)(R11*1), R9
	LEAQ  (R9)(R11*1), R10
	MOVQ  out+40(FP), R14
	MOVQ  ldo+48(FP), R15
	SHLQ  $2, R15
	VMOVDQU kmask0f<>(SB), Y15

row:
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	XORQ   AX, AX

blk:
	VPXOR  Y0, Y0, Y0
	VPXOR  Y1, Y1, Y1
	VPXOR  Y2, Y2, Y2
	K4SCALES(DI)
	K4NIB(16(DI))
	K4SC(k4shuf<>+0(SB), k4shuf<>+32(SB))
	K4PAIR(4(SI)(AX*1), 36(SI)(AX*1), Y0)
	K4PAIR(4(R9)(AX*1), 36(R9)(AX*1), Y1)
	K4PAIR(4(R10)(AX*1), 36(R10)(AX*1), Y2)
	K4NIB(48(DI))
	K4SC(k4shuf<>+64(SB), k4shuf<>+96(SB))
	K4PAIR(68(SI)(AX*1), 100(SI)(AX*1), Y0)
	K4PAIR(68(R9)(AX*1), 100(R9)(AX*1), Y1)
	K4PAIR(68(R10)(AX*1), 100(R10)(AX*1), Y2)
	K4NIB(80(DI))
	K4SC(k4shuf<>+128(SB), k4shuf<>+160(SB))
	K4PAIR(132(SI)(AX*1), 164(SI)(AX*1), Y0)
	K4PAIR(132(R9)(AX*1), 164(R9)(AX*1), Y1)
	K4PAIR(132(R10)(AX*1), 164(R10)(AX*1), Y2)
	K4NIB(112(DI))
	K4SC(k4shuf<>+192(SB), k4shuf<>+224(SB))
	K4PAIR(196(SI)(AX*1), 228(SI)(AX*1), Y0)
	K4PAIR(196(R9)(AX*1), 228(R9)(AX*1), Y1)
	K4PAIR(196(R10)(AX*1), 228(R10)(AX*1), Y2)
	K4FINSETUP(DI)
	K4FIN(0(SI)(AX*1), 260(SI)(AX*1), Y0, Y4)
	K4FIN(0(R9)(AX*1), 260(R9)(AX*1), Y1, Y5)
	K4FIN(0(R10)(AX*1), 260(R10)(AX*1), Y2, Y6)
	ADDQ $144, DI
	ADDQ $292, AX
	CMPQ AX, CX
	JLT  blk

	KHSUM(Y4, X4, 0(R14))
	MOVQ R14, BX
	ADDQ R15, BX
	KHSUM(Y5, X5, 0(BX))
	ADDQ R15, BX
	KHSUM(Y6, X6, 0(BX))
	ADDQ $4, R14
	DECQ DX
	JNZ  row
	VZEROUPPER
	RET

// func k4m4(nb int, w *byte, nr int, a *byte, lda int, out *float32, ldo int)
TEXT ·k4m4(SB), NOSPLIT, $0-56
	MOVQ  nb+0(FP), CX
	IMULQ $292, CX
	MOVQ  w+8(FP), DI
	MOVQ  nr+16(FP), DX
	MOVQ  a+24(FP), SI
	MOVQ  lda+32(FP), R11
	LEAQ  (SI)(R11*1), R9
	LEAQ  (R9)(R11*1), R10
	LEAQ  (R10)(R11*1), R11
	MOVQ  out+40(FP), R14
	MOVQ  ldo+48(FP), R15
	SHLQ  $2, R15
	VMOVDQU kmask0f<>(SB), Y15

row:
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	XORQ   AX, AX

blk:
	VPXOR  Y0, Y0, Y0
	VPXOR  Y1, Y1, Y1
	VPXOR  Y2, Y2, Y2
	VPXOR  Y3, Y3, Y3
	K4SCALES(DI)
	K4NIB(16(DI))
	K4SC(k4shuf<>+0(SB), k4shuf<>+32(SB))
	K4PAIR(4(SI)(AX*1), 36(SI)(AX*1), Y0)
	K4PAIR(4(R9)(AX*1), 36(R9)(AX*1), Y1)
	K4PAIR(4(R10)(AX*1), 36(R10)(AX*1), Y2)
	K4PAIR(4(R11)(AX*1), 36(R11)(AX*1), Y3)
	K4NIB(48(DI))
	K4SC(k4shuf<>+64(SB), k4shuf<>+96(SB))
	K4PAIR(68(SI)(AX*1), 100(SI)(AX*1), Y0)
	K4PAIR(68(R9)(AX*1), 100(R9)(AX*1), Y1)
	K4PAIR(68(R10)(AX*1), 100(R10)(AX*1), Y2)
	K4PAIR(68(R11)(AX*1), 100(R11)(AX*1), Y3)
	K4NIB(80(DI))
	K4SC(k4shuf<>+128(SB), k4shuf<>+160(SB))
	K4PAIR(132(SI)(AX*1), 164(SI)(AX*1), Y0)
	K4PAIR(132(R9)(AX*1), 164(R9)(AX*1), Y1)
	K4PAIR(132(R10)(AX*1), 164(R10)(AX*1), Y2)
	K4PAIR(132(R11)(AX*1), 164(R11)(AX*1), Y3)
	K4NIB(112(DI))
	K4SC(k4shuf<>+192(SB), k4shuf<>+224(SB))
	K4PAIR(196(SI)(AX*1), 228(SI)(AX*1), Y0)
	K4PAIR(196(R9)(AX*1), 228(R9)(AX*1), Y1)
	K4PAIR(196(R10)(AX*1), 228(R10)(AX*1), Y2)
	K4PAIR(196(R11)(AX*1), 228(R11)(AX*1), Y3)
	K4FINSETUP(DI)
	K4FIN(0(SI)(AX*1), 260(SI)(AX*1), Y0, Y4)
	K4FIN(0(R9)(AX*1), 260(R9)(AX*1), Y1, Y5)
	K4FIN(0(R10)(AX*1), 260(R10)(AX*1), Y2, Y6)
	K4FIN(0(R11)(AX*1), 260(R11)(AX*1), Y3, Y7)
	ADDQ $144, DI
	ADDQ $292, AX
	CMPQ AX, CX
	JLT  blk

	KHSUM(Y4, X4, 0(R14))
	MOVQ R14, BX
	ADDQ R15, BX
	KHSUM(Y5, X5, 0(BX))
	ADDQ R15, BX
	KHSUM(Y6, X6, 0(BX))
	ADDQ R15, BX
	KHSUM(Y7, X7, 0(BX))
	ADDQ $4, R14
	DECQ DX
	JNZ  row
	VZEROUPPER
	RET

// func k5m1(nb int, w *byte, nr int, a *byte, lda int, out *float32, ldo int)
TEXT ·k5m1(SB), NOSPLIT, $0-56
	MOVQ  nb+0(FP), CX
	IMULQ $292, CX
	MOVQ  w+8(FP), DI
	MOVQ  nr+16(FP), DX
	MOVQ  a+24(FP), SI
	MOVQ  out+40(FP), R14
	MOVQ  ldo+48(FP), R15
	SHLQ  $2, R15
	VMOVDQU kmask0f<>(SB), Y15

row:
	VXORPS Y4, Y4, Y4
	XORQ   AX, AX

blk:
	VPXOR  Y0, Y0, Y0
	K4SCALES(DI)
	K5NIB0(DI)
	K4SC(k4shuf<>+0(SB), k4shuf<>+32(SB))
	K4PAIR(4(SI)(AX*1), 36(SI)(AX*1), Y0)
	K5NIB1(DI)
	K4SC(k4shuf<>+64(SB), k4shuf<>+96(SB))
	K4PAIR(68(SI)(AX*1), 100(SI)(AX*1), Y0)
	K5NIB2(DI)
	K4SC(k4shuf<>+128(SB), k4shuf<>+160(SB))
	K4PAIR(132(SI)(AX*1), 164(SI)(AX*1), Y0)
	K5NIB3(DI)
	K4SC(k4shuf<>+192(SB), k4shuf<>+224(SB))
	K4PAIR(196(SI)(AX*1), 228(SI)(AX*1), Y0)
	K4FINSETUP(DI)
	K4FIN(0(SI)(AX*1), 260(SI)(AX*1), Y0, Y4)
	ADDQ $176, DI
	ADDQ $292, AX
	CMPQ AX, CX
	JLT  blk

	KHSUM(Y4, X4, 0(R14))
	ADDQ $4, R14
	DECQ DX
	JNZ  row
	VZEROUPPER
	RET

// func k5m2(nb int, w *byte, nr int, a *byte, lda int, out *float32, ldo int)
TEXT ·k5m2(SB), NOSPLIT, $0-56
	MOVQ  nb+0(FP), CX
	IMULQ $292, CX
	MOVQ  w+8(FP), DI
	MOVQ  nr+16(FP), DX
	MOVQ  a+24(FP), SI
	MOVQ  lda+32(FP), R11
	LEAQ  (SI)(R11*1), R9
	MOVQ  out+40(FP), R14
	MOVQ  ldo+48(FP), R15
	SHLQ  $2, R15
	VMOVDQU kmask0f<>(SB), Y15

row:
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	XORQ   AX, AX

blk:
	VPXOR  Y0, Y0, Y0
	VPXOR  Y1, Y1, Y1
	K4SCALES(DI)
	K5NIB0(DI)
	K4SC(k4shuf<>+0(SB), k4shuf<>+32(SB))
	K4PAIR(4(SI)(AX*1), 36(SI)(AX*1), Y0)
	K4PAIR(4(R9)(AX*1), 36(R9)(AX*1), Y1)
	K5NIB1(DI)
	K4SC(k4shuf<>+64(SB), k4shuf<>+96(SB))
	K4PAIR(68(SI)(AX*1), 100(SI)(AX*1), Y0)
	K4PAIR(68(R9)(AX*1), 100(R9)(AX*1), Y1)
	K5NIB2(DI)
	K4SC(k4shuf<>+128(SB), k4shuf<>+160(SB))
	K4PAIR(132(SI)(AX*1), 164(SI)(AX*1), Y0)
	K4PAIR(132(R9)(AX*1), 164(R9)(AX*1), Y1)
	K5NIB3(DI)
	K4SC(k4shuf<>+192(SB), k4shuf<>+224(SB))
	K4PAIR(196(SI)(AX*1), 228(SI)(AX*1), Y0)
	K4PAIR(196(R9)(AX*1), 228(R9)(AX*1), Y1)
	K4FINSETUP(DI)
	K4FIN(0(SI)(AX*1), 260(SI)(AX*1), Y0, Y4)
	K4FIN(0(R9)(AX*1), 260(R9)(AX*1), Y1, Y5)
	ADDQ $176, DI
	ADDQ $292, AX
	CMPQ AX, CX
	JLT  blk

	KHSUM(Y4, X4, 0(R14))
	MOVQ R14, BX
	ADDQ R15, BX
	KHSUM(Y5, X5, 0(BX))
	ADDQ $4, R14
	DECQ DX
	JNZ  row
	VZEROUPPER
	RET

// func k5m3(nb int, w *byte, nr int, a *byte, lda int, out *float32, ldo int)
TEXT ·k5m3(SB), NOSPLIT, $0-56
	MOVQ  nb+0(FP), CX
	IMULQ $292, CX
	MOVQ  w+8(FP), DI
	MOVQ  nr+16(FP), DX
	MOVQ  a+24(FP), SI
	MOVQ  lda+32(FP), R11
	LEAQ  (SI)(R11*1), R9
	LEAQ  (R9)(R11*1), R10
	MOVQ  out+40(FP), R14
	MOVQ  ldo+48(FP), R15
	SHLQ  $2, R15
	VMOVDQU kmask0f<>(SB), Y15

row:
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	XORQ   AX, AX

blk:
	VPXOR  Y0, Y0, Y0
	VPXOR  Y1, Y1, Y1
	VPXOR  Y2, Y2, Y2
	K4SCALES(DI)
	K5NIB0(DI)
	K4SC(k4shuf<>+0(SB), k4shuf<>+32(SB))
	K4PAIR(4(SI)(AX*1), 36(SI)(AX*1), Y0)
	K4PAIR(4(R9)(AX*1), 36(R9)(AX*1), Y1)
	K4PAIR(4(R10)(AX*1), 36(R10)(AX*1), Y2)
	K5NIB1(DI)
	K4SC(k4shuf<>+64(SB), k4shuf<>+96(SB))
	K4PAIR(68(SI)(AX*1), 100(SI)(AX*1), Y0)
	K4PAIR(68(R9)(AX*1), 100(R9)(AX*1), Y1)
	K4PAIR(68(R10)(AX*1), 100(R10)(AX*1), Y2)
	K5NIB2(DI)
	K4SC(k4shuf<>+128(SB), k4shuf<>+160(SB))
	K4PAIR(132(SI)(AX*1), 164(SI)(AX*1), Y0)
	K4PAIR(132(R9)(AX*1), 164(R9)(AX*1), Y1)
	K4PAIR(132(R10)(AX*1), 164(R10)(AX*1), Y2)
	K5NIB3(DI)
	K4SC(k4shuf<>+192(SB), k4shuf<>+224(SB))
	K4PAIR(196(SI)(AX*1), 228(SI)(AX*1), Y0)
	K4PAIR(196(R9)(AX*1), 228(R9)(AX*1), Y1)
	K4PAIR(196(R10)(AX*1), 228(R10)(AX*1), Y2)
	K4FINSETUP(DI)
	K4FIN(0(SI)(AX*1), 260(SI)(AX*1), Y0, Y4)
	K4FIN(0(R9)(AX*1), 260(R9)(AX*1), Y1, Y5)
	K4FIN(0(R10)(AX*1), 260(R10)(AX*1), Y2, Y6)
	ADDQ $176, DI
	ADDQ $292, AX
	CMPQ AX, CX
	JLT  blk

	KHSUM(Y4, X4, 0(R14))
	MOVQ R14, BX
	ADDQ R15, BX
	KHSUM(Y5, X5, 0(BX))
	ADDQ R15, BX
	KHSUM(Y6, X6, 0(BX))
	ADDQ $4, R14
	DECQ DX
	JNZ  row
	VZEROUPPER
	RET

// func k5m4(nb int, w *byte, nr int, a *byte, lda int, out *float32, ldo int)
TEXT ·k5m4(SB), NOSPLIT, $0-56
	MOVQ  nb+0(FP), CX
	IMULQ $292, CX
	MOVQ  w+8(FP), DI
	MOVQ  nr+16(FP), DX
	MOVQ  a+24(FP), SI
	MOVQ  lda+32(FP), R11
	LEAQ  (SI)(R11*1), R9
	LEAQ  (R9)(R11*1), R10
	LEAQ  (R10)(R11*1), R11
	MOVQ  out+40(FP), R14
	MOVQ  ldo+48(FP), R15
	SHLQ  $2, R15
	VMOVDQU kmask0f<>(SB), Y15

row:
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	XORQ   AX, AX

blk:
	VPXOR  Y0, Y0, Y0
	VPXOR  Y1, Y1, Y1
	VPXOR  Y2, Y2, Y2
	VPXOR  Y3, Y3, Y3
	K4SCALES(DI)
	K5NIB0(DI)
	K4SC(k4shuf<>+0(SB), k4shuf<>+32(SB))
	K4PAIR(4(SI)(AX*1), 36(SI)(AX*1), Y0)
	K4PAIR(4(R9)(AX*1), 36(R9)(AX*1), Y1)
	K4PAIR(4(R10)(AX*1), 36(R10)(AX*1), Y2)
	K4PAIR(4(R11)(AX*1), 36(R11)(AX*1), Y3)
	K5NIB1(DI)
	K4SC(k4shuf<>+64(SB), k4shuf<>+96(SB))
	K4PAIR(68(SI)(AX*1), 100(SI)(AX*1), Y0)
	K4PAIR(68(R9)(AX*1), 100(R9)(AX*1), Y1)
	K4PAIR(68(R10)(AX*1), 100(R10)(AX*1), Y2)
	K4PAIR(68(R11)(AX*1), 100(R11)(AX*1), Y3)
	K5NIB2(DI)
	K4SC(k4shuf<>+128(SB), k4shuf<>+160(SB))
	K4PAIR(132(SI)(AX*1), 164(SI)(AX*1), Y0)
	K4PAIR(132(R9)(AX*1), 164(R9)(AX*1), Y1)
	K4PAIR(132(R10)(AX*1), 164(R10)(AX*1), Y2)
	K4PAIR(132(R11)(AX*1), 164(R11)(AX*1), Y3)
	K5NIB3(DI)
	K4SC(k4shuf<>+192(SB), k4shuf<>+224(SB))
	K4PAIR(196(SI)(AX*1), 228(SI)(AX*1), Y0)
	K4PAIR(196(R9)(AX*1), 228(R9)(AX*1), Y1)
	K4PAIR(196(R10)(AX*1), 228(R10)(AX*1), Y2)
	K4PAIR(196(R11)(AX*1), 228(R11)(AX*1), Y3)
	K4FINSETUP(DI)
	K4FIN(0(SI)(AX*1), 260(SI)(AX*1), Y0, Y4)
	K4FIN(0(R9)(AX*1), 260(R9)(AX*1), Y1, Y5)
	K4FIN(0(R10)(AX*1), 260(R10)(AX*1), Y2, Y6)
	K4FIN(0(R11)(AX*1), 260(R11)(AX*1), Y3, Y7)
	ADDQ $176, DI
	ADDQ $292, AX
	CMPQ AX, CX
	JLT  blk

	KHSUM(Y4, X4, 0(R14))
	MOVQ R14, BX
	ADDQ R15, BX
	KHSUM(Y5, X5, 0(BX))
	ADDQ R15, BX
	KHSUM(Y6, X6, 0(BX))
	ADDQ R15, BX
	KHSUM(Y7, X7, 0(BX))
	ADDQ $4, R14
	DECQ DX
	JNZ  row
	VZEROUPPER
	RET

// func k6m1(nb int, w *byte, nr int, a *byte, lda int, out *float32, ldo int)
TEXT ·k6m1(SB), NOSPLIT, $0-56
	MOVQ  nb+0(FP), CX
	IMULQ $292, CX
	MOVQ  w+8(FP), DI
	MOVQ  nr+16(FP), DX
	MOVQ  a+24(FP), SI
	MOVQ  out+40(FP), R14
	MOVQ  ldo+48(FP), R15
	SHLQ  $2, R15
	VMOVDQU kmask0f<>(SB), Y15
	VMOVDQU k6s32<>(SB), Y12

row:
	VXORPS Y4, Y4, Y4
	XORQ   AX, AX

blk:
	VPXOR  Y0, Y0, Y0
	VMOVDQU 192(DI), X14
	VMOVDQU 0(DI), Y2
	VMOVDQU 32(DI), Y3
	VMOVDQU 128(DI), Y13
	K6R0(Y2)
	K6SC(k6shuf<>+0(SB))
	K6PAIRR(4(SI)(AX*1), Y0)
	K6R1(Y3)
	K6SC(k6shuf<>+16(SB))
	K6PAIRR(36(SI)(AX*1), Y0)
	K6R2(Y2)
	K6SC(k6shuf<>+32(SB))
	K6PAIRR(68(SI)(AX*1), Y0)
	K6R3(Y3)
	K6SC(k6shuf<>+48(SB))
	K6PAIRR(100(SI)(AX*1), Y0)
	VMOVDQU 64(DI), Y2
	VMOVDQU 96(DI), Y3
	VMOVDQU 160(DI), Y13
	K6R0(Y2)
	K6SC(k6shuf<>+64(SB))
	K6PAIRR(132(SI)(AX*1), Y0)
	K6R1(Y3)
	K6SC(k6shuf<>+80(SB))
	K6PAIRR(164(SI)(AX*1), Y0)
	K6R2(Y2)
	K6SC(k6shuf<>+96(SB))
	K6PAIRR(196(SI)(AX*1), Y0)
	K6R3(Y3)
	K6SC(k6shuf<>+112(SB))
	K6PAIRR(228(SI)(AX*1), Y0)
	VPBROADCASTW 208(DI), Y13
	VCVTPH2PS    X13, Y13
	K6FIN(0(SI)(AX*1), Y0, Y4)
	ADDQ $210, DI
	ADDQ $292, AX
	CMPQ AX, CX
	JLT  blk

	KHSUM(Y4, X4, 0(R14))
	ADDQ $4, R14
	DECQ DX
	JNZ  row
	VZEROUPPER
	RET

// func k6m2(nb int, w *byte, nr int, a *byte, lda int, out *float32, ldo int)
TEXT ·k6m2(SB), NOSPLIT, $0-56
	MOVQ  nb+0(FP), CX
	IMULQ $292, CX
	MOVQ  w+8(FP), DI
	MOVQ  nr+16(FP), DX
	MOVQ  a+24(FP), SI
	MOVQ  lda+32(FP), R11
	LEAQ  (SI)(R11*1), R9
	MOVQ  out+40(FP), R14
	MOVQ  ldo+48(FP), R15
	SHLQ  $2, R15
	VMOVDQU kmask0f<>(SB), Y15
	VMOVDQU k6s32<>(SB), Y12

row:
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	XORQ   AX, AX

blk:
	VPXOR  Y0, Y0, Y0
	VPXOR  Y1, Y1, Y1
	VMOVDQU 192(DI), X14
	VMOVDQU 0(DI), Y2
	VMOVDQU 32(DI), Y3
	VMOVDQU 128(DI), Y13
	K6R0(Y2)
	K6SC(k6shuf<>+0(SB))
	K6PAIRR(4(SI)(AX*1), Y0)
	K6PAIRR(4(R9)(AX*1), Y1)
	K6R1(Y3)
	K6SC(k6shuf<>+16(SB))
	K6PAIRR(36(SI)(AX*1), Y0)
	K6PAIRR(36(R9)(AX*1), Y1)
	K6R2(Y2)
	K6SC(k6shuf<>+32(SB))
	K6PAIRR(68(SI)(AX*1), Y0)
	K6PAIRR(68(R9)(AX*1), Y1)
	K6R3(Y3)
	K6SC(k6shuf<>+48(SB))
	K6PAIRR(100(SI)(AX*1), Y0)
	K6PAIRR(100(R9)(AX*1), Y1)
	VMOVDQU 64(DI), Y2
	VMOVDQU 96(DI), Y3
	VMOVDQU 160(DI), Y13
	K6R0(Y2)
	K6SC(k6shuf<>+64(SB))
	K6PAIRR(132(SI)(AX*1), Y0)
	K6PAIRR(132(R9)(AX*1), Y1)
	K6R1(Y3)
	K6SC(k6shuf<>+80(SB))
	K6PAIRR(164(SI)(AX*1), Y0)
	K6PAIRR(164(R9)(AX*1), Y1)
	K6R2(Y2)
	K6SC(k6shuf<>+96(SB))
	K6PAIRR(196(SI)(AX*1), Y0)
	K6PAIRR(196(R9)(AX*1), Y1)
	K6R3(Y3)
	K6SC(k6shuf<>+112(SB))
	K6PAIRR(228(SI)(AX*1), Y0)
	K6PAIRR(228(R9)(AX*1), Y1)
	VPBROADCASTW 208(DI), Y13
	VCVTPH2PS    X13, Y13
	K6FIN(0(SI)(AX*1), Y0, Y4)
	K6FIN(0(R9)(AX*1), Y1, Y5)
	ADDQ $210, DI
	ADDQ $292, AX
	CMPQ AX, CX
	JLT  blk

	KHSUM(Y4, X4, 0(R14))
	MOVQ R14, BX
	ADDQ R15, BX
	KHSUM(Y5, X5, 0(BX))
	ADDQ $4, R14
	DECQ DX
	JNZ  row
	VZEROUPPER
	RET

// func k6m3(nb int, w *byte, nr int, a *byte, lda int, out *float32, ldo int)
TEXT ·k6m3(SB), NOSPLIT, $96-56
	MOVQ  nb+0(FP), CX
	IMULQ $292, CX
	MOVQ  w+8(FP), DI
	MOVQ  nr+16(FP), DX
	MOVQ  a+24(FP), SI
	MOVQ  lda+32(FP), R11
	LEAQ  (SI)(R11*1), R9
	LEAQ  (R9)(R11*1), R10
	MOVQ  out+40(FP), R14
	MOVQ  ldo+48(FP), R15
	SHLQ  $2, R15
	VMOVDQU kmask0f<>(SB), Y15
	VMOVDQU k6s32<>(SB), Y12

row:
	VXORPS Y8, Y8, Y8
	VMOVUPS Y8, 0(SP)
	VMOVUPS Y8, 32(SP)
	VMOVUPS Y8, 64(SP)
	XORQ   AX, AX

blk:
	VPXOR  Y0, Y0, Y0
	VPXOR  Y1, Y1, Y1
	VPXOR  Y2, Y2, Y2
	VMOVDQU 192(DI), X14
	VMOVDQU 0(DI), Y4
	VMOVDQU 32(DI), Y5
	VMOVDQU 128(DI), Y13
	K6R0(Y4)
	K6SC(k6shuf<>+0(SB))
	K6PAIRR(4(SI)(AX*1), Y0)
	K6PAIRR(4(R9)(AX*1), Y1)
	K6PAIRR(4(R10)(AX*1), Y2)
	K6R1(Y5)
	K6SC(k6shuf<>+16(SB))
	K6PAIRR(36(SI)(AX*1), Y0)
	K6PAIRR(36(R9)(AX*1), Y1)
	K6PAIRR(36(R10)(AX*1), Y2)
	K6R2(Y4)
	K6SC(k6shuf<>+32(SB))
	K6PAIRR(68(SI)(AX*1), Y0)
	K6PAIRR(68(R9)(AX*1), Y1)
	K6PAIRR(68(R10)(AX*1), Y2)
	K6R3(Y5)
	K6SC(k6shuf<>+48(SB))
	K6PAIRR(100(SI)(AX*1), Y0)
	K6PAIRR(100(R9)(AX*1), Y1)
	K6PAIRR(100(R10)(AX*1), Y2)
	VMOVDQU 64(DI), Y4
	VMOVDQU 96(DI), Y5
	VMOVDQU 160(DI), Y13
	K6R0(Y4)
	K6SC(k6shuf<>+64(SB))
	K6PAIRR(132(SI)(AX*1), Y0)
	K6PAIRR(132(R9)(AX*1), Y1)
	K6PAIRR(132(R10)(AX*1), Y2)
	K6R1(Y5)
	K6SC(k6shuf<>+80(SB))
	K6PAIRR(164(SI)(AX*1), Y0)
	K6PAIRR(164(R9)(AX*1), Y1)
	K6PAIRR(164(R10)(AX*1), Y2)
	K6R2(Y4)
	K6SC(k6shuf<>+96(SB))
	K6PAIRR(196(SI)(AX*1), Y0)
	K6PAIRR(196(R9)(AX*1), Y1)
	K6PAIRR(196(R10)(AX*1), Y2)
	K6R3(Y5)
	K6SC(k6shuf<>+112(SB))
	K6PAIRR(228(SI)(AX*1), Y0)
	K6PAIRR(228(R9)(AX*1), Y1)
	K6PAIRR(228(R10)(AX*1), Y2)
	VPBROADCASTW 208(DI), Y13
	VCVTPH2PS    X13, Y13
	K6FINM(0(SI)(AX*1), Y0, 0(SP))
	K6FINM(0(R9)(AX*1), Y1, 32(SP))
	K6FINM(0(R10)(AX*1), Y2, 64(SP))
	ADDQ $210, DI
	ADDQ $292, AX
	CMPQ AX, CX
	JLT  blk

	VMOVUPS 0(SP), Y4
	VMOVUPS 32(SP), Y5
	VMOVUPS 64(SP), Y6
	KHSUM(Y4, X4, 0(R14))
	MOVQ R14, BX
	ADDQ R15, BX
	KHSUM(Y5, X5, 0(BX))
	ADDQ R15, BX
	KHSUM(Y6, X6, 0(BX))
	ADDQ $4, R14
	DECQ DX
	JNZ  row
	VZEROUPPER
	RET

// func k6m4(nb int, w *byte, nr int, a *byte, lda int, out *float32, ldo int)
TEXT ·k6m4(SB), NOSPLIT, $128-56
	MOVQ  nb+0(FP), CX
	IMULQ $292, CX
	MOVQ  w+8(FP), DI
	MOVQ  nr+16(FP), DX
	MOVQ  a+24(FP), SI
	MOVQ  lda+32(FP), R11
	LEAQ  (SI)(R11*1), R9
	LEAQ  (R9)(R11*1), R10
	LEAQ  (R10)(R11*1), R11
	MOVQ  out+40(FP), R14
	MOVQ  ldo+48(FP), R15
	SHLQ  $2, R15
	VMOVDQU kmask0f<>(SB), Y15
	VMOVDQU k6s32<>(SB), Y12

row:
	VXORPS Y8, Y8, Y8
	VMOVUPS Y8, 0(SP)
	VMOVUPS Y8, 32(SP)
	VMOVUPS Y8, 64(SP)
	VMOVUPS Y8, 96(SP)
	XORQ   AX, AX

blk:
	VPXOR  Y0, Y0, Y0
	VPXOR  Y1, Y1, Y1
	VPXOR  Y2, Y2, Y2
	VPXOR  Y3, Y3, Y3
	VMOVDQU 192(DI), X14
	VMOVDQU 0(DI), Y4
	VMOVDQU 32(DI), Y5
	VMOVDQU 128(DI), Y13
	K6R0(Y4)
	K6SC(k6shuf<>+0(SB))
	K6PAIRR(4(SI)(AX*1), Y0)
	K6PAIRR(4(R9)(AX*1), Y1)
	K6PAIRR(4(R10)(AX*1), Y2)
	K6PAIRR(4(R11)(AX*1), Y3)
	K6R1(Y5)
	K6SC(k6shuf<>+16(SB))
	K6PAIRR(36(SI)(AX*1), Y0)
	K6PAIRR(36(R9)(AX*1), Y1)
	K6PAIRR(36(R10)(AX*1), Y2)
	K6PAIRR(36(R11)(AX*1), Y3)
	K6R2(Y4)
	K6SC(k6shuf<>+32(SB))
	K6PAIRR(68(SI)(AX*1), Y0)
	K6PAIRR(68(R9)(AX*1), Y1)
	K6PAIRR(68(R10)(AX*1), Y2)
	K6PAIRR(68(R11)(AX*1), Y3)
	K6R3(Y5)
	K6SC(k6shuf<>+48(SB))
	K6PAIRR(100(SI)(AX*1), Y0)
	K6PAIRR(100(R9)(AX*1), Y1)
	K6PAIRR(100(R10)(AX*1), Y2)
	K6PAIRR(100(R11)(AX*1), Y3)
	VMOVDQU 64(DI), Y4
	VMOVDQU 96(DI), Y5
	VMOVDQU 160(DI), Y13
	K6R0(Y4)
	K6SC(k6shuf<>+64(SB))
	K6PAIRR(132(SI)(AX*1), Y0)
	K6PAIRR(132(R9)(AX*1), Y1)
	K6PAIRR(132(R10)(AX*1), Y2)
	K6PAIRR(132(R11)(AX*1), Y3)
	K6R1(Y5)
	K6SC(k6shuf<>+80(SB))
	K6PAIRR(164(SI)(AX*1), Y0)
	K6PAIRR(164(R9)(AX*1), Y1)
	K6PAIRR(164(R10)(AX*1), Y2)
	K6PAIRR(164(R11)(AX*1), Y3)
	K6R2(Y4)
	K6SC(k6shuf<>+96(SB))
	K6PAIRR(196(SI)(AX*1), Y0)
	K6PAIRR(196(R9)(AX*1), Y1)
	K6PAIRR(196(R10)(AX*1), Y2)
	K6PAIRR(196(R11)(AX*1), Y3)
	K6R3(Y5)
	K6SC(k6shuf<>+112(SB))
	K6PAIRR(228(SI)(AX*1), Y0)
	K6PAIRR(228(R9)(AX*1), Y1)
	K6PAIRR(228(R10)(AX*1), Y2)
	K6PAIRR(228(R11)(AX*1), Y3)
	VPBROADCASTW 208(DI), Y13
	VCVTPH2PS    X13, Y13
	K6FINM(0(SI)(AX*1), Y0, 0(SP))
	K6FINM(0(R9)(AX*1), Y1, 32(SP))
	K6FINM(0(R10)(AX*1), Y2, 64(SP))
	K6FINM(0(R11)(AX*1), Y3, 96(SP))
	ADDQ $210, DI
	ADDQ $292, AX
	CMPQ AX, CX
	JLT  blk

	VMOVUPS 0(SP), Y4
	VMOVUPS 32(SP), Y5
	VMOVUPS 64(SP), Y6
	VMOVUPS 96(SP), Y7
	KHSUM(Y4, X4, 0(R14))
	MOVQ R14, BX
	ADDQ R15, BX
	KHSUM(Y5, X5, 0(BX))
	ADDQ R15, BX
	KHSUM(Y6, X6, 0(BX))
	ADDQ R15, BX
	KHSUM(Y7, X7, 0(BX))
	ADDQ $4, R14
	DECQ DX
	JNZ  row
	VZEROUPPER
	RET

