package pool

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/semantic-kv/semantic/pkg/kvspec"
)

// BenchmarkLeaseRelease: in-process Lease+Release pairs (4 fresh blocks each).
func BenchmarkLeaseRelease(b *testing.B) {
	e := newEnv(b, 4096)
	req := LeaseRequest{Holder: "b", AgentID: "a", Count: 4, ModelTag: "test-model"}
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			g, err := e.p.Lease(ctx, req)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := e.p.Release(ctx, g.LeaseID, g.Epoch, g.Holder, false); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				g, err := e.p.Lease(ctx, req)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := e.p.Release(ctx, g.LeaseID, g.Epoch, g.Holder, false); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// BenchmarkCommitAgent: durable (fsync) agent commits through the pool's
// persistence path, from 1 and 16 concurrent committers. Each commit names an
// already-cached 4-block chain, so the cost is the bbolt transaction.
func BenchmarkCommitAgent(b *testing.B) {
	for _, writers := range []int{1, 16} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			e := newEnv(b, 64, func(o *Options) { o.NoSync = false })
			toks := tokens(1, 16)
			e.commitAgent("seed", toks, 0)
			hs := kvspec.ChainHashes(toks, 4, "test-model", "", true)
			var n atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for w := range writers {
				wg.Go(func() {
					var v uint64
					for n.Add(1) <= int64(b.N) {
						var err error
						v, err = e.p.CommitAgent(ctx, CommitRequest{AgentID: fmt.Sprint("w", w), ModelTag: "test-model", Hashes: hs, Tokens: toks, ExpectedVersion: v})
						if err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "commits/s")
		})
	}
}
