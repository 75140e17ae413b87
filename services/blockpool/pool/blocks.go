package pool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/services/blockpool/internal/blockfile"
)

// WriteHeader describes a block about to be written through a lease.
type WriteHeader struct {
	BlockID    uint32
	Hash       kvspec.Hash
	Parent     kvspec.Hash
	TokenCount int
	Checksum   uint32
	Size       int64
}

// BlockWrite is one block being written. The caller feeds it with Write and
// ends it with exactly one of Commit or Abort (Abort after Commit is a no-op,
// so `defer w.Abort()` is the idiom).
type BlockWrite struct {
	p       *Pool
	leaseID uint64
	id      int32
	gen     uint64
	h       WriteHeader
	spec    kvspec.Spec
	file    string
	buf     []byte
	n       int
	crc     uint32
	done    bool
}

// BeginWrite starts writing a block that the lease holds and that is not
// filled. It reserves the block's disk bytes (evicting unreferenced cached
// blocks, then least-recently-used agents, if the disk budget is short). Only
// the lease's holder may write through it (else ErrNotHolder).
func (p *Pool) BeginWrite(ctx context.Context, leaseID, epoch uint64, holder string, h WriteHeader) (*BlockWrite, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var (
		w     *BlockWrite
		ps    *persistSet
		files []string
	)
	err := p.withLock(func() (err error) {
		w, ps, files, err = p.beginWriteLocked(leaseID, epoch, holder, h)
		return err
	})
	// What making disk room dropped (only when the block then fits: a
	// refused write drops nothing).
	p.removeFiles(files)
	p.persistBestEffort(ctx, ps)
	if err != nil {
		return nil, err
	}
	w.buf = make([]byte, w.spec.BlockBytes())
	return w, nil
}

func (p *Pool) beginWriteLocked(leaseID, epoch uint64, holder string, h WriteHeader) (*BlockWrite, *persistSet, []string, error) {
	if p.spec == nil {
		return nil, nil, nil, ErrNotConfigured
	}
	spec := *p.spec
	bb := int64(spec.BlockBytes())
	if h.Size != bb {
		return nil, nil, nil, argErr("header.size", "must equal the spec's block size %d, got %d", bb, h.Size)
	}
	if h.TokenCount < 1 || h.TokenCount > spec.TokensPerBlock {
		return nil, nil, nil, argErr("header.token_count", "must be in 1..%d, got %d", spec.TokensPerBlock, h.TokenCount)
	}
	l, err := p.heldLeaseLocked(leaseID, epoch, holder)
	if err != nil {
		return nil, nil, nil, err
	}
	t := &p.slots
	id := int32(h.BlockID)
	if int(h.BlockID) >= len(t.slots) || !l.holds(id) {
		return nil, nil, nil, fmt.Errorf("%w: block %d is not held by lease %d", ErrBlockNotFound, h.BlockID, leaseID)
	}
	s := &t.slots[id]
	if s.filled || s.writing {
		return nil, nil, nil, ErrNotWritable
	}
	var ps *persistSet
	var files []string
	if b := p.opt.DiskBudget; b > 0 && t.dskBytes+bb > b {
		if ps, files, err = p.makeDiskRoomLocked(bb, l.agent); err != nil {
			return nil, ps, files, err
		}
	}
	s.writing = true
	t.reserveDisk(id)
	w := &BlockWrite{p: p, leaseID: leaseID, id: id, gen: s.gen, h: h, spec: spec, file: p.newFileNameLocked(h.Hash)}
	return w, ps, files, nil
}

// makeDiskRoomLocked frees disk for one block: unreferenced cached blocks
// first (LRU), then whole least-recently-used agents other than keep. Like
// makeRoomLocked it first decides, by simulation, whether the block will fit
// once everything that may go is gone: a refused write drops nothing.
func (p *Pool) makeDiskRoomLocked(bb int64, keep string) (*persistSet, []string, error) {
	t := &p.slots
	short := t.dskBytes + bb - p.opt.DiskBudget
	var gain int64
	for id := t.lru.head; id >= 0 && gain < short; id = t.slots[id].lru.next {
		if t.slots[id].onDisk {
			gain += t.blockBytes
		}
	}
	victims, freed := p.agentVictimsLocked(keep, func(n int) bool { return gain+int64(n)*t.blockBytes >= short },
		func(s *slot) bool { return s.onDisk })
	gain += int64(freed) * t.blockBytes
	if gain < short {
		return nil, nil, &ExhaustedError{Resource: "pool/disk", Asked: bb, Available: max(0, p.opt.DiskBudget-t.dskBytes) + gain}
	}
	ps := &persistSet{}
	for _, ae := range victims {
		p.removeAgentLocked(ae, ps)
	}
	var files []string
	for t.dskBytes+bb > p.opt.DiskBudget && t.lru.n > 0 {
		onDisk := t.slots[t.lru.head].onDisk
		files = append(files, t.evictOldest())
		if onDisk {
			p.m.evictions.Add(context.Background(), 1, tierDisk)
		}
	}
	if t.dskBytes+bb > p.opt.DiskBudget { // the simulation above says this cannot happen
		return ps, files, &ExhaustedError{Resource: "pool/disk", Asked: bb, Available: max(0, p.opt.DiskBudget-t.dskBytes)}
	}
	return ps, files, nil
}

// Write appends payload bytes (copied once into the block's buffer).
func (w *BlockWrite) Write(b []byte) error {
	if w.n+len(b) > len(w.buf) {
		return argErr("data", "block %d: more than header.size (%d) bytes", w.h.BlockID, len(w.buf))
	}
	copy(w.buf[w.n:], b)
	w.crc = kvspec.UpdateChecksum(w.crc, b)
	w.n += len(b)
	return nil
}

// Received is the number of payload bytes written so far.
func (w *BlockWrite) Received() int { return w.n }

// Commit verifies size and checksum, makes the block durable (tmp file,
// fsync, rename) and only then marks it filled. On any error the block stays
// unfilled and no file is left behind.
func (w *BlockWrite) Commit(ctx context.Context) error {
	if w.done {
		return errors.New("block write already ended")
	}
	if w.n != len(w.buf) {
		w.Abort()
		return argErr("data", "block %d: got %d of %d bytes", w.h.BlockID, w.n, len(w.buf))
	}
	if w.crc != w.h.Checksum {
		w.Abort()
		return fmt.Errorf("%w: block %d payload crc32c %08x, header says %08x", ErrChecksum, w.h.BlockID, w.crc, w.h.Checksum)
	}
	if err := ctx.Err(); err != nil {
		w.Abort()
		return err
	}
	p := w.p
	hdr := blockfile.Header{Checksum: w.crc, TokenCount: uint32(w.h.TokenCount), PayloadSize: uint64(len(w.buf)),
		Hash: w.h.Hash, Parent: w.h.Parent, Spec: w.spec}
	if err := blockfile.Write(p.blkDir, w.file, &hdr, w.buf, p.opt.NoSync); err != nil {
		w.Abort()
		return fmt.Errorf("write block file: %w", err)
	}
	w.done = true
	var evicted int
	err := p.withLock(func() error {
		t := &p.slots
		s := &t.slots[w.id]
		if s.gen != w.gen || !s.writing {
			// The lease ended while we wrote: the slot was freed (and its
			// disk reservation with it). Our file is garbage.
			return ErrLeaseNotFound
		}
		if _, err := p.activeLeaseLocked(w.leaseID, p.epoch); err != nil {
			t.unreserveDisk(w.id)
			return err
		}
		evicted = t.fill(w.id, w.h.Hash, w.h.Parent, w.h.TokenCount, w.crc, w.file, w.buf)
		return nil
	})
	if err != nil {
		p.removeFiles([]string{w.file})
		return err
	}
	p.recordMemEvictions(ctx, evicted)
	p.m.bytesWritten.Add(ctx, int64(len(w.buf)), tierDisk)
	p.m.bytesWritten.Add(ctx, int64(len(w.buf)), tierMemory)
	w.buf = nil
	return nil
}

// Abort gives up the write: the block stays unfilled and writable.
func (w *BlockWrite) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.buf = nil
	_ = w.p.withLock(func() error {
		if s := &w.p.slots.slots[w.id]; s.gen == w.gen && s.writing {
			w.p.slots.unreserveDisk(w.id)
		}
		return nil
	})
}

// BlockData is a filled block read through a lease. Payload is shared with
// the memory tier and must not be modified.
type BlockData struct {
	ID         uint32
	Hash       kvspec.Hash
	Parent     kvspec.Hash
	TokenCount int
	Checksum   uint32
	Payload    []byte
}

// ReadBlock returns a filled block the lease holds, from memory or else from
// its block file. A file that fails verification is never served: the block
// is dropped from the cache and from agent records, its slot stays leased and
// unfilled (writable), and the error wraps ErrDataLoss. Only the lease's
// holder may read through it (else ErrNotHolder).
func (p *Pool) ReadBlock(ctx context.Context, leaseID, epoch uint64, holder string, blockID uint32) (*BlockData, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var (
		d    *BlockData
		file string
		gen  uint64
		spec kvspec.Spec
	)
	id := int32(blockID)
	err := p.withLock(func() error {
		l, err := p.heldLeaseLocked(leaseID, epoch, holder)
		if err != nil {
			return err
		}
		t := &p.slots
		if int(blockID) >= len(t.slots) || !l.holds(id) {
			return fmt.Errorf("%w: block %d is not held by lease %d", ErrBlockNotFound, blockID, leaseID)
		}
		s := &t.slots[id]
		if !s.filled {
			return fmt.Errorf("block %d: %w", blockID, ErrNotFilled)
		}
		d = &BlockData{ID: blockID, Hash: s.hash, Parent: s.parent, TokenCount: int(s.tokens), Checksum: s.checksum, Payload: s.payload}
		if d.Payload != nil {
			t.mem.moveToBack(id)
		}
		file, gen, spec = s.file, s.gen, *p.spec
		return nil
	})
	if err != nil {
		return nil, err
	}
	if d.Payload != nil {
		p.m.bytesRead.Add(ctx, int64(len(d.Payload)), tierMemory)
		return d, nil
	}

	_, payload, err := blockfile.Read(p.blkDir, file, d.Hash, d.Checksum, spec)
	if err != nil {
		if !errors.Is(err, blockfile.ErrCorrupt) && !os.IsNotExist(err) {
			return nil, err
		}
		p.m.checksumFailures.Add(ctx, 1)
		p.log.Error("block file failed verification; dropping the block", "block", blockID, "hash", d.Hash, "file", filepath.Join(p.blkDir, file), "err", err)
		ps := &persistSet{}
		var drop string
		_ = p.withLock(func() error {
			if s := &p.slots.slots[id]; s.gen == gen && s.filled {
				drop = p.dropBlockLocked(id, ps)
			}
			return nil
		})
		p.removeFiles([]string{drop})
		p.persistBestEffort(ctx, ps)
		return nil, fmt.Errorf("block %d: %w: %v", blockID, ErrChecksum, err)
	}
	p.m.bytesRead.Add(ctx, int64(len(payload)), tierDisk)
	var evicted int
	_ = p.withLock(func() error {
		if s := &p.slots.slots[id]; s.gen == gen && s.filled && s.payload == nil {
			s.verified = true
			evicted = p.slots.addMem(id, payload)
		}
		return nil
	})
	p.recordMemEvictions(ctx, evicted)
	d.Payload = payload
	return d, nil
}

// dropBlockLocked removes a lost block from the cache: agent records are
// trimmed before it, its index entry, payload and file go; a block no lease
// holds is freed, a held one stays leased but unfilled so its holder can
// rewrite it.
func (p *Pool) dropBlockLocked(id int32, ps *persistSet) (file string) {
	t := &p.slots
	s := &t.slots[id]
	if s.indexed {
		p.trimAgentsAtLocked(s.hash, ps)
		delete(t.index, s.hash)
		s.indexed = false
		ps.block(s.hash)
	}
	t.makeUnevictable(id)
	if s.holders == 0 {
		return t.release(id)
	}
	return t.unfill(id)
}

// PayloadRef returns the slot's in-memory payload reference (nil if none),
// so tests can prove that freeing a block releases its memory.
func (p *Pool) PayloadRef(blockID uint32) []byte {
	var b []byte
	_ = p.withLock(func() error {
		if int(blockID) < len(p.slots.slots) {
			b = p.slots.slots[blockID].payload
		}
		return nil
	})
	return b
}

// DropMemoryTier evicts every payload from memory (files stay), so tests
// and operators can force reads from disk.
func (p *Pool) DropMemoryTier() {
	_ = p.withLock(func() error {
		p.slots.dropAllMem()
		return nil
	})
}

// recordMemEvictions counts payloads that addMem dropped from memory.
func (p *Pool) recordMemEvictions(ctx context.Context, n int) {
	if n > 0 {
		p.m.evictions.Add(ctx, int64(n), tierMemory)
	}
}
