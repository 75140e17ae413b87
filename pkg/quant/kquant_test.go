package quant

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"testing"
)

// Tolerances of the K-quant kernels (stated here, asserted below).
//
// Against the exact (float64) value of the package's integer formula, the
// integer lanes are exact, so the error is float32 rounding in the K-quant
// float order: per super-block one rounding of d = da*dw (and dm), one of
// each lane product, one of the subtraction (Q4_K/Q5_K), nb-1 sequential
// additions per lane and 3 levels of the final tree:
//
//	|got - exact| <= (nb+6) * 2^-24 * sum over super-blocks and lanes of (|lane*d| + |mlane*dm|)
//
// (kBound; at k = 4096, nb = 16, that is 1.3e-6 relative). We also assert
// the empirical 5e-7 on the random data of TestKKernelAccuracy.
//
// Against the original float activations and the dequantized weights
// (DequantizeQ4_K etc., float32): each Q8_K activation is within
// |d_a|*(1/2 + 2^-20) of the original (d_a = 1/iscale is a float32, so only
// nearest_int's half step and a few float32 roundings), and each float32
// dequantized weight within 2^-22*(|d*sc*q| + |dmin*m|) of the exact one;
// with the kernel bound on top (kActBound).
const kEmpiricalTol = 5e-7

// testKElems decodes one weight super-block independently of the code under
// test (ggml's dequantize loops and its AVX2 kernel's utmp scale unpacking):
// q[e] is the integer the kernels multiply (Q4_K/Q5_K: q in [0, 31]; Q6_K:
// q-32), sc[e] its scale, m[s] the min of sub-block s (Q4_K/Q5_K), dw and
// dmin the float16 scales as float64.
func testKElems(t kType, x []byte) (q, sc [256]int64, m [8]int64, dw, dmin float64) {
	le32 := func(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }
	switch t {
	case kQ4, kQ5:
		dw, dmin = f16Value(binary.LittleEndian.Uint16(x)), f16Value(binary.LittleEndian.Uint16(x[2:]))
		const k1, k2, k3 = 0x3f3f3f3f, 0x0f0f0f0f, 0x03030303
		u0, u1, u2 := le32(x[4:]), le32(x[8:]), le32(x[12:])
		u := [4]uint32{u0 & k1, u2&k2 | (u0>>6&k3)<<4, u1 & k1, u2>>4&k2 | (u1>>6&k3)<<4}
		var b [16]byte
		for i, v := range u {
			binary.LittleEndian.PutUint32(b[4*i:], v)
		}
		qs, qh := x[16:144], []byte(nil)
		if t == kQ5 {
			qs, qh = x[48:176], x[16:48]
		}
		for j := 0; j < 4; j++ { // 64 elements per 32 quant bytes
			for l := 0; l < 32; l++ {
				lo, hi := int64(qs[32*j+l]&15), int64(qs[32*j+l]>>4)
				if qh != nil {
					lo += 16 * int64(qh[l]>>(2*j)&1)
					hi += 16 * int64(qh[l]>>(2*j+1)&1)
				}
				q[64*j+l], q[64*j+32+l] = lo, hi
				sc[64*j+l], sc[64*j+32+l] = int64(b[2*j]), int64(b[2*j+1])
			}
		}
		for s := 0; s < 8; s++ {
			m[s] = int64(b[8+s])
		}
	case kQ6:
		dw = f16Value(binary.LittleEndian.Uint16(x[208:]))
		ql, qh, scales := x[0:128], x[128:192], x[192:208]
		for n := 0; n < 256; n += 128 {
			for l := 0; l < 32; l++ {
				h := qh[n/4+l]
				q[n+l] = int64(ql[n/2+l]&15|(h&3)<<4) - 32
				q[n+l+32] = int64(ql[n/2+l+32]&15|(h>>2&3)<<4) - 32
				q[n+l+64] = int64(ql[n/2+l]>>4|(h>>4&3)<<4) - 32
				q[n+l+96] = int64(ql[n/2+l+32]>>4|(h>>6&3)<<4) - 32
			}
		}
		for e := range sc {
			sc[e] = int64(int8(scales[e/16]))
		}
	}
	return
}

// refDotK returns the exact (float64) value of the kernels' formula for a
// weight row and a Q8_K activation row, plus the sum of |terms| that the
// kernel bound scales with.
func refDotK(t kType, nb int, w, a []byte) (exact, abs float64) {
	bb := t.blockBytes()
	for b := 0; b < nb; b++ {
		x, y := w[b*bb:], a[b*Q8_KBlockBytes:]
		q, sc, m, dw, dmin := testKElems(t, x)
		da := float64(math.Float32frombits(binary.LittleEndian.Uint32(y)))
		var lane, mlane [8]int64
		for e := 0; e < 256; e++ {
			lane[e%32/4] += sc[e] * q[e] * int64(int8(y[4+e]))
		}
		if t != kQ6 {
			for s := 0; s < 8; s++ {
				mlane[s] = m[s] * (int64(int16(binary.LittleEndian.Uint16(y[260+4*s:]))) + int64(int16(binary.LittleEndian.Uint16(y[262+4*s:]))))
			}
		}
		for j := 0; j < 8; j++ {
			exact += float64(lane[j])*da*dw - float64(mlane[j])*da*dmin
			abs += math.Abs(float64(lane[j])*da*dw) + math.Abs(float64(mlane[j])*da*dmin)
		}
	}
	return exact, abs
}

func kBound(nb int, abs float64) float64 { return float64(nb+6) * 0x1p-24 * abs }

// kWeights returns the exact weight values of a row (float64) and the
// bound on each dequantized float32 weight's rounding.
func kWeights(t kType, nb int, w []byte) (exact, round []float64) {
	bb := t.blockBytes()
	for b := 0; b < nb; b++ {
		q, sc, m, dw, dmin := testKElems(t, w[b*bb:])
		for e := 0; e < 256; e++ {
			v, mv := dw*float64(sc[e])*float64(q[e]), 0.0
			if t != kQ6 {
				mv = dmin * float64(m[e/32])
			}
			exact = append(exact, v-mv)
			round = append(round, 0x1p-22*(math.Abs(v)+math.Abs(mv)))
		}
	}
	return
}

// kActBound bounds |sum w_i*(x_i - deq(a)_i)| plus the dequantization
// rounding of the weights, for the activations x and their Q8_K row a.
func kActBound(wexact, wround []float64, x []float32, a []byte) float64 {
	var bound float64
	for b := 0; b < len(x)/256; b++ {
		da := math.Abs(float64(math.Float32frombits(binary.LittleEndian.Uint32(a[b*Q8_KBlockBytes:]))))
		e := da * (0.5 + 0x1p-20)
		for i := b * 256; i < b*256+256; i++ {
			bound += math.Abs(wexact[i])*e + math.Abs(float64(x[i]))*wround[i]
		}
	}
	return bound
}

type kFamily struct {
	name     string
	t        kType
	quantize func(dst []byte, src []float32)
	deq      func(dst []float32, src []byte)
	mat      func(k, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int)
	dot      func(k int, w, a []byte) float32
}

var kFamilies = []kFamily{
	{"Q4_K", kQ4, QuantizeQ4_K, DequantizeQ4_K, MatQ4_K, DotQ4_K},
	{"Q5_K", kQ5, QuantizeQ5_K, DequantizeQ5_K, MatQ5_K, DotQ5_K},
	{"Q6_K", kQ6, QuantizeQ6_K, DequantizeQ6_K, MatQ6_K, DotQ6_K},
}

// newKProblem is newProblem for a K-quant family: quantized random weights
// and Q8_K activations, with garbage padding (lda > row bytes, ldo > rows).
func newKProblem(rng *rand.Rand, f kFamily, k, rows, n int) *problem {
	nb, bb := k/256, f.t.blockBytes()
	p := &problem{k: k, rows: rows, n: n, lda: nb*Q8_KBlockBytes + Q8_KBlockBytes*rng.IntN(2) + 4*rng.IntN(2), ldo: rows + rng.IntN(3)}
	p.w = make([]byte, rows*nb*bb)
	for r := 0; r < rows; r++ {
		f.quantize(p.w[r*nb*bb:(r+1)*nb*bb], randRow(rng, k))
	}
	p.a = make([]byte, (n-1)*p.lda+nb*Q8_KBlockBytes)
	for i := range p.a {
		p.a[i] = byte(rng.Uint32())
	}
	p.x = make([]float32, n*k)
	for i := 0; i < n; i++ {
		copy(p.x[i*k:], randRow(rng, k))
		QuantizeActivationsK(p.a[i*p.lda:i*p.lda+nb*Q8_KBlockBytes], p.x[i*k:(i+1)*k])
	}
	return p
}

// runK calls a K driver (nb = k/256) and checks that it wrote exactly the
// n x rows outputs.
func (p *problem) runK(t *testing.T, mat func(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int)) []float32 {
	t.Helper()
	sentinel := float32(-12345.678)
	out := make([]float32, (p.n-1)*p.ldo+p.rows+5)
	for i := range out {
		out[i] = sentinel
	}
	mat(p.k/256, p.rows, p.w, p.n, p.a, p.lda, out, p.ldo)
	for idx, v := range out {
		i, r := idx/p.ldo, idx%p.ldo
		inside := i < p.n && r < p.rows
		if inside == (v == sentinel) {
			t.Fatalf("k=%d rows=%d n=%d: out[%d] (row %d col %d) = %v: written outside, or not written", p.k, p.rows, p.n, idx, i, r, v)
		}
	}
	return out
}

func (f kFamily) public() func(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
	return func(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
		f.mat(nb*256, rows, w, n, a, lda, out, ldo)
	}
}

func (f kFamily) goMat() func(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
	return func(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
		matKGo(f.t, nb, rows, w, n, a, lda, out, ldo)
	}
}

func (f kFamily) asmMat() func(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
	return func(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
		matKAsm(f.t, nb, rows, w, n, a, lda, out, ldo)
	}
}

var kShapes = func() (s [][3]int) {
	for _, k := range []int{256, 512, 768} {
		for _, rows := range []int{1, 2, 3, 4, 5, 7, 13} {
			for n := 1; n <= 9; n++ {
				s = append(s, [3]int{k, rows, n})
			}
		}
	}
	for n := 1; n <= 9; n++ {
		s = append(s, [3]int{4096, 3, n}, [3]int{4096, 40, n}) // 40 rows: several L2 chunks for n > 4
	}
	return s
}()

// TestKKernelAccuracy checks every shape against the float64 references
// with the tolerances stated at the top of this file, and that the pure-Go
// and assembly families and the Dot functions agree bit for bit.
func TestKKernelAccuracy(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, f := range kFamilies {
		var worst, worstAct float64
		for _, sh := range kShapes {
			k, rows, n := sh[0], sh[1], sh[2]
			nb, bb := k/256, f.t.blockBytes()
			p := newKProblem(rng, f, k, rows, n)
			got := p.runK(t, f.public())
			goOut := p.runK(t, f.goMat())
			var asmOut []float32
			if haveAsm {
				asmOut = p.runK(t, f.asmMat())
			}
			wd := make([]float32, k)
			for r := 0; r < rows; r++ {
				wr := p.w[r*nb*bb : (r+1)*nb*bb]
				f.deq(wd, wr)
				wexact, wround := kWeights(f.t, nb, wr)
				for i := 0; i < n; i++ {
					ar := p.a[i*p.lda:]
					v := got[i*p.ldo+r]
					exact, abs := refDotK(f.t, nb, wr, ar)
					err := math.Abs(float64(v) - exact)
					if err > kBound(nb, abs) || err > kEmpiricalTol*abs {
						t.Fatalf("%s k=%d rows=%d n=%d [%d,%d]: %v, exact %v: error %g, sum|terms| %g", f.name, k, rows, n, i, r, v, exact, err, abs)
					}
					if abs > 0 {
						worst = math.Max(worst, err/abs)
					}
					x := p.x[i*k : (i+1)*k]
					var orig, wnorm, xnorm float64
					for e := range wd {
						orig += float64(wd[e]) * float64(x[e])
						wnorm += float64(wd[e]) * float64(wd[e])
						xnorm += float64(x[e]) * float64(x[e])
					}
					errAct := math.Abs(float64(v) - orig)
					if lim := kActBound(wexact, wround, x, ar) + kBound(nb, abs); errAct > lim {
						t.Fatalf("%s k=%d [%d,%d]: %v vs float activations %v: error %g > %g", f.name, k, i, r, v, orig, errAct, lim)
					}
					if wnorm > 0 && xnorm > 0 {
						worstAct = math.Max(worstAct, errAct/math.Sqrt(wnorm*xnorm))
					}
					want := math.Float32bits(v)
					if g := math.Float32bits(goOut[i*p.ldo+r]); g != want {
						t.Fatalf("%s k=%d rows=%d n=%d [%d,%d]: pure Go %#08x, public %#08x", f.name, k, rows, n, i, r, g, want)
					}
					if haveAsm {
						if g := math.Float32bits(asmOut[i*p.ldo+r]); g != want {
							t.Fatalf("%s k=%d rows=%d n=%d [%d,%d]: assembly %#08x, pure Go %#08x", f.name, k, rows, n, i, r, g, math.Float32bits(goOut[i*p.ldo+r]))
						}
						if g := math.Float32bits(dotKAsm(f.t, nb, wr, ar)); g != want {
							t.Fatalf("%s k=%d [%d,%d]: assembly dot %#08x, mat %#08x", f.name, k, i, r, g, want)
						}
					}
					if g := math.Float32bits(f.dot(k, wr, ar)); g != want {
						t.Fatalf("%s k=%d [%d,%d]: Dot %#08x, Mat %#08x", f.name, k, i, r, g, want)
					}
					if g := math.Float32bits(dotKGoFuncs[f.t](nb, wr, ar)); g != want {
						t.Fatalf("%s k=%d [%d,%d]: pure-Go dot %#08x, Mat %#08x", f.name, k, i, r, g, want)
					}
				}
			}
		}
		t.Logf("%s: worst error vs exact formula %.3g * sum|terms|; vs float activations %.3g * |w||x|", f.name, worst, worstAct)
	}
}

// randKBlocks fills nb raw super-blocks of type t (act: Q8_K) with
// adversarial contents: float16 scales from the extremes (0, subnormals,
// +-65504) and random finite values, quants over their whole range
// (activations -128..127, bsums random or consistent), all-zero and
// saturated blocks.
func randKBlocks(rng *rand.Rand, dst []byte, nb int, t kType, act bool) {
	scales := []uint16{0, 0x8000, 0x0001, 0x03ff, 0x0400, 0x3c00, 0x7bff, 0xfbff, 0x7bfe, 0x7000}
	f16 := func() uint16 {
		if rng.IntN(3) == 0 {
			return scales[rng.IntN(len(scales))]
		}
		return uint16(rng.Uint32()) & 0xfbff // finite
	}
	bb := Q8_KBlockBytes
	if !act {
		bb = t.blockBytes()
	}
	for b := 0; b < nb; b++ {
		blk := dst[b*bb : (b+1)*bb]
		mode := rng.IntN(6)
		for i := range blk {
			switch mode {
			case 0:
				blk[i] = 0
			case 1:
				blk[i] = []byte{0x00, 0xff, 0x80, 0x7f}[rng.IntN(4)]
			default:
				blk[i] = byte(rng.Uint32())
			}
		}
		if act {
			// d: a finite float32 of moderate range (0, tiny, huge ones too).
			d := []float32{0, 1, -1, 1e-30, 3e30, float32(rng.NormFloat64())}[rng.IntN(6)]
			binary.LittleEndian.PutUint32(blk, math.Float32bits(d))
			if rng.IntN(2) == 0 { // consistent bsums
				for j := 0; j < 16; j++ {
					var s int16
					for _, v := range blk[4+16*j : 20+16*j] {
						s += int16(int8(v))
					}
					binary.LittleEndian.PutUint16(blk[260+2*j:], uint16(s))
				}
			}
			continue
		}
		switch t {
		case kQ4, kQ5:
			binary.LittleEndian.PutUint16(blk, f16())
			binary.LittleEndian.PutUint16(blk[2:], f16())
		case kQ6:
			binary.LittleEndian.PutUint16(blk[208:], f16())
		}
	}
}

// TestKKernelExtremes runs raw adversarial super-blocks through both
// families: bit-identical results, within the kernel bound of the exact
// formula whenever the result is finite.
func TestKKernelExtremes(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	for _, f := range kFamilies {
		bb := f.t.blockBytes()
		for trial := 0; trial < 300; trial++ {
			nb := 1 + rng.IntN(5)
			if trial%50 == 0 {
				nb = 24
			}
			rows, n := 1+rng.IntN(7), 1+rng.IntN(9)
			p := &problem{k: nb * 256, rows: rows, n: n, lda: nb * Q8_KBlockBytes, ldo: rows}
			p.w = make([]byte, rows*nb*bb)
			randKBlocks(rng, p.w, rows*nb, f.t, false)
			p.a = make([]byte, n*nb*Q8_KBlockBytes)
			randKBlocks(rng, p.a, n*nb, f.t, true)
			if trial%7 == 0 { // the worst case: every quant and scale at its extreme
				for i := range p.w {
					if f.t == kQ6 && i%bb == 208 || f.t != kQ6 && i%bb < 4 {
						continue
					}
					if f.t == kQ6 && i%bb >= 192 && i%bb < 208 {
						p.w[i] = 0x80 // scale -128
					} else if f.t == kQ6 {
						p.w[i] = 0 // q-32 = -32
					} else {
						p.w[i] = 0xff
					}
				}
				for i := range p.a {
					if i%Q8_KBlockBytes >= 4 && i%Q8_KBlockBytes < 260 {
						p.a[i] = 0x80 // -128
					}
				}
			}
			goOut := p.runK(t, f.goMat())
			var asmOut []float32
			if haveAsm {
				asmOut = p.runK(t, f.asmMat())
			}
			for r := 0; r < rows; r++ {
				for i := 0; i < n; i++ {
					v := goOut[i*p.ldo+r]
					if haveAsm && math.Float32bits(asmOut[i*p.ldo+r]) != math.Float32bits(v) &&
						!(v != v && asmOut[i*p.ldo+r] != asmOut[i*p.ldo+r]) {
						t.Fatalf("%s nb=%d [%d,%d]: assembly %v (%#08x), pure Go %v (%#08x)", f.name, nb, i, r,
							asmOut[i*p.ldo+r], math.Float32bits(asmOut[i*p.ldo+r]), v, math.Float32bits(v))
					}
					exact, abs := refDotK(f.t, nb, p.w[r*nb*bb:], p.a[i*p.lda:])
					if math.IsInf(abs, 0) || abs > math.MaxFloat32/4 {
						continue // float32 overflow is allowed here; identity was checked
					}
					if err := math.Abs(float64(v) - exact); err > kBound(nb, abs)+1e-45*float64(nb*16) {
						t.Fatalf("%s nb=%d [%d,%d]: %v, exact %v, error %g > %g", f.name, nb, i, r, v, exact, err, kBound(nb, abs))
					}
				}
			}
		}
	}
}

// TestKKernelNonFinite: with Inf or NaN scales (weights' d or dmin, or an
// activation's d) both families still agree: same Inf, or both NaN.
func TestKKernelNonFinite(t *testing.T) {
	if !haveAsm {
		t.Skip("no assembly")
	}
	rng := rand.New(rand.NewPCG(25, 26))
	bad16 := []uint16{0x7c00, 0xfc00, 0x7e00, 0x7c01}
	bad32 := []uint32{0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001}
	for _, f := range kFamilies {
		bb := f.t.blockBytes()
		for trial := 0; trial < 200; trial++ {
			nb, rows, n := 1+rng.IntN(3), 1+rng.IntN(6), 1+rng.IntN(6)
			p := &problem{k: nb * 256, rows: rows, n: n, lda: nb * Q8_KBlockBytes, ldo: rows}
			p.w = make([]byte, rows*nb*bb)
			randKBlocks(rng, p.w, rows*nb, f.t, false)
			p.a = make([]byte, n*nb*Q8_KBlockBytes)
			randKBlocks(rng, p.a, n*nb, f.t, true)
			blk := rng.IntN(rows*nb) * bb
			switch {
			case f.t == kQ6:
				binary.LittleEndian.PutUint16(p.w[blk+208:], bad16[rng.IntN(4)])
			default:
				binary.LittleEndian.PutUint16(p.w[blk+2*rng.IntN(2):], bad16[rng.IntN(4)])
			}
			if rng.IntN(2) == 0 {
				binary.LittleEndian.PutUint32(p.a[rng.IntN(n*nb)*Q8_KBlockBytes:], bad32[rng.IntN(4)])
			}
			g, a := p.runK(t, f.goMat()), p.runK(t, f.asmMat())
			for idx := range g {
				if idx%p.ldo >= rows || g[idx] != g[idx] && a[idx] != a[idx] {
					continue
				}
				if math.Float32bits(g[idx]) != math.Float32bits(a[idx]) {
					t.Fatalf("%s: out[%d]: pure Go %v, assembly %v", f.name, idx, g[idx], a[idx])
				}
			}
		}
	}
}

// TestKMatBatchInvariant: an element's bits do not depend on how many
// activation rows one call processes, on which weight rows it covers, or
// on the kernel family.
func TestKMatBatchInvariant(t *testing.T) {
	rng := rand.New(rand.NewPCG(27, 28))
	for _, f := range kFamilies {
		for _, k := range []int{256, 1024} {
			nb, bb := k/256, f.t.blockBytes()
			const rows, n = 29, 10
			p := newKProblem(rng, f, k, rows, n)
			all := make([]float32, n*rows)
			f.mat(k, rows, p.w, n, p.a, p.lda, all, rows)
			check := func(what string, i, r int, v float32) {
				t.Helper()
				if math.Float32bits(v) != math.Float32bits(all[i*rows+r]) {
					t.Fatalf("%s k=%d [%d,%d]: %s gives %v, n=%d gives %v", f.name, k, i, r, what, v, n, all[i*rows+r])
				}
			}
			for _, g := range []int{1, 2, 3, 4, 5, 7} {
				for i0 := 0; i0 < n; i0 += g {
					m := min(g, n-i0)
					out := make([]float32, m*rows)
					f.mat(k, rows, p.w, m, p.a[i0*p.lda:], p.lda, out, rows)
					for i := 0; i < m; i++ {
						for r := 0; r < rows; r++ {
							check(fmt.Sprintf("n=%d", g), i0+i, r, out[i*rows+r])
						}
					}
				}
			}
			for _, split := range []int{1, 5, 6, 11} {
				out := make([]float32, n*rows)
				for r0 := 0; r0 < rows; r0 += split {
					r1 := min(rows, r0+split)
					f.mat(k, r1-r0, p.w[r0*nb*bb:], n, p.a, p.lda, out[r0:], rows)
				}
				for i := 0; i < n; i++ {
					for r := 0; r < rows; r++ {
						check(fmt.Sprintf("rows split by %d", split), i, r, out[i*rows+r])
					}
				}
			}
			goOut := make([]float32, n*rows)
			matKGo(f.t, nb, rows, p.w, n, p.a, p.lda, goOut, rows)
			for i := 0; i < n; i++ {
				for r := 0; r < rows; r++ {
					check("pure Go", i, r, goOut[i*rows+r])
				}
			}
		}
	}
}

func TestKMatChecks(t *testing.T) {
	for _, f := range kFamilies {
		bb := f.t.blockBytes()
		k, rows, n := 512, 3, 2
		rb, ab := 2*bb, 2*Q8_KBlockBytes
		w := make([]byte, rows*rb)
		a := make([]byte, n*ab)
		out := make([]float32, n*rows)
		f.mat(k, rows, w, n, a, ab, out, rows) // fine
		mustPanic(t, f.name+" k%256", func() { f.mat(288, rows, w, n, a, ab, out, rows) })
		mustPanic(t, f.name+" short w", func() { f.mat(k, rows, w[:len(w)-1], n, a, ab, out, rows) })
		mustPanic(t, f.name+" short a", func() { f.mat(k, rows, w, n, a[:len(a)-1], ab, out, rows) })
		mustPanic(t, f.name+" small lda", func() { f.mat(k, rows, w, n, a, ab-1, out, rows) })
		mustPanic(t, f.name+" short out", func() { f.mat(k, rows, w, n, a, ab, out[:len(out)-1], rows) })
		mustPanic(t, f.name+" small ldo", func() { f.mat(k, rows, w, n, a, ab, out, rows-1) })
		mustPanic(t, f.name+" negative rows", func() { f.mat(k, -1, w, n, a, ab, out, rows) })
		mustPanic(t, f.name+" Dot short w", func() { f.dot(k, w[:rb-1], a) })
		mustPanic(t, f.name+" Dot short a", func() { f.dot(k, w, a[:ab-1]) })
		mustPanic(t, f.name+" Dot k", func() { f.dot(32, w, a) })
		f.mat(k, 0, nil, n, nil, 0, nil, 0)
		f.mat(k, rows, w, 0, nil, 0, nil, 0)
		for i := range out {
			out[i] = 1
		}
		f.mat(0, rows, nil, n, nil, 0, out, rows)
		for i, v := range out {
			if v != 0 {
				t.Fatalf("%s k=0: out[%d] = %v", f.name, i, v)
			}
		}
		if v := f.dot(0, nil, nil); v != 0 {
			t.Fatalf("%s Dot k=0 = %v", f.name, v)
		}
		mustPanic(t, f.name+" quantize length", func() { f.quantize(make([]byte, bb-1), make([]float32, 256)) })
		mustPanic(t, f.name+" quantize k", func() { f.quantize(make([]byte, bb), make([]float32, 255)) })
		mustPanic(t, f.name+" dequantize length", func() { f.deq(make([]float32, 256), make([]byte, bb+1)) })
	}
}

// TestQ4_KGoldenBlock decodes a hand-built Q4_K super-block whose values
// are worked out by hand from ggml's layout.
func TestQ4_KGoldenBlock(t *testing.T) {
	blk := make([]byte, Q4_KBlockBytes)
	binary.LittleEndian.PutUint16(blk[0:], 0x3c00) // d = 1
	binary.LittleEndian.PutUint16(blk[2:], 0x3800) // dmin = 0.5
	// Sub-block scales 1, 2, 3, 4 and 33, 34, 35, 63; mins 5, 6, 7, 8 and
	// 40, 41, 42, 43 (the last four split: low 4 bits in scales[8..11],
	// high 2 bits in the top of scales[0..7]).
	sc := []uint8{1, 2, 3, 4, 33, 34, 35, 63}
	mn := []uint8{5, 6, 7, 8, 40, 41, 42, 43}
	s := blk[4:16]
	for j := 0; j < 4; j++ {
		s[j] = sc[j] | (sc[j+4]>>4)<<6
		s[j+4] = mn[j] | (mn[j+4]>>4)<<6
		s[j+8] = sc[j+4]&15 | (mn[j+4]&15)<<4
	}
	// Byte layout, by hand: scales[0] = 1 | (33>>4=2)<<6 = 0x81,
	// scales[4] = 5 | (40>>4=2)<<6 = 0x85, scales[8] = (33&15=1) | (40&15=8)<<4 = 0x81.
	if s[0] != 0x81 || s[4] != 0x85 || s[8] != 0x81 || s[11] != 0xbf {
		t.Fatalf("scales bytes % x", s)
	}
	// Quants: byte 32c+i holds element 64c+i (low nibble) and 64c+32+i
	// (high nibble); set element 64c+i to i%16 and 64c+32+i to 15-i%16.
	for c := 0; c < 4; c++ {
		for i := 0; i < 32; i++ {
			blk[16+32*c+i] = byte(i%16) | byte(15-i%16)<<4
		}
	}
	got := make([]float32, 256)
	DequantizeQ4_K(got, blk)
	// Element e = 32*sb + i: q = i%16 for even sb, 15-i%16 for odd; value
	// = 1*sc[sb]*q - 0.5*mn[sb].
	for _, c := range []struct {
		e    int
		want float32
	}{
		{0, 0 - 2.5},   // sb 0: sc 1, q 0, min 5*0.5
		{5, 5 - 2.5},   // q 5
		{31, 15 - 2.5}, // q 15
		{32, 2*15 - 3}, // sb 1: sc 2, q 15, min 3
		{40, 2*7 - 3},  // q 15-8
		{64 + 3, 3*3 - 3.5},
		{96 + 17, 4*14 - 4},      // sb 3: q 15-1
		{128 + 9, 33*9 - 20},     // sb 4: sc 33, min 40*0.5
		{160, 34*15 - 20.5},      // sb 5
		{192 + 31, 35*15 - 21},   // sb 6
		{224 + 15, 63*0 - 21.5},  // sb 7: q 15-15
		{224 + 16, 63*15 - 21.5}, // q 15-0
	} {
		if got[c.e] != c.want {
			t.Errorf("Q4_K element %d = %v, want %v", c.e, got[c.e], c.want)
		}
	}
	if CheckScalesQ4_K(Q4_KBlockBytes, blk) != -1 {
		t.Fatal("finite block refused")
	}
	binary.LittleEndian.PutUint16(blk[2:], 0x7c00) // dmin = Inf
	if CheckScalesQ4_K(Q4_KBlockBytes, append(make([]byte, Q4_KBlockBytes), blk...)) != 1 {
		t.Fatal("Inf dmin not reported")
	}
}

// TestQ5_KGoldenBlock: the fifth bit of element 32s+i is bit s of qh[i].
func TestQ5_KGoldenBlock(t *testing.T) {
	blk := make([]byte, Q5_KBlockBytes)
	binary.LittleEndian.PutUint16(blk[0:], 0x4000) // d = 2
	binary.LittleEndian.PutUint16(blk[2:], 0x3c00) // dmin = 1
	for j := 0; j < 4; j++ {
		blk[4+j] = 1  // sc0-3 = 1
		blk[8+j] = 3  // m0-3 = 3
		blk[12+j] = 1 // sc4-7 = 1, m4-7 = 0
	}
	qh, qs := blk[16:48], blk[48:176]
	qh[0] = 0x01 | 0x80 // element 0 (sub-block 0) and element 224 (sub-block 7)
	qh[5] = 0x02        // element 32+5
	qs[0] = 0x0f | 0x30 // element 0: q 15 (+16); element 32: q 3
	qs[5] = 0x70        // element 5: 0; element 37: 7+16
	qs[96] = 0x9a       // element 192: 10; element 224: 9+16
	got := make([]float32, 256)
	DequantizeQ5_K(got, blk)
	for _, c := range []struct {
		e    int
		want float32
	}{
		{0, 2*31 - 3}, {32, 2*3 - 3}, {5, 0 - 3}, {37, 2*(7+16) - 3}, {192, 2*10 - 0}, {224, 2*(9+16) - 0}, {1, -3},
	} {
		if got[c.e] != c.want {
			t.Errorf("Q5_K element %d = %v, want %v", c.e, got[c.e], c.want)
		}
	}
}

// TestQ6_KGoldenBlock decodes a hand-built Q6_K super-block.
func TestQ6_KGoldenBlock(t *testing.T) {
	blk := make([]byte, Q6_KBlockBytes)
	binary.LittleEndian.PutUint16(blk[208:], 0x3800) // d = 0.5
	for j := 0; j < 16; j++ {
		blk[192+j] = byte(int8(j - 8)) // scales -8..7
	}
	ql, qh := blk[0:128], blk[128:192]
	// Element 0: ql[0] low nibble, qh[0] bits 0-1. Element 64: ql[0] high
	// nibble, qh[0] bits 4-5. Element 32+1: ql[33] low, qh[1] bits 2-3.
	// Element 128+96+2: ql[64+32+2] high nibble, qh[32+2] bits 6-7.
	ql[0] = 0xa5       // e0 low 5, e64 low 10
	qh[0] = 0x3 | 0x20 // e0 high 3 (q = 5+48 = 53), e64 high 2 (q = 10+32 = 42)
	ql[33] = 0x0c      // e33 low 12
	qh[1] = 0x4        // e33 high 1: q = 12+16 = 28
	ql[98] = 0xf0      // e226 low 15
	qh[34] = 0xc0      // e226 high 3: q = 63
	got := make([]float32, 256)
	DequantizeQ6_K(got, blk)
	for _, c := range []struct {
		e    int
		want float32
	}{
		{0, 0.5 * -8 * (53 - 32)},  // scale index 0: -8
		{64, 0.5 * -4 * (42 - 32)}, // scale index 4: -4
		{33, 0.5 * -6 * (28 - 32)}, // scale index 2: -6
		{226, 0.5 * 6 * (63 - 32)}, // scale index 14: 6
		{1, 0.5 * -8 * -32},        // all-zero bits: q-32 = -32
		{255, 0.5 * 7 * -32},
	} {
		if got[c.e] != c.want {
			t.Errorf("Q6_K element %d = %v, want %v", c.e, got[c.e], c.want)
		}
	}
	if CheckScalesQ6_K(blk) != -1 {
		t.Fatal("finite block refused")
	}
	binary.LittleEndian.PutUint16(blk[208:], 0xfe00)
	if CheckScalesQ6_K(append(blk, blk...)) != 0 {
		t.Fatal("NaN d not reported")
	}
}

// TestKQuantizeRoundTrip checks the reconstruction error of the reference
// quantizers. Q6_K: every element of a 16-element group whose quant is not
// clamped is within half a step (d*|sc|/2) plus the float16 rounding of d
// times 32 steps; the RMS error over all rows is also bounded. Q4_K and
// Q5_K fit an affine grid per 32 elements, so their bound is stated on the
// RMS error relative to the row's RMS (measured on Gaussian super-blocks of
// standard deviation 0.01 to 100: 0.072 for Q4_K, 0.037 for Q5_K, 0.018
// for Q6_K; asserted with margin, and twice that for any one super-block),
// and per element at most the sub-block's range. (Much smaller weights push
// the float16 d into the subnormals, where its rounding dominates, as in
// ggml.)
func TestKQuantizeRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(29, 30))
	limits := map[string]float64{"Q4_K": 0.11, "Q5_K": 0.055, "Q6_K": 0.025}
	for _, f := range kFamilies {
		var se, sx float64
		for trial := 0; trial < 100; trial++ {
			nb := 1 + rng.IntN(4)
			x := make([]float32, nb*256)
			for b := 0; b < nb; b++ {
				scale := math.Pow(10, rng.Float64()*4-2)
				for i := b * 256; i < b*256+256; i++ {
					x[i] = float32(rng.NormFloat64() * scale)
				}
			}
			q := make([]byte, nb*f.t.blockBytes())
			f.quantize(q, x)
			d := make([]float32, len(x))
			f.deq(d, q)
			for b := 0; b < nb; b++ {
				var bse, bsx float64
				for i := b * 256; i < b*256+256; i++ {
					e := float64(x[i]) - float64(d[i])
					bse += e * e
					bsx += float64(x[i]) * float64(x[i])
				}
				if rel := math.Sqrt(bse / bsx); rel > 2*limits[f.name] {
					t.Fatalf("%s trial %d block %d: relative RMS error %.3g", f.name, trial, b, rel)
				}
				se += bse / bsx
				sx++
				for g := b * 8; g < b*8+8; g++ { // per 32-element sub-block: within its range
					lo, hi := math.Inf(1), math.Inf(-1)
					for _, v := range x[32*g : 32*g+32] {
						lo, hi = math.Min(lo, float64(v)), math.Max(hi, float64(v))
					}
					span := hi - math.Min(lo, 0) + math.Max(math.Abs(lo), math.Abs(hi))/8
					for i := 32 * g; i < 32*g+32; i++ {
						if e := math.Abs(float64(x[i]) - float64(d[i])); e > span {
							t.Fatalf("%s element %d: x=%v deq=%v error %g > %g", f.name, i, x[i], d[i], e, span)
						}
					}
				}
				if f.t == kQ6 {
					dd := f16Value(binary.LittleEndian.Uint16(q[b*Q6_KBlockBytes+208:]))
					for j := 0; j < 16; j++ {
						sc := float64(int8(q[b*Q6_KBlockBytes+192+j]))
						step := math.Abs(dd * sc)
						for i := b*256 + 16*j; i < b*256+16*j+16; i++ {
							v := float64(x[i]) / (dd * sc)
							if step == 0 || v < -32.5 || v > 31.5 {
								continue // clamped
							}
							if e := math.Abs(float64(x[i]) - float64(d[i])); e > step/2+32*math.Max(math.Abs(dd)/2048, 0x1p-25)*math.Abs(sc)+1e-6*step {
								t.Fatalf("Q6_K element %d: x=%v deq=%v error %g, step %g", i, x[i], d[i], e, step)
							}
						}
					}
				}
			}
		}
		rms := math.Sqrt(se / sx)
		t.Logf("%s: RMS error / RMS value %.4f (limit %.3f)", f.name, rms, limits[f.name])
		if rms > limits[f.name] {
			t.Fatalf("%s: relative RMS error %.4f > %.3f", f.name, rms, limits[f.name])
		}
	}
	// Q4_K is better than Q4_0 on the same data (the point of the format).
	x := randRow(rng, 4096)
	e := func(quant func([]byte, []float32), deq func([]float32, []byte), bb, bs int) float64 {
		q := make([]byte, len(x)/bs*bb)
		quant(q, x)
		d := make([]float32, len(x))
		deq(d, q)
		var s float64
		for i := range x {
			s += (float64(x[i]) - float64(d[i])) * (float64(x[i]) - float64(d[i]))
		}
		return s
	}
	if e4k, e40 := e(QuantizeQ4_K, DequantizeQ4_K, Q4_KBlockBytes, 256), e(QuantizeQ4_0, DequantizeQ4_0, Q4_0BlockBytes, 32); e4k >= e40 {
		t.Fatalf("Q4_K squared error %g not below Q4_0's %g", e4k, e40)
	}
}

// TestQuantizeRefSpecial: properties of the K quantizers a reader can check
// by hand: zeros give an all-zero block; a constant positive block is exact
// in Q4_K; Q6_K of a row with one nonzero element.
func TestQuantizeRefSpecial(t *testing.T) {
	for _, f := range kFamilies {
		q := make([]byte, f.t.blockBytes())
		for i := range q {
			q[i] = 0xaa
		}
		f.quantize(q, make([]float32, 256))
		if !bytes.Equal(q, make([]byte, len(q))) {
			t.Errorf("%s of zeros: % x", f.name, q)
		}
	}
	// Q4_K of 256 copies of 2: min 0, so each sub-block is L=15 with scale
	// 2/15; the 6-bit scales are all 63 (equal maxima), d = fp16(2/15/63).
	x := make([]float32, 256)
	for i := range x {
		x[i] = 2
	}
	q := make([]byte, Q4_KBlockBytes)
	QuantizeQ4_K(q, x)
	d := make([]float32, 256)
	DequantizeQ4_K(d, q)
	for i, v := range d {
		if math.Abs(float64(v)-2) > 2e-3 {
			t.Fatalf("Q4_K constant: element %d = %v", i, v)
		}
	}
	if h := binary.LittleEndian.Uint16(q); h != F32ToF16(float32(2)/15/63) {
		t.Fatalf("Q4_K constant: d %#04x, want %#04x", h, F32ToF16(float32(2)/15/63))
	}
	// Q6_K of a single 1.0 at element 17: its group's fit is exact (l = -32
	// times scale -1/32), every other scale is 0.
	x = make([]float32, 256)
	x[17] = 1
	q = make([]byte, Q6_KBlockBytes)
	QuantizeQ6_K(q, x)
	d = make([]float32, 256)
	DequantizeQ6_K(d, q)
	for i, v := range d {
		want := float32(0)
		if i == 17 {
			want = 1
		}
		if v != want {
			t.Fatalf("Q6_K single: element %d = %v, want %v (block % x)", i, v, want, q)
		}
	}
}

// TestQuantizeActivationsK checks ggml's Q8_K reference semantics on
// hand-made rows, and that the assembly quantizer writes exactly the bytes
// of the pure-Go one on random rows and on the inputs the C reference
// leaves undefined.
func TestQuantizeActivationsK(t *testing.T) {
	// max = -4 (first of largest magnitude): iscale = -127/-4 = 31.75,
	// d = 1/31.75; x = 2 gives 63.5 -> 64 (ties to even), 1 -> 31.75 -> 32,
	// -4 -> -127, 4 (same magnitude, later) -> 127.
	x := make([]float32, 256)
	x[0], x[1], x[2], x[3], x[20] = 2, -4, 1, 4, -0.0157480315 // 0.5 step: -0.5 -> -0 (even)
	q := make([]byte, Q8_KBlockBytes)
	QuantizeActivationsK(q, x)
	if d := math.Float32frombits(binary.LittleEndian.Uint32(q)); d != 1/float32(31.75) {
		t.Fatalf("Q8_K d = %v", d)
	}
	wantQ := map[int]int8{0: 64, 1: -127, 2: 32, 3: 127}
	for i := 0; i < 256; i++ {
		if g := int8(q[4+i]); g != wantQ[i] {
			t.Fatalf("Q8_K q[%d] = %d, want %d", i, g, wantQ[i])
		}
	}
	if b0 := int16(binary.LittleEndian.Uint16(q[260:])); b0 != 64-127+32+127 {
		t.Fatalf("bsums[0] = %d", b0)
	}
	// Positive max: iscale negative, so the largest element gets -127.
	x[1] = 0
	QuantizeActivationsK(q, x)
	if int8(q[4+3]) != -127 || int8(q[4]) != -64 {
		t.Fatalf("positive max: q[3] = %d, q[0] = %d", int8(q[7]), int8(q[4]))
	}

	rng := rand.New(rand.NewPCG(31, 32))
	var rows [][]float32
	for trial := 0; trial < 200; trial++ {
		rows = append(rows, randRow(rng, 256*(1+rng.IntN(4))))
	}
	for trial := 0; trial < 200; trial++ {
		x := make([]float32, 256)
		for i := range x {
			x[i] = math.Float32frombits(rng.Uint32())
		}
		rows = append(rows, x)
	}
	special := func(vals ...float32) []float32 {
		x := make([]float32, 256)
		copy(x[100:], vals)
		return x
	}
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	rows = append(rows,
		special(), special(float32(math.Copysign(0, -1))),
		special(nan, 1, -2), special(inf, 1, -inf), special(-inf, 3),
		special(1e-37, -3e-38), special(1e-39, 5e-40), special(math.Float32frombits(1), math.Float32frombits(0x80000007)),
		special(3e38, -3e38, 1), special(127, 63.5, -63.5, 0.5, 1.5, 2.5), special(nan),
	)
	for _, x := range rows {
		ref := make([]byte, len(x)/256*Q8_KBlockBytes)
		quantizeQ8KGo(ref, x)
		for b := 0; b < len(x)/256; b++ {
			blk := ref[b*Q8_KBlockBytes:]
			for j := 0; j < 16; j++ {
				var s int16
				for _, v := range blk[4+16*j : 20+16*j] {
					if int8(v) == -128 {
						t.Fatalf("quantizer produced -128 for %v", x)
					}
					s += int16(int8(v))
				}
				if g := int16(binary.LittleEndian.Uint16(blk[260+2*j:])); g != s {
					t.Fatalf("bsums[%d] = %d, want %d", j, g, s)
				}
			}
		}
		got := make([]byte, len(ref))
		for i := range got {
			got[i] = 0x5a
		}
		QuantizeActivationsK(got, x)
		if !bytes.Equal(got, ref) {
			t.Fatalf("QuantizeActivationsK differs from the pure-Go reference for %v:\n got % x\nwant % x", x[:8], got, ref)
		}
		if haveAsm {
			clear(got)
			quantizeQ8KAsm(got, x)
			if !bytes.Equal(got, ref) {
				t.Fatalf("assembly Q8_K quantizer differs from Go for %v:\n got % x\nwant % x", x[100:104], got, ref)
			}
		}
	}
	mustPanic(t, "length", func() { QuantizeActivationsK(make([]byte, 291), make([]float32, 256)) })
	mustPanic(t, "k", func() { QuantizeActivationsK(make([]byte, 292), make([]float32, 255)) })
}

func TestCheckScalesK(t *testing.T) {
	for _, bb := range []int{Q4_KBlockBytes, Q5_KBlockBytes} {
		data := make([]byte, 5*bb+7)
		if got := CheckScalesQ4_K(bb, data); got != -1 {
			t.Fatalf("CheckScalesQ4_K(zeros) = %d", got)
		}
		for _, off := range []int{0, 2} {
			for _, h := range []uint16{0x7c00, 0xfc00, 0x7e00, 0x7c01} {
				d := append([]byte(nil), data...)
				binary.LittleEndian.PutUint16(d[3*bb+off:], h)
				if got := CheckScalesQ4_K(bb, d); got != 3 {
					t.Fatalf("CheckScalesQ4_K(%d, %#04x at +%d of block 3) = %d", bb, h, off, got)
				}
			}
		}
		d := append([]byte(nil), data...)
		for i := range d {
			if i%bb >= 4 {
				d[i] = 0xff // quants and 6-bit scales are not float16
			}
		}
		if got := CheckScalesQ4_K(bb, d); got != -1 {
			t.Fatalf("CheckScalesQ4_K saw quants as scales: %d", got)
		}
	}
	data := make([]byte, 4*Q6_KBlockBytes)
	for i := range data {
		if i%Q6_KBlockBytes < 208 {
			data[i] = 0xff
		}
	}
	if got := CheckScalesQ6_K(data); got != -1 {
		t.Fatalf("CheckScalesQ6_K = %d", got)
	}
	binary.LittleEndian.PutUint16(data[2*Q6_KBlockBytes+208:], 0x7c00)
	if got := CheckScalesQ6_K(data); got != 2 {
		t.Fatalf("CheckScalesQ6_K(Inf at 2) = %d", got)
	}
}

// goldenSumsK hashes the bytes the K quantizers write and the bits the K
// kernels return for a fixed, seeded problem (recorded on amd64, both
// families): a change means a change of the quantizers' output or of the
// K-quant float order, which invalidates every KV cache built with K-quant
// weights.
func goldenSumsK() (quant uint64, mats [3]uint64) {
	rng := rand.New(rand.NewPCG(2025, 11))
	const k, rows, n = 768, 23, 6
	x := make([]float32, n*k)
	for i := range x {
		x[i] = float32(rng.NormFloat64()) * float32(math.Pow(10, float64(i/32%7)-3))
	}
	wf := make([]float32, rows*k)
	for i := range wf {
		wf[i] = float32(rng.NormFloat64()) * 0.02
	}
	ab := k / 256 * Q8_KBlockBytes
	a := make([]byte, n*ab)
	for i := 0; i < n; i++ {
		QuantizeActivationsK(a[i*ab:(i+1)*ab], x[i*k:(i+1)*k])
	}
	h := fnv.New64a()
	h.Write(a)
	out := make([]float32, n*rows)
	for fi, f := range kFamilies {
		w := make([]byte, rows*k/256*f.t.blockBytes())
		f.quantize(w, wf)
		h.Write(w)
		f.mat(k, rows, w, n, a, ab, out, rows)
		hm := fnv.New64a()
		for _, v := range out {
			b := math.Float32bits(v)
			hm.Write([]byte{byte(b), byte(b >> 8), byte(b >> 16), byte(b >> 24)})
		}
		mats[fi] = hm.Sum64()
	}
	return h.Sum64(), mats
}

func TestGoldenK(t *testing.T) {
	quant, mats := goldenSumsK()
	const wantQuant = 0x98c504ee7116efea
	wantMats := [3]uint64{0xaf8aec6bda0ed233, 0x3560c166f3138fbc, 0x89023493825dd2be}
	if quant != wantQuant || mats != wantMats {
		t.Fatalf("K golden sums: quantizers %#x (want %#x), MatQ4_K/Q5_K/Q6_K %#x (want %#x)", quant, uint64(wantQuant), mats, wantMats)
	}
}
