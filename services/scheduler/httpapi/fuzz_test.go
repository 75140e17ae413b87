package httpapi

import (
	"net/http/httptest"
	"testing"

	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
	"github.com/semantic-kv/semantic/pkg/rpcstatus"
	"github.com/semantic-kv/semantic/services/scheduler/service"
)

// FuzzDecodeRequests feeds arbitrary bodies to the three request decoders
// (selected by kind). None may panic; whatever they accept must be a request
// the service can take: a valid agent, every number in range, known roles.
func FuzzDecodeRequests(f *testing.F) {
	for _, seed := range []string{
		chatBody(""), chatBody(`"stream":true,"stream_options":{"include_usage":true},"stop":["a","b"],"seed":-1,"top_p":0.3`),
		`{"model":"test-model","messages":[{"role":"user","content":[{"type":"text","text":"a"}]}],"max_tokens":512}`,
		`{"model":"test-model","prompt":[1,2,3],"max_tokens":3}`, `{"model":"test-model","prompt":["x"],"user":"a@b"}`,
		messagesBody(`"top_k":3,"temperature":1,"stop_sequences":["x"],"metadata":{"user_id":"u"}`),
		`{"model":"test-model","max_tokens":1,"system":[{"type":"text","text":"s"}],"messages":[{"role":"user","content":"u"}]}`,
		`{"tools":[{}],"n":2}`, `[]`, `{"max_tokens":1e400}`, `{"messages":[{"role":"user","content":null}]}`,
	} {
		for kind := byte(0); kind < 3; kind++ {
			f.Add(kind, []byte(seed))
		}
	}
	h, err := New(Config{Service: &fakeService{}, Model: Model{ID: testModel, ContextLength: 512}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, kind byte, data []byte) {
		r := httptest.NewRequest("POST", "/", nil)
		var req *schedulerv1.GenerateRequest
		maxTemp := float32(2)
		switch kind % 3 {
		case 0:
			var body chatRequest
			if decodeJSON(data, &body) != nil {
				return
			}
			gc, e := h.chatToGenerate(r, &body)
			if e != nil {
				checkError(t, e)
				return
			}
			req = gc.req
			checkMessages(t, req)
		case 1:
			var body completionRequest
			if decodeJSON(data, &body) != nil {
				return
			}
			gc, e := h.completionToGenerate(r, &body)
			if e != nil {
				checkError(t, e)
				return
			}
			req = gc.req
			if (req.GetPrompt() == "") == (len(req.GetPromptTokenIds()) == 0) && req.GetPrompt() != "" {
				t.Fatalf("prompt and ids: %v", req)
			}
		case 2:
			var body messagesRequest
			if decodeJSON(data, &body) != nil {
				return
			}
			gc, e := h.messagesToGenerate(r, &body)
			if e != nil {
				checkError(t, e)
				return
			}
			req = gc.req
			checkMessages(t, req)
			maxTemp = 1
			if req.GetMessages()[len(req.GetMessages())-1].GetRole() == "assistant" {
				t.Fatal("prefill accepted")
			}
		}
		if !rpcstatus.ValidAgentID(req.GetAgentId()) {
			t.Fatalf("agent %q", req.GetAgentId())
		}
		if req.GetMaxTokens() < 1 || req.GetMaxTokens() > 512 || !(req.GetTemperature() >= 0 && req.GetTemperature() <= maxTemp) ||
			!(req.GetTopP() >= 0 && req.GetTopP() < 1) || len(req.GetStop()) > service.MaxStops {
			t.Fatalf("out of range: %v", req)
		}
		for _, s := range req.GetStop() {
			if len(s) == 0 || len(s) > service.MaxStopBytes {
				t.Fatalf("stop %q", s)
			}
		}
	})
}

func checkMessages(t *testing.T, req *schedulerv1.GenerateRequest) {
	t.Helper()
	if len(req.GetMessages()) == 0 {
		t.Fatal("no messages")
	}
	for _, m := range req.GetMessages() {
		switch m.GetRole() {
		case "system", "user", "assistant":
		default:
			t.Fatalf("role %q", m.GetRole())
		}
	}
}

func checkError(t *testing.T, e *apiError) {
	t.Helper()
	if e.status < 400 || e.status > 599 || e.message == "" {
		t.Fatalf("error %+v", e)
	}
}
