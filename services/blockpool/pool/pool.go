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
// One mutex guards all of it (the seed's coarse lock, which is simple and fast
// enough: every critical section is a few map and list operations). Disk I/O
// and fsync never happen under the lock: block files are written and read
// outside it, and bbolt transactions take the lock only to snapshot the
// in-memory state they persist.
package pool

import (
	"container/list"
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
	DefaultCapacity   = 1024
	DefaultLeaseTTL   = 30 * time.Second
	DefaultMaxTTL     = 10 * time.Minute
	defaultExpiryTick = 100 * time.Millisecond
)

// Options configure Open. Zero values fall back to defaults.
type Options struct {
	// Dir is the data directory: bbolt at Dir/pool.db, block files in Dir/blocks.
	Dir string
	// NodeID names the node; empty: the stored one, else derived from Dir.
	NodeID string
	// Capacity in blocks; 0: the stored capacity, else DefaultCapacity.
	Capacity int
	// Spec, if set, is the cache spec (a different stored spec drops every
	// stored block); if nil, the stored spec is used (or none until Reconfigure).
	Spec *kvspec.Spec
	// MemoryBudget and DiskBudget bound payload bytes per tier (0 = unlimited).
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

type state uint8

const (
	stateFree state = iota
	stateLeased
	stateCached
)

func (s state) String() string { return [...]string{"free", "leased", "cached"}[s] }

// slot is one block of the pool.
type slot struct {
	state    state
	filled   bool // holds a durable payload (file written, possibly in memory too)
	indexed  bool // p.index[hash] == this slot
	writing  bool // a BlockWrite is filling it
	onDisk   bool // its BlockBytes are counted in diskBytes (file written or reserved)
	verified bool // the file's checksum was verified since open
	inLRU    bool
	inMem    bool
	hash     kvspec.Hash
	parent   kvspec.Hash
	tokens   uint32
	checksum uint32
	payload  []byte // memory tier; nil when only on disk (or free)
	file     string // block file name in the blocks dir; "" if none
	holders  int32  // leases holding it: pinned hits plus the fresh owner
	owner    uint64 // lease that took it fresh, until released
	refs     int32  // agent-record references to its hash
	gen      uint64 // bumped whenever its content changes, to detect stale I/O
	lru, mem links
}

// agentRec is an immutable agent record: a commit builds a new one.
type agentRec struct {
	ID, ModelTag, Salt string
	Hashes             []kvspec.Hash
	Tokens             []uint32
	Version            uint64
	Created            time.Time
}

type agentEntry struct {
	rec      *agentRec
	lastUsed time.Time
	elem     *list.Element // in p.agentLRU; front = least recently used
}

// Pool is the block pool. All exported methods are safe for concurrent use.
type Pool struct {
	opt    Options
	log    *slog.Logger
	clock  Clock
	m      *metrics
	db     *storage.DB
	blkDir string
	nodeID string
	epoch  uint64

	mu       sync.Mutex
	closed   bool
	spec     *kvspec.Spec
	slots    []slot
	free     []int32
	nFree    int
	nLeased  int
	nCached  int
	index    map[kvspec.Hash]int32
	lru      ilist // cached, unreferenced: eviction order
	mem      ilist // payloads in memory: memory-tier eviction order
	memBytes int64
	dskBytes int64
	agents   map[string]*agentEntry
	agentLRU *list.List
	leases   map[uint64]*lease
	expiry   leaseHeap
	nextID   uint64
	fileSeq  uint64

	stop chan struct{}
	done chan struct{}
	wg   sync.WaitGroup // in-flight persist calls, so Close waits for them

	persisting atomic.Int32 // persist calls in flight, to choose Update or Batch
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
		opt:      opt,
		log:      opt.Logger,
		clock:    opt.Clock,
		blkDir:   filepath.Join(opt.Dir, "blocks"),
		index:    map[kvspec.Hash]int32{},
		agents:   map[string]*agentEntry{},
		agentLRU: list.New(),
		leases:   map[uint64]*lease{},
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
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
	p.m = newMetrics(opt.MeterProvider, p)
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
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
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
	p.lock()
	defer p.mu.Unlock()
	return p.countsLocked()
}

func (p *Pool) countsLocked() Counts {
	c := Counts{
		Capacity: len(p.slots), Free: p.nFree, Leased: p.nLeased, Cached: p.nCached,
		MemoryBytes: p.memBytes, DiskBytes: p.dskBytes,
		MemoryBudget: p.opt.MemoryBudget, DiskBudget: p.opt.DiskBudget,
		ActiveLeases: len(p.leases), Agents: len(p.agents), Epoch: p.epoch, NodeID: p.nodeID,
	}
	if p.spec != nil {
		s := *p.spec
		c.Spec = &s
	}
	return c
}

// Spec returns the current spec, nil while unconfigured.
func (p *Pool) Spec() *kvspec.Spec {
	p.lock()
	defer p.mu.Unlock()
	if p.spec == nil {
		return nil
	}
	s := *p.spec
	return &s
}

// MaxTTL is the longest lease TTL accepted.
func (p *Pool) MaxTTL() time.Duration { return p.opt.MaxTTL }

// ---- slot state changes (all under p.mu) ----

func (p *Pool) setState(id int32, to state) {
	s := &p.slots[id]
	switch s.state {
	case stateFree:
		p.nFree--
	case stateLeased:
		p.nLeased--
	case stateCached:
		p.nCached--
	}
	s.state = to
	switch to {
	case stateFree:
		p.nFree++
	case stateLeased:
		p.nLeased++
	case stateCached:
		p.nCached++
	}
}

// hold adds a lease holder to a free or cached slot (or one already leased).
func (p *Pool) hold(id int32) {
	s := &p.slots[id]
	if s.inLRU {
		p.lru.remove(id)
		s.inLRU = false
	}
	s.holders++
	if s.state != stateLeased {
		p.setState(id, stateLeased)
	}
}

// settle puts a slot that no lease holds any more in its resting state:
// cached if it holds an indexed payload, free otherwise. It returns the block
// file to delete, if any (the caller deletes it after unlocking).
func (p *Pool) settle(id int32) (file string) {
	s := &p.slots[id]
	if s.holders > 0 {
		return ""
	}
	if s.filled && s.indexed {
		p.setState(id, stateCached)
		if s.refs == 0 && !s.inLRU {
			p.lru.pushBack(id)
			s.inLRU = true
		}
		return ""
	}
	return p.freeSlot(id)
}

// freeSlot returns a slot to the free list, dropping its payload reference
// (the seed's memory-leak fix: a freed block never keeps its KV alive), its
// index entry and its disk accounting. It returns the file to delete.
func (p *Pool) freeSlot(id int32) (file string) {
	s := &p.slots[id]
	if s.indexed {
		delete(p.index, s.hash)
	}
	if s.inLRU {
		p.lru.remove(id)
	}
	p.dropMem(id)
	if s.onDisk {
		p.dskBytes -= int64(p.spec.BlockBytes())
	}
	file = s.file
	gen := s.gen + 1
	*s = slot{state: s.state, gen: gen, lru: links{-1, -1}, mem: links{-1, -1}}
	p.setState(id, stateFree)
	p.free = append(p.free, id)
	return file
}

// dropMem releases a slot's in-memory payload (the file stays).
func (p *Pool) dropMem(id int32) {
	s := &p.slots[id]
	if s.inMem {
		p.mem.remove(id)
		s.inMem = false
		p.memBytes -= int64(len(s.payload))
	}
	s.payload = nil
}

// addMem puts a payload in the memory tier and evicts least-recently-used
// payloads (never files) until the memory budget holds.
func (p *Pool) addMem(id int32, payload []byte) {
	s := &p.slots[id]
	p.dropMem(id)
	s.payload = payload
	s.inMem = true
	p.mem.pushBack(id)
	p.memBytes += int64(len(payload))
	for p.opt.MemoryBudget > 0 && p.memBytes > p.opt.MemoryBudget && p.mem.n > 0 {
		victim := p.mem.head
		p.dropMem(victim)
		p.m.evictions.Add(context.Background(), 1, tierMemory)
	}
}

func (p *Pool) takeFree() int32 {
	id := p.free[len(p.free)-1]
	p.free = p.free[:len(p.free)-1]
	return id
}

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

func (p *Pool) newFileName(h kvspec.Hash) string {
	p.fileSeq++
	// Unique per write (epoch + sequence): two leases may write the same hash
	// at once, and deleting one copy must never delete the other.
	return fmt.Sprintf("%s-%d-%d.blk", hex.EncodeToString(h[:]), p.epoch, p.fileSeq)
}

func (p *Pool) buildSlots(n int) {
	p.slots = make([]slot, n)
	p.free = make([]int32, 0, n)
	p.lru = newList(func(id int32) *links { return &p.slots[id].lru })
	p.mem = newList(func(id int32) *links { return &p.slots[id].mem })
	for i := n - 1; i >= 0; i-- {
		p.slots[i] = slot{lru: links{-1, -1}, mem: links{-1, -1}}
		p.free = append(p.free, int32(i))
	}
	p.nFree, p.nLeased, p.nCached = n, 0, 0
}

// ---- invariants ----

// Check verifies every invariant of the pool and returns the first violation.
// Tests run it after every concurrent scenario; it is O(capacity + records).
func (p *Pool) Check() error {
	p.lock()
	defer p.mu.Unlock()
	var nf, nl, nc int
	var memBytes, dskBytes int64
	bb := int64(0)
	if p.spec != nil {
		bb = int64(p.spec.BlockBytes())
	}
	holders := make([]int32, len(p.slots))
	owners := make([]uint64, len(p.slots))
	for id, l := range p.leases {
		if l.id != id || l.heapIdx < 0 || l.heapIdx >= len(p.expiry) || p.expiry[l.heapIdx] != l {
			return fmt.Errorf("lease %d: bad map/heap entry", id)
		}
		for i, sid := range l.slots {
			holders[sid]++
			if i >= l.hits {
				if owners[sid] != 0 {
					return fmt.Errorf("slot %d owned by two leases", sid)
				}
				owners[sid] = id
			}
		}
	}
	if len(p.expiry) != len(p.leases) {
		return fmt.Errorf("heap has %d leases, map %d", len(p.expiry), len(p.leases))
	}
	for i := 1; i < len(p.expiry); i++ {
		if p.expiry.Less(i, (i-1)/2) {
			return fmt.Errorf("expiry heap order broken at %d", i)
		}
	}
	refs := map[kvspec.Hash]int32{}
	if p.agentLRU.Len() != len(p.agents) {
		return fmt.Errorf("agent LRU has %d, map %d", p.agentLRU.Len(), len(p.agents))
	}
	for id, e := range p.agents {
		if e.rec.ID != id || e.elem == nil || e.elem.Value.(*agentEntry) != e {
			return fmt.Errorf("agent %q: bad entry", id)
		}
		if len(e.rec.Hashes) == 0 || p.spec == nil || len(e.rec.Hashes) != p.spec.BlocksFor(len(e.rec.Tokens)) {
			return fmt.Errorf("agent %q: %d hashes for %d tokens", id, len(e.rec.Hashes), len(e.rec.Tokens))
		}
		for _, h := range e.rec.Hashes {
			if _, ok := p.index[h]; !ok {
				return fmt.Errorf("agent %q points at block %s that is gone", id, h)
			}
			refs[h]++
		}
	}
	freeSeen := make([]bool, len(p.slots))
	for _, id := range p.free {
		if id < 0 || int(id) >= len(p.slots) || freeSeen[id] {
			return fmt.Errorf("free list: bad or duplicate id %d", id)
		}
		freeSeen[id] = true
	}
	lruN, memN := 0, 0
	for id := range p.slots {
		s := &p.slots[id]
		if s.holders != holders[id] {
			return fmt.Errorf("slot %d: holders %d, leases say %d", id, s.holders, holders[id])
		}
		if s.owner != owners[id] {
			return fmt.Errorf("slot %d: owner %d, leases say %d", id, s.owner, owners[id])
		}
		if s.indexed {
			if x, ok := p.index[s.hash]; !ok || x != int32(id) {
				return fmt.Errorf("slot %d: indexed but index disagrees", id)
			}
			if !s.filled {
				return fmt.Errorf("slot %d: indexed but not filled", id)
			}
		}
		if s.refs != refs[s.hash] && s.indexed || !s.indexed && s.refs != 0 {
			return fmt.Errorf("slot %d: refs %d, agent records say %d", id, s.refs, refs[s.hash])
		}
		if s.filled && s.file == "" {
			return fmt.Errorf("slot %d: filled without a block file", id)
		}
		switch s.state {
		case stateFree:
			nf++
			if !freeSeen[id] || s.filled || s.indexed || s.holders != 0 || s.payload != nil || s.file != "" || s.onDisk || s.inLRU || s.inMem || s.writing {
				return fmt.Errorf("slot %d: free but not clean", id)
			}
		case stateLeased:
			nl++
			if freeSeen[id] || s.holders == 0 || s.inLRU {
				return fmt.Errorf("slot %d: leased but holders %d / in free list / in LRU", id, s.holders)
			}
		case stateCached:
			nc++
			if freeSeen[id] || s.holders != 0 || !s.filled || !s.indexed || s.writing {
				return fmt.Errorf("slot %d: cached but not a resting filled indexed block", id)
			}
			if s.inLRU != (s.refs == 0) {
				return fmt.Errorf("slot %d: cached with refs %d but inLRU=%v", id, s.refs, s.inLRU)
			}
		}
		if s.inLRU {
			lruN++
		}
		if s.inMem {
			memN++
			memBytes += int64(len(s.payload))
		} else if s.payload != nil {
			return fmt.Errorf("slot %d: payload outside the memory list", id)
		}
		if s.onDisk {
			dskBytes += bb
		}
	}
	for h, id := range p.index {
		if !p.slots[id].indexed || p.slots[id].hash != h {
			return fmt.Errorf("index %s -> slot %d that does not hold it", h, id)
		}
	}
	if nf+nl+nc != len(p.slots) || nf != p.nFree || nl != p.nLeased || nc != p.nCached || len(p.free) != nf {
		return fmt.Errorf("counts: free %d/%d leased %d/%d cached %d/%d capacity %d free list %d",
			nf, p.nFree, nl, p.nLeased, nc, p.nCached, len(p.slots), len(p.free))
	}
	if err := checkList(&p.lru, lruN, func(id int32) bool { return p.slots[id].inLRU }); err != nil {
		return fmt.Errorf("lru: %w", err)
	}
	if err := checkList(&p.mem, memN, func(id int32) bool { return p.slots[id].inMem }); err != nil {
		return fmt.Errorf("mem list: %w", err)
	}
	if memBytes != p.memBytes || dskBytes != p.dskBytes {
		return fmt.Errorf("tier bytes: memory %d/%d disk %d/%d", memBytes, p.memBytes, dskBytes, p.dskBytes)
	}
	if p.opt.MemoryBudget > 0 && p.memBytes > p.opt.MemoryBudget {
		return fmt.Errorf("memory %d over budget %d", p.memBytes, p.opt.MemoryBudget)
	}
	return nil
}

func checkList(l *ilist, want int, member func(int32) bool) error {
	n := 0
	prev := int32(-1)
	for id := l.head; id >= 0; id = l.get(id).next {
		if l.get(id).prev != prev || !member(id) {
			return fmt.Errorf("broken at %d", id)
		}
		prev = id
		if n++; n > want {
			return fmt.Errorf("longer than %d", want)
		}
	}
	if n != want || l.n != want || l.tail != prev {
		return fmt.Errorf("length %d, counter %d, members %d", n, l.n, want)
	}
	return nil
}
