package pool

import (
	"testing"

	"github.com/semantic-kv/semantic/pkg/kvspec"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

func TestMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(ctx)
	e := newEnv(t, 10, func(o *Options) { o.MeterProvider = mp })
	e.commitAgent("a", tokens(1, 8), 0)
	e.p.Lookup(ctx, LookupRequest{AgentID: "a", Tokens: tokens(1, 12), ModelTag: "test-model"})
	e.p.Lease(ctx, LeaseRequest{AgentID: "b", Count: 11, ModelTag: "test-model"}) // invalid: > capacity
	g := e.lease("b", 2)
	e.p.KeepAlive(ctx, g.LeaseID, g.Epoch, g.Holder)
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	sums := map[string]int64{}
	gauges := map[string]int64{}
	hists := map[string]bool{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					sums[m.Name] += dp.Value
				}
			case metricdata.Gauge[int64]:
				for _, dp := range d.DataPoints {
					if v, ok := dp.Attributes.Value("state"); ok {
						gauges[m.Name+"."+v.AsString()] = dp.Value
					}
				}
			case metricdata.Histogram[float64]:
				hists[m.Name] = len(d.DataPoints) > 0
			}
		}
	}
	const p = "semantic.blockpool."
	want := map[string]int64{
		p + "leases.granted": 2, p + "leases.released": 1, p + "leases.renewed": 1,
		p + "lookup.hit.tokens": 8, p + "lookup.miss.tokens": 4, p + "lookup.hit.blocks": 2, p + "lookup.miss.blocks": 1,
		p + "bytes.written": int64(2 * 2 * testSpec().BlockBytes()), // 2 blocks, memory + disk
	}
	for k, v := range want {
		if sums[k] != v {
			t.Errorf("%s = %d, want %d", k, sums[k], v)
		}
	}
	if gauges[p+"blocks.leased"] != 2 || gauges[p+"blocks.cached"] != 2 || gauges[p+"blocks.free"] != 6 {
		t.Errorf("gauges %v", gauges)
	}
	if !hists[p+"bbolt.commit.latency"] {
		t.Error("no commit latency recorded")
	}
	_ = kvspec.Hash{}
}
