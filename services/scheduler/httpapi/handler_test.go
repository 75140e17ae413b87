package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
	"github.com/semantic-kv/semantic/pkg/rpcstatus"
	"github.com/semantic-kv/semantic/services/scheduler/service"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	if code == 0 {
		if err := goleak.Find(
			// grpc's background goroutines that outlive a test by design.
			goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
			goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// The fake model's vocabulary: token i spells words[i].
var words = []string{" Once", " upon", " a", " time", ".", "\n", " The", " end"}

func wordBytes(id uint32) []byte {
	if int(id) >= len(words) {
		return nil
	}
	return []byte(words[id])
}

const testModel = "test-model"

// fakeService stands in for service.Server: it records requests and plays a
// script (by default: tokens 0..3, then FINISH_REASON_EOS).
type fakeService struct {
	mu    sync.Mutex
	reqs  []*schedulerv1.GenerateRequest
	ready error
	run   func(ctx context.Context, req *schedulerv1.GenerateRequest, send func(*schedulerv1.GenerateResponse) error) error
}

func (f *fakeService) Run(ctx context.Context, req *schedulerv1.GenerateRequest, send func(*schedulerv1.GenerateResponse) error) error {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	run := f.run
	f.mu.Unlock()
	if run != nil {
		return run(ctx, req, send)
	}
	return playTokens(send, []int{0, 1, 2, 3}, schedulerv1.FinishReason_FINISH_REASON_EOS, 7)
}

func (f *fakeService) Ready() error { return f.ready }

func (f *fakeService) last() *schedulerv1.GenerateRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		return nil
	}
	return f.reqs[len(f.reqs)-1]
}

// playTokens sends ids as token messages and a final message with usage
// (prompt tokens 10, of which cached).
func playTokens(send func(*schedulerv1.GenerateResponse) error, ids []int, finish schedulerv1.FinishReason, cached uint32) error {
	for i, id := range ids {
		if err := send(&schedulerv1.GenerateResponse{TokenId: uint32(id), Index: uint32(i), Text: words[id]}); err != nil {
			return err
		}
	}
	return send(&schedulerv1.GenerateResponse{FinishReason: finish, Usage: &schedulerv1.Usage{
		PromptTokens: 10, CachedTokens: cached, CompletionTokens: uint32(len(ids))}})
}

func newTestServer(t *testing.T, svc *fakeService, mod func(*Config)) *httptest.Server {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg := Config{Service: svc, Model: Model{ID: testModel, ContextLength: 512, TokenBytes: wordBytes}, MaxBodyBytes: 1 << 20, Logger: log}
	if mod != nil {
		mod(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func post(t *testing.T, srv *httptest.Server, path, body string, headers ...string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) response {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

// get walks a decoded JSON value along keys and indexes.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			a, _ := v.([]any)
			if k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

// openAIParamOf and anthropicMessageOf read the two error formats.
func openAIParamOf(r response) any { return get(r.body, "error", "param") }

func anthropicErrorOf(r response) (string, string) {
	typ, _ := get(r.body, "error", "type").(string)
	msg, _ := get(r.body, "error", "message").(string)
	if get(r.body, "type") != "error" {
		return "", ""
	}
	return typ, msg
}

func chatBody(extra string) string {
	b := `{"model":"test-model","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}]`
	if extra != "" {
		b += "," + extra
	}
	return b + "}"
}

func messagesBody(extra string) string {
	b := `{"model":"test-model","max_tokens":16,"system":"Be brief.","messages":[{"role":"user","content":"Hi"}]`
	if extra != "" {
		b += "," + extra
	}
	return b + "}"
}

func TestChatCompletion(t *testing.T) {
	svc := &fakeService{}
	srv := newTestServer(t, svc, nil)
	r := post(t, srv, "/v1/chat/completions", chatBody(`"temperature":0,"max_completion_tokens":32,"stop":"\n"`))
	if r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if get(r.body, "object") != "chat.completion" || get(r.body, "model") != testModel ||
		get(r.body, "choices", 0, "message", "role") != "assistant" ||
		get(r.body, "choices", 0, "message", "content") != " Once upon a time" ||
		get(r.body, "choices", 0, "finish_reason") != "stop" ||
		get(r.body, "usage", "prompt_tokens") != 10.0 || get(r.body, "usage", "completion_tokens") != 4.0 ||
		get(r.body, "usage", "total_tokens") != 14.0 || get(r.body, "usage", "prompt_tokens_details", "cached_tokens") != 7.0 ||
		!strings.HasPrefix(get(r.body, "id").(string), "chatcmpl-") {
		t.Fatalf("response %s", r.raw)
	}
	req := svc.last()
	if len(req.GetMessages()) != 2 || req.GetMessages()[0].GetRole() != "system" || req.GetMessages()[1].GetContent() != "Hi" ||
		req.GetMaxTokens() != 32 || req.GetTemperature() != 0 || req.GetSeed() != 0 || len(req.GetStop()) != 1 || req.GetStop()[0] != "\n" {
		t.Fatalf("service request %v", req)
	}
	if got := r.header.Get(HeaderAgentID); got != req.GetAgentId() || !strings.HasPrefix(got, "conv-") {
		t.Fatalf("agent header %q, request %q", got, req.GetAgentId())
	}

	// Defaults: the rest of the context, temperature 1 with a random seed;
	// text parts are joined; developer is system.
	post(t, srv, "/v1/chat/completions", `{"model":"test-model","messages":[{"role":"developer","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},{"role":"user","content":"Hi"}]}`)
	req = svc.last()
	if req.GetMaxTokens() != 512 || req.GetTemperature() != 1 || req.GetSeed() == 0 || req.GetMessages()[0].GetRole() != "system" ||
		req.GetMessages()[0].GetContent() != "a\nb" {
		t.Fatalf("defaults: %v", req)
	}
	// top_p 0 is greedy; top_p 1 is off.
	post(t, srv, "/v1/chat/completions", chatBody(`"top_p":0`))
	if req = svc.last(); req.GetTemperature() != 0 || req.GetTopP() != 0 {
		t.Fatalf("top_p 0: %v", req)
	}
	post(t, srv, "/v1/chat/completions", chatBody(`"top_p":0.5,"seed":-3`))
	if req = svc.last(); req.GetTopP() != 0.5 || req.GetSeed() != uint64(1<<64-3) {
		t.Fatalf("top_p 0.5: %v", req)
	}
}

// sseEvents reads a text/event-stream body into its events.
type sseEvent struct {
	name string
	data string
}

func readSSE(t *testing.T, body io.Reader) []sseEvent {
	t.Helper()
	var out []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(body)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.data != "" || cur.name != "" {
				out = append(out, cur)
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			cur.data = strings.TrimPrefix(line, "data: ")
		default:
			t.Fatalf("unexpected line %q", line)
		}
	}
	return out
}

func stream(t *testing.T, srv *httptest.Server, path, body string) (*http.Response, []sseEvent) {
	t.Helper()
	resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(resp.Body)
		t.Fatalf("%d %s", resp.StatusCode, raw)
	}
	return resp, readSSE(t, resp.Body)
}

func TestChatStream(t *testing.T) {
	srv := newTestServer(t, &fakeService{}, nil)
	for _, usage := range []bool{false, true} {
		resp, evs := stream(t, srv, "/v1/chat/completions", chatBody(fmt.Sprintf(`"stream":true,"stream_options":{"include_usage":%v}`, usage)))
		if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Fatalf("content type %q", ct)
		}
		if evs[len(evs)-1].data != "[DONE]" {
			t.Fatalf("last event %v", evs[len(evs)-1])
		}
		var chunks []map[string]any
		for _, ev := range evs[:len(evs)-1] {
			var m map[string]any
			if err := json.Unmarshal([]byte(ev.data), &m); err != nil || m["object"] != "chat.completion.chunk" {
				t.Fatalf("chunk %q: %v", ev.data, err)
			}
			if _, has := m["usage"]; has != usage {
				t.Fatalf("usage field present %v in %q", has, ev.data)
			}
			chunks = append(chunks, m)
		}
		if get(chunks[0], "choices", 0, "delta", "role") != "assistant" {
			t.Fatalf("first chunk %v", chunks[0])
		}
		var text strings.Builder
		i := 1
		for ; get(chunks[i], "choices", 0, "finish_reason") == nil; i++ {
			text.WriteString(get(chunks[i], "choices", 0, "delta", "content").(string))
		}
		if text.String() != " Once upon a time" || get(chunks[i], "choices", 0, "finish_reason") != "stop" {
			t.Fatalf("text %q, finish chunk %v", text.String(), chunks[i])
		}
		if usage {
			last := chunks[len(chunks)-1]
			if len(last["choices"].([]any)) != 0 || get(last, "usage", "prompt_tokens_details", "cached_tokens") != 7.0 {
				t.Fatalf("usage chunk %v", last)
			}
		} else if i != len(chunks)-1 {
			t.Fatalf("%d chunks after the finish", len(chunks)-1-i)
		}
	}
}

func TestCompletions(t *testing.T) {
	svc := &fakeService{}
	srv := newTestServer(t, svc, nil)
	r := post(t, srv, "/v1/completions", `{"model":"test-model","prompt":"Once","temperature":0}`)
	if r.status != 200 || get(r.body, "object") != "text_completion" || get(r.body, "choices", 0, "text") != " Once upon a time" ||
		get(r.body, "choices", 0, "finish_reason") != "stop" || get(r.body, "usage", "prompt_tokens_details", "cached_tokens") != 7.0 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if req := svc.last(); req.GetPrompt() != "Once" || req.GetMaxTokens() != completionMaxTokens || !strings.HasPrefix(req.GetAgentId(), "prompt-") {
		t.Fatalf("request %v", req)
	}
	post(t, srv, "/v1/completions", `{"model":"test-model","prompt":[[1,2,3]],"max_tokens":5}`)
	if req := svc.last(); len(req.GetPromptTokenIds()) != 3 || req.GetPrompt() != "" || req.GetMaxTokens() != 5 {
		t.Fatalf("token prompt %v", req)
	}
	_, evs := stream(t, srv, "/v1/completions", `{"model":"test-model","prompt":"Once","stream":true}`)
	var text strings.Builder
	for _, ev := range evs[:len(evs)-2] {
		var m map[string]any
		_ = json.Unmarshal([]byte(ev.data), &m)
		text.WriteString(get(m, "choices", 0, "text").(string))
	}
	if text.String() != " Once upon a time" || !strings.Contains(evs[len(evs)-2].data, `"finish_reason":"stop"`) || evs[len(evs)-1].data != "[DONE]" {
		t.Fatalf("stream %v", evs)
	}
}

func TestMessages(t *testing.T) {
	svc := &fakeService{}
	srv := newTestServer(t, svc, nil)
	r := post(t, srv, "/v1/messages", messagesBody(`"temperature":0.5,"top_k":40,"stop_sequences":["zz"]`))
	if r.status != 200 || get(r.body, "type") != "message" || get(r.body, "role") != "assistant" ||
		get(r.body, "content", 0, "type") != "text" || get(r.body, "content", 0, "text") != " Once upon a time" ||
		get(r.body, "stop_reason") != "end_turn" || get(r.body, "stop_sequence") != nil ||
		get(r.body, "usage", "input_tokens") != 3.0 || get(r.body, "usage", "cache_read_input_tokens") != 7.0 ||
		get(r.body, "usage", "output_tokens") != 4.0 || !strings.HasPrefix(get(r.body, "id").(string), "msg_") {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	req := svc.last()
	if len(req.GetMessages()) != 2 || req.GetMessages()[0].GetRole() != "system" || req.GetMessages()[0].GetContent() != "Be brief." ||
		req.GetMaxTokens() != 16 || req.GetTemperature() != 0.5 || req.GetTopK() != 40 || req.GetStop()[0] != "zz" {
		t.Fatalf("request %v", req)
	}

	// A stop sequence: stop_reason and which one.
	svc.run = func(_ context.Context, _ *schedulerv1.GenerateRequest, send func(*schedulerv1.GenerateResponse) error) error {
		return playTokens(send, []int{0, 1, 4}, schedulerv1.FinishReason_FINISH_REASON_STOP, 0)
	}
	r = post(t, srv, "/v1/messages", messagesBody(`"stop_sequences":["time", "."]`))
	if get(r.body, "stop_reason") != "stop_sequence" || get(r.body, "stop_sequence") != "." {
		t.Fatalf("%s", r.raw)
	}
	svc.run = nil

	// The stream's events, in order.
	_, evs := stream(t, srv, "/v1/messages", messagesBody(`"stream":true`))
	var names []string
	var text strings.Builder
	for _, ev := range evs {
		var m map[string]any
		if err := json.Unmarshal([]byte(ev.data), &m); err != nil || m["type"] != ev.name {
			t.Fatalf("event %v: %v", ev, err)
		}
		if ev.name == "content_block_delta" {
			text.WriteString(get(m, "delta", "text").(string))
			if len(names) > 0 && names[len(names)-1] == "content_block_delta" {
				continue
			}
		}
		if ev.name == "message_delta" && (get(m, "delta", "stop_reason") != "end_turn" || get(m, "usage", "cache_read_input_tokens") != 7.0 ||
			get(m, "usage", "input_tokens") != 3.0 || get(m, "usage", "output_tokens") != 4.0) {
			t.Fatalf("message_delta %v", m)
		}
		names = append(names, ev.name)
	}
	if strings.Join(names, ",") != "message_start,ping,content_block_start,content_block_delta,content_block_stop,message_delta,message_stop" ||
		text.String() != " Once upon a time" {
		t.Fatalf("events %v, text %q", names, text.String())
	}
}

func TestAgentSelection(t *testing.T) {
	svc := &fakeService{}
	srv := newTestServer(t, svc, nil)
	agent := func(path, body string, headers ...string) string {
		t.Helper()
		r := post(t, srv, path, body, headers...)
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		return svc.last().GetAgentId()
	}
	if a := agent("/v1/chat/completions", chatBody(`"user":"bob"`), HeaderAgentID, "alice"); a != "alice" {
		t.Fatalf("X-Agent-ID: %q", a)
	}
	if a := agent("/v1/chat/completions", chatBody(`"user":"bob"`), HeaderSessionID, "s-1"); a != "s-1" {
		t.Fatalf("X-Session-ID: %q", a)
	}
	if a := agent("/v1/chat/completions", chatBody(`"user":"bob"`)); a != "bob" {
		t.Fatalf("user: %q", a)
	}
	mail := agent("/v1/chat/completions", chatBody(`"user":"bob@example.com"`))
	if !strings.HasPrefix(mail, "user-") || !rpcstatus.ValidAgentID(mail) || mail != agent("/v1/chat/completions", chatBody(`"user":"bob@example.com"`)) {
		t.Fatalf("hashed user: %q", mail)
	}
	if a := agent("/v1/messages", messagesBody(`"metadata":{"user_id":"carol"}`)); a != "carol" {
		t.Fatalf("metadata.user_id: %q", a)
	}
	// Derived: the same for every turn of a conversation, and for both APIs.
	turn1 := agent("/v1/chat/completions", chatBody(""))
	turn2 := agent("/v1/chat/completions", `{"model":"test-model","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"},{"role":"user","content":"More"}]}`)
	anth := agent("/v1/messages", `{"model":"test-model","max_tokens":4,"system":[{"type":"text","text":"Be brief."}],"messages":[{"role":"user","content":[{"type":"text","text":"Hi"}]},{"role":"assistant","content":"Hello"},{"role":"user","content":"More"}]}`)
	other := agent("/v1/chat/completions", `{"model":"test-model","messages":[{"role":"user","content":"Hi"}]}`)
	if turn1 != turn2 || turn1 != anth || turn1 == other || !strings.HasPrefix(turn1, "conv-") {
		t.Fatalf("derived: %q %q %q %q", turn1, turn2, anth, other)
	}
	// A header that names an invalid agent is refused, in each API's format.
	r := post(t, srv, "/v1/chat/completions", chatBody(""), HeaderAgentID, "no spaces")
	if r.status != 400 || openAIParamOf(r) != HeaderAgentID {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	r = post(t, srv, "/v1/messages", messagesBody(""), HeaderSessionID, strings.Repeat("x", 129))
	if typ, msg := anthropicErrorOf(r); r.status != 400 || typ != "invalid_request_error" || !strings.HasPrefix(msg, HeaderSessionID+": ") {
		t.Fatalf("%d %s", r.status, r.raw)
	}
}

// Every parameter that would change the output and is not implemented is
// refused with a 400 naming it; wrong types and out-of-range numbers too.
func TestBadRequests(t *testing.T) {
	svc := &fakeService{}
	srv := newTestServer(t, svc, nil)
	for _, c := range []struct {
		path, body, param string
	}{
		{"/v1/chat/completions", chatBody(`"tools":[{"type":"function","function":{"name":"f"}}]`), "tools"},
		{"/v1/chat/completions", chatBody(`"tool_choice":"required"`), "tool_choice"},
		{"/v1/chat/completions", chatBody(`"functions":[{"name":"f"}]`), "functions"},
		{"/v1/chat/completions", chatBody(`"logprobs":true`), "logprobs"},
		{"/v1/chat/completions", chatBody(`"top_logprobs":2`), "top_logprobs"},
		{"/v1/chat/completions", chatBody(`"n":2`), "n"},
		{"/v1/chat/completions", chatBody(`"response_format":{"type":"json_object"}`), "response_format"},
		{"/v1/chat/completions", chatBody(`"presence_penalty":0.5`), "presence_penalty"},
		{"/v1/chat/completions", chatBody(`"frequency_penalty":-1`), "frequency_penalty"},
		{"/v1/chat/completions", chatBody(`"logit_bias":{"50256":-100}`), "logit_bias"},
		{"/v1/chat/completions", chatBody(`"modalities":["text","audio"]`), "modalities"},
		{"/v1/chat/completions", chatBody(`"reasoning_effort":"high"`), "reasoning_effort"},
		{"/v1/chat/completions", `{"model":"test-model","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, "messages[0].content[0].type"},
		{"/v1/chat/completions", `{"model":"test-model","messages":[{"role":"user","content":"a"},{"role":"tool","content":"b","tool_call_id":"c"}]}`, "messages[1].role"},
		{"/v1/chat/completions", `{"model":"test-model","messages":[{"role":"user","content":"a","name":"bob"}]}`, "messages[0].name"},
		{"/v1/chat/completions", `{"model":"test-model","messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"x"}]}]}`, "messages[0].tool_calls"},
		{"/v1/chat/completions", `{"model":"test-model","messages":[{"role":"wizard","content":"a"}]}`, "messages[0].role"},
		{"/v1/chat/completions", `{"model":"test-model","messages":[{"role":"user"}]}`, "messages[0].content"},
		{"/v1/chat/completions", `{"model":"test-model","messages":[]}`, "messages"},
		{"/v1/chat/completions", `{"model":"test-model","messages":"hi"}`, "messages"},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"a"}]}`, "model"},
		{"/v1/chat/completions", chatBody(`"max_tokens":"many"`), "max_tokens"},
		{"/v1/chat/completions", chatBody(`"max_tokens":0`), "max_tokens"},
		{"/v1/chat/completions", chatBody(`"max_tokens":513`), "max_tokens"},
		{"/v1/chat/completions", chatBody(`"max_tokens":2.5`), "max_tokens"},
		{"/v1/chat/completions", chatBody(`"max_tokens":1e30`), "max_tokens"},
		{"/v1/chat/completions", chatBody(`"max_completion_tokens":-1`), "max_completion_tokens"},
		{"/v1/chat/completions", chatBody(`"max_tokens":5,"max_completion_tokens":6`), "max_tokens"},
		{"/v1/chat/completions", chatBody(`"temperature":2.5`), "temperature"},
		{"/v1/chat/completions", chatBody(`"temperature":-0.1`), "temperature"},
		{"/v1/chat/completions", chatBody(`"temperature":"hot"`), "temperature"},
		{"/v1/chat/completions", chatBody(`"top_p":1.5`), "top_p"},
		{"/v1/chat/completions", chatBody(`"seed":1.5`), "seed"},
		{"/v1/chat/completions", chatBody(`"seed":99999999999999999999`), "seed"},
		{"/v1/chat/completions", chatBody(`"stop":5`), "stop"},
		{"/v1/chat/completions", chatBody(`"stop":["a",""]`), "stop[1]"},
		{"/v1/chat/completions", chatBody(`"stop":["1","2","3","4","5","6","7","8","9","10","11","12","13","14","15","16","17"]`), "stop"},
		{"/v1/chat/completions", chatBody(`"stream":"yes"`), "stream"},
		{"/v1/chat/completions", chatBody(`"stream_options":{"include_usage":true}`), "stream_options"},
		{"/v1/chat/completions", chatBody(`"user":7`), "user"},
		{"/v1/completions", `{"model":"test-model","prompt":["a","b"]}`, "prompt"},
		{"/v1/completions", `{"model":"test-model","prompt":[1,-2]}`, "prompt[1]"},
		{"/v1/completions", `{"model":"test-model","prompt":{"a":1}}`, "prompt"},
		{"/v1/completions", `{"model":"test-model"}`, "prompt"},
		{"/v1/completions", `{"model":"test-model","prompt":"a","echo":true}`, "echo"},
		{"/v1/completions", `{"model":"test-model","prompt":"a","suffix":"b"}`, "suffix"},
		{"/v1/completions", `{"model":"test-model","prompt":"a","best_of":3}`, "best_of"},
		{"/v1/completions", `{"model":"test-model","prompt":"a","logprobs":2}`, "logprobs"},
		{"/v1/messages", messagesBody(`"tools":[{"name":"f","input_schema":{}}]`), "tools"},
		{"/v1/messages", messagesBody(`"tool_choice":{"type":"any"}`), "tool_choice"},
		{"/v1/messages", messagesBody(`"thinking":{"type":"enabled","budget_tokens":1024}`), "thinking"},
		{"/v1/messages", messagesBody(`"temperature":1.5`), "temperature"},
		{"/v1/messages", messagesBody(`"top_k":-1`), "top_k"},
		{"/v1/messages", messagesBody(`"stop_sequences":"x"`), "stop_sequences"},
		{"/v1/messages", messagesBody(`"stop_sequences":[""]`), "stop_sequences[0]"},
		{"/v1/messages", `{"model":"test-model","messages":[{"role":"user","content":"Hi"}]}`, "max_tokens"},
		{"/v1/messages", `{"model":"test-model","max_tokens":4,"messages":[{"role":"user","content":[{"type":"image","source":{}}]}]}`, "messages[0].content[0].type"},
		{"/v1/messages", `{"model":"test-model","max_tokens":4,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"x"}]}]}`, "messages[0].content[0].type"},
		{"/v1/messages", `{"model":"test-model","max_tokens":4,"system":[{"type":"image"}],"messages":[{"role":"user","content":"a"}]}`, "system[0].type"},
		{"/v1/messages", `{"model":"test-model","max_tokens":4,"messages":[{"role":"system","content":"a"}]}`, "messages[0].role"},
		{"/v1/messages", `{"model":"test-model","max_tokens":4,"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}`, "messages[1]"},
		{"/v1/messages", `{"model":"test-model","max_tokens":4,"messages":[{"role":"user","content":"a"}],"metadata":{"user_id":5}}`, "metadata.user_id"},
	} {
		before := len(svc.reqs)
		r := post(t, srv, c.path, c.body)
		if r.status != http.StatusBadRequest {
			t.Errorf("%s %s: %d %s", c.path, c.body, r.status, r.raw)
			continue
		}
		if c.path == "/v1/messages" {
			typ, msg := anthropicErrorOf(r)
			if typ != "invalid_request_error" || !strings.HasPrefix(msg, c.param+": ") {
				t.Errorf("%s: want param %q: %s", c.body, c.param, r.raw)
			}
		} else if openAIParamOf(r) != c.param || get(r.body, "error", "type") != "invalid_request_error" ||
			!strings.HasPrefix(get(r.body, "error", "message").(string), c.param+": ") {
			t.Errorf("%s: want param %q: %s", c.body, c.param, r.raw)
		}
		if len(svc.reqs) != before {
			t.Errorf("%s: refused request reached the service", c.body)
		}
	}
	// Neutral values of refused parameters are fine.
	for _, extra := range []string{`"tools":[]`, `"tool_choice":"none"`, `"logprobs":false`, `"n":1`, `"response_format":{"type":"text"}`,
		`"presence_penalty":0`, `"frequency_penalty":0.0`, `"logit_bias":{}`, `"modalities":["text"]`, `"store":true`,
		`"metadata":{"a":"b"}`, `"parallel_tool_calls":true`, `"some_future_field":{"x":1}`, `"stop":null`, `"seed":null`} {
		if r := post(t, srv, "/v1/chat/completions", chatBody(extra)); r.status != 200 {
			t.Errorf("%s: %d %s", extra, r.status, r.raw)
		}
	}
	// Bodies that are not one JSON object.
	for _, body := range []string{``, `{`, `[1]`, `"x"`, `{} {}`, `{"model":"test-model"}x`} {
		if r := post(t, srv, "/v1/chat/completions", body); r.status != 400 || get(r.body, "error", "type") != "invalid_request_error" {
			t.Errorf("body %q: %d %s", body, r.status, r.raw)
		}
	}
}

func TestUnknownModel(t *testing.T) {
	srv := newTestServer(t, &fakeService{}, nil)
	r := post(t, srv, "/v1/chat/completions", `{"model":"gpt-4o","messages":[{"role":"user","content":"a"}]}`)
	if r.status != 404 || openAIParamOf(r) != "model" || get(r.body, "error", "code") != "model_not_found" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	r = post(t, srv, "/v1/messages", `{"model":"claude-x","max_tokens":4,"messages":[{"role":"user","content":"a"}]}`)
	if typ, _ := anthropicErrorOf(r); r.status != 404 || typ != "not_found_error" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
}

// The service's errors (gRPC statuses) become each API's errors with the
// right HTTP status, parameter and retry headers.
func TestServiceErrors(t *testing.T) {
	svc := &fakeService{}
	srv := newTestServer(t, svc, nil)
	for _, c := range []struct {
		err                 error
		status              int
		openAIParam, anthrP string
		anthropicType       string
		retryAfter, noRetry string
	}{
		{rpcstatus.InvalidArgument("stop[1]", "bad"), 400, "stop[1]", "stop_sequences[1]", "invalid_request_error", "", ""},
		{rpcstatus.InvalidArgument("messages[1].content", "bad"), 400, "messages[1].content", "messages[0].content", "invalid_request_error", "", ""},
		{rpcstatus.InvalidArgument("messages[0].content", "bad"), 400, "messages[0].content", "system", "invalid_request_error", "", ""},
		{rpcstatus.InvalidArgument("prompt_token_ids[3]", "bad"), 400, "prompt[3]", "prompt_token_ids[3]", "invalid_request_error", "", ""},
		{rpcstatus.TooLong("messages", "too long"), 413, "messages", "messages", "request_too_large", "", ""},
		{status.Error(codes.FailedPrecondition, "no template"), 400, "", "", "invalid_request_error", "", ""},
		{rpcstatus.Exhausted(service.QueueSubject, "full"), 429, "", "", "rate_limit_error", "1", ""},
		{rpcstatus.Exhausted(service.PoolBlocksSubject, "too big"), 413, "", "", "request_too_large", "", "false"},
		{status.Error(codes.Unavailable, "no healthy block-pool node"), 503, "", "", "overloaded_error", "1", ""},
		{status.Error(codes.DeadlineExceeded, "slow"), 504, "", "", "timeout_error", "", ""},
		{status.Error(codes.Internal, "boom"), 500, "", "", "api_error", "", ""},
		{status.Error(codes.Unauthenticated, "who"), 401, "", "", "authentication_error", "", ""},
		{errors.New("not a status"), 500, "", "", "api_error", "", ""},
	} {
		svc.run = func(context.Context, *schedulerv1.GenerateRequest, func(*schedulerv1.GenerateResponse) error) error {
			return c.err
		}
		r := post(t, srv, "/v1/chat/completions", chatBody(""))
		if r.status != c.status || r.header.Get("Retry-After") != c.retryAfter || r.header.Get("X-Should-Retry") != c.noRetry {
			t.Errorf("%v: OpenAI %d %v %s", c.err, r.status, r.header, r.raw)
		}
		if p := openAIParamOf(r); c.openAIParam != "" && p != c.openAIParam || c.openAIParam == "" && p != nil {
			t.Errorf("%v: OpenAI param %v", c.err, p)
		}
		if c.status == 413 && c.openAIParam != "" && get(r.body, "error", "code") != "context_length_exceeded" {
			t.Errorf("%v: %s", c.err, r.raw)
		}
		r = post(t, srv, "/v1/messages", messagesBody(""))
		typ, msg := anthropicErrorOf(r)
		if r.status != c.status || typ != c.anthropicType || r.header.Get("Retry-After") != c.retryAfter ||
			c.anthrP != "" && !strings.HasPrefix(msg, c.anthrP+": ") {
			t.Errorf("%v: Anthropic %d %s", c.err, r.status, r.raw)
		}
	}
}

// An error after the stream began is an event in it.
func TestErrorMidStream(t *testing.T) {
	svc := &fakeService{run: func(_ context.Context, _ *schedulerv1.GenerateRequest, send func(*schedulerv1.GenerateResponse) error) error {
		if err := send(&schedulerv1.GenerateResponse{TokenId: 0, Text: words[0]}); err != nil {
			return err
		}
		return status.Error(codes.Internal, "engine failed")
	}}
	srv := newTestServer(t, svc, nil)
	_, evs := stream(t, srv, "/v1/chat/completions", chatBody(`"stream":true`))
	last := evs[len(evs)-1]
	if !strings.Contains(last.data, `"error"`) || !strings.Contains(last.data, "engine failed") || len(evs) != 3 {
		t.Fatalf("events %v", evs)
	}
	_, evs = stream(t, srv, "/v1/messages", messagesBody(`"stream":true`))
	last = evs[len(evs)-1]
	if last.name != "error" || !strings.Contains(last.data, `"api_error"`) {
		t.Fatalf("events %v", evs)
	}
}

// countingReader is a body of n bytes that counts what was read of it.
type countingReader struct {
	n, read atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	left := c.n.Load() - c.read.Load()
	if left <= 0 {
		return 0, io.EOF
	}
	k := min(int64(len(p)), left)
	for i := range p[:k] {
		p[i] = ' '
	}
	c.read.Add(k)
	return int(k), nil
}

// A 100 MB body is refused with 413 after at most a little more than the
// limit is read, in both APIs' formats; a declared length over the limit is
// refused before anything is read.
func TestBodyLimit(t *testing.T) {
	srv := newTestServer(t, &fakeService{}, nil) // limit 1 MiB
	for _, path := range []string{"/v1/chat/completions", "/v1/messages"} {
		body := &countingReader{}
		body.n.Store(100 << 20)
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, body) // chunked: no length
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(raw), "larger than the limit") {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, raw)
		}
		if path == "/v1/messages" && !strings.Contains(string(raw), `"request_too_large"`) {
			t.Fatalf("%s", raw)
		}
		if read := body.read.Load(); read > 16<<20 {
			t.Fatalf("%s: the client sent %d bytes of the body", path, read)
		}
		t.Logf("%s: %d of %d bytes sent before the 413", path, body.read.Load(), body.n.Load())
	}
	// A declared length over the limit: answered at once, with no body sent.
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", 200<<20)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("declared length: %d", resp.StatusCode)
	}
}

// A client that goes away mid-stream cancels the service's context, so its
// sequence leaves the batch and its lease is released.
func TestDisconnectCancels(t *testing.T) {
	cancelled := make(chan error, 1)
	svc := &fakeService{run: func(ctx context.Context, _ *schedulerv1.GenerateRequest, send func(*schedulerv1.GenerateResponse) error) error {
		for i := 0; ; i++ {
			if err := send(&schedulerv1.GenerateResponse{TokenId: 0, Index: uint32(i), Text: words[0]}); err != nil {
				cancelled <- err
				return err
			}
			select {
			case <-ctx.Done():
				cancelled <- ctx.Err()
				return status.FromContextError(ctx.Err()).Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
	}}
	srv := newTestServer(t, svc, nil)
	for _, path := range []string{"/v1/chat/completions", "/v1/messages"} {
		body := chatBody(`"stream":true`)
		if path == "/v1/messages" {
			body = messagesBody(`"stream":true`)
		}
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(resp.Body)
		for i := 0; i < 6; i++ {
			if _, err := br.ReadString('\n'); err != nil {
				t.Fatal(err)
			}
		}
		cancel()
		resp.Body.Close()
		select {
		case err := <-cancelled:
			if err == nil {
				t.Fatal("service not stopped")
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the service kept generating after the client left", path)
		}
	}
}

func TestRoutes(t *testing.T) {
	svc := &fakeService{}
	srv := newTestServer(t, svc, nil)
	r := do(t, mustRequest(t, http.MethodGet, srv.URL+"/v1/models", nil))
	if r.status != 200 || get(r.body, "object") != "list" || get(r.body, "data", 0, "id") != testModel ||
		get(r.body, "data", 0, "context_length") != 512.0 || get(r.body, "data", 0, "object") != "model" {
		t.Fatalf("models: %s", r.raw)
	}
	req := mustRequest(t, http.MethodGet, srv.URL+"/v1/models", nil)
	req.Header.Set("anthropic-version", "2023-06-01")
	if r = do(t, req); get(r.body, "data", 0, "type") != "model" || get(r.body, "has_more") != false {
		t.Fatalf("anthropic models: %s", r.raw)
	}
	if r = do(t, mustRequest(t, http.MethodGet, srv.URL+"/v1/models/"+testModel, nil)); r.status != 200 || get(r.body, "id") != testModel {
		t.Fatalf("model: %d %s", r.status, r.raw)
	}
	if r = do(t, mustRequest(t, http.MethodGet, srv.URL+"/v1/models/other", nil)); r.status != 404 {
		t.Fatalf("other model: %d %s", r.status, r.raw)
	}
	if r = do(t, mustRequest(t, http.MethodGet, srv.URL+"/v1/chat/completions", nil)); r.status != 405 || r.header.Get("Allow") != "POST" {
		t.Fatalf("GET chat: %d %v %s", r.status, r.header, r.raw)
	}
	if r = do(t, mustRequest(t, http.MethodGet, srv.URL+"/v2/nothing", nil)); r.status != 404 || get(r.body, "error", "type") != "invalid_request_error" {
		t.Fatalf("unknown: %d %s", r.status, r.raw)
	}
	if r = do(t, mustRequest(t, http.MethodPost, srv.URL+"/v1/messages/count_tokens", nil)); r.status != 404 || get(r.body, "type") != "error" {
		t.Fatalf("anthropic unknown: %d %s", r.status, r.raw)
	}
	if r = do(t, mustRequest(t, http.MethodGet, srv.URL+"/health", nil)); r.status != 200 || get(r.body, "status") != "ok" {
		t.Fatalf("health: %d %s", r.status, r.raw)
	}
	svc.ready = status.Error(codes.Unavailable, "no healthy block-pool node")
	if r = do(t, mustRequest(t, http.MethodGet, srv.URL+"/health", nil)); r.status != 503 || get(r.body, "status") != "unavailable" {
		t.Fatalf("health: %d %s", r.status, r.raw)
	}
	if r.header.Get("X-Request-ID") == "" {
		t.Fatal("no request id")
	}
}

// Authorize is the one place for authentication: it runs before every API
// endpoint and its errors are answered in the API's format.
func TestAuthorizeHook(t *testing.T) {
	srv := newTestServer(t, &fakeService{}, func(c *Config) {
		c.Authorize = func(r *http.Request) (context.Context, error) {
			if r.Header.Get("Authorization") != "Bearer ok" {
				return nil, status.Error(codes.Unauthenticated, "missing or bad API key")
			}
			return r.Context(), nil
		}
	})
	if r := post(t, srv, "/v1/chat/completions", chatBody("")); r.status != 401 || get(r.body, "error", "type") != "authentication_error" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if r := post(t, srv, "/v1/messages", messagesBody("")); r.status != 401 || get(r.body, "error", "type") != "authentication_error" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if r := post(t, srv, "/v1/chat/completions", chatBody(""), "Authorization", "Bearer ok"); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if r := do(t, mustRequest(t, http.MethodGet, srv.URL+"/health", nil)); r.status != 200 {
		t.Fatalf("health behind auth: %d", r.status)
	}
}

func mustRequest(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// The HTTP front's metrics: requests by route and status (499 for a client
// that left), latency, time to first token.
func TestMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	svc := &fakeService{}
	srv := newTestServer(t, svc, func(c *Config) { c.MeterProvider = mp })
	post(t, srv, "/v1/chat/completions", chatBody(""))
	post(t, srv, "/v1/chat/completions", chatBody(`"stream":true`))
	post(t, srv, "/v1/messages", `{"model":"nope"}`)
	svc.run = func(ctx context.Context, _ *schedulerv1.GenerateRequest, _ func(*schedulerv1.GenerateResponse) error) error {
		<-ctx.Done()
		return status.FromContextError(ctx.Err()).Err()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(chatBody("")))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("no timeout")
	}
	// The server sees the client leave a little later.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		got := map[string]int64{}
		var ttft uint64
		var durations uint64
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				switch d := m.Data.(type) {
				case metricdata.Sum[int64]:
					if m.Name != "semantic.http.requests" {
						continue
					}
					for _, dp := range d.DataPoints {
						route, _ := dp.Attributes.Value("http.route")
						code, _ := dp.Attributes.Value("http.response.status_code")
						got[fmt.Sprintf("%s %d", route.AsString(), code.AsInt64())] += dp.Value
					}
				case metricdata.Histogram[float64]:
					for _, dp := range d.DataPoints {
						switch m.Name {
						case "semantic.http.time_to_first_token":
							ttft += dp.Count
						case "semantic.http.request.duration":
							durations += dp.Count
						}
					}
				}
			}
		}
		want := map[string]int64{"POST /v1/chat/completions 200": 2, "POST /v1/messages 404": 1, "POST /v1/chat/completions 499": 1}
		ok := ttft == 2 && durations == 4
		for k, v := range want {
			ok = ok && got[k] == v
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("requests %v, %d first tokens, %d durations", got, ttft, durations)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
