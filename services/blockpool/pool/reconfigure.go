package pool

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	storagev1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/storage/v1"
	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/services/blockpool/internal/blockfile"
	"github.com/semantic-kv/semantic/services/blockpool/internal/storage"
	bolt "go.etcd.io/bbolt"
)

// Reconfigured reports what a Reconfigure did.
type Reconfigured struct {
	DroppedBlocks, DroppedAgents int
}

// Reconfigure sets the spec and capacity (0 keeps the current one). It is
// refused (ErrLeasesActive) while any lease is active. A different spec drops
// every cached block and agent; a smaller capacity drops unreferenced cached
// blocks, then least-recently-used agents, until the cached blocks fit.
func (p *Pool) Reconfigure(ctx context.Context, spec kvspec.Spec, capacity int) (Reconfigured, error) {
	var r Reconfigured
	if err := spec.Validate(); err != nil {
		fe, _ := err.(*kvspec.FieldError)
		if fe != nil {
			return r, argErr("spec."+fe.Field, "%s", fe.Reason)
		}
		return r, argErr("spec", "%v", err)
	}
	if capacity < 0 {
		return r, argErr("capacity_blocks", "must not be negative")
	}
	p.lock()
	if p.closed {
		p.mu.Unlock()
		return r, ErrClosed
	}
	if len(p.leases) > 0 {
		n := len(p.leases)
		p.mu.Unlock()
		return r, fmt.Errorf("%w (%d)", ErrLeasesActive, n)
	}
	if capacity == 0 {
		capacity = len(p.slots)
	}
	ps := &persistSet{meta: true}
	var files []string
	sameSpec := p.spec != nil && *p.spec == spec
	if !sameSpec {
		for _, e := range p.agents {
			p.removeAgent(e, ps)
			r.DroppedAgents++
		}
	}
	for p.nCached > capacity || !sameSpec && p.nCached > 0 {
		if p.lru.n == 0 {
			e := p.agentLRU.Front()
			p.removeAgent(e.Value.(*agentEntry), ps)
			r.DroppedAgents++
			continue
		}
		files = append(files, p.freeSlot(p.lru.head))
		r.DroppedBlocks++
	}
	s := spec
	p.spec = &s
	p.rebuild(capacity)
	p.mu.Unlock()
	p.removeFiles(files)
	return r, p.persist(context.WithoutCancel(ctx), ps)
}

// rebuild renumbers the slots into a pool of n (no lease is active, so ids
// are free to change), keeping cached blocks and the LRU orders.
func (p *Pool) rebuild(n int) {
	old := p.slots
	var lruOrder, memOrder []int32
	for id := p.lru.head; id >= 0; id = old[id].lru.next {
		lruOrder = append(lruOrder, id)
	}
	for id := p.mem.head; id >= 0; id = old[id].mem.next {
		memOrder = append(memOrder, id)
	}
	newID := map[int32]int32{}
	p.buildSlots(n)
	p.index = map[kvspec.Hash]int32{}
	p.memBytes, p.dskBytes = 0, 0
	for oid := range old {
		s := old[oid]
		if s.state != stateCached {
			continue
		}
		id := p.takeFree()
		newID[int32(oid)] = id
		s.inLRU, s.inMem, s.lru, s.mem = false, false, links{-1, -1}, links{-1, -1}
		p.slots[id] = s
		p.slots[id].state = stateFree
		p.setState(id, stateCached)
		p.index[s.hash] = id
		p.dskBytes += int64(p.spec.BlockBytes())
	}
	for _, oid := range lruOrder {
		id := newID[oid]
		p.lru.pushBack(id)
		p.slots[id].inLRU = true
	}
	for _, oid := range memOrder {
		if id, ok := newID[oid]; ok {
			p.slots[id].inMem = true
			p.mem.pushBack(id)
			p.memBytes += int64(len(p.slots[id].payload))
		}
	}
}

// recover loads bbolt and the block files into memory (see docs/blockpool.md,
// "Recovery"): bump the epoch; keep the stored spec unless Options.Spec
// differs (then drop every stored block); check that every referenced block
// file exists; trim each agent to its longest intact prefix (or drop it);
// drop the least-recently-used agents if the blocks do not fit the capacity;
// recompute reference counts; write it all back in one transaction; then
// delete orphan and temporary block files. Checksums are verified lazily, on
// first read.
func (p *Pool) recover(meta *storagev1.Meta) error {
	p.epoch = meta.GetEpoch() + 1
	stored := specFromStored(meta.GetSpec())
	spec := p.opt.Spec
	if spec == nil {
		spec = stored
	}
	capacity := p.opt.Capacity
	if capacity <= 0 {
		capacity = int(meta.GetCapacityBlocks())
	}
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	if spec != nil {
		s := *spec
		p.spec = &s
	}
	p.buildSlots(capacity)

	blocks := map[kvspec.Hash]*storagev1.BlockValue{}
	var agents []*storagev1.AgentValue
	err := p.db.View(func(tx *bolt.Tx) error {
		if err := storage.ForEachBlock(tx, func(h []byte, v *storagev1.BlockValue) error {
			if hh, err := kvspec.HashFromBytes(h); err == nil {
				blocks[hh] = v
			}
			return nil
		}); err != nil {
			return err
		}
		return storage.ForEachAgent(tx, func(a *storagev1.AgentValue) error {
			agents = append(agents, a)
			return nil
		})
	})
	if err != nil {
		return err
	}
	keepStored := p.spec != nil && stored != nil && *p.spec == *stored
	present := map[kvspec.Hash]bool{}
	if keepStored {
		bb := int64(p.spec.BlockBytes())
		for h, v := range blocks {
			if v.File == "" || strings.ContainsAny(v.File, `/\`) || v.Size != uint64(bb) {
				continue
			}
			fi, err := os.Stat(filepath.Join(p.blkDir, v.File))
			present[h] = err == nil && fi.Mode().IsRegular() && fi.Size() > bb
		}
	}
	// Most recently used first: when capacity is short, the oldest go.
	slices.SortFunc(agents, func(a, b *storagev1.AgentValue) int {
		return -cmpInt64(a.LastUsedUnixNano, b.LastUsedUnixNano)
	})
	type kept struct {
		rec      *agentRec
		lastUsed int64
	}
	var keptAgents []kept
	used := map[kvspec.Hash]bool{}
	trimmed, dropped := 0, 0
	for _, a := range agents {
		rec, ok := p.agentFromStored(a, present)
		if !ok {
			dropped++
			continue
		}
		if len(rec.Hashes) != len(a.BlockHashes) {
			trimmed++
		}
		extra := 0
		for _, h := range rec.Hashes {
			if !used[h] {
				extra++
			}
		}
		if len(used)+extra > capacity {
			dropped++
			continue
		}
		for _, h := range rec.Hashes {
			used[h] = true
		}
		keptAgents = append(keptAgents, kept{rec, a.LastUsedUnixNano})
	}
	// Build the in-memory state: kept blocks are cached, on disk only.
	keepFiles := map[string]bool{}
	for h := range used {
		v := blocks[h]
		id := p.takeFree()
		s := &p.slots[id]
		s.filled, s.indexed, s.onDisk = true, true, true
		s.hash, s.tokens, s.checksum, s.file = h, v.TokenCount, v.Checksum, v.File
		if ph, err := kvspec.HashFromBytes(v.ParentHash); err == nil {
			s.parent = ph
		}
		p.setState(id, stateCached)
		p.index[h] = id
		p.dskBytes += int64(p.spec.BlockBytes())
		keepFiles[v.File] = true
	}
	for i := len(keptAgents) - 1; i >= 0; i-- { // least recent first into the LRU
		k := keptAgents[i]
		e := &agentEntry{rec: k.rec, lastUsed: unixNano(k.lastUsed)}
		e.elem = p.agentLRU.PushBack(e)
		p.agents[k.rec.ID] = e
		for _, h := range k.rec.Hashes {
			p.slots[p.index[h]].refs++
		}
	}
	// One transaction writes the recovered state back.
	err = p.db.Update(func(tx *bolt.Tx) error {
		for _, a := range agents {
			if err := storage.DeleteAgent(tx, a.AgentId); err != nil {
				return err
			}
		}
		for h := range blocks {
			if err := storage.DeleteBlock(tx, h[:]); err != nil {
				return err
			}
		}
		for _, e := range p.agents {
			if err := storage.PutAgent(tx, agentValue(e.rec, e.lastUsed)); err != nil {
				return err
			}
		}
		for h, id := range p.index {
			s := &p.slots[id]
			v := &storagev1.BlockValue{RefCount: uint32(s.refs), TokenCount: s.tokens, Checksum: s.checksum,
				Tier: storagev1.BlockTier_BLOCK_TIER_DISK, File: s.file, Size: uint64(p.spec.BlockBytes())}
			if !s.parent.IsZero() {
				v.ParentHash = append([]byte(nil), s.parent[:]...)
			}
			if err := storage.PutBlock(tx, h[:], v); err != nil {
				return err
			}
		}
		return storage.PutMeta(tx, p.metaLocked())
	})
	if err != nil {
		return err
	}
	// Orphans: block files no record names, and temporaries of writes that
	// were in flight when the process died.
	ents, err := os.ReadDir(p.blkDir)
	if err != nil {
		return err
	}
	orphans := 0
	for _, de := range ents {
		if keepFiles[de.Name()] {
			continue
		}
		if strings.HasSuffix(de.Name(), ".blk") || strings.HasSuffix(de.Name(), blockfile.TmpSuffix) {
			os.Remove(filepath.Join(p.blkDir, de.Name()))
			orphans++
		}
	}
	p.log.Info("pool recovered", "epoch", p.epoch, "agents", len(p.agents), "blocks", len(p.index),
		"agents_trimmed", trimmed, "agents_dropped", dropped, "orphan_files_removed", orphans, "capacity", capacity)
	return nil
}

// agentFromStored validates a stored agent against the spec and trims it to
// its longest prefix of present blocks; ok is false if nothing is left.
func (p *Pool) agentFromStored(a *storagev1.AgentValue, present map[kvspec.Hash]bool) (*agentRec, bool) {
	if p.spec == nil || a.ModelTag != p.spec.ModelTag || len(a.TokenIds) == 0 ||
		len(a.BlockHashes) != p.spec.BlocksFor(len(a.TokenIds)) {
		return nil, false
	}
	r := &agentRec{ID: a.AgentId, ModelTag: a.ModelTag, Salt: a.CacheSalt, Version: a.Version, Created: unixNano(a.CreateUnixNano)}
	for _, hb := range a.BlockHashes {
		h, err := kvspec.HashFromBytes(hb)
		if err != nil || !present[h] {
			break
		}
		r.Hashes = append(r.Hashes, h)
	}
	if len(r.Hashes) == 0 {
		return nil, false
	}
	if len(r.Hashes) < len(a.BlockHashes) {
		r.Tokens = slices.Clone(a.TokenIds[:len(r.Hashes)*p.spec.TokensPerBlock])
		r.Version++
	} else {
		r.Tokens = a.TokenIds
	}
	return r, true
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
