package pool

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/semantic-kv/semantic/pkg/kvspec"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var ctx = context.Background()

func testSpec() kvspec.Spec {
	return kvspec.Spec{Layers: 1, KVHeads: 1, HeadDim: 4, TokensPerBlock: 4, DType: kvspec.DTypeFloat32, ModelTag: "test-model"}
}

type env struct {
	t     testing.TB
	p     *Pool
	dir   string
	clock *FakeClock
	opt   Options
}

func newEnv(t testing.TB, capacity int, mod ...func(*Options)) *env {
	t.Helper()
	sp := testSpec()
	e := &env{t: t, dir: t.TempDir(), clock: NewFakeClock(time.Unix(1_800_000_000, 0))}
	e.opt = Options{Dir: e.dir, Capacity: capacity, Spec: &sp, Clock: e.clock, ExpiryInterval: -1, NoSync: true,
		DefaultTTL: 10 * time.Second, MaxTTL: time.Minute}
	for _, f := range mod {
		f(&e.opt)
	}
	e.open()
	t.Cleanup(func() {
		if e.p != nil {
			e.p.Close()
		}
	})
	return e
}

func (e *env) open() {
	e.t.Helper()
	p, err := Open(e.opt)
	if err != nil {
		e.t.Fatal(err)
	}
	e.p = p
}

func (e *env) reopen() {
	e.t.Helper()
	if err := e.p.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.open()
}

func (e *env) check() {
	e.t.Helper()
	if err := e.p.Check(); err != nil {
		e.t.Fatal("invariant: ", err)
	}
}

// payloadFor is a deterministic payload for a hash, so reads can be compared byte for byte.
func payloadFor(h kvspec.Hash, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8(h)
	r.Read(b)
	return b
}

func tokens(seed, n int) []uint32 {
	t := make([]uint32, n)
	for i := range t {
		t[i] = uint32(seed*100000 + i)
	}
	return t
}

// commitAgent leases blocks for toks, writes them and commits the agent.
func (e *env) commitAgent(agent string, toks []uint32, expected uint64) (uint64, *Grant) {
	e.t.Helper()
	sp := testSpec()
	hashes := kvspec.ChainHashes(toks, sp.TokensPerBlock, sp.ModelTag, "", true)
	g, err := e.p.Lease(ctx, LeaseRequest{Holder: "t", AgentID: agent, Count: len(hashes), Hashes: hashes, ModelTag: sp.ModelTag})
	if err != nil {
		e.t.Fatal(err)
	}
	for i := g.Hits; i < len(hashes); i++ {
		e.write(g, i, hashes[i], min(sp.TokensPerBlock, len(toks)-i*sp.TokensPerBlock))
	}
	v, err := e.p.CommitAgent(ctx, CommitRequest{LeaseID: g.LeaseID, Epoch: g.Epoch, Holder: g.Holder, AgentID: agent, ModelTag: sp.ModelTag,
		Hashes: hashes, Tokens: toks, ExpectedVersion: expected})
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.p.Release(ctx, g.LeaseID, g.Epoch, g.Holder, true); err != nil {
		e.t.Fatal(err)
	}
	return v, g
}

func (e *env) write(g *Grant, i int, h kvspec.Hash, ntok int) {
	e.t.Helper()
	if err := writeBlock(e.p, g, i, h, ntok); err != nil {
		e.t.Fatal(err)
	}
}

func writeBlock(p *Pool, g *Grant, i int, h kvspec.Hash, ntok int) error {
	bb := testSpec().BlockBytes()
	data := payloadFor(h, bb)
	w, err := p.BeginWrite(ctx, g.LeaseID, g.Epoch, g.Holder, WriteHeader{BlockID: g.Blocks[i].ID, Hash: h, TokenCount: ntok,
		Checksum: kvspec.Checksum(data), Size: int64(bb)})
	if err != nil {
		return err
	}
	defer w.Abort()
	for off := 0; off < bb; off += 50 {
		if err := w.Write(data[off:min(off+50, bb)]); err != nil {
			return err
		}
	}
	return w.Commit(ctx)
}

func (e *env) lease(agent string, n int) *Grant {
	e.t.Helper()
	g, err := e.p.Lease(ctx, LeaseRequest{Holder: "t", AgentID: agent, Count: n, ModelTag: "test-model"})
	if err != nil {
		e.t.Fatal(err)
	}
	return g
}

// ---- the seed's concurrency suite ----

func TestConcurrentLeaseUniqueIDs(t *testing.T) {
	for _, workers := range []int{10, 200} {
		t.Run(fmt.Sprint(workers), func(t *testing.T) {
			e := newEnv(t, workers*5)
			var mu sync.Mutex
			seen := map[uint32]uint64{}
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					g, err := e.p.Lease(ctx, LeaseRequest{Holder: "h", AgentID: fmt.Sprint("a", w), Count: 5, ModelTag: "test-model"})
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					defer mu.Unlock()
					for _, b := range g.Blocks {
						if other, dup := seen[b.ID]; dup {
							t.Errorf("block %d granted to leases %d and %d", b.ID, other, g.LeaseID)
						}
						seen[b.ID] = g.LeaseID
					}
				})
			}
			wg.Wait()
			e.check()
			if c := e.p.Counts(); len(seen) != workers*5 || c.Leased != workers*5 || c.Free != 0 {
				t.Fatalf("granted %d, counts %+v", len(seen), c)
			}
		})
	}
}

func TestConcurrentReleaseNoDoubleFree(t *testing.T) {
	e := newEnv(t, 100)
	var grants []*Grant
	for i := range 20 {
		grants = append(grants, e.lease(fmt.Sprint("a", i), 5))
	}
	var wg sync.WaitGroup
	var ok, notFound atomic.Int64
	// Every lease is released by two goroutines at once: exactly one wins.
	for _, g := range grants {
		for range 2 {
			wg.Go(func() {
				_, err := e.p.Release(ctx, g.LeaseID, g.Epoch, g.Holder, false)
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, ErrLeaseNotFound):
					notFound.Add(1)
				default:
					t.Error(err)
				}
			})
		}
	}
	wg.Wait()
	e.check()
	if ok.Load() != 20 || notFound.Load() != 20 {
		t.Fatalf("ok %d notfound %d", ok.Load(), notFound.Load())
	}
	if c := e.p.Counts(); c.Free != 100 {
		t.Fatalf("pool not back to full: %+v", c)
	}
}

func TestConcurrentMixedLeaseCommitReleaseExpire(t *testing.T) {
	e := newEnv(t, 400)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() { // the expiry loop, driven by the fake clock
		for {
			select {
			case <-stop:
				return
			default:
				e.clock.Advance(time.Second)
				e.p.ExpireNow()
				time.Sleep(time.Millisecond)
			}
		}
	})
	var workers sync.WaitGroup
	for w := range 20 {
		workers.Go(func() {
			sp := testSpec()
			agent := fmt.Sprint("agent-", w%5)
			for i := range 15 {
				toks := tokens(w%5, 4*(1+i%4)+i%3)
				look, err := e.p.Lookup(ctx, LookupRequest{AgentID: agent, Tokens: toks, ModelTag: sp.ModelTag})
				if err != nil {
					t.Error(err)
					return
				}
				hashes := kvspec.ChainHashes(toks, sp.TokensPerBlock, sp.ModelTag, "", true)
				g, err := e.p.Lease(ctx, LeaseRequest{AgentID: agent, Count: len(hashes), Hashes: hashes, ModelTag: sp.ModelTag, TTL: 5 * time.Second})
				if errors.Is(err, ErrExhausted) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				failed := false
				for j := g.Hits; j < len(hashes); j++ {
					if err := writeBlock(e.p, g, j, hashes[j], min(4, len(toks)-4*j)); err != nil {
						if !errors.Is(err, ErrLeaseNotFound) && !errors.Is(err, ErrNotWritable) && !errors.Is(err, ErrBlockNotFound) {
							t.Error(err)
						}
						failed = true
						break
					}
				}
				switch {
				case failed:
				case i%3 == 0: // abandon: the lease expires
					continue
				default:
					_, err := e.p.CommitAgent(ctx, CommitRequest{LeaseID: g.LeaseID, Epoch: g.Epoch, Holder: g.Holder, AgentID: agent, ModelTag: sp.ModelTag,
						Hashes: hashes, Tokens: toks, ExpectedVersion: look.AgentVersion})
					if err != nil && !errors.Is(err, ErrAborted) && !errors.Is(err, ErrNotFound) {
						t.Error(err)
					}
				}
				_, err = e.p.Release(ctx, g.LeaseID, g.Epoch, g.Holder, i%2 == 0)
				if err != nil && !errors.Is(err, ErrLeaseNotFound) {
					t.Error(err)
				}
			}
		})
	}
	workers.Wait()
	close(stop)
	wg.Wait()
	e.check()
	e.clock.Advance(time.Minute)
	e.p.ExpireNow()
	e.check()
	if c := e.p.Counts(); c.Leased != 0 || c.ActiveLeases != 0 {
		t.Fatalf("leases left: %+v", c)
	}
	e.reopen()
	e.check()
}

func TestExhaustionConcurrent(t *testing.T) {
	e := newEnv(t, 100)
	var wg sync.WaitGroup
	var granted, exhausted atomic.Int64
	for w := range 200 {
		wg.Go(func() {
			_, err := e.p.Lease(ctx, LeaseRequest{AgentID: fmt.Sprint("a", w), Count: 3, ModelTag: "test-model"})
			var ex *ExhaustedError
			switch {
			case err == nil:
				granted.Add(1)
			case errors.As(err, &ex):
				exhausted.Add(1)
				if ex.Asked != 3 || ex.Available >= 3 {
					t.Errorf("exhausted detail %+v", ex)
				}
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	e.check()
	if granted.Load() != 33 || exhausted.Load() != 167 {
		t.Fatalf("granted %d exhausted %d", granted.Load(), exhausted.Load())
	}
	if c := e.p.Counts(); c.Leased != 99 || c.Free != 1 {
		t.Fatalf("counts %+v", c)
	}
}

func TestReconfigureRefusedWhileLeased(t *testing.T) {
	e := newEnv(t, 50)
	g := e.lease("a", 3)
	sp := testSpec()
	if _, err := e.p.Reconfigure(ctx, sp, 80); !errors.Is(err, ErrLeasesActive) || !errors.Is(err, ErrFailedPrecondition) {
		t.Fatalf("reconfigure while leased: %v", err)
	}
	e.check()
	if _, err := e.p.Release(ctx, g.LeaseID, g.Epoch, g.Holder, false); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.Reconfigure(ctx, sp, 80); err != nil {
		t.Fatal(err)
	}
	e.check()
	if c := e.p.Counts(); c.Capacity != 80 || c.Free != 80 {
		t.Fatalf("%+v", c)
	}
}

func TestReconfigureDropsOtherSpecKeepsSame(t *testing.T) {
	e := newEnv(t, 50)
	e.commitAgent("a", tokens(1, 10), 0)
	e.commitAgent("b", tokens(2, 8), 0)
	sp := testSpec()
	// Same spec, smaller capacity that still fits: nothing dropped, ids renumbered.
	r, err := e.p.Reconfigure(ctx, sp, 10)
	if err != nil || r.DroppedAgents != 0 || r.DroppedBlocks != 0 {
		t.Fatal(r, err)
	}
	e.check()
	if _, err := e.p.GetAgent("a"); err != nil {
		t.Fatal(err)
	}
	// Capacity below the cached blocks: least recently used agent goes.
	if r, err = e.p.Reconfigure(ctx, sp, 3); err != nil || r.DroppedAgents != 1 {
		t.Fatal(r, err)
	}
	e.check()
	if _, err := e.p.GetAgent("a"); !errors.Is(err, ErrAgentNotFound) {
		t.Fatal("a should be dropped", err)
	}
	sp.ModelTag = "other"
	if r, err = e.p.Reconfigure(ctx, sp, 0); err != nil || r.DroppedAgents != 1 || r.DroppedBlocks != 3 { // b's 2 blocks and a's unreferenced leftover
		t.Fatal(r, err)
	}
	e.check()
	if c := e.p.Counts(); c.Agents != 0 || c.Cached != 0 || c.Capacity != 3 || c.DiskBytes != 0 {
		t.Fatalf("%+v", c)
	}
	// Reopen without a spec or capacity in the options: the stored ones apply.
	e.opt.Spec, e.opt.Capacity = nil, 0
	e.reopen()
	e.check()
	if c := e.p.Counts(); c.Spec == nil || c.Spec.ModelTag != "other" || c.Agents != 0 {
		t.Fatalf("after reopen %+v", c)
	}
}

// ---- memory released on free (the seed's leak fix) ----

func TestPayloadReleasedOnFree(t *testing.T) {
	e := newEnv(t, 8)
	sp := testSpec()
	g := e.lease("a", 2)
	h := kvspec.ChainHash(kvspec.Hash{}, tokens(1, 4), sp.ModelTag, "")
	e.write(g, 0, h, 4)
	if e.p.PayloadRef(g.Blocks[0].ID) == nil {
		t.Fatal("written block has no payload in memory")
	}
	if _, err := e.p.Release(ctx, g.LeaseID, g.Epoch, g.Holder, false); err != nil {
		t.Fatal(err)
	}
	if e.p.PayloadRef(g.Blocks[0].ID) != nil {
		t.Fatal("freed block still references its payload")
	}
	if c := e.p.Counts(); c.MemoryBytes != 0 || c.DiskBytes != 0 {
		t.Fatalf("bytes left after free: %+v", c)
	}
	ents, _ := os.ReadDir(filepath.Join(e.dir, "blocks"))
	if len(ents) != 0 {
		t.Fatalf("block files left after free: %d", len(ents))
	}
	e.check()
}

func TestPayloadMemoryReturnedToRuntime(t *testing.T) {
	sp := kvspec.Spec{Layers: 4, KVHeads: 4, HeadDim: 64, TokensPerBlock: 64, DType: kvspec.DTypeFloat32, ModelTag: "big"}
	e := newEnv(t, 64, func(o *Options) { o.Spec = &sp })
	bb := sp.BlockBytes() // 512 KiB
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	g, err := e.p.Lease(ctx, LeaseRequest{AgentID: "a", Count: 64, ModelTag: "big"})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, bb)
	for i := range 64 {
		var h kvspec.Hash
		binary.LittleEndian.PutUint64(h[:], uint64(i))
		w, err := e.p.BeginWrite(ctx, g.LeaseID, g.Epoch, g.Holder, WriteHeader{BlockID: g.Blocks[i].ID, Hash: h, TokenCount: 64, Checksum: kvspec.Checksum(data), Size: int64(bb)})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		if err := w.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	data = nil
	held := heap()
	if held < before+uint64(60*bb) {
		t.Fatalf("expected ~32 MiB held, heap went %d -> %d", before, held)
	}
	if _, err := e.p.Release(ctx, g.LeaseID, g.Epoch, g.Holder, false); err != nil {
		t.Fatal(err)
	}
	after := heap()
	if after > before+uint64(4*bb) {
		t.Fatalf("payload memory not released: heap %d before, %d held, %d after free", before, held, after)
	}
	e.check()
}

// ---- leases ----

func TestLeaseExpiryReclaims(t *testing.T) {
	e := newEnv(t, 10)
	e.commitAgent("cached", tokens(9, 8), 0) // 2 cached blocks
	sp := testSpec()
	hashes := kvspec.ChainHashes(tokens(9, 8), 4, sp.ModelTag, "", true)
	g, err := e.p.Lease(ctx, LeaseRequest{AgentID: "x", Count: 5, Hashes: hashes, ModelTag: sp.ModelTag, TTL: 3 * time.Second})
	if err != nil || g.Hits != 2 {
		t.Fatal(g, err)
	}
	e.write(g, 2, kvspec.ChainHash(hashes[1], tokens(10, 4), sp.ModelTag, ""), 4) // written, never committed
	if c := e.p.Counts(); c.Leased != 5 || c.Free != 5 || c.Cached != 0 {
		t.Fatalf("%+v", c)
	}
	e.clock.Advance(2 * time.Second)
	if n := e.p.ExpireNow(); n != 0 {
		t.Fatal("expired early")
	}
	e.clock.Advance(time.Second)
	// Past expiry but before the loop ran: already refused.
	if _, _, err := e.p.KeepAlive(ctx, g.LeaseID, g.Epoch, g.Holder); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatal("keepalive of a lapsed lease:", err)
	}
	if n := e.p.ExpireNow(); n != 1 {
		t.Fatal("not expired")
	}
	e.check()
	if c := e.p.Counts(); c.Leased != 0 || c.Cached != 2 || c.Free != 8 || c.DiskBytes != int64(2*sp.BlockBytes()) {
		t.Fatalf("%+v", c)
	}
	// A revoked lease never comes back.
	if _, err := e.p.Release(ctx, g.LeaseID, g.Epoch, g.Holder, true); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatal(err)
	}
	if _, err := e.p.BeginWrite(ctx, g.LeaseID, g.Epoch, g.Holder, WriteHeader{BlockID: g.Blocks[3].ID, TokenCount: 4, Size: int64(sp.BlockBytes())}); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatal(err)
	}
}

func TestKeepAlivePreventsExpiry(t *testing.T) {
	e := newEnv(t, 10)
	g, err := e.p.Lease(ctx, LeaseRequest{AgentID: "x", Count: 2, ModelTag: "test-model", TTL: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		e.clock.Advance(2 * time.Second)
		exp, ttl, err := e.p.KeepAlive(ctx, g.LeaseID, g.Epoch, g.Holder)
		if err != nil || ttl != 3*time.Second || !exp.Equal(e.clock.Now().Add(3*time.Second)) {
			t.Fatal(exp, ttl, err)
		}
		e.p.ExpireNow()
	}
	if c := e.p.Counts(); c.ActiveLeases != 1 || c.Leased != 2 {
		t.Fatalf("%+v", c)
	}
	e.check()
}

func TestLeaseValidation(t *testing.T) {
	e := newEnv(t, 10)
	cases := []struct {
		req   LeaseRequest
		field string
		want  error
	}{
		{LeaseRequest{Count: 0, ModelTag: "test-model"}, "count", ErrInvalidArgument},
		{LeaseRequest{Count: 11, ModelTag: "test-model"}, "count", ErrInvalidArgument},
		{LeaseRequest{Count: 1, TTL: time.Hour, ModelTag: "test-model"}, "ttl", ErrInvalidArgument},
		{LeaseRequest{Count: 1, Hashes: make([]kvspec.Hash, 2), ModelTag: "test-model"}, "block_hashes", ErrInvalidArgument},
		{LeaseRequest{Count: 1, ModelTag: "other"}, "", ErrModelMismatch},
	}
	for _, c := range cases {
		_, err := e.p.Lease(ctx, c.req)
		var ae *ArgError
		if !errors.Is(err, c.want) || c.field != "" && (!errors.As(err, &ae) || ae.Field != c.field) {
			t.Errorf("%+v: %v", c.req, err)
		}
	}
	e.check()
}

func TestStaleEpochAfterRestart(t *testing.T) {
	e := newEnv(t, 10)
	g := e.lease("a", 2)
	old := e.p.Epoch()
	e.reopen()
	if e.p.Epoch() != old+1 {
		t.Fatalf("epoch %d after %d", e.p.Epoch(), old)
	}
	if _, _, err := e.p.KeepAlive(ctx, g.LeaseID, g.Epoch, g.Holder); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatal(err)
	}
	// Even a lease id that exists in the new epoch is refused with the old
	// epoch (ids are random: make the new lease draw the old id).
	e.p.leases.randID = func() uint64 { return g.LeaseID }
	g2 := e.lease("b", 1)
	if g2.LeaseID != g.LeaseID {
		t.Fatal("ids differ")
	}
	if _, err := e.p.Release(ctx, g.LeaseID, old, g.Holder, true); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatal("old-epoch release accepted:", err)
	}
	if _, err := e.p.BeginWrite(ctx, g.LeaseID, old, g.Holder, WriteHeader{BlockID: g2.Blocks[0].ID, TokenCount: 1, Size: int64(testSpec().BlockBytes())}); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatal("old-epoch write accepted:", err)
	}
	e.check()
}

// ---- agents ----

func TestCommitVersionRace(t *testing.T) {
	e := newEnv(t, 100)
	v, _ := e.commitAgent("a", tokens(1, 6), 0)
	var wg sync.WaitGroup
	var won, lost atomic.Int64
	for i := range 10 {
		wg.Go(func() {
			toks := append(tokens(1, 6), uint32(1000+i))
			hashes := kvspec.ChainHashes(toks, 4, "test-model", "", true)
			g, err := e.p.Lease(ctx, LeaseRequest{AgentID: "a", Count: len(hashes), Hashes: hashes, ModelTag: "test-model"})
			if err != nil {
				t.Error(err)
				return
			}
			defer e.p.Release(ctx, g.LeaseID, g.Epoch, g.Holder, true)
			for j := g.Hits; j < len(hashes); j++ {
				if err := writeBlock(e.p, g, j, hashes[j], 3); err != nil {
					t.Error(err)
					return
				}
			}
			_, err = e.p.CommitAgent(ctx, CommitRequest{LeaseID: g.LeaseID, Epoch: g.Epoch, Holder: g.Holder, AgentID: "a", ModelTag: "test-model", Hashes: hashes, Tokens: toks, ExpectedVersion: v})
			switch {
			case err == nil:
				won.Add(1)
			case errors.Is(err, ErrVersionMismatch):
				lost.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	e.check()
	if won.Load() != 1 || lost.Load() != 9 {
		t.Fatalf("won %d lost %d", won.Load(), lost.Load())
	}
	if r, _ := e.p.GetAgent("a"); r.Version != 2 {
		t.Fatal(r.Version)
	}
}

func TestCommitValidation(t *testing.T) {
	e := newEnv(t, 20)
	toks := tokens(1, 6)
	hashes := kvspec.ChainHashes(toks, 4, "test-model", "", true)
	bad := append([]kvspec.Hash(nil), hashes...)
	bad[1][0] ^= 1
	for _, c := range []struct {
		req  CommitRequest
		want error
	}{
		{CommitRequest{AgentID: "a", ModelTag: "test-model", Hashes: hashes[:1], Tokens: toks}, ErrInvalidArgument},
		{CommitRequest{AgentID: "a", ModelTag: "test-model", Hashes: bad, Tokens: toks}, ErrInvalidArgument},
		{CommitRequest{AgentID: "a", ModelTag: "test-model", Hashes: hashes, Tokens: toks}, ErrBlockNotFound},
		{CommitRequest{AgentID: "a", ModelTag: "x", Hashes: hashes, Tokens: toks}, ErrModelMismatch},
		{CommitRequest{AgentID: "a", ModelTag: "test-model", Hashes: hashes, Tokens: toks, LeaseID: 99, Epoch: e.p.Epoch()}, ErrLeaseNotFound},
		{CommitRequest{AgentID: "a", ModelTag: "test-model", Hashes: hashes, Tokens: toks, ExpectedVersion: 3}, ErrVersionMismatch},
	} {
		if _, err := e.p.CommitAgent(ctx, c.req); !errors.Is(err, c.want) {
			t.Errorf("%+v: got %v want %v", c.req.AgentID, err, c.want)
		}
	}
	e.check()
}

func TestLookup(t *testing.T) {
	e := newEnv(t, 100)
	base := tokens(1, 10) // blocks: [0..4) [4..8) [8..10)
	v, _ := e.commitAgent("a", base, 0)

	// The agent's own record: longest common prefix, partial last block.
	req := append(append([]uint32(nil), base[:6]...), 777, 778)
	r, err := e.p.Lookup(ctx, LookupRequest{AgentID: "a", Tokens: req, ModelTag: "test-model"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Source != MatchAgent || r.MatchedTokens != 6 || len(r.Blocks) != 2 || r.Blocks[1].UsableTokens != 2 || r.Blocks[1].TokenCount != 4 || r.AgentVersion != v {
		t.Fatalf("%+v", r)
	}
	// Append request: the whole record including the partial tail.
	r, _ = e.p.Lookup(ctx, LookupRequest{AgentID: "a", Tokens: append(append([]uint32(nil), base...), 5), ModelTag: "test-model"})
	if r.MatchedTokens != 10 || len(r.Blocks) != 3 || r.Blocks[2].TokenCount != 2 || r.Blocks[2].UsableTokens != 2 {
		t.Fatalf("%+v", r)
	}
	// Another agent with the same prefix: shared by content hash, full blocks only.
	r, _ = e.p.Lookup(ctx, LookupRequest{AgentID: "b", Tokens: append(append([]uint32(nil), base[:9]...), 1, 2, 3), ModelTag: "test-model"})
	if r.Source != MatchShared || r.MatchedTokens != 8 || len(r.Blocks) != 2 || r.AgentVersion != 0 {
		t.Fatalf("%+v", r)
	}
	// Another salt shares nothing.
	r, _ = e.p.Lookup(ctx, LookupRequest{AgentID: "b", Tokens: base, ModelTag: "test-model", Salt: "tenant2"})
	if r.MatchedTokens != 0 || r.Source != MatchNone {
		t.Fatalf("%+v", r)
	}
	// Lease with the looked-up hashes pins them; a gap stops the hits.
	hs := kvspec.ChainHashes(base, 4, "test-model", "", true)
	g, err := e.p.Lease(ctx, LeaseRequest{AgentID: "b", Count: 4, Hashes: []kvspec.Hash{hs[0], {1}, hs[2]}, ModelTag: "test-model"})
	if err != nil || g.Hits != 1 || !g.Blocks[0].Filled || g.Blocks[0].Hash != hs[0] || g.Blocks[1].Filled {
		t.Fatal(g, err)
	}
	d, err := e.p.ReadBlock(ctx, g.LeaseID, g.Epoch, g.Holder, g.Blocks[0].ID)
	if err != nil || string(d.Payload) != string(payloadFor(hs[0], testSpec().BlockBytes())) {
		t.Fatal("read hit", err)
	}
	e.check()
}

func TestDeleteAgentAndList(t *testing.T) {
	e := newEnv(t, 100)
	for i := range 5 {
		e.clock.Advance(time.Second)
		e.commitAgent(fmt.Sprint("a", i), tokens(i, 5), 0)
	}
	var got []string
	after := ""
	for {
		page, more := e.p.ListAgents(2, after, "")
		for _, r := range page {
			got = append(got, r.AgentID)
		}
		if !more {
			break
		}
		after = page[len(page)-1].AgentID
	}
	if fmt.Sprint(got) != "[a0 a1 a2 a3 a4]" {
		t.Fatal(got)
	}
	a1, _ := e.p.GetAgent("a1")
	if _, err := e.p.DeleteAgent(ctx, "a1", a1.Version+100); !errors.Is(err, ErrVersionMismatch) {
		t.Fatal(err)
	}
	n, err := e.p.DeleteAgent(ctx, "a1", a1.Version)
	if err != nil || n != 2 {
		t.Fatal(n, err)
	}
	if _, err := e.p.DeleteAgent(ctx, "a1", 0); !errors.Is(err, ErrAgentNotFound) {
		t.Fatal(err)
	}
	e.check()
	e.reopen()
	e.check()
	if c := e.p.Counts(); c.Agents != 4 || c.Cached != 8 {
		t.Fatalf("%+v", c)
	}
}

// ---- eviction and tiers ----

func TestEvictionUnreferencedThenAgents(t *testing.T) {
	e := newEnv(t, 6)
	e.commitAgent("old", tokens(1, 8), 0) // 2 blocks, referenced
	e.clock.Advance(time.Second)
	e.commitAgent("new", tokens(2, 8), 0) // 2 blocks, referenced
	// 2 unreferenced cached blocks: written and committed by release only.
	g := e.lease("x", 2)
	h1 := kvspec.ChainHash(kvspec.Hash{}, tokens(3, 4), "test-model", "")
	e.write(g, 0, h1, 4)
	e.p.Release(ctx, g.LeaseID, g.Epoch, g.Holder, true)
	if c := e.p.Counts(); c.Free != 1 || c.Cached != 5 {
		t.Fatalf("%+v", c)
	}
	// 2 blocks: the free one plus the unreferenced cached one; no agent dropped.
	g = e.lease("y", 2)
	if c := e.p.Counts(); c.Agents != 2 {
		t.Fatalf("agent dropped too early: %+v", c)
	}
	e.p.Release(ctx, g.LeaseID, g.Epoch, g.Holder, false)
	// 4 blocks: needs the oldest agent's blocks; "new" survives.
	e.lease("y", 4) // held to the end of the test
	if _, err := e.p.GetAgent("old"); !errors.Is(err, ErrAgentNotFound) {
		t.Fatal("old agent should be evicted")
	}
	if _, err := e.p.GetAgent("new"); err != nil {
		t.Fatal(err)
	}
	e.check()
	// More than can ever be had while "new" is pinned by a lease: refused, nothing taken.
	hs := kvspec.ChainHashes(tokens(2, 8), 4, "test-model", "", true)
	g2, err := e.p.Lease(ctx, LeaseRequest{AgentID: "z", Count: 2, Hashes: hs, ModelTag: "test-model"})
	if err != nil || g2.Hits != 2 {
		t.Fatal(g2, err)
	}
	before := e.p.Counts()
	_, err = e.p.Lease(ctx, LeaseRequest{AgentID: "w", Count: 1, ModelTag: "test-model"})
	var ex *ExhaustedError
	if !errors.As(err, &ex) || ex.Available != 0 {
		t.Fatal(err)
	}
	if after := e.p.Counts(); after.Free != before.Free || after.Leased != before.Leased || after.Cached != before.Cached || after.Agents != before.Agents {
		t.Fatalf("refused lease changed the pool: %+v -> %+v", before, after)
	}
	e.check()
	e.reopen()
	e.check()
	if c := e.p.Counts(); c.Agents != 1 {
		t.Fatalf("eviction not persisted: %+v", c)
	}
}

func TestMemoryBudgetSpillsToDisk(t *testing.T) {
	bb := int64(testSpec().BlockBytes())
	e := newEnv(t, 20, func(o *Options) { o.MemoryBudget = 3 * bb })
	for i := range 4 {
		e.commitAgent(fmt.Sprint("a", i), tokens(i, 8), 0)
	}
	c := e.p.Counts()
	if c.MemoryBytes != 3*bb || c.DiskBytes != 8*bb {
		t.Fatalf("%+v", c)
	}
	e.check()
	// Every block is still readable byte for byte, from disk when not in memory.
	readAgents(t, e, 4)
	e.check()
}

// readAgents reads back the two blocks of each of the agents a0..a{n-1}
// committed with tokens(i, 8), checking every byte.
func readAgents(t *testing.T, e *env, n int) {
	t.Helper()
	bb := testSpec().BlockBytes()
	for i := range n {
		hs := kvspec.ChainHashes(tokens(i, 8), 4, "test-model", "", true)
		g, err := e.p.Lease(ctx, LeaseRequest{AgentID: "r", Count: 2, Hashes: hs, ModelTag: "test-model"})
		if err != nil || g.Hits != 2 {
			t.Fatal(err)
		}
		for j := range 2 {
			d, err := e.p.ReadBlock(ctx, g.LeaseID, g.Epoch, g.Holder, g.Blocks[j].ID)
			if err != nil || string(d.Payload) != string(payloadFor(hs[j], bb)) {
				t.Fatal(i, j, err)
			}
		}
		e.p.Release(ctx, g.LeaseID, g.Epoch, g.Holder, false)
	}
}

// A negative memory budget keeps no payload in memory, not even one read
// back from its file: every block is served from disk.
func TestNoMemoryTier(t *testing.T) {
	bb := int64(testSpec().BlockBytes())
	e := newEnv(t, 20, func(o *Options) { o.MemoryBudget = -1 })
	for i := range 2 {
		e.commitAgent(fmt.Sprint("a", i), tokens(i, 8), 0)
	}
	if c := e.p.Counts(); c.MemoryBytes != 0 || c.DiskBytes != 4*bb {
		t.Fatalf("%+v", c)
	}
	readAgents(t, e, 2)
	if c := e.p.Counts(); c.MemoryBytes != 0 {
		t.Fatalf("a read put a payload in memory: %+v", c)
	}
	e.check()
}

func TestDiskBudgetEvictsAgents(t *testing.T) {
	bb := int64(testSpec().BlockBytes())
	e := newEnv(t, 20, func(o *Options) { o.DiskBudget = 5 * bb })
	e.commitAgent("a0", tokens(0, 8), 0)
	e.clock.Advance(time.Second)
	e.commitAgent("a1", tokens(1, 8), 0)
	e.clock.Advance(time.Second)
	e.commitAgent("a2", tokens(2, 8), 0) // needs a0's disk
	if _, err := e.p.GetAgent("a0"); !errors.Is(err, ErrAgentNotFound) {
		t.Fatal("a0 should be evicted for disk", err)
	}
	if c := e.p.Counts(); c.DiskBytes > 5*bb || c.Agents != 2 {
		t.Fatalf("%+v", c)
	}
	e.check()
}

// ---- persistence ----

func TestRestartKeepsRecordsAndBytes(t *testing.T) {
	e := newEnv(t, 200, func(o *Options) { o.NoSync = false })
	want := map[string][]uint32{}
	for i := range 10 {
		toks := tokens(i, 3+i*3)
		e.commitAgent(fmt.Sprint("agent-", i), toks, 0)
		want[fmt.Sprint("agent-", i)] = toks
	}
	e.commitAgent("agent-0", append(tokens(0, 3), 5, 6, 7, 8, 9), 1)
	want["agent-0"] = append(tokens(0, 3), 5, 6, 7, 8, 9)
	// An orphan and a leftover temporary: both removed at open.
	os.WriteFile(filepath.Join(e.dir, "blocks", "deadbeef-1-1.blk"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(e.dir, "blocks", "x.blk.tmp"), []byte("x"), 0o644)
	before := e.p.Counts()
	var logs bytes.Buffer
	e.opt.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	e.reopen()
	e.check()
	// Recovery reports its long phase and how long it took (issue #15).
	if !strings.Contains(logs.String(), `msg="recovering pool: checking block files done"`) || !strings.Contains(logs.String(), "took=") {
		t.Errorf("recovery logs:\n%s", logs.String())
	}
	after := e.p.Counts()
	if after.Epoch != before.Epoch+1 || after.Agents != 10 ||
		// agent-0's re-commit left its old tail cached but unreferenced: such
		// blocks are a cache that is not persisted.
		after.Cached != before.Cached-1 || after.MemoryBytes != 0 {
		t.Fatalf("before %+v after %+v", before, after)
	}
	for id, toks := range want {
		r, err := e.p.GetAgent(id)
		if err != nil || fmt.Sprint(r.Tokens) != fmt.Sprint(toks) {
			t.Fatal(id, err)
		}
		g, err := e.p.Lease(ctx, LeaseRequest{AgentID: id, Count: len(r.Hashes), Hashes: r.Hashes, ModelTag: "test-model"})
		if err != nil || g.Hits != len(r.Hashes) {
			t.Fatal(err)
		}
		for j, b := range g.Blocks {
			d, err := e.p.ReadBlock(ctx, g.LeaseID, g.Epoch, g.Holder, b.ID)
			if err != nil || string(d.Payload) != string(payloadFor(r.Hashes[j], testSpec().BlockBytes())) {
				t.Fatal(id, j, err)
			}
		}
		e.p.Release(ctx, g.LeaseID, g.Epoch, g.Holder, false)
	}
	ents, _ := os.ReadDir(filepath.Join(e.dir, "blocks"))
	if len(ents) != after.Cached {
		t.Fatalf("%d files for %d blocks", len(ents), after.Cached)
	}
	e.check()
}

func TestRestartTrimsAgentsWithMissingBlocks(t *testing.T) {
	e := newEnv(t, 50)
	e.commitAgent("a", tokens(1, 12), 0)
	e.commitAgent("b", tokens(2, 4), 0)
	r, _ := e.p.GetAgent("a")
	e.p.Close()
	// Remove the block file of a's second block.
	ents, _ := os.ReadDir(filepath.Join(e.dir, "blocks"))
	for _, de := range ents {
		if len(de.Name()) > 64 && de.Name()[:64] == fmt.Sprintf("%x", r.Hashes[1][:]) {
			os.Remove(filepath.Join(e.dir, "blocks", de.Name()))
		}
	}
	e.open()
	e.check()
	a, err := e.p.GetAgent("a")
	// A trimmed record is a new record: a version never issued before.
	if err != nil || len(a.Hashes) != 1 || len(a.Tokens) != 4 || a.Version <= r.Version || a.Version <= 2 {
		t.Fatal(a, err)
	}
	if c := e.p.Counts(); c.Cached != 2 {
		t.Fatalf("%+v", c)
	}
}

func TestCorruptBlockIsAMiss(t *testing.T) {
	e := newEnv(t, 50)
	e.commitAgent("a", tokens(1, 12), 0)
	e.commitAgent("b", tokens(1, 4), 0) // shares a's first block
	r, _ := e.p.GetAgent("a")
	e.p.Close()
	ents, _ := os.ReadDir(filepath.Join(e.dir, "blocks"))
	for _, de := range ents {
		if de.Name()[:64] == fmt.Sprintf("%x", r.Hashes[1][:]) {
			path := filepath.Join(e.dir, "blocks", de.Name())
			b, _ := os.ReadFile(path)
			b[len(b)-7] ^= 0x40
			os.WriteFile(path, b, 0o644)
		}
	}
	e.open()
	g, err := e.p.Lease(ctx, LeaseRequest{AgentID: "a", Count: 3, Hashes: r.Hashes, ModelTag: "test-model"})
	if err != nil || g.Hits != 3 {
		t.Fatal(err)
	}
	if _, err := e.p.ReadBlock(ctx, g.LeaseID, g.Epoch, g.Holder, g.Blocks[0].ID); err != nil {
		t.Fatal(err)
	}
	_, err = e.p.ReadBlock(ctx, g.LeaseID, g.Epoch, g.Holder, g.Blocks[1].ID)
	if !errors.Is(err, ErrDataLoss) {
		t.Fatal("corrupt block served:", err)
	}
	e.check()
	// Dropped from the cache and from a's record; the slot stays leased and rewritable.
	a, _ := e.p.GetAgent("a")
	if len(a.Hashes) != 1 {
		t.Fatalf("agent not trimmed: %d blocks", len(a.Hashes))
	}
	if _, err := e.p.ReadBlock(ctx, g.LeaseID, g.Epoch, g.Holder, g.Blocks[1].ID); !errors.Is(err, ErrNotFilled) {
		t.Fatal(err)
	}
	e.write(g, 1, r.Hashes[1], 4)
	e.p.Release(ctx, g.LeaseID, g.Epoch, g.Holder, true)
	e.check()
	// The rewritten block is cached again under its hash.
	if l, _ := e.p.Lookup(ctx, LookupRequest{AgentID: "z", Tokens: tokens(1, 8), ModelTag: "test-model"}); l.MatchedTokens != 8 {
		t.Fatal("rewritten block not cached:", l.MatchedTokens)
	}
	e.reopen()
	e.check()
	if a, _ := e.p.GetAgent("a"); len(a.Hashes) != 1 {
		t.Fatal("trim not persisted")
	}
	if b, err := e.p.GetAgent("b"); err != nil || len(b.Hashes) != 1 {
		t.Fatal(b, err)
	}
}

func TestWriteChecksumMismatchLeavesNothing(t *testing.T) {
	e := newEnv(t, 10)
	g := e.lease("a", 1)
	bb := testSpec().BlockBytes()
	data := make([]byte, bb)
	w, err := e.p.BeginWrite(ctx, g.LeaseID, g.Epoch, g.Holder, WriteHeader{BlockID: g.Blocks[0].ID, TokenCount: 4, Checksum: 12345, Size: int64(bb)})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if err := w.Commit(ctx); !errors.Is(err, ErrDataLoss) {
		t.Fatal(err)
	}
	if c := e.p.Counts(); c.DiskBytes != 0 || c.MemoryBytes != 0 {
		t.Fatalf("%+v", c)
	}
	ents, _ := os.ReadDir(filepath.Join(e.dir, "blocks"))
	if len(ents) != 0 {
		t.Fatal("file left behind")
	}
	// Still writable.
	e.write(g, 0, kvspec.Hash{7}, 4)
	e.check()
}

// The real expiry loop, on the real clock: it revokes, and Close stops it
// (goleak in TestMain fails the package if the goroutine outlives Close).
func TestExpiryLoopRunsAndStops(t *testing.T) {
	sp := testSpec()
	p, err := Open(Options{Dir: t.TempDir(), Capacity: 4, Spec: &sp, NoSync: true, ExpiryInterval: 5 * time.Millisecond, DefaultTTL: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Lease(ctx, LeaseRequest{AgentID: "a", Count: 4, ModelTag: sp.ModelTag}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.Counts().Free != 4 {
		if time.Now().After(deadline) {
			t.Fatal("expiry loop did not revoke")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := p.Check(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
}

func TestDiskBudgetExhausted(t *testing.T) {
	bb := int64(testSpec().BlockBytes())
	e := newEnv(t, 10, func(o *Options) { o.DiskBudget = 2 * bb })
	g := e.lease("a", 3)
	e.write(g, 0, kvspec.Hash{1}, 4)
	e.write(g, 1, kvspec.Hash{2}, 4)
	// The disk is full of blocks the lease holds: nothing can be evicted.
	err := writeBlock(e.p, g, 2, kvspec.Hash{3}, 4)
	var ex *ExhaustedError
	if !errors.As(err, &ex) || ex.Resource != "pool/disk" || ex.Asked != bb || ex.Available != 0 {
		t.Fatal(err)
	}
	e.check()
	// Releasing frees the disk; the third block then fits.
	e.p.Release(ctx, g.LeaseID, g.Epoch, g.Holder, false)
	g = e.lease("a", 1)
	e.write(g, 0, kvspec.Hash{3}, 4)
	e.check()
}
