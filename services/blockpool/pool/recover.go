package pool

import (
	"cmp"
	"os"
	"path/filepath"
	"slices"
	"strings"

	storagev1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/storage/v1"
	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/progress"
	"github.com/semantic-kv/semantic/services/blockpool/internal/blockfile"
	"github.com/semantic-kv/semantic/services/blockpool/internal/storage"
	bolt "go.etcd.io/bbolt"
)

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
	if capacity > p.opt.MaxCapacity {
		// A stored capacity above a lowered maximum: shrink to it (agents
		// that no longer fit are dropped below).
		p.log.Warn("stored capacity exceeds the maximum; using the maximum", "stored", capacity, "max", p.opt.MaxCapacity)
		capacity = p.opt.MaxCapacity
	}
	if spec != nil {
		p.setSpecLocked(*spec, capacity, false)
	} else {
		p.slots.build(capacity, 0)
	}

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
	// Versions never repeat: continue from the stored counter, and above
	// every stored record's version (a database from before the counter).
	if err := p.db.View(func(tx *bolt.Tx) error {
		p.agentVer = storage.AgentVersion(tx)
		return nil
	}); err != nil {
		return err
	}
	for _, a := range agents {
		p.agentVer = max(p.agentVer, a.Version)
	}
	keepStored := p.spec != nil && stored != nil && *p.spec == *stored
	present := map[kvspec.Hash]bool{}
	// With many agents this is the long part (a stat per block file): an
	// operator sees it move, and how long it took.
	rep := progress.New(p.log, "recovering pool: checking block files", int64(len(blocks)), "blocks")
	if keepStored {
		bb := int64(p.spec.BlockBytes())
		for h, v := range blocks {
			rep.Add(1)
			if v.File == "" || strings.ContainsAny(v.File, `/\`) || v.Size != uint64(bb) {
				continue
			}
			fi, err := os.Stat(filepath.Join(p.blkDir, v.File))
			present[h] = err == nil && fi.Mode().IsRegular() && fi.Size() > bb
		}
	}
	rep.Done("agents_stored", len(agents))
	// Most recently used first: when capacity is short, the oldest go.
	slices.SortFunc(agents, func(a, b *storagev1.AgentValue) int {
		return cmp.Compare(b.LastUsedUnixNano, a.LastUsedUnixNano)
	})
	type kept struct {
		rec      *agentRec
		lastUsed int64
	}
	var keptAgents []kept
	used := map[kvspec.Hash]bool{}
	trimmed, dropped := 0, 0
	var keptBytes int64
	for _, a := range agents {
		rec, ok := p.agentFromStored(a, present)
		if !ok {
			dropped++
			continue
		}
		// The bounds on agents (possibly lowered since): the oldest go.
		if len(keptAgents) >= p.opt.MaxAgents || keptBytes+recBytes(rec) > p.opt.MaxAgentBytes {
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
		keptBytes += recBytes(rec)
	}
	// Build the in-memory state: kept blocks are cached, on disk only.
	// Nothing else can reach the pool yet, so no lock is needed.
	t := &p.slots
	keepFiles := map[string]bool{}
	for h := range used {
		v := blocks[h]
		var parent kvspec.Hash
		if ph, err := kvspec.HashFromBytes(v.ParentHash); err == nil {
			parent = ph
		}
		t.addStored(h, parent, v.TokenCount, v.Checksum, v.File)
		keepFiles[v.File] = true
	}
	for i := len(keptAgents) - 1; i >= 0; i-- { // least recent first into the LRU
		k := keptAgents[i]
		p.agents.add(k.rec, unixNano(k.lastUsed))
		for _, h := range k.rec.Hashes {
			t.slots[t.index[h]].refs++
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
		for e := range p.agents.all() {
			if err := storage.PutAgent(tx, agentValue(e.rec, e.lastUsed)); err != nil {
				return err
			}
		}
		for h, id := range t.index {
			if err := storage.PutBlock(tx, h[:], p.blockValueLocked(id)); err != nil {
				return err
			}
		}
		if err := storage.PutAgentVersion(tx, p.agentVer); err != nil {
			return err
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
	p.log.Info("pool recovered", "epoch", p.epoch, "agents", p.agents.len(), "blocks", len(t.index),
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
	if len(r.Hashes) < len(a.BlockHashes) || r.Version == 0 {
		r.Tokens = slices.Clone(a.TokenIds[:len(r.Hashes)*p.spec.TokensPerBlock])
		r.Version = p.nextVersionLocked()
	} else {
		r.Tokens = a.TokenIds
	}
	return r, true
}
