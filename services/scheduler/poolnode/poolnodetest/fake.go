// Package poolnodetest has an in-memory poolnode.Node for unit tests of the
// scheduler's service: no gRPC server, no pool core, no disk.
//
// The fake is honest about what the service relies on the real node to
// enforce, and refuses what the node refuses, with the status code the node
// answers: a lease needs a holder and dies at Release (every later call
// through it is NOT_FOUND); reads and writes name blocks of the lease (reads
// only filled ones, writes only fresh unfilled ones, with the spec's size
// and a matching checksum); a commit goes through a live lease, names the
// chain hashes of its tokens, each cached or written through that lease,
// and loses to a changed record with ABORTED. It counts the leases
// outstanding (Outstanding), and any call can be made to fail (Fail).
package poolnodetest

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/poolwire"
	"github.com/semantic-kv/semantic/services/scheduler/poolnode"
)

// Op names a call of the fake, for Fail.
type Op string

// The calls Fail can make fail.
const (
	OpLookup      Op = "lookup"
	OpLease       Op = "lease"
	OpRead        Op = "read"         // Lease.ReadBlocks
	OpOpenWriter  Op = "open_writer"  // Lease.NewWriter
	OpWrite       Op = "write"        // Writer.Write
	OpCloseWriter Op = "close_writer" // Writer.Close
	OpCommit      Op = "commit"
	OpRelease     Op = "release"
	OpGetAgent    Op = "get_agent"
	OpListAgents  Op = "list_agents"
	OpDeleteAgent Op = "delete_agent"
)

// Set is nodes as a poolnode.Set, in the given order for every agent.
type Set []poolnode.Node

// Nodes returns the nodes (a new slice).
func (s Set) Nodes() []poolnode.Node { return slices.Clone(s) }

// Order returns the nodes in the set's order (a new slice).
func (s Set) Order(string) []poolnode.Node { return slices.Clone(s) }

// Fake is an in-memory pool node.
type Fake struct {
	spec     kvspec.Spec
	name     string
	capacity int

	mu        sync.Mutex
	unhealthy bool
	fail      map[Op]error
	cached    map[kvspec.Hash]*block // filled blocks the node keeps (committed)
	agents    map[string]*blockpoolv1.AgentRecord
	leases    map[uint64]*lease // live leases
	nextLease uint64
	nextBlock uint32
	granted   int
}

type block struct {
	id       uint32
	hash     kvspec.Hash
	parent   []byte
	tokens   int
	checksum uint32
	payload  []byte
}

type lease struct {
	id     uint64
	holder string
	blocks []*blockpoolv1.LeasedBlock
	hits   int
	// written holds the fresh blocks filled through the lease, by block id.
	written map[uint32]*block
}

// New returns a healthy node with spec (its model tag and geometry) and
// room for capacity blocks in one lease.
func New(name string, spec kvspec.Spec, capacity int) *Fake {
	return &Fake{
		spec: spec, name: name, capacity: capacity, fail: map[Op]error{},
		cached: map[kvspec.Hash]*block{}, agents: map[string]*blockpoolv1.AgentRecord{}, leases: map[uint64]*lease{},
	}
}

var _ poolnode.Node = (*Fake)(nil)

// Fail makes every later op fail with err (nil: succeed again).
func (f *Fake) Fail(op Op, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.fail, op)
		return
	}
	f.fail[op] = err
}

// SetHealthy sets what Healthy reports.
func (f *Fake) SetHealthy(ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unhealthy = !ok
}

// Outstanding is the number of leases granted and not released.
func (f *Fake) Outstanding() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.leases)
}

// Granted is the number of leases granted so far.
func (f *Fake) Granted() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.granted
}

// Record is a copy of the agent's record, nil if it has none.
func (f *Fake) Record(agentKey string) *blockpoolv1.AgentRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r := f.agents[agentKey]; r != nil {
		return cloneRecord(r)
	}
	return nil
}

// CachedBlocks is the number of blocks the node keeps as cache content.
func (f *Fake) CachedBlocks() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.cached)
}

// failLocked is the injected error of op, if any.
func (f *Fake) failLocked(op Op) error { return f.fail[op] }

// ID is the node's name.
func (f *Fake) ID() string { return f.name }

// Address is "fake:" and the name.
func (f *Fake) Address() string { return "fake:" + f.name }

// Name is the node's name.
func (f *Fake) Name() string { return f.name }

// Healthy is true unless SetHealthy(false).
func (f *Fake) Healthy() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.unhealthy
}

// CapacityBlocks is the capacity given to New.
func (f *Fake) CapacityBlocks() int { return f.capacity }

// Lookup matches the agent's own record by token ids first (whatever salt
// it was written with, as the node does), else the longest chain of full
// blocks cached under the request's salt.
func (f *Fake) Lookup(ctx context.Context, req poolnode.LookupRequest) (*blockpoolv1.LookupAgentResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.callLocked(ctx, OpLookup, req.ModelTag); err != nil {
		return nil, err
	}
	tpb := f.spec.TokensPerBlock
	resp := &blockpoolv1.LookupAgentResponse{}
	if rec := f.agents[req.AgentKey]; rec != nil {
		resp.AgentVersion, resp.AgentTokenIds = rec.GetVersion(), slices.Clone(rec.GetTokenIds())
		matched := 0
		for matched < len(rec.GetTokenIds()) && matched < len(req.Tokens) && rec.GetTokenIds()[matched] == req.Tokens[matched] {
			matched++
		}
		for i, hb := range rec.GetBlockHashes() {
			if i*tpb >= matched {
				break
			}
			h, _ := kvspec.HashFromBytes(hb)
			b := f.cached[h]
			if b == nil {
				break
			}
			resp.Blocks = append(resp.Blocks, &blockpoolv1.CachedBlock{Hash: hb, TokenCount: uint32(b.tokens), UsableTokens: uint32(min(tpb, matched-i*tpb))})
			resp.MatchedTokens = uint32(min(matched, (i+1)*tpb))
		}
		if resp.MatchedTokens > 0 {
			resp.Source = blockpoolv1.MatchSource_MATCH_SOURCE_AGENT
			return resp, nil
		}
		resp.Blocks = nil
	}
	for _, h := range kvspec.ChainHashes(req.Tokens, tpb, req.ModelTag, req.Salt, false) {
		b := f.cached[h]
		if b == nil || b.tokens != tpb {
			break
		}
		resp.Blocks = append(resp.Blocks, &blockpoolv1.CachedBlock{Hash: slices.Clone(h[:]), TokenCount: uint32(tpb), UsableTokens: uint32(tpb)})
		resp.MatchedTokens += uint32(tpb)
	}
	if resp.MatchedTokens > 0 {
		resp.Source = blockpoolv1.MatchSource_MATCH_SOURCE_SHARED
	}
	return resp, nil
}

// callLocked checks what every call checks: the caller's context, the
// injected failure, and (with a model tag) the node's spec.
func (f *Fake) callLocked(ctx context.Context, op Op, modelTag string) error {
	if err := ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	if err := f.failLocked(op); err != nil {
		return err
	}
	if modelTag != "" && modelTag != f.spec.ModelTag {
		return status.Errorf(codes.FailedPrecondition, "model tag %q is not the node's %q", modelTag, f.spec.ModelTag)
	}
	return nil
}

// Lease pins the leading cached hashes (stopping at the first miss) and
// takes fresh blocks for the rest.
func (f *Fake) Lease(ctx context.Context, req poolnode.LeaseRequest) (poolnode.Lease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.callLocked(ctx, OpLease, req.ModelTag); err != nil {
		return nil, err
	}
	if req.ModelTag == "" {
		return nil, status.Error(codes.InvalidArgument, "model_tag: required")
	}
	if req.Holder == "" {
		return nil, status.Error(codes.InvalidArgument, "holder: required")
	}
	if req.Count < 1 || req.Count > f.capacity {
		return nil, status.Errorf(codes.InvalidArgument, "count: must be in 1..%d (capacity), got %d", f.capacity, req.Count)
	}
	if len(req.Pin) > req.Count {
		return nil, status.Errorf(codes.InvalidArgument, "block_hashes: %d hashes for count %d", len(req.Pin), req.Count)
	}
	f.nextLease++
	l := &lease{id: f.nextLease, holder: req.Holder, written: map[uint32]*block{}}
	for _, h := range req.Pin {
		b := f.cached[h]
		if b == nil {
			break
		}
		l.blocks = append(l.blocks, &blockpoolv1.LeasedBlock{BlockId: b.id, Hash: slices.Clone(h[:]), Filled: true, TokenCount: uint32(b.tokens)})
	}
	l.hits = len(l.blocks)
	for len(l.blocks) < req.Count {
		f.nextBlock++
		l.blocks = append(l.blocks, &blockpoolv1.LeasedBlock{BlockId: f.nextBlock})
	}
	f.leases[l.id] = l
	f.granted++
	return &fakeLease{f: f, id: l.id, holder: req.Holder, blocks: l.blocks, hits: l.hits}, nil
}

// GetAgent returns the agent's record (NOT_FOUND: none).
func (f *Fake) GetAgent(ctx context.Context, agentKey string) (*blockpoolv1.AgentRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.callLocked(ctx, OpGetAgent, ""); err != nil {
		return nil, err
	}
	rec := f.agents[agentKey]
	if rec == nil {
		return nil, status.Errorf(codes.NotFound, "agent %q not found", agentKey)
	}
	return cloneRecord(rec), nil
}

// ListAgents pages through the agents by pool id, filtered by tenant.
func (f *Fake) ListAgents(ctx context.Context, req *blockpoolv1.ListAgentsRequest) (*blockpoolv1.ListAgentsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.callLocked(ctx, OpListAgents, ""); err != nil {
		return nil, err
	}
	var after string
	if tok := req.GetPageToken(); tok != "" {
		var err error
		if after, err = poolwire.ParseAgentPageToken(tok); err != nil {
			return nil, err
		}
	}
	size := int(req.GetPageSize())
	if size == 0 {
		size = poolwire.DefaultPageSize
	}
	keys := make([]string, 0, len(f.agents))
	for k := range f.agents {
		if t, _ := poolwire.SplitAgentKey(k); k > after && (req.GetTenant() == "" || t == req.GetTenant()) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	resp := &blockpoolv1.ListAgentsResponse{}
	for _, k := range keys {
		if len(resp.Agents) == size {
			resp.NextPageToken = poolwire.AgentPageToken(resp.Agents[size-1].GetAgentId())
			break
		}
		rec := f.agents[k]
		resp.Agents = append(resp.Agents, &blockpoolv1.AgentSummary{
			AgentId: k, TokenCount: uint32(len(rec.GetTokenIds())), BlockCount: uint32(len(rec.GetBlockHashes())),
			Version: rec.GetVersion(), ModelTag: rec.GetModelTag(),
		})
	}
	return resp, nil
}

// DeleteAgent drops the agent's record (NOT_FOUND: none).
func (f *Fake) DeleteAgent(ctx context.Context, agentKey string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.callLocked(ctx, OpDeleteAgent, ""); err != nil {
		return err
	}
	if f.agents[agentKey] == nil {
		return status.Errorf(codes.NotFound, "agent %q not found", agentKey)
	}
	delete(f.agents, agentKey)
	return nil
}

func cloneRecord(r *blockpoolv1.AgentRecord) *blockpoolv1.AgentRecord {
	return &blockpoolv1.AgentRecord{
		AgentId: r.GetAgentId(), ModelTag: r.GetModelTag(), Version: r.GetVersion(), CacheSalt: r.GetCacheSalt(),
		TokenIds: slices.Clone(r.GetTokenIds()), BlockHashes: slices.Clone(r.GetBlockHashes()),
	}
}

// fakeLease is a granted lease, as its holder sees it.
type fakeLease struct {
	f      *Fake
	id     uint64
	holder string
	blocks []*blockpoolv1.LeasedBlock
	hits   int
}

func (l *fakeLease) ID() uint64                         { return l.id }
func (l *fakeLease) Blocks() []*blockpoolv1.LeasedBlock { return l.blocks }
func (l *fakeLease) Hits() int                          { return l.hits }

// heldLocked is the live lease, if the caller is its holder.
func (l *fakeLease) heldLocked() (*lease, error) {
	ls := l.f.leases[l.id]
	if ls == nil {
		return nil, status.Errorf(codes.NotFound, "lease %d not found (released or expired)", l.id)
	}
	if ls.holder != l.holder {
		return nil, status.Errorf(codes.PermissionDenied, "lease %d is held by %q, not %q", l.id, ls.holder, l.holder)
	}
	return ls, nil
}

// block is the lease's block id and its index, or an error naming it.
func (ls *lease) block(id uint32) (*blockpoolv1.LeasedBlock, int, error) {
	for i, b := range ls.blocks {
		if b.GetBlockId() == id {
			return b, i, nil
		}
	}
	return nil, 0, status.Errorf(codes.NotFound, "block %d is not held by lease %d", id, ls.id)
}

func (l *fakeLease) ReadBlocks(ctx context.Context, ids []uint32, fn func(h *blockpoolv1.BlockHeader, payload []byte) error) error {
	type item struct {
		hdr     *blockpoolv1.BlockHeader
		payload []byte
	}
	var items []item
	err := func() error {
		l.f.mu.Lock()
		defer l.f.mu.Unlock()
		if err := l.f.callLocked(ctx, OpRead, ""); err != nil {
			return err
		}
		ls, err := l.heldLocked()
		if err != nil {
			return err
		}
		for _, id := range ids {
			lb, i, err := ls.block(id)
			if err != nil {
				return err
			}
			var b *block
			if i < ls.hits {
				h, _ := kvspec.HashFromBytes(lb.GetHash())
				b = l.f.cached[h]
			} else {
				b = ls.written[id]
			}
			if b == nil {
				return status.Errorf(codes.FailedPrecondition, "block %d is not filled", id)
			}
			items = append(items, item{
				hdr: &blockpoolv1.BlockHeader{BlockId: id, Hash: slices.Clone(b.hash[:]), ParentHash: slices.Clone(b.parent),
					TokenCount: uint32(b.tokens), Checksum: b.checksum, Size: uint64(len(b.payload))},
				payload: slices.Clone(b.payload),
			})
		}
		return nil
	}()
	if err != nil {
		return err
	}
	// fn runs outside the lock, as the real stream's callback runs outside
	// the node.
	for _, it := range items {
		if err := fn(it.hdr, it.payload); err != nil {
			return err
		}
	}
	return nil
}

func (l *fakeLease) NewWriter(ctx context.Context) (poolnode.Writer, error) {
	l.f.mu.Lock()
	defer l.f.mu.Unlock()
	if err := l.f.callLocked(ctx, OpOpenWriter, ""); err != nil {
		return nil, err
	}
	if _, err := l.heldLocked(); err != nil {
		return nil, err
	}
	return &fakeWriter{l: l, ctx: ctx}, nil
}

// Commit checks the request as the node does, then replaces the record and
// keeps the blocks it names as cache content.
func (l *fakeLease) Commit(ctx context.Context, req poolnode.CommitRequest) error {
	f := l.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.callLocked(ctx, OpCommit, req.ModelTag); err != nil {
		return err
	}
	ls, err := l.heldLocked()
	if err != nil {
		return err
	}
	if len(req.Tokens) == 0 {
		return status.Error(codes.InvalidArgument, "token_ids: must not be empty")
	}
	want := kvspec.ChainHashes(req.Tokens, f.spec.TokensPerBlock, f.spec.ModelTag, req.Salt, true)
	if len(req.Hashes) != len(want) {
		return status.Errorf(codes.InvalidArgument, "block_hashes: %d tokens need %d blocks, got %d hashes", len(req.Tokens), len(want), len(req.Hashes))
	}
	for i := range want {
		if want[i] != req.Hashes[i] {
			return status.Errorf(codes.InvalidArgument, "block_hashes: hash %d is not the chain hash of its tokens", i)
		}
	}
	var curV uint64
	if cur := f.agents[req.AgentKey]; cur != nil {
		curV = cur.GetVersion()
	}
	if curV != req.ExpectedVersion {
		return fmt.Errorf("%w: agent %q: have version %d, expected %d", poolnode.ErrConflict, req.AgentKey, curV, req.ExpectedVersion)
	}
	written := map[kvspec.Hash]*block{}
	for _, b := range ls.written {
		written[b.hash] = b
	}
	for i, h := range req.Hashes {
		if f.cached[h] == nil && written[h] == nil {
			return status.Errorf(codes.NotFound, "block_hashes[%d] is neither cached nor written through the lease", i)
		}
	}
	for _, h := range req.Hashes {
		if b := written[h]; b != nil {
			f.cached[h] = b
		}
	}
	f.agents[req.AgentKey] = &blockpoolv1.AgentRecord{
		AgentId: req.AgentKey, ModelTag: req.ModelTag, Version: curV + 1, CacheSalt: req.Salt,
		TokenIds: slices.Clone(req.Tokens), BlockHashes: poolnode.HashesToBytes(slices.Clone(req.Hashes)),
	}
	return nil
}

// Release ends the lease; with commit its written blocks become cache
// content, without it those no record names are dropped.
func (l *fakeLease) Release(commit bool) error {
	f := l.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.callLocked(context.Background(), OpRelease, ""); err != nil {
		return err
	}
	ls, err := l.heldLocked()
	if err != nil {
		return err
	}
	if commit {
		for _, b := range ls.written {
			if f.cached[b.hash] == nil {
				f.cached[b.hash] = b
			}
		}
	}
	delete(f.leases, l.id)
	return nil
}

// fakeWriter uploads blocks through a lease: each must be a fresh block of
// the lease not filled yet, with the spec's size and a matching checksum.
type fakeWriter struct {
	l      *fakeLease
	ctx    context.Context
	closed bool
}

func (w *fakeWriter) Write(h *blockpoolv1.BlockHeader, payload []byte) error {
	f := w.l.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.callLocked(w.ctx, OpWrite, ""); err != nil {
		return err
	}
	if w.closed {
		return status.Error(codes.FailedPrecondition, "write after close")
	}
	ls, err := w.l.heldLocked()
	if err != nil {
		return err
	}
	_, i, err := ls.block(h.GetBlockId())
	if err != nil {
		return err
	}
	if i < ls.hits || ls.written[h.GetBlockId()] != nil {
		return status.Errorf(codes.FailedPrecondition, "block %d is already filled", h.GetBlockId())
	}
	hash, err := kvspec.HashFromBytes(h.GetHash())
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "header.hash: %v", err)
	}
	if n := f.spec.BlockBytes(); len(payload) != n || h.GetSize() != uint64(n) {
		return status.Errorf(codes.InvalidArgument, "block %d: %d bytes (size %d), the spec's blocks have %d", h.GetBlockId(), len(payload), h.GetSize(), n)
	}
	if kvspec.Checksum(payload) != h.GetChecksum() {
		return status.Errorf(codes.DataLoss, "block %d: checksum mismatch", h.GetBlockId())
	}
	if t := int(h.GetTokenCount()); t < 1 || t > f.spec.TokensPerBlock {
		return status.Errorf(codes.InvalidArgument, "header.token_count: %d is outside 1..%d", t, f.spec.TokensPerBlock)
	}
	ls.written[h.GetBlockId()] = &block{
		id: h.GetBlockId(), hash: hash, parent: slices.Clone(h.GetParentHash()), tokens: int(h.GetTokenCount()),
		checksum: h.GetChecksum(), payload: slices.Clone(payload),
	}
	return nil
}

func (w *fakeWriter) Close() error {
	f := w.l.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.callLocked(context.Background(), OpCloseWriter, ""); err != nil {
		return err
	}
	if w.closed {
		return fmt.Errorf("writer closed twice")
	}
	w.closed = true
	_, err := w.l.heldLocked()
	return err
}
