package pool

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/rpcstatus"
)

// CommitRequest replaces an agent's record.
type CommitRequest struct {
	LeaseID, Epoch  uint64 // the lease new blocks were written through (0: none)
	AgentID         string
	ModelTag        string
	Salt            string
	Hashes          []kvspec.Hash
	Tokens          []uint32
	ExpectedVersion uint64 // 0: the agent must not exist
}

// AgentRecord is a read-only copy of an agent record.
type AgentRecord struct {
	AgentID, ModelTag, Salt string
	Hashes                  []kvspec.Hash
	Tokens                  []uint32
	Version                 uint64
	LastUsed, Created       time.Time
}

func validAgent(field, id string) error {
	if !rpcstatus.ValidAgentID(id) {
		return argErr(field, "must match [A-Za-z0-9._:-]{1,128}")
	}
	return nil
}

// CommitAgent atomically replaces the agent's record (optimistic concurrency
// on ExpectedVersion). Every hash must be cached or filled through the lease,
// and the hashes must be the chain hashes of the tokens (kvspec.ChainHashes
// with the tail), so that the index never names a block by a hash that does
// not describe its tokens. It returns after the record is durable.
func (p *Pool) CommitAgent(ctx context.Context, req CommitRequest) (uint64, error) {
	if err := validAgent("agent_id", req.AgentID); err != nil {
		return 0, err
	}
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
	p.lock()
	if p.spec == nil || *p.spec != *spec {
		p.mu.Unlock()
		return 0, fmt.Errorf("%w: spec changed during the commit", ErrAborted)
	}
	var l *lease
	if req.LeaseID != 0 {
		var err error
		if l, err = p.leaseLocked(req.LeaseID, req.Epoch); err != nil {
			p.mu.Unlock()
			return 0, err
		}
	}
	cur := p.agents[req.AgentID]
	var curV uint64
	if cur != nil {
		curV = cur.rec.Version
	}
	if curV != req.ExpectedVersion {
		p.mu.Unlock()
		return 0, fmt.Errorf("%w: have version %d, expected %d", ErrVersionMismatch, curV, req.ExpectedVersion)
	}
	var written map[kvspec.Hash]int32
	if l != nil {
		for _, id := range l.slots {
			if s := &p.slots[id]; s.filled && !s.indexed {
				if written == nil {
					written = map[kvspec.Hash]int32{}
				}
				written[s.hash] = id
			}
		}
	}
	for i, h := range req.Hashes {
		if _, ok := p.index[h]; ok {
			continue
		}
		if _, ok := written[h]; !ok {
			p.mu.Unlock()
			return 0, fmt.Errorf("%w: block_hashes[%d] (%s) is neither cached nor written through the lease", ErrBlockNotFound, i, h)
		}
	}
	// All checks passed: apply. Increment before decrementing so that a block
	// in both the old and new chain never passes through zero.
	ps := &persistSet{}
	ps.agent(req.AgentID)
	for _, h := range req.Hashes {
		id, ok := p.index[h]
		if !ok {
			id = written[h]
			p.index[h] = id
			p.slots[id].indexed = true
		}
		s := &p.slots[id]
		s.refs++
		if s.inLRU {
			p.lru.remove(id)
			s.inLRU = false
		}
		ps.block(h)
	}
	now := p.clock.Now()
	rec := &agentRec{
		ID: req.AgentID, ModelTag: req.ModelTag, Salt: req.Salt, Version: curV + 1, Created: now,
		Hashes: slices.Clone(req.Hashes), Tokens: slices.Clone(req.Tokens),
	}
	if cur != nil {
		rec.Created = cur.rec.Created
		p.unref(cur.rec.Hashes, ps)
		cur.rec = rec
		cur.lastUsed = now
		p.agentLRU.MoveToBack(cur.elem)
	} else {
		e := &agentEntry{rec: rec, lastUsed: now}
		e.elem = p.agentLRU.PushBack(e)
		p.agents[req.AgentID] = e
	}
	p.mu.Unlock()
	if err := p.persist(context.WithoutCancel(ctx), ps); err != nil {
		return 0, err
	}
	return rec.Version, nil
}

// unref drops one reference from each hash (tail first, so that a chain's
// tail is evicted before its head) and returns how many blocks became
// evictable.
func (p *Pool) unref(hashes []kvspec.Hash, ps *persistSet) int {
	n := 0
	for i := len(hashes) - 1; i >= 0; i-- {
		id := p.index[hashes[i]]
		s := &p.slots[id]
		s.refs--
		if s.refs == 0 {
			n++
			if s.state == stateCached && !s.inLRU {
				p.lru.pushBack(id)
				s.inLRU = true
			}
		}
		ps.block(hashes[i])
	}
	return n
}

// removeAgent drops an agent record; its blocks lose a reference.
func (p *Pool) removeAgent(e *agentEntry, ps *persistSet) int {
	delete(p.agents, e.rec.ID)
	p.agentLRU.Remove(e.elem)
	ps.agent(e.rec.ID)
	return p.unref(e.rec.Hashes, ps)
}

// trimAgentsAt cuts every agent record that names h to the blocks before it
// (or drops it if h is its first block): an agent record never points at a
// block that is gone. It scans all agents; it runs only when a block is lost.
func (p *Pool) trimAgentsAt(h kvspec.Hash, ps *persistSet) {
	for _, e := range p.agents {
		i := slices.Index(e.rec.Hashes, h)
		if i < 0 {
			continue
		}
		if i == 0 {
			p.removeAgent(e, ps)
			continue
		}
		r := *e.rec
		r.Hashes = slices.Clone(e.rec.Hashes[:i])
		r.Tokens = slices.Clone(e.rec.Tokens[:i*p.spec.TokensPerBlock])
		r.Version++
		p.unref(e.rec.Hashes[i:], ps)
		e.rec = &r
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
	if err := validAgent("agent_id", req.AgentID); err != nil {
		return nil, err
	}
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
	p.lock()
	if e := p.agents[req.AgentID]; e != nil {
		r := e.rec
		res.AgentVersion = r.Version
		res.AgentTokens = r.Tokens // immutable: safe to share
		e.lastUsed = p.clock.Now()
		p.agentLRU.MoveToBack(e.elem)
		if r.ModelTag == req.ModelTag {
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
		if _, ok := p.index[shared[k]]; !ok {
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
	p.mu.Unlock()
	p.m.lookupHitTokens.Add(ctx, int64(res.MatchedTokens))
	p.m.lookupMissTokens.Add(ctx, int64(len(req.Tokens)-res.MatchedTokens))
	p.m.lookupHitBlocks.Add(ctx, int64(len(res.Blocks)))
	if miss := spec.BlocksFor(len(req.Tokens)) - len(res.Blocks); miss > 0 {
		p.m.lookupMissBlocks.Add(ctx, int64(miss))
	}
	return res, nil
}

// GetAgent returns a copy of an agent's record.
func (p *Pool) GetAgent(id string) (*AgentRecord, error) {
	p.lock()
	defer p.mu.Unlock()
	e := p.agents[id]
	if e == nil {
		return nil, ErrAgentNotFound
	}
	return recordOf(e), nil
}

func recordOf(e *agentEntry) *AgentRecord {
	r := e.rec
	return &AgentRecord{AgentID: r.ID, ModelTag: r.ModelTag, Salt: r.Salt, Hashes: r.Hashes, Tokens: r.Tokens,
		Version: r.Version, LastUsed: e.lastUsed, Created: r.Created}
}

// DeleteAgent drops an agent record (if expectedVersion is nonzero, only at
// that version) and returns how many blocks lost their last reference.
func (p *Pool) DeleteAgent(ctx context.Context, id string, expectedVersion uint64) (int, error) {
	p.lock()
	e := p.agents[id]
	if e == nil {
		p.mu.Unlock()
		return 0, ErrAgentNotFound
	}
	if expectedVersion != 0 && e.rec.Version != expectedVersion {
		p.mu.Unlock()
		return 0, fmt.Errorf("%w: have version %d, expected %d", ErrVersionMismatch, e.rec.Version, expectedVersion)
	}
	ps := &persistSet{}
	n := p.removeAgent(e, ps)
	p.mu.Unlock()
	return n, p.persist(context.WithoutCancel(ctx), ps)
}

// ListAgents returns up to pageSize records, most recently used first, after
// the cursor in pageToken; the returned token is empty on the last page.
func (p *Pool) ListAgents(pageSize int, pageToken string) ([]*AgentRecord, string, error) {
	var curT int64
	var curID string
	if pageToken != "" {
		b, err := base64.RawURLEncoding.DecodeString(pageToken)
		ts, id, ok := strings.Cut(string(b), ":")
		if err != nil || !ok {
			return nil, "", argErr("page_token", "malformed")
		}
		if curT, err = strconv.ParseInt(ts, 10, 64); err != nil {
			return nil, "", argErr("page_token", "malformed")
		}
		curID = id
	}
	p.lock()
	all := make([]*AgentRecord, 0, len(p.agents))
	for _, e := range p.agents {
		all = append(all, recordOf(e))
	}
	p.mu.Unlock()
	// Order: last use descending, then id ascending; the cursor is the last
	// (time, id) returned, so a page is stable under concurrent inserts.
	before := func(a *AgentRecord, t int64, id string) bool {
		at := a.LastUsed.UnixNano()
		return at > t || at == t && a.AgentID < id
	}
	slices.SortFunc(all, func(a, b *AgentRecord) int {
		if a.AgentID == b.AgentID {
			return 0
		}
		if before(a, b.LastUsed.UnixNano(), b.AgentID) {
			return -1
		}
		return 1
	})
	start := 0
	if pageToken != "" {
		start = len(all)
		for i, a := range all {
			if !before(a, curT, curID) && !(a.LastUsed.UnixNano() == curT && a.AgentID == curID) {
				start = i
				break
			}
		}
	}
	end := min(start+pageSize, len(all))
	page := all[start:end]
	next := ""
	if end < len(all) && len(page) > 0 {
		last := page[len(page)-1]
		next = base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%d:%s", last.LastUsed.UnixNano(), last.AgentID))
	}
	return page, next, nil
}
