package pool

import (
	"fmt"

	"github.com/semantic-kv/semantic/pkg/kvspec"
)

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
	indexed  bool // the index maps hash to this slot
	writing  bool // a BlockWrite is filling it
	onDisk   bool // its block bytes are counted in dskBytes (file written or reserved)
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

// slotTable is every block of the pool: its state, the free list, the
// content-hash index, the eviction order of unreferenced cached blocks, and
// the memory and disk tiers' accounting. Like the other tables it is guarded
// by the pool lock; it knows nothing of leases and agents beyond the holder,
// owner and reference counts they keep in each slot.
type slotTable struct {
	slots                   []slot
	free                    []int32
	nFree, nLeased, nCached int
	index                   map[kvspec.Hash]int32
	lru                     ilist // cached, unreferenced: eviction order
	mem                     ilist // payloads in memory: memory-tier eviction order
	memBytes, dskBytes      int64
	memBudget               int64 // 0: unlimited; negative: no memory tier
	blockBytes              int64 // the spec's block size; 0 while unconfigured
}

// build makes n free slots of blockBytes each, and an empty index.
func (t *slotTable) build(n int, blockBytes int64) {
	t.slots = make([]slot, n)
	t.free = make([]int32, 0, n)
	t.index = map[kvspec.Hash]int32{}
	t.lru = newList(func(id int32) *links { return &t.slots[id].lru })
	t.mem = newList(func(id int32) *links { return &t.slots[id].mem })
	for i := n - 1; i >= 0; i-- {
		t.slots[i] = slot{lru: links{-1, -1}, mem: links{-1, -1}}
		t.free = append(t.free, int32(i))
	}
	t.nFree, t.nLeased, t.nCached = n, 0, 0
	t.memBytes, t.dskBytes = 0, 0
	t.blockBytes = blockBytes
}

// rebuild renumbers the slots into a table of n (no lease may be active, so
// ids are free to change), keeping the cached blocks and both LRU orders.
func (t *slotTable) rebuild(n int, blockBytes int64) {
	old := t.slots
	var lruOrder, memOrder []int32
	for id := t.lru.head; id >= 0; id = old[id].lru.next {
		lruOrder = append(lruOrder, id)
	}
	for id := t.mem.head; id >= 0; id = old[id].mem.next {
		memOrder = append(memOrder, id)
	}
	newID := map[int32]int32{}
	t.build(n, blockBytes)
	for oid := range old {
		s := old[oid]
		if s.state != stateCached {
			continue
		}
		id := t.takeFree()
		newID[int32(oid)] = id
		s.inLRU, s.inMem, s.lru, s.mem = false, false, links{-1, -1}, links{-1, -1}
		t.slots[id] = s
		t.slots[id].state = stateFree
		t.setState(id, stateCached)
		t.index[s.hash] = id
		t.dskBytes += blockBytes
	}
	for _, oid := range lruOrder {
		id := newID[oid]
		t.lru.pushBack(id)
		t.slots[id].inLRU = true
	}
	for _, oid := range memOrder {
		if id, ok := newID[oid]; ok {
			t.slots[id].inMem = true
			t.mem.pushBack(id)
			t.memBytes += int64(len(t.slots[id].payload))
		}
	}
}

func (t *slotTable) setState(id int32, to state) {
	s := &t.slots[id]
	*t.counter(s.state)--
	s.state = to
	*t.counter(to)++
}

func (t *slotTable) counter(st state) *int {
	switch st {
	case stateLeased:
		return &t.nLeased
	case stateCached:
		return &t.nCached
	}
	return &t.nFree
}

// hold adds a lease holder to a free or cached slot (or one already leased).
func (t *slotTable) hold(id int32) {
	s := &t.slots[id]
	if s.inLRU {
		t.lru.remove(id)
		s.inLRU = false
	}
	s.holders++
	if s.state != stateLeased {
		t.setState(id, stateLeased)
	}
}

// settle puts a slot that no lease holds any more in its resting state:
// cached if it holds an indexed payload, free otherwise. It returns the block
// file to delete, if any (the caller deletes it after unlocking).
func (t *slotTable) settle(id int32) (file string) {
	s := &t.slots[id]
	if s.holders > 0 {
		return ""
	}
	if s.filled && s.indexed {
		t.setState(id, stateCached)
		t.makeEvictable(id)
		return ""
	}
	return t.release(id)
}

// makeEvictable puts a cached slot that no agent references at the back of
// the eviction order.
func (t *slotTable) makeEvictable(id int32) {
	if s := &t.slots[id]; s.state == stateCached && s.refs == 0 && !s.inLRU {
		t.lru.pushBack(id)
		s.inLRU = true
	}
}

// makeUnevictable takes a slot out of the eviction order (an agent references
// it, or it is being dropped).
func (t *slotTable) makeUnevictable(id int32) {
	if s := &t.slots[id]; s.inLRU {
		t.lru.remove(id)
		s.inLRU = false
	}
}

// release returns a slot to the free list, dropping its payload reference (a
// freed block never keeps its KV alive), its index entry and its disk
// accounting. It returns the file to delete.
func (t *slotTable) release(id int32) (file string) {
	s := &t.slots[id]
	if s.indexed {
		delete(t.index, s.hash)
	}
	if s.inLRU {
		t.lru.remove(id)
	}
	t.dropMem(id)
	if s.onDisk {
		t.dskBytes -= t.blockBytes
	}
	file = s.file
	gen := s.gen + 1
	*s = slot{state: s.state, gen: gen, lru: links{-1, -1}, mem: links{-1, -1}}
	t.setState(id, stateFree)
	t.free = append(t.free, id)
	return file
}

// evictOldest frees the least recently used unreferenced cached slot and
// returns its file; the eviction order must not be empty.
func (t *slotTable) evictOldest() (file string) { return t.release(t.lru.head) }

// unfill drops a held slot's content (payload, file, hash) but keeps it
// leased, so that its holder can write it again. It returns the file.
func (t *slotTable) unfill(id int32) (file string) {
	s := &t.slots[id]
	t.dropMem(id)
	if s.onDisk {
		t.dskBytes -= t.blockBytes
	}
	file = s.file
	s.onDisk, s.filled, s.verified, s.file = false, false, false, ""
	s.hash, s.parent, s.tokens, s.checksum = kvspec.Hash{}, kvspec.Hash{}, 0, 0
	s.gen++
	return file
}

// fill ends a slot's write: it now holds a durable, verified payload in file,
// which also goes to the memory tier. It returns how many payloads that
// evicted from memory.
func (t *slotTable) fill(id int32, hash, parent kvspec.Hash, tokens int, checksum uint32, file string, payload []byte) (evicted int) {
	s := &t.slots[id]
	s.writing, s.filled, s.verified = false, true, true
	s.hash, s.parent = hash, parent
	s.tokens, s.checksum = uint32(tokens), checksum
	s.file = file
	s.gen++
	return t.addMem(id, payload)
}

// addStored takes a free slot for a block recovered from storage: cached,
// indexed, its payload on disk only (verified on first read).
func (t *slotTable) addStored(hash, parent kvspec.Hash, tokens, checksum uint32, file string) {
	id := t.takeFree()
	s := &t.slots[id]
	s.filled, s.indexed, s.onDisk = true, true, true
	s.hash, s.parent, s.tokens, s.checksum, s.file = hash, parent, tokens, checksum, file
	t.setState(id, stateCached)
	t.index[hash] = id
	t.dskBytes += t.blockBytes
}

// dropMem releases a slot's in-memory payload (the file stays).
func (t *slotTable) dropMem(id int32) {
	s := &t.slots[id]
	if s.inMem {
		t.mem.remove(id)
		s.inMem = false
		t.memBytes -= int64(len(s.payload))
	}
	s.payload = nil
}

// addMem puts a payload in the memory tier and evicts least-recently-used
// payloads (never files) until the memory budget holds. It returns how many
// payloads it evicted.
func (t *slotTable) addMem(id int32, payload []byte) (evicted int) {
	if t.memBudget < 0 {
		// No memory tier: every payload is read from its file.
		return 0
	}
	s := &t.slots[id]
	t.dropMem(id)
	s.payload = payload
	s.inMem = true
	t.mem.pushBack(id)
	t.memBytes += int64(len(payload))
	for t.memBudget > 0 && t.memBytes > t.memBudget && t.mem.n > 0 {
		t.dropMem(t.mem.head)
		evicted++
	}
	return evicted
}

// dropAllMem evicts every payload from memory (files stay).
func (t *slotTable) dropAllMem() {
	for t.mem.n > 0 {
		t.dropMem(t.mem.head)
	}
}

// reserveDisk counts a block about to be written in the disk tier.
func (t *slotTable) reserveDisk(id int32) {
	t.slots[id].onDisk = true
	t.dskBytes += t.blockBytes
}

// unreserveDisk undoes reserveDisk for a write that did not complete.
func (t *slotTable) unreserveDisk(id int32) {
	s := &t.slots[id]
	s.writing = false
	s.onDisk = false
	t.dskBytes -= t.blockBytes
}

func (t *slotTable) takeFree() int32 {
	id := t.free[len(t.free)-1]
	t.free = t.free[:len(t.free)-1]
	return id
}

// check verifies the table's own invariants: every slot in exactly one state
// and clean for it, the counters, the free list, the index, both lists, the
// tiers' byte accounting and the memory budget. What leases and agents say
// about holders, owners and references is Pool.checkLocked's to compare.
func (t *slotTable) check() error {
	var nf, nl, nc, lruN, memN int
	var memBytes, dskBytes int64
	freeSeen := make([]bool, len(t.slots))
	for _, id := range t.free {
		if id < 0 || int(id) >= len(t.slots) || freeSeen[id] {
			return fmt.Errorf("free list: bad or duplicate id %d", id)
		}
		freeSeen[id] = true
	}
	for id := range t.slots {
		s := &t.slots[id]
		if s.indexed {
			if x, ok := t.index[s.hash]; !ok || x != int32(id) {
				return fmt.Errorf("slot %d: indexed but index disagrees", id)
			}
			if !s.filled {
				return fmt.Errorf("slot %d: indexed but not filled", id)
			}
		} else if s.refs != 0 {
			return fmt.Errorf("slot %d: %d references but not indexed", id, s.refs)
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
			dskBytes += t.blockBytes
		}
	}
	for h, id := range t.index {
		if !t.slots[id].indexed || t.slots[id].hash != h {
			return fmt.Errorf("index %s -> slot %d that does not hold it", h, id)
		}
	}
	if nf+nl+nc != len(t.slots) || nf != t.nFree || nl != t.nLeased || nc != t.nCached || len(t.free) != nf {
		return fmt.Errorf("counts: free %d/%d leased %d/%d cached %d/%d capacity %d free list %d",
			nf, t.nFree, nl, t.nLeased, nc, t.nCached, len(t.slots), len(t.free))
	}
	if err := checkList(&t.lru, lruN, func(id int32) bool { return t.slots[id].inLRU }); err != nil {
		return fmt.Errorf("lru: %w", err)
	}
	if err := checkList(&t.mem, memN, func(id int32) bool { return t.slots[id].inMem }); err != nil {
		return fmt.Errorf("mem list: %w", err)
	}
	if memBytes != t.memBytes || dskBytes != t.dskBytes {
		return fmt.Errorf("tier bytes: memory %d/%d disk %d/%d", memBytes, t.memBytes, dskBytes, t.dskBytes)
	}
	if t.memBudget > 0 && t.memBytes > t.memBudget {
		return fmt.Errorf("memory %d over budget %d", t.memBytes, t.memBudget)
	}
	return nil
}
