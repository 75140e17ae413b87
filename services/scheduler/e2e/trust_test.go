//go:build e2e

package e2e

import (
	"context"
	"net/http"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
)

// checkTrust attacks the running cluster as docs/security.md says it must
// resist: callers without a key, a tenant probing and reading another's
// agents, clients of the pools without a certificate, a scheduler
// certificate reconfiguring a pool, and one identity using another's lease.
// s is the scheduler, dialed with the "demo" tenant's key.
func (c *cluster) checkTrust(ctx context.Context, s *sched) {
	t := c.t
	code := func(what string, err error, want codes.Code) {
		t.Helper()
		if status.Code(err) != want {
			t.Errorf("%s: %v, want %s", what, err, want)
		}
	}

	// ---- API keys ---------------------------------------------------------
	anon := c.dialSchedulerAs(ctx, "scheduler", "")
	defer anon.close()
	_, err := anon.client.GetStats(ctx, &schedulerv1.GetStatsRequest{})
	code("GetStats without a key", err, codes.Unauthenticated)
	r := generate(ctx, anon.client, "e2e-trust", encode("no key", true))
	code("Generate without a key", r.streamErr, codes.Unauthenticated)
	forged := c.dialSchedulerAs(ctx, "scheduler", c.sec.userKey+"x")
	defer forged.close()
	_, err = forged.client.GetStats(ctx, &schedulerv1.GetStatsRequest{})
	code("GetStats with a wrong key", err, codes.Unauthenticated)

	haddr, err := c.hostPort(ctx, "scheduler", 8080)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]int{"": http.StatusUnauthorized, "sk-sem-wrong": http.StatusUnauthorized, c.sec.userKey: http.StatusOK} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+haddr+"/v1/models", nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("GET /v1/models: %v", err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET /v1/models with key %q: %d, want %d", key[:min(len(key), 10)], resp.StatusCode, want)
		}
	}

	// ---- tenants ----------------------------------------------------------
	rival := c.dialSchedulerAs(ctx, "scheduler", c.sec.otherKey)
	defer rival.close()
	admin := c.dialSchedulerAs(ctx, "scheduler", c.sec.adminKey)
	defer admin.close()
	secret := encode("The launch code of tenant demo is 0000-1111-2222-3333. Never repeat it to anyone.\n", true)
	if r := generate(ctx, s.client, "e2e-trust", secret); r.streamErr != nil {
		t.Fatalf("demo's first request: %v", r.streamErr)
	}
	if r := generate(ctx, s.client, "e2e-trust", secret); r.streamErr != nil || r.usage.GetCachedTokens() == 0 {
		t.Errorf("demo's second request: %v, cached %d (want warm)", r.streamErr, r.usage.GetCachedTokens())
	}
	// The rival sends the same text, as an agent of the same name and as
	// another: nothing of demo's cache is visible to it.
	for _, id := range []string{"e2e-trust", "e2e-probe"} {
		r := generate(ctx, rival.client, id, secret)
		if r.streamErr != nil || r.usage.GetCachedTokens() != 0 {
			t.Errorf("rival probing demo's prefix as %s: %v, cached_tokens %d (want 0)", id, r.streamErr, r.usage.GetCachedTokens())
		}
	}
	_, err = rival.client.GetAgent(ctx, &schedulerv1.GetAgentRequest{AgentId: "e2e-trust", Tenant: "demo"})
	code("rival GetAgent of demo's agent", err, codes.PermissionDenied)
	_, err = rival.client.DeleteAgent(ctx, &schedulerv1.DeleteAgentRequest{AgentId: "e2e-trust", Tenant: "demo"})
	code("rival DeleteAgent of demo's agent", err, codes.PermissionDenied)
	if got, err := rival.client.GetAgent(ctx, &schedulerv1.GetAgentRequest{AgentId: "e2e-trust"}); err != nil || got.GetAgent().GetTenant() != "rival" {
		t.Errorf("rival's own e2e-trust: %v %v", got.GetAgent(), err)
	}
	list, err := rival.client.ListAgents(ctx, &schedulerv1.ListAgentsRequest{})
	if err != nil || len(list.GetAgents()) != 2 {
		t.Errorf("rival lists %d agents (%v), want its 2", len(list.GetAgents()), err)
	}
	for _, a := range list.GetAgents() {
		if a.GetTenant() != "rival" {
			t.Errorf("rival's listing shows %s/%s", a.GetTenant(), a.GetAgentId())
		}
	}
	got, err := admin.client.GetAgent(ctx, &schedulerv1.GetAgentRequest{AgentId: "e2e-trust", Tenant: "demo"})
	if err != nil || len(got.GetAgent().GetTokenIds()) < len(secret) {
		t.Errorf("admin GetAgent demo/e2e-trust: %v", err)
	}
	if _, err := rival.client.DeleteAgent(ctx, &schedulerv1.DeleteAgentRequest{AgentId: "e2e-probe"}); err != nil {
		t.Errorf("rival deleting its own agent: %v", err)
	}

	// ---- the pools: mTLS and authorization ---------------------------------
	addr, err := c.hostPort(ctx, poolServices[0], 50061)
	if err != nil {
		t.Fatal(err)
	}
	pool := func(creds grpc.DialOption) blockpoolv1.BlockPoolServiceClient {
		conn, err := grpc.NewClient(addr, creds)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return blockpoolv1.NewBlockPoolServiceClient(conn)
	}
	asAdmin := pool(grpc.WithTransportCredentials(c.sec.adminCert))
	asSched := pool(grpc.WithTransportCredentials(c.sec.schedCert))
	asNobody := pool(grpc.WithTransportCredentials(c.sec.noCert))
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	info, err := asAdmin.GetPoolInfo(cctx, &blockpoolv1.GetPoolInfoRequest{})
	if err != nil {
		t.Fatalf("admin GetPoolInfo: %v", err)
	}
	lease := &blockpoolv1.LeaseRequest{Holder: "e2e", AgentId: "e2e-plant", Count: 1, ModelTag: info.GetSpec().GetModelTag()}
	_, err = asNobody.Lease(cctx, lease)
	code("Lease without a client certificate", err, codes.Unauthenticated)
	_, err = asNobody.ListAgents(cctx, &blockpoolv1.ListAgentsRequest{})
	code("ListAgents without a client certificate", err, codes.Unauthenticated)

	other := proto.Clone(info.GetSpec()).(*blockpoolv1.CacheSpec)
	other.ModelTag += "-attacker"
	_, err = asSched.Reconfigure(cctx, &blockpoolv1.ReconfigureRequest{Spec: other})
	code("a scheduler certificate reconfiguring a configured pool", err, codes.PermissionDenied)
	after, err := asAdmin.GetPoolInfo(cctx, &blockpoolv1.GetPoolInfoRequest{})
	if err != nil || after.GetSpec().GetModelTag() != info.GetSpec().GetModelTag() || after.GetAgents() != info.GetAgents() {
		t.Errorf("pool after the refused Reconfigure: %v (agents %d, was %d), %v", after.GetSpec(), after.GetAgents(), info.GetAgents(), err)
	}

	// A lease taken by one identity cannot be used by another, even with the
	// same holder string.
	g, err := asSched.Lease(cctx, lease)
	if err != nil {
		t.Fatalf("scheduler certificate Lease: %v", err)
	}
	_, err = asAdmin.Release(cctx, &blockpoolv1.ReleaseRequest{LeaseId: g.GetLeaseId(), Epoch: g.GetEpoch(), Holder: "e2e"})
	code("another identity releasing the lease", err, codes.PermissionDenied)
	if _, err := asSched.Release(cctx, &blockpoolv1.ReleaseRequest{LeaseId: g.GetLeaseId(), Epoch: g.GetEpoch(), Holder: "e2e"}); err != nil {
		t.Errorf("the holder releasing its lease: %v", err)
	}
}
