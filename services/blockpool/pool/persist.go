package pool

import (
	"context"
	"errors"
	"time"

	storagev1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/storage/v1"
	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/services/blockpool/internal/storage"
	bolt "go.etcd.io/bbolt"
)

// persistSet names the keys whose in-memory state must reach bbolt.
//
// Persistence writes the *current* in-memory state of those keys, read under
// the pool lock inside the bbolt transaction, not a snapshot taken when the
// change was made. bbolt runs write transactions one at a time, so whatever
// order concurrent persist calls commit in, the last transaction to touch a
// key writes its latest state: no per-key ordering is needed, and the batch
// function is idempotent as db.Batch requires. A caller returns only after its
// transaction committed, so an acknowledged change is durable (or superseded
// by a later state that is).
type persistSet struct {
	agents map[string]struct{}
	blocks map[kvspec.Hash]struct{}
	meta   bool
}

func (ps *persistSet) agent(id string) {
	if ps.agents == nil {
		ps.agents = map[string]struct{}{}
	}
	ps.agents[id] = struct{}{}
}

func (ps *persistSet) block(h kvspec.Hash) {
	if ps.blocks == nil {
		ps.blocks = map[kvspec.Hash]struct{}{}
	}
	ps.blocks[h] = struct{}{}
}

func (ps *persistSet) empty() bool {
	return ps == nil || len(ps.agents) == 0 && len(ps.blocks) == 0 && !ps.meta
}

type agentSnap struct {
	id       string
	rec      *agentRec // nil: delete
	lastUsed time.Time
}

type blockSnap struct {
	hash kvspec.Hash
	val  *storagev1.BlockValue // nil: delete
}

// persist commits the current state of ps's keys through db.Batch, so that
// concurrent commits share one fsync.
func (p *Pool) persist(ctx context.Context, ps *persistSet) error {
	if ps.empty() {
		return nil
	}
	if err := p.withLock(func() error {
		if p.closed {
			return ErrClosed
		}
		p.wg.Add(1)
		return nil
	}); err != nil {
		return err
	}
	defer p.wg.Done()
	t := time.Now()
	// A lone writer commits at once (db.Update): db.Batch would make it wait
	// MaxBatchDelay for company that is not coming. When other persists are
	// in flight, db.Batch coalesces them into one transaction and one fsync.
	commit := p.db.Batch
	if p.persisting.Add(1) == 1 {
		commit = p.db.Update
	}
	defer p.persisting.Add(-1)
	err := commit(func(tx *bolt.Tx) error {
		agents, blocks, meta, ver := p.snapshot(ps)
		if len(agents) > 0 {
			if err := storage.PutAgentVersion(tx, ver); err != nil {
				return err
			}
		}
		for _, a := range agents {
			if a.rec == nil {
				if err := storage.DeleteAgent(tx, a.id); err != nil {
					return err
				}
				continue
			}
			if err := storage.PutAgent(tx, agentValue(a.rec, a.lastUsed)); err != nil {
				return err
			}
		}
		for _, b := range blocks {
			if b.val == nil {
				if err := storage.DeleteBlock(tx, b.hash[:]); err != nil {
					return err
				}
				continue
			}
			if err := storage.PutBlock(tx, b.hash[:], b.val); err != nil {
				return err
			}
		}
		if meta != nil {
			return storage.PutMeta(tx, meta)
		}
		return nil
	})
	p.m.commitLatency.Record(ctx, since(t))
	return err
}

// persistBestEffort persists a side effect (an eviction, a trim) that the
// caller's own result does not depend on. A failure is logged: memory is the
// truth until the next restart, and recovery copes with whatever reached disk.
func (p *Pool) persistBestEffort(ctx context.Context, ps *persistSet) {
	if err := p.persist(context.WithoutCancel(ctx), ps); err != nil && !errors.Is(err, ErrClosed) {
		p.log.Warn("persisting pool state failed", "err", err)
	}
}

// snapshot reads the state to persist under the lock; marshalling happens
// after (agent records are immutable, so holding the pointer is enough).
func (p *Pool) snapshot(ps *persistSet) (agents []agentSnap, blocks []blockSnap, meta *storagev1.Meta, agentVer uint64) {
	_ = p.withLock(func() error {
		agents, blocks, meta = p.snapshotLocked(ps)
		agentVer = p.agentVer
		return nil
	})
	return agents, blocks, meta, agentVer
}

func (p *Pool) snapshotLocked(ps *persistSet) ([]agentSnap, []blockSnap, *storagev1.Meta) {
	agents := make([]agentSnap, 0, len(ps.agents))
	for id := range ps.agents {
		a := agentSnap{id: id}
		if e := p.agents.get(id); e != nil {
			a.rec, a.lastUsed = e.rec, e.lastUsed
		}
		agents = append(agents, a)
	}
	blocks := make([]blockSnap, 0, len(ps.blocks))
	for h := range ps.blocks {
		b := blockSnap{hash: h}
		// Only blocks an agent references are stored: the others are a
		// cache that does not need to survive a restart.
		if id, ok := p.slots.index[h]; ok && p.slots.slots[id].refs > 0 {
			b.val = p.blockValueLocked(id)
		}
		blocks = append(blocks, b)
	}
	var meta *storagev1.Meta
	if ps.meta {
		meta = p.metaLocked()
	}
	return agents, blocks, meta
}

// blockValueLocked is the stored form of an indexed slot.
func (p *Pool) blockValueLocked(id int32) *storagev1.BlockValue {
	s := &p.slots.slots[id]
	v := &storagev1.BlockValue{
		RefCount: uint32(s.refs), TokenCount: s.tokens, Checksum: s.checksum,
		Tier: storagev1.BlockTier_BLOCK_TIER_DISK, File: s.file, Size: uint64(p.slots.blockBytes),
	}
	if !s.parent.IsZero() {
		v.ParentHash = append([]byte(nil), s.parent[:]...)
	}
	return v
}

func (p *Pool) metaLocked() *storagev1.Meta {
	m := &storagev1.Meta{
		SchemaVersion: storage.SchemaVersion, Epoch: p.epoch,
		CapacityBlocks: uint32(len(p.slots.slots)), NodeId: p.nodeID,
	}
	if p.spec != nil {
		m.Spec = specToStored(*p.spec)
	}
	return m
}

func agentValue(r *agentRec, lastUsed time.Time) *storagev1.AgentValue {
	v := &storagev1.AgentValue{
		AgentId: r.ID, ModelTag: r.ModelTag, CacheSalt: r.Salt, Version: r.Version,
		TokenIds: r.Tokens, LastUsedUnixNano: lastUsed.UnixNano(), CreateUnixNano: r.Created.UnixNano(),
		BlockHashes: make([][]byte, len(r.Hashes)),
	}
	for i := range r.Hashes {
		v.BlockHashes[i] = r.Hashes[i][:]
	}
	return v
}

func specToStored(s kvspec.Spec) *storagev1.StoredSpec {
	return &storagev1.StoredSpec{
		Layers: uint32(s.Layers), KvHeads: uint32(s.KVHeads), HeadDim: uint32(s.HeadDim),
		TokensPerBlock: uint32(s.TokensPerBlock), Dtype: uint32(s.DType), ModelTag: s.ModelTag,
	}
}

func specFromStored(s *storagev1.StoredSpec) *kvspec.Spec {
	if s == nil {
		return nil
	}
	sp := kvspec.Spec{
		Layers: int(s.Layers), KVHeads: int(s.KvHeads), HeadDim: int(s.HeadDim),
		TokensPerBlock: int(s.TokensPerBlock), DType: kvspec.DType(s.Dtype), ModelTag: s.ModelTag,
	}
	if sp.Validate() != nil {
		return nil
	}
	return &sp
}
