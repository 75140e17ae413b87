package pool

import (
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/semantic-kv/semantic/pkg/kvspec"
)

// Issue #13, defect 10: a version never repeats for an agent id, so a writer
// holding the version of a deleted record cannot overwrite the re-created one,
// before or after a restart.
func TestVersionsNeverRepeatAfterDeleteAndRestart(t *testing.T) {
	e := newEnv(t, 50)
	v1, _ := e.commitAgent("a", tokens(1, 6), 0)
	if _, err := e.p.DeleteAgent(ctx, "a", v1); err != nil {
		t.Fatal(err)
	}
	v2, _ := e.commitAgent("a", tokens(2, 6), 0)
	if v2 <= v1 {
		t.Fatalf("re-created record has version %d, deleted one had %d", v2, v1)
	}
	stale := func(expected uint64) error {
		sp := testSpec()
		toks := tokens(3, 6)
		hashes := kvspec.ChainHashes(toks, sp.TokensPerBlock, sp.ModelTag, "", true)
		g := e.lease("a", len(hashes))
		defer e.p.Release(ctx, g.LeaseID, g.Epoch, g.Holder, false)
		for i := range hashes {
			e.write(g, i, hashes[i], min(sp.TokensPerBlock, len(toks)-i*sp.TokensPerBlock))
		}
		_, err := e.p.CommitAgent(ctx, CommitRequest{LeaseID: g.LeaseID, Epoch: g.Epoch, Holder: g.Holder, AgentID: "a", ModelTag: sp.ModelTag,
			Hashes: hashes, Tokens: toks, ExpectedVersion: expected})
		return err
	}
	if err := stale(v1); !errors.Is(err, ErrVersionMismatch) {
		t.Fatal("stale writer with the deleted record's version:", err)
	}
	e.check()

	// Across a restart: the counter is persisted, so the next record after
	// delete + reopen + re-create takes a version above every earlier one.
	if _, err := e.p.DeleteAgent(ctx, "a", v2); err != nil {
		t.Fatal(err)
	}
	e.reopen()
	e.check()
	v3, _ := e.commitAgent("a", tokens(4, 6), 0)
	if v3 <= v2 {
		t.Fatalf("after restart the re-created record has version %d, earlier ones %d, %d", v3, v1, v2)
	}
	for _, v := range []uint64{v1, v2} {
		if err := stale(v); !errors.Is(err, ErrVersionMismatch) {
			t.Fatalf("stale writer with version %d after restart: %v", v, err)
		}
	}
	if r, err := e.p.GetAgent("a"); err != nil || r.Version != v3 {
		t.Fatal(r, err)
	}
	e.check()
	e.clock.Advance(time.Second)
}

// Issue #13, defect 9: a write refused for disk space changes nothing; one
// that fits once least-recently-used agents are dropped drops only those.
func TestDiskRefusalDropsNothing(t *testing.T) {
	sp := testSpec()
	bb := int64(sp.BlockBytes())
	e := newEnv(t, 20, func(o *Options) { o.DiskBudget = 4 * bb })
	e.commitAgent("a0", tokens(0, 8), 0)
	e.clock.Advance(time.Second)
	e.commitAgent("a1", tokens(1, 8), 0)
	e.clock.Advance(time.Second)
	pin := func(agent string) *Grant { // pins the agent's blocks: not evictable
		r, err := e.p.GetAgent(agent)
		if err != nil {
			t.Fatal(err)
		}
		g, err := e.p.Lease(ctx, LeaseRequest{Holder: "t", AgentID: "reader", Count: len(r.Hashes), Hashes: r.Hashes, ModelTag: sp.ModelTag})
		if err != nil || g.Hits != len(r.Hashes) {
			t.Fatal(g, err)
		}
		return g
	}
	p0, p1 := pin("a0"), pin("a1")
	before := e.p.Counts()
	g := e.lease("a2", 1)
	err := writeBlock(e.p, g, 0, kvspec.Hash{9}, 4)
	var ex *ExhaustedError
	if !errors.As(err, &ex) || ex.Resource != "pool/disk" {
		t.Fatal("write that cannot fit:", err)
	}
	for _, id := range []string{"a0", "a1"} {
		if _, err := e.p.GetAgent(id); err != nil {
			t.Fatalf("refused write dropped %s: %v", id, err)
		}
	}
	if c := e.p.Counts(); c.Agents != before.Agents || c.DiskBytes != before.DiskBytes {
		t.Fatalf("refused write changed the pool: before %+v after %+v", before, c)
	}
	e.check()
	// Unpin a0: the write now fits by dropping a0 (the least recently used),
	// and a1 stays.
	if _, err := e.p.Release(ctx, p0.LeaseID, p0.Epoch, "t", false); err != nil {
		t.Fatal(err)
	}
	e.write(g, 0, kvspec.Hash{9}, 4)
	if _, err := e.p.GetAgent("a0"); !errors.Is(err, ErrAgentNotFound) {
		t.Fatal("a0 should have been dropped for disk:", err)
	}
	if _, err := e.p.GetAgent("a1"); err != nil {
		t.Fatal("a1 dropped:", err)
	}
	if c := e.p.Counts(); c.DiskBytes > 4*bb {
		t.Fatalf("%+v", c)
	}
	e.check()
	e.p.Release(ctx, p1.LeaseID, p1.Epoch, "t", false)
	e.p.Release(ctx, g.LeaseID, g.Epoch, g.Holder, false)
	e.check()
}

// Issue #13, defect 3 (core): only the holder may use a lease; ids are random.
func TestLeaseHolderCheckedInCore(t *testing.T) {
	e := newEnv(t, 16)
	g := e.lease("a", 2)
	if g.Holder != "t" {
		t.Fatal(g.Holder)
	}
	if _, _, err := e.p.KeepAlive(ctx, g.LeaseID, g.Epoch, "other"); !errors.Is(err, ErrNotHolder) {
		t.Fatal("KeepAlive:", err)
	}
	if _, err := e.p.Release(ctx, g.LeaseID, g.Epoch, "other", false); !errors.Is(err, ErrNotHolder) {
		t.Fatal("Release:", err)
	}
	if _, err := e.p.BeginWrite(ctx, g.LeaseID, g.Epoch, "other", WriteHeader{BlockID: g.Blocks[0].ID, TokenCount: 4, Size: int64(testSpec().BlockBytes())}); !errors.Is(err, ErrNotHolder) {
		t.Fatal("BeginWrite:", err)
	}
	if _, err := e.p.ReadBlock(ctx, g.LeaseID, g.Epoch, "", g.Blocks[0].ID); !errors.Is(err, ErrNotHolder) {
		t.Fatal("ReadBlock:", err)
	}
	if c := e.p.Counts(); c.ActiveLeases != 1 || c.Leased != 2 || c.DiskBytes != 0 {
		t.Fatalf("%+v", c)
	}
	e.check()
	e.write(g, 0, kvspec.Hash{1}, 4)
	if _, err := e.p.Release(ctx, g.LeaseID, g.Epoch, "t", true); err != nil {
		t.Fatal(err)
	}
	e.check()
	// Random ids, unique among live leases, even when the source repeats.
	e.p.leases.randID = func() func() uint64 {
		seq := []uint64{0, 42, 42, 0, 42, 43}
		return func() uint64 { v := seq[0]; seq = seq[1:]; return v }
	}()
	a, b := e.lease("a", 1), e.lease("b", 1)
	if a.LeaseID != 42 || b.LeaseID != 43 {
		t.Fatal(a.LeaseID, b.LeaseID)
	}
	e.check()
}

// Issue #13, defect 13 (pool part): a capacity that would allocate gigabytes
// is refused, naming capacity_blocks, before anything is allocated.
func TestReconfigureCapacityBounded(t *testing.T) {
	e := newEnv(t, 32)
	e.commitAgent("a", tokens(1, 8), 0)
	before := e.p.Counts()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	_, err := e.p.Reconfigure(ctx, testSpec(), 4_194_304)
	runtime.ReadMemStats(&m1)
	var ae *ArgError
	if !errors.As(err, &ae) || ae.Field != "capacity_blocks" {
		t.Fatal(err)
	}
	if grew := m1.TotalAlloc - m0.TotalAlloc; grew > 1<<20 {
		t.Fatalf("refused reconfigure allocated %d bytes", grew)
	}
	if after := e.p.Counts(); after.Capacity != before.Capacity || after.Agents != 1 || after.Cached != before.Cached {
		t.Fatalf("before %+v after %+v", before, after)
	}
	e.check()
	// Within the maximum it works; the maximum is configurable.
	if _, err := e.p.Reconfigure(ctx, testSpec(), DefaultMaxCapacity); err != nil {
		t.Fatal(err)
	}
	e.check()
	e.opt.MaxCapacity, e.opt.Capacity = 64, 128
	e.p.Close()
	e.p = nil
	if _, err := Open(e.opt); !errors.As(err, &ae) || ae.Field != "capacity_blocks" {
		t.Fatal("Open with capacity above the maximum:", err)
	}
	e.opt.Capacity = 0 // the stored capacity (2^18) is shrunk to the maximum
	e.open()
	if c := e.p.Counts(); c.Capacity != 64 || c.Agents != 1 {
		t.Fatalf("%+v", c)
	}
	e.check()
}

// Issue #13, defect 11: agent records are bounded per node (count and bytes).
// 1,000 agents sharing one prefix on a 32-block pool keep at most MaxAgents
// records (the least recently used idle ones go), a lease for free blocks
// drops none of them, and a commit that cannot make room (every other agent
// busy) is refused and changes nothing.
func TestAgentsBounded(t *testing.T) {
	e := newEnv(t, 32, func(o *Options) { o.MaxAgents = 100 })
	toks := tokens(1, 8)
	for i := range 1000 {
		e.clock.Advance(time.Millisecond)
		e.commitAgent(fmt.Sprint("agent-", i), toks, 0)
	}
	c := e.p.Counts()
	if c.Agents != 100 {
		t.Fatalf("%d agents kept, bound 100", c.Agents)
	}
	for _, id := range []string{"agent-999", "agent-900"} { // the most recent stay
		if _, err := e.p.GetAgent(id); err != nil {
			t.Fatal(id, err)
		}
	}
	if _, err := e.p.GetAgent("agent-899"); !errors.Is(err, ErrAgentNotFound) {
		t.Fatal("agent-899 should have been dropped:", err)
	}
	e.check()
	// A lease that the free blocks satisfy drops no agent.
	g := e.lease("other", 8)
	if c := e.p.Counts(); c.Agents != 100 {
		t.Fatalf("lease dropped agents: %+v", c)
	}
	e.p.Release(ctx, g.LeaseID, g.Epoch, g.Holder, false)
	// Across a restart with a lower bound, the oldest go.
	e.opt.MaxAgents = 10
	e.reopen()
	if c := e.p.Counts(); c.Agents != 10 {
		t.Fatalf("%+v", c)
	}
	if _, err := e.p.GetAgent("agent-999"); err != nil {
		t.Fatal(err)
	}
	e.check()
}

func TestAgentBytesBoundedAndBusyAgentsKept(t *testing.T) {
	one := recBytes(&agentRec{ID: "agent-0", ModelTag: "test-model", Tokens: make([]uint32, 8), Hashes: make([]kvspec.Hash, 2)})
	e := newEnv(t, 32, func(o *Options) { o.MaxAgentBytes = 5 * one })
	for i := range 10 {
		e.clock.Advance(time.Millisecond)
		e.commitAgent(fmt.Sprint("agent-", i), tokens(1, 8), 0)
	}
	if c := e.p.Counts(); c.Agents != 5 || e.p.agents.bytes > 5*one {
		t.Fatalf("%+v, %d bytes", c, e.p.agents.bytes)
	}
	e.check()
	// Every other agent busy (a lease for it is active): the commit is
	// refused, nothing changes.
	var held []*Grant
	for e2 := range e.p.agents.all() {
		held = append(held, e.lease(e2.rec.ID, 1))
	}
	before := e.p.Counts()
	sp := testSpec()
	hashes := kvspec.ChainHashes(tokens(1, 8), sp.TokensPerBlock, sp.ModelTag, "", true)
	_, err := e.p.CommitAgent(ctx, CommitRequest{AgentID: "agent-n", ModelTag: sp.ModelTag, Hashes: hashes, Tokens: tokens(1, 8)})
	var ex *ExhaustedError
	if !errors.As(err, &ex) || ex.Resource != "pool/agent-bytes" {
		t.Fatal(err)
	}
	if after := e.p.Counts(); after.Agents != before.Agents {
		t.Fatalf("%+v -> %+v", before, after)
	}
	e.check()
	for _, g := range held {
		e.p.Release(ctx, g.LeaseID, g.Epoch, g.Holder, false)
	}
	// Idle again: the newcomer takes the least recently used one's place.
	if _, err := e.p.CommitAgent(ctx, CommitRequest{AgentID: "agent-n", ModelTag: sp.ModelTag, Hashes: hashes, Tokens: tokens(1, 8)}); err != nil {
		t.Fatal(err)
	}
	if c := e.p.Counts(); c.Agents != 5 {
		t.Fatalf("%+v", c)
	}
	e.check()
}
