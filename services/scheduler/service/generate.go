package service

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
	"github.com/semantic-kv/semantic/pkg/chat"
	"github.com/semantic-kv/semantic/pkg/engine"
	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/model"
	"github.com/semantic-kv/semantic/pkg/poolwire"
	"github.com/semantic-kv/semantic/pkg/rpcstatus"
	"github.com/semantic-kv/semantic/services/scheduler/auth"
	"github.com/semantic-kv/semantic/services/scheduler/batch"
	"github.com/semantic-kv/semantic/services/scheduler/poolnode"
)

// Limits on Generate requests. MaxStops and MaxStopBytes are exported for
// front ends that check a request in their own terms first.
const (
	MaxStops     = 16
	MaxStopBytes = 256
	maxTemp      = 100
)

// request is one Generate call on its way through the scheduler: what was
// asked, and what it holds on its pool node to compute it.
type request struct {
	admitted
	holding
}

// admitted is a request as validated and placed: who asks, for which agent,
// what the model computes over, and how far. Run and validate fill it, the
// lookup settles its context (append, realign); after that it does not
// change.
type admitted struct {
	req     *schedulerv1.GenerateRequest
	arrival time.Time
	who     auth.Principal
	key     string   // the agent's pool id: poolwire.AgentKey(tenant, agent_id)
	salt    string   // the cache salt the pool sees: tenantSalt(tenant, cache_salt)
	prompt  []uint32 // the prompt as given (tokenized)
	context []uint32 // what the model computes over: stored context + prompt for append
	maxTok  int
	maxPos  int
}

// holding is what a request holds on its pool node: the node, the agent's
// record version it read there, its lease, and the sequence's pages as load
// built them. The block writer adds the hashes of the blocks it computes.
type holding struct {
	node    poolnode.Node
	version uint64 // agent record version read by the lookup

	lease   poolnode.Lease
	seq     *engine.Sequence
	cached  int // positions reused
	hot     int // of which from the hot cache
	kShared int // leading blocks used in place (already in the pool)
	fresh   []*blockpoolv1.LeasedBlock
	// hashes of the sequence's blocks, filled as blocks are computed.
	hashes []kvspec.Hash
}

// Generate is the gRPC handler of Generate: Run on the stream.
func (s *Server) Generate(req *schedulerv1.GenerateRequest, stream schedulerv1.SchedulerService_GenerateServer) error {
	return s.Run(stream.Context(), req, stream.Send)
}

// Run executes one Generate request for any transport (the gRPC handler, the
// HTTP API): validate, wait for the agent, find the cached prefix, lease,
// load, batch, stream, write back, commit, release.
//
// send is called on Run's goroutine, in order: one message per generated
// token, then the final message (finish reason, usage, and any text held
// back to the end), which is sent after the lease is released and the
// agent's record committed. Errors are gRPC statuses whose INVALID_ARGUMENT
// details name the request's field (rpcstatus); transports map them to their
// own errors. An error from send ends generation at the next step and is
// returned as it is; so does the end of ctx (a client that went away).
//
// The request runs as the auth.Principal its transport put in ctx: the
// agent is its tenant's (tenant.go), and its tenant's quota applies.
func (s *Server) Run(ctx context.Context, req *schedulerv1.GenerateRequest, send func(*schedulerv1.GenerateResponse) error) (err error) {
	r := &request{admitted: admitted{req: req, arrival: time.Now()}}
	// The transport's own send error is returned as it is; every other
	// error leaves as a status (toStatus, the service's one mapping).
	var sendErr error
	transportSend := send
	send = func(m *schedulerv1.GenerateResponse) error {
		if err := transportSend(m); err != nil {
			sendErr = err
			return err
		}
		return nil
	}
	defer func() {
		if err != nil && err != sendErr {
			err = toStatus(err)
		}
		outcome := "ok"
		if err != nil {
			outcome = status.Code(err).String()
			s.failed.Add(1)
		} else {
			s.completed.Add(1)
		}
		s.m.requests.Add(context.Background(), 1, metric.WithAttributes(attribute.String("outcome", outcome)))
	}()
	if r.who, err = s.principal(ctx); err != nil {
		return err
	}
	if err := s.validate(&r.admitted); err != nil {
		return err
	}
	r.key = poolwire.AgentKey(r.who.Tenant, req.GetAgentId())
	r.salt = tenantSalt(r.who.Tenant, req.GetCacheSalt())
	// A tenant's quota counts its requests waiting as well as running, so
	// that one tenant cannot fill the queues either.
	done, ok := s.tenants.acquire(r.who.Tenant, r.who.Quota.MaxRequests)
	if !ok {
		return rpcstatus.Exhausted(TenantRequestsSubject, "tenant %q has %d requests in flight, the most its quota (max_requests) allows", r.who.Tenant, r.who.Quota.MaxRequests)
	}
	defer done()
	// One agent's requests queue behind each other per agent (bounded by
	// MaxAgentQueue); only the one holding the agent's lock takes a global
	// admission slot, so a busy agent cannot lock the others out.
	unlock, err := s.agents.lock(ctx, r.key, s.cfg.MaxAgentQueue)
	if errors.Is(err, errAgentQueueFull) {
		return rpcstatus.Exhausted(AgentQueueSubject, "agent %q has %d requests running or waiting, the most allowed per agent", req.GetAgentId(), s.cfg.MaxAgentQueue)
	}
	if err != nil {
		return err
	}
	defer unlock()
	select {
	case s.admit <- struct{}{}:
		defer func() { <-s.admit }()
	default:
		return rpcstatus.Exhausted(QueueSubject, "admission queue full (%d requests in flight)", cap(s.admit))
	}

	if err := s.prepare(ctx, r); err != nil {
		return err
	}
	// From here on the request holds a lease: every path releases it, and
	// before the final message, so that a client that sees the end of its
	// stream can count on its agent's cache being settled.
	released := false
	release := func(commit bool) {
		released = true
		if rerr := r.lease.Release(commit); rerr != nil {
			s.log.Warn("releasing lease", "agent", r.key, "lease", r.lease.ID(), "commit", commit, "err", rerr)
		}
		s.leasedBlocks.Add(-int64(len(r.lease.Blocks())))
	}
	// A panic below is turned into INTERNAL by the server's interceptor; this
	// makes sure it does not also strand the lease until its TTL runs out.
	defer func() {
		if !released {
			release(false)
		}
	}()
	final, committed, err := s.run(ctx, r, send)
	release(committed)
	if err != nil {
		return err
	}
	return send(final)
}

// Subjects of the RESOURCE_EXHAUSTED statuses Run returns (QuotaFailure):
// a full admission queue is worth retrying soon; a request that needs more
// blocks than the pool has is not.
const (
	QueueSubject      = rpcstatus.SubjectQueue
	AgentQueueSubject = rpcstatus.SubjectAgentQueue
	PoolBlocksSubject = rpcstatus.SubjectPoolBlocks
)

// validate checks the request and tokenizes the prompt.
func (s *Server) validate(r *admitted) error {
	req := r.req
	if err := rpcstatus.CheckAgentID("agent_id", req.GetAgentId()); err != nil {
		return err
	}
	m := s.cfg.Model
	if req.GetPrompt() != "" && len(req.GetPromptTokenIds()) > 0 {
		return rpcstatus.InvalidArgument("prompt", "give prompt or prompt_token_ids, not both")
	}
	if len(req.GetMessages()) > 0 && (req.GetPrompt() != "" || len(req.GetPromptTokenIds()) > 0) {
		return rpcstatus.InvalidArgument("messages", "give messages, prompt or prompt_token_ids, not several")
	}
	switch {
	case len(req.GetMessages()) > 0:
		if req.GetAppend() {
			return rpcstatus.InvalidArgument("append", "not allowed with messages: resend the whole conversation, its cached prefix is reused")
		}
		ids, err := s.renderMessages(req.GetMessages())
		if err != nil {
			return err
		}
		r.prompt = ids
	case len(req.GetPromptTokenIds()) > 0:
		for i, id := range req.GetPromptTokenIds() {
			if !inVocab(id, m.Config.Vocab) {
				return rpcstatus.InvalidArgument(fmt.Sprintf("prompt_token_ids[%d]", i), "token id %d is outside the vocabulary of %d", id, m.Config.Vocab)
			}
		}
		// The ids are the engine's type: the request's slice is the prompt
		// (the service only reads it; every context built from it is a new
		// slice).
		r.prompt = req.GetPromptTokenIds()
	case req.GetPrompt() != "":
		if m.Tokenizer == nil {
			return rpcstatus.InvalidArgument("prompt", "model %s has no tokenizer: send prompt_token_ids", m.Name)
		}
		if limit := m.MaxTextBytes(); len(req.GetPrompt()) > limit {
			return rpcstatus.TooLong("prompt", "%d bytes cannot fit the model's context of %d tokens (at most %d bytes)", len(req.GetPrompt()), m.Config.SeqLen, limit)
		}
		// A text prompt that continues a stored context must not get a
		// second BOS in the middle of it.
		r.prompt = encodePrompt(m, req.GetPrompt(), !req.GetAppend() && m.BOS >= 0)
	case !req.GetAppend():
		return rpcstatus.InvalidArgument("prompt", "prompt or prompt_token_ids is required")
	}
	seqLen := m.Config.SeqLen
	if req.GetMaxTokens() == 0 || int(req.GetMaxTokens()) > seqLen {
		return rpcstatus.InvalidArgument("max_tokens", "must be in 1..%d", seqLen)
	}
	if t := req.GetTemperature(); t < 0 || t > maxTemp || t != t {
		return rpcstatus.InvalidArgument("temperature", "must be in 0..%d", maxTemp)
	}
	if p := req.GetTopP(); p < 0 || p > 1 || p != p {
		return rpcstatus.InvalidArgument("top_p", "must be in 0..1")
	}
	if int(req.GetTopK()) > m.Config.Vocab {
		return rpcstatus.InvalidArgument("top_k", "must be at most the vocabulary size %d", m.Config.Vocab)
	}
	if len(req.GetStop()) > MaxStops {
		return rpcstatus.InvalidArgument("stop", "at most %d stop strings", MaxStops)
	}
	for i, st := range req.GetStop() {
		if len(st) == 0 || len(st) > MaxStopBytes {
			return rpcstatus.InvalidArgument(fmt.Sprintf("stop[%d]", i), "must be 1..%d bytes", MaxStopBytes)
		}
	}
	if len(req.GetStop()) > 0 && m.Tokenizer == nil {
		return rpcstatus.InvalidArgument("stop", "model %s has no tokenizer to match stop strings with", m.Name)
	}
	if len(req.GetCacheSalt()) > poolwire.MaxSaltLen {
		return rpcstatus.InvalidArgument("cache_salt", "at most %d bytes", poolwire.MaxSaltLen)
	}
	return nil
}

// renderMessages renders and tokenizes a conversation (model.ChatTokens:
// special tokens only from the template's markup, never from the content).
func (s *Server) renderMessages(in []*schedulerv1.ChatMessage) ([]uint32, error) {
	m := s.cfg.Model
	msgs := make([]chat.Message, len(in))
	total := 0
	for i, msg := range in {
		msgs[i] = chat.Message{Role: msg.GetRole(), Content: msg.GetContent()}
		total += len(msg.GetContent())
	}
	// The rendering holds every content, so contents that alone cannot fit
	// are refused as too long before the template runs; ChatTokens refuses
	// a rendering that the template's markup makes too long.
	if limit := m.MaxTextBytes(); m.Tokenizer != nil && total > limit {
		return nil, rpcstatus.TooLong("messages", "%d bytes of content cannot fit the model's context of %d tokens (at most %d bytes)", total, m.Config.SeqLen, limit)
	}
	ids, err := chatTokens(m, msgs)
	switch {
	case errors.Is(err, model.ErrTooLong):
		return nil, rpcstatus.TooLong("messages", "%v", err)
	case errors.Is(err, model.ErrBadConversation):
		return nil, rpcstatus.InvalidArgument("messages", "%v", err)
	case err != nil:
		return nil, status.Errorf(codes.FailedPrecondition, "messages: %v", err)
	}
	return ids, nil
}

// prepare picks the node, finds the cached prefix, leases the blocks and
// loads the hits. A node that fails with UNAVAILABLE is skipped for the next
// one in the agent's rendezvous order, so one dead node never fails a request.
func (s *Server) prepare(ctx context.Context, r *request) error {
	if r.req.GetAppend() {
		// append continues the stored context, on the node that holds it
		// and only there: a fallback node would run without it.
		n, rec, err := s.findStored(ctx, r.key, r.req.GetAgentId())
		if err != nil {
			return err
		}
		if err := s.checkStored(r.req.GetAgentId(), n, rec); err != nil {
			return err
		}
		r.node = n
		// A new slice: the record's and the prompt's are only read.
		r.context = slices.Concat(rec.GetTokenIds(), r.prompt)
		if len(r.context) == 0 {
			return rpcstatus.InvalidArgument("prompt", "append to an agent with no stored context needs a prompt")
		}
		return s.prepareOn(ctx, r)
	}
	var lastErr error = poolnode.ErrNoHealthyNode
	for _, n := range s.pool.Order(r.key) {
		if !n.Healthy() {
			continue
		}
		r.node = n
		err := s.prepareOn(ctx, r)
		if err == nil {
			return nil
		}
		if status.Code(err) != codes.Unavailable || ctx.Err() != nil {
			return err
		}
		s.log.Warn("pool node failed; trying the next", "pool", n.Address(), "agent", r.key, "err", err)
		lastErr = err
	}
	return lastErr
}

func (s *Server) prepareOn(ctx context.Context, r *request) error {
	spec := s.cfg.Spec
	tpb := spec.TokensPerBlock
	if !r.req.GetAppend() {
		r.context = r.prompt
	}
	seqLen := s.cfg.Model.Config.SeqLen
	if len(r.context) >= seqLen {
		return rpcstatus.TooLong(r.contextField(), "context of %d tokens leaves no room in the model's %d", len(r.context), seqLen)
	}
	lk, err := s.lookup(ctx, r)
	if err != nil {
		return err
	}
	r.maxPos = min(len(r.context)+int(r.req.GetMaxTokens()), seqLen)
	r.maxTok = int(r.req.GetMaxTokens())
	r.version = lk.GetAgentVersion()
	// At least the last prompt token is computed: its logits give the first
	// generated token.
	matched := min(int(lk.GetMatchedTokens()), len(r.context)-1)
	var pin []kvspec.Hash
	var uses []int
	// Every reused block must be what this request would have computed and
	// hashed, salt included: the node matches the agent's own record by its
	// token ids whatever salt the record was written with, and a block of
	// another salt would both cross the salt boundary and break this turn's
	// hash chain, so that its commit is refused. A block whose hash is not
	// the chain hash of its tokens under this request's salt ends the reuse.
	salt := r.salt
	want := kvspec.ChainHashes(r.context, tpb, spec.ModelTag, salt, false)
	var recHashes []kvspec.Hash // the agent record's, under this salt (for a partly used block)
	for i, b := range lk.GetBlocks() {
		start := i * tpb
		if start >= matched {
			break
		}
		use := min(tpb, matched-start, int(b.GetUsableTokens()))
		if use <= 0 {
			break
		}
		// A block of the context's own chain is good whether used in full
		// or in part; a partly used one may also be the agent record's
		// tail (or a block where the record and the context part ways).
		var h kvspec.Hash
		if i < len(want) && string(b.GetHash()) == string(want[i][:]) {
			h = want[i]
		} else {
			if use == tpb {
				break
			}
			if recHashes == nil {
				recHashes = kvspec.ChainHashes(lk.GetAgentTokenIds(), tpb, spec.ModelTag, salt, true)
			}
			if i >= len(recHashes) || string(b.GetHash()) != string(recHashes[i][:]) {
				break
			}
			h = recHashes[i]
		}
		pin = append(pin, h)
		uses = append(uses, use)
		if use < tpb {
			break
		}
	}
	nBlocks := spec.BlocksFor(r.maxPos)
	err = s.leaseAndLoad(ctx, r, pin, uses, nBlocks)
	// A full hit that could not be read (evicted, corrupt, node trouble)
	// leaves the lease, sized for every full hit to be used in place, short
	// of fresh pages: lease again for the prefix that did load, so that the
	// request runs colder instead of failing. Each retry pins strictly fewer
	// blocks (the unreadable one and those after it are dropped), and with
	// nothing pinned nothing is read, so this ends.
	var short *shortLeaseError
	for errors.As(err, &short) {
		s.log.Warn("cached block unreadable; leasing again for the shorter prefix", "agent", r.key, "usable_blocks", short.usable, "pinned", len(pin))
		pin, uses = pin[:short.usable], uses[:short.usable]
		err = s.leaseAndLoad(ctx, r, pin, uses, nBlocks)
	}
	return err
}

// shortLeaseError is load's report that a full hit did not load, leaving
// the lease a fresh page short: only the first usable pinned blocks loaded.
type shortLeaseError struct{ usable, fresh, need int }

func (e *shortLeaseError) Error() string {
	return fmt.Sprintf("lease has %d fresh blocks, need %d (%d cached blocks usable)", e.fresh, e.need, e.usable)
}

// leaseAndLoad leases the pinned hits plus fresh blocks for nBlocks pages on
// the agent's node and loads them (load). On failure the lease is released
// and r holds none.
func (s *Server) leaseAndLoad(ctx context.Context, r *request, pin []kvspec.Hash, uses []int, nBlocks int) error {
	kFull := 0
	for kFull < len(uses) && uses[kFull] == s.cfg.Spec.TokensPerBlock {
		kFull++
	}
	count := len(pin) + nBlocks - kFull
	if capacity := r.node.CapacityBlocks(); capacity > 0 && count > capacity {
		// More blocks than the node has at all: for the caller that is the
		// pool being too small, not a malformed request. (The node would
		// refuse the count as INVALID_ARGUMENT.)
		return rpcstatus.Exhausted(PoolBlocksSubject, "request needs %d blocks for %d positions; pool node %s has %d", count, r.maxPos, r.node.Name(), capacity)
	}
	lease, err := r.node.Lease(ctx, poolnode.LeaseRequest{
		Holder: s.cfg.HolderID, AgentKey: r.key, Count: count, Pin: pin, ModelTag: s.cfg.Spec.ModelTag,
	})
	if err != nil {
		return err
	}
	r.lease = lease
	s.leasedBlocks.Add(int64(len(lease.Blocks())))
	// The load phase's span is the service's own (hot cache, pool reads,
	// copy on write); the pool calls inside it are measured by the node's
	// decorator (poolnode.Instrument).
	lctx, span := s.tracer.Start(ctx, "load", trace.WithAttributes(attribute.Int("hits", lease.Hits())))
	err = s.load(lctx, r.key, &r.holding, pin, uses, nBlocks)
	span.SetAttributes(attribute.Int("cached_tokens", r.cached), attribute.Int("hot_cached_tokens", r.hot))
	poolnode.EndSpan(span, err)
	if err != nil {
		s.leasedBlocks.Add(-int64(len(lease.Blocks())))
		if rerr := lease.Release(false); rerr != nil {
			s.log.Warn("releasing lease after failed load", "err", rerr)
		}
		r.lease = nil
		return err
	}
	return nil
}

// findStored finds the agent's stored context for an append: on its home
// node (the first in its rendezvous order), else on the other candidate
// nodes in that order (a home that moved, a record written while the home
// was down). It returns the node that holds the record and the record; a nil
// record (on the home node) when no node has one, which append treats as
// an agent with no context yet. It never guesses: a home node that is down,
// a node that is down before the record was found, or a node that fails the
// lookup fails the request (UNAVAILABLE, or the node's error) with a message
// saying so, since going on could drop the agent's conversation.
func (s *Server) findStored(ctx context.Context, key, agent string) (poolnode.Node, *blockpoolv1.AgentRecord, error) {
	order := s.pool.Order(key)
	if len(order) == 0 {
		return nil, nil, poolnode.ErrNoHealthyNode
	}
	for i, n := range order {
		if !n.Healthy() {
			if i == 0 {
				return nil, nil, status.Errorf(codes.Unavailable, "append needs agent %q's home pool node %s, which is down; resend the whole context instead", agent, n.Name())
			}
			return nil, nil, status.Errorf(codes.Unavailable, "append: agent %q is not on its home pool node %s and candidate node %s is down, so its stored context cannot be found; retry, or resend the whole context instead", agent, order[0].Name(), n.Name())
		}
		rec, err := n.GetAgent(ctx, key)
		switch status.Code(err) {
		case codes.OK:
			return n, rec, nil
		case codes.NotFound:
			continue
		}
		return nil, nil, status.Errorf(status.Code(err), "append: looking up agent %q's stored context on pool node %s: %s", agent, n.Name(), status.Convert(err).Message())
	}
	return order[0], nil, nil
}

// checkStored refuses a stored record that the engine cannot continue: of
// another model, or with token ids outside the vocabulary or more of them
// than the model's context (a damaged or foreign record). The request fails
// alone, with FAILED_PRECONDITION naming the agent's record; a nil record
// passes.
func (s *Server) checkStored(agent string, n poolnode.Node, rec *blockpoolv1.AgentRecord) error {
	if rec == nil {
		return nil
	}
	if tag := rec.GetModelTag(); tag != "" && tag != s.cfg.Spec.ModelTag {
		return status.Errorf(codes.FailedPrecondition, "agent %q's record on pool node %s is of model %q, not the served %q: delete the agent or resend the whole context", agent, n.Name(), tag, s.cfg.Spec.ModelTag)
	}
	return s.checkTokens(agent, n, rec.GetTokenIds())
}

// checkTokens refuses stored token ids the engine cannot run (see checkStored).
func (s *Server) checkTokens(agent string, n poolnode.Node, ids []uint32) error {
	m := s.cfg.Model.Config
	if len(ids) > m.SeqLen {
		return status.Errorf(codes.FailedPrecondition, "agent %q's record on pool node %s is damaged: %d tokens, more than the model's context of %d", agent, n.Name(), len(ids), m.SeqLen)
	}
	for i, id := range ids {
		if !inVocab(id, m.Vocab) {
			return status.Errorf(codes.FailedPrecondition, "agent %q's record on pool node %s is damaged: token %d is id %d, outside the vocabulary of %d", agent, n.Name(), i, id, m.Vocab)
		}
	}
	return nil
}

// lookup asks r.node for the longest cached prefix of r.context.
//
// A context tokenized from text (a prompt that is not appended, messages) is
// also compared with the agent's stored context, which holds the ids the
// model actually produced: when the stored ids spell the same text further
// than the two id sequences agree (see realign), they replace that part of
// the context and the node is asked again. A client resending a reply as
// text thus reuses all of it, even where tokenizing the text splits it
// differently from the ids the model sampled.
func (s *Server) lookup(ctx context.Context, r *request) (*blockpoolv1.LookupAgentResponse, error) {
	lk, err := s.lookupOnce(ctx, r, r.context, false)
	if err != nil || !r.fromText() || s.cfg.Model.Tokenizer == nil {
		return lk, err
	}
	stored := lk.GetAgentTokenIds()
	if err := s.checkTokens(r.req.GetAgentId(), r.node, stored); err != nil {
		// A damaged record is never spliced into a context. This request
		// has its whole context: it runs without realigning, and its commit
		// replaces the damaged record.
		s.log.Warn("not realigning with a damaged agent record", "agent", r.key, "err", err)
		return lk, nil
	}
	tk := s.cfg.Model.Tokenizer
	k, j := realign(stored, r.context, func(id uint32) []byte { return tokenBytes(tk, id) })
	if k <= int(lk.GetMatchedTokens()) {
		return lk, nil
	}
	spliced := slices.Concat(stored[:k], r.context[j:])
	if len(spliced) >= s.cfg.Model.Config.SeqLen {
		return lk, nil
	}
	lk2, err := s.lookupOnce(ctx, r, spliced, true)
	if err != nil {
		return nil, err
	}
	// The node checks what the splice cannot: that the stored record is of
	// this model and salt, and that its blocks are there.
	if lk2.GetMatchedTokens() <= lk.GetMatchedTokens() {
		return lk, nil
	}
	r.context = spliced
	return lk2, nil
}

func (s *Server) lookupOnce(ctx context.Context, r *request, tokens []uint32, realigned bool) (*blockpoolv1.LookupAgentResponse, error) {
	return r.node.Lookup(ctx, poolnode.LookupRequest{
		AgentKey: r.key, Tokens: tokens, ModelTag: s.cfg.Spec.ModelTag, Salt: r.salt, Realigned: realigned,
	})
}

// fromText reports whether the request's context was tokenized from text
// here (and so may be realigned with the agent's stored ids).
func (r *admitted) fromText() bool {
	return len(r.req.GetMessages()) > 0 || r.req.GetPrompt() != "" && !r.req.GetAppend()
}

// contextField is the request field that gave the context.
func (r *admitted) contextField() string {
	switch {
	case len(r.req.GetMessages()) > 0:
		return "messages"
	case len(r.req.GetPromptTokenIds()) > 0:
		return "prompt_token_ids"
	}
	return "prompt"
}

// load builds the sequence's page table: hit blocks from the hot cache or the
// pool, used in place when full; a partially matching block copied into a
// fresh page (copy on write); fresh pages for the rest. A hit that cannot be
// read (evicted, corrupt, node trouble) shortens the reused prefix: the
// request runs colder, never wrong.
func (s *Server) load(ctx context.Context, agentKey string, r *holding, pin []kvspec.Hash, uses []int, nBlocks int) error {
	eng := s.cfg.Engine
	spec := s.cfg.Spec
	tpb := spec.TokensPerBlock
	lb := r.lease.Blocks()
	hits := r.lease.Hits()
	pages := make([]*engine.Block, hits)
	fromHot := make([]bool, hits)
	var want []uint32
	var wantIdx []int
	for i := 0; i < hits; i++ {
		if string(lb[i].GetHash()) != string(pin[i][:]) {
			hits = i
			break
		}
		if b, ok := s.hot.Get(pin[i]); ok {
			pages[i], fromHot[i] = b, true
			continue
		}
		want = append(want, lb[i].GetBlockId())
		wantIdx = append(wantIdx, i)
	}
	pages = pages[:hits]
	if len(want) > 0 {
		k := 0
		err := r.lease.ReadBlocks(ctx, want, func(h *blockpoolv1.BlockHeader, payload []byte) error {
			if kvspec.Checksum(payload) != h.GetChecksum() {
				return status.Errorf(codes.DataLoss, "block %d: checksum mismatch", h.GetBlockId())
			}
			// ReadBlocks hands over a fresh buffer per block: it becomes
			// the engine's page as it is, with no decoding copy (the
			// engine's pages are of the stored type: New checks it).
			b, err := engine.RawBlockView(spec, payload, spec.DType)
			if err != nil {
				return status.Errorf(codes.DataLoss, "block %d: %v", h.GetBlockId(), err)
			}
			i := wantIdx[k]
			pages[i] = b
			if hh, err := kvspec.HashFromBytes(h.GetHash()); err == nil {
				s.hot.Put(hh, b)
			}
			k++
			return nil
		})
		if err != nil {
			if ctx.Err() != nil {
				return status.FromContextError(ctx.Err()).Err()
			}
			s.log.Warn("reading cached blocks; continuing with a shorter prefix", "agent", agentKey, "err", err)
		}
	}
	// The reused prefix ends at the first hit that did not load.
	usable := 0
	for usable < len(pages) && pages[usable] != nil {
		usable++
	}
	r.kShared, r.cached, r.hot = 0, 0, 0
	for r.kShared < usable && uses[r.kShared] == tpb {
		if fromHot[r.kShared] {
			r.hot += tpb
		}
		r.kShared++
	}
	r.cached = r.kShared * tpb
	seq := &engine.Sequence{Blocks: make([]*engine.Block, 0, nBlocks)}
	seq.Blocks = append(seq.Blocks, pages[:r.kShared]...)
	r.fresh = lb[hits:]
	// The lease was sized for every full hit to be used in place: one that
	// did not load leaves it a fresh block short, and the caller leases
	// again for the prefix that did (leaseAndLoad's caller).
	if need := nBlocks - r.kShared; len(r.fresh) < need {
		return &shortLeaseError{usable: usable, fresh: len(r.fresh), need: need}
	}
	for len(seq.Blocks) < nBlocks {
		seq.Blocks = append(seq.Blocks, eng.NewBlock())
	}
	if r.kShared < usable {
		// Copy on write: the partially matching block's leading positions
		// go into this sequence's own page.
		n := uses[r.kShared]
		if err := engine.CopyPrefix(seq.Blocks[r.kShared], pages[r.kShared], spec, n); err != nil {
			return status.Errorf(codes.Internal, "copy-on-write: %v", err)
		}
		r.cached += n
		if fromHot[r.kShared] {
			r.hot += n
		}
	}
	seq.Len = r.cached
	r.seq = seq
	r.hashes = make([]kvspec.Hash, 0, nBlocks)
	r.hashes = append(r.hashes, pin[:r.kShared]...)
	return nil
}

// run feeds the sequence to the loop, streams its tokens (tokenStream),
// writes its new blocks back as they fill (blockWriter), and commits the
// agent's record. It returns the final message to send and whether the
// lease's blocks should be committed on release. It must not panic past its
// caller's release: the loop and the writer recover or report errors.
func (s *Server) run(ctx context.Context, r *request, send func(*schedulerv1.GenerateResponse) error) (*schedulerv1.GenerateResponse, bool, error) {
	// A send that fails (the client is gone, or its transport gave up) ends
	// the sequence at the loop's next step instead of computing tokens that
	// nobody reads.
	seqCtx, cancelSeq := context.WithCancel(ctx)
	defer cancelSeq()
	m := s.cfg.Model
	seq := &batch.Seq{
		Ctx: seqCtx, Tokens: r.context, Eng: r.seq, MaxTokens: r.maxTok, MaxPositions: r.maxPos,
		Sampler: engine.NewSampler(engine.SamplingParams{
			Temperature: r.req.GetTemperature(), TopK: int(r.req.GetTopK()), TopP: r.req.GetTopP(), Seed: r.req.GetSeed(),
		}),
		EOS:    endTokens(m),
		Events: make(chan batch.Event, r.maxTok+2),
	}
	if len(r.req.GetStop()) > 0 {
		sm := newStopMatcher(r.req.GetStop())
		seq.Stop = func(tok uint32) bool { return sm.push(tokenBytes(m.Tokenizer, tok)) >= 0 }
	}
	w := s.newBlockWriter(ctx, r.salt, &r.holding, seq)
	defer w.stop()
	if err := s.cfg.Loop.Submit(seq); err != nil {
		return nil, false, err
	}
	out := s.newTokenStream(ctx, &r.admitted, send, cancelSeq)
	var finish batch.Finish
	var runErr error
	for ev := range seq.Events {
		switch {
		case ev.Err != nil:
			runErr = ev.Err
		case ev.Finish != batch.FinishNone:
			finish = ev.Finish
		default:
			out.token(ev.Token)
		}
	}
	// A failed send cancels the sequence, whose cancellation then comes
	// back as the loop's error: the transport's error is the cause, and
	// what Run returns.
	if out.sendErr != nil {
		return nil, false, out.sendErr
	}
	if runErr != nil {
		return nil, false, runErr
	}
	// The loop is done with the sequence: the tail block can be hashed here.
	total := len(seq.Tokens) + len(seq.Generated)
	if rem := total % s.cfg.Spec.TokensPerBlock; rem != 0 {
		w.emit(total/s.cfg.Spec.TokensPerBlock, rem)
	}
	committed := false
	var unsaved *turnUnsaved
	if err := w.finish(); err != nil {
		s.log.Warn("writing blocks back failed; the agent's record is not updated", "agent", r.key, "err", err)
		unsaved = &turnUnsaved{reason: UnsavedWriteBack, detail: status.Convert(err).Message()}
	} else {
		committed, unsaved = s.commit(ctx, r, seq, total)
	}
	usage := s.account(r, seq, out.ttft, out.index > 0, unsaved)
	out.timer.done(time.Now())
	// Text held back for a possible stop string goes out with the last message.
	return &schedulerv1.GenerateResponse{FinishReason: finishReason(finish), Usage: usage, Text: out.text.flush()}, committed, nil
}

// account builds the turn's Usage and counts it in the metrics.
func (s *Server) account(r *request, seq *batch.Seq, ttft time.Duration, anyToken bool, unsaved *turnUnsaved) *schedulerv1.Usage {
	usage := &schedulerv1.Usage{
		PromptTokens: uint32(len(r.context)), CachedTokens: uint32(r.cached), CompletionTokens: uint32(len(seq.Generated)),
		TimeToFirstTokenMs: float64(ttft.Microseconds()) / 1000, HotCachedTokens: uint32(r.hot), PoolNode: r.node.Name(),
		QueueMs:   float64(seq.Admitted.Sub(r.arrival).Microseconds()) / 1000,
		TurnSaved: unsaved == nil,
	}
	if unsaved != nil {
		// Never silent: the client learns that its next append would not
		// see this turn, and operators see it counted by reason.
		usage.TurnUnsavedReason, usage.TurnUnsavedDetail = unsaved.reason, unsaved.detail
		s.m.unsavedTurns.Add(context.Background(), 1, metric.WithAttributes(attribute.String("reason", unsaved.reason)))
	}
	s.promptToks.Add(uint64(len(r.context)))
	s.cachedToks.Add(uint64(r.cached))
	bg := context.Background()
	s.m.promptToks.Add(bg, int64(len(r.context)))
	s.m.cachedToks.Add(bg, int64(r.cached))
	s.m.hotToks.Add(bg, int64(r.hot))
	s.m.genToks.Add(bg, int64(len(seq.Generated)))
	if anyToken {
		s.m.ttft.Record(bg, ttft.Seconds())
	}
	return usage
}

func finishReason(f batch.Finish) schedulerv1.FinishReason {
	switch f {
	case batch.FinishLength:
		return schedulerv1.FinishReason_FINISH_REASON_LENGTH
	case batch.FinishStop:
		return schedulerv1.FinishReason_FINISH_REASON_STOP
	case batch.FinishEOS:
		return schedulerv1.FinishReason_FINISH_REASON_EOS
	case batch.FinishContext:
		return schedulerv1.FinishReason_FINISH_REASON_CONTEXT
	}
	return schedulerv1.FinishReason_FINISH_REASON_UNSPECIFIED
}
