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

func (l *lease) holds(id int32) bool {
	for _, x := range l.slots {
		if x == id {
			return true
		}
	}
	return false
}

// BeginWrite starts writing a block that the lease holds and that is not
// filled. It reserves the block's disk bytes (evicting unreferenced cached
// blocks, then least-recently-used agents, if the disk budget is short).
func (p *Pool) BeginWrite(ctx context.Context, leaseID, epoch uint64, h WriteHeader) (*BlockWrite, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.lock()
	if p.spec == nil {
		p.mu.Unlock()
		return nil, ErrNotConfigured
	}
	spec := *p.spec
	bb := int64(spec.BlockBytes())
	if h.Size != bb {
		p.mu.Unlock()
		return nil, argErr("header.size", "must equal the spec's block size %d, got %d", bb, h.Size)
	}
	if h.TokenCount < 1 || h.TokenCount > spec.TokensPerBlock {
		p.mu.Unlock()
		return nil, argErr("header.token_count", "must be in 1..%d, got %d", spec.TokensPerBlock, h.TokenCount)
	}
	l, err := p.leaseLocked(leaseID, epoch)
	if err != nil {
		p.mu.Unlock()
		return nil, err
	}
	id := int32(h.BlockID)
	if int(h.BlockID) >= len(p.slots) || !l.holds(id) {
		p.mu.Unlock()
		return nil, fmt.Errorf("%w: block %d is not held by lease %d", ErrBlockNotFound, h.BlockID, leaseID)
	}
	s := &p.slots[id]
	if s.filled || s.writing {
		p.mu.Unlock()
		return nil, ErrNotWritable
	}
	var ps *persistSet
	var files []string
	if b := p.opt.DiskBudget; b > 0 && p.dskBytes+bb > b {
		ps, files, err = p.makeDiskRoom(bb, l.agent)
		if err != nil {
			p.mu.Unlock()
			p.removeFiles(files)
			p.persistBestEffort(ctx, ps)
			return nil, err
		}
	}
	s.writing = true
	s.onDisk = true
	p.dskBytes += bb
	w := &BlockWrite{p: p, leaseID: leaseID, id: id, gen: s.gen, h: h, spec: spec, file: p.newFileName(h.Hash)}
	p.mu.Unlock()
	p.removeFiles(files)
	p.persistBestEffort(ctx, ps)
	w.buf = make([]byte, bb)
	return w, nil
}

// makeDiskRoom frees disk for one block: unreferenced cached blocks first
// (LRU), then whole least-recently-used agents other than keep.
func (p *Pool) makeDiskRoom(bb int64, keep string) (*persistSet, []string, error) {
	ps := &persistSet{}
	var files []string
	for p.dskBytes+bb > p.opt.DiskBudget {
		if p.lru.n > 0 {
			files = append(files, p.freeSlot(p.lru.head))
			p.m.evictions.Add(context.Background(), 1, tierDisk)
			continue
		}
		e := p.agentLRU.Front()
		if e != nil && e.Value.(*agentEntry).rec.ID == keep {
			e = e.Next()
		}
		if e == nil {
			return ps, files, &ExhaustedError{Resource: "pool/disk", Asked: bb, Available: max(0, p.opt.DiskBudget-p.dskBytes)}
		}
		p.removeAgent(e.Value.(*agentEntry), ps)
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
	p.lock()
	s := &p.slots[w.id]
	if s.gen != w.gen || !s.writing {
		// The lease ended while we wrote: the slot was freed (and its disk
		// reservation with it). Our file is garbage.
		p.mu.Unlock()
		p.removeFiles([]string{w.file})
		return ErrLeaseNotFound
	}
	if _, err := p.leaseLocked(w.leaseID, p.epoch); err != nil {
		s.writing = false
		s.onDisk = false
		p.dskBytes -= int64(len(w.buf))
		p.mu.Unlock()
		p.removeFiles([]string{w.file})
		return err
	}
	s.writing = false
	s.filled = true
	s.verified = true
	s.hash, s.parent = w.h.Hash, w.h.Parent
	s.tokens, s.checksum = uint32(w.h.TokenCount), w.crc
	s.file = w.file
	s.gen++
	p.addMem(w.id, w.buf)
	p.mu.Unlock()
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
	p := w.p
	p.lock()
	if s := &p.slots[w.id]; s.gen == w.gen && s.writing {
		s.writing = false
		s.onDisk = false
		p.dskBytes -= int64(p.spec.BlockBytes())
	}
	p.mu.Unlock()
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
// unfilled (writable), and the error wraps ErrDataLoss.
func (p *Pool) ReadBlock(ctx context.Context, leaseID, epoch uint64, blockID uint32) (*BlockData, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.lock()
	l, err := p.leaseLocked(leaseID, epoch)
	if err != nil {
		p.mu.Unlock()
		return nil, err
	}
	id := int32(blockID)
	if int(blockID) >= len(p.slots) || !l.holds(id) {
		p.mu.Unlock()
		return nil, fmt.Errorf("%w: block %d is not held by lease %d", ErrBlockNotFound, blockID, leaseID)
	}
	s := &p.slots[id]
	if !s.filled {
		p.mu.Unlock()
		return nil, fmt.Errorf("block %d: %w", blockID, ErrNotFilled)
	}
	d := &BlockData{ID: blockID, Hash: s.hash, Parent: s.parent, TokenCount: int(s.tokens), Checksum: s.checksum, Payload: s.payload}
	if d.Payload != nil {
		p.mem.moveToBack(id)
		p.mu.Unlock()
		p.m.bytesRead.Add(ctx, int64(len(d.Payload)), tierMemory)
		return d, nil
	}
	file, gen, spec := s.file, s.gen, *p.spec
	p.mu.Unlock()

	_, payload, err := blockfile.Read(p.blkDir, file, d.Hash, d.Checksum, spec)
	if err != nil {
		if !errors.Is(err, blockfile.ErrCorrupt) && !os.IsNotExist(err) {
			return nil, err
		}
		p.m.checksumFailures.Add(ctx, 1)
		p.log.Error("block file failed verification; dropping the block", "block", blockID, "hash", d.Hash, "file", filepath.Join(p.blkDir, file), "err", err)
		ps := &persistSet{}
		var drop string
		p.lock()
		if s := &p.slots[id]; s.gen == gen && s.filled {
			drop = p.dropBlock(id, ps)
		}
		p.mu.Unlock()
		p.removeFiles([]string{drop})
		p.persistBestEffort(ctx, ps)
		return nil, fmt.Errorf("block %d: %w: %v", blockID, ErrChecksum, err)
	}
	p.m.bytesRead.Add(ctx, int64(len(payload)), tierDisk)
	p.lock()
	if s := &p.slots[id]; s.gen == gen && s.filled && s.payload == nil {
		s.verified = true
		p.addMem(id, payload)
	}
	p.mu.Unlock()
	d.Payload = payload
	return d, nil
}

// dropBlock removes a lost block from the cache: agent records are trimmed
// before it, its index entry, payload and file go; a block no lease holds is
// freed, a held one stays leased but unfilled so its holder can rewrite it.
func (p *Pool) dropBlock(id int32, ps *persistSet) (file string) {
	s := &p.slots[id]
	if s.indexed {
		p.trimAgentsAt(s.hash, ps)
		delete(p.index, s.hash)
		s.indexed = false
		ps.block(s.hash)
	}
	if s.inLRU {
		p.lru.remove(id)
		s.inLRU = false
	}
	if s.holders == 0 {
		return p.freeSlot(id)
	}
	p.dropMem(id)
	if s.onDisk {
		p.dskBytes -= int64(p.spec.BlockBytes())
	}
	file = s.file
	s.onDisk, s.filled, s.verified, s.file = false, false, false, ""
	s.hash, s.parent, s.tokens, s.checksum = kvspec.Hash{}, kvspec.Hash{}, 0, 0
	s.gen++
	return file
}

// PayloadRef returns the slot's in-memory payload reference (nil if none),
// so tests can prove that freeing a block releases its memory.
func (p *Pool) PayloadRef(blockID uint32) []byte {
	p.lock()
	defer p.mu.Unlock()
	if int(blockID) >= len(p.slots) {
		return nil
	}
	return p.slots[blockID].payload
}

// DropMemoryTier evicts every payload from memory (files stay), so tests
// and operators can force reads from disk.
func (p *Pool) DropMemoryTier() {
	p.lock()
	defer p.mu.Unlock()
	for p.mem.n > 0 {
		p.dropMem(p.mem.head)
	}
}
