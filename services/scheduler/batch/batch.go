// Package batch is the scheduler's engine loop: continuous batching over the
// engine's paged forward pass. Every step it admits waiting sequences up to
// the batch limit, gives every decoding sequence one token, fills the rest of
// the step's token budget with prefill chunks (so a long prompt never stalls
// the streams that are already decoding), runs one batched forward pass,
// samples, and retires finished and cancelled sequences at once.
package batch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/semantic-kv/semantic/pkg/engine"
)

// Finish says why a sequence ended.
type Finish int

const (
	// FinishNone: still running (token events).
	FinishNone Finish = iota
	// FinishLength: MaxTokens generated.
	FinishLength
	// FinishStop: the Stop callback matched.
	FinishStop
	// FinishEOS: the model produced EOS.
	FinishEOS
	// FinishContext: the sequence reached its position limit before MaxTokens.
	FinishContext
)

// Event is what a sequence reports to its request: a token, or the end.
type Event struct {
	Token  uint32
	Finish Finish // FinishNone on token events
	Err    error  // set when the sequence failed; the last event
}

// Seq is one request's sequence in the loop. The caller fills the exported
// fields before Submit and reads Events until it is closed. Token ids are
// uint32 throughout, as on the wire and in the engine (engine.StepInput):
// the loop hands its slices to the engine as they are.
type Seq struct {
	Ctx context.Context
	// Tokens is the whole context; Eng.Len of them already have KV (the
	// cached prefix). At least one token must remain to prefill.
	Tokens []uint32
	// Eng is the page table, with blocks for MaxPositions positions.
	Eng *engine.Sequence
	// MaxTokens is how many tokens to generate at most.
	MaxTokens int
	// MaxPositions caps the context: generation ends with FinishContext when
	// the next token would not fit.
	MaxPositions int
	Sampler      *engine.Sampler
	// EOS lists the ids that end the sequence with FinishEOS: the model's
	// end-of-sequence token and its end-of-turn tokens. They are not part of
	// the context.
	EOS []uint32
	// Stop is called with each generated token (in the loop goroutine: it
	// must be quick); true ends the sequence with FinishStop.
	Stop func(token uint32) bool
	// BlockFull is called (in the loop goroutine; must not block) with the
	// index of each block that has just become full.
	BlockFull func(index int)
	// Events receives tokens and the end; it must have room for MaxTokens+1
	// events so the loop never blocks on a slow client. Closed after the end.
	Events chan Event

	// Generated holds the generated tokens; read it after Events closes.
	Generated []uint32
	// Admitted is when the loop took the sequence into its running batch
	// (zero if it never did); read it after Events closes.
	Admitted time.Time

	prefilled int // tokens of Tokens with KV
	finishing Finish
	last      uint32
}

// Config tunes the loop.
type Config struct {
	Engine *engine.Engine
	// MaxBatch bounds the sequences in one step.
	MaxBatch int
	// StepTokens is the token budget of one step: decode tokens first, the
	// rest for prefill chunks.
	StepTokens int
	Logger     *slog.Logger
}

// Loop runs the engine.
type Loop struct {
	cfg Config
	tpb int

	mu      sync.Mutex
	waiting []*Seq
	closed  bool
	wake    chan struct{}
	done    chan struct{}

	running      atomic.Int64
	queued       atomic.Int64
	lastBatch    atomic.Int64
	decodeTokens atomic.Uint64
	prefillToks  atomic.Uint64
	steps        atomic.Uint64
}

// ErrClosed is returned for sequences submitted to or running in a closed loop.
var ErrClosed = errors.New("scheduler is shutting down")

// ErrEngine wraps the engine's failure of a step, for the sequences it
// failed (a server fault: the service maps it to INTERNAL).
var ErrEngine = errors.New("engine step failed")

// New starts the loop.
func New(cfg Config) *Loop {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 32
	}
	if cfg.StepTokens <= 0 {
		cfg.StepTokens = 256
	}
	if cfg.StepTokens < cfg.MaxBatch {
		cfg.StepTokens = cfg.MaxBatch
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	l := &Loop{cfg: cfg, tpb: cfg.Engine.Spec().TokensPerBlock, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go l.run()
	return l
}

// Submit queues s for the next step.
func (l *Loop) Submit(s *Seq) error {
	if s.Eng.Len >= len(s.Tokens) {
		return fmt.Errorf("batch: nothing to prefill (cached %d of %d tokens)", s.Eng.Len, len(s.Tokens))
	}
	if cap(s.Events) < s.MaxTokens+1 {
		return fmt.Errorf("batch: events channel needs room for %d events", s.MaxTokens+1)
	}
	s.prefilled = s.Eng.Len
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	l.waiting = append(l.waiting, s)
	l.queued.Add(1)
	l.signal()
	return nil
}

func (l *Loop) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Close fails every queued and running sequence with ErrClosed and stops the loop.
func (l *Loop) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		<-l.done
		return
	}
	l.closed = true
	l.signal()
	l.mu.Unlock()
	<-l.done
}

// Stats is a snapshot of the loop.
type Stats struct {
	Running, Waiting, LastBatch int
	DecodeTokens, PrefillTokens uint64
	Steps                       uint64
	MaxBatch                    int
}

// Stats returns the loop's counters.
func (l *Loop) Stats() Stats {
	return Stats{
		Running: int(l.running.Load()), Waiting: int(l.queued.Load()), LastBatch: int(l.lastBatch.Load()),
		DecodeTokens: l.decodeTokens.Load(), PrefillTokens: l.prefillToks.Load(), Steps: l.steps.Load(),
		MaxBatch: l.cfg.MaxBatch,
	}
}

func (l *Loop) run() {
	defer close(l.done)
	var running []*Seq
	for {
		l.mu.Lock()
		closed := l.closed
		for len(l.waiting) > 0 && len(running) < l.cfg.MaxBatch && !closed {
			l.waiting[0].Admitted = time.Now()
			running = append(running, l.waiting[0])
			l.waiting[0] = nil
			l.waiting = l.waiting[1:]
			l.queued.Add(-1)
		}
		if closed {
			for _, s := range l.waiting {
				l.end(s, ErrClosed)
			}
			l.waiting = nil
			l.queued.Store(0)
		}
		l.mu.Unlock()
		if closed {
			for _, s := range running {
				l.end(s, ErrClosed)
			}
			l.running.Store(0)
			return
		}
		// Cancelled and timed-out sequences leave before the step, so their
		// blocks are freed by their requests at once.
		running = l.dropCancelled(running)
		l.running.Store(int64(len(running)))
		if len(running) == 0 {
			<-l.wake
			continue
		}
		running = l.step(running)
		l.running.Store(int64(len(running)))
	}
}

func (l *Loop) dropCancelled(running []*Seq) []*Seq {
	kept := running[:0]
	for _, s := range running {
		if err := s.Ctx.Err(); err != nil {
			l.end(s, err) // the service maps it (CANCELLED, DEADLINE_EXCEEDED)
			continue
		}
		kept = append(kept, s)
	}
	clear(running[len(kept):])
	return kept
}

// end delivers the last event and closes the channel.
func (l *Loop) end(s *Seq, err error) {
	if err != nil {
		s.Events <- Event{Err: err}
	} else {
		s.Events <- Event{Finish: s.finishing}
	}
	close(s.Events)
}

// plan is one sequence's share of a step.
type plan struct {
	s       *Seq
	n       int  // tokens fed
	sample  bool // sample a token from this input's logits
	prefill bool
}

// step builds and runs one forward pass and returns the sequences still running.
func (l *Loop) step(running []*Seq) []*Seq {
	budget := l.cfg.StepTokens
	plans := make([]plan, 0, len(running))
	var inputs []engine.StepInput
	// Decode (and finalising) sequences first: one token each.
	for _, s := range running {
		if s.prefilled < len(s.Tokens) {
			continue
		}
		plans = append(plans, plan{s: s, n: 1, sample: s.finishing == FinishNone})
		inputs = append(inputs, engine.StepInput{Seq: s.Eng, Tokens: []uint32{s.last}})
		budget--
	}
	// Then prefill chunks, first come first served, with what is left.
	for _, s := range running {
		if s.prefilled >= len(s.Tokens) || budget <= 0 {
			continue
		}
		n := min(len(s.Tokens)-s.prefilled, budget)
		budget -= n
		plans = append(plans, plan{s: s, n: n, sample: s.prefilled+n == len(s.Tokens), prefill: true})
		inputs = append(inputs, engine.StepInput{Seq: s.Eng, Tokens: s.Tokens[s.prefilled : s.prefilled+n]})
	}
	before := make([]int, len(plans))
	for i, p := range plans {
		before[i] = p.s.Eng.Len
	}
	logits, err := l.forward(inputs)
	l.steps.Add(1)
	l.lastBatch.Store(int64(len(inputs)))
	if err != nil {
		// The engine validates before it writes anything, so a failed step
		// leaves every page table as it was; the step's sequences fail and
		// their requests release their blocks (only the offending one when
		// the engine names it).
		l.cfg.Logger.Error("engine step failed", "err", err, "batch", len(inputs))
		failed := map[*Seq]bool{}
		var ie *engine.InputError
		if errors.As(err, &ie) && ie.Input >= 0 && ie.Input < len(plans) {
			// One input alone is at fault: it fails, and the others, which
			// did not advance, are planned again at the next step.
			s := plans[ie.Input].s
			failed[s] = true
			l.end(s, fmt.Errorf("%w: %v", ErrEngine, err))
		} else {
			for _, p := range plans {
				failed[p.s] = true
				l.end(p.s, fmt.Errorf("%w: %v", ErrEngine, err))
			}
		}
		kept := running[:0]
		for _, s := range running {
			if !failed[s] {
				kept = append(kept, s)
			}
		}
		return kept
	}
	toks := l.sampleStep(plans, logits)
	finished := map[*Seq]bool{}
	for i, p := range plans {
		s := p.s
		for b := before[i] / l.tpb; b < s.Eng.Len/l.tpb; b++ {
			if s.BlockFull != nil {
				s.BlockFull(b)
			}
		}
		if p.prefill {
			s.prefilled += p.n
			l.prefillToks.Add(uint64(p.n))
		} else {
			l.decodeTokens.Add(1)
		}
		if s.finishing != FinishNone {
			// The last token's KV is now computed: the agent's record can
			// cover the whole completion.
			finished[s] = true
			l.end(s, nil)
			continue
		}
		if !p.sample {
			continue
		}
		if f := l.accept(s, toks[i]); f != FinishNone {
			s.finishing = f
			if f == FinishEOS {
				// EOS is not part of the context: nothing left to compute.
				finished[s] = true
				l.end(s, nil)
			}
		}
	}
	kept := running[:0]
	for _, s := range running {
		if !finished[s] {
			kept = append(kept, s)
		}
	}
	clear(running[len(kept):])
	return kept
}

// draws reports whether plan p takes a token from this step's logits: its
// input ends a prompt or is a decode, and its sequence is not finishing
// (whose last token only needed its KV). Nothing in the step changes this
// before the token is accepted: a sequence's finishing is only set after its
// own draw.
func (p plan) draws() bool { return p.sample && p.s.finishing == FinishNone }

// sampleStep draws the step's tokens, toks[i] for each plan that draws (0,
// unread, for the others: every token id is valid, so there is no sentinel). Each sequence has its own Sampler and the logits are
// only read, so the draws of different sequences are independent: with
// more than one sampling (temperature > 0) sequence they run on up to
// GOMAXPROCS goroutines, which all end before it returns. Greedy draws (an
// argmax) stay on the loop goroutine. The tokens are accepted afterwards in
// plan order, so events and callbacks keep their order.
func (l *Loop) sampleStep(plans []plan, logits [][]float32) []uint32 {
	toks := make([]uint32, len(plans))
	var par []int
	for i, p := range plans {
		switch {
		case !p.draws():
		case p.s.Sampler.Params().Temperature > 0:
			par = append(par, i)
		default:
			toks[i] = p.s.Sampler.Sample(logits[i])
		}
	}
	parallelFor(len(par), runtime.GOMAXPROCS(0), func(j int) {
		i := par[j]
		toks[i] = plans[i].s.Sampler.Sample(logits[i])
	})
	return toks
}

// parallelFor calls f(0..n-1) on at most workers goroutines (the caller's
// among them) and returns when every call has returned. Each goroutine
// takes the next index until none is left, so a slow draw does not hold
// up a fixed share of the others.
func parallelFor(n, workers int, f func(int)) {
	workers = min(workers, n)
	if workers <= 1 {
		for i := 0; i < n; i++ {
			f(i)
		}
		return
	}
	var next atomic.Int64
	work := func() {
		for {
			i := int(next.Add(1)) - 1
			if i >= n {
				return
			}
			f(i)
		}
	}
	var wg sync.WaitGroup
	for w := 1; w < workers; w++ {
		wg.Go(work)
	}
	work()
	wg.Wait()
}

// accept records a sampled token and says whether the sequence ends.
func (l *Loop) accept(s *Seq, tok uint32) Finish {
	if slices.Contains(s.EOS, tok) {
		return FinishEOS
	}
	s.Generated = append(s.Generated, tok)
	s.last = tok
	s.Events <- Event{Token: tok}
	switch {
	case s.Stop != nil && s.Stop(tok):
		return FinishStop
	case len(s.Generated) >= s.MaxTokens:
		return FinishLength
	case len(s.Tokens)+len(s.Generated) >= s.MaxPositions:
		return FinishContext
	}
	return FinishNone
}

// forward runs the engine, turning a panic into an error so one bad step
// cannot take the scheduler down with every other stream.
func (l *Loop) forward(inputs []engine.StepInput) (logits [][]float32, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	start := time.Now()
	logits, err = l.cfg.Engine.Step(inputs)
	if d := time.Since(start); d > 5*time.Second {
		l.cfg.Logger.Warn("slow engine step", "duration", d, "inputs", len(inputs))
	}
	return logits, err
}

// IsClosed reports whether err is the loop's shutdown error.
func IsClosed(err error) bool { return errors.Is(err, ErrClosed) }
