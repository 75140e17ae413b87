package pool

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/semantic-kv/semantic/pkg/kvspec"
)

// CommitRequest replaces an agent's record.
type CommitRequest struct {
	LeaseID, Epoch uint64 // the lease new blocks were written through (0: none)
	// Holder must be the lease's holder when LeaseID is set (else
	// ErrNotHolder), as for every other use of a lease.
	Holder          string
	AgentID         string
	ModelTag        string
	Salt            string
	Hashes          []kvspec.Hash
	Tokens          []uint32
	ExpectedVersion uint64 // 0: the agent must not exist
	// TenantMaxAgents and TenantMaxAgentBytes bound the records of the
	// agent's tenant (Options.TenantOf) on this node; 0: no bound, and no
	// bound applies to an agent without a tenant.
	TenantMaxAgents     int
	TenantMaxAgentBytes int64
}

// AgentRecord is a read-only copy of an agent record.
type AgentRecord struct {
	AgentID, ModelTag, Salt string
	Hashes                  []kvspec.Hash
	Tokens                  []uint32
	Version                 uint64
	LastUsed, Created       time.Time
}

// CommitAgent atomically replaces the agent's record (optimistic concurrency
// on ExpectedVersion). Every hash must be cached or filled through the lease,
// and the hashes must be the chain hashes of the tokens (kvspec.ChainHashes
// with the tail), so that the index never names a block by a hash that does
// not describe its tokens. It returns after the record is durable. The agent
// id's format is the caller's to check (the server does, with the rule in
// pkg/rpcstatus).
func (p *Pool) CommitAgent(ctx context.Context, req CommitRequest) (uint64, error) {
	if len(req.Tokens) == 0 {
		return 0, argErr("token_ids", "must not be empty")
	}
	spec := p.Spec()
	if spec == nil {
		return 0, ErrNotConfigured
	}
	if req.ModelTag != spec.ModelTag {
		return 0, ErrModelMismatch
	}
	if n := spec.BlocksFor(len(req.Tokens)); len(req.Hashes) != n {
		return 0, argErr("block_hashes", "%d tokens need %d blocks, got %d hashes", len(req.Tokens), n, len(req.Hashes))
	}
	want := kvspec.ChainHashes(req.Tokens, spec.TokensPerBlock, spec.ModelTag, req.Salt, true)
	for i := range want {
		if want[i] != req.Hashes[i] {
			return 0, argErr("block_hashes", "hash %d is not the chain hash of its tokens", i)
		}
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var ps *persistSet
	var version uint64
	err := p.withLock(func() (err error) {
		ps, version, err = p.commitLocked(req, spec)
		return err
	})
	if err != nil {
		return 0, err
	}
	if err := p.persist(context.WithoutCancel(ctx), ps); err != nil {
		return 0, err
	}
	return version, nil
}

// commitLocked checks a commit against the pool's state and applies it; it
// returns the keys to persist and the new version.
func (p *Pool) commitLocked(req CommitRequest, spec *kvspec.Spec) (*persistSet, uint64, error) {
	if p.spec == nil || *p.spec != *spec {
		return nil, 0, fmt.Errorf("%w: spec changed during the commit", ErrAborted)
	}
	var l *lease
	if req.LeaseID != 0 {
		var err error
		if l, err = p.heldLeaseLocked(req.LeaseID, req.Epoch, req.Holder); err != nil {
			return nil, 0, err
		}
	}
	cur := p.agents.get(req.AgentID)
	var curV uint64
	if cur != nil {
		curV = cur.rec.Version
	}
	if curV != req.ExpectedVersion {
		return nil, 0, fmt.Errorf("%w: have version %d, expected %d", ErrVersionMismatch, curV, req.ExpectedVersion)
	}
	t := &p.slots
	var written map[kvspec.Hash]int32
	if l != nil {
		for _, id := range l.slots {
			if s := &t.slots[id]; s.filled && !s.indexed {
				if written == nil {
					written = map[kvspec.Hash]int32{}
				}
				written[s.hash] = id
			}
		}
	}
	for i, h := range req.Hashes {
		if _, ok := t.index[h]; ok {
			continue
		}
		if _, ok := written[h]; !ok {
			return nil, 0, fmt.Errorf("%w: block_hashes[%d] (%s) is neither cached nor written through the lease", ErrBlockNotFound, i, h)
		}
	}
	rec := &agentRec{
		ID: req.AgentID, ModelTag: req.ModelTag, Salt: req.Salt, Created: p.clock.Now(),
		Hashes: slices.Clone(req.Hashes), Tokens: slices.Clone(req.Tokens),
	}
	victims, err := p.agentRoomLocked(rec, cur, req.TenantMaxAgents, req.TenantMaxAgentBytes)
	if err != nil {
		return nil, 0, err
	}
	// All checks passed: apply. Increment before decrementing so that a block
	// in both the old and new chain never passes through zero. The clock is
	// read first, so nothing that leaves the core runs mid-change.
	now := rec.Created
	ps := &persistSet{}
	ps.agent(req.AgentID)
	for _, h := range req.Hashes {
		id, ok := t.index[h]
		if !ok {
			id = written[h]
			t.index[h] = id
			t.slots[id].indexed = true
		}
		t.slots[id].refs++
		t.makeUnevictable(id)
		ps.block(h)
	}
	rec.Version = p.nextVersionLocked()
	if cur != nil {
		rec.Created = cur.rec.Created
		p.unrefLocked(cur.rec.Hashes, ps)
		p.agents.replace(cur, rec)
		p.agents.touch(cur, now)
	} else {
		p.agents.add(rec, now)
	}
	for _, v := range victims {
		p.removeAgentLocked(v, ps)
	}
	return ps, rec.Version, nil
}

// agentRoomLocked decides which agents a commit of rec (replacing cur, if
// any) drops to stay within the bounds on agent records and their bytes: the
// bounds of rec's tenant (tenantMax, tenantMaxBytes; 0 is no bound) first,
// by dropping that tenant's own least recently used idle agents (no active
// lease), never another tenant's; then the node's, by dropping any least
// recently used idle agents. Never the committing agent. If even that cannot
// make room (one record larger than a byte bound, or every candidate busy)
// the commit is refused with ExhaustedError (tenant/agents,
// tenant/agent-bytes, pool/agents, pool/agent-bytes) and nothing changes.
func (p *Pool) agentRoomLocked(rec *agentRec, cur *agentEntry, tenantMax int, tenantMaxBytes int64) ([]*agentEntry, error) {
	size := recBytes(rec)
	n, bytes := int64(p.agents.len()), p.agents.bytes+size
	tenant := p.agents.tenant(rec.ID)
	u := p.agents.tenantUse(tenant)
	tn, tb := int64(u.agents), u.bytes+size
	if cur == nil {
		n++
		tn++
	} else {
		bytes -= recBytes(cur.rec)
		tb -= recBytes(cur.rec)
	}
	maxN, maxB := int64(p.opt.MaxAgents), p.opt.MaxAgentBytes
	maxTN, maxTB := int64(tenantMax), tenantMaxBytes
	if tenant == "" || maxTN <= 0 {
		maxTN = math.MaxInt64
	}
	if tenant == "" || maxTB <= 0 {
		maxTB = math.MaxInt64
	}
	tenantFits := func() bool { return tn <= maxTN && tb <= maxTB }
	nodeFits := func() bool { return n <= maxN && bytes <= maxB }
	if tenantFits() && nodeFits() {
		return nil, nil
	}
	if size > maxB {
		return nil, &ExhaustedError{Resource: "pool/agent-bytes", Asked: size, Available: maxB}
	}
	if size > maxTB {
		return nil, &ExhaustedError{Resource: "tenant/agent-bytes", Asked: size, Available: maxTB}
	}
	busy := map[string]bool{rec.ID: true}
	for l := range p.leases.all() {
		busy[l.agent] = true
	}
	var victims []*agentEntry
	// drop simulates dropping the least recently used idle agents that
	// pass pick until fits holds.
	drop := func(fits func() bool, pick func(*agentEntry) bool) {
		for e := range p.agents.leastRecent() {
			if fits() {
				return
			}
			if busy[e.rec.ID] || !pick(e) {
				continue
			}
			busy[e.rec.ID] = true // once a victim, never counted twice
			victims = append(victims, e)
			eb := recBytes(e.rec)
			n--
			bytes -= eb
			if p.agents.tenant(e.rec.ID) == tenant {
				tn--
				tb -= eb
			}
		}
	}
	// The tenant's own first: they count against both bounds.
	drop(tenantFits, func(e *agentEntry) bool { return p.agents.tenant(e.rec.ID) == tenant })
	switch {
	case tn > maxTN:
		return nil, &ExhaustedError{Resource: "tenant/agents", Asked: 1, Available: 0}
	case tb > maxTB:
		return nil, &ExhaustedError{Resource: "tenant/agent-bytes", Asked: size, Available: max(0, maxTB-(tb-size))}
	}
	drop(nodeFits, func(*agentEntry) bool { return true })
	switch {
	case n > maxN:
		return nil, &ExhaustedError{Resource: "pool/agents", Asked: 1, Available: 0}
	case bytes > maxB:
		return nil, &ExhaustedError{Resource: "pool/agent-bytes", Asked: size, Available: max(0, maxB-(bytes-size))}
	}
	return victims, nil
}

// unrefLocked drops one reference from each hash (tail first, so that a
// chain's tail is evicted before its head) and returns how many blocks became
// evictable.
func (p *Pool) unrefLocked(hashes []kvspec.Hash, ps *persistSet) int {
	t := &p.slots
	n := 0
	for i := len(hashes) - 1; i >= 0; i-- {
		id := t.index[hashes[i]]
		s := &t.slots[id]
		s.refs--
		if s.refs == 0 {
			n++
			t.makeEvictable(id)
		}
		ps.block(hashes[i])
	}
	return n
}

// removeAgentLocked drops an agent record; its blocks lose a reference.
func (p *Pool) removeAgentLocked(e *agentEntry, ps *persistSet) int {
	p.agents.remove(e)
	ps.agent(e.rec.ID)
	return p.unrefLocked(e.rec.Hashes, ps)
}

// trimAgentsAtLocked cuts every agent record that names h to the blocks
// before it (or drops it if h is its first block): an agent record never
// points at a block that is gone. It scans all agents; it runs only when a
// block is lost.
func (p *Pool) trimAgentsAtLocked(h kvspec.Hash, ps *persistSet) {
	for e := range p.agents.all() {
		i := slices.Index(e.rec.Hashes, h)
		if i < 0 {
			continue
		}
		if i == 0 {
			p.removeAgentLocked(e, ps)
			continue
		}
		r := *e.rec
		r.Hashes = slices.Clone(e.rec.Hashes[:i])
		r.Tokens = slices.Clone(e.rec.Tokens[:i*p.spec.TokensPerBlock])
		r.Version = p.nextVersionLocked()
		p.unrefLocked(e.rec.Hashes[i:], ps)
		p.agents.replace(e, &r)
		ps.agent(r.ID)
	}
}

// LookupRequest asks for the longest cached prefix of Tokens.
type LookupRequest struct {
	AgentID  string
	Tokens   []uint32
	ModelTag string
	Salt     string
}

// MatchSource says where a lookup's prefix came from.
type MatchSource int

// Match sources.
const (
	MatchNone MatchSource = iota
	MatchAgent
	MatchShared
)

// CachedBlock is one block of a lookup result.
type CachedBlock struct {
	Hash         kvspec.Hash
	TokenCount   int
	UsableTokens int
}

// LookupResult is the longest cached prefix.
type LookupResult struct {
	MatchedTokens int
	Blocks        []CachedBlock
	Source        MatchSource
	AgentVersion  uint64
	AgentTokens   []uint32
}

// Lookup returns the longest cached prefix of req.Tokens: along the agent's
// own record (longest common prefix of token ids; the last block may be
// usable only in part), or by walking the content hashes of the request's
// full blocks through the index (the trie over the hash chain: a hash names
// its whole prefix), whichever is longer.
func (p *Pool) Lookup(ctx context.Context, req LookupRequest) (*LookupResult, error) {
	spec := p.Spec()
	if spec == nil {
		return nil, ErrNotConfigured
	}
	if req.ModelTag != spec.ModelTag {
		return nil, ErrModelMismatch
	}
	tpb := spec.TokensPerBlock
	shared := kvspec.ChainHashes(req.Tokens, tpb, spec.ModelTag, req.Salt, false)
	res := &LookupResult{}
	_ = p.withLock(func() error {
		p.lookupLocked(req, tpb, shared, res)
		return nil
	})
	p.m.lookupHitTokens.Add(ctx, int64(res.MatchedTokens))
	p.m.lookupMissTokens.Add(ctx, int64(len(req.Tokens)-res.MatchedTokens))
	p.m.lookupHitBlocks.Add(ctx, int64(len(res.Blocks)))
	if miss := spec.BlocksFor(len(req.Tokens)) - len(res.Blocks); miss > 0 {
		p.m.lookupMissBlocks.Add(ctx, int64(miss))
	}
	return res, nil
}

// lookupLocked fills res with the agent's own match, then the shared one if
// that is longer.
func (p *Pool) lookupLocked(req LookupRequest, tpb int, shared []kvspec.Hash, res *LookupResult) {
	if e := p.agents.get(req.AgentID); e != nil {
		r := e.rec
		res.AgentVersion = r.Version
		res.AgentTokens = r.Tokens // immutable: safe to share
		p.agents.touch(e, p.clock.Now())
		// Only under the salt its hashes were made with: a record of
		// another salt would hand out blocks that a commit under the
		// request's salt then refuses (the turn would not be saved).
		if r.ModelTag == req.ModelTag && r.Salt == req.Salt {
			n := min(len(r.Tokens), len(req.Tokens))
			lcp := 0
			for lcp < n && r.Tokens[lcp] == req.Tokens[lcp] {
				lcp++
			}
			for i := 0; i*tpb < lcp; i++ {
				res.Blocks = append(res.Blocks, CachedBlock{
					Hash: r.Hashes[i], TokenCount: min(tpb, len(r.Tokens)-i*tpb), UsableTokens: min(tpb, lcp-i*tpb),
				})
			}
			if lcp > 0 {
				res.MatchedTokens, res.Source = lcp, MatchAgent
			}
		}
	}
	k := 0
	for k < len(shared) {
		if _, ok := p.slots.index[shared[k]]; !ok {
			break
		}
		k++
	}
	if k*tpb > res.MatchedTokens {
		res.MatchedTokens, res.Source = k*tpb, MatchShared
		res.Blocks = res.Blocks[:0]
		for i := range k {
			res.Blocks = append(res.Blocks, CachedBlock{Hash: shared[i], TokenCount: tpb, UsableTokens: tpb})
		}
	}
}

// GetAgent returns a copy of an agent's record.
func (p *Pool) GetAgent(id string) (*AgentRecord, error) {
	var r *AgentRecord
	err := p.withLock(func() error {
		e := p.agents.get(id)
		if e == nil {
			return ErrAgentNotFound
		}
		r = recordOf(e)
		return nil
	})
	return r, err
}

func recordOf(e *agentEntry) *AgentRecord {
	r := e.rec
	return &AgentRecord{AgentID: r.ID, ModelTag: r.ModelTag, Salt: r.Salt, Hashes: r.Hashes, Tokens: r.Tokens,
		Version: r.Version, LastUsed: e.lastUsed, Created: r.Created}
}

// DeleteAgent drops an agent record (if expectedVersion is nonzero, only at
// that version) and returns how many blocks lost their last reference.
func (p *Pool) DeleteAgent(ctx context.Context, id string, expectedVersion uint64) (int, error) {
	ps := &persistSet{}
	var n int
	err := p.withLock(func() error {
		e := p.agents.get(id)
		if e == nil {
			return ErrAgentNotFound
		}
		if expectedVersion != 0 && e.rec.Version != expectedVersion {
			return fmt.Errorf("%w: have version %d, expected %d", ErrVersionMismatch, e.rec.Version, expectedVersion)
		}
		n = p.removeAgentLocked(e, ps)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, p.persist(context.WithoutCancel(ctx), ps)
}

// ListAgents returns up to pageSize records in agent id order, starting
// strictly after the id after ("" for the first page), only tenant's agents
// when tenant is not empty (Options.TenantOf), and whether more follow. The
// id is a stable key: agents used, added or deleted between pages never shift
// the others, so each agent present throughout a listing is listed once.
func (p *Pool) ListAgents(pageSize int, after, tenant string) (page []*AgentRecord, more bool) {
	if pageSize < 1 {
		pageSize = 1
	}
	_ = p.withLock(func() error {
		// The pageSize+1 smallest ids after the cursor, kept sorted: one
		// pass over the table (in random map order, so few insertions)
		// instead of sorting every agent under the lock.
		top := make([]*agentEntry, 0, min(pageSize+1, p.agents.len()))
		for e := range p.agents.all() {
			id := e.rec.ID
			if id <= after || tenant != "" && p.agents.tenant(id) != tenant {
				continue
			}
			if len(top) == pageSize+1 && id >= top[pageSize].rec.ID {
				continue
			}
			i, _ := slices.BinarySearchFunc(top, id, func(x *agentEntry, id string) int { return strings.Compare(x.rec.ID, id) })
			top = slices.Insert(top, i, e)
			if len(top) > pageSize+1 {
				top = top[:pageSize+1]
			}
		}
		more = len(top) > pageSize
		page = make([]*AgentRecord, 0, min(len(top), pageSize))
		for _, e := range top[:min(len(top), pageSize)] {
			page = append(page, recordOf(e))
		}
		return nil
	})
	return page, more
}
