package engine

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/model"
)

var smallModel = sync.OnceValues(func() (*model.Model, error) { return model.Load("builtin:small", "") })

// loadSmall is builtin:small, or the model named by $SEMANTIC_BENCH_MODEL
// (e.g. gguf:/tmp/r42-Q8_0.gguf from bin/semantic-gguf random) to measure
// the engine alone on any file.
func loadSmall(b *testing.B) *model.Model {
	if ref := os.Getenv("SEMANTIC_BENCH_MODEL"); ref != "" {
		m, err := model.Load(ref, "")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { m.Close() })
		return m
	}
	m, err := smallModel()
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkGemm compares the kernel (single goroutine, and over all workers)
// with the naive triple loop on the same shapes, in GFLOP/s.
func BenchmarkGemm(b *testing.B) {
	for _, sh := range []struct{ m, n, k int }{{1, 1376, 512}, {16, 1376, 512}, {128, 1376, 512}, {128, 512, 1376}} {
		r := &model.SplitMix64{State: 1}
		a, w := randSlice(r, sh.m*sh.k), randSlice(r, sh.n*sh.k)
		c := make([]float32, sh.m*sh.n)
		flops := 2 * float64(sh.m*sh.n*sh.k)
		e := &Engine{workers: 0}
		run := func(name string, f func()) {
			b.Run(fmt.Sprintf("%s/m=%d,n=%d,k=%d", name, sh.m, sh.n, sh.k), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					f()
				}
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
		run("naive", func() { naiveGemm(sh.m, sh.n, sh.k, a, sh.k, w, sh.k, c, sh.n) })
		saved := useAsm
		useAsm = false
		run("go-1thread", func() { gemmCols(sh.m, sh.k, a, sh.k, nil, w, sh.k, c, sh.n, 0, sh.n) })
		useAsm = saved
		if haveAsm {
			run("asm-1thread", func() { gemmCols(sh.m, sh.k, a, sh.k, nil, w, sh.k, c, sh.n, 0, sh.n) })
		}
		if pa := packPairs(nil, sh.m, sh.k, a, sh.k); pa != nil {
			run("avx512-1thread", func() { gemmCols(sh.m, sh.k, a, sh.k, pa, w, sh.k, c, sh.n, 0, sh.n) })
		}
		e.workers, e.pool = 2, newWorkerPool(2)
		run("asm-2workers", func() { e.gemm(sh.m, sh.n, sh.k, a, sh.k, packPairs(nil, sh.m, sh.k, a, sh.k), w, c, sh.n) })
	}
}

// BenchmarkDecode: tokens/s of decode steps at batch 1, 4, 16 on
// builtin:small. ctx=256: each sequence holds 128-384 positions of context;
// ctx=1K: 1024-1152 positions (one prompt is prefilled, its blocks copied to
// the other sequences). $SEMANTIC_BENCH_KV picks the pages' type (float32,
// float16, q8_0 or q4_0; float32 when unset), with the same names.
func BenchmarkDecode(b *testing.B) {
	m := loadSmall(b)
	if name := os.Getenv("SEMANTIC_BENCH_KV"); name != "" {
		dt, err := kvspec.ParseDType(name)
		if err != nil {
			b.Fatalf("SEMANTIC_BENCH_KV: %v", err)
		}
		kvType = dt
		defer func() { kvType = kvspec.DTypeUnspecified }()
	}
	for _, ctx := range []struct {
		name   string
		lo, hi int
	}{{"256", 128, 384}, {"1K", 1024, 1152}} {
		for _, batch := range []int{1, 4, 16} {
			b.Run(fmt.Sprintf("ctx=%s/batch=%d", ctx.name, batch), func(b *testing.B) {
				e := newEngine(b, m, 16, 0)
				r := &model.SplitMix64{State: 3}
				first := newSeq(e, ctx.hi)
				if _, err := e.Step([]StepInput{{Seq: first, Tokens: randTokens(r, ctx.lo, m.Config.Vocab)}}); err != nil {
					b.Fatal(err)
				}
				var in []StepInput
				for i := 0; i < batch; i++ {
					s := first
					if i > 0 {
						s = newSeq(e, ctx.hi)
						s.Len = first.Len
						for j := range s.Blocks {
							copy(s.Blocks[j].Data, first.Blocks[j].Data)
							copy(s.Blocks[j].Raw, first.Blocks[j].Raw)
						}
					}
					in = append(in, StepInput{Seq: s, Tokens: []uint32{uint32(r.Next() % 256)}})
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					for _, x := range in {
						if x.Seq.Len >= ctx.hi {
							x.Seq.Len = ctx.lo
						}
					}
					if _, err := e.Step(in); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "tokens/s")
			})
		}
	}
}

// BenchmarkPrefill: tokens/s of one prompt prefilled in one step.
func BenchmarkPrefill(b *testing.B) {
	m := loadSmall(b)
	for _, n := range []int{512, 1024, 2048, 4096} {
		b.Run(fmt.Sprintf("tokens=%d", n), func(b *testing.B) {
			e := newEngine(b, m, 16, 0)
			r := &model.SplitMix64{State: 4}
			prompt := randTokens(r, n, m.Config.Vocab)
			s := newSeq(e, n)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s.Len = 0
				if _, err := e.Step([]StepInput{{Seq: s, Tokens: prompt}}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
