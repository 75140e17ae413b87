package service

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
	"github.com/semantic-kv/semantic/pkg/engine"
	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/model"
	"github.com/semantic-kv/semantic/services/scheduler/batch"
	"github.com/semantic-kv/semantic/services/scheduler/poolnode"
	"github.com/semantic-kv/semantic/services/scheduler/poolnode/poolnodetest"
)

// These tests run the service against in-memory pool nodes
// (poolnodetest.Fake): no gRPC server, no pool core.

const fakeTPB = 4 // tokens per block: a short prompt spans several blocks

// fakeEnv is a service over the builtin tiny model and fake pool nodes.
type fakeEnv struct {
	s     *Server
	loop  *batch.Loop
	nodes []*poolnodetest.Fake
	spec  kvspec.Spec
}

// tinyModel is generated once for all the tests.
var tinyModel = sync.OnceValues(func() (*model.Model, error) { return model.Builtin("tiny") })

// newFakeEnv starts a service on n fake nodes, tried in their order. The
// hot cache is off (budget 0), so that every hit is read from a node.
func newFakeEnv(t *testing.T, n int) *fakeEnv {
	t.Helper()
	m, err := tinyModel()
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(m, engine.Options{Workers: 1, TokensPerBlock: fakeTPB})
	if err != nil {
		t.Fatal(err)
	}
	spec := eng.Spec()
	spec.DType = kvspec.DTypeFloat32
	e := &fakeEnv{spec: spec}
	set := poolnodetest.Set{}
	for i := range n {
		f := poolnodetest.New(fmt.Sprintf("fake-%d", i), spec, 64)
		e.nodes = append(e.nodes, f)
		set = append(set, f)
	}
	e.loop = batch.New(batch.Config{Engine: eng})
	t.Cleanup(e.loop.Close)
	e.s, err = New(Config{Model: m, Engine: eng, Loop: e.loop, Pool: set, Spec: spec, HolderID: "test-scheduler"})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// turn is what one Run returned.
type turn struct {
	tokens []uint32
	final  *schedulerv1.GenerateResponse
	err    error
	// outstandingAtFinal is the leases outstanding when the final message
	// was sent (-1: none was).
	outstandingAtFinal int
}

func (e *fakeEnv) run(req *schedulerv1.GenerateRequest) turn {
	return e.runSend(req, nil)
}

// runSend runs req; fail, when set, is the transport's answer to each
// token message.
func (e *fakeEnv) runSend(req *schedulerv1.GenerateRequest, fail func(i int) error) turn {
	tr := turn{outstandingAtFinal: -1}
	tr.err = e.s.Run(context.Background(), req, func(m *schedulerv1.GenerateResponse) error {
		if m.GetUsage() != nil {
			tr.final = m
			tr.outstandingAtFinal = e.outstanding()
			return nil
		}
		tr.tokens = append(tr.tokens, m.GetTokenId())
		if fail != nil {
			return fail(len(tr.tokens) - 1)
		}
		return nil
	})
	return tr
}

func (e *fakeEnv) outstanding() int {
	n := 0
	for _, f := range e.nodes {
		n += f.Outstanding()
	}
	return n
}

func prompt(n int) []uint32 {
	p := make([]uint32, n)
	for i := range p {
		p[i] = uint32(3 + (i*7)%200)
	}
	return p
}

// Every path out of Run after the lease was granted releases it, before the
// final message where there is one: failures of the pool's reads, writes and
// commits, of the batch loop, and of the transport.
func TestLeaseReleasedOnEveryErrorPath(t *testing.T) {
	injected := status.Error(codes.Unavailable, "injected")
	for _, c := range []struct {
		name string
		op   poolnodetest.Op
		err  error
		// wantCode is Run's outcome; OK runs also check the turn's
		// unsaved reason ("" = saved).
		wantCode    codes.Code
		wantUnsaved string
		closeLoop   bool
		sendFails   bool
		leases      int // leases the second turn takes (0: 1)
	}{
		// A hit that cannot be read shortens the prefix and the request
		// runs colder: the lease, sized for every full hit to be used in
		// place, is released and a second one taken for the shorter
		// prefix (TestUnreadableHitRunsColder checks the tokens).
		{name: "read fails", op: poolnodetest.OpRead, err: injected, wantCode: codes.OK, leases: 2},
		{name: "writer open fails", op: poolnodetest.OpOpenWriter, err: injected, wantCode: codes.OK, wantUnsaved: UnsavedWriteBack},
		{name: "write fails", op: poolnodetest.OpWrite, err: injected, wantCode: codes.OK, wantUnsaved: UnsavedWriteBack},
		{name: "writer close fails", op: poolnodetest.OpCloseWriter, err: injected, wantCode: codes.OK, wantUnsaved: UnsavedWriteBack},
		{name: "commit fails", op: poolnodetest.OpCommit, err: injected, wantCode: codes.OK, wantUnsaved: UnsavedCommit},
		{name: "commit loses a race", op: poolnodetest.OpCommit, err: fmt.Errorf("%w: injected race", poolnode.ErrConflict), wantCode: codes.OK, wantUnsaved: UnsavedConflict},
		{name: "loop closed", closeLoop: true, wantCode: codes.Unavailable},
		{name: "send fails", sendFails: true, wantCode: codes.Unknown},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newFakeEnv(t, 1)
			f := e.nodes[0]
			p := prompt(13)
			// A saved first turn, so that the second one has hits to read.
			first := e.run(&schedulerv1.GenerateRequest{AgentId: "a", PromptTokenIds: p, MaxTokens: 3})
			if first.err != nil || !first.final.GetUsage().GetTurnSaved() {
				t.Fatalf("first turn: %v %+v", first.err, first.final.GetUsage())
			}
			if c.op != "" {
				f.Fail(c.op, c.err)
			}
			if c.closeLoop {
				e.loop.Close()
			}
			var send func(int) error
			sendErr := errors.New("client went away")
			if c.sendFails {
				send = func(int) error { return sendErr }
			}
			granted := f.Granted()
			second := e.runSend(&schedulerv1.GenerateRequest{AgentId: "a", PromptTokenIds: append(p, 9, 10, 11), MaxTokens: 3}, send)
			if want := max(c.leases, 1); f.Granted() != granted+want {
				t.Fatalf("the second turn took %d leases, want %d", f.Granted()-granted, want)
			}
			if got := f.Outstanding(); got != 0 {
				t.Errorf("%d leases outstanding after Run", got)
			}
			switch {
			case c.sendFails:
				// Run returns the transport's error, not the loop's
				// CANCELLED for the sequence the failed send cancelled.
				if !errors.Is(second.err, sendErr) {
					t.Fatalf("Run = %v, want the transport's error", second.err)
				}
				return
			case status.Code(second.err) != c.wantCode:
				t.Fatalf("Run = %v, want %v", second.err, c.wantCode)
			case c.wantCode != codes.OK:
				return
			}
			if second.outstandingAtFinal != 0 {
				t.Errorf("%d leases outstanding when the final message was sent", second.outstandingAtFinal)
			}
			u := second.final.GetUsage()
			if u.GetTurnUnsavedReason() != c.wantUnsaved || u.GetTurnSaved() != (c.wantUnsaved == "") {
				t.Errorf("usage %+v, want unsaved reason %q", u, c.wantUnsaved)
			}
		})
	}
}

// The reads are what serve a warm turn: without the injected failure the
// same second turn reuses the first turn's full blocks (so the read test
// above can fail).
func TestWarmTurnReadsFromTheNode(t *testing.T) {
	e := newFakeEnv(t, 1)
	p := prompt(13)
	if tr := e.run(&schedulerv1.GenerateRequest{AgentId: "a", PromptTokenIds: p, MaxTokens: 3}); tr.err != nil {
		t.Fatal(tr.err)
	}
	tr := e.run(&schedulerv1.GenerateRequest{AgentId: "a", PromptTokenIds: append(p, 9, 10, 11), MaxTokens: 3})
	if tr.err != nil {
		t.Fatal(tr.err)
	}
	// 13 prompt tokens: three full blocks of 4, and a partly matching fourth.
	if got := tr.final.GetUsage().GetCachedTokens(); got != 13 {
		t.Errorf("cached tokens %d, want 13", got)
	}
	if got := tr.final.GetUsage().GetHotCachedTokens(); got != 0 {
		t.Errorf("hot-cached tokens %d with the hot cache off", got)
	}
}

// A turn whose blocks cannot be written back ends OK with its tokens, but
// says it was not saved and why; the agent's record stays the previous
// turn's, so that the next append continues from there.
func TestWriteBackFailureLeavesTurnUnsaved(t *testing.T) {
	e := newFakeEnv(t, 1)
	f := e.nodes[0]
	first := e.run(&schedulerv1.GenerateRequest{AgentId: "w", PromptTokenIds: prompt(6), MaxTokens: 2})
	if first.err != nil {
		t.Fatal(first.err)
	}
	before := f.Record("w")
	if before == nil || before.GetVersion() != 1 {
		t.Fatalf("first turn's record: %v", before)
	}
	f.Fail(poolnodetest.OpWrite, status.Error(codes.ResourceExhausted, "disk full"))
	tr := e.run(&schedulerv1.GenerateRequest{AgentId: "w", Append: true, PromptTokenIds: []uint32{40, 41, 42}, MaxTokens: 5})
	if tr.err != nil {
		t.Fatalf("want the turn to end OK, got %v", tr.err)
	}
	if len(tr.tokens) != 5 {
		t.Errorf("%d tokens streamed, want 5", len(tr.tokens))
	}
	u := tr.final.GetUsage()
	if u.GetTurnSaved() || u.GetTurnUnsavedReason() != UnsavedWriteBack || !strings.Contains(u.GetTurnUnsavedDetail(), "disk full") {
		t.Errorf("usage %+v: want unsaved, %q, with the node's message", u, UnsavedWriteBack)
	}
	after := f.Record("w")
	if after.GetVersion() != before.GetVersion() || len(after.GetTokenIds()) != len(before.GetTokenIds()) {
		t.Errorf("record changed by an unsaved turn: %v -> %v", before, after)
	}
	// The next turn continues from the saved one.
	f.Fail(poolnodetest.OpWrite, nil)
	next := e.run(&schedulerv1.GenerateRequest{AgentId: "w", Append: true, PromptTokenIds: []uint32{50}, MaxTokens: 1})
	if next.err != nil || !next.final.GetUsage().GetTurnSaved() {
		t.Fatalf("next turn: %v %+v", next.err, next.final.GetUsage())
	}
	if got, want := next.final.GetUsage().GetPromptTokens(), uint32(len(before.GetTokenIds())+1); got != want {
		t.Errorf("next turn's context %d tokens, want %d (the saved record + 1)", got, want)
	}
}

// A node's lookup error leaves Run as the status toStatus gives it; an
// UNAVAILABLE node is skipped for the next one in the agent's order.
func TestLookupErrorStatus(t *testing.T) {
	for _, c := range []struct {
		err  error
		want codes.Code
	}{
		{status.Error(codes.ResourceExhausted, "node busy"), codes.ResourceExhausted},
		{status.Error(codes.PermissionDenied, "not yours"), codes.PermissionDenied},
		{fmt.Errorf("%w: short block", poolnode.ErrDataLoss), codes.DataLoss},
		{fmt.Errorf("lookup: %w", poolnode.ErrNoHealthyNode), codes.Unavailable},
		{fmt.Errorf("waiting: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{errors.New("anything else"), codes.Internal},
		{status.Error(codes.Unavailable, "node down"), codes.Unavailable}, // no node left to try
	} {
		t.Run(c.err.Error(), func(t *testing.T) {
			e := newFakeEnv(t, 1)
			e.nodes[0].Fail(poolnodetest.OpLookup, c.err)
			tr := e.run(&schedulerv1.GenerateRequest{AgentId: "l", PromptTokenIds: prompt(5), MaxTokens: 2})
			if status.Code(tr.err) != c.want {
				t.Fatalf("Run = %v, want %v", tr.err, c.want)
			}
			if e.nodes[0].Granted() != 0 {
				t.Errorf("a lease was taken after a failed lookup")
			}
		})
	}
}

func TestUnavailableNodeIsSkipped(t *testing.T) {
	e := newFakeEnv(t, 2)
	e.nodes[0].Fail(poolnodetest.OpLookup, status.Error(codes.Unavailable, "node down"))
	tr := e.run(&schedulerv1.GenerateRequest{AgentId: "s", PromptTokenIds: prompt(5), MaxTokens: 2})
	if tr.err != nil {
		t.Fatal(tr.err)
	}
	if got := tr.final.GetUsage().GetPoolNode(); got != e.nodes[1].Name() {
		t.Errorf("ran on %q, want the second node %q", got, e.nodes[1].Name())
	}
	if e.nodes[1].Record("s") == nil {
		t.Error("no record on the node the turn ran on")
	}
	// No node at all: UNAVAILABLE.
	for _, f := range e.nodes {
		f.SetHealthy(false)
	}
	if tr := e.run(&schedulerv1.GenerateRequest{AgentId: "s", PromptTokenIds: prompt(5), MaxTokens: 2}); status.Code(tr.err) != codes.Unavailable {
		t.Errorf("with no healthy node Run = %v, want UNAVAILABLE", tr.err)
	}
}

// A warm turn whose cached blocks cannot be read runs cold instead: it
// reuses nothing, computes the same tokens as the warm turn (warm == cold),
// and is saved.
func TestUnreadableHitRunsColder(t *testing.T) {
	e := newFakeEnv(t, 1)
	f := e.nodes[0]
	p := prompt(13)
	if tr := e.run(&schedulerv1.GenerateRequest{AgentId: "a", PromptTokenIds: p, MaxTokens: 3}); tr.err != nil {
		t.Fatal(tr.err)
	}
	second := &schedulerv1.GenerateRequest{AgentId: "a", PromptTokenIds: append(p, 9, 10, 11), MaxTokens: 5}
	warm := e.run(second)
	if warm.err != nil || warm.final.GetUsage().GetCachedTokens() == 0 {
		t.Fatalf("warm turn: %v %+v", warm.err, warm.final.GetUsage())
	}
	f.Fail(poolnodetest.OpRead, status.Error(codes.DataLoss, "injected"))
	cold := e.run(second)
	if cold.err != nil {
		t.Fatalf("a turn whose hits cannot be read failed: %v", cold.err)
	}
	u := cold.final.GetUsage()
	if u.GetCachedTokens() != 0 || !u.GetTurnSaved() {
		t.Errorf("usage %+v: want nothing reused and the turn saved", u)
	}
	if !slices.Equal(cold.tokens, warm.tokens) {
		t.Errorf("tokens %v after the unreadable hits, %v warm", cold.tokens, warm.tokens)
	}
	if got := f.Outstanding(); got != 0 {
		t.Errorf("%d leases outstanding", got)
	}
}
