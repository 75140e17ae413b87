package batch

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/semantic-kv/semantic/pkg/engine"
	"github.com/semantic-kv/semantic/pkg/model"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const tpb = 8

func newEngine(t testing.TB) *engine.Engine {
	t.Helper()
	m, err := model.Load("builtin:tiny", "")
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(m, engine.Options{TokensPerBlock: tpb})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func newSeq(ctx context.Context, e *engine.Engine, prompt []uint32, maxTokens int) *Seq {
	positions := len(prompt) + maxTokens
	eng := &engine.Sequence{}
	for i := 0; i < (positions+tpb-1)/tpb; i++ {
		eng.Blocks = append(eng.Blocks, e.NewBlock())
	}
	return &Seq{
		Ctx: ctx, Tokens: prompt, Eng: eng, MaxTokens: maxTokens, MaxPositions: 1 << 20,
		Sampler: engine.NewSampler(engine.SamplingParams{}),
		Events:  make(chan Event, maxTokens+1),
	}
}

func collect(t *testing.T, s *Seq) ([]uint32, Finish, error) {
	t.Helper()
	var toks []uint32
	var fin Finish
	var err error
	timeout := time.After(2 * time.Minute)
	for {
		select {
		case ev, ok := <-s.Events:
			if !ok {
				return toks, fin, err
			}
			switch {
			case ev.Err != nil:
				err = ev.Err
			case ev.Finish != FinishNone:
				fin = ev.Finish
			default:
				toks = append(toks, ev.Token)
			}
		case <-timeout:
			t.Fatal("sequence did not finish")
		}
	}
}

func randomPrompt(r *rand.Rand, n, vocab int) []uint32 {
	p := make([]uint32, n)
	for i := range p {
		p[i] = uint32(3 + r.IntN(vocab-3))
	}
	return p
}

// Continuous batching must not change what any sequence generates: every
// sequence run together with others (prefill chunks interleaved with other
// sequences' decode steps) gives the tokens it gives alone.
func TestBatchedEqualsAlone(t *testing.T) {
	e := newEngine(t)
	r := rand.New(rand.NewPCG(1, 2))
	const n = 6
	prompts := make([][]uint32, n)
	for i := range prompts {
		prompts[i] = randomPrompt(r, 5+r.IntN(40), e.Model().Config.Vocab)
	}
	alone := make([][]uint32, n)
	l := New(Config{Engine: e, MaxBatch: 1, StepTokens: 16})
	for i, p := range prompts {
		s := newSeq(context.Background(), e, p, 12)
		if err := l.Submit(s); err != nil {
			t.Fatal(err)
		}
		toks, fin, err := collect(t, s)
		if err != nil || fin != FinishLength || len(toks) != 12 {
			t.Fatalf("alone %d: %v %v %d", i, err, fin, len(toks))
		}
		if s.Eng.Len != len(p)+12 {
			t.Fatalf("the last token's KV was not computed: len %d, want %d", s.Eng.Len, len(p)+12)
		}
		alone[i] = toks
	}
	l.Close()

	l = New(Config{Engine: e, MaxBatch: 4, StepTokens: 10})
	defer l.Close()
	seqs := make([]*Seq, n)
	for i, p := range prompts {
		seqs[i] = newSeq(context.Background(), e, p, 12)
		if err := l.Submit(seqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range seqs {
		toks, _, err := collect(t, s)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(toks, alone[i]) {
			t.Fatalf("sequence %d: batched %v, alone %v", i, toks, alone[i])
		}
	}
	if st := l.Stats(); st.Steps == 0 || st.PrefillTokens == 0 || st.DecodeTokens == 0 {
		t.Fatalf("stats not counted: %+v", st)
	}
}

func TestBlockFullReportedOnceInOrder(t *testing.T) {
	e := newEngine(t)
	l := New(Config{Engine: e, MaxBatch: 2, StepTokens: 5})
	defer l.Close()
	prompt := randomPrompt(rand.New(rand.NewPCG(3, 4)), 19, e.Model().Config.Vocab)
	s := newSeq(context.Background(), e, prompt, 10)
	var full []int
	s.BlockFull = func(i int) { full = append(full, i) }
	if err := l.Submit(s); err != nil {
		t.Fatal(err)
	}
	if _, _, err := collect(t, s); err != nil {
		t.Fatal(err)
	}
	// 19 + 10 = 29 positions: blocks 0, 1, 2 are full; block 3 holds 5.
	if !reflect.DeepEqual(full, []int{0, 1, 2}) {
		t.Fatalf("full blocks %v", full)
	}
}

func TestStopAndEOS(t *testing.T) {
	e := newEngine(t)
	l := New(Config{Engine: e})
	defer l.Close()
	prompt := []uint32{1, 10, 20, 30}
	s := newSeq(context.Background(), e, prompt, 20)
	if err := l.Submit(s); err != nil {
		t.Fatal(err)
	}
	ref, _, _ := collect(t, s)

	s = newSeq(context.Background(), e, prompt, 20)
	s.Stop = func(tok uint32) bool { return tok == ref[3] }
	if err := l.Submit(s); err != nil {
		t.Fatal(err)
	}
	toks, fin, err := collect(t, s)
	first := indexOf(ref, ref[3])
	if err != nil || fin != FinishStop || len(toks) != first+1 {
		t.Fatalf("stop: %v %v %v (ref %v)", toks, fin, err, ref)
	}

	s = newSeq(context.Background(), e, prompt, 20)
	s.EOS = []uint32{ref[2]}
	if err := l.Submit(s); err != nil {
		t.Fatal(err)
	}
	toks, fin, err = collect(t, s)
	if err != nil || fin != FinishEOS || len(toks) != indexOf(ref, ref[2]) {
		t.Fatalf("eos: %v %v %v (ref %v)", toks, fin, err, ref)
	}
	if s.Eng.Len != len(prompt)+len(toks) {
		t.Fatalf("after EOS the context is prompt + tokens before EOS: len %d", s.Eng.Len)
	}

	s = newSeq(context.Background(), e, prompt, 20)
	s.MaxPositions = len(prompt) + 5
	if err := l.Submit(s); err != nil {
		t.Fatal(err)
	}
	toks, fin, err = collect(t, s)
	if err != nil || fin != FinishContext || len(toks) != 5 {
		t.Fatalf("context: %v %v %v", toks, fin, err)
	}
}

func indexOf(xs []uint32, x uint32) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}

func TestCancelLeavesAtNextStep(t *testing.T) {
	e := newEngine(t)
	l := New(Config{Engine: e, StepTokens: 4})
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	s := newSeq(ctx, e, randomPrompt(rand.New(rand.NewPCG(5, 6)), 40, e.Model().Config.Vocab), 500)
	if err := l.Submit(s); err != nil {
		t.Fatal(err)
	}
	cancel()
	_, _, err := collect(t, s)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want the context's error, got %v", err)
	}
	// The loop updates its counters right after it ends the sequence.
	for deadline := time.Now().Add(10 * time.Second); l.Stats().Running != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still running: %+v", l.Stats())
		}
	}
}

func TestCloseFailsEverything(t *testing.T) {
	e := newEngine(t)
	l := New(Config{Engine: e, MaxBatch: 1, StepTokens: 2})
	var seqs []*Seq
	for i := 0; i < 3; i++ {
		s := newSeq(context.Background(), e, []uint32{1, 5, 6, 7, 8, 9}, 400)
		if err := l.Submit(s); err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, s)
	}
	l.Close()
	for i, s := range seqs {
		if _, _, err := collect(t, s); !IsClosed(err) {
			t.Fatalf("seq %d: %v", i, err)
		}
	}
	if err := l.Submit(newSeq(context.Background(), e, []uint32{1, 2}, 1)); !IsClosed(err) {
		t.Fatalf("submit after close: %v", err)
	}
}

func TestSubmitValidates(t *testing.T) {
	e := newEngine(t)
	l := New(Config{Engine: e})
	defer l.Close()
	s := newSeq(context.Background(), e, []uint32{1, 2}, 4)
	s.Eng.Len = 2
	if err := l.Submit(s); err == nil {
		t.Fatal("a fully cached prompt has nothing to prefill and must be refused")
	}
	s = newSeq(context.Background(), e, []uint32{1, 2}, 4)
	s.Events = make(chan Event, 1)
	if err := l.Submit(s); err == nil {
		t.Fatal("a too small events channel must be refused")
	}
	_ = fmt.Sprint()
}

// A step the engine refuses because of one input (a token outside the
// vocabulary) fails that sequence alone; the others of the batch go on and
// compute exactly what they compute alone (issue 13, defect 5).
func TestBadInputFailsOnlyItsSequence(t *testing.T) {
	e := newEngine(t)
	vocab := e.Model().Config.Vocab
	r := rand.New(rand.NewPCG(5, 13))
	prompts := [][]uint32{randomPrompt(r, 12, vocab), randomPrompt(r, 20, vocab), randomPrompt(r, 7, vocab)}
	alone := make([][]uint32, len(prompts))
	l := New(Config{Engine: e, MaxBatch: 1, StepTokens: 64})
	for i, p := range prompts {
		s := newSeq(context.Background(), e, p, 10)
		if err := l.Submit(s); err != nil {
			t.Fatal(err)
		}
		toks, _, err := collect(t, s)
		if err != nil {
			t.Fatal(err)
		}
		alone[i] = toks
	}
	l.Close()

	l = New(Config{Engine: e, MaxBatch: 8, StepTokens: 256})
	defer l.Close()
	bad := newSeq(context.Background(), e, []uint32{1, 5, uint32(vocab) + 5, 7}, 10)
	seqs := make([]*Seq, len(prompts))
	for i, p := range prompts {
		seqs[i] = newSeq(context.Background(), e, p, 10)
		if i == 1 {
			if err := l.Submit(bad); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Submit(seqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := collect(t, bad); !errors.Is(err, ErrEngine) {
		t.Fatalf("bad sequence: want ErrEngine, got %v", err)
	}
	for i, s := range seqs {
		toks, fin, err := collect(t, s)
		if err != nil || fin != FinishLength {
			t.Fatalf("bystander %d: %v %v", i, err, fin)
		}
		if !reflect.DeepEqual(toks, alone[i]) {
			t.Fatalf("bystander %d: batched %v, alone %v", i, toks, alone[i])
		}
	}
}

// Sampled sequences drawn concurrently in one step give the tokens they give
// alone: each Sampler is the sequence's own, and the tokens are accepted in
// plan order. Greedy and sampling sequences are mixed in one batch.
func TestSampledBatchedEqualsAlone(t *testing.T) {
	e := newEngine(t)
	r := rand.New(rand.NewPCG(3, 4))
	const n = 8
	params := func(i int) engine.SamplingParams {
		switch i % 4 {
		case 0:
			return engine.SamplingParams{} // greedy
		case 1:
			return engine.SamplingParams{Temperature: 1, Seed: uint64(i)}
		case 2:
			return engine.SamplingParams{Temperature: 0.8, TopK: 20, Seed: uint64(i)}
		default:
			return engine.SamplingParams{Temperature: 1.2, TopP: 0.9, Seed: uint64(i)}
		}
	}
	prompts := make([][]uint32, n)
	for i := range prompts {
		prompts[i] = randomPrompt(r, 3+r.IntN(20), e.Model().Config.Vocab)
	}
	run := func(maxBatch int) [][]uint32 {
		l := New(Config{Engine: e, MaxBatch: maxBatch, StepTokens: 64})
		defer l.Close()
		seqs := make([]*Seq, n)
		for i, p := range prompts {
			seqs[i] = newSeq(context.Background(), e, p, 16)
			seqs[i].Sampler = engine.NewSampler(params(i))
			if err := l.Submit(seqs[i]); err != nil {
				t.Fatal(err)
			}
			if maxBatch == 1 {
				// one at a time: every draw is alone in its step
				if _, _, err := collect(t, seqs[i]); err != nil {
					t.Fatal(err)
				}
			}
		}
		out := make([][]uint32, n)
		for i, s := range seqs {
			if maxBatch != 1 {
				if _, _, err := collect(t, s); err != nil {
					t.Fatal(err)
				}
			}
			out[i] = s.Generated
		}
		return out
	}
	alone, batched := run(1), run(n)
	for i := range alone {
		if len(alone[i]) != 16 || !reflect.DeepEqual(alone[i], batched[i]) {
			t.Fatalf("sequence %d (%+v): batched %v, alone %v", i, params(i), batched[i], alone[i])
		}
	}
}

// parallelFor calls every index once, never on more goroutines than asked.
func TestParallelForBounded(t *testing.T) {
	for _, c := range []struct{ n, workers int }{{0, 4}, {1, 4}, {5, 1}, {7, 2}, {50, 3}, {3, 16}} {
		var mu sync.Mutex
		calls := make([]int, c.n)
		var active, peak atomic.Int64
		parallelFor(c.n, c.workers, func(i int) {
			a := active.Add(1)
			defer active.Add(-1)
			for {
				p := peak.Load()
				if a <= p || peak.CompareAndSwap(p, a) {
					break
				}
			}
			time.Sleep(time.Millisecond) // let the others overlap
			mu.Lock()
			calls[i]++
			mu.Unlock()
		})
		for i, k := range calls {
			if k != 1 {
				t.Fatalf("n=%d workers=%d: index %d called %d times", c.n, c.workers, i, k)
			}
		}
		if p := peak.Load(); p > int64(max(c.workers, 1)) {
			t.Fatalf("n=%d workers=%d: %d calls at once", c.n, c.workers, p)
		}
	}
}
