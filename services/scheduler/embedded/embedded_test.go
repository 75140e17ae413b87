package embedded_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
	"github.com/semantic-kv/semantic/services/scheduler/runner"
)

// start runs a scheduler with its embedded pool and a hot cache too small
// to hold anything, so that every reused block comes through the embedded
// pool's connection.
func start(tb testing.TB) *runner.Scheduler {
	tb.Helper()
	cfg := runner.Config{Model: "builtin:small", BlockTokens: 32, KVDType: "float32", MaxBatch: 8, StepTokens: 256, MaxQueue: 64,
		HotCacheBytes: 1, LeaseTTL: 30 * time.Second, PoolCapacityBlocks: 4096, PoolMemoryBudget: 4 << 30, PoolDiskBudget: 8 << 30}
	s, err := runner.Start(context.Background(), cfg, runner.Deps{DataDir: tb.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func run(tb testing.TB, s *runner.Scheduler, agent string, prompt []uint32) *schedulerv1.Usage {
	var u *schedulerv1.Usage
	err := s.Service.Run(context.Background(), &schedulerv1.GenerateRequest{AgentId: agent, PromptTokenIds: prompt, MaxTokens: 1, CacheSalt: agent},
		func(m *schedulerv1.GenerateResponse) error {
			if m.Usage != nil {
				u = m.Usage
			}
			return nil
		})
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

// BenchmarkWarmFromEmbeddedPool is the time of a request whose 2047-token
// prefix is cached in the embedded pool (and not in the hot cache): the
// lookup, lease and transfer of 64 blocks of builtin:small, then one token.
// docs/performance.md has the figures.
func BenchmarkWarmFromEmbeddedPool(b *testing.B) {
	s := start(b)
	prompt := make([]uint32, 2048)
	for i := range prompt {
		prompt[i] = uint32(3 + i*7%250)
	}
	run(b, s, "bench", prompt)
	var ttft float64
	n := 0
	for b.Loop() {
		u := run(b, s, "bench", prompt)
		if u.GetHotCachedTokens() != 0 || u.GetCachedTokens() != 2047 {
			b.Fatalf("not warm from the pool: %v", u)
		}
		ttft += u.GetTimeToFirstTokenMs()
		n++
	}
	b.ReportMetric(ttft/float64(n), "ttft-ms")
}

// The embedded pool serves a warm request from its own handlers in process:
// the whole cached prefix comes from it with nothing in the hot cache, and
// the pool is quiet afterwards. (Warm equals cold token for token is the
// runner's tests' job, over this same path.)
func TestWarmFromEmbeddedPool(t *testing.T) {
	s := start(t)
	prompt := make([]uint32, 300)
	for i := range prompt {
		prompt[i] = uint32(3 + i*11%250)
	}
	cold := run(t, s, "cold", prompt)
	warm := run(t, s, "cold", prompt)
	if cold.GetCachedTokens() != 0 || warm.GetCachedTokens() != 299 || warm.GetHotCachedTokens() != 0 {
		t.Fatalf("cold %v, warm %v", cold, warm)
	}
	if got := s.Service.LeasedBlocks(); got != 0 {
		t.Fatalf("%d blocks still leased", got)
	}
	c := s.Embedded.Node.Pool().Counts()
	if c.ActiveLeases != 0 || c.Free+c.Cached != c.Capacity {
		t.Fatalf("pool not quiet: %+v", c)
	}
}
