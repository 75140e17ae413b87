package quant

import (
	"encoding/binary"
	"fmt"
	"math"
)

// K-quants: ggml's 256-element super-block formats. Every layout below is
// ggml's block_q4_K / block_q5_K / block_q6_K / block_q8_K byte for byte
// (ggml-common.h), little-endian.

// KBlockSize is the number of elements of one K-quant super-block (QK_K).
const KBlockSize = 256

// Q4_KBlockBytes is the size of a Q4_K super-block: float16 d, float16 dmin,
// scales[12] (8 six-bit scales and 8 six-bit mins, packed as
// get_scale_min_k4 reads them), qs[128] (4-bit quants). Sub-block s (32
// elements, s = 0..7) has scale sc_s and min m_s; element 32s+i is
// d*sc_s*q - dmin*m_s, q being the low nibble of qs[32*(s/2)+i] for even s
// and the high nibble for odd s.
const Q4_KBlockBytes = 144

// Q5_KBlockBytes is the size of a Q5_K super-block: Q4_K's d, dmin and
// scales, then qh[32] (the fifth bits: bit s of qh[i] belongs to element
// 32s+i) and qs[128] as in Q4_K; q = nibble + 16*bit.
const Q5_KBlockBytes = 176

// Q6_KBlockBytes is the size of a Q6_K super-block: ql[128] (low 4 bits),
// qh[64] (high 2 bits), int8 scales[16] (one per 16 elements), float16 d at
// the end. Element e is d*scales[e/16]*(q-32) with q a 6-bit value: for
// e = 128h + 32r + i (h = 0..1, r = 0..3, i = 0..31) the low bits are the
// low nibble (r < 2) or high nibble (r >= 2) of ql[64h + 32(r%2) + i] and the
// high bits are bits 2r..2r+1 of qh[32h + i].
const Q6_KBlockBytes = 210

// Q8_KBlockBytes is the size of a Q8_K super-block, the activation format of
// the K-quant kernels: float32 d, int8 qs[256], int16 bsums[16] (bsums[j] is
// the sum of qs[16j..16j+15]). Element i is d*qs[i].
const Q8_KBlockBytes = 292

// groupMaxEps is ggml's GROUP_MAX_EPS.
const groupMaxEps float32 = 1e-15

// checkQuantK validates the sizes for a K-quant (de)quantization of n
// elements.
func checkQuantK(name string, n, bytes, blockBytes int) {
	if n%KBlockSize != 0 {
		panic(fmt.Sprintf("quant: %s: %d elements is not a multiple of %d", name, n, KBlockSize))
	}
	if bytes != n/KBlockSize*blockBytes {
		panic(fmt.Sprintf("quant: %s: %d bytes for %d elements (want %d)", name, bytes, n, n/KBlockSize*blockBytes))
	}
}

// nearestInt is ggml's nearest_int: round to nearest, ties to even, by
// adding 1.5*2^23 and reading the mantissa. It is exact for |f| <= 4194303;
// beyond that it returns what the C function returns (the same bits), and a
// NaN gives 0 (the C function's result depends on the NaN's payload).
func nearestInt(f float32) int32 {
	if f != f {
		return 0
	}
	v := float32(f) + 12582912
	return int32(math.Float32bits(v)&0x007fffff) - 0x00400000
}

// scaleMinK4 is ggml's get_scale_min_k4: the six-bit scale and min of
// sub-block j from a Q4_K/Q5_K scales[12].
func scaleMinK4(j int, q []byte) (sc, m uint8) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&0xF | (q[j-4]>>6)<<4, q[j+4]>>4 | (q[j]>>6)<<4
}

// makeQKX2 is ggml's make_qkx2_quants with use_mad false: a weighted
// least-squares fit of x to scale*L - min with L in [0, nmax], trying
// nstep+1 scales. It returns the scale and the (non-negative) min and
// writes L. Every float operation is the C function's, rounded to float32
// one at a time (no contraction).
func makeQKX2(nmax int32, x, weights []float32, L, Laux []uint8, rmin, rdelta float32, nstep int) (float32, float32) {
	n := len(x)
	L, Laux, weights = L[:n], Laux[:n], weights[:n]
	mn, mx := x[0], x[0]
	sumW := weights[0]
	sumX := float32(sumW * x[0])
	for i := 1; i < n; i++ {
		if x[i] < mn {
			mn = x[i]
		}
		if x[i] > mx {
			mx = x[i]
		}
		w := weights[i]
		sumW += w
		sumX += float32(w * x[i])
	}
	if mn > 0 {
		mn = 0
	}
	if mx == mn {
		clear(L)
		return 0, -mn
	}
	iscale := float32(nmax) / float32(mx-mn)
	scale := 1 / iscale
	var bestError float32
	for i := 0; i < n; i++ {
		l := nearestInt(float32(iscale * float32(x[i]-mn)))
		L[i] = uint8(max(0, min(nmax, l)))
		diff := float32(float32(float32(scale*float32(L[i]))+mn) - x[i])
		diff = float32(diff * diff)
		bestError += float32(weights[i] * diff)
	}
	if nstep < 1 {
		return scale, -mn
	}
	for is := 0; is <= nstep; is++ {
		iscale = float32(float32(rmin+float32(rdelta*float32(is)))+float32(nmax)) / float32(mx-mn)
		var sumL, sumL2, sumXL float32
		for i := 0; i < n; i++ {
			l := nearestInt(float32(iscale * float32(x[i]-mn)))
			l = max(0, min(nmax, l))
			Laux[i] = uint8(l)
			w, fl := weights[i], float32(l)
			wl := float32(w * fl)
			sumL += wl
			sumL2 += float32(wl * fl)
			sumXL += float32(wl * x[i])
		}
		D := float32(float32(sumW*sumL2) - float32(sumL*sumL))
		if D > 0 {
			thisScale := float32(float32(sumW*sumXL)-float32(sumX*sumL)) / D
			thisMin := float32(float32(sumL2*sumX)-float32(sumL*sumXL)) / D
			if thisMin > 0 {
				thisMin = 0
				thisScale = sumXL / sumL2
			}
			var curError float32
			for i := 0; i < n; i++ {
				diff := float32(float32(float32(thisScale*float32(Laux[i]))+thisMin) - x[i])
				diff = float32(diff * diff)
				curError += float32(weights[i] * diff)
			}
			if curError < bestError {
				copy(L, Laux)
				bestError = curError
				scale = thisScale
				mn = thisMin
			}
		}
	}
	return scale, -mn
}

// makeQX16 is ggml's make_qx_quants(16, 32, x, L, 1, NULL), the Q6_K
// sub-block fit: L in [0, 63] (q-32 in [-32, 31]), weights x^2, 19 scales
// tried.
func makeQX16(x []float32, L []int8) float32 {
	const nmax = 32
	x, L = x[:16], L[:16]
	var mx, amax float32
	for _, v := range x {
		if ax := abs32(v); ax > amax {
			amax, mx = ax, v
		}
	}
	if amax < groupMaxEps {
		clear(L)
		return 0
	}
	quant := func(iscale float32) (sumlx, suml2 float32) {
		for _, v := range x {
			l := max(-nmax, min(nmax-1, nearestInt(float32(iscale*v))))
			w, fl := float32(v*v), float32(l)
			sumlx += float32(float32(w*v) * fl)
			suml2 += float32(float32(w*fl) * fl)
		}
		return
	}
	set := func(iscale float32) {
		for i, v := range x {
			L[i] = int8(nmax + max(-nmax, min(nmax-1, nearestInt(float32(iscale*v)))))
		}
	}
	iscale := float32(-nmax) / mx
	sumlx, suml2 := quant(iscale)
	set(iscale)
	var scale float32
	if suml2 != 0 {
		scale = sumlx / suml2
	}
	best := float32(scale * sumlx)
	for is := -9; is <= 9; is++ {
		if is == 0 {
			continue
		}
		iscale = -float32(nmax+float32(0.1*float32(is))) / mx
		sumlx, suml2 = quant(iscale)
		if suml2 > 0 && float32(sumlx*sumlx) > float32(best*suml2) {
			set(iscale)
			scale = sumlx / suml2
			best = float32(scale * sumlx)
		}
	}
	return scale
}

// QuantizeQ4_K encodes src as Q4_K super-blocks with ggml's reference
// algorithm (quantize_row_q4_K_ref, the one llama-quantize uses without an
// importance matrix): per 32-element sub-block a weighted fit
// (make_qkx2_quants, 15 levels, weights sqrt(mean x^2)+|x|, 21 scales
// tried), the 8 scales and 8 mins quantized to 6 bits against their
// maxima (d = max_scale/63, dmin = max_min/63, stored as float16), then
// every element requantized with the stored scales:
// q = clamp(nearest_int((x + dmin*m)/(d*sc)), 0, 15). len(src) must be a
// multiple of 256 and len(dst) len(src)/256*144.
//
// The bytes are those of the C reference evaluated in IEEE float32 with
// every operation rounded (no contraction into fused multiply-adds, as
// -ffp-contract=off compiles it).
func QuantizeQ4_K(dst []byte, src []float32) {
	checkQuantK("QuantizeQ4_K", len(src), len(dst), Q4_KBlockBytes)
	quantizeK45(dst, src, Q4_KBlockBytes, 15)
}

// QuantizeQ5_K is QuantizeQ4_K for Q5_K (quantize_row_q5_K_ref: 31 levels,
// 16 scales tried from rmin -0.5), len(dst) = len(src)/256*176.
func QuantizeQ5_K(dst []byte, src []float32) {
	checkQuantK("QuantizeQ5_K", len(src), len(dst), Q5_KBlockBytes)
	quantizeK45(dst, src, Q5_KBlockBytes, 31)
}

// quantizeK45 is quantize_row_q4_K_ref (nmax 15) and quantize_row_q5_K_ref
// (nmax 31), which differ only in the levels, the search and the packing.
func quantizeK45(dst []byte, src []float32, bb int, nmax int32) {
	var L [KBlockSize]uint8
	var laux [32]uint8
	var weights [32]float32
	var mins, scales [8]float32
	rmin, nstep := float32(-1), 20
	if nmax == 31 {
		rmin, nstep = -0.5, 15
	}
	for b := 0; b < len(src)/KBlockSize; b++ {
		x := src[b*KBlockSize : (b+1)*KBlockSize : (b+1)*KBlockSize]
		y := dst[b*bb : (b+1)*bb : (b+1)*bb]
		var maxScale, maxMin float32
		for j := 0; j < 8; j++ {
			xs := x[32*j : 32*j+32]
			var sumX2 float32
			for _, v := range xs {
				sumX2 += float32(v * v)
			}
			avX := float32(math.Sqrt(float64(sumX2 / 32)))
			for l, v := range xs {
				weights[l] = avX + abs32(v)
			}
			scales[j], mins[j] = makeQKX2(nmax, xs, weights[:], L[32*j:32*j+32], laux[:], rmin, 0.1, nstep)
			if scales[j] > maxScale {
				maxScale = scales[j]
			}
			if mins[j] > maxMin {
				maxMin = mins[j]
			}
		}
		var invScale, invMin float32
		if maxScale > 0 {
			invScale = 63 / maxScale
		}
		if maxMin > 0 {
			invMin = 63 / maxMin
		}
		sc := y[4:16]
		for j := 0; j < 8; j++ {
			ls := min(63, uint8(nearestInt(float32(invScale*scales[j]))))
			lm := min(63, uint8(nearestInt(float32(invMin*mins[j]))))
			if j < 4 {
				sc[j] = ls
				sc[j+4] = lm
			} else {
				sc[j+4] = ls&0xF | (lm&0xF)<<4
				sc[j-4] |= (ls >> 4) << 6
				sc[j] |= (lm >> 4) << 6
			}
		}
		binary.LittleEndian.PutUint16(y[0:], F32ToF16(maxScale/63))
		binary.LittleEndian.PutUint16(y[2:], F32ToF16(maxMin/63))
		dd := F16ToF32(binary.LittleEndian.Uint16(y[0:]))
		dmin := F16ToF32(binary.LittleEndian.Uint16(y[2:]))
		for j := 0; j < 8; j++ {
			s, m := scaleMinK4(j, sc)
			d := float32(dd * float32(s))
			if d == 0 {
				continue
			}
			dm := float32(dmin * float32(m))
			for ii := 0; ii < 32; ii++ {
				l := nearestInt(float32(float32(x[32*j+ii]+dm) / d))
				L[32*j+ii] = uint8(max(0, min(nmax, l)))
			}
		}
		if nmax == 15 {
			q := y[16:144]
			for j := 0; j < KBlockSize; j += 64 {
				for l := 0; l < 32; l++ {
					q[j/2+l] = L[j+l] | L[j+l+32]<<4
				}
			}
			continue
		}
		qh, ql := y[16:48], y[48:176]
		clear(qh)
		m1, m2 := uint8(1), uint8(2)
		for n := 0; n < KBlockSize; n += 64 {
			for j := 0; j < 32; j++ {
				l1, l2 := L[n+j], L[n+j+32]
				if l1 > 15 {
					l1 -= 16
					qh[j] |= m1
				}
				if l2 > 15 {
					l2 -= 16
					qh[j] |= m2
				}
				ql[n/2+j] = l1 | l2<<4
			}
			m1 <<= 2
			m2 <<= 2
		}
	}
}

// QuantizeQ6_K encodes src as Q6_K super-blocks with ggml's reference
// algorithm (quantize_row_q6_K_ref): per 16 elements a fit with
// make_qx_quants (levels -32..31, weights x^2, 19 scales tried), the 16
// scales quantized to int8 against the one of largest magnitude
// (d = max_scale/-128 as float16), then every element requantized with the
// stored scales: q = clamp(nearest_int(x/(d*sc)), -32, 31) + 32. A
// super-block whose scales are all below 1e-15 is all zero. len(src) must
// be a multiple of 256 and len(dst) len(src)/256*210. As for QuantizeQ4_K,
// every float operation is rounded separately.
func QuantizeQ6_K(dst []byte, src []float32) {
	checkQuantK("QuantizeQ6_K", len(src), len(dst), Q6_KBlockBytes)
	var L [KBlockSize]int8
	var scales [16]float32
	for b := 0; b < len(src)/KBlockSize; b++ {
		x := src[b*KBlockSize : (b+1)*KBlockSize : (b+1)*KBlockSize]
		y := dst[b*Q6_KBlockBytes : (b+1)*Q6_KBlockBytes : (b+1)*Q6_KBlockBytes]
		var maxScale, maxAbsScale float32
		for ib := 0; ib < 16; ib++ {
			scales[ib] = makeQX16(x[16*ib:], L[16*ib:])
			if as := abs32(scales[ib]); as > maxAbsScale {
				maxAbsScale, maxScale = as, scales[ib]
			}
		}
		if maxAbsScale < groupMaxEps {
			clear(y)
			continue
		}
		iscale := -128 / maxScale
		binary.LittleEndian.PutUint16(y[208:], F32ToF16(1/iscale))
		sc := y[192:208]
		for ib := 0; ib < 16; ib++ {
			sc[ib] = byte(int8(min(127, nearestInt(float32(iscale*scales[ib])))))
		}
		dd := F16ToF32(binary.LittleEndian.Uint16(y[208:]))
		for j := 0; j < 16; j++ {
			d := float32(dd * float32(int8(sc[j])))
			if d == 0 {
				continue
			}
			for ii := 0; ii < 16; ii++ {
				l := nearestInt(x[16*j+ii] / d)
				L[16*j+ii] = int8(max(-32, min(31, l)) + 32)
			}
		}
		ql, qh := y[0:128], y[128:192]
		for j := 0; j < KBlockSize; j += 128 {
			for l := 0; l < 32; l++ {
				q1, q2 := uint8(L[j+l]), uint8(L[j+l+32])
				q3, q4 := uint8(L[j+l+64]), uint8(L[j+l+96])
				ql[j/2+l] = q1&0xF | (q3&0xF)<<4
				ql[j/2+l+32] = q2&0xF | (q4&0xF)<<4
				qh[j/4+l] = q1>>4 | (q2>>4)<<2 | (q3>>4)<<4 | (q4>>4)<<6
			}
		}
	}
}

// DequantizeQ4_K decodes Q4_K super-blocks as ggml's dequantize_row_q4_K:
// element = float32(d*sc)*q - float32(dmin*m), each operation rounded to
// float32. len(dst) must be a multiple of 256 and len(src) len(dst)/256*144.
func DequantizeQ4_K(dst []float32, src []byte) {
	checkQuantK("DequantizeQ4_K", len(dst), len(src), Q4_KBlockBytes)
	for b := 0; b < len(dst)/KBlockSize; b++ {
		x := src[b*Q4_KBlockBytes : (b+1)*Q4_KBlockBytes : (b+1)*Q4_KBlockBytes]
		y := dst[b*KBlockSize : (b+1)*KBlockSize : (b+1)*KBlockSize]
		d := F16ToF32(binary.LittleEndian.Uint16(x[0:]))
		dmin := F16ToF32(binary.LittleEndian.Uint16(x[2:]))
		for s := 0; s < 8; s++ {
			sc, m := scaleMinK4(s, x[4:16])
			d1, m1 := float32(d*float32(sc)), float32(dmin*float32(m))
			q := x[16+32*(s/2) : 16+32*(s/2)+32]
			sh := 4 * uint(s&1)
			for i := 0; i < 32; i++ {
				y[32*s+i] = float32(d1*float32((q[i]>>sh)&15)) - m1
			}
		}
	}
}

// DequantizeQ5_K decodes Q5_K super-blocks as ggml's dequantize_row_q5_K
// (element = float32(d*sc)*q - float32(dmin*m)); len(src) =
// len(dst)/256*176.
func DequantizeQ5_K(dst []float32, src []byte) {
	checkQuantK("DequantizeQ5_K", len(dst), len(src), Q5_KBlockBytes)
	for b := 0; b < len(dst)/KBlockSize; b++ {
		x := src[b*Q5_KBlockBytes : (b+1)*Q5_KBlockBytes : (b+1)*Q5_KBlockBytes]
		y := dst[b*KBlockSize : (b+1)*KBlockSize : (b+1)*KBlockSize]
		d := F16ToF32(binary.LittleEndian.Uint16(x[0:]))
		dmin := F16ToF32(binary.LittleEndian.Uint16(x[2:]))
		qh := x[16:48]
		for s := 0; s < 8; s++ {
			sc, m := scaleMinK4(s, x[4:16])
			d1, m1 := float32(d*float32(sc)), float32(dmin*float32(m))
			q := x[48+32*(s/2) : 48+32*(s/2)+32]
			sh := 4 * uint(s&1)
			for i := 0; i < 32; i++ {
				v := (q[i]>>sh)&15 | ((qh[i]>>uint(s))&1)<<4
				y[32*s+i] = float32(d1*float32(v)) - m1
			}
		}
	}
}

// DequantizeQ6_K decodes Q6_K super-blocks as ggml's dequantize_row_q6_K:
// element = float32(d*sc)*(q-32). len(dst) must be a multiple of 256 and
// len(src) len(dst)/256*210.
func DequantizeQ6_K(dst []float32, src []byte) {
	checkQuantK("DequantizeQ6_K", len(dst), len(src), Q6_KBlockBytes)
	for b := 0; b < len(dst)/KBlockSize; b++ {
		x := src[b*Q6_KBlockBytes : (b+1)*Q6_KBlockBytes : (b+1)*Q6_KBlockBytes]
		y := dst[b*KBlockSize : (b+1)*KBlockSize : (b+1)*KBlockSize]
		d := F16ToF32(binary.LittleEndian.Uint16(x[208:]))
		for e := 0; e < KBlockSize; e++ {
			y[e] = float32(d*float32(int8(x[192+e/16]))) * float32(q6Value(x, e)-32)
		}
	}
}

// q6Value is the 6-bit quant (0..63) of element e of a Q6_K super-block.
func q6Value(x []byte, e int) int32 {
	h, r, i := e/128, e%128/32, e%32
	lo := x[64*h+32*(r%2)+i] >> (4 * uint(r/2)) & 15
	hi := x[128+32*h+i] >> (2 * uint(r)) & 3
	return int32(lo | hi<<4)
}

// QuantizeActivationsK quantizes one activation row of k float32 values (k
// = len(src), a multiple of 256) to Q8_K super-blocks in dst (k/256*292
// bytes), the form the K-quant kernels (MatQ4_K, MatQ5_K, MatQ6_K) multiply
// with. The bytes are ggml's quantize_row_q8_K_ref: max = the element of
// largest magnitude (the first one, with its sign), iscale = -127/max,
// qs[i] = min(127, nearest_int(iscale*x[i])) (round half to even), d =
// 1/iscale (float32), bsums the sums of 16 quants; a super-block of zeros
// is all zero. Every quant is in [-127, 127].
//
// Inputs the C reference leaves undefined get a defined result: NaN
// elements are ignored for max and quantize to 0, as does any element whose
// iscale*x is not finite (iscale overflows when max is tiny, or max is
// infinite); the bsums of an all-zero super-block are 0. On amd64 it is
// AVX2 assembly with exactly the same bytes.
func QuantizeActivationsK(dst []byte, src []float32) {
	checkQuantK("QuantizeActivationsK", len(src), len(dst), Q8_KBlockBytes)
	quantizeQ8K(dst, src)
}

func quantizeQ8KGo(dst []byte, src []float32) {
	for b := 0; b < len(src)/KBlockSize; b++ {
		x := src[b*KBlockSize : (b+1)*KBlockSize : (b+1)*KBlockSize]
		y := dst[b*Q8_KBlockBytes : (b+1)*Q8_KBlockBytes : (b+1)*Q8_KBlockBytes]
		var mx, amax float32
		for _, v := range x {
			if ax := abs32(v); ax > amax { // a NaN never compares greater
				amax, mx = ax, v
			}
		}
		if amax == 0 {
			clear(y)
			continue
		}
		iscale := -127 / mx
		q := y[4:260]
		for i, v := range x {
			r := float32(iscale * v)
			var l int32
			if r-r == 0 { // finite: |r| <= 127.00002, so l is in [-127, 127]
				l = min(127, nearestInt(r))
			}
			q[i] = byte(int8(l))
		}
		for j := 0; j < 16; j++ {
			var s int16
			for _, v := range q[16*j : 16*j+16] {
				s += int16(int8(v))
			}
			binary.LittleEndian.PutUint16(y[260+2*j:], uint16(s))
		}
		binary.LittleEndian.PutUint32(y, math.Float32bits(1/iscale))
	}
}

// DequantizeQ8_K decodes Q8_K super-blocks: element i is d*qs[i] (one
// float32 multiply). len(dst) must be a multiple of 256 and len(src)
// len(dst)/256*292.
func DequantizeQ8_K(dst []float32, src []byte) {
	checkQuantK("DequantizeQ8_K", len(dst), len(src), Q8_KBlockBytes)
	for b := 0; b < len(dst)/KBlockSize; b++ {
		x := src[b*Q8_KBlockBytes : (b+1)*Q8_KBlockBytes : (b+1)*Q8_KBlockBytes]
		d := math.Float32frombits(binary.LittleEndian.Uint32(x))
		for i := 0; i < KBlockSize; i++ {
			dst[b*KBlockSize+i] = d * float32(int8(x[4+i]))
		}
	}
}

// CheckScalesQ4_K reports the index of the first Q4_K (or Q5_K: the same
// header) super-block whose d or dmin is NaN or Inf, or -1: model loaders
// refuse such files, as with CheckScales. blockBytes is Q4_KBlockBytes or
// Q5_KBlockBytes; a trailing partial block is ignored.
func CheckScalesQ4_K(blockBytes int, data []byte) int {
	if blockBytes < 4 {
		panic(fmt.Sprintf("quant: CheckScalesQ4_K: block size %d", blockBytes))
	}
	for b, off := 0, 0; off+blockBytes <= len(data); b, off = b+1, off+blockBytes {
		if binary.LittleEndian.Uint16(data[off:])&0x7c00 == 0x7c00 || binary.LittleEndian.Uint16(data[off+2:])&0x7c00 == 0x7c00 {
			return b
		}
	}
	return -1
}

// CheckScalesQ6_K reports the index of the first Q6_K super-block whose d
// (its last two bytes) is NaN or Inf, or -1. The int8 sub-block scales are
// always finite.
func CheckScalesQ6_K(data []byte) int {
	for b, off := 0, 0; off+Q6_KBlockBytes <= len(data); b, off = b+1, off+Q6_KBlockBytes {
		if binary.LittleEndian.Uint16(data[off+208:])&0x7c00 == 0x7c00 {
			return b
		}
	}
	return -1
}
