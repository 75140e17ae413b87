package runner

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"math/rand/v2"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/server"
	"github.com/semantic-kv/semantic/services/blockpool/node"
	"github.com/semantic-kv/semantic/services/blockpool/node/nodetest"
)

// plantRecord commits a record for agent on the scheduler's embedded pool
// behind the scheduler's back: tokens as given (any ids), blocks of zeros
// written under the tokens' chain hashes.
func plantRecord(t *testing.T, ts *testScheduler, agent string, tokens []uint32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	spec := ts.Engine.Spec()
	spec.DType = kvspec.DTypeFloat32
	hashes := kvspec.ChainHashes(tokens, spec.TokensPerBlock, spec.ModelTag, "", true)
	n := ts.Pool.Nodes()[0]
	lease, err := n.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "planter", AgentId: agent, Count: uint32(len(hashes)), ModelTag: spec.ModelTag})
	if err != nil {
		t.Fatal(err)
	}
	w, err := lease.NewWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, spec.BlockBytes())
	for i, h := range hashes {
		hdr := &blockpoolv1.BlockHeader{
			BlockId: lease.GetBlocks()[i].GetBlockId(), Hash: h[:], TokenCount: uint32(min(spec.TokensPerBlock, len(tokens)-i*spec.TokensPerBlock)),
			Checksum: kvspec.Checksum(payload), Size: uint64(len(payload)),
		}
		if i > 0 {
			hdr.ParentHash = hashes[i-1][:]
		}
		if err := w.Write(hdr, payload); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var version uint64
	if rec, err := n.Client.GetAgent(ctx, &blockpoolv1.GetAgentRequest{AgentId: agent}); err == nil {
		version = rec.GetAgent().GetVersion()
	}
	if _, err := n.Client.CommitAgent(ctx, &blockpoolv1.CommitAgentRequest{
		LeaseId: lease.GetLeaseId(), Epoch: lease.GetEpoch(), Holder: "planter", AgentId: agent, ModelTag: spec.ModelTag,
		BlockHashes: toBytes(hashes), TokenIds: tokens, ExpectedVersion: version,
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := lease.Release(true); err != nil {
		t.Fatal(err)
	}
}

func toBytes(hs []kvspec.Hash) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}

// Defect 5 (issue 13): a stored record with a token id outside the
// vocabulary fails only its own agent's requests (FAILED_PRECONDITION naming
// the record); requests running beside it complete.
func TestBadStoredRecordFailsAlone(t *testing.T) {
	ts := startScheduler(t, t.TempDir(), testConfig())
	bad := []uint32{1, 5, 6, 7, 8, 9, 10, 11, 12, 13, 1 << 20} // the last stored token is computed again by an append with no prompt
	plantRecord(t, ts, "broken", bad)
	plantRecord(t, ts, "broken-2", bad)

	var wg sync.WaitGroup
	errs := make([]error, 6)
	reqs := []*schedulerv1.GenerateRequest{
		{AgentId: "broken", Append: true, MaxTokens: 8},
		{AgentId: "broken-2", Prompt: "hello", MaxTokens: 8}, // not realigned with the damaged ids
		{AgentId: "ok-1", PromptTokenIds: []uint32{1, 5, 6, 7, 8, 9}, MaxTokens: 200},
		{AgentId: "ok-2", PromptTokenIds: []uint32{1, 2, 3}, MaxTokens: 200},
		{AgentId: "ok-3", Prompt: "bystander", MaxTokens: 200},
		{AgentId: "ok-4", PromptTokenIds: bad[:4], MaxTokens: 200},
	}
	// The bystanders start first and run long, so that the broken requests
	// would share their batch steps.
	for i := len(reqs) - 1; i >= 0; i-- {
		req := reqs[i]
		if i < 2 {
			time.Sleep(50 * time.Millisecond)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, errs[i] = generate(ctx, ts.client, req)
		}()
	}
	wg.Wait()
	// A request that resends its whole context does not need the damaged
	// record: it runs, and its record replaces the damaged one.
	if errs[1] != nil {
		t.Errorf("full-context request on a damaged record: %v", errs[1])
	} else if got, err := ts.client.GetAgent(context.Background(), &schedulerv1.GetAgentRequest{AgentId: "broken-2"}); err != nil || slices.Contains(got.GetAgent().GetTokenIds(), 1<<20) {
		t.Errorf("damaged record not replaced: %v %v", got.GetAgent().GetTokenIds(), err)
	}
	for i := range 1 {
		if status.Code(errs[i]) != codes.FailedPrecondition || !contains(status.Convert(errs[i]).Message(), `"`+reqs[i].GetAgentId()+`"`) {
			t.Errorf("request %d on the broken record: want FAILED_PRECONDITION naming the agent, got %v", i, errs[i])
		}
	}
	for i := 2; i < len(reqs); i++ {
		if errs[i] != nil {
			t.Errorf("bystander %s failed: %v", reqs[i].GetAgentId(), errs[i])
		}
	}
	checkPoolQuiet(t, ts.pool)
}

func contains(s, sub string) bool { return indexString(s, sub) >= 0 }

// startPoolNode serves a block-pool node on loopback TCP; stop ends it
// (idempotent, also at cleanup).
func startPoolNode(t *testing.T, id string) (addr string, stop func()) {
	t.Helper()
	n := nodetest.Serve(t, node.Config{DataDir: filepath.Join(t.TempDir(), id), NodeID: id, CapacityBlocks: 512}, server.Options{})
	return n.Addr, n.Stop
}

// Defect 6b (issue 13): append never continues without the agent's stored
// context. A record that is not on the agent's home node is found on the
// next candidate node (rendezvous order) and continued there; an agent that
// no node has starts fresh (the documented behaviour); and when a candidate
// node cannot be asked, append fails with UNAVAILABLE instead of running
// without the context.
func TestAppendFindsAgentOffItsHomeNode(t *testing.T) {
	addrA, _ := startPoolNode(t, "pool-a")
	addrB, stopB := startPoolNode(t, "pool-b")
	cfg := testConfig()
	cfg.Pool = addrA + "," + addrB
	ts := startScheduler(t, t.TempDir(), cfg)
	cfgB := testConfig()
	cfgB.Pool = addrB
	onlyB := startScheduler(t, t.TempDir(), cfgB)

	// Agents whose home (for the two-node scheduler) is pool-a.
	var homedOnA []string
	for i := 0; len(homedOnA) < 2 && i < 1000; i++ {
		id := fmt.Sprintf("wanderer-%d", i)
		if o := ts.Pool.Order(id); len(o) == 2 && o[0].Name() == "pool-a" {
			homedOnA = append(homedOnA, id)
		}
	}
	if len(homedOnA) < 2 {
		t.Fatalf("no agent homed on pool-a: %v", ts.Pool.Nodes())
	}
	agent, fresh := homedOnA[0], homedOnA[1]
	// The record is written on pool-b (as by a scheduler that saw only it).
	first := concat([]uint32{1}, randomTokens(rand.New(rand.NewPCG(6, 2)), 20))
	r1 := mustGenerate(t, onlyB.client, &schedulerv1.GenerateRequest{AgentId: agent, PromptTokenIds: first, MaxTokens: 5})
	stored := len(first) + len(r1.tokens)

	r2 := mustGenerate(t, ts.client, &schedulerv1.GenerateRequest{AgentId: agent, Append: true, PromptTokenIds: []uint32{7, 8, 9}, MaxTokens: 3})
	if got := int(r2.usage.GetPromptTokens()); got != stored+3 || r2.usage.GetPoolNode() != "pool-b" || r2.usage.GetCachedTokens() == 0 {
		t.Fatalf("append: want the %d stored tokens + 3 continued on pool-b, got %+v", stored, r2.usage)
	}
	// The turn was saved where the context is: the next append continues it.
	r3 := mustGenerate(t, ts.client, &schedulerv1.GenerateRequest{AgentId: agent, Append: true, PromptTokenIds: []uint32{10}, MaxTokens: 2})
	if got := int(r3.usage.GetPromptTokens()); got != stored+3+len(r2.tokens)+1 || !r3.usage.GetTurnSaved() {
		t.Fatalf("second append: want %d prompt tokens, got %+v", stored+3+len(r2.tokens)+1, r3.usage)
	}

	// An agent no node has: append with a prompt starts it.
	r4 := mustGenerate(t, ts.client, &schedulerv1.GenerateRequest{AgentId: fresh, Append: true, PromptTokenIds: []uint32{1, 2, 3}, MaxTokens: 2})
	if r4.usage.GetPromptTokens() != 3 || r4.usage.GetPoolNode() != "pool-a" {
		t.Fatalf("append to a new agent: %+v", r4.usage)
	}

	// pool-b goes away: the agent whose record is there is not continued
	// without it (home pool-a has no record of it).
	stopB()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := generate(ctx, ts.client, &schedulerv1.GenerateRequest{AgentId: agent, Append: true, PromptTokenIds: []uint32{11}, MaxTokens: 2})
	if status.Code(err) != codes.Unavailable || !contains(status.Convert(err).Message(), agent) {
		t.Fatalf("append with a candidate node down: want UNAVAILABLE naming the agent, got %v", err)
	}
}

// Defect 7 (issue 13): an agent that switches cache_salt does not reuse its
// record's blocks of the old salt (cached_tokens is 0: nothing of the new
// salt is cached), and its turn is saved; the next turn with the new salt is
// warm again.
func TestSaltSwitchOnOwnRecord(t *testing.T) {
	ts := startScheduler(t, t.TempDir(), testConfig())
	prompt := concat([]uint32{1}, randomTokens(rand.New(rand.NewPCG(7, 7)), 30))
	r1 := mustGenerate(t, ts.client, &schedulerv1.GenerateRequest{AgentId: "salty", PromptTokenIds: prompt, MaxTokens: 4, CacheSalt: "tenant-a"})
	if !r1.usage.GetTurnSaved() {
		t.Fatalf("turn 1 not saved: %+v", r1.usage)
	}
	ctx2 := concat(prompt, r1.tokens, []uint32{40, 41, 42})
	r2 := mustGenerate(t, ts.client, &schedulerv1.GenerateRequest{AgentId: "salty", PromptTokenIds: ctx2, MaxTokens: 4, CacheSalt: "tenant-b"})
	if r2.usage.GetCachedTokens() != 0 || !r2.usage.GetTurnSaved() {
		t.Fatalf("salt switch: want no cached tokens and the turn saved, got %+v", r2.usage)
	}
	ctx3 := concat(ctx2, r2.tokens, []uint32{43})
	r3 := mustGenerate(t, ts.client, &schedulerv1.GenerateRequest{AgentId: "salty", PromptTokenIds: ctx3, MaxTokens: 2, CacheSalt: "tenant-b"})
	if int(r3.usage.GetCachedTokens()) < len(ctx2) || !r3.usage.GetTurnSaved() {
		t.Fatalf("same salt again: want at least %d cached tokens, got %+v", len(ctx2), r3.usage)
	}
	// Appending with the new salt continues the record too.
	r4 := mustGenerate(t, ts.client, &schedulerv1.GenerateRequest{AgentId: "salty", Append: true, PromptTokenIds: []uint32{44}, MaxTokens: 2, CacheSalt: "tenant-b"})
	if r4.usage.GetCachedTokens() == 0 || !r4.usage.GetTurnSaved() {
		t.Fatalf("append with the same salt: %+v", r4.usage)
	}
	checkPoolQuiet(t, ts.pool)
}

// Defect 12 (issue 13): requests waiting for their agent's previous request
// hold no global admission slot: four requests of one agent with
// --max-queue 4 leave room for the others, and the per-agent limit refuses
// that agent's next request alone with RESOURCE_EXHAUSTED.
func TestAgentQueueDoesNotLockOthersOut(t *testing.T) {
	cfg := slowConfig()
	cfg.MaxQueue, cfg.MaxAgentQueue = 4, 4
	ts := startScheduler(t, t.TempDir(), cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for i := range 4 {
		stream, err := ts.client.Generate(ctx, &schedulerv1.GenerateRequest{AgentId: "hog", PromptTokenIds: []uint32{1, 9, 9}, MaxTokens: 900})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if _, err := stream.Recv(); err != nil { // running
				t.Fatal(err)
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, err := stream.Recv(); err != nil {
					return
				}
			}
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for ts.Service.AgentRequests("hog") < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("hog has %d requests, want 4", ts.Service.AgentRequests("hog"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	_, err := generate(context.Background(), ts.client, &schedulerv1.GenerateRequest{AgentId: "hog", PromptTokenIds: []uint32{1, 2}, MaxTokens: 1})
	if status.Code(err) != codes.ResourceExhausted || !contains(status.Convert(err).Message(), `"hog"`) {
		t.Fatalf("hog's fifth request: want RESOURCE_EXHAUSTED naming the agent, got %v", err)
	}
	for _, other := range []string{"other-1", "other-2"} {
		mustGenerate(t, ts.client, &schedulerv1.GenerateRequest{AgentId: other, PromptTokenIds: []uint32{1, 2, 3}, MaxTokens: 2})
	}
	cancel()
	wg.Wait()
	checkPoolQuiet(t, ts.pool)
}
