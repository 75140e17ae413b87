package quant

import "fmt"

// QuantizeActivations quantizes one activation row of k float32 values
// (k = len(src), a multiple of 32) to Q8_0 blocks in dst (k/32*34 bytes),
// the form the Dot and Mat kernels multiply with. The bytes are exactly those
// of QuantizeQ8_0 (ggml's reference quantizer, round half away from zero), on
// every architecture and in both kernel families, so activations quantized
// anywhere can be used anywhere. Every quant is in [-127, 127].
//
// It runs for every activation row of every matrix product, so on amd64 it
// is AVX2 assembly (about 2 instructions per element).
//
// Activations whose block scale amax/127 exceeds the float16 range (|x| above
// about 8.3e6) get an Inf scale and make the products Inf or NaN, as in
// llama.cpp.
func QuantizeActivations(dst []byte, src []float32) {
	checkQuant("QuantizeActivations", len(src), len(dst), Q8_0BlockBytes)
	quantizeQ8(dst, src)
}

// DotQ8_0 is the dot product of one Q8_0 weight row of k elements (k a
// multiple of 32; w holds at least k/32*34 bytes) with one Q8_0 activation
// row a (from QuantizeActivations: at least k/32*34 bytes), in the package's
// float order.
//
// The activation quants must be in [-127, 127] (the quantizers guarantee
// it): the AVX2 kernel multiplies |w| by a with the sign of w, and a -128
// activation facing a negative weight would wrap. Weights may be -128.
func DotQ8_0(k int, w, a []byte) float32 {
	nb := checkDot("DotQ8_0", k, w, Q8_0BlockBytes, a)
	if nb == 0 {
		return 0
	}
	return dotQ8(nb, w, a)
}

// DotQ4_0 is DotQ8_0 for a Q4_0 weight row (at least k/32*18 bytes).
func DotQ4_0(k int, w, a []byte) float32 {
	nb := checkDot("DotQ4_0", k, w, Q4_0BlockBytes, a)
	if nb == 0 {
		return 0
	}
	return dotQ4(nb, w, a)
}

// MatQ8_0 is the engine's hot path: for r in [0, rows) and i in [0, n),
//
//	out[i*ldo + r] = DotQ8_0(k, w[r*rowBytes:], a[i*lda:])
//
// with rowBytes = k/32*34: rows consecutive Q8_0 weight rows times n Q8_0
// activation rows (lda bytes apart) into n output rows (ldo floats apart).
//
// Each element is bit-identical to DotQ8_0 of the same rows. On amd64 the
// weights are walked in register tiles so that every weight block is loaded
// once for up to 4 activation rows (AVX2: 4x2 tiles; 1x4, 2x4 and 3x3 for the
// other counts; with AVX-512 VNNI, kernels512_amd64.s: two (weight row,
// activation row) pairs per ZMM register, 1x8 for one activation row, 2x4
// and 4x4 for more); with more than 4 activation rows the weights are
// processed in chunks of about 64 KiB (which stay in L2) per group of 4.
// Slice lengths are checked before any assembly runs; a violation is a
// programming error and panics.
func MatQ8_0(k, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
	nb := checkMat("MatQ8_0", k, rows, w, Q8_0BlockBytes, n, a, lda, out, ldo)
	if nb < 0 {
		return
	}
	matQ8(nb, rows, w, n, a, lda, out, ldo)
}

// MatQ4_0 is MatQ8_0 for Q4_0 weights (rowBytes = k/32*18).
func MatQ4_0(k, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
	nb := checkMat("MatQ4_0", k, rows, w, Q4_0BlockBytes, n, a, lda, out, ldo)
	if nb < 0 {
		return
	}
	matQ4(nb, rows, w, n, a, lda, out, ldo)
}

func checkDot(name string, k int, w []byte, wbb int, a []byte) int {
	return checkDotBlocks(name, k, BlockSize, w, wbb, a, Q8_0BlockBytes)
}

// checkMat validates a Mat call and returns the number of blocks per row, or
// -1 when there is nothing to do (after zeroing the outputs when k is 0).
func checkMat(name string, k, rows int, w []byte, wbb int, n int, a []byte, lda int, out []float32, ldo int) int {
	return checkMatBlocks(name, k, BlockSize, rows, w, wbb, n, a, Q8_0BlockBytes, lda, out, ldo)
}

// checkDotBlocks validates a Dot call on blocks of bs elements (wbb weight
// bytes, abb activation bytes each) and returns the blocks per row.
func checkDotBlocks(name string, k, bs int, w []byte, wbb int, a []byte, abb int) int {
	if k < 0 || k%bs != 0 {
		panic(fmt.Sprintf("quant: %s: k=%d is not a non-negative multiple of %d", name, k, bs))
	}
	nb := k / bs
	if len(w) < nb*wbb {
		panic(fmt.Sprintf("quant: %s: weight row has %d bytes, want %d", name, len(w), nb*wbb))
	}
	if len(a) < nb*abb {
		panic(fmt.Sprintf("quant: %s: activation row has %d bytes, want %d", name, len(a), nb*abb))
	}
	return nb
}

// checkMatBlocks validates a Mat call on blocks of bs elements (wbb weight
// bytes, abb activation bytes each) and returns the blocks per row, or -1
// when there is nothing to do (after zeroing the outputs when k is 0).
func checkMatBlocks(name string, k, bs, rows int, w []byte, wbb int, n int, a []byte, abb, lda int, out []float32, ldo int) int {
	if k < 0 || k%bs != 0 {
		panic(fmt.Sprintf("quant: %s: k=%d is not a non-negative multiple of %d", name, k, bs))
	}
	if rows < 0 || n < 0 {
		panic(fmt.Sprintf("quant: %s: rows=%d n=%d", name, rows, n))
	}
	if rows == 0 || n == 0 {
		return -1
	}
	nb := k / bs
	rb, ab := nb*wbb, nb*abb
	if len(w) < rows*rb {
		panic(fmt.Sprintf("quant: %s: %d weight bytes for %d rows of %d", name, len(w), rows, rb))
	}
	if n > 1 && lda < ab {
		panic(fmt.Sprintf("quant: %s: lda=%d is less than an activation row (%d bytes)", name, lda, ab))
	}
	if len(a) < (n-1)*lda+ab {
		panic(fmt.Sprintf("quant: %s: %d activation bytes for %d rows of %d (lda %d)", name, len(a), n, ab, lda))
	}
	if n > 1 && ldo < rows {
		panic(fmt.Sprintf("quant: %s: ldo=%d is less than rows=%d", name, ldo, rows))
	}
	if len(out) < (n-1)*ldo+rows {
		panic(fmt.Sprintf("quant: %s: %d outputs for %d rows of %d (ldo %d)", name, len(out), n, rows, ldo))
	}
	if nb == 0 {
		for i := 0; i < n; i++ {
			clear(out[i*ldo : i*ldo+rows])
		}
		return -1
	}
	return nb
}

// The pure-Go family. It is the reference for the float order described in
// the package comment: the assembly must match it bit for bit. The explicit
// float32 conversions around each product forbid the compiler from fusing
// the multiply with the add (Go allows fusion otherwise, and does it on
// arm64 and with GOAMD64=v3).

// reduce8 is the fixed final reduction of the 8 lane accumulators.
func reduce8(l0, l1, l2, l3, l4, l5, l6, l7 float32) float32 {
	a0, a1, a2, a3 := l0+l4, l1+l5, l2+l6, l3+l7
	return (a0 + a2) + (a1 + a3)
}

// q8lane is lane j of a Q8_0 weight block x and activation block y: the
// exact integer dot product of elements 4j..4j+3. Blocks are array pointers
// and o = 2+4j a constant after inlining, so there are no bounds checks.
func q8lane(x, y *[Q8_0BlockBytes]byte, o int) int32 {
	return int32(int8(x[o]))*int32(int8(y[o])) + int32(int8(x[o+1]))*int32(int8(y[o+1])) +
		int32(int8(x[o+2]))*int32(int8(y[o+2])) + int32(int8(x[o+3]))*int32(int8(y[o+3]))
}

func dotQ8Go(nb int, w, a []byte) float32 {
	var l0, l1, l2, l3, l4, l5, l6, l7 float32
	w, a = w[:nb*Q8_0BlockBytes], a[:nb*Q8_0BlockBytes]
	for off := 0; off+Q8_0BlockBytes <= len(w); off += Q8_0BlockBytes {
		x := (*[Q8_0BlockBytes]byte)(w[off:])
		y := (*[Q8_0BlockBytes]byte)(a[off:])
		s := F16ToF32(uint16(x[0])|uint16(x[1])<<8) * F16ToF32(uint16(y[0])|uint16(y[1])<<8)
		l0 += float32(float32(q8lane(x, y, 2)) * s)
		l1 += float32(float32(q8lane(x, y, 6)) * s)
		l2 += float32(float32(q8lane(x, y, 10)) * s)
		l3 += float32(float32(q8lane(x, y, 14)) * s)
		l4 += float32(float32(q8lane(x, y, 18)) * s)
		l5 += float32(float32(q8lane(x, y, 22)) * s)
		l6 += float32(float32(q8lane(x, y, 26)) * s)
		l7 += float32(float32(q8lane(x, y, 30)) * s)
	}
	return reduce8(l0, l1, l2, l3, l4, l5, l6, l7)
}

// dotQ4Go: element j < 16 is the low nibble of qs[j] minus 8, element j+16
// its high nibble minus 8, so lanes 0-3 use the low nibbles of bytes 0-15
// and lanes 4-7 their high nibbles. The lanes are written out so that every
// index is a constant into an array (no bounds checks, no calls).
func dotQ4Go(nb int, w, a []byte) float32 {
	var l0, l1, l2, l3, l4, l5, l6, l7 float32
	w, a = w[:nb*Q4_0BlockBytes], a[:nb*Q8_0BlockBytes]
	for b := 0; b < nb; b++ {
		x := (*[Q4_0BlockBytes]byte)(w[b*Q4_0BlockBytes:])
		y := (*[Q8_0BlockBytes]byte)(a[b*Q8_0BlockBytes:])
		s := F16ToF32(uint16(x[0])|uint16(x[1])<<8) * F16ToF32(uint16(y[0])|uint16(y[1])<<8)
		l0 += float32(float32((int32(x[2]&15)-8)*int32(int8(y[2]))+(int32(x[3]&15)-8)*int32(int8(y[3]))+
			(int32(x[4]&15)-8)*int32(int8(y[4]))+(int32(x[5]&15)-8)*int32(int8(y[5]))) * s)
		l1 += float32(float32((int32(x[6]&15)-8)*int32(int8(y[6]))+(int32(x[7]&15)-8)*int32(int8(y[7]))+
			(int32(x[8]&15)-8)*int32(int8(y[8]))+(int32(x[9]&15)-8)*int32(int8(y[9]))) * s)
		l2 += float32(float32((int32(x[10]&15)-8)*int32(int8(y[10]))+(int32(x[11]&15)-8)*int32(int8(y[11]))+
			(int32(x[12]&15)-8)*int32(int8(y[12]))+(int32(x[13]&15)-8)*int32(int8(y[13]))) * s)
		l3 += float32(float32((int32(x[14]&15)-8)*int32(int8(y[14]))+(int32(x[15]&15)-8)*int32(int8(y[15]))+
			(int32(x[16]&15)-8)*int32(int8(y[16]))+(int32(x[17]&15)-8)*int32(int8(y[17]))) * s)
		l4 += float32(float32((int32(x[2]>>4)-8)*int32(int8(y[18]))+(int32(x[3]>>4)-8)*int32(int8(y[19]))+
			(int32(x[4]>>4)-8)*int32(int8(y[20]))+(int32(x[5]>>4)-8)*int32(int8(y[21]))) * s)
		l5 += float32(float32((int32(x[6]>>4)-8)*int32(int8(y[22]))+(int32(x[7]>>4)-8)*int32(int8(y[23]))+
			(int32(x[8]>>4)-8)*int32(int8(y[24]))+(int32(x[9]>>4)-8)*int32(int8(y[25]))) * s)
		l6 += float32(float32((int32(x[10]>>4)-8)*int32(int8(y[26]))+(int32(x[11]>>4)-8)*int32(int8(y[27]))+
			(int32(x[12]>>4)-8)*int32(int8(y[28]))+(int32(x[13]>>4)-8)*int32(int8(y[29]))) * s)
		l7 += float32(float32((int32(x[14]>>4)-8)*int32(int8(y[30]))+(int32(x[15]>>4)-8)*int32(int8(y[31]))+
			(int32(x[16]>>4)-8)*int32(int8(y[32]))+(int32(x[17]>>4)-8)*int32(int8(y[33]))) * s)
	}
	return reduce8(l0, l1, l2, l3, l4, l5, l6, l7)
}

func matQ8Go(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
	rb := nb * Q8_0BlockBytes
	for r := 0; r < rows; r++ {
		wr := w[r*rb : (r+1)*rb]
		for i := 0; i < n; i++ {
			out[i*ldo+r] = dotQ8Go(nb, wr, a[i*lda:])
		}
	}
}

func matQ4Go(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
	rb := nb * Q4_0BlockBytes
	for r := 0; r < rows; r++ {
		wr := w[r*rb : (r+1)*rb]
		for i := 0; i < n; i++ {
			out[i*ldo+r] = dotQ4Go(nb, wr, a[i*lda:])
		}
	}
}
