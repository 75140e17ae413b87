package service

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// vllmMetrics are the gauges, counters and histograms a vLLM server exports,
// under vLLM's names and meanings, so that what already reads them works
// unchanged: vLLM's Grafana dashboards, and the Kubernetes Gateway API
// Inference Extension's endpoint picker, which routes by
// vllm:num_requests_waiting and vllm:kv_cache_usage_perc. They sit beside
// the semantic_* instruments (which are OpenTelemetry's and cannot carry a
// colon in their names) as a Prometheus collector on the same /metrics, and
// are switched off with --vllm-metrics=false. docs/cluster.md#metrics lists
// them with what each one counts here.
type vllmMetrics struct {
	ttft, itl, e2e prometheus.Histogram
}

// vLLM's bucket boundaries, with finer ones below its smallest for the
// inter-token latency (a small model on CPU decodes in milliseconds).
var (
	vllmTTFTBuckets = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560}
	vllmITLBuckets  = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80}
	vllmE2EBuckets  = []float64{0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680}
)

// registerVLLM registers the set on reg with the served model's name as the
// model_name label, as vLLM labels them.
func (s *Server) registerVLLM(reg prometheus.Registerer) (*vllmMetrics, error) {
	labels := prometheus.Labels{"model_name": s.cfg.Model.Name}
	hist := func(name, help string, buckets []float64) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets, ConstLabels: labels})
	}
	m := &vllmMetrics{
		ttft: hist("vllm:time_to_first_token_seconds", "Time from a request's arrival to its first token.", vllmTTFTBuckets),
		itl:  hist("vllm:inter_token_latency_seconds", "Time between two tokens of one request.", vllmITLBuckets),
		e2e:  hist("vllm:e2e_request_latency_seconds", "Time from a request's arrival to its end, for requests that finished.", vllmE2EBuckets),
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels}, f)
	}
	for _, c := range []prometheus.Collector{
		m.ttft, m.itl, m.e2e,
		gauge("vllm:num_requests_running", "Sequences in the engine's batch.", func() float64 { return float64(s.cfg.Loop.Stats().Running) }),
		gauge("vllm:num_requests_waiting", "Requests admitted and waiting for the engine.", func() float64 { return float64(s.cfg.Loop.Stats().Waiting) }),
		gauge("vllm:kv_cache_usage_perc", "Fraction of the healthy pool nodes' KV blocks this scheduler holds leased (1 = full).", s.kvUsage),
		counter("vllm:prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache (vLLM counts tokens).", func() float64 { return float64(s.promptToks.Load()) }),
		counter("vllm:prefix_cache_hits_total", "Prompt tokens whose KV came from the cache.", func() float64 { return float64(s.cachedToks.Load()) }),
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// kvUsage is this scheduler's leased blocks over the capacity of the
// healthy pool nodes: vLLM's "GPU KV cache usage" for a server whose KV
// lives in the pool.
func (s *Server) kvUsage() float64 {
	capacity := 0
	for _, n := range s.pool.Nodes() {
		if n.Healthy() {
			capacity += n.CapacityBlocks()
		}
	}
	if capacity == 0 {
		return 0
	}
	return min(1, float64(s.leasedBlocks.Load())/float64(capacity))
}

// tokenTimer feeds the latency histograms as a request's tokens arrive (a
// nil *vllmMetrics records nothing).
type tokenTimer struct {
	m        *vllmMetrics
	arrival  time.Time
	last     time.Time
	started  bool
	finished bool
}

func (m *vllmMetrics) timer(arrival time.Time) *tokenTimer {
	return &tokenTimer{m: m, arrival: arrival}
}

// token records one token's arrival.
func (t *tokenTimer) token(now time.Time) {
	if t.m == nil {
		return
	}
	if !t.started {
		t.m.ttft.Observe(now.Sub(t.arrival).Seconds())
		t.started = true
	} else {
		t.m.itl.Observe(now.Sub(t.last).Seconds())
	}
	t.last = now
}

// done records a request that finished well.
func (t *tokenTimer) done(now time.Time) {
	if t.m == nil || t.finished {
		return
	}
	t.finished = true
	t.m.e2e.Observe(now.Sub(t.arrival).Seconds())
}
