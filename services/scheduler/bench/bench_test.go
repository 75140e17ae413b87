package bench

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/semantic-kv/semantic/services/scheduler/runner"
)

// The benchmark harness itself, on the tiny model: every warm mode reuses the
// cached prefix (hot cache, pool after a scheduler restart, pool after its own
// restart), and cold reuses nothing. The timings are not checked.
func TestHarnessModes(t *testing.T) {
	cfg := runner.Config{
		Model: "builtin:tiny", BlockTokens: 16, KVDType: "float32", MaxBatch: 8, StepTokens: 128, MaxQueue: 16,
		HotCacheBytes: 64 << 20, LeaseTTL: 5 * time.Second, PoolCapacityBlocks: 1024,
		PoolMemoryBudget: 64 << 20, PoolDiskBudget: 1 << 30,
	}
	h := &Harness{Dir: t.TempDir(), Config: cfg, Log: slog.New(slog.DiscardHandler)}
	ctx := context.Background()
	if err := h.StartPool(); err != nil {
		t.Fatal(err)
	}
	if err := h.StartScheduler(ctx); err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	rows, err := TTFT(ctx, h, []int{128}, 1, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	r := rows[0]
	if r.CachedCold != 0 || r.CachedHot != 128-16 || r.CachedPool != 127 || r.CachedDisk != 127 {
		t.Fatalf("cached tokens: cold %d, hot %d, pool %d, after pool restart %d", r.CachedCold, r.CachedHot, r.CachedPool, r.CachedDisk)
	}
	tp, err := Throughput(ctx, h, []int{2}, 16, 4, t.Logf)
	if err != nil || len(tp) != 1 || tp[0].Batched <= 0 || tp[0].OneByOne <= 0 {
		t.Fatalf("throughput: %+v %v", tp, err)
	}
}
