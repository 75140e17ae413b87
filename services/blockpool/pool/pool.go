// Package pool is the block pool's domain core: a fixed number of KV blocks of
// one geometry, their allocation state, leases, the content-hash index, agent
// records, the memory and disk tiers, and their persistence in bbolt. It knows
// nothing of gRPC; the server package maps its errors to status codes.
//
// Every block (slot) is in exactly one state:
//
//	free   - no payload, in the free list.
//	leased - held by at least one active lease (a pinned hit or a fresh block).
//	cached - filled, named in the hash index, held by no lease. A cached block
//	         that no agent record references is in the eviction LRU.
//
// The state is three tables: slots (the blocks, the hash index, the tiers;
// slottable.go), leases (with their expiry heap; leasetable.go) and agents
// (records in LRU order; agenttable.go). One mutex guards all three: every
// critical section is a few map and list operations, and operations such as a
// lease or a commit change several tables at once. Each table checks its own
// invariants; Check adds the ones between them. Disk I/O and fsync never
// happen under the lock: block files are written and read outside it, and
// bbolt transactions take the lock only to snapshot the in-memory state they
// persist. Recovery at open is in recover.go.
package pool

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/services/blockpool/internal/storage"
	"go.opentelemetry.io/otel/metric"
)

// Defaults for zero Options fields.
const (
	DefaultCapacity = 1024
	// DefaultMaxCapacity bounds the capacity (Open, Reconfigure) when
	// Options.MaxCapacity is 0. Every slot costs ~200 bytes of bookkeeping
	// whatever its payload, so 2^18 slots are ~50 MB; 2^22 cost 700 MB.
	DefaultMaxCapacity = 1 << 18
	// DefaultMaxAgents and DefaultMaxAgentBytes bound agent records per node
	// when Options.MaxAgents / MaxAgentBytes are 0.
	DefaultMaxAgents     = 100_000
	DefaultMaxAgentBytes = 256 << 20
	DefaultLeaseTTL      = 30 * time.Second
	DefaultMaxTTL        = 10 * time.Minute
	defaultExpiryTick    = 100 * time.Millisecond
)

// Options configure Open. Zero values fall back to defaults.
type Options struct {
	// Dir is the data directory: bbolt at Dir/pool.db, block files in Dir/blocks.
	Dir string
	// NodeID names the node; empty: the stored one, else derived from Dir.
	NodeID string
	// Capacity in blocks; 0: the stored capacity, else DefaultCapacity.
	Capacity int
	// MaxCapacity bounds Capacity and every Reconfigure (0: DefaultMaxCapacity).
	// A larger capacity is refused (capacity_blocks) before anything is allocated.
	MaxCapacity int
	// Spec, if set, is the cache spec (a different stored spec drops every
	// stored block); if nil, the stored spec is used (or none until Reconfigure).
	Spec *kvspec.Spec
	// MaxAgents and MaxAgentBytes bound the agent records of the node and
	// their bytes in memory (0: DefaultMaxAgents, DefaultMaxAgentBytes). A
	// commit beyond them drops the least recently used idle agents.
	MaxAgents     int
	MaxAgentBytes int64
	// TenantOf names the tenant of an agent id ("" for none): the node sets
	// it to the wire rule (poolwire.SplitAgentKey, "tenant/agent"), which
	// this core does not import. It must be pure. The per-tenant bounds of a
	// commit (CommitRequest.TenantMaxAgents, TenantMaxAgentBytes) count the
	// records of one tenant by it; nil: no agent has a tenant.
	TenantOf func(agentID string) string
	// MemoryBudget and DiskBudget bound payload bytes per tier (0 = unlimited).
	// A negative MemoryBudget keeps no payload in memory: every block is
	// read from its file (through the OS page cache).
	MemoryBudget, DiskBudget int64
	// DefaultTTL and MaxTTL bound lease time to live.
	DefaultTTL, MaxTTL time.Duration
	// Clock, if nil, is the real clock.
	Clock Clock
	// ExpiryInterval is how often the expiry loop runs (default 100ms);
	// negative disables the loop (tests call ExpireNow).
	ExpiryInterval time.Duration
	Logger         *slog.Logger
	MeterProvider  metric.MeterProvider
	// NoSync skips fsync of bbolt and block files. Tests only.
	NoSync bool
}

// Pool is the block pool. All exported methods are safe for concurrent use.
//
// Its state is three tables (slots, leases, agents), each with its own
// invariants (check), all guarded by the one lock mu. Every locked section
// goes through withLock; helpers named ...Locked expect the lock held.
type Pool struct {
	opt    Options
	log    *slog.Logger
	clock  Clock
	m      *metrics
	blkDir string
	nodeID string
	epoch  uint64

	db         *storage.DB
	persisting atomic.Int32   // persist calls in flight, to choose Update or Batch
	wg         sync.WaitGroup // in-flight persist calls, so Close waits for them

	mu      sync.Mutex
	closed  bool
	spec    *kvspec.Spec // nil until configured
	slots   slotTable
	leases  leaseTable
	agents  agentTable
	fileSeq uint64 // block file names written in this epoch
	// agentVer is the last agent record version issued on this node: every
	// new record (commit, trim) takes the next value, so a version never
	// repeats for an agent id, even after delete and re-create. Persisted
	// (storage.KeyAgentVersion) with every agent change, restored at open.
	agentVer uint64

	stop chan struct{}
	done chan struct{}
}

// Open opens or creates the pool in opt.Dir, recovers its state (see
// recover.go), bumps the epoch and starts the lease-expiry loop.
func Open(opt Options) (*Pool, error) {
	if opt.Dir == "" {
		return nil, errors.New("pool: Options.Dir is required")
	}
	if opt.DefaultTTL <= 0 {
		opt.DefaultTTL = DefaultLeaseTTL
	}
	if opt.MaxTTL <= 0 {
		opt.MaxTTL = DefaultMaxTTL
	}
	if opt.DefaultTTL > opt.MaxTTL {
		opt.DefaultTTL = opt.MaxTTL
	}
	if opt.MaxAgents <= 0 {
		opt.MaxAgents = DefaultMaxAgents
	}
	if opt.MaxAgentBytes <= 0 {
		opt.MaxAgentBytes = DefaultMaxAgentBytes
	}
	if opt.MaxCapacity <= 0 {
		opt.MaxCapacity = DefaultMaxCapacity
	}
	if opt.Capacity > opt.MaxCapacity {
		return nil, argErr("capacity_blocks", "must be at most %d (the node's maximum), got %d", opt.MaxCapacity, opt.Capacity)
	}
	if opt.ExpiryInterval == 0 {
		opt.ExpiryInterval = defaultExpiryTick
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Clock == nil {
		opt.Clock = realClock{}
	}
	if opt.Spec != nil {
		if err := opt.Spec.Validate(); err != nil {
			return nil, err
		}
	}
	p := &Pool{
		opt:    opt,
		log:    opt.Logger,
		clock:  opt.Clock,
		blkDir: filepath.Join(opt.Dir, "blocks"),
		leases: newLeaseTable(),
		agents: newAgentTable(opt.TenantOf),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	p.slots.memBudget = opt.MemoryBudget
	if err := os.MkdirAll(p.blkDir, 0o755); err != nil {
		return nil, err
	}
	db, meta, err := storage.Open(filepath.Join(opt.Dir, "pool.db"), storage.Options{NoSync: opt.NoSync})
	if err != nil {
		return nil, err
	}
	p.db = db
	p.nodeID = opt.NodeID
	if p.nodeID == "" {
		p.nodeID = meta.GetNodeId()
	}
	if p.nodeID == "" {
		abs, _ := filepath.Abs(opt.Dir)
		sum := sha256.Sum256([]byte(abs))
		p.nodeID = "blockpool-" + hex.EncodeToString(sum[:6])
	}
	if err := p.recover(meta); err != nil {
		db.Close()
		return nil, fmt.Errorf("pool: recover: %w", err)
	}
	if p.m, err = newMetrics(opt.MeterProvider, p); err != nil {
		db.Close()
		return nil, fmt.Errorf("pool: metrics: %w", err)
	}
	if opt.ExpiryInterval > 0 {
		go p.expiryLoop(opt.ExpiryInterval)
	} else {
		close(p.done)
	}
	return p, nil
}

// Close stops the expiry loop, waits for in-flight persistence and closes
// bbolt. Every lease dies with the process (leases are not persisted).
func (p *Pool) Close() error {
	var already bool
	_ = p.withLock(func() error {
		already, p.closed = p.closed, true
		return nil
	})
	if already {
		return nil
	}
	close(p.stop)
	<-p.done
	p.wg.Wait()
	if p.m != nil && p.m.reg != nil {
		_ = p.m.reg.Unregister()
	}
	return p.db.Close()
}

// lock takes the pool lock, timing the wait only when it is contended so that
// the uncontended path costs one TryLock.
func (p *Pool) lock() {
	if p.mu.TryLock() {
		return
	}
	t := time.Now()
	p.mu.Lock()
	if p.m != nil {
		p.m.lockWait.Record(context.Background(), since(t))
	}
}

// withLock runs f with the pool lock held. Its deferred unlock is the one
// unlock path of the core: an early return from f, or a panic in it, never
// leaves the lock held (a server that recovers the panic keeps a usable pool).
func (p *Pool) withLock(f func() error) error {
	p.lock()
	defer p.mu.Unlock()
	return f()
}

// Epoch is the pool epoch of this process lifetime.
func (p *Pool) Epoch() uint64 { return p.epoch }

// NodeID is the node's stable identifier.
func (p *Pool) NodeID() string { return p.nodeID }

// Counts is a snapshot of the pool's sizes.
type Counts struct {
	Capacity, Free, Leased, Cached int
	MemoryBytes, DiskBytes         int64
	MemoryBudget, DiskBudget       int64
	ActiveLeases, Agents           int
	Epoch                          uint64
	NodeID                         string
	// Spec is nil while the pool is unconfigured.
	Spec *kvspec.Spec
}

// Counts returns a consistent snapshot of the pool's sizes.
func (p *Pool) Counts() Counts {
	var c Counts
	_ = p.withLock(func() error {
		c = p.countsLocked()
		return nil
	})
	return c
}

func (p *Pool) countsLocked() Counts {
	t := &p.slots
	return Counts{
		Capacity: len(t.slots), Free: t.nFree, Leased: t.nLeased, Cached: t.nCached,
		MemoryBytes: t.memBytes, DiskBytes: t.dskBytes,
		MemoryBudget: p.opt.MemoryBudget, DiskBudget: p.opt.DiskBudget,
		ActiveLeases: p.leases.len(), Agents: p.agents.len(), Epoch: p.epoch, NodeID: p.nodeID,
		Spec: p.specLocked(),
	}
}

// Spec returns the current spec, nil while unconfigured.
func (p *Pool) Spec() *kvspec.Spec {
	var s *kvspec.Spec
	_ = p.withLock(func() error {
		s = p.specLocked()
		return nil
	})
	return s
}

// specLocked returns a copy of the spec, nil while unconfigured.
func (p *Pool) specLocked() *kvspec.Spec {
	if p.spec == nil {
		return nil
	}
	s := *p.spec
	return &s
}

// setSpecLocked sets the spec and lays out capacity slots for it: fresh ones
// (at open), or the cached blocks renumbered (rebuild, when no lease is
// active).
func (p *Pool) setSpecLocked(spec kvspec.Spec, capacity int, rebuild bool) {
	p.spec = &spec
	if rebuild {
		p.slots.rebuild(capacity, int64(spec.BlockBytes()))
	} else {
		p.slots.build(capacity, int64(spec.BlockBytes()))
	}
}

// MaxTTL is the longest lease TTL accepted.
func (p *Pool) MaxTTL() time.Duration { return p.opt.MaxTTL }

// removeFiles deletes block files outside the lock. A failure only leaves an
// orphan, which the next open removes.
func (p *Pool) removeFiles(files []string) {
	for _, f := range files {
		if f == "" {
			continue
		}
		if err := os.Remove(filepath.Join(p.blkDir, f)); err != nil && !os.IsNotExist(err) {
			p.log.Warn("remove block file", "file", f, "err", err)
		}
	}
}

func (p *Pool) newFileNameLocked(h kvspec.Hash) string {
	p.fileSeq++
	// Unique per write (epoch + sequence): two leases may write the same hash
	// at once, and deleting one copy must never delete the other.
	return fmt.Sprintf("%s-%d-%d.blk", hex.EncodeToString(h[:]), p.epoch, p.fileSeq)
}

// nextVersionLocked issues the next agent record version.
func (p *Pool) nextVersionLocked() uint64 {
	p.agentVer++
	return p.agentVer
}

// Check verifies every invariant of the pool and returns the first violation.
// Tests run it after every concurrent scenario; it is O(capacity + records).
func (p *Pool) Check() error { return p.withLock(p.checkLocked) }

// checkLocked checks each table, then what the tables say of each other: the
// holders and owner of each slot are its leases', the references of each
// block are its agents', every agent names blocks that are indexed, in the
// number its tokens need.
func (p *Pool) checkLocked() error {
	if err := p.slots.check(); err != nil {
		return fmt.Errorf("slots: %w", err)
	}
	if err := p.leases.check(); err != nil {
		return fmt.Errorf("leases: %w", err)
	}
	if err := p.agents.check(); err != nil {
		return fmt.Errorf("agents: %w", err)
	}
	t := &p.slots
	wantBB := int64(0)
	if p.spec != nil {
		wantBB = int64(p.spec.BlockBytes())
	}
	if t.blockBytes != wantBB {
		return fmt.Errorf("slot table block size %d, spec's %d", t.blockBytes, wantBB)
	}
	holders := make([]int32, len(t.slots))
	owners := make([]uint64, len(t.slots))
	for l := range p.leases.all() {
		for i, sid := range l.slots {
			holders[sid]++
			if i >= l.hits {
				if owners[sid] != 0 {
					return fmt.Errorf("slot %d owned by two leases", sid)
				}
				owners[sid] = l.id
			}
		}
	}
	refs := map[kvspec.Hash]int32{}
	for e := range p.agents.all() {
		id := e.rec.ID
		if e.rec.Version == 0 || e.rec.Version > p.agentVer {
			return fmt.Errorf("agent %q: version %d not issued (last issued %d)", id, e.rec.Version, p.agentVer)
		}
		if p.spec == nil || len(e.rec.Hashes) != p.spec.BlocksFor(len(e.rec.Tokens)) {
			return fmt.Errorf("agent %q: %d hashes for %d tokens", id, len(e.rec.Hashes), len(e.rec.Tokens))
		}
		for _, h := range e.rec.Hashes {
			if _, ok := t.index[h]; !ok {
				return fmt.Errorf("agent %q points at block %s that is gone", id, h)
			}
			refs[h]++
		}
	}
	for id := range t.slots {
		s := &t.slots[id]
		if s.holders != holders[id] {
			return fmt.Errorf("slot %d: holders %d, leases say %d", id, s.holders, holders[id])
		}
		if s.owner != owners[id] {
			return fmt.Errorf("slot %d: owner %d, leases say %d", id, s.owner, owners[id])
		}
		if s.indexed && s.refs != refs[s.hash] {
			return fmt.Errorf("slot %d: refs %d, agent records say %d", id, s.refs, refs[s.hash])
		}
	}
	return nil
}
