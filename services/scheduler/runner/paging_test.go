package runner

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
	"github.com/semantic-kv/semantic/pkg/poolwire"
	"github.com/semantic-kv/semantic/services/scheduler/auth"
)

// Defect 13 (issue 13): ListAgents pages by agent id, merged over the pool
// nodes. Agents used, added or deleted between pages never make the listing
// skip or repeat another; an agent whose record is on two nodes is listed
// once; another tenant's agents never appear.
func TestListAgentsPagesStably(t *testing.T) {
	addrA, _ := startPoolNode(t, "pool-a")
	addrB, _ := startPoolNode(t, "pool-b")
	keysFile := filepath.Join(t.TempDir(), "keys.json")
	keys := writeKeys(t, keysFile, nil, keySpec{"a", "a", auth.RoleUser}, keySpec{"b", "b", auth.RoleUser})
	cfg := testConfig()
	cfg.Pool, cfg.AuthKeys = addrA+","+addrB, keysFile
	ts := startScheduler(t, t.TempDir(), cfg)
	cfgB := cfg
	cfgB.Pool = addrB
	onlyB := startScheduler(t, t.TempDir(), cfgB)
	a, b := clientAs(t, ts, keys["a"]), clientAs(t, ts, keys["b"])
	touch := func(c schedulerv1.SchedulerServiceClient, agent string) {
		t.Helper()
		mustGenerate(t, c, &schedulerv1.GenerateRequest{AgentId: agent, PromptTokenIds: []uint32{1, 2, 3}, MaxTokens: 1})
	}
	var initial []string
	for i := range 24 {
		id := fmt.Sprintf("ag-%02d", i)
		touch(a, id)
		initial = append(initial, id)
	}
	for _, id := range []string{"ag-03", "ag-10", "zz"} {
		touch(b, id) // the same names in another tenant
	}
	// An agent of tenant a homed on pool-a with a record on pool-b too (as
	// written by a scheduler that saw only pool-b).
	dup := ""
	for i := 0; dup == "" && i < 1000; i++ {
		id := fmt.Sprintf("ag-dup-%d", i)
		if o := ts.Pool.Order(poolwire.AgentKey("a", id)); o[0].Name() == "pool-a" {
			dup = id
		}
	}
	touch(clientAs(t, onlyB, keys["a"]), dup)
	touch(a, dup)
	initial = append(initial, dup)
	nodes := map[string]bool{}
	for _, id := range initial {
		nodes[ts.Pool.Order(poolwire.AgentKey("a", id))[0].Name()] = true
	}
	if len(nodes) != 2 {
		t.Fatalf("every agent is homed on %v: the merge is not tested", nodes)
	}

	ctx := callCtx(t)
	seen := map[string]int{}
	deleted := map[string]bool{}
	token := ""
	for page := 0; ; page++ {
		resp, err := a.ListAgents(ctx, &schedulerv1.ListAgentsRequest{PageSize: 5, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetAgents()) > 5 {
			t.Fatalf("page %d has %d agents", page, len(resp.GetAgents()))
		}
		var ids []string
		for _, ag := range resp.GetAgents() {
			if ag.GetTenant() != "a" {
				t.Fatalf("page %d lists tenant %q's %s", page, ag.GetTenant(), ag.GetAgentId())
			}
			seen[ag.GetAgentId()]++
			ids = append(ids, ag.GetAgentId())
		}
		if !slices.IsSorted(ids) {
			t.Fatalf("page %d not in id order: %v", page, ids)
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
		if page > 20 {
			t.Fatal("the listing does not end")
		}
		// Between pages: use agents already listed and not yet listed (the
		// old order, most recently used first, moved them), add agents
		// before and after the cursor, delete one not yet listed.
		touch(a, ids[0])
		touch(a, initial[len(initial)-2-page%3])
		touch(a, fmt.Sprintf("ag-%02d-new", page))
		touch(a, fmt.Sprintf("aa-%02d-new", page))
		if page == 1 {
			victim := "ag-22"
			if _, err := a.DeleteAgent(ctx, &schedulerv1.DeleteAgentRequest{AgentId: victim}); err != nil {
				t.Fatal(err)
			}
			deleted[victim] = true
		}
	}
	for _, id := range initial {
		if deleted[id] {
			if seen[id] > 1 {
				t.Errorf("deleted %s listed %d times", id, seen[id])
			}
			continue
		}
		if seen[id] != 1 {
			t.Errorf("%s listed %d times, want once", id, seen[id])
		}
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s listed %d times", id, n)
		}
	}
	if _, err := a.ListAgents(ctx, &schedulerv1.ListAgentsRequest{PageToken: "not a token!"}); err == nil {
		t.Fatal("a malformed page token was accepted")
	}
	// Tenant b sees its own three.
	resp, err := b.ListAgents(ctx, &schedulerv1.ListAgentsRequest{})
	if err != nil || len(resp.GetAgents()) != 3 || resp.GetNextPageToken() != "" {
		t.Fatalf("tenant b: %v %v", resp, err)
	}
}
