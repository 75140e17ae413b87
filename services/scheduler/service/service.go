// Package service implements semantic.scheduler.v1.SchedulerService: it
// admits Generate requests, finds each agent's cached prefix on its home pool
// node, leases blocks, hands the sequence to the batch loop, streams tokens,
// writes the new blocks back and commits the agent's record.
package service

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
	"github.com/semantic-kv/semantic/pkg/engine"
	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/model"
	"github.com/semantic-kv/semantic/pkg/poolwire"
	"github.com/semantic-kv/semantic/pkg/rpcstatus"
	"github.com/semantic-kv/semantic/services/scheduler/auth"
	"github.com/semantic-kv/semantic/services/scheduler/batch"
	"github.com/semantic-kv/semantic/services/scheduler/hotcache"
	"github.com/semantic-kv/semantic/services/scheduler/poolnode"
)

// Config wires the service.
type Config struct {
	Model  *model.Model
	Engine *engine.Engine
	Loop   *batch.Loop
	// Pool is the pool nodes (poolclient.Cluster.PoolNodes; a
	// poolnodetest.Fake in unit tests). New decorates it with the pool
	// calls' spans and metrics (poolnode.Instrument).
	Pool poolnode.Set
	// Spec is the pool spec: the engine's geometry with the storage dtype.
	Spec kvspec.Spec
	// HolderID names this scheduler on its leases.
	HolderID string
	// MaxQueue bounds requests admitted (waiting for the engine or
	// running); more are refused with RESOURCE_EXHAUSTED. A request takes
	// its admission slot only once it holds its agent's lock, so requests
	// waiting behind another of their agent's never hold one.
	MaxQueue int
	// MaxAgentQueue bounds one agent's requests (the one running and those
	// waiting for it); more are refused with RESOURCE_EXHAUSTED (subject
	// AgentQueueSubject) without affecting other agents. 0: 8.
	MaxAgentQueue int
	// HotCacheBytes is the budget of the local block cache.
	HotCacheBytes int64
	Logger        *slog.Logger
	MeterProvider metric.MeterProvider
	// TracerProvider receives a span per request phase (lookup, lease,
	// load, commit) under the gRPC server span; nil: no tracing. The pool
	// calls' spans and metrics (lookup, lease, commit, bytes read and
	// written, commit conflicts) come from poolnode.Instrument, the load
	// phase's and the request's own from the service.
	TracerProvider trace.TracerProvider
	// Prometheus, when set, gets the vLLM-compatible metrics (vllm.go).
	Prometheus prometheus.Registerer
	// RequirePrincipal refuses (UNAUTHENTICATED) a call whose context
	// carries no auth.Principal; without it such a call runs as auth.Open.
	// Set it when the scheduler has API keys, so that a transport that did
	// not authenticate fails closed.
	RequirePrincipal bool
}

// Server is the SchedulerService.
type Server struct {
	schedulerv1.UnimplementedSchedulerServiceServer

	cfg     Config
	log     *slog.Logger
	pool    poolnode.Set // cfg.Pool, instrumented
	admit   chan struct{}
	agents  *agentLocks // by pool agent id
	tenants tenantRequests
	hot     *hotcache.Cache[*engine.Block]

	tracer trace.Tracer

	leasedBlocks atomic.Int64
	completed    atomic.Uint64
	failed       atomic.Uint64
	promptToks   atomic.Uint64
	cachedToks   atomic.Uint64

	rateMu     sync.Mutex
	rateAt     time.Time
	rateTokens uint64
	rate       float64

	m    metrics
	vllm *vllmMetrics // nil unless Config.Prometheus is set
}

type metrics struct {
	requests     metric.Int64Counter
	ttft         metric.Float64Histogram
	promptToks   metric.Int64Counter
	cachedToks   metric.Int64Counter
	hotToks      metric.Int64Counter
	genToks      metric.Int64Counter
	unsavedTurns metric.Int64Counter
}

// New builds the service.
func New(cfg Config) (*Server, error) {
	if got := cfg.Engine.KVDType(); got != cfg.Spec.DType {
		// The engine's pages are the blocks' payloads: another type than
		// the one stored could not be written back or resumed.
		return nil, fmt.Errorf("engine pages are %v, but blocks are stored as %v", got, cfg.Spec.DType)
	}
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = 256
	}
	if cfg.MaxAgentQueue <= 0 {
		cfg.MaxAgentQueue = 8
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	mp := cfg.MeterProvider
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	s := &Server{
		cfg: cfg, log: cfg.Logger, admit: make(chan struct{}, cfg.MaxQueue), agents: newAgentLocks(),
		hot:    hotcache.New[*engine.Block](cfg.HotCacheBytes, int64(cfg.Spec.BlockBytes())),
		rateAt: time.Now(),
	}
	tp := cfg.TracerProvider
	if tp == nil {
		tp = tracenoop.NewTracerProvider()
	}
	s.tracer = tp.Tracer(poolnode.InstrumentationName)
	m := mp.Meter(poolnode.InstrumentationName)
	var err error
	if s.pool, err = poolnode.Instrument(cfg.Pool, tp, mp); err != nil {
		return nil, err
	}
	reg := func(name, unit, desc string) metric.Int64Counter {
		c, e := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		if e != nil {
			err = e
		}
		return c
	}
	s.m.requests = reg("semantic.scheduler.requests", "{request}", "Generate requests by outcome")
	s.m.promptToks = reg("semantic.scheduler.prompt_tokens", "{token}", "prompt tokens of finished requests")
	s.m.cachedToks = reg("semantic.scheduler.cached_tokens", "{token}", "prompt tokens served from the cache instead of prefilled")
	s.m.hotToks = reg("semantic.scheduler.hot_cached_tokens", "{token}", "cached tokens served from the local hot cache")
	s.m.genToks = reg("semantic.scheduler.generated_tokens", "{token}", "tokens generated")
	s.m.unsavedTurns = reg("semantic.scheduler.unsaved_turns", "{turn}", "turns that ended OK but were not saved as the agent's record, by reason")
	if err != nil {
		return nil, err
	}
	if s.m.ttft, err = m.Float64Histogram("semantic.scheduler.time_to_first_token", metric.WithUnit("s"),
		metric.WithDescription("time from arrival to first token"),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)); err != nil {
		return nil, err
	}
	if cfg.Prometheus != nil {
		if s.vllm, err = s.registerVLLM(cfg.Prometheus); err != nil {
			return nil, err
		}
	}
	if _, err := m.Int64ObservableGauge("semantic.scheduler.hot_cache_bytes", metric.WithUnit("By"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(s.hot.Stats().Bytes)
			return nil
		})); err != nil {
		return nil, err
	}
	if _, err := m.Int64ObservableGauge("semantic.scheduler.sequences", metric.WithUnit("{sequence}"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			st := cfg.Loop.Stats()
			o.Observe(int64(st.Running))
			return nil
		})); err != nil {
		return nil, err
	}
	return s, nil
}

// GetStats reports the scheduler's state. The pool nodes' addresses are
// for admin keys only: the network layout is none of a tenant's business.
func (s *Server) GetStats(ctx context.Context, _ *schedulerv1.GetStatsRequest) (*schedulerv1.GetStatsResponse, error) {
	who, err := s.principal(ctx)
	if err != nil {
		return nil, err
	}
	st := s.cfg.Loop.Stats()
	hs := s.hot.Stats()
	resp := &schedulerv1.GetStatsResponse{
		Running: uint32(st.Running), Waiting: uint32(st.Waiting), BatchSize: uint32(st.LastBatch), MaxBatchSize: uint32(st.MaxBatch),
		DecodeTokensPerSecond: s.decodeRate(st.DecodeTokens),
		BlocksLeased:          uint32(s.leasedBlocks.Load()),
		RequestsCompleted:     s.completed.Load(), RequestsFailed: s.failed.Load(),
		HotCacheBytes: uint64(hs.Bytes), Model: s.cfg.Model.Name + " (" + s.cfg.Model.Tag + ")", ModelInfo: s.modelInfo(),
		PrefillTokens: st.PrefillTokens, CachedTokens: s.cachedToks.Load(),
	}
	if p := s.promptToks.Load(); p > 0 {
		resp.PrefixHitRate = float64(s.cachedToks.Load()) / float64(p)
	}
	for _, n := range s.pool.Nodes() {
		ns := &schedulerv1.PoolNodeStatus{NodeId: n.ID(), Healthy: n.Healthy()}
		if who.Role == auth.RoleAdmin {
			ns.Address = n.Address()
		}
		resp.PoolNodes = append(resp.PoolNodes, ns)
	}
	return resp, nil
}

// decodeRate is decode tokens per second since the previous call at least a
// second ago (so that polling does not produce noise).
func (s *Server) decodeRate(total uint64) float64 {
	s.rateMu.Lock()
	defer s.rateMu.Unlock()
	if d := time.Since(s.rateAt); d >= time.Second {
		s.rate = float64(total-s.rateTokens) / d.Seconds()
		s.rateAt, s.rateTokens = time.Now(), total
	}
	return s.rate
}

// ListAgents pages through the caller's tenant's agents (another tenant's,
// or every tenant's, for an admin) in pool agent id order: the page token
// is the last pool id returned (poolwire.AgentPageToken), so agents used,
// added or deleted between pages never shift the others. Each healthy node
// lists its first page_size agents after the token; the first page_size of
// their union, an agent on two nodes (a cold run on a fallback node) listed
// once with its most recently used record, are the page.
func (s *Server) ListAgents(ctx context.Context, req *schedulerv1.ListAgentsRequest) (_ *schedulerv1.ListAgentsResponse, err error) {
	defer func() { err = toStatus(err) }()
	size := int(req.GetPageSize())
	if size == 0 {
		size = poolwire.DefaultPageSize
	}
	if size > poolwire.MaxPageSize {
		return nil, rpcstatus.InvalidArgument("page_size", "must be at most %d", poolwire.MaxPageSize)
	}
	tenant, all, err := s.scope(ctx, req.GetTenant(), true)
	if err != nil {
		return nil, err
	}
	var after string
	if tok := req.GetPageToken(); tok != "" {
		if after, err = poolwire.ParseAgentPageToken(tok); err != nil {
			return nil, err
		}
	}
	byKey := map[string]*schedulerv1.AgentInfo{}
	more := false
	for _, n := range s.pool.Nodes() {
		if !n.Healthy() {
			continue
		}
		got, nodeMore, err := listNode(ctx, n, tenant, all, after, size)
		if err != nil {
			return nil, err
		}
		more = more || nodeMore
		for key, a := range got {
			if prev := byKey[key]; prev == nil || a.GetLastUsedTime().AsTime().After(prev.GetLastUsedTime().AsTime()) {
				byKey[key] = a
			}
		}
	}
	keys := slices.Sorted(maps.Keys(byKey))
	if len(keys) > size {
		keys, more = keys[:size], true
	}
	out := &schedulerv1.ListAgentsResponse{Agents: make([]*schedulerv1.AgentInfo, len(keys))}
	for i, k := range keys {
		out.Agents[i] = byKey[k]
	}
	if more && len(keys) > 0 {
		out.NextPageToken = poolwire.AgentPageToken(keys[len(keys)-1])
	}
	return out, nil
}

// listNode returns up to size of node n's agents of tenant (every tenant's
// when all) whose pool ids come after the pool id after, by pool id, and
// whether the node may have more. The node filters by tenant; the empty
// tenant's agents (stored without a tenant prefix) are picked out here,
// since the node's empty filter means every tenant.
func listNode(ctx context.Context, n poolnode.Node, tenant string, all bool, after string, size int) (map[string]*schedulerv1.AgentInfo, bool, error) {
	req := &blockpoolv1.ListAgentsRequest{PageSize: uint32(size), Tenant: tenant}
	if all {
		req.Tenant = ""
	} else if tenant == "" {
		req.PageSize = poolwire.MaxPageSize
	}
	if after != "" {
		req.PageToken = poolwire.AgentPageToken(after)
	}
	out := map[string]*schedulerv1.AgentInfo{}
	for {
		resp, err := n.ListAgents(ctx, req)
		if err != nil {
			return nil, false, err
		}
		for _, a := range resp.GetAgents() {
			key := a.GetAgentId()
			t, id := poolwire.SplitAgentKey(key)
			if key <= after || !all && t != tenant {
				continue
			}
			if len(out) == size {
				return out, true, nil
			}
			out[key] = &schedulerv1.AgentInfo{
				AgentId: id, Tenant: t, TokenCount: a.GetTokenCount(), BlockCount: a.GetBlockCount(),
				Version: a.GetVersion(), LastUsedTime: a.GetLastUsedTime(), PoolNode: n.Name(), ModelTag: a.GetModelTag(),
			}
		}
		if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
			return out, false, nil
		}
		if len(out) == size {
			return out, true, nil
		}
	}
}

// GetAgent asks the agent's nodes in rendezvous order for its record.
func (s *Server) GetAgent(ctx context.Context, req *schedulerv1.GetAgentRequest) (_ *schedulerv1.GetAgentResponse, err error) {
	defer func() { err = toStatus(err) }()
	if err := rpcstatus.CheckAgentID("agent_id", req.GetAgentId()); err != nil {
		return nil, err
	}
	tenant, _, err := s.scope(ctx, req.GetTenant(), false)
	if err != nil {
		return nil, err
	}
	rec, node, err := s.findAgent(ctx, poolwire.AgentKey(tenant, req.GetAgentId()), req.GetAgentId())
	if err != nil {
		return nil, err
	}
	info := &schedulerv1.AgentInfo{
		AgentId: req.GetAgentId(), Tenant: tenant, TokenCount: uint32(len(rec.GetTokenIds())), BlockCount: uint32(len(rec.GetBlockHashes())),
		Version: rec.GetVersion(), LastUsedTime: rec.GetLastUsedTime(), PoolNode: node.Name(), ModelTag: rec.GetModelTag(),
		TokenIds: rec.GetTokenIds(),
	}
	if tok := s.cfg.Model.Tokenizer; tok != nil {
		// Proto strings must be valid UTF-8; a byte-level model may have produced anything.
		info.Text = strings.ToValidUTF8(decodeText(tok, rec.GetTokenIds()), "\uFFFD")
	}
	return &schedulerv1.GetAgentResponse{Agent: info, Model: s.modelInfo()}, nil
}

// modelInfo describes the served model.
func (s *Server) modelInfo() *schedulerv1.ModelInfo {
	m := s.cfg.Model
	return &schedulerv1.ModelInfo{
		Name: m.Name, CacheTag: s.cfg.Spec.ModelTag, Architecture: m.Info.Architecture, Format: m.Info.Format,
		Parameters: uint64(m.NumParams()), WeightTypes: m.Info.WeightTypes, ContextLength: uint32(m.Config.SeqLen),
		VocabSize: uint32(m.Config.Vocab), Tokenizer: m.Info.Tokenizer, ChatTemplate: m.Info.ChatTemplate,
	}
}

// findAgent returns the record of the agent whose pool id is key from the
// first healthy node in its rendezvous order that has one; agent is its id
// as the caller knows it.
func (s *Server) findAgent(ctx context.Context, key, agent string) (*blockpoolv1.AgentRecord, poolnode.Node, error) {
	healthy := false
	for _, n := range s.pool.Order(key) {
		if !n.Healthy() {
			continue
		}
		healthy = true
		rec, err := n.GetAgent(ctx, key)
		if status.Code(err) == codes.NotFound {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		return rec, n, nil
	}
	if !healthy {
		return nil, nil, poolnode.ErrNoHealthyNode
	}
	return nil, nil, status.Errorf(codes.NotFound, "agent %q has no cached context", agent)
}

// DeleteAgent drops the agent's records on every healthy node (a cold run on
// a fallback node may have left one there too).
func (s *Server) DeleteAgent(ctx context.Context, req *schedulerv1.DeleteAgentRequest) (_ *schedulerv1.DeleteAgentResponse, err error) {
	defer func() { err = toStatus(err) }()
	if err := rpcstatus.CheckAgentID("agent_id", req.GetAgentId()); err != nil {
		return nil, err
	}
	tenant, _, err := s.scope(ctx, req.GetTenant(), false)
	if err != nil {
		return nil, err
	}
	key := poolwire.AgentKey(tenant, req.GetAgentId())
	unlock, err := s.agents.lock(ctx, key, 0)
	if err != nil {
		return nil, err
	}
	defer unlock()
	deleted, healthy := false, false
	for _, n := range s.pool.Nodes() {
		if !n.Healthy() {
			continue
		}
		healthy = true
		err := n.DeleteAgent(ctx, key)
		switch status.Code(err) {
		case codes.OK:
			deleted = true
		case codes.NotFound:
		default:
			return nil, err
		}
	}
	if !healthy {
		return nil, poolnode.ErrNoHealthyNode
	}
	return &schedulerv1.DeleteAgentResponse{Deleted: deleted}, nil
}

// HotCacheStats exposes the local cache's counters (tests, benchmarks).
func (s *Server) HotCacheStats() hotcache.Stats { return s.hot.Stats() }

// LeasedBlocks is the number of blocks this scheduler holds leases on.
func (s *Server) LeasedBlocks() int { return int(s.leasedBlocks.Load()) }

// Ready is nil when the service can take a request: some pool node is
// healthy. Otherwise it is the UNAVAILABLE status a request would get.
func (s *Server) Ready() error {
	for _, n := range s.pool.Nodes() {
		if n.Healthy() {
			return nil
		}
	}
	return toStatus(poolnode.ErrNoHealthyNode)
}

// AgentRequests is the number of requests running or waiting for the agent
// whose pool id is key (poolwire.AgentKey; the agent id without API keys),
// for tests.
func (s *Server) AgentRequests(key string) int { return s.agents.requests(key) }

// BusyAgents is the number of agents with a request in flight or waiting.
func (s *Server) BusyAgents() int { return s.agents.busy() }
