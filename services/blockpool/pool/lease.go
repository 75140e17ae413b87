package pool

import (
	"container/heap"
	"context"
	"time"

	"github.com/semantic-kv/semantic/pkg/kvspec"
)

// lease is an active lease. Like etcd's lessor: a map from id to lease plus a
// min-heap on expiry (the lease keeps its heap index, so a renewal is one
// heap.Fix). A lease removed from the map is gone for good: ids are never
// reused within an epoch, and every write checks the map.
type lease struct {
	id      uint64
	holder  string
	agent   string
	ttl     time.Duration
	expire  time.Time
	slots   []int32 // hits first, then fresh blocks
	hits    int
	heapIdx int
}

type leaseHeap []*lease

func (h leaseHeap) Len() int           { return len(h) }
func (h leaseHeap) Less(i, j int) bool { return h[i].expire.Before(h[j].expire) }
func (h leaseHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
}
func (h *leaseHeap) Push(x any) { l := x.(*lease); l.heapIdx = len(*h); *h = append(*h, l) }
func (h *leaseHeap) Pop() any {
	old := *h
	l := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	l.heapIdx = -1
	return l
}

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
	if ttl == 0 {
		ttl = p.opt.DefaultTTL
	}
	if req.Count < 1 {
		return nil, argErr("count", "must be at least 1, got %d", req.Count)
	}
	if len(req.Hashes) > req.Count {
		return nil, argErr("block_hashes", "%d hashes for count %d", len(req.Hashes), req.Count)
	}
	p.lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if p.spec == nil {
		p.mu.Unlock()
		return nil, ErrNotConfigured
	}
	if req.ModelTag != p.spec.ModelTag {
		p.mu.Unlock()
		return nil, ErrModelMismatch
	}
	if req.Count > len(p.slots) {
		p.mu.Unlock()
		return nil, argErr("count", "must be in 1..%d (capacity), got %d", len(p.slots), req.Count)
	}
	l := &lease{holder: req.Holder, agent: req.AgentID, ttl: ttl, slots: make([]int32, 0, req.Count)}
	for _, h := range req.Hashes {
		id, ok := p.index[h]
		if !ok {
			break
		}
		p.hold(id)
		l.slots = append(l.slots, id)
	}
	l.hits = len(l.slots)
	need := req.Count - l.hits
	dropped, files, err := p.makeRoom(need, req.AgentID)
	if err != nil {
		for _, id := range l.slots {
			p.slots[id].holders--
			p.settle(id) // a hit is filled and indexed: it goes back to cached, never freed
		}
		p.mu.Unlock()
		p.m.leaseRefused.Add(ctx, 1)
		return nil, err
	}
	for range need {
		id := p.takeFree()
		p.hold(id)
		p.slots[id].owner = 0 // set below, once the id is known
		l.slots = append(l.slots, id)
	}
	p.nextID++
	l.id = p.nextID
	for _, id := range l.slots[l.hits:] {
		p.slots[id].owner = l.id
	}
	l.expire = p.clock.Now().Add(ttl)
	p.leases[l.id] = l
	heap.Push(&p.expiry, l)
	g := &Grant{LeaseID: l.id, Epoch: p.epoch, Expire: l.expire, TTL: ttl, Hits: l.hits, Blocks: make([]LeasedBlock, len(l.slots))}
	for i, id := range l.slots {
		s := &p.slots[id]
		g.Blocks[i] = LeasedBlock{ID: uint32(id)}
		if i < l.hits {
			g.Blocks[i].Hash, g.Blocks[i].Filled, g.Blocks[i].TokenCount = s.hash, true, int(s.tokens)
		}
	}
	p.mu.Unlock()
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

// makeRoom ensures need free slots, evicting unreferenced cached blocks in
// LRU order, then dropping whole least-recently-used agents (never keep) and
// evicting the blocks that lose their last reference. It decides first, by
// simulation, whether enough can be had, so that a refused request changes
// nothing. It returns what must be persisted and the files to delete.
func (p *Pool) makeRoom(need int, keep string) (*persistSet, []string, error) {
	avail := p.nFree + p.lru.n
	var victims []*agentEntry
	if avail < need {
		dec := map[int32]int32{}
		gain := 0
		for e := p.agentLRU.Front(); e != nil && avail+gain < need; e = e.Next() {
			ae := e.Value.(*agentEntry)
			if ae.rec.ID == keep {
				continue
			}
			victims = append(victims, ae)
			for _, h := range ae.rec.Hashes {
				id := p.index[h]
				dec[id]++
				if s := &p.slots[id]; s.refs == dec[id] && s.state == stateCached {
					gain++
				}
			}
		}
		if avail+gain < need {
			return nil, nil, &ExhaustedError{Resource: "pool/blocks", Asked: int64(need), Available: int64(avail + gain)}
		}
	}
	var ps *persistSet
	if len(victims) > 0 {
		ps = &persistSet{}
		for _, ae := range victims {
			p.removeAgent(ae, ps)
		}
	}
	var files []string
	for p.nFree < need {
		id := p.lru.head
		files = append(files, p.freeSlot(id))
		p.m.evictions.Add(context.Background(), 1, tierSlots)
	}
	return ps, files, nil
}

// KeepAlive renews a lease for its TTL. An unknown, expired, released or
// older-epoch lease is ErrLeaseNotFound, and stays so forever.
func (p *Pool) KeepAlive(ctx context.Context, leaseID, epoch uint64) (time.Time, time.Duration, error) {
	p.lock()
	l, err := p.leaseLocked(leaseID, epoch)
	if err != nil {
		p.mu.Unlock()
		return time.Time{}, 0, err
	}
	l.expire = p.clock.Now().Add(l.ttl)
	heap.Fix(&p.expiry, l.heapIdx)
	exp, ttl := l.expire, l.ttl
	p.mu.Unlock()
	p.m.leasesRenewed.Add(ctx, 1)
	return exp, ttl, nil
}

// leaseLocked finds an active lease of this epoch. A lease whose expiry has
// passed is treated as gone even before the loop revokes it, so that no write
// lands through a lease that lapsed.
func (p *Pool) leaseLocked(id, epoch uint64) (*lease, error) {
	if epoch != p.epoch {
		return nil, ErrLeaseNotFound
	}
	l, ok := p.leases[id]
	if !ok || !p.clock.Now().Before(l.expire) {
		return nil, ErrLeaseNotFound
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
// never written are freed either way and pinned hits are unpinned.
func (p *Pool) Release(ctx context.Context, leaseID, epoch uint64, commit bool) (Released, error) {
	p.lock()
	l, err := p.leaseLocked(leaseID, epoch)
	if err != nil {
		p.mu.Unlock()
		return Released{}, err
	}
	r, files := p.endLease(l, commit)
	p.mu.Unlock()
	p.m.leasesReleased.Add(ctx, 1)
	p.removeFiles(files)
	return r, nil
}

func (p *Pool) endLease(l *lease, commit bool) (Released, []string) {
	delete(p.leases, l.id)
	heap.Remove(&p.expiry, l.heapIdx)
	var r Released
	var files []string
	for i, id := range l.slots {
		s := &p.slots[id]
		s.holders--
		if i >= l.hits {
			s.owner = 0
		}
		// Written through this lease (a fresh block, or a hit that was
		// dropped as corrupt and rewritten): with commit it becomes cached,
		// unless the hash is cached already (then this copy is freed).
		if commit && s.filled && !s.indexed && !s.writing {
			if _, dup := p.index[s.hash]; !dup {
				p.index[s.hash] = id
				s.indexed = true
			}
		}
		if s.holders == 0 {
			if s.writing {
				// A write in flight through this lease: its Commit sees the
				// new generation and discards the file it wrote.
				s.writing = false
			}
			f := p.settle(id)
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
	p.lock()
	now := p.clock.Now()
	for len(p.expiry) > 0 && !now.Before(p.expiry[0].expire) {
		_, f := p.endLease(p.expiry[0], false)
		files = append(files, f...)
		n++
	}
	p.mu.Unlock()
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
