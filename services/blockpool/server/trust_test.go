package server_test

import (
	"context"
	"fmt"
	"testing"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/poolwire"
	"github.com/semantic-kv/semantic/pkg/rpcstatus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Issue #13, defect 3 (CommitAgent): a commit through a lease must name the
// lease's holder: none is INVALID_ARGUMENT (holder), another is
// PERMISSION_DENIED, and neither changes anything.
func TestCommitAgentChecksHolder(t *testing.T) {
	e := newEnv(t, 16, true)
	ctx := context.Background()
	tokens := toks(1, 8)
	hs := kvspec.ChainHashes(tokens, spec.TokensPerBlock, tag, "", true)
	l, err := e.c.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: "a", Count: 2, ModelTag: tag})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := put(ctx, e.c, l, map[int]kvspec.Hash{0: hs[0], 1: hs[1]}, 4096, false); err != nil {
		t.Fatal(err)
	}
	req := func(holder string) *blockpoolv1.CommitAgentRequest {
		return &blockpoolv1.CommitAgentRequest{Holder: holder, LeaseId: l.LeaseId, Epoch: l.Epoch, AgentId: "a", ModelTag: tag, BlockHashes: bs(hs), TokenIds: tokens}
	}
	_, err = e.c.CommitAgent(ctx, req(""))
	wantCode(t, err, codes.InvalidArgument, "holder")
	_, err = e.c.CommitAgent(ctx, req("mallory"))
	wantCode(t, err, codes.PermissionDenied, "")
	if c := e.p.Counts(); c.Agents != 0 {
		t.Fatalf("%+v", c)
	}
	if _, err := e.c.CommitAgent(ctx, req("s")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Release(ctx, &blockpoolv1.ReleaseRequest{Holder: "s", LeaseId: l.LeaseId, Epoch: l.Epoch, Commit: true}); err != nil {
		t.Fatal(err)
	}
	if c := e.p.Counts(); c.Agents != 1 || c.Leased != 0 || c.Cached != 2 || c.Free != 14 {
		t.Fatalf("%+v", c)
	}
}

// Issue #13 (tenants) over the wire: agent ids may name a tenant; the
// request's tenant bounds drop the tenant's own least recently used idle
// agent, and a commit that cannot make room is RESOURCE_EXHAUSTED with a
// QuotaFailure on tenant/agents.
func TestTenantBoundsOverGRPC(t *testing.T) {
	e := newEnv(t, 32, true)
	ctx := context.Background()
	start := e.p.Counts()
	tokens := toks(1, 4)
	hs := e.commit(ctx, "t2/other", tokens, 0) // older, another tenant's
	commit := func(agent string) error {
		_, err := e.c.CommitAgent(ctx, &blockpoolv1.CommitAgentRequest{AgentId: agent, ModelTag: tag, BlockHashes: bs(hs), TokenIds: tokens,
			TenantMaxAgents: 2, TenantMaxAgentBytes: 1 << 20})
		return err
	}
	for _, a := range []string{"t1/a", "t1/b", "t1/c"} {
		if err := commit(a); err != nil {
			t.Fatal(a, err)
		}
	}
	la, err := e.c.ListAgents(ctx, &blockpoolv1.ListAgentsRequest{})
	if err != nil || len(la.Agents) != 3 || la.Agents[0].AgentId != "t1/b" || la.Agents[1].AgentId != "t1/c" || la.Agents[2].AgentId != "t2/other" {
		t.Fatal(la, err)
	}
	// Both t1 agents busy: refused, naming the resource.
	var held []*blockpoolv1.LeaseResponse
	for _, a := range []string{"t1/b", "t1/c"} {
		l, err := e.c.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: a, Count: 1, ModelTag: tag})
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, l)
	}
	err = commit("t1/d")
	wantCode(t, err, codes.ResourceExhausted, "")
	if rpcstatus.SubjectOf(err) != "tenant/agents" {
		t.Fatal("subject:", rpcstatus.SubjectOf(err), err)
	}
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if qf, ok := d.(*errdetails.QuotaFailure); ok && qf.Violations[0].Description != "asked 1 agents, available 0" {
			t.Fatal(qf)
		}
	}
	for _, l := range held {
		if _, err := e.c.Release(ctx, &blockpoolv1.ReleaseRequest{Holder: "s", LeaseId: l.LeaseId, Epoch: l.Epoch}); err != nil {
			t.Fatal(err)
		}
	}
	if c := e.p.Counts(); c.Agents != 3 || c.Leased != 0 || c.Free+c.Cached != start.Capacity {
		t.Fatalf("%+v", c)
	}
	// Agent ids are checked by the tenant rule everywhere.
	for _, bad := range []string{"T1/a", "t1/", "/a", "t1/a/b", "t1/a b"} {
		_, err := e.c.GetAgent(ctx, &blockpoolv1.GetAgentRequest{AgentId: bad})
		wantCode(t, err, codes.InvalidArgument, "agent_id")
		_, err = e.c.LookupAgent(ctx, &blockpoolv1.LookupAgentRequest{AgentId: bad, ModelTag: tag})
		wantCode(t, err, codes.InvalidArgument, "agent_id")
		_, err = e.c.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: bad, Count: 1, ModelTag: tag})
		wantCode(t, err, codes.InvalidArgument, "agent_id")
		_, err = e.c.DeleteAgent(ctx, &blockpoolv1.DeleteAgentRequest{AgentId: bad})
		wantCode(t, err, codes.InvalidArgument, "agent_id")
		wantCode(t, commit(bad), codes.InvalidArgument, "agent_id")
	}
}

// Issue #13, defect 13 (paging) over the wire: the page token is the last
// agent id (poolwire.AgentPageToken); agents used, added or deleted between
// pages never make another skipped or repeated; the tenant filter lists one
// tenant; a bad token or tenant names its field.
func TestListAgentsStablePagingOverGRPC(t *testing.T) {
	e := newEnv(t, 64, true)
	ctx := context.Background()
	tokens := toks(1, 4)
	hs := e.commit(ctx, "b00", tokens, 0)
	commit := func(agent string) {
		t.Helper()
		if _, err := e.c.CommitAgent(ctx, &blockpoolv1.CommitAgentRequest{AgentId: agent, ModelTag: tag, BlockHashes: bs(hs), TokenIds: tokens}); err != nil {
			t.Fatal(agent, err)
		}
	}
	steady := []string{"b00"}
	for i := 1; i < 10; i++ {
		id := fmt.Sprintf("b%02d", i*2)
		commit(id)
		steady = append(steady, id)
	}
	seen := map[string]int{}
	token := ""
	for page := 0; ; page++ {
		r, err := e.c.ListAgents(ctx, &blockpoolv1.ListAgentsRequest{PageSize: 3, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range r.Agents {
			seen[a.AgentId]++
		}
		if r.NextPageToken == "" {
			break
		}
		if last := r.Agents[len(r.Agents)-1].AgentId; r.NextPageToken != poolwire.AgentPageToken(last) {
			t.Fatalf("token %q is not the last id %q", r.NextPageToken, last)
		}
		token = r.NextPageToken
		// Between pages: use every agent (the most recently used moves
		// first in a last-use order), add some, delete a listed one.
		for _, id := range steady {
			e.c.LookupAgent(ctx, &blockpoolv1.LookupAgentRequest{AgentId: id, TokenIds: tokens, ModelTag: tag})
		}
		commit(fmt.Sprintf("a%02d", page))
		commit(fmt.Sprintf("b%02dx", page))
		if page == 1 {
			if _, err := e.c.DeleteAgent(ctx, &blockpoolv1.DeleteAgentRequest{AgentId: "b00"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("%s listed %d times", id, n)
		}
	}
	for _, id := range steady {
		if seen[id] != 1 {
			t.Fatalf("%s skipped: %v", id, seen)
		}
	}
	// A token may be made by the caller to start after any id.
	r, err := e.c.ListAgents(ctx, &blockpoolv1.ListAgentsRequest{PageSize: 2, PageToken: poolwire.AgentPageToken("b15")})
	if err != nil || len(r.Agents) != 2 || r.Agents[0].AgentId != "b16" || r.Agents[1].AgentId != "b18" {
		t.Fatal(r, err)
	}
	// Tenant filter.
	for _, id := range []string{"t1/x", "t1/y", "t10/x", "t2/x"} {
		commit(id)
	}
	r, err = e.c.ListAgents(ctx, &blockpoolv1.ListAgentsRequest{Tenant: "t1"})
	if err != nil || len(r.Agents) != 2 || r.Agents[0].AgentId != "t1/x" || r.Agents[1].AgentId != "t1/y" || r.NextPageToken != "" {
		t.Fatal(r, err)
	}
	r, err = e.c.ListAgents(ctx, &blockpoolv1.ListAgentsRequest{Tenant: "t1", PageSize: 1})
	if err == nil {
		r, err = e.c.ListAgents(ctx, &blockpoolv1.ListAgentsRequest{Tenant: "t1", PageSize: 1, PageToken: r.NextPageToken})
	}
	if err != nil || len(r.Agents) != 1 || r.Agents[0].AgentId != "t1/y" || r.NextPageToken != "" {
		t.Fatal(r, err)
	}
	for _, bad := range []string{"T1", "t1/", "-t", "has space"} {
		_, err := e.c.ListAgents(ctx, &blockpoolv1.ListAgentsRequest{Tenant: bad})
		wantCode(t, err, codes.InvalidArgument, "tenant")
	}
	for _, bad := range []string{"!!", poolwire.AgentPageToken("bad id"), "YQ=="} {
		_, err := e.c.ListAgents(ctx, &blockpoolv1.ListAgentsRequest{PageToken: bad})
		wantCode(t, err, codes.InvalidArgument, "page_token")
	}
	if err := e.p.Check(); err != nil {
		t.Fatal(err)
	}
}
