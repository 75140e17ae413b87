package runner

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
	"github.com/semantic-kv/semantic/pkg/rpcstatus"
	"github.com/semantic-kv/semantic/pkg/testproc"
	"github.com/semantic-kv/semantic/services/scheduler/auth"
	"github.com/semantic-kv/semantic/services/scheduler/service"
)

// keySpec is one key of a test keys file.
type keySpec struct {
	name, tenant string
	role         auth.Role
}

// writeKeys writes a keys file with a fresh key per spec and returns the
// keys by name.
func writeKeys(t *testing.T, path string, quotas map[string]auth.Quota, specs ...keySpec) map[string]string {
	t.Helper()
	f := &auth.File{Tenants: quotas}
	keys := map[string]string{}
	for _, s := range specs {
		k, err := auth.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		f.Keys = append(f.Keys, auth.Key{Name: s.name, Tenant: s.tenant, Role: s.role, SHA256: auth.HashKey(k)})
		keys[s.name] = k
	}
	if err := f.Write(path); err != nil {
		t.Fatal(err)
	}
	return keys
}

// bearer sends an API key with every call of a connection.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return false }

// clientAs is a client of ts that sends key ("" sends none).
func clientAs(t *testing.T, ts *testScheduler, key string) schedulerv1.SchedulerServiceClient {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if key != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(key)))
	}
	conn, err := grpc.NewClient(ts.conn.Target(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return schedulerv1.NewSchedulerServiceClient(conn)
}

// authScheduler is a scheduler with API keys: users "a" and "b" of tenants
// a and b, and "ops", an admin of tenant ops.
func authScheduler(t *testing.T, cfg Config, quotas map[string]auth.Quota) (*testScheduler, map[string]string) {
	t.Helper()
	ts, keys, _ := authSchedulerWith(t, cfg, quotas, Deps{})
	return ts, keys
}

// authSchedulerWith is authScheduler with deps; it also returns the keys
// file.
func authSchedulerWith(t *testing.T, cfg Config, quotas map[string]auth.Quota, deps Deps) (*testScheduler, map[string]string, string) {
	t.Helper()
	cfg.AuthKeys = filepath.Join(t.TempDir(), "keys.json")
	keys := writeKeys(t, cfg.AuthKeys, quotas,
		keySpec{"a", "a", auth.RoleUser}, keySpec{"b", "b", auth.RoleUser}, keySpec{"ops", "ops", auth.RoleAdmin})
	return startSchedulerWith(t, t.TempDir(), cfg, deps), keys, cfg.AuthKeys
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// With --auth-keys every gRPC call needs "authorization: Bearer <key>":
// none, an unknown key or another scheme get UNAUTHENTICATED; health stays
// open (load balancers, `scheduler healthcheck`).
func TestAuthGRPCNeedsAKey(t *testing.T) {
	ts, keys := authScheduler(t, testConfig(), nil)
	ctx := callCtx(t)
	gen := &schedulerv1.GenerateRequest{AgentId: "alice", PromptTokenIds: []uint32{1, 2, 3}, MaxTokens: 2}
	for name, c := range map[string]schedulerv1.SchedulerServiceClient{
		"none": clientAs(t, ts, ""), "unknown": clientAs(t, ts, "sk-sem-not-a-key"),
	} {
		_, err := generate(ctx, c, gen)
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("%s: Generate: want UNAUTHENTICATED, got %v", name, err)
		}
		if name == "none" && status.Convert(err).Message() != "API key required: send the metadata authorization: Bearer <key>" {
			t.Fatalf("no key: message %q", status.Convert(err).Message())
		}
		for rpc, call := range map[string]func() error{
			"ListAgents": func() error { _, err := c.ListAgents(ctx, &schedulerv1.ListAgentsRequest{}); return err },
			"GetAgent":   func() error { _, err := c.GetAgent(ctx, &schedulerv1.GetAgentRequest{AgentId: "alice"}); return err },
			"DeleteAgent": func() error {
				_, err := c.DeleteAgent(ctx, &schedulerv1.DeleteAgentRequest{AgentId: "alice"})
				return err
			},
			"GetStats": func() error { _, err := c.GetStats(ctx, &schedulerv1.GetStatsRequest{}); return err },
		} {
			if err := call(); status.Code(err) != codes.Unauthenticated {
				t.Fatalf("%s: %s: want UNAUTHENTICATED, got %v", name, rpc, err)
			}
		}
	}
	basic := metadata.AppendToOutgoingContext(ctx, "authorization", "Basic "+keys["a"])
	if _, err := ts.client.GetStats(basic, &schedulerv1.GetStatsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("Basic scheme: want UNAUTHENTICATED, got %v", err)
	}
	if resp, err := healthpb.NewHealthClient(ts.conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health without a key: %v %v", resp, err)
	}
	if r := mustGenerate(t, clientAs(t, ts, keys["a"]), gen); r.usage == nil {
		t.Fatal("no usage with a good key")
	}
}

// The HTTP API takes the key as Authorization: Bearer (OpenAI's clients) or
// x-api-key (Anthropic's); without a good one it answers 401 in the
// endpoint's own error format. /health stays open.
func TestAuthHTTPNeedsAKey(t *testing.T) {
	cfg := testConfig()
	cfg.HTTPListen = "127.0.0.1:0"
	ts, keys := authScheduler(t, cfg, nil)
	base := "http://" + ts.HTTP.Addr().String()
	model := ts.Model.Name
	chat := `{"model":"` + model + `","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`
	call := func(method, path, body string, hdr ...string) (int, http.Header, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var out map[string]any
		_ = json.Unmarshal(raw, &out)
		return resp.StatusCode, resp.Header, out
	}
	openAIType := func(b map[string]any) any {
		e, _ := b["error"].(map[string]any)
		return e["type"]
	}
	for _, path := range []string{"/v1/chat/completions", "/v1/completions", "/v1/models"} {
		method, body := http.MethodPost, chat
		if path == "/v1/models" {
			method, body = http.MethodGet, ""
		}
		for _, hdr := range [][]string{nil, {"Authorization", "Bearer nope"}, {"X-Api-Key", "nope"}, {"Authorization", "Basic " + keys["a"]}} {
			code, h, b := call(method, path, body, hdr...)
			if code != 401 || openAIType(b) != "authentication_error" || h.Get("WWW-Authenticate") != "Bearer" {
				t.Fatalf("%s %v: want 401 authentication_error (OpenAI shape), got %d %v %v", path, hdr, code, h, b)
			}
		}
	}
	msgs := `{"model":"` + model + `","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`
	for _, hdr := range [][]string{nil, {"X-Api-Key", "nope"}, {"Authorization", "Bearer nope"}} {
		code, _, b := call(http.MethodPost, "/v1/messages", msgs, hdr...)
		e, _ := b["error"].(map[string]any)
		if code != 401 || b["type"] != "error" || e["type"] != "authentication_error" {
			t.Fatalf("/v1/messages %v: want 401 in Anthropic's shape, got %d %v", hdr, code, b)
		}
	}
	if code, _, b := call(http.MethodPost, "/v1/chat/completions", chat, "Authorization", "Bearer "+keys["a"]); code != 200 {
		t.Fatalf("Bearer key: %d %v", code, b)
	}
	if code, _, b := call(http.MethodPost, "/v1/messages", msgs, "X-Api-Key", keys["b"]); code != 200 {
		t.Fatalf("x-api-key: %d %v", code, b)
	}
	if code, _, b := call(http.MethodGet, "/health", ""); code != 200 {
		t.Fatalf("health without a key: %d %v", code, b)
	}
	// The principal reached the service: the agents are the keys' tenants'.
	for _, who := range []string{"a", "b"} {
		list, err := clientAs(t, ts, keys[who]).ListAgents(callCtx(t), &schedulerv1.ListAgentsRequest{})
		if err != nil || len(list.GetAgents()) != 1 || list.GetAgents()[0].GetTenant() != who {
			t.Fatalf("tenant %s's agents after its HTTP request: %v %v", who, list, err)
		}
	}
	http.DefaultClient.CloseIdleConnections()
}

// Tenants are isolated: tenant a's "alice" and tenant b's are two agents
// (records, locks); a user can neither name another tenant nor list, read or
// delete its agents (PERMISSION_DENIED); and a tenant's cache answers only
// its own requests, so b sending a's exact prompt gets cached_tokens 0
// while a's next request is cached.
func TestTenantsAreIsolated(t *testing.T) {
	ts, keys := authScheduler(t, testConfig(), nil)
	ctx := callCtx(t)
	a, b := clientAs(t, ts, keys["a"]), clientAs(t, ts, keys["b"])
	promptA := []uint32{1, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27}
	promptB := []uint32{1, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39}
	ra := mustGenerate(t, a, &schedulerv1.GenerateRequest{AgentId: "alice", PromptTokenIds: promptA, MaxTokens: 3})
	rb := mustGenerate(t, b, &schedulerv1.GenerateRequest{AgentId: "alice", PromptTokenIds: promptB, MaxTokens: 3})
	if rb.usage.GetCachedTokens() != 0 {
		t.Fatalf("b's alice reused %d tokens of a's", rb.usage.GetCachedTokens())
	}
	ga, err := a.GetAgent(ctx, &schedulerv1.GetAgentRequest{AgentId: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	gb, err := b.GetAgent(ctx, &schedulerv1.GetAgentRequest{AgentId: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if got := ga.GetAgent(); got.GetAgentId() != "alice" || got.GetTenant() != "a" || int(got.GetTokenCount()) != len(promptA)+len(ra.tokens) {
		t.Fatalf("a's alice: %v", got)
	}
	if got := gb.GetAgent(); got.GetAgentId() != "alice" || got.GetTenant() != "b" || int(got.GetTokenCount()) != len(promptB)+len(rb.tokens) {
		t.Fatalf("b's alice: %v", got)
	}

	// b cannot reach a's agents by naming a's tenant.
	for rpc, err := range map[string]error{
		"GetAgent": func() error {
			_, err := b.GetAgent(ctx, &schedulerv1.GetAgentRequest{AgentId: "alice", Tenant: "a"})
			return err
		}(),
		"ListAgents": func() error { _, err := b.ListAgents(ctx, &schedulerv1.ListAgentsRequest{Tenant: "a"}); return err }(),
		"ListAgents *": func() error {
			_, err := b.ListAgents(ctx, &schedulerv1.ListAgentsRequest{Tenant: "*"})
			return err
		}(),
		"DeleteAgent": func() error {
			_, err := b.DeleteAgent(ctx, &schedulerv1.DeleteAgentRequest{AgentId: "alice", Tenant: "a"})
			return err
		}(),
	} {
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("b's %s of tenant a: want PERMISSION_DENIED, got %v", rpc, err)
		}
	}
	if _, err := b.GetAgent(ctx, &schedulerv1.GetAgentRequest{AgentId: "alice", Tenant: "Not A Tenant"}); status.Code(err) != codes.InvalidArgument || rpcstatus.FieldOf(err) != "tenant" {
		t.Fatalf("bad tenant: want INVALID_ARGUMENT naming tenant, got %v", err)
	}
	// Naming its own tenant is allowed.
	if _, err := b.GetAgent(ctx, &schedulerv1.GetAgentRequest{AgentId: "alice", Tenant: "b"}); err != nil {
		t.Fatal(err)
	}
	// b lists only its own.
	list, err := b.ListAgents(ctx, &schedulerv1.ListAgentsRequest{})
	if err != nil || len(list.GetAgents()) != 1 || list.GetAgents()[0].GetTenant() != "b" || list.GetAgents()[0].GetAgentId() != "alice" {
		t.Fatalf("b's list: %v %v", list, err)
	}
	// b deleting its alice leaves a's.
	if d, err := b.DeleteAgent(ctx, &schedulerv1.DeleteAgentRequest{AgentId: "alice"}); err != nil || !d.GetDeleted() {
		t.Fatalf("b's delete: %v %v", d, err)
	}
	if _, err := b.GetAgent(ctx, &schedulerv1.GetAgentRequest{AgentId: "alice"}); status.Code(err) != codes.NotFound {
		t.Fatalf("b's alice after delete: %v", err)
	}
	if g, err := a.GetAgent(ctx, &schedulerv1.GetAgentRequest{AgentId: "alice"}); err != nil || g.GetAgent().GetVersion() != ga.GetAgent().GetVersion() {
		t.Fatalf("a's alice after b's delete: %v %v", g, err)
	}

	// No cross-tenant cache: b's alice sending a's alice's exact prompt is
	// cold; a's carol sending it is warm (one tenant shares by content).
	if r := mustGenerate(t, b, &schedulerv1.GenerateRequest{AgentId: "alice", PromptTokenIds: promptA, MaxTokens: 2}); r.usage.GetCachedTokens() != 0 {
		t.Fatalf("tenant b probed tenant a's cache: %d cached tokens", r.usage.GetCachedTokens())
	}
	// With the same cache_salt too: the salt the pool sees is the tenant's.
	mustGenerate(t, a, &schedulerv1.GenerateRequest{AgentId: "dave", PromptTokenIds: promptA, MaxTokens: 2, CacheSalt: "shared"})
	if r := mustGenerate(t, b, &schedulerv1.GenerateRequest{AgentId: "bob", PromptTokenIds: promptA, MaxTokens: 2, CacheSalt: "shared"}); r.usage.GetCachedTokens() != 0 {
		t.Fatalf("tenant b with a's salt %q matched a's blocks: %d cached tokens", "shared", r.usage.GetCachedTokens())
	}
	if r := mustGenerate(t, b, &schedulerv1.GenerateRequest{AgentId: "erin", PromptTokenIds: promptA, MaxTokens: 2, CacheSalt: "shared"}); r.usage.GetCachedTokens() == 0 {
		t.Fatal("tenant b's second request with its salt was not cached")
	}
	if r := mustGenerate(t, a, &schedulerv1.GenerateRequest{AgentId: "carol", PromptTokenIds: promptA, MaxTokens: 2}); r.usage.GetCachedTokens() == 0 {
		t.Fatal("tenant a's second request with the same prompt was not cached")
	}
	if r := mustGenerate(t, a, &schedulerv1.GenerateRequest{AgentId: "alice", PromptTokenIds: promptA, MaxTokens: 2}); r.usage.GetCachedTokens() == 0 {
		t.Fatal("a's alice's second request was not cached")
	}
	// The pool stores the tenants' agents under their own keys.
	for _, key := range []string{"a/alice", "a/carol", "b/alice", "b/bob"} {
		if _, err := ts.pool.GetAgent(ctx, &blockpoolv1.GetAgentRequest{AgentId: key}); err != nil {
			t.Fatalf("pool record %s: %v", key, err)
		}
	}
	if _, err := ts.pool.GetAgent(ctx, &blockpoolv1.GetAgentRequest{AgentId: "alice"}); status.Code(err) != codes.NotFound {
		t.Fatalf("an untenanted alice on the pool: %v", err)
	}
}

// An admin key reaches every tenant: get, list (one tenant or "*") and
// delete another tenant's agents.
func TestAdminReachesEveryTenant(t *testing.T) {
	ts, keys := authScheduler(t, testConfig(), nil)
	ctx := callCtx(t)
	a, b, ops := clientAs(t, ts, keys["a"]), clientAs(t, ts, keys["b"]), clientAs(t, ts, keys["ops"])
	mustGenerate(t, a, &schedulerv1.GenerateRequest{AgentId: "alice", PromptTokenIds: []uint32{1, 2, 3}, MaxTokens: 2})
	mustGenerate(t, b, &schedulerv1.GenerateRequest{AgentId: "alice", PromptTokenIds: []uint32{1, 4, 5}, MaxTokens: 2})
	mustGenerate(t, ops, &schedulerv1.GenerateRequest{AgentId: "own", PromptTokenIds: []uint32{1, 6}, MaxTokens: 2})

	g, err := ops.GetAgent(ctx, &schedulerv1.GetAgentRequest{AgentId: "alice", Tenant: "a"})
	if err != nil || g.GetAgent().GetTenant() != "a" || g.GetAgent().GetAgentId() != "alice" {
		t.Fatalf("admin get of a's alice: %v %v", g, err)
	}
	if _, err := ops.GetAgent(ctx, &schedulerv1.GetAgentRequest{AgentId: "alice"}); status.Code(err) != codes.NotFound {
		t.Fatalf("admin's own tenant has no alice: %v", err)
	}
	list, err := ops.ListAgents(ctx, &schedulerv1.ListAgentsRequest{Tenant: "*"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ag := range list.GetAgents() {
		got = append(got, ag.GetTenant()+":"+ag.GetAgentId())
	}
	if strings.Join(got, ",") != "a:alice,b:alice,ops:own" {
		t.Fatalf("admin list of every tenant: %v", got)
	}
	if list, err := ops.ListAgents(ctx, &schedulerv1.ListAgentsRequest{Tenant: "b"}); err != nil || len(list.GetAgents()) != 1 || list.GetAgents()[0].GetTenant() != "b" {
		t.Fatalf("admin list of tenant b: %v %v", list, err)
	}
	if d, err := ops.DeleteAgent(ctx, &schedulerv1.DeleteAgentRequest{AgentId: "alice", Tenant: "a"}); err != nil || !d.GetDeleted() {
		t.Fatalf("admin delete of a's alice: %v %v", d, err)
	}
	if _, err := a.GetAgent(ctx, &schedulerv1.GetAgentRequest{AgentId: "alice"}); status.Code(err) != codes.NotFound {
		t.Fatalf("a's alice after the admin's delete: %v", err)
	}
	if _, err := b.GetAgent(ctx, &schedulerv1.GetAgentRequest{AgentId: "alice"}); err != nil {
		t.Fatalf("b's alice after the admin deleted a's: %v", err)
	}
	if _, err := ops.GetAgent(ctx, &schedulerv1.GetAgentRequest{AgentId: "alice", Tenant: "*"}); status.Code(err) != codes.InvalidArgument || rpcstatus.FieldOf(err) != "tenant" {
		t.Fatalf("GetAgent of tenant *: want INVALID_ARGUMENT naming tenant, got %v", err)
	}
}

// Reload swaps the whole key set: added keys work, removed keys stop
// working, and a bad file keeps the keys in use.
func TestAuthKeysReload(t *testing.T) {
	var logs testproc.SyncBuffer
	ts, keys, path := authSchedulerWith(t, testConfig(), nil, Deps{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx := callCtx(t)
	stats := func(key string) error {
		_, err := clientAs(t, ts, key).GetStats(ctx, &schedulerv1.GetStatsRequest{})
		return err
	}
	if err := stats(keys["a"]); err != nil {
		t.Fatal(err)
	}
	fresh := writeKeys(t, path, nil, keySpec{"c", "c", auth.RoleUser}, keySpec{"a2", "a", auth.RoleUser})
	if err := stats(fresh["c"]); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a key added to the file works before the reload: %v", err)
	}
	if err := ts.Auth.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := stats(fresh["c"]); err != nil {
		t.Fatalf("added key after reload: %v", err)
	}
	if err := stats(keys["a"]); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("removed key after reload: want UNAUTHENTICATED, got %v", err)
	}
	if err := os.WriteFile(path, []byte(`{"keys":[{"name":"x","tenant":"BAD","role":"user","sha256":"00"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ts.Auth.Reload(); err == nil {
		t.Fatal("a bad keys file reloaded")
	}
	if err := stats(fresh["c"]); err != nil {
		t.Fatalf("after a bad reload the keys in use stop working: %v", err)
	}
	if l := logs.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "keeping the previous keys") {
		t.Fatalf("a bad reload is not logged as an error: %s", l)
	}
}

// SIGHUP reloads the keys file (the process's signal, caught by the
// scheduler; the test process does not die of it).
func TestAuthKeysReloadOnSIGHUP(t *testing.T) {
	var logs testproc.SyncBuffer
	ts, _, path := authSchedulerWith(t, testConfig(), nil, Deps{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	fresh := writeKeys(t, path, nil, keySpec{"a", "a", auth.RoleUser}, keySpec{"b", "b", auth.RoleUser})
	c := clientAs(t, ts, fresh["b"])
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := c.GetStats(callCtx(t), &schedulerv1.GetStatsRequest{})
		if err == nil {
			break
		}
		if status.Code(err) != codes.Unauthenticated || time.Now().After(deadline) {
			t.Fatalf("the key added before SIGHUP: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "keys=2") {
		t.Fatalf("the reload did not log how many keys: %q", logs.String())
	}
}

// A tenant's max_requests bounds its requests in flight on the scheduler:
// one more gets RESOURCE_EXHAUSTED (scheduler/tenant-requests); other
// tenants are not affected.
func TestTenantMaxRequests(t *testing.T) {
	ts, keys := authScheduler(t, slowConfig(), map[string]auth.Quota{"a": {MaxRequests: 1}})
	a, b := clientAs(t, ts, keys["a"]), clientAs(t, ts, keys["b"])
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := a.Generate(ctx, &schedulerv1.GenerateRequest{AgentId: "long", PromptTokenIds: []uint32{1, 9, 9}, MaxTokens: 900})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil { // running
		t.Fatal(err)
	}
	_, err = generate(callCtx(t), a, &schedulerv1.GenerateRequest{AgentId: "other", PromptTokenIds: []uint32{1, 2}, MaxTokens: 1})
	if status.Code(err) != codes.ResourceExhausted || rpcstatus.SubjectOf(err) != service.TenantRequestsSubject {
		t.Fatalf("a's second request: want RESOURCE_EXHAUSTED %s, got %v (subject %q)", service.TenantRequestsSubject, err, rpcstatus.SubjectOf(err))
	}
	mustGenerate(t, b, &schedulerv1.GenerateRequest{AgentId: "other", PromptTokenIds: []uint32{1, 2}, MaxTokens: 1})
	cancel()
	for err == nil || status.Code(err) == codes.ResourceExhausted {
		_, err = stream.Recv()
	}
	// Its slot is given back with the request.
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := generate(callCtx(t), a, &schedulerv1.GenerateRequest{AgentId: "other", PromptTokenIds: []uint32{1, 2}, MaxTokens: 1})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a's slot was not given back: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	checkPoolQuiet(t, ts.pool)
}

// --require-auth refuses to start without --auth-keys; without keys (and
// without it) the scheduler starts open, saying so in a warning, and every
// caller is an admin of the empty tenant (agent ids stored as they are).
func TestRequireAuthAndOpenMode(t *testing.T) {
	cfg := testConfig()
	cfg.RequireAuth = true
	if _, err := Start(context.Background(), cfg, Deps{DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}); err == nil ||
		!strings.Contains(err.Error(), "--require-auth") || !strings.Contains(err.Error(), "--auth-keys") {
		t.Fatalf("--require-auth without keys: %v", err)
	}
	cfg.AuthKeys = filepath.Join(t.TempDir(), "missing.json")
	if _, err := Start(context.Background(), cfg, Deps{DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}); err == nil ||
		!strings.Contains(err.Error(), "--auth-keys") {
		t.Fatalf("a missing keys file: %v", err)
	}

	var logs testproc.SyncBuffer
	s, err := Start(context.Background(), testConfig(), Deps{DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "authentication is off") {
		t.Fatalf("no warning that authentication is off: %s", logs.String())
	}
	ts := startScheduler(t, t.TempDir(), testConfig())
	mustGenerate(t, ts.client, &schedulerv1.GenerateRequest{AgentId: "alice", PromptTokenIds: []uint32{1, 2, 3}, MaxTokens: 2})
	ctx := callCtx(t)
	if _, err := ts.pool.GetAgent(ctx, &blockpoolv1.GetAgentRequest{AgentId: "alice"}); err != nil {
		t.Fatalf("open mode stores the agent under its own id: %v", err)
	}
	g, err := ts.client.GetAgent(ctx, &schedulerv1.GetAgentRequest{AgentId: "alice"})
	if err != nil || g.GetAgent().GetTenant() != "" {
		t.Fatalf("open mode get: %v %v", g, err)
	}
}

// A tenant's max_agents reaches the pool with each commit: beyond it the
// pool drops that tenant's least recently used agents, never another's.
func TestTenantAgentQuotaReachesPool(t *testing.T) {
	ts, keys := authScheduler(t, testConfig(), map[string]auth.Quota{"a": {MaxAgents: 2}})
	a, b := clientAs(t, ts, keys["a"]), clientAs(t, ts, keys["b"])
	for _, id := range []string{"x1", "x2", "x3"} {
		mustGenerate(t, a, &schedulerv1.GenerateRequest{AgentId: id, PromptTokenIds: []uint32{1, 2, 3}, MaxTokens: 1})
		mustGenerate(t, b, &schedulerv1.GenerateRequest{AgentId: id, PromptTokenIds: []uint32{1, 2, 3}, MaxTokens: 1})
	}
	ctx := callCtx(t)
	names := func(c schedulerv1.SchedulerServiceClient) string {
		t.Helper()
		list, err := c.ListAgents(ctx, &schedulerv1.ListAgentsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, ag := range list.GetAgents() {
			ids = append(ids, ag.GetAgentId())
		}
		return strings.Join(ids, ",")
	}
	if got := names(a); got != "x2,x3" {
		t.Fatalf("tenant a (max_agents 2) keeps %q, want x2,x3", got)
	}
	if got := names(b); got != "x1,x2,x3" {
		t.Fatalf("tenant b (no quota) keeps %q", got)
	}
}

// GetStats shows a tenant's key the pool nodes' ids and health but not
// their addresses (the network layout); an admin key sees the addresses.
func TestStatsHidePoolAddressesFromTenants(t *testing.T) {
	ts, keys := authScheduler(t, testConfig(), nil)
	ctx := callCtx(t)
	user, err := clientAs(t, ts, keys["a"]).GetStats(ctx, &schedulerv1.GetStatsRequest{})
	if err != nil || len(user.GetPoolNodes()) != 1 {
		t.Fatalf("user stats: %v %v", user, err)
	}
	if n := user.GetPoolNodes()[0]; n.GetAddress() != "" || n.GetNodeId() == "" || !n.GetHealthy() {
		t.Fatalf("a user sees %+v", n)
	}
	admin, err := clientAs(t, ts, keys["ops"]).GetStats(ctx, &schedulerv1.GetStatsRequest{})
	if err != nil || admin.GetPoolNodes()[0].GetAddress() == "" {
		t.Fatalf("admin stats: %v %v", admin, err)
	}
}
