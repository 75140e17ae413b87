package poolnode

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
)

// InstrumentationName is the tracer's and meter's name: the scheduler's
// (its request spans and semantic.scheduler.* metrics share it).
const InstrumentationName = "semantic.scheduler"

// Instrument decorates set's nodes, their leases and writers with what the
// pool calls are measured by, so that the service's code has no span or
// metric call of its own around them:
//
//	span "lookup"  (pool, context_tokens, realigned, matched_tokens)
//	span "lease"   (blocks, pinned)
//	span "commit"  (tokens)
//	semantic.scheduler.pool_read_bytes   block bytes read and accepted by the caller
//	semantic.scheduler.pool_write_bytes  block bytes written
//	semantic.scheduler.commit_conflicts  commits refused with ABORTED (a lost race)
//
// The spans are children of the span in the call's context (the request's).
// nil providers record nothing.
func Instrument(set Set, tp trace.TracerProvider, mp metric.MeterProvider) (Set, error) {
	if tp == nil {
		tp = tracenoop.NewTracerProvider()
	}
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	m := mp.Meter(InstrumentationName)
	ins := &instruments{tracer: tp.Tracer(InstrumentationName)}
	var err error
	reg := func(name, unit, desc string) metric.Int64Counter {
		c, e := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		if e != nil && err == nil {
			err = e
		}
		return c
	}
	ins.commitRaces = reg("semantic.scheduler.commit_conflicts", "{commit}", "agent commits that lost an optimistic-concurrency race")
	ins.writeBytes = reg("semantic.scheduler.pool_write_bytes", "By", "block bytes written to pool nodes")
	ins.readBytes = reg("semantic.scheduler.pool_read_bytes", "By", "block bytes read from pool nodes")
	if err != nil {
		return nil, err
	}
	return instrumentedSet{set: set, ins: ins}, nil
}

type instruments struct {
	tracer      trace.Tracer
	commitRaces metric.Int64Counter
	writeBytes  metric.Int64Counter
	readBytes   metric.Int64Counter
}

// EndSpan records err on span (if any) and ends it.
func EndSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(otelcodes.Error, err.Error())
	}
	span.End()
}

type instrumentedSet struct {
	set Set
	ins *instruments
}

func (s instrumentedSet) Nodes() []Node { return s.wrap(s.set.Nodes()) }

func (s instrumentedSet) Order(agentKey string) []Node { return s.wrap(s.set.Order(agentKey)) }

func (s instrumentedSet) wrap(ns []Node) []Node {
	for i, n := range ns {
		ns[i] = instrumentedNode{Node: n, ins: s.ins}
	}
	return ns
}

type instrumentedNode struct {
	Node
	ins *instruments
}

func (n instrumentedNode) Lookup(ctx context.Context, req LookupRequest) (*blockpoolv1.LookupAgentResponse, error) {
	ctx, span := n.ins.tracer.Start(ctx, "lookup", trace.WithAttributes(attribute.String("pool", n.Name()),
		attribute.Int("context_tokens", len(req.Tokens)), attribute.Bool("realigned", req.Realigned)))
	lk, err := n.Node.Lookup(ctx, req)
	span.SetAttributes(attribute.Int("matched_tokens", int(lk.GetMatchedTokens())))
	EndSpan(span, err)
	return lk, err
}

func (n instrumentedNode) Lease(ctx context.Context, req LeaseRequest) (Lease, error) {
	ctx, span := n.ins.tracer.Start(ctx, "lease", trace.WithAttributes(attribute.Int("blocks", req.Count), attribute.Int("pinned", len(req.Pin))))
	l, err := n.Node.Lease(ctx, req)
	EndSpan(span, err)
	if err != nil {
		return nil, err
	}
	return instrumentedLease{Lease: l, ins: n.ins}, nil
}

type instrumentedLease struct {
	Lease
	ins *instruments
}

func (l instrumentedLease) ReadBlocks(ctx context.Context, ids []uint32, fn func(h *blockpoolv1.BlockHeader, payload []byte) error) error {
	return l.Lease.ReadBlocks(ctx, ids, func(h *blockpoolv1.BlockHeader, payload []byte) error {
		err := fn(h, payload)
		if err == nil {
			// Counted once the caller took the block (checksum and
			// layout verified).
			l.ins.readBytes.Add(ctx, int64(len(payload)))
		}
		return err
	})
}

func (l instrumentedLease) NewWriter(ctx context.Context) (Writer, error) {
	w, err := l.Lease.NewWriter(ctx)
	if err != nil {
		return nil, err
	}
	return instrumentedWriter{Writer: w, ctx: ctx, ins: l.ins}, nil
}

// Commit's span records an error without marking the span failed: a lost
// race (ErrConflict) is an expected outcome, counted as a conflict.
func (l instrumentedLease) Commit(ctx context.Context, req CommitRequest) error {
	ctx, span := l.ins.tracer.Start(ctx, "commit", trace.WithAttributes(attribute.Int("tokens", len(req.Tokens))))
	defer span.End()
	err := l.Lease.Commit(ctx, req)
	if err != nil {
		span.RecordError(err)
	}
	if errors.Is(err, ErrConflict) {
		l.ins.commitRaces.Add(ctx, 1)
	}
	return err
}

type instrumentedWriter struct {
	Writer
	ctx context.Context // the upload's, for the metric
	ins *instruments
}

func (w instrumentedWriter) Write(h *blockpoolv1.BlockHeader, payload []byte) error {
	err := w.Writer.Write(h, payload)
	if err == nil {
		w.ins.writeBytes.Add(w.ctx, int64(len(payload)))
	}
	return err
}
