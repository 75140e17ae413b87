package service

import (
	"math"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
	"github.com/semantic-kv/semantic/pkg/model"
	"github.com/semantic-kv/semantic/pkg/poolwire"
	"github.com/semantic-kv/semantic/pkg/rpcstatus"
)

// validate reads nothing but the served model, so the fuzz targets run it on
// a Server with only that: builtin:tiny (byte tokenizer, the plain chat
// fallback, context 2048) and the same model without a tokenizer (a model
// that takes token ids only), so that both branches of every text check run.
var (
	fuzzOnce     sync.Once
	fuzzServers  []*Server
	fuzzModelErr error
)

func fuzzTargets(t testing.TB) []*Server {
	fuzzOnce.Do(func() {
		m, err := model.Builtin("tiny")
		if err != nil {
			fuzzModelErr = err
			return
		}
		bare := *m
		bare.Name, bare.Tokenizer, bare.Template = "tiny-ids-only", nil, nil
		fuzzServers = []*Server{{cfg: Config{Model: m}}, {cfg: Config{Model: &bare}}}
	})
	if fuzzModelErr != nil {
		t.Fatal(fuzzModelErr)
	}
	return fuzzServers
}

// checkValidate is the property: validate never panics (the fuzz engine
// reports one), and either accepts a request that is inside the contract's
// bounds, with a prompt of ids inside the vocabulary, or refuses it with a
// gRPC status of a code the contract names for a bad request: INVALID_ARGUMENT
// naming a field, or FAILED_PRECONDITION (a conversation the model cannot
// render at all).
func checkValidate(t *testing.T, s *Server, req *schedulerv1.GenerateRequest) {
	t.Helper()
	r := &admitted{req: req}
	err := s.validate(r)
	if err != nil {
		st, ok := status.FromError(err)
		if !ok {
			t.Fatalf("not a gRPC status: %T %v", err, err)
		}
		switch st.Code() {
		case codes.InvalidArgument:
			if rpcstatus.FieldOf(err) == "" {
				t.Fatalf("INVALID_ARGUMENT without a field: %v", err)
			}
		case codes.FailedPrecondition:
			if len(req.GetMessages()) == 0 {
				t.Fatalf("FAILED_PRECONDITION for a request without messages: %v", err)
			}
		default:
			t.Fatalf("unexpected code %v for %v", err, req)
		}
		return
	}
	m := s.cfg.Model
	if !rpcstatus.ValidAgentID(req.GetAgentId()) {
		t.Fatalf("accepted agent id %q", req.GetAgentId())
	}
	if n := req.GetMaxTokens(); n == 0 || int(n) > m.Config.SeqLen {
		t.Fatalf("accepted max_tokens %d", n)
	}
	if tp := req.GetTemperature(); tp < 0 || tp > maxTemp || math.IsNaN(float64(tp)) {
		t.Fatalf("accepted temperature %v", tp)
	}
	if p := req.GetTopP(); p < 0 || p > 1 || math.IsNaN(float64(p)) {
		t.Fatalf("accepted top_p %v", p)
	}
	if int(req.GetTopK()) > m.Config.Vocab {
		t.Fatalf("accepted top_k %d", req.GetTopK())
	}
	if len(req.GetStop()) > MaxStops || len(req.GetStop()) > 0 && m.Tokenizer == nil {
		t.Fatalf("accepted %d stop strings", len(req.GetStop()))
	}
	for _, st := range req.GetStop() {
		if len(st) == 0 || len(st) > MaxStopBytes {
			t.Fatalf("accepted stop %q", st)
		}
	}
	if len(req.GetCacheSalt()) > poolwire.MaxSaltLen {
		t.Fatalf("accepted a salt of %d bytes", len(req.GetCacheSalt()))
	}
	given := 0
	for _, b := range []bool{req.GetPrompt() != "", len(req.GetPromptTokenIds()) > 0, len(req.GetMessages()) > 0} {
		if b {
			given++
		}
	}
	if given > 1 || given == 0 && !req.GetAppend() || len(req.GetMessages()) > 0 && req.GetAppend() {
		t.Fatalf("accepted %d of prompt, prompt_token_ids, messages (append %v)", given, req.GetAppend())
	}
	if given == 1 && len(r.prompt) == 0 && req.GetPrompt() == "" {
		t.Fatal("accepted a request whose prompt tokenized to nothing")
	}
	for i, id := range r.prompt {
		if int64(id) >= int64(m.Config.Vocab) {
			t.Fatalf("prompt token %d is %d, outside the vocabulary of %d", i, id, m.Config.Vocab)
		}
	}
}

// FuzzValidateGenerate decodes arbitrary bytes as a GenerateRequest: every
// field, repeated fields included, in any combination the wire allows.
func FuzzValidateGenerate(f *testing.F) {
	seeds := []*schedulerv1.GenerateRequest{
		{AgentId: "a", Prompt: "hello", MaxTokens: 8},
		{AgentId: "a", PromptTokenIds: []uint32{1, 2, 3}, MaxTokens: 1, Temperature: 0.7, TopP: 0.9, TopK: 40, Seed: 7},
		{AgentId: "a", PromptTokenIds: []uint32{1, 1 << 31}, MaxTokens: 1},
		{AgentId: "a", Prompt: "x", PromptTokenIds: []uint32{1}, MaxTokens: 1},
		{AgentId: "a", Append: true, MaxTokens: 4},
		{AgentId: "a", Prompt: " more", Append: true, MaxTokens: 4, Stop: []string{"\n", "END"}, CacheSalt: "tenant"},
		{AgentId: "a", Messages: []*schedulerv1.ChatMessage{{Role: "system", Content: "be brief"}, {Role: "user", Content: "hi"}}, MaxTokens: 4},
		{AgentId: "a", Messages: []*schedulerv1.ChatMessage{{Role: "wizard", Content: "hi"}}, MaxTokens: 4},
		{AgentId: "a", Messages: []*schedulerv1.ChatMessage{{Role: "user", Content: "a"}, {Role: "system", Content: "late"}}, MaxTokens: 4},
		{AgentId: "a", Messages: []*schedulerv1.ChatMessage{{Role: "user", Content: "\ue000"}}, MaxTokens: 4},
		{AgentId: "a", Messages: []*schedulerv1.ChatMessage{{Role: "user", Content: "hi"}}, Append: true, MaxTokens: 4},
		{AgentId: "a", Prompt: "p", MaxTokens: 4, Temperature: float32(math.NaN())},
		{AgentId: "a", Prompt: "p", MaxTokens: 4, TopP: float32(math.Inf(1))},
		{AgentId: "a", Prompt: "p", MaxTokens: 4, Stop: make([]string, 17)},
		{AgentId: "a", Prompt: "p", MaxTokens: 4, CacheSalt: strings.Repeat("s", 129)},
		{AgentId: strings.Repeat("a", 129), Prompt: "p", MaxTokens: 1},
		{AgentId: "a", Prompt: "p", MaxTokens: 2049},
	}
	for _, m := range seeds {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var req schedulerv1.GenerateRequest
		if proto.Unmarshal(b, &req) != nil {
			return
		}
		for _, s := range fuzzTargets(t) {
			checkValidate(t, s, &req)
		}
	})
}

// FuzzValidateGenerateFields drives the fields directly, so that the fuzzer
// reaches the numeric edges (NaN, infinities, negative floats, ids at the
// vocabulary's end, max_tokens at the context) and chat roles and contents
// without first having to discover the wire encoding.
func FuzzValidateGenerateFields(f *testing.F) {
	f.Add("agent-1", "hello", []byte{1, 2, 3}, uint32(8), float32(0), float32(0), uint32(0), "\n", "user", "hi", false, "", uint8(0))
	f.Add("a", "", []byte{255, 255, 1, 0}, uint32(2048), float32(100), float32(1), uint32(259), "", "assistant", "", true, "salt", uint8(1))
	f.Add("a b", "p", []byte{}, uint32(0), float32(-1), float32(-0.5), uint32(1<<20), "stop", "system", "s", false, strings.Repeat("s", 129), uint8(2))
	f.Add("a", "p", []byte{}, uint32(2049), float32(math.NaN()), float32(math.NaN()), uint32(0), strings.Repeat("x", 257), "tool", "x", false, "", uint8(3))
	f.Add("a", "", []byte{}, uint32(1), float32(math.Inf(1)), float32(1.0000001), uint32(0), "", "", "", false, "", uint8(2))
	f.Fuzz(func(t *testing.T, agent, prompt string, ids []byte, maxTok uint32, temp, topP float32, topK uint32,
		stop, role, content string, appendCtx bool, salt string, shape uint8) {
		req := &schedulerv1.GenerateRequest{AgentId: agent, MaxTokens: maxTok, Temperature: temp, TopP: topP, TopK: topK,
			Append: appendCtx, CacheSalt: salt}
		// shape picks what the request carries: a text prompt, token ids
		// (two bytes each, so that ids run past the vocabulary), a
		// conversation, or several of them at once.
		switch shape % 5 {
		case 0:
			req.Prompt = prompt
		case 1:
			for i := 0; i+1 < len(ids); i += 2 {
				req.PromptTokenIds = append(req.PromptTokenIds, uint32(ids[i])<<8|uint32(ids[i+1]))
			}
		case 2:
			req.Messages = []*schedulerv1.ChatMessage{{Role: role, Content: content}, {Role: "user", Content: prompt}}
		case 3:
			req.Prompt = prompt
			req.Messages = []*schedulerv1.ChatMessage{{Role: role, Content: content}}
		case 4:
			for _, b := range ids {
				req.PromptTokenIds = append(req.PromptTokenIds, uint32(b))
			}
			req.Prompt = prompt
		}
		if shape&8 != 0 {
			req.Stop = []string{stop}
		}
		for _, s := range fuzzTargets(t) {
			checkValidate(t, s, req)
		}
	})
}
