package server_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/poolwire"
	"github.com/semantic-kv/semantic/pkg/rpcstatus"
	pkgserver "github.com/semantic-kv/semantic/pkg/server"
	"github.com/semantic-kv/semantic/services/blockpool/pool"
	"github.com/semantic-kv/semantic/services/blockpool/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// The bad-input battery (issue #13, "Tests"): one row per (RPC, field, bad
// value), each sent over a real loopback socket under a short deadline. A row
// passes when the call fails with the status the contract names
// (INVALID_ARGUMENT naming the field, or NOT_FOUND, PERMISSION_DENIED, ...),
// and when afterwards the pool's counts are those it had before the row and
// its invariants hold: a refused request changes nothing.

// badPoolCapacity is small so that "more than the pool has" is cheap to ask.
const badPoolCapacity = 16

// badFixture is the state the rows run against: an agent record ("owner",
// two full blocks cached) and an open lease ("hold", held by "s") that pins
// the owner's two blocks (filled hits) and has two fresh blocks.
type badFixture struct {
	e         *env
	addr      string
	ownerToks []uint32
	ownerHs   []kvspec.Hash
	hold      *blockpoolv1.LeaseResponse
}

// filled and fresh are block ids of the hold lease.
func (f *badFixture) filled() uint32 { return f.hold.Blocks[0].BlockId }
func (f *badFixture) fresh() uint32  { return f.hold.Blocks[2].BlockId }

// notHeld is a block id that exists but is not in the hold lease.
func (f *badFixture) notHeld() uint32 {
	held := map[uint32]bool{}
	for _, b := range f.hold.Blocks {
		held[b.BlockId] = true
	}
	for id := uint32(0); ; id++ {
		if !held[id] {
			return id
		}
	}
}

// header is a well-formed header for the hold lease's first fresh block.
func (f *badFixture) header() *blockpoolv1.BlockHeader {
	h := kvspec.Hash{0xba, 0xd}
	data := payload(h)
	return &blockpoolv1.BlockHeader{BlockId: f.fresh(), Hash: h[:], TokenCount: uint32(spec.TokensPerBlock),
		Checksum: kvspec.Checksum(data), Size: uint64(len(data))}
}

// first is the first message of a PutBlocks stream through the hold lease.
func (f *badFixture) first(h *blockpoolv1.BlockHeader, data []byte) *blockpoolv1.PutBlocksRequest {
	return &blockpoolv1.PutBlocksRequest{Holder: "s", LeaseId: f.hold.LeaseId, Epoch: f.hold.Epoch, Header: h, Data: data}
}

// putStream sends msgs on one PutBlocks stream and returns the stream's end.
func putStream(ctx context.Context, c blockpoolv1.BlockPoolServiceClient, msgs ...*blockpoolv1.PutBlocksRequest) error {
	st, err := c.PutBlocks(ctx)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if err := st.Send(m); err != nil {
			break // the server ended the stream: CloseAndRecv has its status
		}
	}
	_, err = st.CloseAndRecv()
	return err
}

// getStream reads a GetBlocks stream to its end.
func getStream(ctx context.Context, c blockpoolv1.BlockPoolServiceClient, r *blockpoolv1.GetBlocksRequest) error {
	st, err := c.GetBlocks(ctx, r)
	if err != nil {
		return err
	}
	for {
		if _, err := st.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// keepAlive renews one lease; an answer of LEASE_STATUS_NOT_FOUND becomes a
// NOT_FOUND status, so that KeepAlive rows read like the others.
func keepAlive(ctx context.Context, c blockpoolv1.BlockPoolServiceClient, r *blockpoolv1.KeepAliveRequest) error {
	st, err := c.KeepAlive(ctx)
	if err != nil {
		return err
	}
	if err := st.Send(r); err != nil {
		_, err = st.Recv()
		return err
	}
	resp, err := st.Recv()
	if err != nil {
		return err
	}
	_ = st.CloseSend()
	if resp.Status == blockpoolv1.LeaseStatus_LEASE_STATUS_NOT_FOUND {
		return status.Error(codes.NotFound, "LEASE_STATUS_NOT_FOUND")
	}
	return nil
}

// rawCodec sends bytes as they are, so that a row can put on the wire what
// no protobuf library would marshal (invalid UTF-8 in a string field,
// truncated or garbage messages): bad input a client in another language,
// or a broken one, can send all the same.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return v.([]byte), nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), b...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// invokeRaw calls a unary method of the pool with raw request bytes.
func invokeRaw(ctx context.Context, addr, method string, req []byte) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	var out []byte
	return conn.Invoke(ctx, "/semantic.blockpool.v1.BlockPoolService/"+method, req, &out, grpc.ForceCodec(rawCodec{}))
}

type badRow struct {
	rpc, field, value string
	code              codes.Code
	// want is the BadRequest field an INVALID_ARGUMENT must name (the
	// field the row breaks, unless the contract reports it under another).
	want string
	call func(ctx context.Context, f *badFixture) error
}

func (r badRow) name() string { return r.rpc + "/" + r.field + "=" + r.value }

// poolCounts is what a refused request must leave as it was.
type poolCounts struct {
	Free, Leased, Cached, ActiveLeases, Agents uint32
	MemoryBytes, DiskBytes                     uint64
	Capacity                                   uint32
	Tag                                        string
	// OwnerVersion is the version of the fixture's agent record (0: gone).
	OwnerVersion uint64
}

func countsOf(t *testing.T, c blockpoolv1.BlockPoolServiceClient) poolCounts {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	i, err := c.GetPoolInfo(ctx, &blockpoolv1.GetPoolInfoRequest{})
	if err != nil {
		t.Fatalf("GetPoolInfo: %v", err)
	}
	pc := poolCounts{i.FreeBlocks, i.LeasedBlocks, i.CachedBlocks, i.ActiveLeases, i.Agents, i.MemoryBytes, i.DiskBytes,
		i.CapacityBlocks, i.GetSpec().GetModelTag(), 0}
	if ga, err := c.GetAgent(ctx, &blockpoolv1.GetAgentRequest{AgentId: "owner"}); err == nil {
		pc.OwnerVersion = ga.GetAgent().GetVersion()
	}
	return pc
}

func badPoolRows() []badRow {
	c := func(f *badFixture) blockpoolv1.BlockPoolServiceClient { return f.e.c }
	long := func(n int) string { return strings.Repeat("x", n) }
	validSpec := func() *blockpoolv1.CacheSpec { return poolwire.SpecToProto(&spec) }
	withSpec := func(mod func(s *blockpoolv1.CacheSpec)) func(ctx context.Context, f *badFixture) error {
		return func(ctx context.Context, f *badFixture) error {
			s := validSpec()
			mod(s)
			_, err := c(f).Reconfigure(ctx, &blockpoolv1.ReconfigureRequest{Spec: s})
			return err
		}
	}
	lease := func(mod func(r *blockpoolv1.LeaseRequest)) func(ctx context.Context, f *badFixture) error {
		return func(ctx context.Context, f *badFixture) error {
			r := &blockpoolv1.LeaseRequest{Holder: "s", AgentId: "newcomer", Count: 1, ModelTag: tag}
			mod(r)
			_, err := c(f).Lease(ctx, r)
			return err
		}
	}
	ka := func(mod func(f *badFixture, r *blockpoolv1.KeepAliveRequest)) func(ctx context.Context, f *badFixture) error {
		return func(ctx context.Context, f *badFixture) error {
			r := &blockpoolv1.KeepAliveRequest{Holder: "s", LeaseId: f.hold.LeaseId, Epoch: f.hold.Epoch}
			mod(f, r)
			return keepAlive(ctx, c(f), r)
		}
	}
	release := func(mod func(f *badFixture, r *blockpoolv1.ReleaseRequest)) func(ctx context.Context, f *badFixture) error {
		return func(ctx context.Context, f *badFixture) error {
			r := &blockpoolv1.ReleaseRequest{Holder: "s", LeaseId: f.hold.LeaseId, Epoch: f.hold.Epoch}
			mod(f, r)
			_, err := c(f).Release(ctx, r)
			return err
		}
	}
	// putHeader sends one whole, well-formed block but for mod's change to
	// the header (or the first message).
	putHeader := func(mod func(f *badFixture, m *blockpoolv1.PutBlocksRequest)) func(ctx context.Context, f *badFixture) error {
		return func(ctx context.Context, f *badFixture) error {
			h := f.header()
			m := f.first(h, nil)
			mod(f, m)
			data := payload(kvspec.Hash{0xba, 0xd})
			return putStream(ctx, c(f), m, &blockpoolv1.PutBlocksRequest{Data: data})
		}
	}
	get := func(mod func(f *badFixture, r *blockpoolv1.GetBlocksRequest)) func(ctx context.Context, f *badFixture) error {
		return func(ctx context.Context, f *badFixture) error {
			r := &blockpoolv1.GetBlocksRequest{Holder: "s", LeaseId: f.hold.LeaseId, Epoch: f.hold.Epoch, BlockIds: []uint32{f.filled()}}
			mod(f, r)
			return getStream(ctx, c(f), r)
		}
	}
	// commit is a commit of the owner's record as it is (already cached
	// blocks, no lease) but for mod's change: with expected_version 1 it
	// would succeed, so each row fails for its own field alone.
	commit := func(mod func(f *badFixture, r *blockpoolv1.CommitAgentRequest)) func(ctx context.Context, f *badFixture) error {
		return func(ctx context.Context, f *badFixture) error {
			r := &blockpoolv1.CommitAgentRequest{AgentId: "owner", ModelTag: tag, BlockHashes: bs(f.ownerHs),
				TokenIds: f.ownerToks, ExpectedVersion: 1}
			mod(f, r)
			_, err := c(f).CommitAgent(ctx, r)
			return err
		}
	}
	lookup := func(mod func(r *blockpoolv1.LookupAgentRequest)) func(ctx context.Context, f *badFixture) error {
		return func(ctx context.Context, f *badFixture) error {
			r := &blockpoolv1.LookupAgentRequest{AgentId: "owner", TokenIds: toks(1, 8), ModelTag: tag}
			mod(r)
			_, err := c(f).LookupAgent(ctx, r)
			return err
		}
	}
	list := func(r *blockpoolv1.ListAgentsRequest) func(ctx context.Context, f *badFixture) error {
		return func(ctx context.Context, f *badFixture) error {
			_, err := c(f).ListAgents(ctx, r)
			return err
		}
	}
	getAgent := func(id string) func(ctx context.Context, f *badFixture) error {
		return func(ctx context.Context, f *badFixture) error {
			_, err := c(f).GetAgent(ctx, &blockpoolv1.GetAgentRequest{AgentId: id})
			return err
		}
	}
	deleteAgent := func(id string, version uint64) func(ctx context.Context, f *badFixture) error {
		return func(ctx context.Context, f *badFixture) error {
			_, err := c(f).DeleteAgent(ctx, &blockpoolv1.DeleteAgentRequest{AgentId: id, ExpectedVersion: version})
			return err
		}
	}
	IA := codes.InvalidArgument
	badIDs := []struct{ value, id string }{
		{"empty", ""}, {"space", "bad id"}, {"slash-only", "/"}, {"129 bytes", long(129)}, {"unicode", "agént"},
		{"newline", "a\nb"}, {"NUL", "a\x00b"},
		// Tenant-scoped keys ("tenant/agent"): a bad tenant, or none of
		// the agent after it.
		{"bad tenant", "Not-A-Tenant/a"}, {"empty after tenant", "t/"}, {"two slashes", "t/a/b"}, {"tenant of 64 bytes", long(64) + "/a"},
	}
	var rows []badRow
	add := func(r ...badRow) { rows = append(rows, r...) }

	// Reconfigure: the spec's every field, the capacity, and a valid spec
	// of another model while a lease is active (the battery's hold).
	add(badRow{"Reconfigure", "spec", "unset", IA, "spec", func(ctx context.Context, f *badFixture) error {
		_, err := c(f).Reconfigure(ctx, &blockpoolv1.ReconfigureRequest{CapacityBlocks: 8})
		return err
	}})
	for _, b := range []struct {
		field, value string
		mod          func(s *blockpoolv1.CacheSpec)
	}{
		{"layers", "0", func(s *blockpoolv1.CacheSpec) { s.Layers = 0 }},
		{"layers", "257", func(s *blockpoolv1.CacheSpec) { s.Layers = 257 }},
		{"layers", "max uint32", func(s *blockpoolv1.CacheSpec) { s.Layers = 1<<32 - 1 }},
		{"kv_heads", "0", func(s *blockpoolv1.CacheSpec) { s.KvHeads = 0 }},
		{"kv_heads", "257", func(s *blockpoolv1.CacheSpec) { s.KvHeads = 257 }},
		{"head_dim", "0", func(s *blockpoolv1.CacheSpec) { s.HeadDim = 0 }},
		{"head_dim", "1025", func(s *blockpoolv1.CacheSpec) { s.HeadDim = 1025 }},
		{"tokens_per_block", "0", func(s *blockpoolv1.CacheSpec) { s.TokensPerBlock = 0 }},
		{"tokens_per_block", "1025", func(s *blockpoolv1.CacheSpec) { s.TokensPerBlock = 1025 }},
		// Every field at its maximum: a block of 256*256*1024*1024*2*4
		// bytes, which the spec refuses as too big (named by tokens_per_block).
		{"tokens_per_block", "block over MaxBlockBytes", func(s *blockpoolv1.CacheSpec) {
			s.Layers, s.KvHeads, s.HeadDim, s.TokensPerBlock, s.Dtype = 256, 256, 1024, 1024, blockpoolv1.ElementType_ELEMENT_TYPE_FLOAT32
		}},
		{"dtype", "unspecified", func(s *blockpoolv1.CacheSpec) { s.Dtype = blockpoolv1.ElementType_ELEMENT_TYPE_UNSPECIFIED }},
		{"dtype", "unknown enum 99", func(s *blockpoolv1.CacheSpec) { s.Dtype = 99 }},
		{"model_tag", "empty", func(s *blockpoolv1.CacheSpec) { s.ModelTag = "" }},
		{"model_tag", "129 bytes", func(s *blockpoolv1.CacheSpec) { s.ModelTag = long(129) }},
	} {
		add(badRow{"Reconfigure", "spec." + b.field, b.value, IA, "spec." + b.field, withSpec(b.mod)})
	}
	for _, n := range []struct {
		value string
		n     uint32
	}{{"over the wire maximum", poolwire.MaxCapacityBlocks + 1}, {"max uint32", 1<<32 - 1}, {"over the node maximum", 1 << 19}} {
		add(badRow{"Reconfigure", "capacity_blocks", n.value, IA, "capacity_blocks", func(ctx context.Context, f *badFixture) error {
			_, err := c(f).Reconfigure(ctx, &blockpoolv1.ReconfigureRequest{Spec: validSpec(), CapacityBlocks: n.n})
			return err
		}})
	}
	add(badRow{"Reconfigure", "spec.model_tag", "other model while leased", codes.FailedPrecondition, "", withSpec(func(s *blockpoolv1.CacheSpec) { s.ModelTag = "another-model" })},
		badRow{"Reconfigure", "spec", "the same spec while leased", codes.FailedPrecondition, "", withSpec(func(*blockpoolv1.CacheSpec) {})},
		badRow{"Reconfigure", "capacity_blocks", "shrink while leased", codes.FailedPrecondition, "", func(ctx context.Context, f *badFixture) error {
			_, err := c(f).Reconfigure(ctx, &blockpoolv1.ReconfigureRequest{Spec: validSpec(), CapacityBlocks: 4})
			return err
		}})

	// Lease.
	add(badRow{"Lease", "holder", "empty", IA, "holder", lease(func(r *blockpoolv1.LeaseRequest) { r.Holder = "" })},
		badRow{"Lease", "holder", "129 bytes", IA, "holder", lease(func(r *blockpoolv1.LeaseRequest) { r.Holder = long(129) })})
	for _, b := range badIDs {
		add(badRow{"Lease", "agent_id", b.value, IA, "agent_id", lease(func(r *blockpoolv1.LeaseRequest) { r.AgentId = b.id })})
	}
	add(badRow{"Lease", "model_tag", "empty", IA, "model_tag", lease(func(r *blockpoolv1.LeaseRequest) { r.ModelTag = "" })},
		badRow{"Lease", "model_tag", "129 bytes", IA, "model_tag", lease(func(r *blockpoolv1.LeaseRequest) { r.ModelTag = long(129) })},
		badRow{"Lease", "model_tag", "another model", codes.FailedPrecondition, "", lease(func(r *blockpoolv1.LeaseRequest) { r.ModelTag = "another-model" })},
		badRow{"Lease", "count", "0", IA, "count", lease(func(r *blockpoolv1.LeaseRequest) { r.Count = 0 })},
		badRow{"Lease", "count", "capacity+1", IA, "count", lease(func(r *blockpoolv1.LeaseRequest) { r.Count = badPoolCapacity + 1 })},
		badRow{"Lease", "count", "max uint32", IA, "count", lease(func(r *blockpoolv1.LeaseRequest) { r.Count = 1<<32 - 1 })},
		// All of the capacity while the hold has some: exhausted, and the
		// owner's record, which eviction could reach, is not dropped for a
		// lease that fails anyway.
		badRow{"Lease", "count", "capacity while leased", codes.ResourceExhausted, "", lease(func(r *blockpoolv1.LeaseRequest) { r.Count = badPoolCapacity })},
		badRow{"Lease", "block_hashes", "more than count", IA, "block_hashes", lease(func(r *blockpoolv1.LeaseRequest) {
			r.Count, r.BlockHashes = 1, [][]byte{make([]byte, 32), make([]byte, 32)}
		})},
		// No chain names one block twice (a chain hash covers its whole
		// prefix). A lease granted anyway is given back, so that only this
		// row fails.
		badRow{"Lease", "block_hashes", "one cached hash twice", IA, "block_hashes", func(ctx context.Context, f *badFixture) error {
			l, err := c(f).Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: "newcomer", Count: 2, ModelTag: tag,
				BlockHashes: [][]byte{f.ownerHs[0][:], f.ownerHs[0][:]}})
			if err == nil {
				_, _ = c(f).Release(ctx, &blockpoolv1.ReleaseRequest{Holder: "s", LeaseId: l.LeaseId, Epoch: l.Epoch})
				ids := make([]uint32, len(l.Blocks))
				for i, b := range l.Blocks {
					ids[i] = b.BlockId
				}
				return fmt.Errorf("granted: hits %d, block ids %v", l.Hits, ids)
			}
			return err
		}},
		badRow{"Lease", "block_hashes[0]", "empty", IA, "block_hashes[0]", lease(func(r *blockpoolv1.LeaseRequest) { r.BlockHashes = [][]byte{{}} })},
		badRow{"Lease", "block_hashes[0]", "31 bytes", IA, "block_hashes[0]", lease(func(r *blockpoolv1.LeaseRequest) { r.BlockHashes = [][]byte{make([]byte, 31)} })},
		badRow{"Lease", "block_hashes[1]", "33 bytes", IA, "block_hashes[1]", lease(func(r *blockpoolv1.LeaseRequest) {
			r.Count, r.BlockHashes = 2, [][]byte{make([]byte, 32), make([]byte, 33)}
		})},
		badRow{"Lease", "ttl", "negative", IA, "ttl", lease(func(r *blockpoolv1.LeaseRequest) { r.Ttl = durationpb.New(-time.Second) })},
		badRow{"Lease", "ttl", "nanos out of range", IA, "ttl", lease(func(r *blockpoolv1.LeaseRequest) { r.Ttl = &durationpb.Duration{Seconds: 1, Nanos: 2e9} })},
		badRow{"Lease", "ttl", "mixed signs", IA, "ttl", lease(func(r *blockpoolv1.LeaseRequest) { r.Ttl = &durationpb.Duration{Seconds: 1, Nanos: -1} })},
		badRow{"Lease", "ttl", "over the maximum", IA, "ttl", lease(func(r *blockpoolv1.LeaseRequest) { r.Ttl = durationpb.New(time.Hour) })},
		badRow{"Lease", "ttl", "under the minimum", IA, "ttl", lease(func(r *blockpoolv1.LeaseRequest) { r.Ttl = durationpb.New(time.Millisecond) })},
		badRow{"Lease", "ttl", "10001 years", IA, "ttl", lease(func(r *blockpoolv1.LeaseRequest) { r.Ttl = &durationpb.Duration{Seconds: 315_576_000_001} })},
	)

	// KeepAlive: every way of naming a lease that is not the caller's.
	add(badRow{"KeepAlive", "lease_id", "0", codes.NotFound, "", ka(func(_ *badFixture, r *blockpoolv1.KeepAliveRequest) { r.LeaseId = 0 })},
		badRow{"KeepAlive", "lease_id", "unknown", codes.NotFound, "", ka(func(f *badFixture, r *blockpoolv1.KeepAliveRequest) { r.LeaseId = f.hold.LeaseId ^ 1 })},
		badRow{"KeepAlive", "lease_id", "max uint64", codes.NotFound, "", ka(func(_ *badFixture, r *blockpoolv1.KeepAliveRequest) { r.LeaseId = 1<<64 - 1 })},
		badRow{"KeepAlive", "epoch", "next", codes.NotFound, "", ka(func(f *badFixture, r *blockpoolv1.KeepAliveRequest) { r.Epoch++ })},
		badRow{"KeepAlive", "epoch", "0", codes.NotFound, "", ka(func(f *badFixture, r *blockpoolv1.KeepAliveRequest) { r.Epoch = 0 })},
		badRow{"KeepAlive", "holder", "another", codes.PermissionDenied, "", ka(func(f *badFixture, r *blockpoolv1.KeepAliveRequest) { r.Holder = "mallory" })},
		badRow{"KeepAlive", "holder", "empty", codes.PermissionDenied, "", ka(func(f *badFixture, r *blockpoolv1.KeepAliveRequest) { r.Holder = "" })},
	)

	// Release.
	add(badRow{"Release", "lease_id", "0", codes.NotFound, "", release(func(_ *badFixture, r *blockpoolv1.ReleaseRequest) { r.LeaseId = 0 })},
		badRow{"Release", "lease_id", "unknown", codes.NotFound, "", release(func(f *badFixture, r *blockpoolv1.ReleaseRequest) { r.LeaseId = f.hold.LeaseId ^ 1 })},
		badRow{"Release", "epoch", "next", codes.NotFound, "", release(func(f *badFixture, r *blockpoolv1.ReleaseRequest) { r.Epoch++ })},
		badRow{"Release", "epoch", "0", codes.NotFound, "", release(func(f *badFixture, r *blockpoolv1.ReleaseRequest) { r.Epoch = 0 })},
		badRow{"Release", "holder", "another", codes.PermissionDenied, "", release(func(f *badFixture, r *blockpoolv1.ReleaseRequest) { r.Holder = "mallory" })},
		badRow{"Release", "holder", "another, commit", codes.PermissionDenied, "", release(func(f *badFixture, r *blockpoolv1.ReleaseRequest) {
			r.Holder, r.Commit = "mallory", true
		})},
		badRow{"Release", "holder", "empty", codes.PermissionDenied, "", release(func(f *badFixture, r *blockpoolv1.ReleaseRequest) { r.Holder = "" })},
	)

	// PutBlocks: the lease of the first message, each header field, the
	// data chunks, and streams that end or break mid-block.
	add(badRow{"PutBlocks", "lease_id", "0 in the first message", IA, "lease_id", putHeader(func(_ *badFixture, m *blockpoolv1.PutBlocksRequest) { m.LeaseId = 0 })},
		badRow{"PutBlocks", "lease_id", "unknown", codes.NotFound, "", putHeader(func(f *badFixture, m *blockpoolv1.PutBlocksRequest) { m.LeaseId ^= 1 })},
		badRow{"PutBlocks", "epoch", "next", codes.NotFound, "", putHeader(func(_ *badFixture, m *blockpoolv1.PutBlocksRequest) { m.Epoch++ })},
		badRow{"PutBlocks", "holder", "another", codes.PermissionDenied, "", putHeader(func(_ *badFixture, m *blockpoolv1.PutBlocksRequest) { m.Holder = "mallory" })},
		badRow{"PutBlocks", "holder", "empty", codes.PermissionDenied, "", putHeader(func(_ *badFixture, m *blockpoolv1.PutBlocksRequest) { m.Holder = "" })},
		badRow{"PutBlocks", "lease_id", "another lease mid-stream", IA, "lease_id", func(ctx context.Context, f *badFixture) error {
			h := f.header()
			return putStream(ctx, c(f), f.first(nil, nil), &blockpoolv1.PutBlocksRequest{LeaseId: f.hold.LeaseId ^ 1, Epoch: f.hold.Epoch, Header: h})
		}},
		badRow{"PutBlocks", "lease_id", "another holder mid-stream", IA, "lease_id", func(ctx context.Context, f *badFixture) error {
			return putStream(ctx, c(f), f.first(nil, nil), &blockpoolv1.PutBlocksRequest{Holder: "mallory", Header: f.header()})
		}},
		badRow{"PutBlocks", "header.hash", "empty", IA, "header.hash", putHeader(func(_ *badFixture, m *blockpoolv1.PutBlocksRequest) { m.Header.Hash = nil })},
		badRow{"PutBlocks", "header.hash", "31 bytes", IA, "header.hash", putHeader(func(_ *badFixture, m *blockpoolv1.PutBlocksRequest) { m.Header.Hash = make([]byte, 31) })},
		badRow{"PutBlocks", "header.hash", "33 bytes", IA, "header.hash", putHeader(func(_ *badFixture, m *blockpoolv1.PutBlocksRequest) { m.Header.Hash = make([]byte, 33) })},
		badRow{"PutBlocks", "header.parent_hash", "5 bytes", IA, "header.parent_hash", putHeader(func(_ *badFixture, m *blockpoolv1.PutBlocksRequest) {
			m.Header.ParentHash = make([]byte, 5)
		})},
		badRow{"PutBlocks", "header.size", "0", IA, "header.size", putHeader(func(_ *badFixture, m *blockpoolv1.PutBlocksRequest) { m.Header.Size = 0 })},
		badRow{"PutBlocks", "header.size", "block size - 1", IA, "header.size", putHeader(func(_ *badFixture, m *blockpoolv1.PutBlocksRequest) { m.Header.Size-- })},
		badRow{"PutBlocks", "header.size", "block size + 1", IA, "header.size", putHeader(func(_ *badFixture, m *blockpoolv1.PutBlocksRequest) { m.Header.Size++ })},
		badRow{"PutBlocks", "header.size", "1 TiB", IA, "header.size", putHeader(func(_ *badFixture, m *blockpoolv1.PutBlocksRequest) { m.Header.Size = 1 << 40 })},
		badRow{"PutBlocks", "header.size", "max uint64", IA, "header.size", putHeader(func(_ *badFixture, m *blockpoolv1.PutBlocksRequest) { m.Header.Size = 1<<64 - 1 })},
		badRow{"PutBlocks", "header.token_count", "0", IA, "header.token_count", putHeader(func(_ *badFixture, m *blockpoolv1.PutBlocksRequest) { m.Header.TokenCount = 0 })},
		badRow{"PutBlocks", "header.token_count", "tokens_per_block + 1", IA, "header.token_count", putHeader(func(_ *badFixture, m *blockpoolv1.PutBlocksRequest) {
			m.Header.TokenCount = uint32(spec.TokensPerBlock) + 1
		})},
		badRow{"PutBlocks", "header.block_id", "not in the lease", codes.NotFound, "", putHeader(func(f *badFixture, m *blockpoolv1.PutBlocksRequest) { m.Header.BlockId = f.notHeld() })},
		badRow{"PutBlocks", "header.block_id", "capacity", codes.NotFound, "", putHeader(func(f *badFixture, m *blockpoolv1.PutBlocksRequest) { m.Header.BlockId = badPoolCapacity })},
		badRow{"PutBlocks", "header.block_id", "2^31", codes.NotFound, "", putHeader(func(f *badFixture, m *blockpoolv1.PutBlocksRequest) { m.Header.BlockId = 1 << 31 })},
		badRow{"PutBlocks", "header.block_id", "max uint32", codes.NotFound, "", putHeader(func(f *badFixture, m *blockpoolv1.PutBlocksRequest) { m.Header.BlockId = 1<<32 - 1 })},
		badRow{"PutBlocks", "header.block_id", "a filled hit", codes.FailedPrecondition, "", putHeader(func(f *badFixture, m *blockpoolv1.PutBlocksRequest) { m.Header.BlockId = f.filled() })},
		badRow{"PutBlocks", "header.checksum", "wrong", codes.DataLoss, "", putHeader(func(_ *badFixture, m *blockpoolv1.PutBlocksRequest) { m.Header.Checksum ^= 1 })},
		badRow{"PutBlocks", "header", "data before a header", IA, "header", func(ctx context.Context, f *badFixture) error {
			return putStream(ctx, c(f), f.first(nil, make([]byte, 10)))
		}},
		badRow{"PutBlocks", "header", "new block mid-block", IA, "header", func(ctx context.Context, f *badFixture) error {
			return putStream(ctx, c(f), f.first(f.header(), make([]byte, 10)), &blockpoolv1.PutBlocksRequest{Header: f.header()})
		}},
		badRow{"PutBlocks", "data", "chunk over 4 MiB", IA, "data", func(ctx context.Context, f *badFixture) error {
			return putStream(ctx, c(f), f.first(f.header(), make([]byte, poolwire.MaxChunkBytes+1)))
		}},
		badRow{"PutBlocks", "data", "more than header.size", IA, "data", func(ctx context.Context, f *badFixture) error {
			h := f.header()
			return putStream(ctx, c(f), f.first(h, make([]byte, h.Size+1)))
		}},
		badRow{"PutBlocks", "data", "stream ends mid-block", IA, "data", func(ctx context.Context, f *badFixture) error {
			return putStream(ctx, c(f), f.first(f.header(), make([]byte, 10)))
		}},
		badRow{"PutBlocks", "data", "header, no data", IA, "data", func(ctx context.Context, f *badFixture) error {
			return putStream(ctx, c(f), f.first(f.header(), nil))
		}},
		// Two streams write one block: the second is refused while the
		// first holds it (then the first breaks off).
		badRow{"PutBlocks", "header.block_id", "a block another stream is writing", codes.FailedPrecondition, "", func(ctx context.Context, f *badFixture) error {
			first, cancel := context.WithCancel(ctx)
			defer cancel()
			st, err := c(f).PutBlocks(first)
			if err != nil {
				return err
			}
			if err := st.Send(f.first(f.header(), make([]byte, 100))); err != nil {
				return err
			}
			time.Sleep(100 * time.Millisecond) // let the first stream's header reach the pool
			h := f.header()
			return putStream(ctx, c(f), f.first(h, payload(kvspec.Hash{0xba, 0xd})))
		}},
		// The stream breaks mid-block: the client cancels, or its
		// connection goes away. The block must stay unfilled and writable.
		badRow{"PutBlocks", "stream", "cancelled mid-block", codes.Canceled, "", func(ctx context.Context, f *badFixture) error {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			st, err := c(f).PutBlocks(ctx)
			if err != nil {
				return err
			}
			_ = st.Send(f.first(f.header(), make([]byte, 100)))
			time.Sleep(20 * time.Millisecond) // let the server begin the write
			cancel()
			_, err = st.CloseAndRecv()
			return err
		}},
		badRow{"PutBlocks", "stream", "connection closed mid-block", codes.Canceled, "", func(ctx context.Context, f *badFixture) error {
			conn, err := grpc.NewClient(f.addr, append(poolwire.ClientOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
			if err != nil {
				return err
			}
			st, err := blockpoolv1.NewBlockPoolServiceClient(conn).PutBlocks(ctx)
			if err != nil {
				conn.Close()
				return err
			}
			_ = st.Send(f.first(f.header(), make([]byte, 100)))
			time.Sleep(20 * time.Millisecond)
			conn.Close()
			_, err = st.CloseAndRecv()
			return err
		}},
	)

	// GetBlocks.
	add(badRow{"GetBlocks", "block_ids", "empty", IA, "block_ids", get(func(_ *badFixture, r *blockpoolv1.GetBlocksRequest) { r.BlockIds = nil })},
		badRow{"GetBlocks", "block_ids", "more than capacity", IA, "block_ids", get(func(f *badFixture, r *blockpoolv1.GetBlocksRequest) {
			r.BlockIds = make([]uint32, badPoolCapacity+1)
			for i := range r.BlockIds {
				r.BlockIds[i] = f.filled()
			}
		})},
		badRow{"GetBlocks", "block_ids", "not in the lease", codes.NotFound, "", get(func(f *badFixture, r *blockpoolv1.GetBlocksRequest) { r.BlockIds = []uint32{f.notHeld()} })},
		badRow{"GetBlocks", "block_ids", "2^31", codes.NotFound, "", get(func(f *badFixture, r *blockpoolv1.GetBlocksRequest) { r.BlockIds = []uint32{1 << 31} })},
		badRow{"GetBlocks", "block_ids", "max uint32 after a good one", codes.NotFound, "", get(func(f *badFixture, r *blockpoolv1.GetBlocksRequest) {
			r.BlockIds = []uint32{f.filled(), 1<<32 - 1}
		})},
		badRow{"GetBlocks", "block_ids", "a fresh (unfilled) block", codes.FailedPrecondition, "", get(func(f *badFixture, r *blockpoolv1.GetBlocksRequest) { r.BlockIds = []uint32{f.fresh()} })},
		badRow{"GetBlocks", "chunk_bytes", "1", IA, "chunk_bytes", get(func(_ *badFixture, r *blockpoolv1.GetBlocksRequest) { r.ChunkBytes = 1 })},
		badRow{"GetBlocks", "chunk_bytes", "1023", IA, "chunk_bytes", get(func(_ *badFixture, r *blockpoolv1.GetBlocksRequest) { r.ChunkBytes = poolwire.MinChunkBytes - 1 })},
		badRow{"GetBlocks", "chunk_bytes", "4 MiB + 1", IA, "chunk_bytes", get(func(_ *badFixture, r *blockpoolv1.GetBlocksRequest) { r.ChunkBytes = poolwire.MaxChunkBytes + 1 })},
		badRow{"GetBlocks", "chunk_bytes", "max uint32", IA, "chunk_bytes", get(func(_ *badFixture, r *blockpoolv1.GetBlocksRequest) { r.ChunkBytes = 1<<32 - 1 })},
		badRow{"GetBlocks", "lease_id", "unknown", codes.NotFound, "", get(func(f *badFixture, r *blockpoolv1.GetBlocksRequest) { r.LeaseId ^= 1 })},
		badRow{"GetBlocks", "lease_id", "0", codes.NotFound, "", get(func(f *badFixture, r *blockpoolv1.GetBlocksRequest) { r.LeaseId = 0 })},
		badRow{"GetBlocks", "epoch", "next", codes.NotFound, "", get(func(f *badFixture, r *blockpoolv1.GetBlocksRequest) { r.Epoch++ })},
		badRow{"GetBlocks", "holder", "another", codes.PermissionDenied, "", get(func(f *badFixture, r *blockpoolv1.GetBlocksRequest) { r.Holder = "mallory" })},
		badRow{"GetBlocks", "holder", "empty", codes.PermissionDenied, "", get(func(f *badFixture, r *blockpoolv1.GetBlocksRequest) { r.Holder = "" })},
		badRow{"GetBlocks", "stream", "cancelled mid-block", codes.Canceled, "", func(ctx context.Context, f *badFixture) error {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			st, err := c(f).GetBlocks(ctx, &blockpoolv1.GetBlocksRequest{Holder: "s", LeaseId: f.hold.LeaseId, Epoch: f.hold.Epoch,
				BlockIds: []uint32{f.filled(), f.filled()}, ChunkBytes: poolwire.MinChunkBytes})
			if err != nil {
				return err
			}
			if _, err := st.Recv(); err != nil {
				return err
			}
			cancel()
			for {
				if _, err := st.Recv(); errors.Is(err, io.EOF) {
					// The blocks were small enough to arrive whole
					// before the cancel: the client broke off all the same.
					return status.FromContextError(ctx.Err()).Err()
				} else if err != nil {
					return err
				}
			}
		}},
	)

	// CommitAgent.
	for _, b := range badIDs {
		add(badRow{"CommitAgent", "agent_id", b.value, IA, "agent_id", commit(func(_ *badFixture, r *blockpoolv1.CommitAgentRequest) { r.AgentId = b.id })})
	}
	add(badRow{"CommitAgent", "model_tag", "empty", IA, "model_tag", commit(func(_ *badFixture, r *blockpoolv1.CommitAgentRequest) { r.ModelTag = "" })},
		badRow{"CommitAgent", "model_tag", "129 bytes", IA, "model_tag", commit(func(_ *badFixture, r *blockpoolv1.CommitAgentRequest) { r.ModelTag = long(129) })},
		badRow{"CommitAgent", "model_tag", "another model", codes.FailedPrecondition, "", commit(func(_ *badFixture, r *blockpoolv1.CommitAgentRequest) { r.ModelTag = "another-model" })},
		badRow{"CommitAgent", "token_ids", "empty", IA, "token_ids", commit(func(_ *badFixture, r *blockpoolv1.CommitAgentRequest) { r.TokenIds = nil })},
		badRow{"CommitAgent", "token_ids", "over MaxTokens", IA, "token_ids", commit(func(_ *badFixture, r *blockpoolv1.CommitAgentRequest) {
			r.TokenIds = make([]uint32, poolwire.MaxTokens+1)
		})},
		badRow{"CommitAgent", "token_ids", "one token too many for the hashes", IA, "block_hashes", commit(func(f *badFixture, r *blockpoolv1.CommitAgentRequest) {
			r.TokenIds = append(append([]uint32(nil), f.ownerToks...), 5)
		})},
		badRow{"CommitAgent", "token_ids", "other tokens under the same hashes", IA, "block_hashes", commit(func(_ *badFixture, r *blockpoolv1.CommitAgentRequest) { r.TokenIds = toks(9, 8) })},
		badRow{"CommitAgent", "block_hashes[1]", "31 bytes", IA, "block_hashes[1]", commit(func(f *badFixture, r *blockpoolv1.CommitAgentRequest) {
			r.BlockHashes = [][]byte{f.ownerHs[0][:], make([]byte, 31)}
		})},
		badRow{"CommitAgent", "block_hashes", "one missing", IA, "block_hashes", commit(func(f *badFixture, r *blockpoolv1.CommitAgentRequest) { r.BlockHashes = r.BlockHashes[:1] })},
		badRow{"CommitAgent", "block_hashes", "swapped", IA, "block_hashes", commit(func(f *badFixture, r *blockpoolv1.CommitAgentRequest) {
			r.BlockHashes = [][]byte{f.ownerHs[1][:], f.ownerHs[0][:]}
		})},
		badRow{"CommitAgent", "cache_salt", "129 bytes", IA, "cache_salt", commit(func(_ *badFixture, r *blockpoolv1.CommitAgentRequest) { r.CacheSalt = long(poolwire.MaxSaltLen + 1) })},
		// A salt the hashes were not computed with: they are not the chain.
		badRow{"CommitAgent", "cache_salt", "not the hashes' salt", IA, "block_hashes", commit(func(_ *badFixture, r *blockpoolv1.CommitAgentRequest) { r.CacheSalt = "pepper" })},
		badRow{"CommitAgent", "expected_version", "0 for an existing agent", codes.Aborted, "", commit(func(_ *badFixture, r *blockpoolv1.CommitAgentRequest) { r.ExpectedVersion = 0 })},
		badRow{"CommitAgent", "expected_version", "ahead", codes.Aborted, "", commit(func(_ *badFixture, r *blockpoolv1.CommitAgentRequest) { r.ExpectedVersion = 2 })},
		badRow{"CommitAgent", "expected_version", "max uint64", codes.Aborted, "", commit(func(_ *badFixture, r *blockpoolv1.CommitAgentRequest) { r.ExpectedVersion = 1<<64 - 1 })},
		// A chain whose blocks nobody wrote: no lease names them, none is cached.
		badRow{"CommitAgent", "block_hashes", "not cached, no lease", codes.NotFound, "", commit(func(_ *badFixture, r *blockpoolv1.CommitAgentRequest) {
			r.TokenIds = toks(7, 8)
			r.BlockHashes = bs(kvspec.ChainHashes(r.TokenIds, spec.TokensPerBlock, tag, "", true))
		})},
		badRow{"CommitAgent", "lease_id", "unknown", codes.NotFound, "", commit(func(f *badFixture, r *blockpoolv1.CommitAgentRequest) {
			r.LeaseId, r.Epoch, r.Holder = f.hold.LeaseId^1, f.hold.Epoch, "s"
		})},
		badRow{"CommitAgent", "epoch", "next", codes.NotFound, "", commit(func(f *badFixture, r *blockpoolv1.CommitAgentRequest) {
			r.LeaseId, r.Epoch, r.Holder = f.hold.LeaseId, f.hold.Epoch+1, "s"
		})},
		// The contract (CommitAgentRequest.holder): when lease_id is set,
		// any other holder gets PERMISSION_DENIED.
		badRow{"CommitAgent", "holder", "another holder's lease", codes.PermissionDenied, "", commit(func(f *badFixture, r *blockpoolv1.CommitAgentRequest) {
			r.LeaseId, r.Epoch, r.Holder = f.hold.LeaseId, f.hold.Epoch, "mallory"
		})},
	)

	// LookupAgent.
	for _, b := range badIDs {
		add(badRow{"LookupAgent", "agent_id", b.value, IA, "agent_id", lookup(func(r *blockpoolv1.LookupAgentRequest) { r.AgentId = b.id })})
	}
	add(badRow{"LookupAgent", "model_tag", "empty", IA, "model_tag", lookup(func(r *blockpoolv1.LookupAgentRequest) { r.ModelTag = "" })},
		badRow{"LookupAgent", "model_tag", "129 bytes", IA, "model_tag", lookup(func(r *blockpoolv1.LookupAgentRequest) { r.ModelTag = long(129) })},
		badRow{"LookupAgent", "model_tag", "another model", codes.FailedPrecondition, "", lookup(func(r *blockpoolv1.LookupAgentRequest) { r.ModelTag = "another-model" })},
		badRow{"LookupAgent", "cache_salt", "129 bytes", IA, "cache_salt", lookup(func(r *blockpoolv1.LookupAgentRequest) { r.CacheSalt = long(poolwire.MaxSaltLen + 1) })},
		badRow{"LookupAgent", "token_ids", "over MaxTokens", IA, "token_ids", lookup(func(r *blockpoolv1.LookupAgentRequest) { r.TokenIds = make([]uint32, poolwire.MaxTokens+1) })},
	)

	// ListAgents.
	b64 := base64.RawURLEncoding.EncodeToString
	add(badRow{"ListAgents", "page_size", "1001", IA, "page_size", list(&blockpoolv1.ListAgentsRequest{PageSize: poolwire.MaxPageSize + 1})},
		badRow{"ListAgents", "page_size", "max uint32", IA, "page_size", list(&blockpoolv1.ListAgentsRequest{PageSize: 1<<32 - 1})},
		badRow{"ListAgents", "page_token", "not base64", IA, "page_token", list(&blockpoolv1.ListAgentsRequest{PageToken: "!!"})},
		// Well-formed base64 of what no agent id can be.
		badRow{"ListAgents", "page_token", "base64 of a bad agent id", IA, "page_token", list(&blockpoolv1.ListAgentsRequest{PageToken: b64([]byte("not an id!"))})},
		badRow{"ListAgents", "page_token", "base64 of binary", IA, "page_token", list(&blockpoolv1.ListAgentsRequest{PageToken: b64([]byte{0xff, 0, 0xfe, 1})})},
		badRow{"ListAgents", "page_token", "1 MiB", IA, "page_token", list(&blockpoolv1.ListAgentsRequest{PageToken: strings.Repeat("A", 1<<20) + "!"})},
		badRow{"ListAgents", "tenant", "capitals and spaces", IA, "tenant", list(&blockpoolv1.ListAgentsRequest{Tenant: "Not A Tenant"})},
		badRow{"ListAgents", "tenant", "64 bytes", IA, "tenant", list(&blockpoolv1.ListAgentsRequest{Tenant: long(64)})},
		badRow{"ListAgents", "tenant", "leading dash", IA, "tenant", list(&blockpoolv1.ListAgentsRequest{Tenant: "-t"})},
		badRow{"ListAgents", "tenant", "with a slash", IA, "tenant", list(&blockpoolv1.ListAgentsRequest{Tenant: "t/a"})},
	)

	// GetAgent and DeleteAgent.
	for _, b := range badIDs {
		add(badRow{"GetAgent", "agent_id", b.value, IA, "agent_id", getAgent(b.id)},
			badRow{"DeleteAgent", "agent_id", b.value, IA, "agent_id", deleteAgent(b.id, 0)})
	}
	add(badRow{"GetAgent", "agent_id", "unknown", codes.NotFound, "", getAgent("nobody")},
		badRow{"DeleteAgent", "agent_id", "unknown", codes.NotFound, "", deleteAgent("nobody", 0)},
		badRow{"DeleteAgent", "expected_version", "ahead", codes.Aborted, "", deleteAgent("owner", 1000)},
		badRow{"DeleteAgent", "expected_version", "max uint64", codes.Aborted, "", deleteAgent("owner", 1<<64-1)},
	)
	return rows
}

// newBadEnv is newEnv (configured) that also returns the listener's address,
// for rows that open a connection of their own to break it.
func newBadEnv(t *testing.T, capacity int) (*env, string) {
	t.Helper()
	dir := t.TempDir()
	s := spec
	p, err := pool.Open(pool.Options{Dir: dir, Capacity: capacity, NoSync: true, ExpiryInterval: 20 * time.Millisecond, MaxTTL: time.Minute, Spec: &s})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The gRPC server the binary runs (pkg/server: its interceptors turn an
	// undecodable request into INVALID_ARGUMENT) with the pool's transport.
	gs, _, err := pkgserver.New(pkgserver.Options{Logger: slog.New(slog.DiscardHandler), Extra: poolwire.ServerOptions()})
	if err != nil {
		t.Fatal(err)
	}
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
	return &env{t: t, p: p, c: blockpoolv1.NewBlockPoolServiceClient(conn), dir: dir}, ln.Addr().String()
}

// malformedPoolRows send requests that cannot be decoded at all. The
// contract still says INVALID_ARGUMENT (no field can be named), never
// INTERNAL.
func malformedPoolRows() []badRow {
	IA := codes.InvalidArgument
	raw := func(method string, b []byte) func(ctx context.Context, f *badFixture) error {
		return func(ctx context.Context, f *badFixture) error { return invokeRaw(ctx, f.addr, method, b) }
	}
	return []badRow{
		{"GetAgent", "agent_id", "invalid UTF-8 on the wire", IA, "", raw("GetAgent", []byte{0x0a, 0x01, 0xff})},
		{"CommitAgent", "cache_salt", "invalid UTF-8 on the wire", IA, "", raw("CommitAgent", []byte{0x42, 0x02, 0xc3, 0x28})},
		{"Lease", "message", "garbage bytes", IA, "", raw("Lease", []byte{0xff, 0xff, 0xff, 0xff})},
		{"LookupAgent", "message", "truncated", IA, "", raw("LookupAgent", []byte{0x0a, 0x10, 'a'})},
	}
}

// newBadFixture serves a pool with the fixture's agent record and lease.
func newBadFixture(t *testing.T) *badFixture {
	e, addr := newBadEnv(t, badPoolCapacity)
	ctx := context.Background()
	f := &badFixture{e: e, addr: addr, ownerToks: toks(1, 8)}
	f.ownerHs = e.commit(ctx, "owner", f.ownerToks, 0)
	var err error
	f.hold, err = e.c.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: "owner", Count: 4, BlockHashes: bs(f.ownerHs), ModelTag: tag})
	if err != nil || f.hold.Hits != 2 {
		t.Fatal(f.hold, err)
	}
	return f
}

func TestBadInputBattery(t *testing.T) {
	f := newBadFixture(t)
	e, ctx := f.e, context.Background()
	start := countsOf(t, e.c)
	rows := badPoolRows()
	runBadRows(t, f, rows)
	rpcs := map[string]int{}
	for _, r := range rows {
		rpcs[r.rpc]++
	}
	t.Logf("%d rows over %d RPCs: %v", len(rows), len(rpcs), rpcs)
	if now := countsOf(t, e.c); now != start {
		t.Errorf("the pool changed over the battery:\n start %+v\n end   %+v", start, now)
	}

	// The owner's record and the hold lease came through every row: the
	// record is as committed, the hits still read back byte for byte, and
	// the fresh blocks (which broken streams began to write) are writable.
	ga, err := e.c.GetAgent(ctx, &blockpoolv1.GetAgentRequest{AgentId: "owner"})
	if err != nil || len(ga.Agent.TokenIds) != len(f.ownerToks) {
		t.Fatalf("owner's record after the battery: %v %v", ga, err)
	}
	got, err := read(ctx, e.c, f.hold, []uint32{f.hold.Blocks[0].BlockId, f.hold.Blocks[1].BlockId}, 0)
	if err != nil || string(got[f.hold.Blocks[0].BlockId]) != string(payload(f.ownerHs[0])) ||
		string(got[f.hold.Blocks[1].BlockId]) != string(payload(f.ownerHs[1])) {
		t.Fatalf("the owner's blocks after the battery differ (%v)", err)
	}
	if _, err := put(ctx, e.c, f.hold, map[int]kvspec.Hash{2: {2}, 3: {3}}, 4096, false); err != nil {
		t.Fatalf("the hold's fresh blocks are not writable after the battery: %v", err)
	}
	if _, err := e.c.Release(ctx, &blockpoolv1.ReleaseRequest{Holder: "s", LeaseId: f.hold.LeaseId, Epoch: f.hold.Epoch}); err != nil {
		t.Fatal(err)
	}
	end := countsOf(t, e.c)
	if end.Leased != 0 || end.ActiveLeases != 0 || end.Agents != 1 || end.Free+end.Cached != badPoolCapacity {
		t.Fatalf("after releasing the hold: %+v", end)
	}
}

// TestBadInputMalformedMessages is the battery's rows of undecodable
// requests, apart because grpc-go itself answers them: its server turns any
// request it cannot unmarshal into INTERNAL ("grpc: failed to unmarshal the
// received message", rpc_util.go) before a handler or interceptor runs.
func TestBadInputMalformedMessages(t *testing.T) {
	f := newBadFixture(t)
	runBadRows(t, f, malformedPoolRows())
}

// runBadRows runs each row as a subtest and checks its status and that the
// pool is as it was before the row.
func runBadRows(t *testing.T, f *badFixture, rows []badRow) {
	e, ctx := f.e, context.Background()
	seen := map[string]bool{}
	for _, r := range rows {
		if seen[r.name()] {
			t.Fatalf("duplicate row %s", r.name())
		}
		seen[r.name()] = true
		t.Run(r.name(), func(t *testing.T) {
			// Every call under a short deadline: a hang is a failure of
			// its own, never mistaken for the status the row wants.
			before := countsOf(t, e.c)
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			began := time.Now()
			err := r.call(rctx, f)
			code := status.Code(err)
			_, isStatus := status.FromError(err)
			switch {
			case !isStatus: // the row's own report of a call that should have failed
				t.Errorf("%v, want %v", err, r.code)
			case code == codes.DeadlineExceeded && r.code != codes.DeadlineExceeded:
				t.Errorf("hang: no answer within %v (%v)", time.Since(began).Round(time.Millisecond), err)
			case code == codes.Internal || code == codes.Unknown:
				t.Errorf("got %v, want %v: never INTERNAL/UNKNOWN for bad input", err, r.code)
			case code != r.code:
				t.Errorf("got %v (field %q), want %v", err, rpcstatus.FieldOf(err), r.code)
			case code == codes.InvalidArgument && rpcstatus.FieldOf(err) != r.want:
				t.Errorf("BadRequest field %q, want %q (%v)", rpcstatus.FieldOf(err), r.want, err)
			}
			// Nothing changed. A broken stream is aborted by the server
			// after the client has gone, so give it a moment.
			var now poolCounts
			for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				if now = countsOf(t, e.c); now == before || time.Now().After(deadline) {
					break
				}
			}
			if now != before {
				t.Errorf("the pool changed:\n before %+v\n after  %+v", before, now)
			}
			if err := e.p.Check(); err != nil {
				t.Errorf("invariant: %v", err)
			}
		})
	}
}
