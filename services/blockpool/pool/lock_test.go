package pool

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/testproc"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// panicClock is a fake clock whose Now panics while armed: a fault inside a
// locked section, reached through the public API.
type panicClock struct {
	*FakeClock
	armed atomic.Bool
}

func (c *panicClock) Now() time.Time {
	if c.armed.Load() {
		panic("clock failure")
	}
	return c.FakeClock.Now()
}

// panicked runs f and returns what it panicked with, nil if it returned.
func panicked(f func()) (v any) {
	defer func() { v = recover() }()
	f()
	return nil
}

// within fails the test if f does not return in time: a lock left held by a
// panic would hang it.
func within(t *testing.T, d time.Duration, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatal("pool lock still held after a panic under it")
	}
}

// A panic inside a locked section (a gRPC server recovers it and goes on
// serving) must not leave the pool lock held: the pool stays usable. And the
// one call out of the core under the lock (the clock) comes before any
// change, so the pool stays consistent too.
func TestPanicUnderLockLeavesPoolUsable(t *testing.T) {
	clock := &panicClock{FakeClock: NewFakeClock(time.Unix(1_800_000_000, 0))}
	e := newEnv(t, 8, func(o *Options) { o.Clock = clock })
	g := e.lease("a", 2)
	toks := tokens(1, 8)
	e.commitAgent("seed", toks, 0)
	hashes := kvspec.ChainHashes(toks, 4, "test-model", "", true)

	faults := map[string]func(){
		"withLock":  func() { _ = e.p.withLock(func() error { panic("boom") }) },
		"KeepAlive": func() { _, _, _ = e.p.KeepAlive(ctx, g.LeaseID, g.Epoch, g.Holder) },
		"Lease":     func() { _, _ = e.p.Lease(ctx, LeaseRequest{AgentID: "b", Count: 1, ModelTag: "test-model"}) },
		"CommitAgent": func() {
			_, _ = e.p.CommitAgent(ctx, CommitRequest{AgentID: "x", ModelTag: "test-model", Hashes: hashes, Tokens: toks})
		},
	}
	clock.armed.Store(true)
	for name, f := range faults {
		if panicked(f) == nil {
			t.Fatalf("%s did not panic", name)
		}
	}
	clock.armed.Store(false)

	within(t, 5*time.Second, func() {
		if _, _, err := e.p.KeepAlive(ctx, g.LeaseID, g.Epoch, g.Holder); err != nil {
			t.Error("keep-alive after the panic:", err)
		}
		if _, err := e.p.Release(ctx, g.LeaseID, g.Epoch, g.Holder, false); err != nil {
			t.Error("release after the panic:", err)
		}
		e.commitAgent("c", tokens(1, 8), 0)
		e.check()
	})
}

// failingMeterProvider's meters refuse every counter.
type failingMeterProvider struct{ noop.MeterProvider }

func (failingMeterProvider) Meter(string, ...metric.MeterOption) metric.Meter { return failingMeter{} }

type failingMeter struct{ noop.Meter }

func (failingMeter) Int64Counter(string, ...metric.Int64CounterOption) (metric.Int64Counter, error) {
	return noop.Int64Counter{}, errors.New("counter refused")
}

// A metric that cannot be registered fails Open, as it fails the scheduler's
// start, instead of leaving the pool silently unobserved.
func TestMetricRegistrationErrorFailsOpen(t *testing.T) {
	sp := testSpec()
	_, err := Open(Options{Dir: t.TempDir(), Capacity: 4, Spec: &sp, NoSync: true, ExpiryInterval: -1, MeterProvider: failingMeterProvider{}})
	if err == nil || !strings.Contains(err.Error(), "counter refused") {
		t.Fatalf("Open with a failing meter provider: %v", err)
	}
}

// The domain core speaks no gRPC: status codes are the server's business.
func TestCoreImportsNoRPC(t *testing.T) {
	testproc.ForbidDeps(t, "google.golang.org/grpc", "github.com/semantic-kv/semantic/pkg/rpcstatus",
		"github.com/semantic-kv/semantic/pkg/poolwire")
}
