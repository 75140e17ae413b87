package pool

import (
	"context"
	"errors"
	"time"

	"github.com/semantic-kv/semantic/pkg/kvspec"
)

// MinTTL is the shortest lease time to live a caller may ask for (0 asks for
// the default).
const MinTTL = 100 * time.Millisecond

// LeaseRequest asks for Count blocks for one request of one agent.
type LeaseRequest struct {
	Holder   string
	AgentID  string
	Count    int
	Hashes   []kvspec.Hash // hashes of the first blocks, in chain order
	TTL      time.Duration // 0: the default
	ModelTag string        // must equal the spec's
}

// LeasedBlock is one block of a grant.
type LeasedBlock struct {
	ID         uint32
	Hash       kvspec.Hash // zero for a fresh block
	Filled     bool
	TokenCount int
}

// Grant is a granted lease.
type Grant struct {
	LeaseID uint64
	Epoch   uint64
	Holder  string // the lease's holder: KeepAlive, Release, writes, reads and commits must present it
	Expire  time.Time
	TTL     time.Duration
	Blocks  []LeasedBlock
	Hits    int
}

// Lease pins the cached blocks named by the leading hashes (stopping at the
// first miss: blocks after a gap in the chain are useless to the caller) and
// takes fresh blocks for the rest, evicting least-recently-used unreferenced
// cached blocks, then whole least-recently-used agents, when too few are free.
// It is all or nothing: on ErrExhausted nothing is taken.
func (p *Pool) Lease(ctx context.Context, req LeaseRequest) (*Grant, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ttl := req.TTL
	if ttl < 0 || ttl > p.opt.MaxTTL {
		return nil, argErr("ttl", "must be in 0..%s, got %s", p.opt.MaxTTL, ttl)
	}
	if ttl > 0 && ttl < MinTTL {
		return nil, argErr("ttl", "must be at least %s, got %s", MinTTL, ttl)
	}
	if ttl == 0 {
		ttl = p.opt.DefaultTTL
	}
	if req.Count < 1 {
		return nil, argErr("count", "must be at least 1, got %d", req.Count)
	}
	if len(req.Hashes) > req.Count {
		return nil, argErr("block_hashes", "%d hashes for count %d", len(req.Hashes), req.Count)
	}
	// A chain hash names its whole prefix, so one chain never holds a hash
	// twice; a lease that pinned one slot twice would count it once in the
	// slot and twice in the grant.
	seen := make(map[kvspec.Hash]int, len(req.Hashes))
	for i, h := range req.Hashes {
		if j, dup := seen[h]; dup {
			return nil, argErr("block_hashes", "hash %d repeats hash %d: a chain names each block once", i, j)
		}
		seen[h] = i
	}
	var (
		g       *Grant
		dropped *persistSet
		files   []string
	)
	err := p.withLock(func() (err error) {
		g, dropped, files, err = p.grantLocked(req, ttl)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrExhausted) {
			p.m.leaseRefused.Add(ctx, 1)
		}
		return nil, err
	}
	p.m.leasesGranted.Add(ctx, 1)
	p.removeFiles(files)
	if !dropped.empty() {
		// The dropped agents are gone in memory already; persisting it is
		// best effort for this caller (a crash before it only brings the
		// agents back, with the blocks they still have on disk).
		p.persistBestEffort(ctx, dropped)
	}
	return g, nil
}

// grantLocked takes the blocks of a lease and registers it. It returns what
// making room dropped (to persist) and the block files to delete.
func (p *Pool) grantLocked(req LeaseRequest, ttl time.Duration) (*Grant, *persistSet, []string, error) {
	if p.closed {
		return nil, nil, nil, ErrClosed
	}
	if p.spec == nil {
		return nil, nil, nil, ErrNotConfigured
	}
	if req.ModelTag != p.spec.ModelTag {
		return nil, nil, nil, ErrModelMismatch
	}
	t := &p.slots
	if req.Count > len(t.slots) {
		return nil, nil, nil, argErr("count", "must be in 1..%d (capacity), got %d", len(t.slots), req.Count)
	}
	// The clock is read before anything changes: the one call out of the core
	// under the lock cannot leave a half-made lease behind.
	expire := p.clock.Now().Add(ttl)
	l := &lease{holder: req.Holder, agent: req.AgentID, ttl: ttl, expire: expire, slots: make([]int32, 0, req.Count)}
	for _, h := range req.Hashes {
		id, ok := t.index[h]
		if !ok {
			break
		}
		t.hold(id)
		l.slots = append(l.slots, id)
	}
	l.hits = len(l.slots)
	need := req.Count - l.hits
	dropped, files, err := p.makeRoomLocked(need, req.AgentID)
	if err != nil {
		for _, id := range l.slots {
			t.slots[id].holders--
			t.settle(id) // a hit is filled and indexed: it goes back to cached, never freed
		}
		return nil, nil, nil, err
	}
	for range need {
		id := t.takeFree()
		t.hold(id)
		l.slots = append(l.slots, id)
	}
	p.leases.add(l)
	for _, id := range l.slots[l.hits:] {
		t.slots[id].owner = l.id
	}
	g := &Grant{LeaseID: l.id, Epoch: p.epoch, Holder: l.holder, Expire: l.expire, TTL: ttl, Hits: l.hits, Blocks: make([]LeasedBlock, len(l.slots))}
	for i, id := range l.slots {
		s := &t.slots[id]
		g.Blocks[i] = LeasedBlock{ID: uint32(id)}
		if i < l.hits {
			g.Blocks[i].Hash, g.Blocks[i].Filled, g.Blocks[i].TokenCount = s.hash, true, int(s.tokens)
		}
	}
	return g, dropped, files, nil
}

// makeRoomLocked ensures need free slots, evicting unreferenced cached blocks
// in LRU order, then dropping whole least-recently-used agents (never keep)
// and evicting the blocks that lose their last reference. It decides first,
// by simulation, whether enough can be had, so that a refused request changes
// nothing. It returns what must be persisted and the files to delete.
func (p *Pool) makeRoomLocked(need int, keep string) (*persistSet, []string, error) {
	t := &p.slots
	avail := t.nFree + t.lru.n
	var victims []*agentEntry
	if avail < need {
		var gain int
		victims, gain = p.agentVictimsLocked(keep, func(n int) bool { return avail+n >= need }, func(*slot) bool { return true })
		if avail+gain < need {
			return nil, nil, &ExhaustedError{Resource: "pool/blocks", Asked: int64(need), Available: int64(avail + gain)}
		}
	}
	var ps *persistSet
	if len(victims) > 0 {
		ps = &persistSet{}
		for _, ae := range victims {
			p.removeAgentLocked(ae, ps)
		}
	}
	var files []string
	for t.nFree < need {
		files = append(files, t.evictOldest())
		p.m.evictions.Add(context.Background(), 1, tierSlots)
	}
	return ps, files, nil
}

// agentVictimsLocked simulates dropping whole agents, least recently used
// first and never keep, until enough(n) holds for the n cached blocks that
// would lose their last reference and pass counts. It changes nothing: the
// callers drop the victims only once they know the request will fit, so a
// refused request drops no one.
func (p *Pool) agentVictimsLocked(keep string, enough func(n int) bool, counts func(*slot) bool) ([]*agentEntry, int) {
	t := &p.slots
	var victims []*agentEntry
	dec := map[int32]int32{}
	n := 0
	for ae := range p.agents.leastRecent() {
		if enough(n) {
			break
		}
		if ae.rec.ID == keep {
			continue
		}
		victims = append(victims, ae)
		for _, h := range ae.rec.Hashes {
			id := t.index[h]
			dec[id]++
			if s := &t.slots[id]; s.refs == dec[id] && s.state == stateCached && counts(s) {
				n++
			}
		}
	}
	return victims, n
}

// KeepAlive renews a lease for its TTL. An unknown, expired, released or
// older-epoch lease is ErrLeaseNotFound, and stays so forever; a holder other
// than the one that took the lease is ErrNotHolder.
func (p *Pool) KeepAlive(ctx context.Context, leaseID, epoch uint64, holder string) (time.Time, time.Duration, error) {
	var (
		exp time.Time
		ttl time.Duration
	)
	err := p.withLock(func() error {
		l, err := p.heldLeaseLocked(leaseID, epoch, holder)
		if err != nil {
			return err
		}
		p.leases.renew(l, p.clock.Now())
		exp, ttl = l.expire, l.ttl
		return nil
	})
	if err != nil {
		return time.Time{}, 0, err
	}
	p.m.leasesRenewed.Add(ctx, 1)
	return exp, ttl, nil
}

// activeLeaseLocked finds an active lease of this epoch. A lease whose expiry
// has passed is treated as gone even before the loop revokes it, so that no
// write lands through a lease that lapsed.
func (p *Pool) activeLeaseLocked(id, epoch uint64) (*lease, error) {
	if epoch != p.epoch {
		return nil, ErrLeaseNotFound
	}
	l, ok := p.leases.get(id)
	if !ok || !p.clock.Now().Before(l.expire) {
		return nil, ErrLeaseNotFound
	}
	return l, nil
}

// heldLeaseLocked is activeLeaseLocked for a caller that must be the lease's
// holder: another holder gets ErrNotHolder and changes nothing.
//
// The holder is what the server passed when the lease was taken: the
// caller's string, or, when the pool authenticates its clients (mTLS), the
// identity's name and that string (server/authz.go leaseHolder), so that the
// lease is bound to the identity that took it. The core only compares.
func (p *Pool) heldLeaseLocked(id, epoch uint64, holder string) (*lease, error) {
	l, err := p.activeLeaseLocked(id, epoch)
	if err != nil {
		return nil, err
	}
	if l.holder != holder {
		return nil, ErrNotHolder
	}
	return l, nil
}

// Released reports what a Release did.
type Released struct {
	Freed, Cached int
}

// Release ends a lease. With commit, every block written through it becomes
// cached (indexed by hash; a duplicate of a hash already cached is freed);
// without, written blocks that no agent record references are freed. Blocks
// never written are freed either way and pinned hits are unpinned. Only the
// lease's holder may release it (else ErrNotHolder).
func (p *Pool) Release(ctx context.Context, leaseID, epoch uint64, holder string, commit bool) (Released, error) {
	var (
		r     Released
		files []string
	)
	err := p.withLock(func() error {
		l, err := p.heldLeaseLocked(leaseID, epoch, holder)
		if err != nil {
			return err
		}
		r, files = p.endLeaseLocked(l, commit)
		return nil
	})
	if err != nil {
		return Released{}, err
	}
	p.m.leasesReleased.Add(ctx, 1)
	p.removeFiles(files)
	return r, nil
}

func (p *Pool) endLeaseLocked(l *lease, commit bool) (Released, []string) {
	p.leases.remove(l)
	t := &p.slots
	var r Released
	var files []string
	for i, id := range l.slots {
		s := &t.slots[id]
		s.holders--
		if i >= l.hits {
			s.owner = 0
		}
		// Written through this lease (a fresh block, or a hit that was
		// dropped as corrupt and rewritten): with commit it becomes cached,
		// unless the hash is cached already (then this copy is freed).
		if commit && s.filled && !s.indexed && !s.writing {
			if _, dup := t.index[s.hash]; !dup {
				t.index[s.hash] = id
				s.indexed = true
			}
		}
		if s.holders == 0 {
			if s.writing {
				// A write in flight through this lease: its Commit sees the
				// new generation and discards the file it wrote.
				s.writing = false
			}
			f := t.settle(id)
			if s.state == stateFree {
				r.Freed++
				files = append(files, f)
			} else {
				r.Cached++
			}
		}
	}
	return r, files
}

// ExpireNow revokes every lease whose expiry has passed and returns how many.
// The expiry loop calls it; tests with a fake clock call it directly.
func (p *Pool) ExpireNow() int {
	var files []string
	n := 0
	_ = p.withLock(func() error {
		now := p.clock.Now()
		for l := p.leases.nextExpired(now); l != nil; l = p.leases.nextExpired(now) {
			_, f := p.endLeaseLocked(l, false)
			files = append(files, f...)
			n++
		}
		return nil
	})
	if n > 0 {
		p.m.leasesExpired.Add(context.Background(), int64(n))
		p.log.Info("leases expired", "count", n)
	}
	p.removeFiles(files)
	return n
}

func (p *Pool) expiryLoop(every time.Duration) {
	defer close(p.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.ExpireNow()
		}
	}
}
