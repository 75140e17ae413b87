package poolnodetest

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/services/scheduler/poolnode"
)

var spec = kvspec.Spec{Layers: 1, KVHeads: 1, HeadDim: 4, TokensPerBlock: 2, DType: kvspec.DTypeFloat32, ModelTag: "m"}

func header(id uint32, h kvspec.Hash, tokens int, payload []byte) *blockpoolv1.BlockHeader {
	return &blockpoolv1.BlockHeader{BlockId: id, Hash: h[:], TokenCount: uint32(tokens), Checksum: kvspec.Checksum(payload), Size: uint64(len(payload))}
}

// The fake refuses what the node refuses and the service must never do.
func TestFakeIsHonest(t *testing.T) {
	ctx := context.Background()
	f := New("n", spec, 4)
	code := func(what string, err error, want codes.Code) {
		t.Helper()
		if status.Code(err) != want {
			t.Errorf("%s: %v, want %v", what, err, want)
		}
	}
	_, err := f.Lease(ctx, poolnode.LeaseRequest{AgentKey: "a", Count: 1, ModelTag: "m"})
	code("lease without a holder", err, codes.InvalidArgument)
	_, err = f.Lease(ctx, poolnode.LeaseRequest{Holder: "h", AgentKey: "a", Count: 5, ModelTag: "m"})
	code("lease over capacity", err, codes.InvalidArgument)
	_, err = f.Lease(ctx, poolnode.LeaseRequest{Holder: "h", AgentKey: "a", Count: 1, ModelTag: "other"})
	code("lease of another model", err, codes.FailedPrecondition)

	tokens := []uint32{1, 2, 3}
	hs := kvspec.ChainHashes(tokens, 2, "m", "", true)
	payload := make([]byte, spec.BlockBytes())
	l, err := f.Lease(ctx, poolnode.LeaseRequest{Holder: "h", AgentKey: "a", Count: 2, ModelTag: "m"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := f.Lease(ctx, poolnode.LeaseRequest{Holder: "h", AgentKey: "b", Count: 1, ModelTag: "m"})
	if err != nil {
		t.Fatal(err)
	}
	w, err := l.NewWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	code("write of another lease's block", w.Write(header(other.Blocks()[0].GetBlockId(), hs[0], 2, payload), payload), codes.NotFound)
	bad := header(l.Blocks()[0].GetBlockId(), hs[0], 2, payload)
	bad.Checksum++
	code("write with a bad checksum", w.Write(bad, payload), codes.DataLoss)
	code("write of a short block", w.Write(header(l.Blocks()[0].GetBlockId(), hs[0], 2, payload[1:]), payload[1:]), codes.InvalidArgument)
	if err := w.Write(header(l.Blocks()[0].GetBlockId(), hs[0], 2, payload), payload); err != nil {
		t.Fatal(err)
	}
	code("second write of a block", w.Write(header(l.Blocks()[0].GetBlockId(), hs[0], 2, payload), payload), codes.FailedPrecondition)
	commit := poolnode.CommitRequest{AgentKey: "a", ModelTag: "m", Hashes: hs, Tokens: tokens}
	code("commit of a block not written", l.Commit(ctx, commit), codes.NotFound)
	code("commit of a block written through another lease", other.Commit(ctx, poolnode.CommitRequest{AgentKey: "b", ModelTag: "m", Hashes: hs[:1], Tokens: tokens[:2]}), codes.NotFound)
	if err := w.Write(header(l.Blocks()[1].GetBlockId(), hs[1], 1, payload), payload); err != nil {
		t.Fatal(err)
	}
	wrong := commit
	wrong.Tokens = []uint32{1, 2, 4}
	code("commit of hashes that are not the tokens'", l.Commit(ctx, wrong), codes.InvalidArgument)
	stale := commit
	stale.ExpectedVersion = 3
	if err := l.Commit(ctx, stale); !errors.Is(err, poolnode.ErrConflict) {
		t.Errorf("commit at a stale version: %v, want ErrConflict", err)
	}
	if err := l.Commit(ctx, commit); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(true); err != nil {
		t.Fatal(err)
	}
	code("read through a released lease", l.ReadBlocks(ctx, []uint32{l.Blocks()[0].GetBlockId()}, nil), codes.NotFound)
	code("commit through a released lease", l.Commit(ctx, commit), codes.NotFound)
	code("second release", l.Release(false), codes.NotFound)
	if f.Outstanding() != 1 {
		t.Errorf("outstanding %d, want 1 (the other lease)", f.Outstanding())
	}
	if err := other.Release(false); err != nil {
		t.Fatal(err)
	}

	// A later lease pins the committed blocks (stopping at the first miss)
	// and reads them back; reading a fresh, unwritten block is refused.
	lk, err := f.Lookup(ctx, poolnode.LookupRequest{AgentKey: "a", Tokens: []uint32{1, 2, 3, 9}, ModelTag: "m"})
	if err != nil || lk.GetMatchedTokens() != 3 || len(lk.GetBlocks()) != 2 || lk.GetBlocks()[1].GetUsableTokens() != 1 {
		t.Fatalf("lookup: %v %v", lk, err)
	}
	missing := kvspec.ChainHashes([]uint32{7, 7}, 2, "m", "", true)[0]
	l2, err := f.Lease(ctx, poolnode.LeaseRequest{Holder: "h", AgentKey: "a", Count: 3, Pin: []kvspec.Hash{hs[0], missing, hs[1]}, ModelTag: "m"})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Release(false)
	if l2.Hits() != 1 || len(l2.Blocks()) != 3 {
		t.Fatalf("hits %d of %d blocks, want 1 of 3", l2.Hits(), len(l2.Blocks()))
	}
	var read int
	if err := l2.ReadBlocks(ctx, []uint32{l2.Blocks()[0].GetBlockId()}, func(h *blockpoolv1.BlockHeader, p []byte) error {
		read++
		if string(h.GetHash()) != string(hs[0][:]) || len(p) != len(payload) {
			t.Errorf("read back %x (%d bytes)", h.GetHash(), len(p))
		}
		return nil
	}); err != nil || read != 1 {
		t.Fatalf("read %d blocks: %v", read, err)
	}
	code("read of a fresh block", l2.ReadBlocks(ctx, []uint32{l2.Blocks()[2].GetBlockId()}, nil), codes.FailedPrecondition)
}
