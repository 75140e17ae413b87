//go:build !purego

#include "textflag.h"

// Q8_0 and Q4_0 blocks to float32, AVX2 + F16C. Per block the scale is
// widened by VCVTPH2PS (exact; a signalling NaN comes out quiet, which the
// multiply would do anyway) and broadcast, the quants are sign-extended to
// int32 and converted exactly (VCVTDQ2PS), and each element is one VMULPS:
// the same correctly rounded float32 product as the Go code's q*d.
//
// Registers: R8 runs left, R9 blocks per run, DI/SI the run starts, R10/R11
// the strides (bytes), DX/BX the current block, CX blocks left in the run.

DATA dqmask<>+0(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA dqmask<>+8(SB)/8, $0x0f0f0f0f0f0f0f0f
GLOBL dqmask<>(SB), RODATA|NOPTR, $16

DATA dqeights<>+0(SB)/8, $0x0808080808080808
DATA dqeights<>+8(SB)/8, $0x0808080808080808
GLOBL dqeights<>(SB), RODATA|NOPTR, $16

// func dequantQ8Run(rows, nb int, dst *float32, ldd int, src *byte, lds int)
TEXT ·dequantQ8Run(SB), NOSPLIT, $0-48
	MOVQ rows+0(FP), R8
	MOVQ nb+8(FP), R9
	MOVQ dst+16(FP), DI
	MOVQ ldd+24(FP), R10
	MOVQ src+32(FP), SI
	MOVQ lds+40(FP), R11

q8row:
	MOVQ DI, DX
	MOVQ SI, BX
	MOVQ R9, CX

q8blk:
	VPBROADCASTW (BX), X0
	VCVTPH2PS    X0, Y0
	VPMOVSXBD    2(BX), Y1
	VPMOVSXBD    10(BX), Y2
	VPMOVSXBD    18(BX), Y3
	VPMOVSXBD    26(BX), Y4
	VCVTDQ2PS    Y1, Y1
	VCVTDQ2PS    Y2, Y2
	VCVTDQ2PS    Y3, Y3
	VCVTDQ2PS    Y4, Y4
	VMULPS       Y0, Y1, Y1
	VMULPS       Y0, Y2, Y2
	VMULPS       Y0, Y3, Y3
	VMULPS       Y0, Y4, Y4
	VMOVUPS      Y1, (DX)
	VMOVUPS      Y2, 32(DX)
	VMOVUPS      Y3, 64(DX)
	VMOVUPS      Y4, 96(DX)
	ADDQ         $34, BX
	ADDQ         $128, DX
	DECQ         CX
	JNZ          q8blk
	ADDQ         R10, DI
	ADDQ         R11, SI
	DECQ         R8
	JNZ          q8row
	VZEROUPPER
	RET

// func dequantQ4Run(rows, nb int, dst *float32, ldd int, src *byte, lds int)
//
// The 16 quant bytes at 2(BX) (the block's last 16) are split into low
// nibbles (elements 0..15) and high nibbles (16..31), 8 subtracted as bytes
// (-8..7), then sign-extended 8 at a time.
TEXT ·dequantQ4Run(SB), NOSPLIT, $0-48
	MOVQ    rows+0(FP), R8
	MOVQ    nb+8(FP), R9
	MOVQ    dst+16(FP), DI
	MOVQ    ldd+24(FP), R10
	MOVQ    src+32(FP), SI
	MOVQ    lds+40(FP), R11
	VMOVDQU dqmask<>(SB), X14
	VMOVDQU dqeights<>(SB), X15

q4row:
	MOVQ DI, DX
	MOVQ SI, BX
	MOVQ R9, CX

q4blk:
	VPBROADCASTW (BX), X0
	VCVTPH2PS    X0, Y0
	VMOVDQU      2(BX), X1
	VPSRLW       $4, X1, X2
	VPAND        X14, X1, X1
	VPAND        X14, X2, X2
	VPSUBB       X15, X1, X1
	VPSUBB       X15, X2, X2
	VPMOVSXBD    X1, Y3
	VPSRLDQ      $8, X1, X1
	VPMOVSXBD    X1, Y4
	VPMOVSXBD    X2, Y5
	VPSRLDQ      $8, X2, X2
	VPMOVSXBD    X2, Y6
	VCVTDQ2PS    Y3, Y3
	VCVTDQ2PS    Y4, Y4
	VCVTDQ2PS    Y5, Y5
	VCVTDQ2PS    Y6, Y6
	VMULPS       Y0, Y3, Y3
	VMULPS       Y0, Y4, Y4
	VMULPS       Y0, Y5, Y5
	VMULPS       Y0, Y6, Y6
	VMOVUPS      Y3, (DX)
	VMOVUPS      Y4, 32(DX)
	VMOVUPS      Y5, 64(DX)
	VMOVUPS      Y6, 96(DX)
	ADDQ         $18, BX
	ADDQ         $128, DX
	DECQ         CX
	JNZ          q4blk
	ADDQ         R10, DI
	ADDQ         R11, SI
	DECQ         R8
	JNZ          q4row
	VZEROUPPER
	RET

DATA dqf16<>+0(SB)/4, $0x00007fff
DATA dqf16<>+4(SB)/4, $0x00008000
DATA dqf16<>+8(SB)/4, $0x38000000
DATA dqf16<>+12(SB)/4, $0x00007bff
DATA dqf16<>+16(SB)/4, $0x00000400
DATA dqf16<>+20(SB)/4, $0x33800000
GLOBL dqf16<>(SB), RODATA|NOPTR, $24

// func decodeF16Run(rows, n8 int, dst *float32, ldd int, src *byte, lds int)
//
// decodeF16 (kernels_amd64.s) over rows runs of 8*n8 halves, with the same
// integer algorithm (VCVTPH2PS would quiet signalling NaNs): em = h&0x7fff;
// normal and Inf/NaN values are em<<13 plus the exponent rebias 112<<23,
// added twice when em > 0x7bff; zeros and subnormals (em < 0x400) are
// float32(em)*2^-24, exact; then the sign.
TEXT ·decodeF16Run(SB), NOSPLIT, $0-48
	MOVQ         rows+0(FP), R8
	MOVQ         n8+8(FP), R9
	MOVQ         dst+16(FP), DI
	MOVQ         ldd+24(FP), R10
	MOVQ         src+32(FP), SI
	MOVQ         lds+40(FP), R11
	VPBROADCASTD dqf16<>+0(SB), Y15
	VPBROADCASTD dqf16<>+4(SB), Y14
	VPBROADCASTD dqf16<>+8(SB), Y13
	VPBROADCASTD dqf16<>+12(SB), Y12
	VPBROADCASTD dqf16<>+16(SB), Y11
	VPBROADCASTD dqf16<>+20(SB), Y10

f16row:
	MOVQ DI, DX
	MOVQ SI, BX
	MOVQ R9, CX

f16blk:
	VPMOVZXWD (BX), Y0
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
	VMOVUPS   Y2, (DX)
	ADDQ      $16, BX
	ADDQ      $32, DX
	DECQ      CX
	JNZ       f16blk
	ADDQ      R10, DI
	ADDQ      R11, SI
	DECQ      R8
	JNZ       f16row
	VZEROUPPER
	RET
