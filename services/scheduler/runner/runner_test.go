package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
	"github.com/semantic-kv/semantic/pkg/rpcstatus"
	"github.com/semantic-kv/semantic/pkg/server"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// grpc's and otel's background goroutines that outlive a test by design.
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
	)
}

// testScheduler is a scheduler with an embedded pool, served over real TCP
// on loopback.
type testScheduler struct {
	*Scheduler
	client schedulerv1.SchedulerServiceClient
	pool   blockpoolv1.BlockPoolServiceClient
	conn   *grpc.ClientConn
	srv    *grpc.Server
	closed bool
}

func testConfig() Config {
	return Config{
		Model: "builtin:tiny", BlockTokens: 8, KVDType: "float32", MaxBatch: 16, StepTokens: 64, MaxQueue: 64,
		HotCacheBytes: 64 << 20, LeaseTTL: 5 * time.Second, PoolCapacityBlocks: 2048,
		PoolMemoryBudget: 64 << 20, PoolDiskBudget: 1 << 30,
	}
}

func startScheduler(t *testing.T, dir string, cfg Config) *testScheduler {
	return startSchedulerWith(t, dir, cfg, Deps{})
}

func startSchedulerWith(t *testing.T, dir string, cfg Config, deps Deps) *testScheduler {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if deps.Logger == nil {
		deps.Logger = log
	}
	deps.DataDir, deps.Version = dir, "test"
	s, err := Start(context.Background(), cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	// The binary installs the same authentication through app.Runtime.
	srv, _, err := server.New(server.Options{Logger: log, Extra: s.Auth.ServerOptions()})
	if err != nil {
		t.Fatal(err)
	}
	s.Register(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ts := &testScheduler{Scheduler: s, client: schedulerv1.NewSchedulerServiceClient(conn), conn: conn, srv: srv}
	if s.Embedded != nil {
		ts.pool = blockpoolv1.NewBlockPoolServiceClient(s.Embedded.Conn)
	}
	t.Cleanup(ts.close)
	return ts
}

func (ts *testScheduler) close() {
	if ts.closed {
		return
	}
	ts.closed = true
	ts.conn.Close()
	ts.srv.Stop()
	_ = ts.Scheduler.Close(context.Background())
}

type result struct {
	tokens []uint32
	text   string
	finish schedulerv1.FinishReason
	usage  *schedulerv1.Usage
}

func generate(ctx context.Context, c schedulerv1.SchedulerServiceClient, req *schedulerv1.GenerateRequest) (*result, error) {
	stream, err := c.Generate(ctx, req)
	if err != nil {
		return nil, err
	}
	r := &result{}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return r, nil
		}
		if err != nil {
			return r, err
		}
		r.text += msg.GetText()
		if msg.GetUsage() != nil {
			r.finish, r.usage = msg.GetFinishReason(), msg.GetUsage()
			continue
		}
		r.tokens = append(r.tokens, msg.GetTokenId())
	}
}

func mustGenerate(t *testing.T, c schedulerv1.SchedulerServiceClient, req *schedulerv1.GenerateRequest) *result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := generate(ctx, c, req)
	if err != nil {
		t.Fatalf("generate %s: %v", req.GetAgentId(), err)
	}
	if r.usage == nil || int(r.usage.GetCompletionTokens()) != len(r.tokens) || r.usage.GetQueueMs() <= 0 ||
		r.usage.GetQueueMs() > r.usage.GetTimeToFirstTokenMs() && len(r.tokens) > 0 {
		t.Fatalf("generate %s: bad final message: %+v (%d tokens)", req.GetAgentId(), r.usage, len(r.tokens))
	}
	return r
}

func randomTokens(r *rand.Rand, n int) []uint32 {
	out := make([]uint32, n)
	for i := range out {
		out[i] = uint32(3 + r.IntN(256))
	}
	return out
}

func concat(parts ...[]uint32) []uint32 {
	var out []uint32
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// checkPoolQuiet waits until the embedded pool has no leases and its counts
// add up: every block a request took has been given back.
func checkPoolQuiet(t *testing.T, pool blockpoolv1.BlockPoolServiceClient) *blockpoolv1.GetPoolInfoResponse {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := pool.GetPoolInfo(context.Background(), &blockpoolv1.GetPoolInfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if info.GetLeasedBlocks() == 0 && info.GetActiveLeases() == 0 {
			if info.GetFreeBlocks()+info.GetCachedBlocks() != info.GetCapacityBlocks() {
				t.Fatalf("free %d + cached %d != capacity %d", info.GetFreeBlocks(), info.GetCachedBlocks(), info.GetCapacityBlocks())
			}
			return info
		}
		if time.Now().After(deadline) {
			t.Fatalf("pool still has %d leased blocks in %d leases", info.GetLeasedBlocks(), info.GetActiveLeases())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Reusing a cached prefix never changes the tokens: a warm turn equals the
// same turn computed cold, for greedy and for seeded sampling, from the hot
// cache, from the pool, and after DeleteAgent.
func TestWarmEqualsCold(t *testing.T) {
	ts := startScheduler(t, t.TempDir(), testConfig())
	r := rand.New(rand.NewPCG(7, 8))
	samplings := []struct {
		name string
		temp float32
		topP float32
		topK uint32
		seed uint64
	}{{"greedy", 0, 0, 0, 0}, {"seeded", 0.9, 0.95, 40, 1234}}
	for _, sm := range samplings {
		for i := 0; i < 4; i++ {
			agent := fmt.Sprintf("warm-%s-%d", sm.name, i)
			p := concat([]uint32{1}, randomTokens(r, 5+r.IntN(60)))
			mk := func(agent string, prompt []uint32, salt string) *schedulerv1.GenerateRequest {
				return &schedulerv1.GenerateRequest{AgentId: agent, PromptTokenIds: prompt, MaxTokens: uint32(4 + r.IntN(12)),
					Temperature: sm.temp, TopP: sm.topP, TopK: sm.topK, Seed: sm.seed, CacheSalt: salt}
			}
			first := mustGenerate(t, ts.client, mk(agent, p, ""))
			if first.usage.GetCachedTokens() != 0 {
				t.Fatalf("%s: first turn of a new agent reused %d tokens", agent, first.usage.GetCachedTokens())
			}
			// The next turn resends the whole context, as chat clients do.
			next := concat(p, first.tokens, randomTokens(r, 1+r.IntN(20)))
			req := mk(agent, next, "")
			req.MaxTokens = 10
			warm := mustGenerate(t, ts.client, req)
			if want := uint32(len(p) + len(first.tokens)); warm.usage.GetCachedTokens() != want {
				t.Fatalf("%s: warm turn reused %d tokens, want %d (prompt + completion)", agent, warm.usage.GetCachedTokens(), want)
			}
			if warm.usage.GetHotCachedTokens() == 0 && len(p)+len(first.tokens) >= 8 {
				t.Fatalf("%s: nothing came from the hot cache", agent)
			}
			// Cold: another agent under its own salt shares nothing.
			coldReq := mk("cold-"+agent, next, "salt-"+agent)
			coldReq.MaxTokens = 10
			cold := mustGenerate(t, ts.client, coldReq)
			if cold.usage.GetCachedTokens() != 0 {
				t.Fatalf("%s: cold run reused %d tokens", agent, cold.usage.GetCachedTokens())
			}
			if !reflect.DeepEqual(warm.tokens, cold.tokens) {
				t.Fatalf("%s: warm %v != cold %v", agent, warm.tokens, cold.tokens)
			}
			if _, err := ts.client.DeleteAgent(context.Background(), &schedulerv1.DeleteAgentRequest{AgentId: agent}); err != nil {
				t.Fatal(err)
			}
			again := mustGenerate(t, ts.client, req)
			if !reflect.DeepEqual(again.tokens, cold.tokens) {
				t.Fatalf("%s: after DeleteAgent %v != cold %v", agent, again.tokens, cold.tokens)
			}
		}
	}
	checkPoolQuiet(t, ts.pool)
}

// An agent resumes warm from the pool after the scheduler restarts (its hot
// cache is gone) and the tokens still equal a cold run.
func TestRestartResumesWarmFromPool(t *testing.T) {
	dir := t.TempDir()
	ts := startScheduler(t, dir, testConfig())
	r := rand.New(rand.NewPCG(9, 10))
	p := concat([]uint32{1}, randomTokens(r, 50))
	first := mustGenerate(t, ts.client, &schedulerv1.GenerateRequest{AgentId: "restart", PromptTokenIds: p, MaxTokens: 6})
	next := concat(p, first.tokens, randomTokens(r, 9))
	hotRun := mustGenerate(t, ts.client, &schedulerv1.GenerateRequest{AgentId: "restart-probe", PromptTokenIds: next, MaxTokens: 8, CacheSalt: "x"})
	ts.close()

	ts = startScheduler(t, dir, testConfig())
	warm := mustGenerate(t, ts.client, &schedulerv1.GenerateRequest{AgentId: "restart", PromptTokenIds: next, MaxTokens: 8})
	if warm.usage.GetCachedTokens() != uint32(len(p)+len(first.tokens)) || warm.usage.GetHotCachedTokens() != 0 {
		t.Fatalf("after restart: cached %d (hot %d), want %d from the pool", warm.usage.GetCachedTokens(), warm.usage.GetHotCachedTokens(), len(p)+len(first.tokens))
	}
	if !reflect.DeepEqual(warm.tokens, hotRun.tokens) {
		t.Fatalf("warm from pool %v != cold %v", warm.tokens, hotRun.tokens)
	}
	checkPoolQuiet(t, ts.pool)
}

// 32 agents stream at once; every agent's second turn is warm and the pool
// ends with every block back.
func TestConcurrentAgents(t *testing.T) {
	ts := startScheduler(t, t.TempDir(), testConfig())
	start := checkPoolQuiet(t, ts.pool)
	const agents = 32
	var wg sync.WaitGroup
	errs := make(chan error, agents)
	for i := 0; i < agents; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(i), 99))
			agent := fmt.Sprintf("crowd-%02d", i)
			p := concat([]uint32{1}, randomTokens(r, 10+r.IntN(40)))
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			first, err := generate(ctx, ts.client, &schedulerv1.GenerateRequest{AgentId: agent, PromptTokenIds: p, MaxTokens: 8})
			if err != nil {
				errs <- fmt.Errorf("%s turn 1: %w", agent, err)
				return
			}
			next := concat(p, first.tokens, randomTokens(r, 5))
			second, err := generate(ctx, ts.client, &schedulerv1.GenerateRequest{AgentId: agent, PromptTokenIds: next, MaxTokens: 8})
			if err != nil {
				errs <- fmt.Errorf("%s turn 2: %w", agent, err)
				return
			}
			if second.usage.GetCachedTokens() != uint32(len(p)+len(first.tokens)) {
				errs <- fmt.Errorf("%s: turn 2 reused %d tokens, want %d", agent, second.usage.GetCachedTokens(), len(p)+len(first.tokens))
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	end := checkPoolQuiet(t, ts.pool)
	if end.GetCapacityBlocks() != start.GetCapacityBlocks() || end.GetAgents() < agents {
		t.Fatalf("pool after: %+v", end)
	}
	if ts.Service.LeasedBlocks() != 0 || ts.Service.BusyAgents() != 0 {
		t.Fatalf("scheduler still holds %d blocks, %d agents busy", ts.Service.LeasedBlocks(), ts.Service.BusyAgents())
	}
	stats, err := ts.client.GetStats(context.Background(), &schedulerv1.GetStatsRequest{})
	if err != nil || stats.GetRequestsCompleted() != 2*agents || stats.GetPrefixHitRate() <= 0 {
		t.Fatalf("stats %v %v", stats, err)
	}
}

// Cancelling mid-stream and running past a deadline end the request with the
// right code and give every block back at once.
// slowConfig serves builtin:small, whose tokens take long enough that a
// request of hundreds of tokens is surely still running when the test acts.
func slowConfig() Config {
	cfg := testConfig()
	cfg.Model = "builtin:small"
	return cfg
}

func TestCancelAndDeadlineFreeBlocks(t *testing.T) {
	ts := startScheduler(t, t.TempDir(), slowConfig())
	long := &schedulerv1.GenerateRequest{AgentId: "quitter", PromptTokenIds: concat([]uint32{1}, randomTokens(rand.New(rand.NewPCG(1, 1)), 30)), MaxTokens: 900}

	ctx, cancel := context.WithCancel(context.Background())
	stream, err := ts.client.Generate(ctx, long)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	for err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Canceled {
		t.Fatalf("want CANCELED, got %v", err)
	}
	checkPoolQuiet(t, ts.pool)

	dctx, dcancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer dcancel()
	_, err = generate(dctx, ts.client, long)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("want DEADLINE_EXCEEDED, got %v", err)
	}
	checkPoolQuiet(t, ts.pool)
	// The agent is usable right after.
	mustGenerate(t, ts.client, &schedulerv1.GenerateRequest{AgentId: "quitter", PromptTokenIds: []uint32{1, 5}, MaxTokens: 2})
}

// Two requests of one agent run one after the other; a second whose deadline
// ends while the first runs gets DEADLINE_EXCEEDED and takes nothing.
func TestSameAgentRequestsAreSerialised(t *testing.T) {
	ts := startScheduler(t, t.TempDir(), slowConfig())
	p := concat([]uint32{1}, randomTokens(rand.New(rand.NewPCG(2, 2)), 20))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := ts.client.Generate(ctx, &schedulerv1.GenerateRequest{AgentId: "busy", PromptTokenIds: p, MaxTokens: 900})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer dcancel()
	if _, err := generate(dctx, ts.client, &schedulerv1.GenerateRequest{AgentId: "busy", PromptTokenIds: p, MaxTokens: 2}); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("second request: want DEADLINE_EXCEEDED, got %v", err)
	}
	// Without a deadline the second waits for the first and then runs.
	done := make(chan *result, 1)
	go func() {
		r, err := generate(context.Background(), ts.client, &schedulerv1.GenerateRequest{AgentId: "busy", PromptTokenIds: p, MaxTokens: 2})
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	time.Sleep(100 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("second request ran while the first was still running")
	default:
	}
	cancel()
	if r := <-done; r == nil || r.usage == nil {
		t.Fatal("second request did not finish")
	}
	checkPoolQuiet(t, ts.pool)
}

func TestPoolExhaustedAndUnreachable(t *testing.T) {
	cfg := testConfig()
	cfg.PoolCapacityBlocks = 10
	ts := startScheduler(t, t.TempDir(), cfg)
	// 8 tokens per block: 1 + 20 + 27 positions need 6 blocks. Another
	// holder's lease of 5 of the 10 blocks (held, not racing a request that
	// could finish first) leaves too few.
	p := concat([]uint32{1}, randomTokens(rand.New(rand.NewPCG(3, 3)), 20))
	hog, err := ts.Pool.Nodes()[0].Lease(context.Background(), &blockpoolv1.LeaseRequest{
		Holder: "hog", AgentId: "hog", Count: 5, ModelTag: ts.Engine.Spec().ModelTag})
	if err != nil {
		t.Fatal(err)
	}
	_, err = generate(context.Background(), ts.client, &schedulerv1.GenerateRequest{AgentId: "starved", PromptTokenIds: p, MaxTokens: 27, CacheSalt: "other"})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("want RESOURCE_EXHAUSTED, got %v", err)
	}
	if _, err := hog.Release(false); err != nil {
		t.Fatal(err)
	}
	checkPoolQuiet(t, ts.pool)
	// With the blocks back the same request runs.
	if _, err := generate(context.Background(), ts.client, &schedulerv1.GenerateRequest{AgentId: "starved", PromptTokenIds: p, MaxTokens: 27, CacheSalt: "other"}); err != nil {
		t.Fatal(err)
	}
	checkPoolQuiet(t, ts.pool)
	// More blocks than the pool has at all is exhausted too, not a bad argument.
	_, err = generate(context.Background(), ts.client, &schedulerv1.GenerateRequest{AgentId: "huge", PromptTokenIds: p, MaxTokens: 200})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("oversized: want RESOURCE_EXHAUSTED, got %v", err)
	}
	checkPoolQuiet(t, ts.pool)

	cfg = testConfig()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	cfg.Pool = dead
	ts2 := startScheduler(t, t.TempDir(), cfg)
	_, err = generate(context.Background(), ts2.client, &schedulerv1.GenerateRequest{AgentId: "lonely", PromptTokenIds: []uint32{1, 2, 3}, MaxTokens: 2})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("pool unreachable: want UNAVAILABLE, got %v", err)
	}
}

func TestInvalidRequestsNameTheField(t *testing.T) {
	ts := startScheduler(t, t.TempDir(), testConfig())
	cases := []struct {
		field string
		req   *schedulerv1.GenerateRequest
	}{
		{"agent_id", &schedulerv1.GenerateRequest{AgentId: "bad id!", PromptTokenIds: []uint32{1}, MaxTokens: 1}},
		{"agent_id", &schedulerv1.GenerateRequest{PromptTokenIds: []uint32{1}, MaxTokens: 1}},
		{"prompt", &schedulerv1.GenerateRequest{AgentId: "a", MaxTokens: 1}},
		{"prompt", &schedulerv1.GenerateRequest{AgentId: "a", Prompt: "x", PromptTokenIds: []uint32{1}, MaxTokens: 1}},
		{"prompt_token_ids[1]", &schedulerv1.GenerateRequest{AgentId: "a", PromptTokenIds: []uint32{1, 100000}, MaxTokens: 1}},
		{"max_tokens", &schedulerv1.GenerateRequest{AgentId: "a", PromptTokenIds: []uint32{1}}},
		{"max_tokens", &schedulerv1.GenerateRequest{AgentId: "a", PromptTokenIds: []uint32{1}, MaxTokens: 1 << 30}},
		{"temperature", &schedulerv1.GenerateRequest{AgentId: "a", PromptTokenIds: []uint32{1}, MaxTokens: 1, Temperature: -1}},
		{"top_p", &schedulerv1.GenerateRequest{AgentId: "a", PromptTokenIds: []uint32{1}, MaxTokens: 1, TopP: 1.5}},
		{"top_k", &schedulerv1.GenerateRequest{AgentId: "a", PromptTokenIds: []uint32{1}, MaxTokens: 1, TopK: 1 << 20}},
		{"stop[0]", &schedulerv1.GenerateRequest{AgentId: "a", PromptTokenIds: []uint32{1}, MaxTokens: 1, Stop: []string{""}}},
		{"prompt_token_ids", &schedulerv1.GenerateRequest{AgentId: "a", PromptTokenIds: make([]uint32, 5000), MaxTokens: 1}},
	}
	for _, tc := range cases {
		_, err := generate(context.Background(), ts.client, tc.req)
		if status.Code(err) != codes.InvalidArgument || rpcstatus.FieldOf(err) != tc.field {
			t.Errorf("%v: got %v (field %q), want INVALID_ARGUMENT naming %q", tc.req, err, rpcstatus.FieldOf(err), tc.field)
		}
	}
	if _, err := ts.client.GetAgent(context.Background(), &schedulerv1.GetAgentRequest{AgentId: "nobody"}); status.Code(err) != codes.NotFound {
		t.Errorf("GetAgent unknown: %v", err)
	}
	checkPoolQuiet(t, ts.pool)
}

// Text in, text out, stop strings cut, append continues the stored context.
func TestTextStopAndAppend(t *testing.T) {
	ts := startScheduler(t, t.TempDir(), testConfig())
	ref := mustGenerate(t, ts.client, &schedulerv1.GenerateRequest{AgentId: "texter", Prompt: "Hello, agent.", MaxTokens: 64})
	if len(ref.text) == 0 {
		t.Fatal("no text")
	}
	// Stop at the first printable ASCII byte the model generates (the byte
	// tokenizer maps token t to byte t-3).
	k := -1
	for i, tok := range ref.tokens {
		if tok >= 3+'!' && tok <= 3+'~' {
			k = i
			break
		}
	}
	if k < 0 {
		t.Fatalf("no printable byte in %v", ref.tokens)
	}
	stop := string(rune(ref.tokens[k] - 3))
	stopped := mustGenerate(t, ts.client, &schedulerv1.GenerateRequest{AgentId: "texter2", Prompt: "Hello, agent.", MaxTokens: 64, Stop: []string{stop}})
	if stopped.finish != schedulerv1.FinishReason_FINISH_REASON_STOP || !reflect.DeepEqual(stopped.tokens, ref.tokens[:k+1]) || indexString(stopped.text, stop) >= 0 {
		t.Fatalf("stop %q: got %v %q (%v), want tokens %v", stop, stopped.tokens, stopped.text, stopped.finish, ref.tokens[:k+1])
	}
	// Append: continue from the stored context with only the new text.
	app := mustGenerate(t, ts.client, &schedulerv1.GenerateRequest{AgentId: "texter", Prompt: " More.", Append: true, MaxTokens: 5})
	full := mustGenerate(t, ts.client, &schedulerv1.GenerateRequest{AgentId: "texter-full", CacheSalt: "full",
		PromptTokenIds: concat(encodeBytes("Hello, agent.", true), ref.tokens, encodeBytes(" More.", false)), MaxTokens: 5})
	if !reflect.DeepEqual(app.tokens, full.tokens) || app.usage.GetPromptTokens() != full.usage.GetPromptTokens() {
		t.Fatalf("append %v (%d prompt) != full %v (%d prompt)", app.tokens, app.usage.GetPromptTokens(), full.tokens, full.usage.GetPromptTokens())
	}
	if app.usage.GetCachedTokens() == 0 {
		t.Fatal("append did not reuse the stored context")
	}
	got, err := ts.client.GetAgent(context.Background(), &schedulerv1.GetAgentRequest{AgentId: "texter"})
	if err != nil || int(got.GetAgent().GetTokenCount()) != int(app.usage.GetPromptTokens())+len(app.tokens) {
		t.Fatalf("GetAgent: %v %v", got, err)
	}
	list, err := ts.client.ListAgents(context.Background(), &schedulerv1.ListAgentsRequest{PageSize: 2})
	if err != nil || len(list.GetAgents()) != 2 || list.GetNextPageToken() == "" {
		t.Fatalf("ListAgents: %v %v", list, err)
	}
	checkPoolQuiet(t, ts.pool)
}

// encodeBytes is the byte tokenizer of the built-in models (BOS 1, byte b = b+3).
func encodeBytes(s string, bos bool) []uint32 {
	var out []uint32
	if bos {
		out = append(out, 1)
	}
	for i := 0; i < len(s); i++ {
		out = append(out, uint32(s[i])+3)
	}
	return out
}

func indexString(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// A full admission queue refuses at once with RESOURCE_EXHAUSTED.
func TestAdmissionQueueFull(t *testing.T) {
	cfg := slowConfig()
	cfg.MaxQueue = 1
	ts := startScheduler(t, t.TempDir(), cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := ts.client.Generate(ctx, &schedulerv1.GenerateRequest{AgentId: "first", PromptTokenIds: []uint32{1, 9, 9}, MaxTokens: 900})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	_, err = generate(context.Background(), ts.client, &schedulerv1.GenerateRequest{AgentId: "second", PromptTokenIds: []uint32{1, 2}, MaxTokens: 1})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("want RESOURCE_EXHAUSTED, got %v", err)
	}
	cancel()
	checkPoolQuiet(t, ts.pool)
}

// With float16 blocks the pool stores half the bytes; a warm turn computes
// the same tokens whether its blocks come from the hot cache or the pool, and
// the same as a cold run (the engine rounds K and V to float16 as it writes
// them).
func TestFloat16BlocksSameFromEveryTier(t *testing.T) {
	storedBlocksSameFromEveryTier(t, "float16", blockpoolv1.ElementType_ELEMENT_TYPE_FLOAT16)
}

// The same with q8_0 blocks (34 bytes per 32 elements).
func TestQ8_0BlocksSameFromEveryTier(t *testing.T) {
	storedBlocksSameFromEveryTier(t, "q8_0", blockpoolv1.ElementType_ELEMENT_TYPE_Q8_0)
}

// An unknown --kv-dtype is refused at start, naming the flag and the types.
func TestBadKVDType(t *testing.T) {
	cfg := testConfig()
	cfg.KVDType = "q4_1"
	_, err := Start(context.Background(), cfg, Deps{DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err == nil || !strings.Contains(err.Error(), "--kv-dtype") || !strings.Contains(err.Error(), "q8_0") {
		t.Fatalf("--kv-dtype q4_1: %v", err)
	}
}

func storedBlocksSameFromEveryTier(t *testing.T, dtype string, wire blockpoolv1.ElementType) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.KVDType = dtype
	ts := startScheduler(t, dir, cfg)
	r := rand.New(rand.NewPCG(11, 12))
	// 64 tokens: exactly 8 full blocks, which both warm turns below reuse.
	p := concat([]uint32{1}, randomTokens(r, 63))
	first := mustGenerate(t, ts.client, &schedulerv1.GenerateRequest{AgentId: "half", PromptTokenIds: p, MaxTokens: 1})
	tail := randomTokens(r, 7)
	if len(first.tokens) == 1 && tail[0] == first.tokens[0] {
		tail[0] = 3 + (tail[0]-3+1)%256
	}
	next := concat(p, tail)
	hot := mustGenerate(t, ts.client, &schedulerv1.GenerateRequest{AgentId: "half", PromptTokenIds: next, MaxTokens: 8})
	if hot.usage.GetCachedTokens() != 64 || hot.usage.GetHotCachedTokens() != 64 {
		t.Fatalf("%s warm turn from the hot cache: %+v", dtype, hot.usage)
	}
	info, err := ts.pool.GetPoolInfo(context.Background(), &blockpoolv1.GetPoolInfoRequest{})
	if err != nil || info.GetSpec().GetDtype() != wire {
		t.Fatalf("pool spec: %v %v", info.GetSpec(), err)
	}
	ts.close()

	ts = startScheduler(t, dir, cfg)
	fromPool := mustGenerate(t, ts.client, &schedulerv1.GenerateRequest{AgentId: "half-2", PromptTokenIds: next, MaxTokens: 8})
	if fromPool.usage.GetCachedTokens() != 64 || fromPool.usage.GetHotCachedTokens() != 0 {
		t.Fatalf("%s warm turn from the pool: %+v", dtype, fromPool.usage)
	}
	if !reflect.DeepEqual(fromPool.tokens, hot.tokens) {
		t.Fatalf("%s warm from pool %v != warm from hot cache %v", dtype, fromPool.tokens, hot.tokens)
	}
	checkPoolQuiet(t, ts.pool)
	ts.close()

	// Cold: a fresh scheduler and pool compute the whole prompt.
	ts = startScheduler(t, t.TempDir(), cfg)
	cold := mustGenerate(t, ts.client, &schedulerv1.GenerateRequest{AgentId: "cold", PromptTokenIds: next, MaxTokens: 8})
	if cold.usage.GetCachedTokens() != 0 {
		t.Fatalf("%s cold turn: %+v", dtype, cold.usage)
	}
	if !reflect.DeepEqual(cold.tokens, hot.tokens) {
		t.Fatalf("%s cold %v != warm %v", dtype, cold.tokens, hot.tokens)
	}
	checkPoolQuiet(t, ts.pool)
}

// Each request phase is a span, so a slow request can be taken apart in a
// trace viewer.
func TestRequestPhasesAreTraced(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	ts := startSchedulerWith(t, t.TempDir(), testConfig(), Deps{TracerProvider: tp})
	mustGenerate(t, ts.client, &schedulerv1.GenerateRequest{AgentId: "traced", PromptTokenIds: []uint32{1, 4, 5, 6}, MaxTokens: 3})
	got := map[string]bool{}
	for _, s := range rec.Ended() {
		got[s.Name()] = true
	}
	for _, want := range []string{"lookup", "lease", "load", "commit"} {
		if !got[want] {
			t.Errorf("no %q span (got %v)", want, got)
		}
	}
}

// Defect 6 (issue 13): a turn whose commit fails (here: the agent's record is
// deleted on the pool during the request, so the commit's expected version no
// longer matches) still ends OK, but its final message says that the turn was
// not saved and why; a saved turn says it was saved.
func TestUnsavedTurnIsReported(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	ts := startSchedulerWith(t, t.TempDir(), slowConfig(), Deps{MeterProvider: mp})
	prompt := concat([]uint32{1}, randomTokens(rand.New(rand.NewPCG(13, 6)), 20))
	first := mustGenerate(t, ts.client, &schedulerv1.GenerateRequest{AgentId: "lossy", PromptTokenIds: prompt, MaxTokens: 4})
	if !first.usage.GetTurnSaved() || first.usage.GetTurnUnsavedReason() != "" {
		t.Fatalf("first turn: want saved, got %+v", first.usage)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stream, err := ts.client.Generate(ctx, &schedulerv1.GenerateRequest{AgentId: "lossy", Append: true, PromptTokenIds: []uint32{7, 8}, MaxTokens: 300})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	// The record goes away behind the scheduler's back.
	if _, err := ts.pool.DeleteAgent(ctx, &blockpoolv1.DeleteAgentRequest{AgentId: "lossy"}); err != nil {
		t.Fatal(err)
	}
	var usage *schedulerv1.Usage
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("want the request to end OK, got %v", err)
		}
		if msg.GetUsage() != nil {
			usage = msg.GetUsage()
		}
	}
	if usage.GetTurnSaved() || usage.GetTurnUnsavedReason() != "version_conflict" || usage.GetTurnUnsavedDetail() == "" {
		t.Fatalf("want turn_saved=false with reason version_conflict, got %+v", usage)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	unsaved := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if d, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "semantic.scheduler.unsaved_turns" {
				for _, dp := range d.DataPoints {
					reason, _ := dp.Attributes.Value("reason")
					unsaved[reason.AsString()] += dp.Value
				}
			}
		}
	}
	if len(unsaved) != 1 || unsaved["version_conflict"] != 1 {
		t.Fatalf("semantic.scheduler.unsaved_turns: want version_conflict 1, got %v", unsaved)
	}
	checkPoolQuiet(t, ts.pool)
}
