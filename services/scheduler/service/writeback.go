package service

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc/status"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/services/scheduler/batch"
	"github.com/semantic-kv/semantic/services/scheduler/poolnode"
)

// written is a block handed to the writer.
type written struct {
	index  int
	hash   kvspec.Hash
	parent kvspec.Hash
	tokens int
}

// blockWriter hashes a sequence's blocks as they fill and writes them back
// to the pool through the request's lease, on a goroutine of its own, while
// the sequence runs on. Full blocks are emitted by the loop goroutine (it
// owns the sequence's tokens, seq.BlockFull), the tail block by run once
// the loop is done with the sequence; blocks are emitted in order.
type blockWriter struct {
	s      *Server
	salt   string
	r      *holding
	seq    *batch.Seq
	queue  chan written
	errc   chan error
	cancel context.CancelFunc
	done   bool
}

// newBlockWriter starts the writer and hooks it to the sequence's full
// blocks (those past the ones shared in place, already in the pool).
func (s *Server) newBlockWriter(ctx context.Context, salt string, r *holding, seq *batch.Seq) *blockWriter {
	wctx, cancel := context.WithCancel(ctx)
	w := &blockWriter{s: s, salt: salt, r: r, seq: seq, queue: make(chan written, len(r.seq.Blocks)+1), errc: make(chan error, 1), cancel: cancel}
	seq.BlockFull = func(b int) {
		if b >= r.kShared {
			w.emit(b, s.cfg.Spec.TokensPerBlock)
		}
	}
	go func() { w.errc <- s.writeBack(wctx, r, w.queue) }()
	return w
}

// tokenAt is the sequence's token at position p (prompt, then generated).
func (w *blockWriter) tokenAt(p int) uint32 {
	if p < len(w.seq.Tokens) {
		return w.seq.Tokens[p]
	}
	return w.seq.Generated[p-len(w.seq.Tokens)]
}

// emit hashes block b's first n tokens, chained to the block before it, and
// queues the block for the writer.
func (w *blockWriter) emit(b, n int) {
	spec := w.s.cfg.Spec
	var parent kvspec.Hash
	if b > 0 {
		parent = w.r.hashes[b-1]
	}
	toks := make([]uint32, n)
	for i := range toks {
		toks[i] = w.tokenAt(b*spec.TokensPerBlock + i)
	}
	h := kvspec.ChainHash(parent, toks, spec.ModelTag, w.salt)
	w.r.hashes = append(w.r.hashes, h)
	w.queue <- written{index: b, hash: h, parent: parent, tokens: n}
}

// finish closes the queue and waits for the writer: its error, if any.
func (w *blockWriter) finish() error {
	if w.done {
		return nil
	}
	w.done = true
	close(w.queue)
	return <-w.errc
}

// stop cancels the writer and waits for it (run's deferred cleanup).
func (w *blockWriter) stop() {
	w.cancel()
	_ = w.finish()
}

// writeBack writes each block it is handed through the lease, over one
// PutBlocks stream, and adds it to the hot cache.
func (s *Server) writeBack(ctx context.Context, r *holding, in <-chan written) error {
	var w poolnode.Writer
	var err error
	for blk := range in {
		if err != nil {
			continue // drain; the first error stands
		}
		if w == nil {
			if w, err = r.lease.NewWriter(ctx); err != nil {
				continue
			}
		}
		slot := r.fresh[blk.index-r.kShared]
		page := r.seq.Blocks[blk.index]
		// The page is the payload, in the stored type: the engine encoded
		// K and V into it as it wrote them (New checks the engine's type
		// is the spec's).
		payload := page.Bytes()
		hdr := &blockpoolv1.BlockHeader{
			BlockId: slot.GetBlockId(), Hash: blk.hash[:], TokenCount: uint32(blk.tokens),
			Checksum: kvspec.Checksum(payload), Size: uint64(len(payload)),
		}
		if blk.index > 0 {
			hdr.ParentHash = blk.parent[:]
		}
		if err = w.Write(hdr, payload); err != nil {
			continue
		}
		// The page itself goes to the hot cache: it holds the very bytes
		// the pool now stores, so a warm turn reads the same values
		// whichever tier serves it.
		s.hot.Put(blk.hash, page)
	}
	if err != nil {
		return err
	}
	if w != nil {
		err = w.Close()
	}
	return err
}

// Reasons a turn was not saved (Usage.turn_unsaved_reason, and the reason
// attribute of the semantic.scheduler.unsaved_turns counter).
const (
	UnsavedWriteBack = "write_back_failed"
	UnsavedConflict  = "version_conflict"
	UnsavedCommit    = "commit_failed"
)

// turnUnsaved says why a turn was not saved.
type turnUnsaved struct{ reason, detail string }

// commit records the agent's new context: every block of prompt + completion.
// It returns whether the lease's blocks should be committed on release (they
// are good cache content even when the record is not updated) and, when the
// agent's record was not updated, why. A lost race with another scheduler
// (ABORTED) keeps the other's record: this turn is then not saved.
func (s *Server) commit(ctx context.Context, r *request, seq *batch.Seq, total int) (bool, *turnUnsaved) {
	tokens := slices.Concat(seq.Tokens, seq.Generated) // total ids, a new slice the record owns
	nb := s.cfg.Spec.BlocksFor(total)
	if len(r.hashes) < nb {
		s.log.Error("missing block hashes at commit", "have", len(r.hashes), "want", nb)
		return false, &turnUnsaved{reason: UnsavedCommit, detail: fmt.Sprintf("missing block hashes: have %d, want %d", len(r.hashes), nb)}
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	// The tenant's quota bounds its records on the node (which drops the
	// tenant's own idle agents to keep to it); the lease (its holder) proves
	// that the written blocks are ours.
	err := r.lease.Commit(cctx, poolnode.CommitRequest{
		AgentKey: r.key, ModelTag: s.cfg.Spec.ModelTag, Salt: r.salt, Hashes: r.hashes[:nb], Tokens: tokens,
		ExpectedVersion: r.version, TenantMaxAgents: r.who.Quota.MaxAgents, TenantMaxAgentBytes: r.who.Quota.MaxAgentBytes,
	})
	if errors.Is(err, poolnode.ErrConflict) {
		s.log.Warn("agent's record changed during the request (committed elsewhere or deleted); this turn is not saved",
			"agent", r.key, "err", err)
		return true, &turnUnsaved{reason: UnsavedConflict, detail: err.Error()} // the blocks are still good cache content
	}
	if err != nil {
		s.log.Warn("committing agent; this turn is not saved", "agent", r.key, "err", err)
		return false, &turnUnsaved{reason: UnsavedCommit, detail: status.Convert(err).Message()}
	}
	return true, nil
}
