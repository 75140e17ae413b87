package engine

import (
	"slices"
	"testing"

	"go.uber.org/goleak"

	"github.com/semantic-kv/semantic/pkg/model"
	"github.com/semantic-kv/semantic/pkg/testmodels"
)

// TestMain checks that no goroutine outlives the tests: the worker pool's
// helpers must exit once their engine is idle.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// modelsFile finds a real model file (see package testmodels).
func modelsFile(t testing.TB, name string) string { return testmodels.File(t, name) }

// tokenIDs converts the tokenizer's ids (int) to the engine's token type.
func tokenIDs(ids []int) []uint32 {
	out := make([]uint32, len(ids))
	for i, id := range ids {
		out[i] = uint32(id)
	}
	return out
}

var tinyModel = func() func(testing.TB) *model.Model {
	var m *model.Model
	return func(t testing.TB) *model.Model {
		if m == nil {
			var err error
			if m, err = model.Load("builtin:tiny", ""); err != nil {
				t.Fatal(err)
			}
		}
		return m
	}
}()

func newEngine(t testing.TB, m *model.Model, tpb, workers int) *Engine {
	t.Helper()
	e, err := New(m, Options{Workers: workers, TokensPerBlock: tpb, KVDType: kvType})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// newSeq allocates enough blocks for n positions.
func newSeq(e *Engine, n int) *Sequence {
	s := &Sequence{}
	for i := 0; i < (n+e.tpb-1)/e.tpb; i++ {
		s.Blocks = append(s.Blocks, e.NewBlock())
	}
	return s
}

// greedy prefills prompt in one step then decodes n tokens one at a time,
// returning the generated ids and every step's logits.
func greedy(t testing.TB, e *Engine, s *Sequence, prompt []uint32, n int) ([]uint32, [][]float32) {
	t.Helper()
	var out []uint32
	var all [][]float32
	toks := prompt
	for i := 0; i < n; i++ {
		lg, err := e.Step([]StepInput{{Seq: s, Tokens: toks}})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, lg[0])
		next := Argmax(lg[0])
		out = append(out, next)
		toks = []uint32{next}
	}
	return out, all
}

// sameTurn fails the test unless a warm run generated the cold run's tokens
// and, step by step, its logits bit for bit.
func sameTurn(t testing.TB, what string, warm, cold []uint32, warmLg, coldLg [][]float32) {
	t.Helper()
	if !slices.Equal(warm, cold) {
		t.Fatalf("%s: warm %v cold %v", what, warm, cold)
	}
	for i := range warmLg {
		if !sameBits(warmLg[i], coldLg[i]) {
			t.Fatalf("%s: logits of step %d differ", what, i)
		}
	}
}
