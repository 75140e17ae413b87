package runner

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
	"github.com/semantic-kv/semantic/pkg/rpcstatus"
)

// The scheduler's bad-input battery (issue #13, "Tests"): one row per (RPC,
// field, bad value) of SchedulerService, over a real loopback socket to a
// scheduler with an embedded pool, each under a short deadline. A row passes
// when the call fails with the status the contract names (INVALID_ARGUMENT
// naming the field, NOT_FOUND, FAILED_PRECONDITION ...), never INTERNAL or
// UNKNOWN, and when afterwards nothing is held (no lease, no block leased by
// the scheduler, nothing running or waiting) and the pool's counts and
// records are those it had before the row. The HTTP front's own bad input is
// covered by httpapi's TestBadRequests.

type schedRow struct {
	rpc, field, value string
	code              codes.Code
	// want is the BadRequest field an INVALID_ARGUMENT must name.
	want string
	call func(ctx context.Context, c schedulerv1.SchedulerServiceClient) error
}

func (r schedRow) name() string { return r.rpc + "/" + r.field + "=" + r.value }

// schedState is what a refused request must leave as it was.
type schedState struct {
	Free, Leased, Cached, ActiveLeases, Agents uint32
	KnownVersion                               uint64
	SchedLeased, Running, Waiting              uint32
}

func schedStateOf(t *testing.T, ts *testScheduler) schedState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	i, err := ts.pool.GetPoolInfo(ctx, &blockpoolv1.GetPoolInfoRequest{})
	if err != nil {
		t.Fatalf("GetPoolInfo: %v", err)
	}
	st, err := ts.client.GetStats(ctx, &schedulerv1.GetStatsRequest{})
	if err != nil {
		t.Fatalf("GetStats: %v", err)
	}
	s := schedState{Free: i.FreeBlocks, Leased: i.LeasedBlocks, Cached: i.CachedBlocks, ActiveLeases: i.ActiveLeases, Agents: i.Agents,
		SchedLeased: st.BlocksLeased, Running: st.Running, Waiting: st.Waiting}
	if ga, err := ts.client.GetAgent(ctx, &schedulerv1.GetAgentRequest{AgentId: "known"}); err == nil {
		s.KnownVersion = ga.GetAgent().GetVersion()
	}
	return s
}

func schedRows(maxText, vocab, seqLen int) []schedRow {
	IA := codes.InvalidArgument
	long := func(n int) string { return strings.Repeat("x", n) }
	// gen sends a request that would succeed as a fresh agent's first turn
	// but for mod's change.
	gen := func(mod func(r *schedulerv1.GenerateRequest)) func(ctx context.Context, c schedulerv1.SchedulerServiceClient) error {
		return func(ctx context.Context, c schedulerv1.SchedulerServiceClient) error {
			r := &schedulerv1.GenerateRequest{AgentId: "fresh", Prompt: "Hello.", MaxTokens: 4}
			mod(r)
			_, err := generate(ctx, c, r)
			return err
		}
	}
	msgs := func(m ...string) []*schedulerv1.ChatMessage {
		var out []*schedulerv1.ChatMessage
		for i := 0; i+1 < len(m); i += 2 {
			out = append(out, &schedulerv1.ChatMessage{Role: m[i], Content: m[i+1]})
		}
		return out
	}
	chat := func(m []*schedulerv1.ChatMessage) func(r *schedulerv1.GenerateRequest) {
		return func(r *schedulerv1.GenerateRequest) { r.Prompt, r.Messages = "", m }
	}
	ids := func(v ...uint32) func(r *schedulerv1.GenerateRequest) {
		return func(r *schedulerv1.GenerateRequest) { r.Prompt, r.PromptTokenIds = "", v }
	}
	badIDs := []struct{ value, id string }{
		{"empty", ""}, {"space", "bad id"}, {"slash-only", "/"}, {"129 bytes", long(129)}, {"unicode", "agént"}, {"newline", "a\nb"},
		// A tenant's pool key: a client must not name another tenant's
		// agent by writing the prefix itself.
		{"tenant prefix", "other-tenant/alice"},
	}
	var rows []schedRow
	add := func(r ...schedRow) { rows = append(rows, r...) }

	for _, b := range badIDs {
		add(schedRow{"Generate", "agent_id", b.value, IA, "agent_id", gen(func(r *schedulerv1.GenerateRequest) { r.AgentId = b.id })})
	}
	many := make([]*schedulerv1.ChatMessage, 4097)
	for i := range many {
		many[i] = &schedulerv1.ChatMessage{Role: []string{"user", "assistant"}[i%2], Content: "x"}
	}
	fullIDs := make([]uint32, seqLen)
	for i := range fullIDs {
		fullIDs[i] = 'a'
	}
	add(
		// What carries the context: exactly one of prompt, ids, messages.
		schedRow{"Generate", "prompt", "and prompt_token_ids", IA, "prompt", gen(func(r *schedulerv1.GenerateRequest) { r.PromptTokenIds = []uint32{1} })},
		schedRow{"Generate", "messages", "and prompt", IA, "messages", gen(func(r *schedulerv1.GenerateRequest) { r.Messages = msgs("user", "hi") })},
		schedRow{"Generate", "messages", "and prompt_token_ids", IA, "messages", gen(func(r *schedulerv1.GenerateRequest) {
			r.Prompt, r.PromptTokenIds, r.Messages = "", []uint32{1}, msgs("user", "hi")
		})},
		schedRow{"Generate", "prompt", "none of the three", IA, "prompt", gen(func(r *schedulerv1.GenerateRequest) { r.Prompt = "" })},
		schedRow{"Generate", "append", "with messages", IA, "append", gen(func(r *schedulerv1.GenerateRequest) {
			r.Prompt, r.Messages, r.Append = "", msgs("user", "hi"), true
		})},
		// Token ids.
		schedRow{"Generate", "prompt_token_ids[1]", "the vocabulary size", IA, "prompt_token_ids[1]", gen(ids(1, uint32(vocab)))},
		schedRow{"Generate", "prompt_token_ids[0]", "max uint32", IA, "prompt_token_ids[0]", gen(ids(1<<32 - 1))},
		schedRow{"Generate", "prompt_token_ids", "the whole context", IA, "prompt_token_ids", gen(ids(fullIDs...))},
		schedRow{"Generate", "prompt_token_ids", "over the context", IA, "prompt_token_ids", gen(ids(append(fullIDs, 'a')...))},
		// Text.
		schedRow{"Generate", "prompt", "over the byte limit", IA, "prompt", gen(func(r *schedulerv1.GenerateRequest) { r.Prompt = long(maxText + 1) })},
		schedRow{"Generate", "prompt", "4 MiB", IA, "prompt", gen(func(r *schedulerv1.GenerateRequest) { r.Prompt = long(4 << 20) })},
		schedRow{"Generate", "prompt", "the whole context", IA, "prompt", gen(func(r *schedulerv1.GenerateRequest) { r.Prompt = long(seqLen - 1) })},
		// Numbers.
		schedRow{"Generate", "max_tokens", "0", IA, "max_tokens", gen(func(r *schedulerv1.GenerateRequest) { r.MaxTokens = 0 })},
		schedRow{"Generate", "max_tokens", "context + 1", IA, "max_tokens", gen(func(r *schedulerv1.GenerateRequest) { r.MaxTokens = uint32(seqLen) + 1 })},
		schedRow{"Generate", "max_tokens", "max uint32", IA, "max_tokens", gen(func(r *schedulerv1.GenerateRequest) { r.MaxTokens = 1<<32 - 1 })},
		schedRow{"Generate", "temperature", "-1", IA, "temperature", gen(func(r *schedulerv1.GenerateRequest) { r.Temperature = -1 })},
		schedRow{"Generate", "temperature", "-0.000001", IA, "temperature", gen(func(r *schedulerv1.GenerateRequest) { r.Temperature = -1e-6 })},
		schedRow{"Generate", "temperature", "NaN", IA, "temperature", gen(func(r *schedulerv1.GenerateRequest) { r.Temperature = float32(math.NaN()) })},
		schedRow{"Generate", "temperature", "+Inf", IA, "temperature", gen(func(r *schedulerv1.GenerateRequest) { r.Temperature = float32(math.Inf(1)) })},
		schedRow{"Generate", "temperature", "101", IA, "temperature", gen(func(r *schedulerv1.GenerateRequest) { r.Temperature = 101 })},
		schedRow{"Generate", "top_p", "-0.1", IA, "top_p", gen(func(r *schedulerv1.GenerateRequest) { r.TopP = -0.1 })},
		schedRow{"Generate", "top_p", "1.5", IA, "top_p", gen(func(r *schedulerv1.GenerateRequest) { r.TopP = 1.5 })},
		schedRow{"Generate", "top_p", "NaN", IA, "top_p", gen(func(r *schedulerv1.GenerateRequest) { r.TopP = float32(math.NaN()) })},
		schedRow{"Generate", "top_p", "-Inf", IA, "top_p", gen(func(r *schedulerv1.GenerateRequest) { r.TopP = float32(math.Inf(-1)) })},
		schedRow{"Generate", "top_k", "vocabulary + 1", IA, "top_k", gen(func(r *schedulerv1.GenerateRequest) { r.TopK = uint32(vocab) + 1 })},
		schedRow{"Generate", "top_k", "max uint32", IA, "top_k", gen(func(r *schedulerv1.GenerateRequest) { r.TopK = 1<<32 - 1 })},
		// Stop strings and salt.
		schedRow{"Generate", "stop", "17 strings", IA, "stop", gen(func(r *schedulerv1.GenerateRequest) { r.Stop = strings.Split(long(17), "") })},
		schedRow{"Generate", "stop[0]", "empty", IA, "stop[0]", gen(func(r *schedulerv1.GenerateRequest) { r.Stop = []string{""} })},
		schedRow{"Generate", "stop[2]", "257 bytes", IA, "stop[2]", gen(func(r *schedulerv1.GenerateRequest) { r.Stop = []string{"a", "b", long(257)} })},
		schedRow{"Generate", "cache_salt", "129 bytes", IA, "cache_salt", gen(func(r *schedulerv1.GenerateRequest) { r.CacheSalt = long(129) })},
		schedRow{"Generate", "cache_salt", "1 MiB", IA, "cache_salt", gen(func(r *schedulerv1.GenerateRequest) { r.CacheSalt = long(1 << 20) })},
		// Conversations.
		schedRow{"Generate", "messages", "unknown role", IA, "messages", gen(chat(msgs("wizard", "hi")))},
		schedRow{"Generate", "messages", "empty role", IA, "messages", gen(chat(msgs("", "hi")))},
		schedRow{"Generate", "messages", "role in capitals", IA, "messages", gen(chat(msgs("USER", "hi")))},
		schedRow{"Generate", "messages", "system not first", IA, "messages", gen(chat(msgs("user", "hi", "system", "late")))},
		schedRow{"Generate", "messages", "reserved U+E000 in content", IA, "messages", gen(chat(msgs("user", "a\ue000b")))},
		schedRow{"Generate", "messages", "reserved U+E001 in content", IA, "messages", gen(chat(msgs("user", "\ue001")))},
		schedRow{"Generate", "messages", "4097 messages", IA, "messages", gen(chat(many))},
		schedRow{"Generate", "messages", "content over the byte limit", IA, "messages", gen(chat(msgs("user", long(maxText+1))))},
		schedRow{"Generate", "messages", "content filling the context", IA, "messages", gen(chat(msgs("user", long(seqLen))))},
		// Append: no stored context to append to, a stored context the
		// model cannot continue, and one the prompt would overflow.
		schedRow{"Generate", "prompt", "append, no stored context, no prompt", IA, "prompt", gen(func(r *schedulerv1.GenerateRequest) {
			r.AgentId, r.Prompt, r.Append = "nobody-yet", "", true
		})},
		schedRow{"Generate", "append", "to a record with ids outside the vocabulary", codes.FailedPrecondition, "", gen(func(r *schedulerv1.GenerateRequest) {
			r.AgentId, r.Prompt, r.Append = "damaged", " more", true
		})},
		schedRow{"Generate", "prompt", "append overflowing the context", IA, "prompt", gen(func(r *schedulerv1.GenerateRequest) {
			r.AgentId, r.Prompt, r.Append = "known", long(seqLen-8), true
		})},
		schedRow{"Generate", "max_tokens", "append with 0", IA, "max_tokens", gen(func(r *schedulerv1.GenerateRequest) {
			r.AgentId, r.Prompt, r.Append, r.MaxTokens = "known", " more", true, 0
		})},
		// Streams that break: the client cancels after the first token, or
		// its deadline passes mid-generation. Nothing may stay held.
		schedRow{"Generate", "stream", "cancelled after the first token", codes.Canceled, "", func(ctx context.Context, c schedulerv1.SchedulerServiceClient) error {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			st, err := c.Generate(ctx, &schedulerv1.GenerateRequest{AgentId: "breaker", Prompt: "Once upon a time", MaxTokens: 1500})
			if err != nil {
				return err
			}
			if _, err := st.Recv(); err != nil {
				return err
			}
			cancel()
			for {
				if _, err := st.Recv(); err != nil {
					return err
				}
			}
		}},
		schedRow{"Generate", "stream", "deadline mid-generation", codes.DeadlineExceeded, "", func(ctx context.Context, c schedulerv1.SchedulerServiceClient) error {
			ctx, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
			defer cancel()
			_, err := generate(ctx, c, &schedulerv1.GenerateRequest{AgentId: "breaker", Prompt: "Once upon a time", MaxTokens: 2000})
			return err
		}},
	)

	list := func(r *schedulerv1.ListAgentsRequest) func(ctx context.Context, c schedulerv1.SchedulerServiceClient) error {
		return func(ctx context.Context, c schedulerv1.SchedulerServiceClient) error {
			_, err := c.ListAgents(ctx, r)
			return err
		}
	}
	add(schedRow{"ListAgents", "page_size", "1001", IA, "page_size", list(&schedulerv1.ListAgentsRequest{PageSize: 1001})},
		schedRow{"ListAgents", "page_size", "max uint32", IA, "page_size", list(&schedulerv1.ListAgentsRequest{PageSize: 1<<32 - 1})},
		schedRow{"ListAgents", "page_token", "not a token", IA, "page_token", list(&schedulerv1.ListAgentsRequest{PageToken: "!!"})},
		schedRow{"ListAgents", "page_token", "1 MiB", IA, "page_token", list(&schedulerv1.ListAgentsRequest{PageToken: long(1<<20) + "!"})},
	)
	// tenant: a name that cannot be a tenant, or "*" (every tenant) where
	// one agent is meant. (Whose tenant a caller may name is the API keys'
	// business; a scheduler without keys is checked by the auth tests.)
	for _, b := range []struct{ value, tenant string }{{"capitals and spaces", "Not A Tenant"}, {"64 bytes", long(64)}, {"a slash", "t/a"}} {
		add(schedRow{"ListAgents", "tenant", b.value, IA, "tenant", list(&schedulerv1.ListAgentsRequest{Tenant: b.tenant})})
	}
	for _, b := range []struct{ value, tenant string }{{"capitals and spaces", "Not A Tenant"}, {"every tenant (*)", "*"}} {
		add(schedRow{"GetAgent", "tenant", b.value, IA, "tenant", func(ctx context.Context, c schedulerv1.SchedulerServiceClient) error {
			_, err := c.GetAgent(ctx, &schedulerv1.GetAgentRequest{AgentId: "known", Tenant: b.tenant})
			return err
		}}, schedRow{"DeleteAgent", "tenant", b.value, IA, "tenant", func(ctx context.Context, c schedulerv1.SchedulerServiceClient) error {
			_, err := c.DeleteAgent(ctx, &schedulerv1.DeleteAgentRequest{AgentId: "known", Tenant: b.tenant})
			return err
		}})
	}
	for _, b := range badIDs {
		add(schedRow{"GetAgent", "agent_id", b.value, IA, "agent_id", func(ctx context.Context, c schedulerv1.SchedulerServiceClient) error {
			_, err := c.GetAgent(ctx, &schedulerv1.GetAgentRequest{AgentId: b.id})
			return err
		}}, schedRow{"DeleteAgent", "agent_id", b.value, IA, "agent_id", func(ctx context.Context, c schedulerv1.SchedulerServiceClient) error {
			_, err := c.DeleteAgent(ctx, &schedulerv1.DeleteAgentRequest{AgentId: b.id})
			return err
		}})
	}
	add(schedRow{"GetAgent", "agent_id", "unknown", codes.NotFound, "", func(ctx context.Context, c schedulerv1.SchedulerServiceClient) error {
		_, err := c.GetAgent(ctx, &schedulerv1.GetAgentRequest{AgentId: "nobody"})
		return err
	}})
	return rows
}

func TestBadInputBattery(t *testing.T) {
	ts := startScheduler(t, t.TempDir(), testConfig())
	// A record the append rows continue, and one the model cannot.
	known := mustGenerate(t, ts.client, &schedulerv1.GenerateRequest{AgentId: "known", Prompt: "Hello there.", MaxTokens: 4})
	if !known.usage.GetTurnSaved() {
		t.Fatalf("fixture turn not saved: %+v", known.usage)
	}
	plantRecord(t, ts, "damaged", []uint32{1, 2, 1 << 20})
	checkPoolQuiet(t, ts.pool)
	start := schedStateOf(t, ts)

	m := ts.Model
	rows := schedRows(m.MaxTextBytes(), m.Config.Vocab, m.Config.SeqLen)
	seen := map[string]bool{}
	for _, r := range rows {
		if seen[r.name()] {
			t.Fatalf("duplicate row %s", r.name())
		}
		seen[r.name()] = true
		t.Run(r.name(), func(t *testing.T) {
			before := schedStateOf(t, ts)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			began := time.Now()
			err := r.call(ctx, ts.client)
			code := status.Code(err)
			switch {
			case code == codes.DeadlineExceeded && r.code != codes.DeadlineExceeded:
				t.Errorf("hang: no answer within %v (%v)", time.Since(began).Round(time.Millisecond), err)
			case code == codes.Internal || code == codes.Unknown:
				t.Errorf("got %v, want %v: never INTERNAL/UNKNOWN for bad input", err, r.code)
			case code != r.code:
				t.Errorf("got %v (field %q), want %v", err, rpcstatus.FieldOf(err), r.code)
			case code == codes.InvalidArgument && rpcstatus.FieldOf(err) != r.want:
				t.Errorf("BadRequest field %q, want %q (%v)", rpcstatus.FieldOf(err), r.want, err)
			}
			// A broken stream is wound down by the scheduler after the
			// client has gone: wait for it, then compare.
			var now schedState
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				if now = schedStateOf(t, ts); now == before || time.Now().After(deadline) {
					break
				}
			}
			if now != before {
				t.Errorf("state changed:\n before %+v\n after  %+v", before, now)
			}
			if err := ts.Embedded.Node.Pool().Check(); err != nil {
				t.Errorf("pool invariant: %v", err)
			}
		})
	}
	rpcs := map[string]int{}
	for _, r := range rows {
		rpcs[r.rpc]++
	}
	t.Logf("%d rows over %d RPCs: %v", len(rows), len(rpcs), rpcs)
	if now := schedStateOf(t, ts); now != start {
		t.Errorf("state changed over the battery:\n start %+v\n end   %+v", start, now)
	}
	// The known agent still continues from its record.
	next := mustGenerate(t, ts.client, &schedulerv1.GenerateRequest{AgentId: "known", Prompt: " Again.", Append: true, MaxTokens: 2})
	if next.usage.GetCachedTokens() == 0 || !next.usage.GetTurnSaved() {
		t.Fatalf("known agent after the battery: %+v", next.usage)
	}
	checkPoolQuiet(t, ts.pool)
}

// rawCodec sends bytes as they are, so that a row can put on the wire what
// no protobuf library would marshal (invalid UTF-8 in a string field,
// truncated or garbage messages): bad input a client in another language,
// or a broken one, can send all the same.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return v.([]byte), nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), b...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// TestBadInputMalformedMessages sends requests the scheduler cannot decode
// at all. The contract says INVALID_ARGUMENT (no field can be named), never
// INTERNAL; grpc-go itself answers INTERNAL ("grpc: failed to unmarshal the
// received message", rpc_util.go) before a handler or interceptor runs.
func TestBadInputMalformedMessages(t *testing.T) {
	ts := startScheduler(t, t.TempDir(), testConfig())
	const svc = "/semantic.scheduler.v1.SchedulerService/"
	unary := func(method string, b []byte) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			var out []byte
			return ts.conn.Invoke(ctx, svc+method, b, &out, grpc.ForceCodec(rawCodec{}))
		}
	}
	generateRaw := func(b []byte) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			st, err := ts.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, svc+"Generate", grpc.ForceCodec(rawCodec{}))
			if err != nil {
				return err
			}
			if err := st.SendMsg(b); err != nil {
				return err
			}
			if err := st.CloseSend(); err != nil {
				return err
			}
			for {
				var out []byte
				if err := st.RecvMsg(&out); err != nil {
					return err
				}
			}
		}
	}
	for _, r := range []struct {
		name string
		call func(ctx context.Context) error
	}{
		// agent_id (field 1) "\xff"; prompt (field 2) "\xc3\x28"; a
		// length that runs past the end; bytes that are no message.
		{"GetAgent/agent_id=invalid UTF-8 on the wire", unary("GetAgent", []byte{0x0a, 0x01, 0xff})},
		{"DeleteAgent/message=garbage bytes", unary("DeleteAgent", []byte{0xff, 0xff, 0xff, 0xff})},
		{"Generate/prompt=invalid UTF-8 on the wire", generateRaw([]byte{0x0a, 0x01, 'a', 0x12, 0x02, 0xc3, 0x28, 0x20, 0x04})},
		{"Generate/message=truncated", generateRaw([]byte{0x0a, 0x10, 'a'})},
	} {
		t.Run(r.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := r.call(ctx)
			switch code := status.Code(err); {
			case code == codes.DeadlineExceeded:
				t.Errorf("hang: %v", err)
			case code != codes.InvalidArgument:
				t.Errorf("got %v, want INVALID_ARGUMENT: never INTERNAL/UNKNOWN for bad input", err)
			}
		})
	}
	checkPoolQuiet(t, ts.pool)
}
