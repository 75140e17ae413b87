package quant

import (
	"math/rand/v2"
	"sync"
	"testing"
)

// The K-quant benchmark problem: the same 4096x4096 matrix and activations
// as BenchmarkMat (run both for the Q8_0/Q4_0 figures of the same run).
// The weights are random bytes with realistic float16 scales rather than
// quantized (the reference quantizers would take seconds on 16M weights);
// the kernels' speed does not depend on the values.
var kbench struct {
	once       sync.Once
	q4, q5, q6 []byte
	a          []byte // 4 activation rows of Q8_K
}

func benchKSetup() {
	benchSetup()
	kbench.once.Do(func() {
		rng := rand.New(rand.NewPCG(17, 18))
		nb := benchRows * benchK / 256
		for _, p := range []struct {
			t   kType
			dst *[]byte
		}{{kQ4, &kbench.q4}, {kQ5, &kbench.q5}, {kQ6, &kbench.q6}} {
			*p.dst = make([]byte, nb*p.t.blockBytes())
			randKBlocks(rng, *p.dst, nb, p.t, false)
		}
		kbench.a = make([]byte, 4*benchK/256*Q8_KBlockBytes)
		QuantizeActivationsK(kbench.a, bench.x)
	})
}

func BenchmarkMatK(b *testing.B) {
	benchKSetup()
	nb := benchK / 256
	out := make([]float32, 4*benchRows)
	for _, n := range []int{1, 4} {
		for _, f := range []struct {
			name string
			t    kType
			w    []byte
		}{{"Q4_K", kQ4, kbench.q4}, {"Q5_K", kQ5, kbench.q5}, {"Q6_K", kQ6, kbench.q6}} {
			impls := []struct {
				name string
				run  func(t kType, nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int)
			}{{"go", matKGo}}
			if haveAsm {
				impls = append(impls, struct {
					name string
					run  func(t kType, nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int)
				}{"asm", matKAsm})
			}
			for _, im := range impls {
				b.Run(f.name+"/n="+itoa(n)+"/"+im.name, func(b *testing.B) {
					for b.Loop() {
						im.run(f.t, nb, benchRows, f.w, n, kbench.a, nb*Q8_KBlockBytes, out, benchRows)
					}
					reportGBs(b, len(f.w))
				})
			}
		}
	}
}

func BenchmarkQuantizeActivationsK(b *testing.B) {
	benchKSetup()
	dst := make([]byte, benchK/256*Q8_KBlockBytes)
	b.Run("go", func(b *testing.B) {
		for b.Loop() {
			quantizeQ8KGo(dst, bench.x[:benchK])
		}
		b.SetBytes(4 * benchK)
	})
	if haveAsm {
		b.Run("asm", func(b *testing.B) {
			for b.Loop() {
				quantizeQ8KAsm(dst, bench.x[:benchK])
			}
			b.SetBytes(4 * benchK)
		})
	}
}
