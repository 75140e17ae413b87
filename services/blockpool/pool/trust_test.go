package pool

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/semantic-kv/semantic/pkg/kvspec"
)

// tenantOfKey is the wire's rule (poolwire.SplitAgentKey), which the node
// passes as Options.TenantOf; the core does not import it.
func tenantOfKey(id string) string {
	if t, _, ok := strings.Cut(id, "/"); ok {
		return t
	}
	return ""
}

func withTenants(o *Options) { o.TenantOf = tenantOfKey }

// commitCached commits toks for agent (already cached blocks only, no lease)
// under the given tenant bounds.
func (e *env) commitCached(agent string, toks []uint32, expected uint64, maxAgents int, maxBytes int64) (uint64, error) {
	sp := testSpec()
	hashes := kvspec.ChainHashes(toks, sp.TokensPerBlock, sp.ModelTag, "", true)
	return e.p.CommitAgent(ctx, CommitRequest{AgentID: agent, ModelTag: sp.ModelTag, Hashes: hashes, Tokens: toks,
		ExpectedVersion: expected, TenantMaxAgents: maxAgents, TenantMaxAgentBytes: maxBytes})
}

func (e *env) agentIDs() []string {
	var ids []string
	for a := range e.p.agents.all() {
		ids = append(ids, a.rec.ID)
	}
	slices.Sort(ids)
	return ids
}

// Issue #13 (tenants): a commit beyond its tenant's bounds drops that
// tenant's own least recently used idle agents, never another tenant's (even
// older ones) and never the committing agent; if every candidate is busy it
// is refused with tenant/agents and nothing changes. The per-tenant sums are
// kept by the agent table and verified by its check.
func TestTenantBoundsDropOnlyOwnLeastRecentlyUsed(t *testing.T) {
	e := newEnv(t, 64, withTenants)
	toks := tokens(1, 8)
	e.commitAgent("t1/warm", toks, 0) // the cached prefix every agent below names
	if _, err := e.p.DeleteAgent(ctx, "t1/warm", 0); err != nil {
		t.Fatal(err)
	}
	// Another tenant's agents and a tenantless one, all older than t1's.
	for _, id := range []string{"t2/old0", "t2/old1", "plain"} {
		e.clock.Advance(time.Second)
		// Within its own bounds: commit under the same cached blocks.
		e.commitAgent(id, toks, 0)
	}
	for i := range 3 {
		e.clock.Advance(time.Second)
		if _, err := e.commitCached(fmt.Sprint("t1/a", i), toks, 0, 3, 0); err != nil {
			t.Fatal(err)
		}
	}
	e.check()
	if u := e.p.agents.tenantUse("t1"); u.agents != 3 {
		t.Fatalf("t1 use %+v", u)
	}
	start := e.p.Counts()
	// A fourth t1 agent: t1's least recently used (a0) goes, nobody else.
	e.clock.Advance(time.Second)
	if _, err := e.commitCached("t1/a3", toks, 0, 3, 0); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(e.agentIDs()); got != "[plain t1/a1 t1/a2 t1/a3 t2/old0 t2/old1]" {
		t.Fatal(got)
	}
	e.check()
	// A lookup makes a1 recent: a2 is now t1's least recently used.
	e.clock.Advance(time.Second)
	if _, err := e.p.Lookup(ctx, LookupRequest{AgentID: "t1/a1", Tokens: toks, ModelTag: "test-model"}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Second)
	if _, err := e.commitCached("t1/a4", toks, 0, 3, 0); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(e.agentIDs()); got != "[plain t1/a1 t1/a3 t1/a4 t2/old0 t2/old1]" {
		t.Fatal(got)
	}
	// Replacing an agent of a full tenant drops nobody.
	r, _ := e.p.GetAgent("t1/a4")
	if _, err := e.commitCached("t1/a4", tokens(1, 4), r.Version, 3, 0); err != nil {
		t.Fatal(err)
	}
	if c := e.p.Counts(); c.Agents != start.Agents {
		t.Fatalf("%+v", c)
	}
	e.check()

	// Every other t1 agent busy: refused with tenant/agents, nothing changes,
	// though t2's and the tenantless agents are idle and older.
	var held []*Grant
	for _, id := range []string{"t1/a1", "t1/a3", "t1/a4"} {
		held = append(held, e.lease(id, 1))
	}
	before, ids := e.p.Counts(), e.agentIDs()
	_, err := e.commitCached("t1/a5", toks, 0, 3, 0)
	var ex *ExhaustedError
	if !errors.As(err, &ex) || ex.Resource != "tenant/agents" || !errors.Is(err, ErrExhausted) {
		t.Fatal(err)
	}
	if after := e.p.Counts(); after.Agents != before.Agents || after.Cached != before.Cached || fmt.Sprint(e.agentIDs()) != fmt.Sprint(ids) {
		t.Fatalf("refused commit changed the pool: %+v -> %+v", before, after)
	}
	e.check()
	for _, g := range held {
		if _, err := e.p.Release(ctx, g.LeaseID, g.Epoch, g.Holder, false); err != nil {
			t.Fatal(err)
		}
	}
	// Bounds of 0 are no bound; a tenantless agent has none either.
	for i := range 3 {
		if _, err := e.commitCached(fmt.Sprint("t1/b", i), toks, 0, 0, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := e.commitCached(fmt.Sprint("c", i), toks, 0, 1, 1); err != nil {
			t.Fatal(err)
		}
	}
	if u := e.p.agents.tenantUse("t1"); u.agents != 6 {
		t.Fatalf("t1 use %+v", u)
	}
	e.check()
	// Counts back to the start once the leases are gone: nothing leaked.
	if c := e.p.Counts(); c.Leased != 0 || c.ActiveLeases != 0 || c.Free+c.Cached != c.Capacity {
		t.Fatalf("%+v", c)
	}
	// The sums survive a restart (recovery re-adds every record).
	e.reopen()
	e.check()
	if u := e.p.agents.tenantUse("t1"); u.agents != 6 {
		t.Fatalf("t1 use after restart %+v", u)
	}
}

// The byte bound of a tenant: the tenant's LRU agents go to make room; a
// record larger than the bound is refused outright with tenant/agent-bytes.
func TestTenantByteBound(t *testing.T) {
	e := newEnv(t, 64, withTenants)
	toks := tokens(1, 8)
	e.commitAgent("x/warm", toks, 0)
	one := recBytes(&agentRec{ID: "x/a0", ModelTag: "test-model", Tokens: make([]uint32, 8), Hashes: make([]kvspec.Hash, 2)})
	for i := range 4 {
		e.clock.Advance(time.Second)
		if _, err := e.commitCached(fmt.Sprint("x/a", i), toks, 0, 0, 3*one); err != nil {
			t.Fatal(err)
		}
	}
	// x/warm (older, longer id) and x/a0 went; at most 3*one bytes remain.
	if u := e.p.agents.tenantUse("x"); u.bytes > 3*one || u.agents != 3 {
		t.Fatalf("x use %+v, bound %d", u, 3*one)
	}
	if got := fmt.Sprint(e.agentIDs()); got != "[x/a1 x/a2 x/a3]" {
		t.Fatal(got)
	}
	_, err := e.commitCached("x/a9", toks, 0, 0, one-1)
	var ex *ExhaustedError
	if !errors.As(err, &ex) || ex.Resource != "tenant/agent-bytes" || ex.Asked != one {
		t.Fatal(err)
	}
	if got := fmt.Sprint(e.agentIDs()); got != "[x/a1 x/a2 x/a3]" {
		t.Fatal("refused commit changed the agents:", got)
	}
	e.check()
}

// Issue #13 (leases bound to their holder): a commit through a lease names
// the lease's holder; another holder is refused and nothing changes.
func TestCommitChecksLeaseHolder(t *testing.T) {
	e := newEnv(t, 16)
	sp := testSpec()
	toks := tokens(1, 8)
	hashes := kvspec.ChainHashes(toks, sp.TokensPerBlock, sp.ModelTag, "", true)
	g := e.lease("a", len(hashes))
	for i := range hashes {
		e.write(g, i, hashes[i], 4)
	}
	before := e.p.Counts()
	for _, holder := range []string{"", "mallory"} {
		_, err := e.p.CommitAgent(ctx, CommitRequest{LeaseID: g.LeaseID, Epoch: g.Epoch, Holder: holder, AgentID: "a",
			ModelTag: sp.ModelTag, Hashes: hashes, Tokens: toks})
		if !errors.Is(err, ErrNotHolder) {
			t.Fatalf("holder %q: %v", holder, err)
		}
	}
	if after := e.p.Counts(); after.Agents != 0 || after.Leased != before.Leased || after.Cached != before.Cached || after.DiskBytes != before.DiskBytes {
		t.Fatalf("%+v -> %+v", before, after)
	}
	e.check()
	if _, err := e.p.CommitAgent(ctx, CommitRequest{LeaseID: g.LeaseID, Epoch: g.Epoch, Holder: g.Holder, AgentID: "a",
		ModelTag: sp.ModelTag, Hashes: hashes, Tokens: toks}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.Release(ctx, g.LeaseID, g.Epoch, g.Holder, true); err != nil {
		t.Fatal(err)
	}
	e.check()
}

// Issue #13, defect 7: the agent's own record supplies blocks only under the
// salt its hashes were made with; its version and tokens are reported
// whatever the salt (for the commit and for append requests).
func TestOwnRecordNeedsItsSalt(t *testing.T) {
	e := newEnv(t, 32)
	sp := testSpec()
	toks := tokens(1, 10)
	hashes := kvspec.ChainHashes(toks, sp.TokensPerBlock, sp.ModelTag, "salt-a", true)
	g := e.lease("a", len(hashes))
	for i := range hashes {
		e.write(g, i, hashes[i], min(4, len(toks)-4*i))
	}
	v, err := e.p.CommitAgent(ctx, CommitRequest{LeaseID: g.LeaseID, Epoch: g.Epoch, Holder: g.Holder, AgentID: "a",
		ModelTag: sp.ModelTag, Salt: "salt-a", Hashes: hashes, Tokens: toks})
	if err != nil {
		t.Fatal(err)
	}
	e.p.Release(ctx, g.LeaseID, g.Epoch, g.Holder, true)
	r, err := e.p.Lookup(ctx, LookupRequest{AgentID: "a", Tokens: toks, ModelTag: sp.ModelTag, Salt: "salt-b"})
	if err != nil || r.MatchedTokens != 0 || r.Source != MatchNone || len(r.Blocks) != 0 {
		t.Fatalf("another salt matched the agent's own record: %+v %v", r, err)
	}
	if r.AgentVersion != v || !slices.Equal(r.AgentTokens, toks) {
		t.Fatalf("version and tokens must be reported under any salt: %+v", r)
	}
	r, _ = e.p.Lookup(ctx, LookupRequest{AgentID: "a", Tokens: toks, ModelTag: sp.ModelTag, Salt: "salt-a"})
	if r.MatchedTokens != 10 || r.Source != MatchAgent || len(r.Blocks) != 3 {
		t.Fatalf("own salt: %+v", r)
	}
	e.check()
}

// Issue #13, defect 13 (paging): ListAgents pages by agent id, so agents
// used, added or deleted between pages never make another agent skipped or
// listed twice; the tenant filter lists one tenant's agents only.
func TestListAgentsStableUnderChange(t *testing.T) {
	e := newEnv(t, 64, withTenants)
	toks := tokens(1, 4)
	e.commitAgent("warm", toks, 0)
	var steady []string
	for i := range 12 {
		id := fmt.Sprintf("a%02d", i*2) // a00 a02 ... a22: room for newcomers between them
		e.clock.Advance(time.Second)
		if _, err := e.commitCached(id, toks, 0, 0, 0); err != nil {
			t.Fatal(err)
		}
		steady = append(steady, id)
	}
	if _, err := e.p.DeleteAgent(ctx, "warm", 0); err != nil {
		t.Fatal(err)
	}
	doomed := []string{"a15", "a19"} // deleted before the listing reaches them
	for _, id := range doomed {
		if _, err := e.commitCached(id, toks, 0, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]int{}
	after, pages := "", 0
	for {
		page, more := e.p.ListAgents(3, after, "")
		for _, r := range page {
			seen[r.AgentID]++
		}
		pages++
		if !more {
			break
		}
		after = page[len(page)-1].AgentID
		// Between pages: touch the next agents (the old order, most recent
		// first, moved them), add agents before and after the cursor,
		// delete one not yet listed and one already listed.
		e.clock.Advance(time.Second)
		for _, id := range steady {
			if id > after {
				e.p.Lookup(ctx, LookupRequest{AgentID: id, Tokens: toks, ModelTag: "test-model"})
				break
			}
		}
		for _, id := range []string{fmt.Sprintf("a%02db", pages), fmt.Sprintf("0new%d", pages)} {
			if _, err := e.commitCached(id, toks, 0, 0, 0); err != nil {
				t.Fatal(err)
			}
		}
		if pages == 2 {
			for _, id := range append(doomed, "a00") {
				if _, err := e.p.DeleteAgent(ctx, id, 0); err != nil {
					t.Fatal(err)
				}
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
			t.Fatalf("%s, present throughout, was skipped: %v", id, seen)
		}
	}
	for _, id := range doomed {
		if seen[id] != 0 {
			t.Fatalf("%s listed after it was deleted", id)
		}
	}
	e.check()

	// Tenant filter, with paging inside it.
	for _, id := range []string{"t1/x", "t1/y", "t1/z", "t10/x", "t2/x"} {
		if _, err := e.commitCached(id, toks, 0, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	after = ""
	for {
		page, more := e.p.ListAgents(2, after, "t1")
		for _, r := range page {
			got = append(got, r.AgentID)
		}
		if !more {
			break
		}
		after = page[len(page)-1].AgentID
	}
	if fmt.Sprint(got) != "[t1/x t1/y t1/z]" {
		t.Fatal(got)
	}
	if page, more := e.p.ListAgents(5, "", "nobody"); len(page) != 0 || more {
		t.Fatal(page, more)
	}
	e.check()
}
