package quant

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// Tolerances (stated here, asserted below).
//
// Against the exact (float64) product of the dequantized weights and the
// dequantized activations, the integer part is exact, so the only error is
// float32 rounding in the package's float order: per block one rounding of
// s = dw*da and one of lane*s, nb-1 sequential additions per lane, then 3
// levels of the final tree. The rigorous bound is therefore
//
//	|got - exact| <= (nb+5) * 2^-24 * sum over blocks and lanes of |lane*s|
//
// (kernelBound). On the random data of these tests the observed error is far
// below that, and we also assert the empirical 1e-6 * sum|lane*s| for every
// case (at k = 4096 the rigorous bound would allow 7.9e-6).
//
// Against the original float activations the error is dominated by the
// activation quantization: each dequantized activation is within
// d_a/2 + 127*h_a of the original (d_a = amax/127 of its block, h_a the
// rounding of d_a to fp16: 2^-11 relative, or 2^-25 absolute for subnormal
// halves), so |got - sum w_i*x_i| <= sum |w_i|*(d_a/2 + 127*h_a) plus the
// kernel bound (actQuantBound).
const empiricalTol = 1e-6

// refDot returns the exact (float64) dot product of a weight row (Q8_0 or
// Q4_0, by wbb) with a Q8_0 activation row, decoding the bytes
// independently of the code under test, plus sum |lane*s|.
func refDot(nb, wbb int, w, a []byte) (exact, abs float64) {
	for b := 0; b < nb; b++ {
		wb, ab := w[b*wbb:], a[b*34:]
		s := f16Value(binary.LittleEndian.Uint16(wb)) * f16Value(binary.LittleEndian.Uint16(ab))
		for j := 0; j < 8; j++ {
			var lane int64
			for i := 4 * j; i < 4*j+4; i++ {
				var q int64
				if wbb == Q8_0BlockBytes {
					q = int64(int8(wb[2+i]))
				} else if i < 16 {
					q = int64(wb[2+i]&15) - 8
				} else {
					q = int64(wb[2+i-16]>>4) - 8
				}
				lane += q * int64(int8(ab[2+i]))
			}
			exact += float64(lane) * s
			abs += math.Abs(float64(lane) * s)
		}
	}
	return exact, abs
}

func kernelBound(nb int, abs float64) float64 { return float64(nb+5) * 0x1p-24 * abs }

// actQuantBound bounds |sum w_i*(x_i - deq(a)_i)| for the dequantized weight
// row w and original activations x.
func actQuantBound(w []float32, x []float32) float64 {
	var bound float64
	for b := 0; b < len(x)/32; b++ {
		var amax float64
		for _, v := range x[b*32 : b*32+32] {
			amax = math.Max(amax, math.Abs(float64(v)))
		}
		d := amax / 127
		e := d/2 + 127*math.Max(d/2048, 0x1p-25)
		for _, v := range w[b*32 : b*32+32] {
			bound += math.Abs(float64(v)) * e
		}
	}
	return bound
}

type kernelFamily struct {
	name     string
	wbb      int
	quantize func(dst []byte, src []float32)
	deq      func(dst []float32, src []byte)
	mat      func(k, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int)
	dot      func(k int, w, a []byte) float32
	matGo    func(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int)
	matAsm   func(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int)
	dotGo    func(nb int, w, a []byte) float32
	dotAsm   func(nb int, w, a []byte) float32
	// The two assembly tile families, whatever matAsm selects.
	matAVX2, matAVX512 func(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int)
}

var families = []kernelFamily{
	{"Q8_0", Q8_0BlockBytes, QuantizeQ8_0, DequantizeQ8_0, MatQ8_0, DotQ8_0, matQ8Go, matQ8Asm, dotQ8Go, dotQ8Asm, matQ8AVX2, matQ8AVX512},
	{"Q4_0", Q4_0BlockBytes, QuantizeQ4_0, DequantizeQ4_0, MatQ4_0, DotQ4_0, matQ4Go, matQ4Asm, dotQ4Go, dotQ4Asm, matQ4AVX2, matQ4AVX512},
}

type namedMat struct {
	name string
	mat  func(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int)
}

// asmMats lists the assembly tile families this machine can run: each must
// match the pure-Go family bit for bit.
func asmMats(f kernelFamily) []namedMat {
	var m []namedMat
	if haveAsm {
		m = append(m, namedMat{"AVX2", f.matAVX2})
	}
	if haveAVX512 {
		m = append(m, namedMat{"AVX-512", f.matAVX512})
	}
	return m
}

// avx512Modes lists the settings of useAVX512 this machine can run (the
// public functions dispatch on it); withAVX512 runs fn under one of them.
func avx512Modes() []bool {
	if haveAVX512 {
		return []bool{false, true}
	}
	return []bool{false}
}

func withAVX512(on bool, fn func()) {
	old := useAVX512
	useAVX512 = on
	defer func() { useAVX512 = old }()
	fn()
}

// problem is one matrix product: rows weight rows, n activation rows with
// padding (lda > row bytes, ldo > rows) filled with garbage.
type problem struct {
	k, rows, n, lda, ldo int
	w, a                 []byte
	x                    []float32 // the original activations, n*k
}

func newProblem(rng *rand.Rand, f kernelFamily, k, rows, n int) *problem {
	nb := k / 32
	p := &problem{k: k, rows: rows, n: n, lda: nb*34 + 34*rng.IntN(2) + 2*rng.IntN(2), ldo: rows + rng.IntN(3)}
	p.w = make([]byte, rows*nb*f.wbb)
	for r := 0; r < rows; r++ {
		f.quantize(p.w[r*nb*f.wbb:(r+1)*nb*f.wbb], randRow(rng, k))
	}
	p.a = make([]byte, (n-1)*p.lda+nb*34)
	for i := range p.a {
		p.a[i] = byte(rng.Uint32()) // the padding stays garbage
	}
	p.x = make([]float32, n*k)
	for i := 0; i < n; i++ {
		copy(p.x[i*k:], randRow(rng, k))
		QuantizeActivations(p.a[i*p.lda:i*p.lda+nb*34], p.x[i*k:(i+1)*k])
	}
	return p
}

// run calls mat and checks that it wrote exactly the n x rows outputs.
func (p *problem) run(t *testing.T, mat func(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int)) []float32 {
	t.Helper()
	sentinel := float32(-12345.678)
	out := make([]float32, (p.n-1)*p.ldo+p.rows+5)
	for i := range out {
		out[i] = sentinel
	}
	mat(p.k/32, p.rows, p.w, p.n, p.a, p.lda, out, p.ldo)
	for idx, v := range out {
		i, r := idx/p.ldo, idx%p.ldo
		inside := i < p.n && r < p.rows
		if inside == (v == sentinel) {
			t.Fatalf("k=%d rows=%d n=%d: out[%d] (row %d col %d) = %v: written outside, or not written", p.k, p.rows, p.n, idx, i, r, v)
		}
	}
	return out
}

func publicMat(f kernelFamily) func(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
	return func(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
		f.mat(nb*32, rows, w, n, a, lda, out, ldo)
	}
}

var shapes = func() (s [][3]int) {
	for _, k := range []int{32, 64, 96, 256} {
		for _, rows := range []int{1, 2, 3, 4, 5, 7, 8, 13} {
			for n := 1; n <= 8; n++ {
				s = append(s, [3]int{k, rows, n})
			}
		}
	}
	for n := 1; n <= 8; n++ {
		s = append(s, [3]int{4096, 7, n}, [3]int{4096, 30, n}) // 30 rows: several L2 chunks for n > 4
	}
	return s
}()

// TestKernelAccuracy checks every shape against the float64 references with
// the tolerances stated at the top of this file, and that the pure-Go and
// assembly families and the Dot functions agree bit for bit.
func TestKernelAccuracy(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, f := range families {
		var worst, worstAct float64
		for _, sh := range shapes {
			k, rows, n := sh[0], sh[1], sh[2]
			nb := k / 32
			p := newProblem(rng, f, k, rows, n)
			got := p.run(t, publicMat(f))
			goOut := p.run(t, f.matGo)
			asms := asmMats(f)
			asmOuts := make([][]float32, len(asms))
			for j, m := range asms {
				asmOuts[j] = p.run(t, m.mat)
			}
			wd := make([]float32, k)
			for r := 0; r < rows; r++ {
				wr := p.w[r*nb*f.wbb : (r+1)*nb*f.wbb]
				f.deq(wd, wr)
				for i := 0; i < n; i++ {
					ar := p.a[i*p.lda:]
					v := got[i*p.ldo+r]
					exact, abs := refDot(nb, f.wbb, wr, ar)
					err := math.Abs(float64(v) - exact)
					if err > kernelBound(nb, abs) || err > empiricalTol*abs {
						t.Fatalf("%s k=%d rows=%d n=%d [%d,%d]: %v, exact %v: error %g, sum|terms| %g", f.name, k, rows, n, i, r, v, exact, err, abs)
					}
					if abs > 0 {
						worst = math.Max(worst, err/abs)
					}
					var orig float64
					x := p.x[i*k : (i+1)*k]
					for e := range wd {
						orig += float64(wd[e]) * float64(x[e])
					}
					errAct := math.Abs(float64(v) - orig)
					if lim := actQuantBound(wd, x) + kernelBound(nb, abs); errAct > lim {
						t.Fatalf("%s k=%d [%d,%d]: %v vs float activations %v: error %g > %g", f.name, k, i, r, v, orig, errAct, lim)
					}
					var wnorm, xnorm float64
					for e := range wd {
						wnorm += float64(wd[e]) * float64(wd[e])
						xnorm += float64(x[e]) * float64(x[e])
					}
					if wnorm > 0 && xnorm > 0 {
						worstAct = math.Max(worstAct, errAct/math.Sqrt(wnorm*xnorm))
					}
					// Bit identity: the families, and Dot.
					want := math.Float32bits(v)
					if g := math.Float32bits(goOut[i*p.ldo+r]); g != want {
						t.Fatalf("%s k=%d rows=%d n=%d [%d,%d]: pure Go %#08x, public %#08x", f.name, k, rows, n, i, r, g, want)
					}
					for j, m := range asms {
						if g := math.Float32bits(asmOuts[j][i*p.ldo+r]); g != want {
							t.Fatalf("%s k=%d rows=%d n=%d [%d,%d]: %s %#08x, pure Go %#08x", f.name, k, rows, n, i, r, m.name, g, math.Float32bits(goOut[i*p.ldo+r]))
						}
					}
					if haveAsm {
						if g := math.Float32bits(f.dotAsm(nb, wr, ar)); g != want {
							t.Fatalf("%s k=%d [%d,%d]: assembly dot %#08x, mat %#08x", f.name, k, i, r, g, want)
						}
					}
					if g := math.Float32bits(f.dot(k, wr, ar)); g != want {
						t.Fatalf("%s k=%d [%d,%d]: Dot %#08x, Mat %#08x", f.name, k, i, r, g, want)
					}
					if g := math.Float32bits(f.dotGo(nb, wr, ar)); g != want {
						t.Fatalf("%s k=%d [%d,%d]: pure-Go dot %#08x, Mat %#08x", f.name, k, i, r, g, want)
					}
				}
			}
		}
		t.Logf("%s: worst error vs dequantized product %.3g * sum|terms|; vs float activations %.3g * |w||x|", f.name, worst, worstAct)
	}
}

// randBlocks fills nb raw blocks with adversarial contents: scales from the
// extremes of float16 (0, subnormals, +-65504, and random finite values),
// quants over the whole range (Q8_0 weights include -128; activations stay
// in [-127, 127], the quantizers' range), some all-zero blocks, some
// saturated ones.
func randBlocks(rng *rand.Rand, dst []byte, nb, bb int, act bool) {
	scales := []uint16{0, 0x8000, 0x0001, 0x03ff, 0x0400, 0x3c00, 0x7bff, 0xfbff, 0x7bfe, 0x7000}
	for b := 0; b < nb; b++ {
		blk := dst[b*bb : (b+1)*bb]
		var h uint16
		if rng.IntN(3) == 0 {
			h = scales[rng.IntN(len(scales))]
		} else {
			h = uint16(rng.Uint32()) & 0xfbff // finite: exponent never all ones
		}
		binary.LittleEndian.PutUint16(blk, h)
		mode := rng.IntN(6)
		for i := 2; i < bb; i++ {
			var q byte
			switch mode {
			case 0: // all zero
			case 1: // saturated: the extremes
				if act {
					q = byte(int8([]int8{127, -127}[rng.IntN(2)]))
				} else if bb == Q8_0BlockBytes {
					q = byte(int8([]int8{127, -128}[rng.IntN(2)]))
				} else {
					q = []byte{0x00, 0xff, 0x0f, 0xf0}[rng.IntN(4)]
				}
			default:
				q = byte(rng.Uint32())
				if act && q == 0x80 {
					q = 0x81
				}
			}
			blk[i] = q
		}
	}
}

// TestKernelExtremes runs raw adversarial blocks through both families: the
// results must be bit-identical, within the kernel bound of the exact
// product, and never saturate (|w| = 128 against |a| = 127 fills an int16
// word to 32512).
func TestKernelExtremes(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, f := range families {
		for trial := 0; trial < 400; trial++ {
			nb := 1 + rng.IntN(12)
			if trial%50 == 0 {
				nb = 128
			}
			rows, n := 1+rng.IntN(9), 1+rng.IntN(8)
			p := &problem{k: nb * 32, rows: rows, n: n, lda: nb * 34, ldo: rows}
			p.w = make([]byte, rows*nb*f.wbb)
			randBlocks(rng, p.w, rows*nb, f.wbb, false)
			p.a = make([]byte, n*nb*34)
			randBlocks(rng, p.a, n*nb, 34, true)
			if trial%7 == 0 { // the worst case: every product is -128 * -127 or 15-8=7 * 127
				for i := 2; i < len(p.w); i++ {
					if (i%f.wbb) >= 2 && f.wbb == Q8_0BlockBytes {
						p.w[i] = 0x80
					}
				}
			}
			goOut := p.run(t, f.matGo)
			asms := asmMats(f)
			asmOuts := make([][]float32, len(asms))
			for j, m := range asms {
				asmOuts[j] = p.run(t, m.mat)
			}
			for r := 0; r < rows; r++ {
				for i := 0; i < n; i++ {
					v := goOut[i*p.ldo+r]
					exact, abs := refDot(nb, f.wbb, p.w[r*nb*f.wbb:], p.a[i*p.lda:])
					if err := math.Abs(float64(v) - exact); err > kernelBound(nb, abs) {
						t.Fatalf("%s nb=%d [%d,%d]: %v, exact %v, error %g > %g", f.name, nb, i, r, v, exact, err, kernelBound(nb, abs))
					}
					for j, m := range asms {
						if g := asmOuts[j][i*p.ldo+r]; math.Float32bits(g) != math.Float32bits(v) {
							t.Fatalf("%s nb=%d [%d,%d]: %s %v (%#08x), pure Go %v (%#08x)", f.name, nb, i, r, m.name,
								g, math.Float32bits(g), v, math.Float32bits(v))
						}
					}
				}
			}
		}
	}
}

// TestKernelNonFinite: with Inf or NaN scales (which CheckScales makes model
// loaders refuse) both families still agree: same Inf, or both NaN (NaN
// payloads are not part of the contract).
func TestKernelNonFinite(t *testing.T) {
	if !haveAsm {
		t.Skip("no assembly")
	}
	rng := rand.New(rand.NewPCG(9, 10))
	for _, f := range families {
		for trial := 0; trial < 200; trial++ {
			nb, rows, n := 1+rng.IntN(6), 1+rng.IntN(9), 1+rng.IntN(6)
			p := &problem{k: nb * 32, rows: rows, n: n, lda: nb * 34, ldo: rows}
			p.w = make([]byte, rows*nb*f.wbb)
			randBlocks(rng, p.w, rows*nb, f.wbb, false)
			p.a = make([]byte, n*nb*34)
			randBlocks(rng, p.a, n*nb, 34, true)
			bad := []uint16{0x7c00, 0xfc00, 0x7e00, 0x7c01}
			blk := rng.IntN(rows * nb)
			binary.LittleEndian.PutUint16(p.w[blk*f.wbb:], bad[rng.IntN(4)])
			if rng.IntN(2) == 0 {
				binary.LittleEndian.PutUint16(p.a[rng.IntN(n*nb)*34:], bad[rng.IntN(4)])
			}
			g := p.run(t, f.matGo)
			for _, m := range asmMats(f) {
				a := p.run(t, m.mat)
				for idx := range g {
					if idx%p.ldo >= rows {
						continue
					}
					if g[idx] != g[idx] && a[idx] != a[idx] {
						continue
					}
					if math.Float32bits(g[idx]) != math.Float32bits(a[idx]) {
						t.Fatalf("%s: out[%d]: pure Go %v, %s %v", f.name, idx, g[idx], m.name, a[idx])
					}
				}
			}
		}
	}
}

// TestMatBatchInvariant: an element's bits do not depend on how many
// activation rows one call processes, on which rows of the weights a call
// covers (so on the tile that computes it), or on the kernel family: every
// call below, through the public function with the AVX-512 tiles off and
// on, must reproduce the pure-Go family's all-rows product.
func TestMatBatchInvariant(t *testing.T) {
	for _, on := range avx512Modes() {
		withAVX512(on, func() { testMatBatchInvariant(t, on) })
	}
}

func testMatBatchInvariant(t *testing.T, avx512 bool) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, f := range families {
		for _, k := range []int{32, 256, 4096} {
			nb := k / 32
			const rows, n = 29, 8
			p := newProblem(rng, f, k, rows, n)
			all := make([]float32, n*rows)
			f.matGo(nb, rows, p.w, n, p.a, p.lda, all, rows)
			check := func(what string, i, r int, v float32) {
				t.Helper()
				if math.Float32bits(v) != math.Float32bits(all[i*rows+r]) {
					t.Fatalf("%s (AVX-512 %v) k=%d [%d,%d]: %s gives %v, pure Go n=%d gives %v", f.name, avx512, k, i, r, what, v, n, all[i*rows+r])
				}
			}
			whole := make([]float32, n*rows)
			f.mat(k, rows, p.w, n, p.a, p.lda, whole, rows)
			for i := 0; i < n; i++ {
				for r := 0; r < rows; r++ {
					check(fmt.Sprintf("n=%d", n), i, r, whole[i*rows+r])
				}
			}
			// One activation row at a time (n = 1), and groups of 2, 3, 5.
			for _, g := range []int{1, 2, 3, 5} {
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
			// Weight rows split at odd places (different tiles and remainders).
			for _, split := range []int{1, 5, 6, 11} {
				out := make([]float32, n*rows)
				for r0 := 0; r0 < rows; r0 += split {
					r1 := min(rows, r0+split)
					f.mat(k, r1-r0, p.w[r0*nb*f.wbb:], n, p.a, p.lda, out[r0:], rows)
				}
				for i := 0; i < n; i++ {
					for r := 0; r < rows; r++ {
						check(fmt.Sprintf("rows split by %d", split), i, r, out[i*rows+r])
					}
				}
			}
		}
	}
}

func TestMatChecks(t *testing.T) {
	for _, f := range families {
		k, rows, n := 64, 3, 2
		rb, ab := 2*f.wbb, 68
		w := make([]byte, rows*rb)
		a := make([]byte, n*ab)
		out := make([]float32, n*rows)
		f.mat(k, rows, w, n, a, ab, out, rows) // fine
		mustPanic(t, f.name+" k%32", func() { f.mat(40, rows, w, n, a, ab, out, rows) })
		mustPanic(t, f.name+" short w", func() { f.mat(k, rows, w[:len(w)-1], n, a, ab, out, rows) })
		mustPanic(t, f.name+" short a", func() { f.mat(k, rows, w, n, a[:len(a)-1], ab, out, rows) })
		mustPanic(t, f.name+" small lda", func() { f.mat(k, rows, w, n, a, ab-1, out, rows) })
		mustPanic(t, f.name+" short out", func() { f.mat(k, rows, w, n, a, ab, out[:len(out)-1], rows) })
		mustPanic(t, f.name+" small ldo", func() { f.mat(k, rows, w, n, a, ab, out, rows-1) })
		mustPanic(t, f.name+" negative rows", func() { f.mat(k, -1, w, n, a, ab, out, rows) })
		mustPanic(t, f.name+" Dot short w", func() { f.dot(k, w[:rb-1], a) })
		mustPanic(t, f.name+" Dot short a", func() { f.dot(k, w, a[:ab-1]) })
		// Nothing to do.
		f.mat(k, 0, nil, n, nil, 0, nil, 0)
		f.mat(k, rows, w, 0, nil, 0, nil, 0)
		// k = 0: empty dot products are 0.
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
	}
}
