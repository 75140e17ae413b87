package runner

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
)

// The vLLM-compatible metrics count what vLLM's do: prompt tokens queried
// and hit in the prefix cache, one first-token latency and one end-to-end
// latency per request, one inter-token latency per token after the first,
// and gauges of the batch and of KV usage; --vllm-metrics=false exports none.
func TestVLLMMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := testConfig()
	cfg.VLLMMetrics = true
	ts := startSchedulerWith(t, t.TempDir(), cfg, Deps{Prometheus: reg})
	prompt := concat(encodeBytes("The vLLM-compatible metrics, warm and cold.", true))
	var promptToks, cached, generated int
	for range 2 { // cold, then warm
		r := mustGenerate(t, ts.client, &schedulerv1.GenerateRequest{AgentId: "vllm", PromptTokenIds: prompt, MaxTokens: 5})
		promptToks += int(r.usage.GetPromptTokens())
		cached += int(r.usage.GetCachedTokens())
		generated += len(r.tokens)
	}
	if cached == 0 {
		t.Fatal("the second request was not warm")
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*dto.MetricFamily{}
	for _, f := range families {
		got[f.GetName()] = f
		if l := f.GetMetric()[0].GetLabel(); len(l) != 1 || l[0].GetName() != "model_name" || l[0].GetValue() != ts.Model.Name {
			t.Errorf("%s: labels %v, want model_name=%s", f.GetName(), l, ts.Model.Name)
		}
	}
	value := func(name string) float64 {
		f := got[name]
		if f == nil {
			t.Fatalf("%s is not exported", name)
		}
		m := f.GetMetric()[0]
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue()
		}
		return float64(m.GetHistogram().GetSampleCount())
	}
	for name, want := range map[string]float64{
		"vllm:prefix_cache_queries_total":  float64(promptToks),
		"vllm:prefix_cache_hits_total":     float64(cached),
		"vllm:time_to_first_token_seconds": 2,
		"vllm:e2e_request_latency_seconds": 2,
		"vllm:inter_token_latency_seconds": float64(generated - 2),
		"vllm:num_requests_running":        0,
		"vllm:num_requests_waiting":        0,
		"vllm:kv_cache_usage_perc":         0, // nothing leased once idle
	} {
		if v := value(name); v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}

	off := prometheus.NewRegistry()
	cfg.VLLMMetrics = false
	startSchedulerWith(t, t.TempDir(), cfg, Deps{Prometheus: off})
	if fams, _ := off.Gather(); len(fams) != 0 {
		t.Errorf("--vllm-metrics=false exported %d families", len(fams))
	}
}
