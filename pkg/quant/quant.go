// Package quant implements ggml's weight block formats (Q8_0, Q4_0, the
// K-quants Q4_K, Q5_K and Q6_K, F16, BF16) and the matrix-vector kernels a
// CPU LLM engine runs on quantized weights.
//
// The kernels never dequantize a weight matrix. As llama.cpp does, each
// activation row is first quantized to Q8_0 blocks (QuantizeActivations; Q8_K
// super-blocks for the K-quants, QuantizeActivationsK) and
// every dot product is computed block by block with integer arithmetic; only
// the per-block scaling and the accumulation across blocks are floating
// point. That is what makes them fast (32 int8 products per instruction pair)
// and it is also what makes them reproducible: integer sums are exact, so
// the only rounding is in a short, fixed sequence of float32 operations.
//
// # Determinism
//
// The engine caches KV state across requests, so the same input must always
// produce the same bits, whatever the batch shape and whichever kernel family
// (AVX2 assembly on amd64, AVX-512 VNNI tiles for Q8_0/Q4_0 products where
// the CPU has them, pure Go elsewhere or with the purego build tag) computes
// it. Every family implements exactly one float order, defined once here and
// followed instruction for instruction:
//
// For one weight row w and one activation row a of k = 32*nb elements, with
// 8 float32 lane accumulators acc[0..7] starting at +0, for each block b in
// order 0..nb-1:
//
//	lane[j] = sum of w[32b+i]*a[32b+i] for i in 4j..4j+3   (exact int32, j = 0..7)
//	s       = float32(dw_b) * float32(da_b)                 (one float32 multiply)
//	acc[j]  = acc[j] + float32(float32(lane[j]) * s)        (multiply, round, add, round)
//
// where dw_b and da_b are the blocks' float16 scales converted exactly to
// float32, and w, a are the blocks' integer quants (Q4_0 weights are the
// nibbles minus 8). The product and the sum are two separately rounded
// float32 operations (VMULPS then VADDPS, never a fused multiply-add: Go
// cannot reproduce a float32 FMA exactly). The result is then reduced with a
// fixed tree, the same one the engine's float32 kernels use:
//
//	result = ((acc0+acc4) + (acc2+acc6)) + ((acc1+acc5) + (acc3+acc7))
//
// The lane assignment is the one VPMADDUBSW followed by VPMADDWD(ones)
// produces on a 32-byte block, which is why the pure-Go code sums elements in
// groups of four. Every output element has its own accumulators, so the
// result does not depend on how many activation rows a call processes, on
// the register tile that computes it, or on how the caller splits rows
// between goroutines.
//
// The integer part is exact provided the activations are in [-127, 127],
// which QuantizeActivations (and QuantizeQ8_0) guarantee; weights may use the
// whole int8 range, -128 included. See DotQ8_0.
//
// The contract covers every finite input. With Inf or NaN scales (which
// CheckScales lets model loaders refuse) both families still return the
// same Inf, or a NaN, but which NaN payload is not specified. The quantizers
// and the F16/BF16 decoders are bit-identical across families too, for
// every input including NaNs.
//
// # K-quants
//
// Q4_K, Q5_K and Q6_K weights (ggml's 256-element super-blocks, kquant.go)
// are multiplied with activations quantized to Q8_K super-blocks
// (QuantizeActivationsK: one float32 scale per 256 activations, plus the
// sums of each 16). Their float order, the same in both families, is: for
// one weight row and one activation row of k = 256*nb elements, with 8
// float32 accumulators acc[0..7] starting at +0, for each super-block b in
// order 0..nb-1,
//
//	lane[j]  = sum over the 32-element groups g of sc(g,j) * (sum of q_e*a_e for e = 32g+4j..32g+4j+3)
//	mlane[s] = m_s * (bsums[2s] + bsums[2s+1])                       (Q4_K, Q5_K; 0 for Q6_K)
//	d, dm    = da * float32(dw), da * float32(dmin)                   (two float32 multiplies)
//	acc[j]   = acc[j] + float32(float32(float32(lane[j])*d) - float32(float32(mlane[j])*dm))
//
// (Q6_K: acc[j] = acc[j] + float32(float32(lane[j])*d)), then the same fixed
// tree as above, result = ((acc0+acc4) + (acc2+acc6)) + ((acc1+acc5) +
// (acc3+acc7)). Here a_e are the activation quants, da their float32 scale,
// dw and dmin the weight super-block's float16 scales; q_e is the weight
// quant (Q4_K: 0..15, Q5_K: 0..31, Q6_K: q-32 in -32..31) and sc(g,j) its
// sub-block scale: the 6-bit scale of 32-element sub-block g for Q4_K and
// Q5_K, the int8 scale of 16 elements 2g + j/4 for Q6_K; m_s are the 6-bit
// mins. Every lane and mlane is an exact int32 of magnitude at most 2^24 (for
// any bytes, -128 activations and random bsums included), so the
// conversions to float32 are exact too, and the only roundings are the
// listed multiplies, the subtraction, the nb additions per lane and the
// tree; never a fused multiply-add. The lanes are the ones VPMADDUBSW,
// VPMADDWD with the sub-block scale and VPADDD produce, as in ggml's AVX2
// kernels, which also fold a super-block's integer sums before one float
// multiply by d; ggml accumulates with FMA and sums the mins per 64
// elements, so its last bits differ from these. Each output element is one
// such sequence, whatever the batch, the tile or the split of rows between
// workers. Non-finite scales (CheckScalesQ4_K, CheckScalesQ6_K; a Q8_K
// scale is finite unless an activation is) give the same Inf, or a NaN,
// in both families.
package quant

import (
	"encoding/binary"
	"fmt"
	"math"
)

// BlockSize is the number of elements in one Q8_0 or Q4_0 block.
const BlockSize = 32

// Q8_0BlockBytes is the size of a Q8_0 block: a float16 scale d followed by
// 32 int8 quants; element i is d*qs[i].
const Q8_0BlockBytes = 34

// Q4_0BlockBytes is the size of a Q4_0 block: a float16 scale d followed by
// 16 bytes of 4-bit quants; element j < 16 is d*((qs[j]&0xF)-8) and element
// j+16 is d*((qs[j]>>4)-8).
const Q4_0BlockBytes = 18

// F16ToF32 converts an IEEE 754 half-precision value to float32. The
// conversion is exact for every input; NaN payloads (signalling or quiet) are
// kept, so F32ToF16(F16ToF32(h)) == h for all 65536 halves.
func F16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	em := uint32(h & 0x7fff)
	switch {
	case em >= 0x7c00: // Inf or NaN: widen the payload.
		return math.Float32frombits(sign | 0x7f800000 | (em&0x3ff)<<13)
	case em >= 0x0400: // normal: rebias the exponent (127-15 = 112).
		return math.Float32frombits(sign | (em<<13 + 112<<23))
	default: // zero or subnormal: em * 2^-24, exact in float32.
		return math.Float32frombits(sign | math.Float32bits(float32(em)*(1.0/(1<<24))))
	}
}

// F32ToF16 converts a float32 to IEEE 754 half precision, rounding to nearest
// even (the rounding F16C's VCVTPS2PH uses with immediate 0, and ggml's
// GGML_FP32_TO_FP16). Values too large for a half become ±Inf, values too
// small become ±0 or a subnormal. A NaN stays a NaN with the top 10 bits of
// its payload; if those are all zero the quiet bit is set so that it does not
// turn into an Inf.
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	e := int32(b>>23) & 0xff
	m := b & 0x7fffff
	if e == 0xff {
		if m == 0 {
			return sign | 0x7c00
		}
		hm := uint16(m >> 13)
		if hm == 0 {
			hm = 0x200
		}
		return sign | 0x7c00 | hm
	}
	e -= 127 - 15 // the half's biased exponent
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		// Subnormal half (or zero): the value in units of 2^-24 is the
		// full significand shifted right by 14-e, rounded to nearest even.
		if e < -10 {
			return sign // below half the smallest subnormal
		}
		mf := m | 0x800000
		shift := uint32(14 - e)
		h := mf >> shift
		rem := mf & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && h&1 == 1) {
			h++ // may carry into the smallest normal: still the right encoding
		}
		return sign | uint16(h)
	}
	h := uint32(e)<<10 | m>>13
	rem := m & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
		h++ // a carry into the exponent is correct, up to Inf
	}
	return sign | uint16(h)
}

// BF16ToF32 converts a bfloat16 (the top 16 bits of a float32) to float32,
// exactly.
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// F32ToBF16 converts a float32 to bfloat16, rounding to nearest even. A NaN
// keeps the top 7 bits of its payload (the quiet bit is set if they are all
// zero, as ggml does), so BF16 round trips are exact for all 65536 values.
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		h := uint16(b >> 16)
		if h&0x7f == 0 {
			h |= 0x40
		}
		return h
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// DecodeF16 converts little-endian halves to float32 exactly (F16ToF32 on
// each; NaN payloads kept): len(src) must be 2*len(dst). It runs on every
// F16 weight row a matrix product uses, so on amd64 it is AVX2 assembly,
// bit-identical to F16ToF32 for all 65536 inputs.
func DecodeF16(dst []float32, src []byte) {
	if len(src) != 2*len(dst) {
		panic(fmt.Sprintf("quant: DecodeF16: %d source bytes for %d values", len(src), len(dst)))
	}
	decodeF16Any(dst, src)
}

// DecodeBF16 converts little-endian bfloat16 values to float32 (exact):
// len(src) must be 2*len(dst). AVX2 on amd64, like DecodeF16.
func DecodeBF16(dst []float32, src []byte) {
	if len(src) != 2*len(dst) {
		panic(fmt.Sprintf("quant: DecodeBF16: %d source bytes for %d values", len(src), len(dst)))
	}
	decodeBF16Any(dst, src)
}

func decodeF16Go(dst []float32, src []byte) {
	src = src[:2*len(dst)]
	for i := range dst {
		dst[i] = F16ToF32(uint16(src[2*i]) | uint16(src[2*i+1])<<8)
	}
}

func decodeBF16Go(dst []float32, src []byte) {
	src = src[:2*len(dst)]
	for i := range dst {
		dst[i] = math.Float32frombits((uint32(src[2*i]) | uint32(src[2*i+1])<<8) << 16)
	}
}

// checkQuant validates the sizes for a quantize/dequantize of n elements.
func checkQuant(name string, n, bytes, blockBytes int) {
	if n%BlockSize != 0 {
		panic(fmt.Sprintf("quant: %s: %d elements is not a multiple of %d", name, n, BlockSize))
	}
	if bytes != n/BlockSize*blockBytes {
		panic(fmt.Sprintf("quant: %s: %d bytes for %d elements (want %d)", name, bytes, n, n/BlockSize*blockBytes))
	}
}

// QuantizeQ8_0 encodes src as Q8_0 blocks with ggml's reference algorithm
// (quantize_row_q8_0_ref): per block, amax = max|x|, d = amax/127,
// id = 1/d (0 if d is 0), stored scale fp16(d), qs[i] = roundf(x[i]*id)
// (round half away from zero). len(src) must be a multiple of 32 and len(dst)
// len(src)/32*34.
//
// Inputs for which the C reference is undefined behaviour get a defined
// result here: NaN elements are ignored when computing amax and quantize to
// 0, and a block so small that 1/d overflows (amax < 127*2^-128, whose fp16
// scale is 0 anyway) quantizes to zeros. The output is therefore always in
// [-127, 127]. QuantizeQ8_0 and QuantizeActivations are the same function.
func QuantizeQ8_0(dst []byte, src []float32) {
	checkQuant("QuantizeQ8_0", len(src), len(dst), Q8_0BlockBytes)
	quantizeQ8(dst, src)
}

// quantizeQ8Go is the pure-Go Q8_0 quantizer; the assembly version produces
// the same bytes for every input.
func quantizeQ8Go(dst []byte, src []float32) {
	for b := 0; b < len(src)/BlockSize; b++ {
		x := src[b*BlockSize : (b+1)*BlockSize : (b+1)*BlockSize]
		y := dst[b*Q8_0BlockBytes : (b+1)*Q8_0BlockBytes : (b+1)*Q8_0BlockBytes]
		var amax float32
		for _, v := range x {
			if a := abs32(v); a > amax { // a NaN never compares greater
				amax = a
			}
		}
		d := amax / 127
		id := 1 / d // +Inf when d is 0 (or so small that 1/d overflows)
		if id > math.MaxFloat32 {
			id = 0
		}
		binary.LittleEndian.PutUint16(y, F32ToF16(d))
		q := y[2:34]
		for i, v := range x {
			r := v * id
			if r != r {
				r = 0
			}
			// |r| <= 127.0002 here, so the rounded value fits an int8.
			q[i] = byte(int8(math.Round(float64(r))))
		}
	}
}

// QuantizeQ4_0 encodes src as Q4_0 blocks with ggml's reference algorithm
// (quantize_row_q4_0_ref): per block, max = the element of largest magnitude
// (the first one, with its sign), d = max/-8, id = 1/d (0 if d is 0), stored
// scale fp16(d), and quant = min(15, int8(x*id + 8.5)) (truncation), element
// j in the low nibble of byte j and element j+16 in its high nibble.
//
// As for QuantizeQ8_0, inputs that are undefined behaviour in C get a
// defined result: NaN elements are ignored for max and get quant 8 (value 0),
// an overflowing 1/d is treated as 0, and quants are clamped to [0, 15].
func QuantizeQ4_0(dst []byte, src []float32) {
	checkQuant("QuantizeQ4_0", len(src), len(dst), Q4_0BlockBytes)
	for b := 0; b < len(src)/BlockSize; b++ {
		x := src[b*BlockSize : (b+1)*BlockSize : (b+1)*BlockSize]
		y := dst[b*Q4_0BlockBytes : (b+1)*Q4_0BlockBytes : (b+1)*Q4_0BlockBytes]
		var amax, max float32
		for _, v := range x {
			if a := abs32(v); amax < a {
				amax, max = a, v
			}
		}
		d := max / -8
		var id float32
		if d != 0 {
			id = 1 / d
			if id > math.MaxFloat32 || id < -math.MaxFloat32 {
				id = 0
			}
		}
		binary.LittleEndian.PutUint16(y, F32ToF16(d))
		for j := 0; j < 16; j++ {
			// The explicit conversions keep x*id rounded before the
			// +8.5 in q4code, as in C: otherwise Go may fuse the two
			// (it does on arm64 and with GOAMD64=v3).
			y[2+j] = q4code(float32(x[j]*id)) | q4code(float32(x[j+16]*id))<<4
		}
	}
}

// q4code is min(15, int8(v + 8.5)) for the values the reference defines,
// extended to every float32 (NaN gives 8, the code of 0).
func q4code(v float32) byte {
	f := v + 8.5
	switch {
	case f != f:
		return 8
	case f >= 15:
		return 15
	case f <= 0:
		return 0
	}
	return byte(int32(f))
}

// DequantizeQ8_0 decodes Q8_0 blocks: dst[i] = d*qs[i] (a float32 multiply,
// as ggml's dequantize_row_q8_0). len(dst) must be a multiple of 32 and
// len(src) len(dst)/32*34. AVX2 on amd64 (see DequantizeQ8_0Rows).
func DequantizeQ8_0(dst []float32, src []byte) {
	checkQuant("DequantizeQ8_0", len(dst), len(src), Q8_0BlockBytes)
	if nb := len(dst) / BlockSize; nb > 0 {
		dequantQ8(dst, 0, src, 0, 1, nb)
	}
}

// DequantizeQ4_0 decodes Q4_0 blocks: element j is ((qs[j]&0xF)-8)*d and
// element j+16 is ((qs[j]>>4)-8)*d. len(dst) must be a multiple of 32 and
// len(src) len(dst)/32*18. AVX2 on amd64 (see DequantizeQ8_0Rows).
func DequantizeQ4_0(dst []float32, src []byte) {
	checkQuant("DequantizeQ4_0", len(dst), len(src), Q4_0BlockBytes)
	if nb := len(dst) / BlockSize; nb > 0 {
		dequantQ4(dst, 0, src, 0, 1, nb)
	}
}

// CheckScales reports the index of the first block whose float16 scale is
// NaN or Inf (-1 if none): model loaders refuse such files, since one such
// block turns every dot product that touches its row into NaN. blockBytes is
// Q8_0BlockBytes or Q4_0BlockBytes (any block format whose first two bytes
// are a float16 scale works); a trailing partial block is ignored.
func CheckScales(blockBytes int, data []byte) int {
	if blockBytes < 2 {
		panic(fmt.Sprintf("quant: CheckScales: block size %d", blockBytes))
	}
	for b, off := 0, 0; off+blockBytes <= len(data); b, off = b+1, off+blockBytes {
		if binary.LittleEndian.Uint16(data[off:])&0x7c00 == 0x7c00 {
			return b
		}
	}
	return -1
}

func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }
