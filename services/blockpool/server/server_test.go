package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/poolwire"
	"github.com/semantic-kv/semantic/pkg/rpcstatus"
	"github.com/semantic-kv/semantic/services/blockpool/pool"
	"github.com/semantic-kv/semantic/services/blockpool/server"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const tag = "grpc-model"

var spec = kvspec.Spec{Layers: 2, KVHeads: 2, HeadDim: 8, TokensPerBlock: 4, DType: kvspec.DTypeFloat16, ModelTag: tag}

type env struct {
	t   *testing.T
	p   *pool.Pool
	c   blockpoolv1.BlockPoolServiceClient
	dir string
}

// newEnv serves a pool over a real loopback TCP listener.
func newEnv(t *testing.T, capacity int, configured bool) *env {
	t.Helper()
	dir := t.TempDir()
	opt := pool.Options{Dir: dir, Capacity: capacity, NoSync: true, ExpiryInterval: 20 * time.Millisecond, MaxTTL: time.Minute,
		TenantOf: func(id string) string { t, _ := poolwire.SplitAgentKey(id); return t }}
	if configured {
		s := spec
		opt.Spec = &s
	}
	p, err := pool.Open(opt)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(poolwire.ServerOptions()...)
	server.New(p, "test", nil).Register(gs)
	go gs.Serve(ln)
	conn, err := grpc.NewClient(ln.Addr().String(), append(poolwire.ClientOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		gs.Stop()
		if err := p.Check(); err != nil {
			t.Error("invariant at end: ", err)
		}
		p.Close()
	})
	return &env{t: t, p: p, c: blockpoolv1.NewBlockPoolServiceClient(conn), dir: dir}
}

func wantCode(t *testing.T, err error, code codes.Code, field string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Fatalf("got %v, want %v", err, code)
	}
	if field != "" && rpcstatus.FieldOf(err) != field {
		t.Fatalf("BadRequest field %q, want %q (%v)", rpcstatus.FieldOf(err), field, err)
	}
}

func payload(h kvspec.Hash) []byte {
	b := make([]byte, spec.BlockBytes())
	rand.NewChaCha8(h).Read(b)
	return b
}

func put(ctx context.Context, c blockpoolv1.BlockPoolServiceClient, l *blockpoolv1.LeaseResponse, blocks map[int]kvspec.Hash, chunk int, corrupt bool) (*blockpoolv1.PutBlocksResponse, error) {
	st, err := c.PutBlocks(ctx)
	if err != nil {
		return nil, err
	}
	first := true
	for i, h := range blocks {
		data := payload(h)
		crc := kvspec.Checksum(data)
		if corrupt {
			crc ^= 1
		}
		m := &blockpoolv1.PutBlocksRequest{Header: &blockpoolv1.BlockHeader{BlockId: l.Blocks[i].BlockId, Hash: h[:], TokenCount: 4, Checksum: crc, Size: uint64(len(data))}}
		if first {
			m.LeaseId, m.Epoch, m.Holder, first = l.LeaseId, l.Epoch, "s", false
		}
		if err := st.Send(m); err != nil {
			break
		}
		for off := 0; off < len(data); off += chunk {
			if err := st.Send(&blockpoolv1.PutBlocksRequest{Data: data[off:min(off+chunk, len(data))]}); err != nil {
				break
			}
		}
	}
	return st.CloseAndRecv()
}

func read(ctx context.Context, c blockpoolv1.BlockPoolServiceClient, l *blockpoolv1.LeaseResponse, ids []uint32, chunk uint32) (map[uint32][]byte, error) {
	st, err := c.GetBlocks(ctx, &blockpoolv1.GetBlocksRequest{Holder: "s", LeaseId: l.LeaseId, Epoch: l.Epoch, BlockIds: ids, ChunkBytes: chunk})
	if err != nil {
		return nil, err
	}
	out := map[uint32][]byte{}
	var cur uint32
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if h := m.Header; h != nil {
			cur = h.BlockId
			out[cur] = nil
		}
		out[cur] = append(out[cur], m.Data...)
	}
}

func toks(seed, n int) []uint32 {
	t := make([]uint32, n)
	for i := range t {
		t[i] = uint32(seed*1000 + i)
	}
	return t
}

func bs(hs []kvspec.Hash) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}

// commit writes a full agent context through the service and returns its hashes.
func (e *env) commit(ctx context.Context, agent string, tokens []uint32, expected uint64) []kvspec.Hash {
	e.t.Helper()
	hs := kvspec.ChainHashes(tokens, spec.TokensPerBlock, tag, "", true)
	l, err := e.c.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: agent, Count: uint32(len(hs)), BlockHashes: bs(hs), ModelTag: tag})
	if err != nil {
		e.t.Fatal(err)
	}
	todo := map[int]kvspec.Hash{}
	for i := int(l.Hits); i < len(hs); i++ {
		todo[i] = hs[i]
	}
	if len(todo) > 0 {
		if _, err := put(ctx, e.c, l, todo, 100, false); err != nil {
			e.t.Fatal(err)
		}
	}
	if _, err := e.c.CommitAgent(ctx, &blockpoolv1.CommitAgentRequest{Holder: "s", LeaseId: l.LeaseId, Epoch: l.Epoch, AgentId: agent, ModelTag: tag,
		BlockHashes: bs(hs), TokenIds: tokens, ExpectedVersion: expected}); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.c.Release(ctx, &blockpoolv1.ReleaseRequest{Holder: "s", LeaseId: l.LeaseId, Epoch: l.Epoch, Commit: true}); err != nil {
		e.t.Fatal(err)
	}
	return hs
}

func TestEveryRPC(t *testing.T) {
	e := newEnv(t, 64, false)
	ctx := context.Background()
	// Unconfigured: leasing is refused until Reconfigure.
	_, err := e.c.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: "a", Count: 1, ModelTag: tag})
	wantCode(t, err, codes.FailedPrecondition, "")
	rc, err := e.c.Reconfigure(ctx, &blockpoolv1.ReconfigureRequest{Spec: poolwire.SpecToProto(&spec), CapacityBlocks: 32})
	if err != nil || rc.Info.CapacityBlocks != 32 || rc.Info.Spec.BlockBytes != uint64(spec.BlockBytes()) {
		t.Fatal(rc, err)
	}
	info, err := e.c.GetPoolInfo(ctx, &blockpoolv1.GetPoolInfoRequest{})
	if err != nil || info.FreeBlocks != 32 || info.Epoch != 1 || info.Version != "test" || info.NodeId == "" {
		t.Fatal(info, err)
	}
	// Cold: nothing cached.
	tokens := toks(1, 10)
	lk, err := e.c.LookupAgent(ctx, &blockpoolv1.LookupAgentRequest{AgentId: "agent-1", TokenIds: tokens, ModelTag: tag})
	if err != nil || lk.MatchedTokens != 0 || lk.Source != blockpoolv1.MatchSource_MATCH_SOURCE_UNSPECIFIED {
		t.Fatal(lk, err)
	}
	hs := e.commit(ctx, "agent-1", tokens, 0)
	// Warm: the agent's own record.
	lk, err = e.c.LookupAgent(ctx, &blockpoolv1.LookupAgentRequest{AgentId: "agent-1", TokenIds: append(tokens, 99), ModelTag: tag})
	if err != nil || lk.MatchedTokens != 10 || len(lk.Blocks) != 3 || lk.Source != blockpoolv1.MatchSource_MATCH_SOURCE_AGENT || lk.AgentVersion != 1 || len(lk.AgentTokenIds) != 10 {
		t.Fatal(lk, err)
	}
	// Lease the hits and read them back byte for byte.
	l, err := e.c.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: "agent-1", Count: 4, BlockHashes: bs(hs), ModelTag: tag, Ttl: durationpb.New(5 * time.Second)})
	if err != nil || l.Hits != 3 || !l.Blocks[0].Filled || l.Blocks[3].Filled || l.Ttl.AsDuration() != 5*time.Second {
		t.Fatal(l, err)
	}
	got, err := read(ctx, e.c, l, []uint32{l.Blocks[2].BlockId, l.Blocks[0].BlockId}, 1024)
	if err != nil || string(got[l.Blocks[0].BlockId]) != string(payload(hs[0])) || string(got[l.Blocks[2].BlockId]) != string(payload(hs[2])) {
		t.Fatal("GetBlocks bytes differ", err)
	}
	// KeepAlive: renew the lease; an unknown one is NOT_FOUND in the stream.
	ka, err := e.c.KeepAlive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ka.Send(&blockpoolv1.KeepAliveRequest{Holder: "s", LeaseId: l.LeaseId, Epoch: l.Epoch})
	ka.Send(&blockpoolv1.KeepAliveRequest{Holder: "s", LeaseId: 999, Epoch: l.Epoch})
	r1, err1 := ka.Recv()
	r2, err2 := ka.Recv()
	ka.CloseSend()
	if _, err := ka.Recv(); err != io.EOF {
		t.Fatal("keepalive stream did not end cleanly:", err)
	}
	if err1 != nil || err2 != nil || r1.Status != blockpoolv1.LeaseStatus_LEASE_STATUS_ACTIVE || r1.ExpireTime == nil ||
		r2.Status != blockpoolv1.LeaseStatus_LEASE_STATUS_NOT_FOUND || r2.LeaseId != 999 {
		t.Fatal(r1, r2, err1, err2)
	}
	rel, err := e.c.Release(ctx, &blockpoolv1.ReleaseRequest{Holder: "s", LeaseId: l.LeaseId, Epoch: l.Epoch})
	if err != nil || rel.FreedBlocks != 1 || rel.CachedBlocks != 3 {
		t.Fatal(rel, err)
	}
	// Another agent shares the full blocks.
	lk, _ = e.c.LookupAgent(ctx, &blockpoolv1.LookupAgentRequest{AgentId: "agent-2", TokenIds: toks(1, 9), ModelTag: tag})
	if lk.MatchedTokens != 8 || lk.Source != blockpoolv1.MatchSource_MATCH_SOURCE_SHARED {
		t.Fatal(lk)
	}
	e.commit(ctx, "agent-2", toks(2, 5), 0)
	ga, err := e.c.GetAgent(ctx, &blockpoolv1.GetAgentRequest{AgentId: "agent-1"})
	if err != nil || ga.Agent.Version != 1 || len(ga.Agent.BlockHashes) != 3 || len(ga.Agent.TokenIds) != 10 {
		t.Fatal(ga, err)
	}
	la, err := e.c.ListAgents(ctx, &blockpoolv1.ListAgentsRequest{PageSize: 1})
	if err != nil || len(la.Agents) != 1 || la.Agents[0].AgentId != "agent-1" || la.Agents[0].BlockCount != 3 || la.NextPageToken == "" {
		t.Fatal(la, err)
	}
	la, err = e.c.ListAgents(ctx, &blockpoolv1.ListAgentsRequest{PageSize: 1, PageToken: la.NextPageToken})
	if err != nil || len(la.Agents) != 1 || la.Agents[0].AgentId != "agent-2" || la.NextPageToken != "" {
		t.Fatal(la, err)
	}
	da, err := e.c.DeleteAgent(ctx, &blockpoolv1.DeleteAgentRequest{AgentId: "agent-1"})
	if err != nil || da.ReleasedBlocks != 3 {
		t.Fatal(da, err)
	}
	info, _ = e.c.GetPoolInfo(ctx, &blockpoolv1.GetPoolInfoRequest{})
	if info.Agents != 1 || info.FreeBlocks+info.CachedBlocks != 32 || info.LeasedBlocks != 0 {
		t.Fatal(info)
	}
}

func TestErrorCodes(t *testing.T) {
	e := newEnv(t, 8, true)
	ctx := context.Background()
	hold, err := e.c.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: "a", Count: 6, ModelTag: tag})
	if err != nil {
		t.Fatal(err)
	}
	// RESOURCE_EXHAUSTED with a QuotaFailure saying asked and available.
	_, err = e.c.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: "b", Count: 3, ModelTag: tag})
	wantCode(t, err, codes.ResourceExhausted, "")
	st, _ := status.FromError(err)
	var qf *errdetails.QuotaFailure
	for _, d := range st.Details() {
		qf, _ = d.(*errdetails.QuotaFailure)
	}
	if qf == nil || qf.Violations[0].Subject != "pool/blocks" || qf.Violations[0].Description != "asked 3 blocks, available 2" {
		t.Fatal("QuotaFailure detail:", st.Details())
	}
	// FAILED_PRECONDITION: reconfigure while leased; wrong model tag.
	_, err = e.c.Reconfigure(ctx, &blockpoolv1.ReconfigureRequest{Spec: poolwire.SpecToProto(&spec)})
	wantCode(t, err, codes.FailedPrecondition, "")
	_, err = e.c.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: "b", Count: 1, ModelTag: "other"})
	wantCode(t, err, codes.FailedPrecondition, "")
	// NOT_FOUND: unknown lease, agent, block.
	_, err = e.c.Release(ctx, &blockpoolv1.ReleaseRequest{Holder: "s", LeaseId: 77, Epoch: hold.Epoch})
	wantCode(t, err, codes.NotFound, "")
	_, err = e.c.Release(ctx, &blockpoolv1.ReleaseRequest{Holder: "s", LeaseId: hold.LeaseId, Epoch: hold.Epoch + 1})
	wantCode(t, err, codes.NotFound, "")
	_, err = e.c.GetAgent(ctx, &blockpoolv1.GetAgentRequest{AgentId: "nobody"})
	wantCode(t, err, codes.NotFound, "")
	_, err = read(ctx, e.c, hold, []uint32{7}, 0)
	wantCode(t, err, codes.NotFound, "")
	hs := kvspec.ChainHashes(toks(1, 4), 4, tag, "", true)
	_, err = e.c.CommitAgent(ctx, &blockpoolv1.CommitAgentRequest{AgentId: "a", ModelTag: tag, BlockHashes: bs(hs), TokenIds: toks(1, 4)})
	wantCode(t, err, codes.NotFound, "")
	// ABORTED: version race.
	if _, err := put(ctx, e.c, hold, map[int]kvspec.Hash{0: hs[0]}, 4096, false); err != nil {
		t.Fatal(err)
	}
	_, err = e.c.CommitAgent(ctx, &blockpoolv1.CommitAgentRequest{Holder: "s", LeaseId: hold.LeaseId, Epoch: hold.Epoch, AgentId: "a", ModelTag: tag, BlockHashes: bs(hs), TokenIds: toks(1, 4), ExpectedVersion: 4})
	wantCode(t, err, codes.Aborted, "")
	// DATA_LOSS: bad checksum on PutBlocks.
	_, err = put(ctx, e.c, hold, map[int]kvspec.Hash{1: {1}}, 4096, true)
	wantCode(t, err, codes.DataLoss, "")
	// INVALID_ARGUMENT, each naming its field.
	long := durationpb.New(time.Hour)
	for _, c := range []struct {
		field string
		call  func() error
	}{
		{"agent_id", func() error {
			_, err := e.c.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: "bad id", Count: 1, ModelTag: tag})
			return err
		}},
		{"agent_id", func() error {
			_, err := e.c.CommitAgent(ctx, &blockpoolv1.CommitAgentRequest{AgentId: "bad id!", ModelTag: tag, BlockHashes: bs(hs), TokenIds: toks(1, 4)})
			return err
		}},
		{"agent_id", func() error {
			_, err := e.c.LookupAgent(ctx, &blockpoolv1.LookupAgentRequest{AgentId: "", ModelTag: tag})
			return err
		}},
		{"cache_salt", func() error {
			_, err := e.c.CommitAgent(ctx, &blockpoolv1.CommitAgentRequest{AgentId: "a", ModelTag: tag, BlockHashes: bs(hs), TokenIds: toks(1, 4),
				CacheSalt: strings.Repeat("s", poolwire.MaxSaltLen+1)})
			return err
		}},
		{"cache_salt", func() error {
			_, err := e.c.LookupAgent(ctx, &blockpoolv1.LookupAgentRequest{AgentId: "a", ModelTag: tag, CacheSalt: strings.Repeat("s", poolwire.MaxSaltLen+1)})
			return err
		}},
		{"ttl", func() error {
			_, err := e.c.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: "a", Count: 1, ModelTag: tag, Ttl: durationpb.New(10 * time.Millisecond)})
			return err
		}},
		{"ttl", func() error {
			_, err := e.c.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: "a", Count: 1, ModelTag: tag, Ttl: &durationpb.Duration{Seconds: 1, Nanos: -1}})
			return err
		}},
		{"block_hashes", func() error {
			_, err := e.c.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: "a", Count: 1, ModelTag: tag, BlockHashes: [][]byte{hs[0][:], hs[0][:]}})
			return err
		}},
		{"header.token_count", func() error {
			st, _ := e.c.PutBlocks(ctx)
			st.Send(&blockpoolv1.PutBlocksRequest{Holder: "s", LeaseId: hold.LeaseId, Epoch: hold.Epoch, Header: &blockpoolv1.BlockHeader{BlockId: hold.Blocks[2].BlockId, Hash: hs[0][:], TokenCount: 5, Size: uint64(spec.BlockBytes())}})
			_, err := st.CloseAndRecv()
			return err
		}},
		{"holder", func() error {
			_, err := e.c.Lease(ctx, &blockpoolv1.LeaseRequest{AgentId: "a", Count: 1, ModelTag: tag})
			return err
		}},
		{"count", func() error {
			_, err := e.c.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: "a", Count: 0, ModelTag: tag})
			return err
		}},
		{"count", func() error {
			_, err := e.c.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: "a", Count: 9, ModelTag: tag})
			return err
		}},
		{"ttl", func() error {
			_, err := e.c.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: "a", Count: 1, ModelTag: tag, Ttl: long})
			return err
		}},
		{"block_hashes[0]", func() error {
			_, err := e.c.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: "a", Count: 1, ModelTag: tag, BlockHashes: [][]byte{{1, 2}}})
			return err
		}},
		{"model_tag", func() error {
			_, err := e.c.LookupAgent(ctx, &blockpoolv1.LookupAgentRequest{AgentId: "a"})
			return err
		}},
		{"token_ids", func() error {
			_, err := e.c.CommitAgent(ctx, &blockpoolv1.CommitAgentRequest{AgentId: "a", ModelTag: tag, BlockHashes: bs(hs)})
			return err
		}},
		{"block_hashes", func() error {
			_, err := e.c.CommitAgent(ctx, &blockpoolv1.CommitAgentRequest{AgentId: "a", ModelTag: tag, BlockHashes: bs(hs), TokenIds: toks(2, 4)})
			return err
		}},
		{"spec.layers", func() error {
			_, err := e.c.Reconfigure(ctx, &blockpoolv1.ReconfigureRequest{Spec: &blockpoolv1.CacheSpec{KvHeads: 1, HeadDim: 1, TokensPerBlock: 1, Dtype: 1, ModelTag: "x"}})
			return err
		}},
		{"spec", func() error {
			_, err := e.c.Reconfigure(ctx, &blockpoolv1.ReconfigureRequest{})
			return err
		}},
		{"page_size", func() error {
			_, err := e.c.ListAgents(ctx, &blockpoolv1.ListAgentsRequest{PageSize: 5000})
			return err
		}},
		{"page_token", func() error {
			_, err := e.c.ListAgents(ctx, &blockpoolv1.ListAgentsRequest{PageToken: "!!"})
			return err
		}},
		{"chunk_bytes", func() error {
			_, err := read(ctx, e.c, hold, []uint32{hold.Blocks[0].BlockId}, 10)
			return err
		}},
		{"header.size", func() error {
			st, _ := e.c.PutBlocks(ctx)
			st.Send(&blockpoolv1.PutBlocksRequest{Holder: "s", LeaseId: hold.LeaseId, Epoch: hold.Epoch, Header: &blockpoolv1.BlockHeader{BlockId: hold.Blocks[2].BlockId, Hash: hs[0][:], TokenCount: 4, Size: 3}})
			_, err := st.CloseAndRecv()
			return err
		}},
		{"header.hash", func() error {
			st, _ := e.c.PutBlocks(ctx)
			st.Send(&blockpoolv1.PutBlocksRequest{Holder: "s", LeaseId: hold.LeaseId, Epoch: hold.Epoch, Header: &blockpoolv1.BlockHeader{BlockId: hold.Blocks[2].BlockId, Hash: []byte{1}, TokenCount: 4, Size: 3}})
			_, err := st.CloseAndRecv()
			return err
		}},
		{"data", func() error { // stream ends mid-block
			st, _ := e.c.PutBlocks(ctx)
			st.Send(&blockpoolv1.PutBlocksRequest{Holder: "s", LeaseId: hold.LeaseId, Epoch: hold.Epoch, Header: &blockpoolv1.BlockHeader{BlockId: hold.Blocks[2].BlockId, Hash: hs[0][:], TokenCount: 4, Size: uint64(spec.BlockBytes())}})
			st.Send(&blockpoolv1.PutBlocksRequest{Data: make([]byte, 10)})
			_, err := st.CloseAndRecv()
			return err
		}},
		{"lease_id", func() error {
			st, _ := e.c.PutBlocks(ctx)
			st.Send(&blockpoolv1.PutBlocksRequest{Data: make([]byte, 10)})
			_, err := st.CloseAndRecv()
			return err
		}},
	} {
		t.Run(c.field, func(t *testing.T) { wantCode(t, c.call(), codes.InvalidArgument, c.field) })
	}
	// Nothing leaked by any of it: block 1 and 2 still writable, no stray files.
	if _, err := put(ctx, e.c, hold, map[int]kvspec.Hash{1: {1}, 2: {2}}, 4096, false); err != nil {
		t.Fatal(err)
	}
	if err := e.p.Check(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Release(ctx, &blockpoolv1.ReleaseRequest{Holder: "s", LeaseId: hold.LeaseId, Epoch: hold.Epoch}); err != nil {
		t.Fatal(err)
	}
	info, _ := e.c.GetPoolInfo(ctx, &blockpoolv1.GetPoolInfoRequest{})
	if info.FreeBlocks != 8 || info.DiskBytes != 0 || info.MemoryBytes != 0 {
		t.Fatal(info)
	}
	files, _ := os.ReadDir(filepath.Join(e.dir, "blocks"))
	if len(files) != 0 {
		t.Fatal("files left:", len(files))
	}
}

func TestPutBlocksBrokenStreamLeavesBlockUnfilled(t *testing.T) {
	e := newEnv(t, 8, true)
	ctx := context.Background()
	l, err := e.c.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: "a", Count: 1, ModelTag: tag})
	if err != nil {
		t.Fatal(err)
	}
	h := kvspec.Hash{9}
	cctx, cancel := context.WithCancel(ctx)
	st, _ := e.c.PutBlocks(cctx)
	st.Send(&blockpoolv1.PutBlocksRequest{Holder: "s", LeaseId: l.LeaseId, Epoch: l.Epoch, Header: &blockpoolv1.BlockHeader{BlockId: l.Blocks[0].BlockId, Hash: h[:], TokenCount: 4, Checksum: kvspec.Checksum(payload(h)), Size: uint64(spec.BlockBytes())}})
	st.Send(&blockpoolv1.PutBlocksRequest{Data: payload(h)[:100]})
	time.Sleep(50 * time.Millisecond)
	cancel()
	// The server aborts the write: the block becomes writable again.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := put(ctx, e.c, l, map[int]kvspec.Hash{0: h}, 1000, false)
		if err == nil {
			break
		}
		if status.Code(err) != codes.FailedPrecondition || time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := e.p.Check(); err != nil {
		t.Fatal(err)
	}
	files, _ := os.ReadDir(filepath.Join(e.dir, "blocks"))
	if len(files) != 1 {
		t.Fatal("files:", len(files))
	}
}

func TestCorruptBlockOverGRPC(t *testing.T) {
	e := newEnv(t, 16, true)
	ctx := context.Background()
	hs := e.commit(ctx, "a", toks(3, 12), 0)
	e.p.DropMemoryTier()
	files, _ := os.ReadDir(filepath.Join(e.dir, "blocks"))
	for _, f := range files {
		if f.Name()[:64] == fmt.Sprintf("%x", hs[2][:]) {
			p := filepath.Join(e.dir, "blocks", f.Name())
			b, _ := os.ReadFile(p)
			b[len(b)/2+50] ^= 1
			os.WriteFile(p, b, 0o644)
		}
	}
	l, err := e.c.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: "a", Count: 3, BlockHashes: bs(hs), ModelTag: tag})
	if err != nil || l.Hits != 3 {
		t.Fatal(l, err)
	}
	got, err := read(ctx, e.c, l, []uint32{l.Blocks[0].BlockId, l.Blocks[1].BlockId, l.Blocks[2].BlockId}, 0)
	wantCode(t, err, codes.DataLoss, "")
	if _, served := got[l.Blocks[2].BlockId]; served {
		t.Fatal("corrupt block header was served")
	}
	ga, _ := e.c.GetAgent(ctx, &blockpoolv1.GetAgentRequest{AgentId: "a"})
	if len(ga.Agent.BlockHashes) != 2 || len(ga.Agent.TokenIds) != 8 {
		t.Fatal("agent not trimmed:", len(ga.Agent.BlockHashes))
	}
	lk, _ := e.c.LookupAgent(ctx, &blockpoolv1.LookupAgentRequest{AgentId: "b", TokenIds: toks(3, 12), ModelTag: tag})
	if lk.MatchedTokens != 8 {
		t.Fatal("corrupt block still in the index:", lk.MatchedTokens)
	}
	e.c.Release(ctx, &blockpoolv1.ReleaseRequest{Holder: "s", LeaseId: l.LeaseId, Epoch: l.Epoch})
}

func TestLeaseExpiresOverGRPC(t *testing.T) {
	e := newEnv(t, 8, true)
	ctx := context.Background()
	l, err := e.c.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: "a", Count: 8, ModelTag: tag, Ttl: durationpb.New(200 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		info, _ := e.c.GetPoolInfo(ctx, &blockpoolv1.GetPoolInfoRequest{})
		if info.FreeBlocks == 8 && info.ActiveLeases == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("lease never expired", info)
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, err = e.c.Release(ctx, &blockpoolv1.ReleaseRequest{Holder: "s", LeaseId: l.LeaseId, Epoch: l.Epoch, Commit: true})
	wantCode(t, err, codes.NotFound, "")
}

// Many clients run the scheduler's whole flow at once over TCP, on a pool
// small enough to force eviction and exhaustion; the invariants must hold
// after (checked in newEnv's cleanup) and every read must match its hash.
func TestConcurrentFlowsOverGRPC(t *testing.T) {
	e := newEnv(t, 48, true)
	ctx := context.Background()
	errs := make(chan error, 16)
	for w := range 16 {
		go func() {
			errs <- func() error {
				rng := rand.New(rand.NewPCG(uint64(w), 7))
				for i := range 12 {
					agent := fmt.Sprintf("agent-%d", rng.IntN(6))
					tokens := toks(rng.IntN(4), 4+rng.IntN(14))
					lk, err := e.c.LookupAgent(ctx, &blockpoolv1.LookupAgentRequest{AgentId: agent, TokenIds: tokens, ModelTag: tag})
					if err != nil {
						return err
					}
					hs := kvspec.ChainHashes(tokens, 4, tag, "", true)
					l, err := e.c.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: agent, Count: uint32(len(hs)), BlockHashes: bs(hs), ModelTag: tag})
					if status.Code(err) == codes.ResourceExhausted {
						continue
					}
					if err != nil {
						return err
					}
					if l.Hits > 0 {
						ids := make([]uint32, l.Hits)
						for j := range ids {
							ids[j] = l.Blocks[j].BlockId
						}
						got, err := read(ctx, e.c, l, ids, 0)
						if err != nil {
							return err
						}
						for j := range ids {
							if string(got[ids[j]]) != string(payload(hs[j])) {
								return fmt.Errorf("block %d bytes differ", j)
							}
						}
					}
					todo := map[int]kvspec.Hash{}
					for j := int(l.Hits); j < len(hs); j++ {
						todo[j] = hs[j]
					}
					if len(todo) > 0 {
						if _, err := put(ctx, e.c, l, todo, 333, false); err != nil {
							return err
						}
					}
					_, err = e.c.CommitAgent(ctx, &blockpoolv1.CommitAgentRequest{Holder: "s", LeaseId: l.LeaseId, Epoch: l.Epoch, AgentId: agent, ModelTag: tag,
						BlockHashes: bs(hs), TokenIds: tokens, ExpectedVersion: lk.AgentVersion})
					if c := status.Code(err); err != nil && c != codes.Aborted && c != codes.NotFound {
						return err
					}
					if _, err := e.c.Release(ctx, &blockpoolv1.ReleaseRequest{Holder: "s", LeaseId: l.LeaseId, Epoch: l.Epoch, Commit: i%2 == 0}); err != nil {
						return err
					}
				}
				return nil
			}()
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if err := e.p.Check(); err != nil {
		t.Fatal(err)
	}
}
