package quant

import (
	"math/rand/v2"
	"sync"
	"testing"
)

// The benchmark problem: one 4096x4096 weight matrix (a 7B-class model's
// attention projection) times n = 1 (decode) or 4 (a prefill tile)
// activation rows. GB/s counts weight bytes streamed per second, the number
// that bounds decode speed.
const benchK, benchRows = 4096, 4096

var bench struct {
	once   sync.Once
	f32    []float32 // weights, row-major
	q8, q4 []byte
	x      []float32 // 4 activation rows
	a      []byte    // the same, quantized
}

func benchSetup() {
	bench.once.Do(func() {
		rng := rand.New(rand.NewPCG(13, 14))
		bench.f32 = make([]float32, benchRows*benchK)
		for i := range bench.f32 {
			bench.f32[i] = rng.Float32()*2 - 1
		}
		bench.q8 = make([]byte, benchRows*benchK/32*34)
		bench.q4 = make([]byte, benchRows*benchK/32*18)
		QuantizeQ8_0(bench.q8, bench.f32)
		QuantizeQ4_0(bench.q4, bench.f32)
		bench.x = make([]float32, 4*benchK)
		for i := range bench.x {
			bench.x[i] = float32(rng.NormFloat64())
		}
		bench.a = make([]byte, 4*benchK/32*34)
		QuantizeActivations(bench.a, bench.x)
	})
}

// matF32 is the baseline: a plain float32 matrix-vector loop over the
// unquantized weights (4 accumulators, what the Go compiler makes of it).
func matF32(k, rows int, w []float32, n int, x []float32, out []float32) {
	for r := 0; r < rows; r++ {
		wr := w[r*k : (r+1)*k : (r+1)*k]
		for i := 0; i < n; i++ {
			xi := x[i*k : (i+1)*k : (i+1)*k]
			var s0, s1, s2, s3 float32
			for j := 0; j+4 <= len(wr); j += 4 {
				s0 += wr[j] * xi[j]
				s1 += wr[j+1] * xi[j+1]
				s2 += wr[j+2] * xi[j+2]
				s3 += wr[j+3] * xi[j+3]
			}
			out[i*rows+r] = (s0 + s1) + (s2 + s3)
		}
	}
}

func reportGBs(b *testing.B, bytes int) {
	b.SetBytes(int64(bytes))
	b.ReportMetric(float64(bytes)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
}

func BenchmarkMat(b *testing.B) {
	benchSetup()
	nb := benchK / 32
	out := make([]float32, 4*benchRows)
	type impl struct {
		name string
		run  func(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int)
	}
	for _, n := range []int{1, 4} {
		for _, f := range []struct {
			name   string
			w      []byte
			goImpl func(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int)
			avx2   func(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int)
			avx512 func(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int)
		}{
			{"Q8_0", bench.q8, matQ8Go, matQ8AVX2, matQ8AVX512},
			{"Q4_0", bench.q4, matQ4Go, matQ4AVX2, matQ4AVX512},
		} {
			impls := []impl{{"go", f.goImpl}}
			if haveAsm {
				impls = append(impls, impl{"asm", f.avx2})
			}
			if haveAVX512 {
				impls = append(impls, impl{"avx512", f.avx512})
			}
			for _, im := range impls {
				b.Run(f.name+"/n="+itoa(n)+"/"+im.name, func(b *testing.B) {
					for b.Loop() {
						im.run(nb, benchRows, f.w, n, bench.a, nb*34, out, benchRows)
					}
					reportGBs(b, len(f.w))
				})
			}
		}
		b.Run("F32/n="+itoa(n)+"/go", func(b *testing.B) {
			for b.Loop() {
				matF32(benchK, benchRows, bench.f32, n, bench.x, out)
			}
			reportGBs(b, 4*len(bench.f32))
		})
	}
}

func BenchmarkQuantizeActivations(b *testing.B) {
	benchSetup()
	dst := make([]byte, benchK/32*34)
	b.Run("go", func(b *testing.B) {
		for b.Loop() {
			quantizeQ8Go(dst, bench.x[:benchK])
		}
		b.SetBytes(4 * benchK)
	})
	if haveAsm {
		b.Run("asm", func(b *testing.B) {
			for b.Loop() {
				quantizeQ8Asm(dst, bench.x[:benchK])
			}
			b.SetBytes(4 * benchK)
		})
	}
}

func itoa(n int) string { return string(rune('0' + n)) }

// BenchmarkDecode: F16/BF16 weight rows are decoded on every matrix product
// that uses them, so the decoders are on the engine's hot path too.
func BenchmarkDecode(b *testing.B) {
	src := make([]byte, 2*benchK)
	rng := rand.New(rand.NewPCG(15, 16))
	for i := 0; i < benchK; i++ {
		h := F32ToF16(float32(rng.NormFloat64()))
		src[2*i], src[2*i+1] = byte(h), byte(h>>8)
	}
	dst := make([]float32, benchK)
	type impl struct {
		name string
		f    func([]float32, []byte)
	}
	impls := []impl{{"F16/go", decodeF16Go}, {"BF16/go", decodeBF16Go}}
	if haveAsm {
		impls = append(impls, impl{"F16/asm", decodeF16Asm}, impl{"BF16/asm", decodeBF16Asm})
	}
	for _, im := range impls {
		b.Run(im.name, func(b *testing.B) {
			for b.Loop() {
				im.f(dst, src)
			}
			b.SetBytes(2 * benchK)
		})
	}
}

// BenchmarkMatL2 is BenchmarkMat on the first 128 weight rows only (557 KiB
// of Q8_0), which stay in L2 across iterations: the kernels' instruction
// throughput, without the memory system's share of BenchmarkMat's time.
func BenchmarkMatL2(b *testing.B) {
	benchSetup()
	const rows = 128
	nb := benchK / 32
	out := make([]float32, 4*rows)
	type impl struct {
		name string
		run  func(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int)
	}
	for _, n := range []int{1, 4} {
		for _, f := range []struct {
			name    string
			wbb     int
			w       []byte
			avx2, z func(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int)
		}{
			{"Q8_0", Q8_0BlockBytes, bench.q8, matQ8AVX2, matQ8AVX512},
			{"Q4_0", Q4_0BlockBytes, bench.q4, matQ4AVX2, matQ4AVX512},
		} {
			w := f.w[:rows*nb*f.wbb]
			var impls []impl
			if haveAsm {
				impls = append(impls, impl{"asm", f.avx2})
			}
			if haveAVX512 {
				impls = append(impls, impl{"avx512", f.z})
			}
			for _, im := range impls {
				b.Run(f.name+"/n="+itoa(n)+"/"+im.name, func(b *testing.B) {
					for b.Loop() {
						im.run(nb, rows, w, n, bench.a, nb*34, out, rows)
					}
					reportGBs(b, len(w))
				})
			}
		}
	}
}
