package server_test

import (
	"context"
	"io"
	"testing"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	"github.com/semantic-kv/semantic/pkg/kvspec"
	"google.golang.org/grpc/codes"
)

// Issue #13, defect 3: a lease is bound to the holder that took it. Another
// holder cannot release, renew, write or read it (PERMISSION_DENIED, nothing
// changes); the holder still can. Lease ids are random, not a counter.
func TestLeaseBoundToHolder(t *testing.T) {
	e := newEnv(t, 64, true)
	ctx := context.Background()
	hs := e.commit(ctx, "victim", toks(1, 8), 0) // two cached blocks to read
	l, err := e.c.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: "victim", Count: 3, BlockHashes: bs(hs), ModelTag: tag})
	if err != nil || l.Hits != 2 {
		t.Fatal(l, err)
	}
	before := e.p.Counts()

	// Release.
	_, err = e.c.Release(ctx, &blockpoolv1.ReleaseRequest{Holder: "mallory", LeaseId: l.LeaseId, Epoch: l.Epoch})
	wantCode(t, err, codes.PermissionDenied, "")
	_, err = e.c.Release(ctx, &blockpoolv1.ReleaseRequest{LeaseId: l.LeaseId, Epoch: l.Epoch}) // no holder at all
	wantCode(t, err, codes.PermissionDenied, "")
	// KeepAlive: the stream ends with PERMISSION_DENIED.
	ka, err := e.c.KeepAlive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ka.Send(&blockpoolv1.KeepAliveRequest{Holder: "mallory", LeaseId: l.LeaseId, Epoch: l.Epoch})
	_, err = ka.Recv()
	wantCode(t, err, codes.PermissionDenied, "")
	// GetBlocks.
	gs, err := e.c.GetBlocks(ctx, &blockpoolv1.GetBlocksRequest{Holder: "mallory", LeaseId: l.LeaseId, Epoch: l.Epoch, BlockIds: []uint32{l.Blocks[0].BlockId}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err = gs.Recv(); err == io.EOF {
		t.Fatal("another holder read the lease's block")
	}
	wantCode(t, err, codes.PermissionDenied, "")
	// PutBlocks into the fresh block.
	ps, err := e.c.PutBlocks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h := kvspec.Hash{7}
	data := payload(h)
	ps.Send(&blockpoolv1.PutBlocksRequest{Holder: "mallory", LeaseId: l.LeaseId, Epoch: l.Epoch, Data: data,
		Header: &blockpoolv1.BlockHeader{BlockId: l.Blocks[2].BlockId, Hash: h[:], TokenCount: 4, Checksum: kvspec.Checksum(data), Size: uint64(len(data))}})
	_, err = ps.CloseAndRecv()
	wantCode(t, err, codes.PermissionDenied, "")
	if after := e.p.Counts(); after.Leased != before.Leased || after.ActiveLeases != before.ActiveLeases ||
		after.DiskBytes != before.DiskBytes || after.Cached != before.Cached {
		t.Fatalf("refused calls changed the pool: before %+v after %+v", before, after)
	}
	if err := e.p.Check(); err != nil {
		t.Fatal(err)
	}

	// The holder's own calls still work.
	ka2, err := e.c.KeepAlive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ka2.Send(&blockpoolv1.KeepAliveRequest{Holder: "s", LeaseId: l.LeaseId, Epoch: l.Epoch})
	if r, err := ka2.Recv(); err != nil || r.Status != blockpoolv1.LeaseStatus_LEASE_STATUS_ACTIVE {
		t.Fatal(r, err)
	}
	ka2.CloseSend()
	got, err := read(ctx, e.c, l, []uint32{l.Blocks[0].BlockId}, 0)
	if err != nil || string(got[l.Blocks[0].BlockId]) != string(payload(hs[0])) {
		t.Fatal(err)
	}
	if r, err := put(ctx, e.c, l, map[int]kvspec.Hash{2: h}, 1000, false); err != nil || r.BlocksWritten != 1 {
		t.Fatal(r, err)
	}
	if _, err := e.c.Release(ctx, &blockpoolv1.ReleaseRequest{Holder: "s", LeaseId: l.LeaseId, Epoch: l.Epoch}); err != nil {
		t.Fatal(err)
	}

	// Ids: distinct, nonzero, not a sequence.
	seen := map[uint64]bool{}
	var ids []uint64
	for range 32 {
		l, err := e.c.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: "a", Count: 1, ModelTag: tag})
		if err != nil {
			t.Fatal(err)
		}
		if l.LeaseId == 0 || seen[l.LeaseId] {
			t.Fatalf("lease id %d repeated or zero", l.LeaseId)
		}
		seen[l.LeaseId] = true
		ids = append(ids, l.LeaseId)
	}
	sequential := 0
	for i := 1; i < len(ids); i++ {
		if d := ids[i] - ids[i-1]; d < 1<<16 || -d < 1<<16 {
			sequential++
		}
	}
	if sequential > 1 {
		t.Fatalf("lease ids look sequential: %v", ids)
	}
	for _, id := range ids {
		if _, err := e.c.Release(ctx, &blockpoolv1.ReleaseRequest{Holder: "s", LeaseId: id, Epoch: l.Epoch}); err != nil {
			t.Fatal(err)
		}
	}
}
