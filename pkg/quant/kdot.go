package quant

import (
	"encoding/binary"
	"math"
)

// DotQ4_K is the dot product of one Q4_K weight row of k elements (k a
// multiple of 256; w holds at least k/256*144 bytes) with one Q8_K
// activation row a (from QuantizeActivationsK: at least k/256*292 bytes),
// in the package's K-quant float order. Unlike the Q8_0 kernels, any
// activation bytes are valid (-128 included; the bsums are used as given).
func DotQ4_K(k int, w, a []byte) float32 {
	nb := checkDotK("DotQ4_K", k, w, Q4_KBlockBytes, a)
	if nb == 0 {
		return 0
	}
	return dotK(kQ4, nb, w, a)
}

// DotQ5_K is DotQ4_K for a Q5_K weight row (at least k/256*176 bytes).
func DotQ5_K(k int, w, a []byte) float32 {
	nb := checkDotK("DotQ5_K", k, w, Q5_KBlockBytes, a)
	if nb == 0 {
		return 0
	}
	return dotK(kQ5, nb, w, a)
}

// DotQ6_K is DotQ4_K for a Q6_K weight row (at least k/256*210 bytes).
func DotQ6_K(k int, w, a []byte) float32 {
	nb := checkDotK("DotQ6_K", k, w, Q6_KBlockBytes, a)
	if nb == 0 {
		return 0
	}
	return dotK(kQ6, nb, w, a)
}

// MatQ4_K is MatQ8_0 for Q4_K weights and Q8_K activations: for r in
// [0, rows) and i in [0, n),
//
//	out[i*ldo + r] = DotQ4_K(k, w[r*rowBytes:], a[i*lda:])
//
// with rowBytes = k/256*144 and k a multiple of 256. Each element is
// bit-identical to DotQ4_K of the same rows, whatever n, the rows covered
// and the kernel family. On amd64 each weight row is read once for up to 4
// activation rows (one super-block's nibbles and scales unpacked once, in
// registers); with more than 4 activation rows the weights go in chunks of
// about 64 KiB (which stay in L2) per group of 4. Slice lengths are checked
// before any assembly runs; a violation panics.
func MatQ4_K(k, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
	nb := checkMatK("MatQ4_K", k, rows, w, Q4_KBlockBytes, n, a, lda, out, ldo)
	if nb < 0 {
		return
	}
	matK(kQ4, nb, rows, w, n, a, lda, out, ldo)
}

// MatQ5_K is MatQ4_K for Q5_K weights (rowBytes = k/256*176).
func MatQ5_K(k, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
	nb := checkMatK("MatQ5_K", k, rows, w, Q5_KBlockBytes, n, a, lda, out, ldo)
	if nb < 0 {
		return
	}
	matK(kQ5, nb, rows, w, n, a, lda, out, ldo)
}

// MatQ6_K is MatQ4_K for Q6_K weights (rowBytes = k/256*210).
func MatQ6_K(k, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
	nb := checkMatK("MatQ6_K", k, rows, w, Q6_KBlockBytes, n, a, lda, out, ldo)
	if nb < 0 {
		return
	}
	matK(kQ6, nb, rows, w, n, a, lda, out, ldo)
}

// kType selects a K-quant weight format in the internal drivers.
type kType int

const (
	kQ4 kType = iota
	kQ5
	kQ6
)

// blockBytes is the size of one super-block of t.
func (t kType) blockBytes() int {
	return [...]int{kQ4: Q4_KBlockBytes, kQ5: Q5_KBlockBytes, kQ6: Q6_KBlockBytes}[t]
}

func checkDotK(name string, k int, w []byte, wbb int, a []byte) int {
	return checkDotBlocks(name, k, KBlockSize, w, wbb, a, Q8_KBlockBytes)
}

// checkMatK validates a K-quant Mat call and returns the number of
// super-blocks per row, or -1 when there is nothing to do (after zeroing
// the outputs when k is 0).
func checkMatK(name string, k, rows int, w []byte, wbb int, n int, a []byte, lda int, out []float32, ldo int) int {
	return checkMatBlocks(name, k, KBlockSize, rows, w, wbb, n, a, Q8_KBlockBytes, lda, out, ldo)
}

// The pure-Go K-quant family: the reference for the K-quant float order of
// the package comment, which the assembly matches bit for bit. Integer sums
// are exact whatever order they are added in; the float operations are
// written with explicit float32 conversions so that none is fused.

// q8kScale is the float32 d of a Q8_K super-block.
func q8kScale(y *[Q8_KBlockBytes]byte) float32 {
	return math.Float32frombits(binary.LittleEndian.Uint32(y[0:4]))
}

// kFinish adds one super-block's lanes to the accumulators:
// acc[j] += float32(float32(lane[j])*d) - float32(float32(mlane[j])*dm).
func kFinish(acc *[8]float32, lane, mlane *[8]int32, d, dm float32) {
	for j := range acc {
		acc[j] += float32(float32(float32(lane[j])*d) - float32(float32(mlane[j])*dm))
	}
}

// k45Block computes one Q4_K or Q5_K super-block's lanes: lane[j] is the
// sum over sub-blocks s of sc_s times the products of elements 4j..4j+3 of
// the sub-block; mlane[s] is m_s times the sum of the sub-block's
// activations (bsums[2s] + bsums[2s+1]). qh is nil for Q4_K.
func k45Block(scales, qs, qh []byte, y *[Q8_KBlockBytes]byte, lane, mlane *[8]int32) {
	*lane = [8]int32{}
	qs = qs[:128]
	for s := 0; s < 8; s++ {
		sc, m := scaleMinK4(s, scales)
		q := qs[32*(s/2) : 32*(s/2)+32]
		act := y[4+32*s : 4+32*s+32]
		sh := 4 * uint(s&1)
		var l8 [8]int32
		if qh == nil {
			for i := 0; i < 32; i++ {
				l8[i>>2] += int32((q[i]>>sh)&15) * int32(int8(act[i]))
			}
		} else {
			h := qh[:32]
			for i := 0; i < 32; i++ {
				v := (q[i]>>sh)&15 | ((h[i]>>uint(s))&1)<<4
				l8[i>>2] += int32(v) * int32(int8(act[i]))
			}
		}
		for j := range lane {
			lane[j] += int32(sc) * l8[j]
		}
		b0 := int32(int16(binary.LittleEndian.Uint16(y[260+4*s:])))
		b1 := int32(int16(binary.LittleEndian.Uint16(y[262+4*s:])))
		mlane[s] = int32(m) * (b0 + b1)
	}
}

func dotQ4KGo(nb int, w, a []byte) float32 {
	var acc [8]float32
	var lane, mlane [8]int32
	w, a = w[:nb*Q4_KBlockBytes], a[:nb*Q8_KBlockBytes]
	for b := 0; b < nb; b++ {
		x := (*[Q4_KBlockBytes]byte)(w[b*Q4_KBlockBytes:])
		y := (*[Q8_KBlockBytes]byte)(a[b*Q8_KBlockBytes:])
		k45Block(x[4:16], x[16:144], nil, y, &lane, &mlane)
		da := q8kScale(y)
		d := da * F16ToF32(uint16(x[0])|uint16(x[1])<<8)
		dm := da * F16ToF32(uint16(x[2])|uint16(x[3])<<8)
		kFinish(&acc, &lane, &mlane, d, dm)
	}
	return reduce8(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7])
}

func dotQ5KGo(nb int, w, a []byte) float32 {
	var acc [8]float32
	var lane, mlane [8]int32
	w, a = w[:nb*Q5_KBlockBytes], a[:nb*Q8_KBlockBytes]
	for b := 0; b < nb; b++ {
		x := (*[Q5_KBlockBytes]byte)(w[b*Q5_KBlockBytes:])
		y := (*[Q8_KBlockBytes]byte)(a[b*Q8_KBlockBytes:])
		k45Block(x[4:16], x[48:176], x[16:48], y, &lane, &mlane)
		da := q8kScale(y)
		d := da * F16ToF32(uint16(x[0])|uint16(x[1])<<8)
		dm := da * F16ToF32(uint16(x[2])|uint16(x[3])<<8)
		kFinish(&acc, &lane, &mlane, d, dm)
	}
	return reduce8(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7])
}

// dotQ6KGo: lane[j] is the sum over the 8 groups g of 32 elements of
// scales[2g + j/4] times the products (q-32)*a of elements 4j..4j+3 of the
// group (the group's first 16 elements have scale 2g, the others 2g+1).
func dotQ6KGo(nb int, w, a []byte) float32 {
	var acc [8]float32
	w, a = w[:nb*Q6_KBlockBytes], a[:nb*Q8_KBlockBytes]
	for b := 0; b < nb; b++ {
		x := (*[Q6_KBlockBytes]byte)(w[b*Q6_KBlockBytes:])
		y := (*[Q8_KBlockBytes]byte)(a[b*Q8_KBlockBytes:])
		var lane [8]int32
		for g := 0; g < 8; g++ {
			h, r := g/4, g%4
			ql := x[64*h+32*(r%2) : 64*h+32*(r%2)+32]
			qh := x[128+32*h : 128+32*h+32]
			act := y[4+32*g : 4+32*g+32]
			lsh, hsh := 4*uint(r/2), 2*uint(r)
			var l8 [8]int32
			for i := 0; i < 32; i++ {
				q := int32((ql[i]>>lsh)&15|((qh[i]>>hsh)&3)<<4) - 32
				l8[i>>2] += q * int32(int8(act[i]))
			}
			s0, s1 := int32(int8(x[192+2*g])), int32(int8(x[193+2*g]))
			for j := 0; j < 4; j++ {
				lane[j] += s0 * l8[j]
				lane[j+4] += s1 * l8[j+4]
			}
		}
		d := q8kScale(y) * F16ToF32(uint16(x[208])|uint16(x[209])<<8)
		for j := range acc {
			acc[j] += float32(float32(lane[j]) * d)
		}
	}
	return reduce8(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7])
}

// dotKGoFuncs are the pure-Go dot products by kType.
var dotKGoFuncs = [...]func(nb int, w, a []byte) float32{kQ4: dotQ4KGo, kQ5: dotQ5KGo, kQ6: dotQ6KGo}

func matKGo(t kType, nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
	rb := nb * t.blockBytes()
	dot := dotKGoFuncs[t]
	for r := 0; r < rows; r++ {
		wr := w[r*rb : (r+1)*rb]
		for i := 0; i < n; i++ {
			out[i*ldo+r] = dot(nb, wr, a[i*lda:])
		}
	}
}
