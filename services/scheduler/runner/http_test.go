package runner

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
)

// startHTTP is a scheduler whose HTTP API listens on loopback.
func startHTTP(t *testing.T, model string, deps Deps) (*testScheduler, string) {
	t.Helper()
	cfg := testConfig()
	cfg.HTTPListen = "127.0.0.1:0"
	if model != "" {
		cfg.Model = model
	}
	ts := startSchedulerWith(t, t.TempDir(), cfg, deps)
	if ts.HTTP == nil {
		t.Fatal("no HTTP server")
	}
	return ts, "http://" + ts.HTTP.Addr().String()
}

// An HTTP request is one server span, and the service's phases (lookup,
// lease, load, commit) are its children: the API calls the service directly,
// with no gRPC hop in between. A caller's traceparent is the span's parent.
func TestHTTPSpanParentsServiceSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	ts, base := startHTTP(t, "", Deps{TracerProvider: tp})
	model := ts.Model.Name
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/completions", strings.NewReader(
		`{"model":"`+model+`","prompt":"hello","max_tokens":3}`))
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	// The propagator is the process's global one, which pkg/telemetry sets
	// to W3C trace context.
	prev := otel.GetTextMapPropagator()
	otel.SetTextMapPropagator(propagation.TraceContext{})
	defer otel.SetTextMapPropagator(prev)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	var server sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "POST /v1/completions" {
			server = s
		}
	}
	if server == nil {
		t.Fatal("no server span")
	}
	if server.SpanContext().TraceID().String() != traceID || server.Parent().SpanID().String() != "00f067aa0ba902b7" {
		t.Fatalf("server span not joined to the caller's trace: %v, parent %v", server.SpanContext(), server.Parent())
	}
	children := map[string]bool{}
	for _, s := range rec.Ended() {
		if s.Parent().SpanID() == server.SpanContext().SpanID() {
			children[s.Name()] = true
		}
	}
	for _, want := range []string{"lookup", "lease", "load", "commit"} {
		if !children[want] {
			t.Errorf("no %q span under the HTTP span (children %v)", want, children)
		}
	}
	events := map[string]bool{}
	for _, e := range server.Events() {
		events[e.Name] = true
	}
	if !events["first token"] {
		t.Errorf("no first-token event: %v", server.Events())
	}
}

// Close (the process's shutdown) drains the HTTP API: a stream still running
// when its deadline passes is cancelled, its lease released, and no
// goroutine is left behind (TestMain checks).
func TestHTTPDrainCancelsStreams(t *testing.T) {
	// builtin:small: slow enough that the stream is still running.
	ts, base := startHTTP(t, "builtin:small", Deps{})
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/chat/completions", strings.NewReader(
		fmt.Sprintf(`{"model":%q,"max_tokens":%d,"temperature":0,"stream":true,"messages":[{"role":"user","content":"Go on and on."}]}`,
			ts.Model.Name, ts.Model.Config.SeqLen-32)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if ts.Service.LeasedBlocks() == 0 {
		t.Fatal("no lease while streaming")
	}
	// A deadline already past: in-flight requests are cancelled at once.
	ctx, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	began := time.Now()
	if err := ts.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(br)
	if strings.Contains(string(rest), "[DONE]") {
		t.Fatal("the stream finished before the drain deadline: nothing was cancelled")
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Fatalf("drain took %v", took)
	}
	if n, busy := ts.Service.LeasedBlocks(), ts.Service.BusyAgents(); n != 0 || busy != 0 {
		t.Fatalf("after drain: %d blocks leased, %d agents busy", n, busy)
	}
	checkPoolQuiet(t, ts.pool)
	if _, err := http.Get(base + "/health"); err == nil {
		t.Fatal("still serving after drain")
	}
	http.DefaultClient.CloseIdleConnections()
}

// Defect 6 (issue 13) over HTTP: a response says whether its turn was saved
// (X-Semantic-Turn-Saved: a header on a plain response, a trailer after a
// stream) and, when not, why.
func TestHTTPTurnSavedHeader(t *testing.T) {
	ts, base := startHTTP(t, "builtin:small", Deps{})
	post := func(body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/completions", strings.NewReader(body))
		req.Header.Set("X-Agent-ID", "http-lossy")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	model := ts.Model.Name
	resp := post(`{"model":"` + model + `","prompt":"hello","max_tokens":2}`)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Semantic-Turn-Saved") != "true" {
		t.Fatalf("want 200 with X-Semantic-Turn-Saved: true, got %d %v %s", resp.StatusCode, resp.Header, body)
	}
	resp = post(`{"model":"` + model + `","prompt":"hello there","max_tokens":300,"stream":true}`)
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil { // the stream has begun
		t.Fatal(err)
	}
	if _, err := ts.pool.DeleteAgent(context.Background(), &blockpoolv1.DeleteAgentRequest{AgentId: "http-lossy"}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(br); err != nil {
		t.Fatal(err)
	}
	if resp.Trailer.Get("X-Semantic-Turn-Saved") != "false" || resp.Trailer.Get("X-Semantic-Turn-Unsaved-Reason") != "version_conflict" {
		t.Fatalf("want trailers saying the turn was not saved (version_conflict), got %v", resp.Trailer)
	}
}
