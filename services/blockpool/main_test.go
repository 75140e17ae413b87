package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/testproc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// The crash test's spec: tiny blocks so that a cycle is quick.
var crashSpec = kvspec.Spec{Layers: 1, KVHeads: 1, HeadDim: 8, TokensPerBlock: 4, DType: kvspec.DTypeFloat32, ModelTag: "crash-model"}

func payloadOf(h kvspec.Hash) []byte {
	b := make([]byte, crashSpec.BlockBytes())
	rand.NewChaCha8(h).Read(b)
	return b
}

// start runs the blockpool binary on dir with the crash test's spec.
func start(t *testing.T, bin, dir string) *testproc.Proc {
	t.Helper()
	return testproc.Start(t, exec.Command(bin, "--listen", "127.0.0.1:0", "--metrics-listen", "", "--log-format", "json", "--data-dir", dir,
		"--capacity-blocks", "4096", "--memory-budget", "65536", "--lease-ttl", "5s",
		"--spec-layers", "1", "--spec-kv-heads", "1", "--spec-head-dim", "8", "--spec-tokens-per-block", "4",
		"--spec-dtype", "float32", "--spec-model-tag", crashSpec.ModelTag))
}

// agentState is what the test knows of one agent: the last acknowledged
// commit and the commit in flight (which may or may not have landed).
type agentState struct {
	mu       sync.Mutex
	acked    []uint32
	version  uint64
	inflight []uint32
}

func bs(hs []kvspec.Hash) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}

// commitOnce appends a few tokens to the agent's context and commits it.
func commitOnce(ctx context.Context, c blockpoolv1.BlockPoolServiceClient, id string, st *agentState, rng *rand.Rand) error {
	st.mu.Lock()
	toks := slices.Clone(st.acked)
	base := st.version
	st.mu.Unlock()
	if len(toks) > 120 {
		toks = toks[:0] // start over: keeps agents small, exercises shrinking records
	}
	for range 1 + rng.IntN(7) {
		toks = append(toks, rng.Uint32N(50000))
	}
	hs := kvspec.ChainHashes(toks, crashSpec.TokensPerBlock, crashSpec.ModelTag, "", true)
	l, err := c.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "crash", AgentId: id, Count: uint32(len(hs)), BlockHashes: bs(hs), ModelTag: crashSpec.ModelTag})
	if err != nil {
		return err
	}
	ps, err := c.PutBlocks(ctx)
	if err != nil {
		return err
	}
	first := true
	for i := int(l.Hits); i < len(hs); i++ {
		data := payloadOf(hs[i])
		m := &blockpoolv1.PutBlocksRequest{Header: &blockpoolv1.BlockHeader{BlockId: l.Blocks[i].BlockId, Hash: hs[i][:],
			TokenCount: uint32(min(4, len(toks)-4*i)), Checksum: kvspec.Checksum(data), Size: uint64(len(data))}, Data: data}
		if first {
			m.LeaseId, m.Epoch, m.Holder, first = l.LeaseId, l.Epoch, "crash", false
		}
		if err := ps.Send(m); err != nil {
			break
		}
	}
	if _, err := ps.CloseAndRecv(); err != nil {
		return err
	}
	st.mu.Lock()
	st.inflight = toks
	st.mu.Unlock()
	r, err := c.CommitAgent(ctx, &blockpoolv1.CommitAgentRequest{LeaseId: l.LeaseId, Epoch: l.Epoch, Holder: "crash", AgentId: id, ModelTag: crashSpec.ModelTag,
		BlockHashes: bs(hs), TokenIds: toks, ExpectedVersion: base})
	if err != nil {
		return err
	}
	st.mu.Lock()
	st.acked, st.version, st.inflight = toks, r.Version, nil
	st.mu.Unlock()
	_, err = c.Release(ctx, &blockpoolv1.ReleaseRequest{Holder: "crash", LeaseId: l.LeaseId, Epoch: l.Epoch, Commit: true})
	return err
}

// verify checks every agent against what was acknowledged, reading every
// block back byte for byte, and adopts the stored state for the next cycle.
func verify(t *testing.T, ctx context.Context, c blockpoolv1.BlockPoolServiceClient, agents map[string]*agentState, lastEpoch uint64) uint64 {
	t.Helper()
	info, err := c.GetPoolInfo(ctx, &blockpoolv1.GetPoolInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info.FreeBlocks+info.LeasedBlocks+info.CachedBlocks != info.CapacityBlocks || info.LeasedBlocks != 0 || info.ActiveLeases != 0 {
		t.Fatalf("pool counts after restart: %+v", info)
	}
	if info.Epoch <= lastEpoch {
		t.Fatalf("epoch %d not bumped past %d", info.Epoch, lastEpoch)
	}
	for id, st := range agents {
		if st.version == 0 && st.inflight == nil {
			continue
		}
		ga, err := c.GetAgent(ctx, &blockpoolv1.GetAgentRequest{AgentId: id})
		if status.Code(err) == codes.NotFound && st.version == 0 {
			st.inflight = nil // its first commit was in flight and did not land
			continue
		}
		if err != nil {
			t.Fatalf("agent %s (acked v%d): %v", id, st.version, err)
		}
		a := ga.Agent
		switch {
		case a.Version == st.version && slices.Equal(a.TokenIds, st.acked):
		case a.Version > st.version && slices.Equal(a.TokenIds, st.inflight):
			// The commit in flight at the kill landed; its ack was lost.
			// (Versions come from one per-node counter: greater, not +1.)
		default:
			t.Fatalf("agent %s: stored v%d %d tokens, acked v%d %d tokens", id, a.Version, len(a.TokenIds), st.version, len(st.acked))
		}
		l, err := c.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "crash", AgentId: id, Count: uint32(len(a.BlockHashes)), BlockHashes: a.BlockHashes, ModelTag: crashSpec.ModelTag})
		if err != nil {
			t.Fatal(err)
		}
		if int(l.Hits) != len(a.BlockHashes) {
			t.Fatalf("agent %s: %d of %d blocks cached", id, l.Hits, len(a.BlockHashes))
		}
		ids := make([]uint32, len(l.Blocks))
		for i, b := range l.Blocks {
			ids[i] = b.BlockId
		}
		gs, err := c.GetBlocks(ctx, &blockpoolv1.GetBlocksRequest{Holder: "crash", LeaseId: l.LeaseId, Epoch: l.Epoch, BlockIds: ids})
		if err != nil {
			t.Fatal(err)
		}
		got := map[uint32][]byte{}
		var cur uint32
		for {
			m, err := gs.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("agent %s: GetBlocks: %v", id, err)
			}
			if m.Header != nil {
				cur = m.Header.BlockId
			}
			got[cur] = append(got[cur], m.Data...)
		}
		for i, b := range l.Blocks {
			h, _ := kvspec.HashFromBytes(a.BlockHashes[i])
			if string(got[b.BlockId]) != string(payloadOf(h)) {
				t.Fatalf("agent %s block %d: bytes differ", id, i)
			}
		}
		if _, err := c.Release(ctx, &blockpoolv1.ReleaseRequest{Holder: "crash", LeaseId: l.LeaseId, Epoch: l.Epoch}); err != nil {
			t.Fatal(err)
		}
		st.acked, st.version, st.inflight = a.TokenIds, a.Version, nil
	}
	return info.Epoch
}

func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the real binary")
	}
	bin := testproc.Build(t, t.TempDir(), "./services/blockpool")
	dir := t.TempDir()
	const writers, cycles = 6, 20
	agents := map[string]*agentState{}
	for w := range writers {
		for a := range 2 {
			agents[fmt.Sprintf("agent-%d-%d", w, a)] = &agentState{}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var epoch uint64
	totalAcked := 0
	for cycle := range cycles {
		p := start(t, bin, dir)
		conn, err := grpc.NewClient(p.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		c := blockpoolv1.NewBlockPoolServiceClient(conn)
		ctx := context.Background()
		epoch = verify(t, ctx, c, agents, epoch)

		// Load: every writer commits to its agents until the kill.
		lctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		var mu sync.Mutex
		for w := range writers {
			wrng := rand.New(rand.NewPCG(uint64(cycle), uint64(w)))
			wg.Go(func() {
				for i := 0; lctx.Err() == nil; i++ {
					id := fmt.Sprintf("agent-%d-%d", w, i%2)
					if err := commitOnce(lctx, c, id, agents[id], wrng); err == nil {
						mu.Lock()
						totalAcked++
						mu.Unlock()
					}
				}
			})
		}
		time.Sleep(time.Duration(30+rng.IntN(250)) * time.Millisecond)
		p.Kill()
		cancel()
		wg.Wait()
		conn.Close()
	}
	// Final check after the last kill.
	p := start(t, bin, dir)
	defer p.Kill()
	conn, err := grpc.NewClient(p.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	verify(t, context.Background(), blockpoolv1.NewBlockPoolServiceClient(conn), agents, epoch)
	if totalAcked < cycles {
		t.Fatalf("only %d commits acknowledged over %d cycles: the load did not run", totalAcked, cycles)
	}
	t.Logf("%d cycles, %d acknowledged commits verified", cycles, totalAcked)
	entries, _ := os.ReadDir(filepath.Join(dir, "blocks"))
	for _, e := range entries {
		if filepath.Ext(e.Name()) == ".tmp" {
			t.Fatal("temporary file survived a restart:", e.Name())
		}
	}
}
