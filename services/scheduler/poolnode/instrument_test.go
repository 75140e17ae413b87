package poolnode_test

import (
	"context"
	"errors"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/services/scheduler/poolnode"
	"github.com/semantic-kv/semantic/services/scheduler/poolnode/poolnodetest"
)

var spec = kvspec.Spec{Layers: 1, KVHeads: 1, HeadDim: 4, TokensPerBlock: 2, DType: kvspec.DTypeFloat32, ModelTag: "m"}

// The decorator records the pool calls' spans and metrics under the names
// the dashboards and tests know, and passes every call through.
func TestInstrumentRecordsPoolCalls(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	f := poolnodetest.New("n", spec, 8)
	set, err := poolnode.Instrument(poolnodetest.Set{f}, tp, mp)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	n := set.Order("a")[0]
	tokens := []uint32{5, 6, 7}
	if _, err := n.Lookup(ctx, poolnode.LookupRequest{AgentKey: "a", Tokens: tokens, ModelTag: "m", Realigned: true}); err != nil {
		t.Fatal(err)
	}
	l, err := n.Lease(ctx, poolnode.LeaseRequest{Holder: "h", AgentKey: "a", Count: 2, ModelTag: "m"})
	if err != nil {
		t.Fatal(err)
	}
	w, err := l.NewWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hashes := kvspec.ChainHashes(tokens, spec.TokensPerBlock, "m", "", true)
	payload := make([]byte, spec.BlockBytes())
	for i, h := range hashes {
		hdr := &blockpoolv1.BlockHeader{BlockId: l.Blocks()[i].GetBlockId(), Hash: h[:], TokenCount: uint32(min(2, len(tokens)-2*i)),
			Checksum: kvspec.Checksum(payload), Size: uint64(len(payload))}
		if err := w.Write(hdr, payload); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	ids := []uint32{l.Blocks()[0].GetBlockId()}
	if err := l.ReadBlocks(ctx, ids, func(*blockpoolv1.BlockHeader, []byte) error { return nil }); err != nil {
		t.Fatal(err)
	}
	creq := poolnode.CommitRequest{AgentKey: "a", ModelTag: "m", Hashes: hashes, Tokens: tokens}
	if err := l.Commit(ctx, creq); err != nil {
		t.Fatal(err)
	}
	// A second commit at the old version loses the race: ErrConflict, counted.
	if err := l.Commit(ctx, creq); !errors.Is(err, poolnode.ErrConflict) {
		t.Fatalf("stale commit: %v, want ErrConflict", err)
	}
	if err := l.Release(true); err != nil {
		t.Fatal(err)
	}

	spans := map[string]int{}
	for _, s := range rec.Ended() {
		spans[s.Name()]++
	}
	for name, want := range map[string]int{"lookup": 1, "lease": 1, "commit": 2} {
		if spans[name] != want {
			t.Errorf("%d %q spans, want %d (all: %v)", spans[name], name, want, spans)
		}
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok {
				for _, dp := range sum.DataPoints {
					got[m.Name] += dp.Value
				}
			}
		}
	}
	bb := int64(spec.BlockBytes())
	for name, want := range map[string]int64{
		"semantic.scheduler.pool_write_bytes": 2 * bb,
		"semantic.scheduler.pool_read_bytes":  bb,
		"semantic.scheduler.commit_conflicts": 1,
	} {
		if got[name] != want {
			t.Errorf("%s = %d, want %d", name, got[name], want)
		}
	}
}

// A block the caller refuses (its fn fails) is not counted as read.
func TestInstrumentCountsOnlyAcceptedReads(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	f := poolnodetest.New("n", spec, 8)
	set, err := poolnode.Instrument(poolnodetest.Set{f}, nil, mp)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	l, err := set.Nodes()[0].Lease(ctx, poolnode.LeaseRequest{Holder: "h", AgentKey: "a", Count: 1, ModelTag: "m"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(false)
	w, _ := l.NewWriter(ctx)
	payload := make([]byte, spec.BlockBytes())
	h := kvspec.ChainHashes([]uint32{1, 2}, 2, "m", "", true)[0]
	if err := w.Write(&blockpoolv1.BlockHeader{BlockId: l.Blocks()[0].GetBlockId(), Hash: h[:], TokenCount: 2, Checksum: kvspec.Checksum(payload), Size: uint64(len(payload))}, payload); err != nil {
		t.Fatal(err)
	}
	refused := status.Error(codes.DataLoss, "checksum")
	if err := l.ReadBlocks(ctx, []uint32{l.Blocks()[0].GetBlockId()}, func(*blockpoolv1.BlockHeader, []byte) error { return refused }); err != refused {
		t.Fatalf("ReadBlocks = %v, want the callback's error", err)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == "semantic.scheduler.pool_read_bytes" {
				for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
					if dp.Value != 0 {
						t.Errorf("refused block counted: %d bytes", dp.Value)
					}
				}
			}
		}
	}
}
