package engine

import (
	"math"
	"os"
	"testing"

	"github.com/semantic-kv/semantic/pkg/model"
)

// TestSmallLongContext fills builtin:small's whole 8192-position context and
// checks that the logits stay finite and spread out. It takes minutes on two
// cores, so it runs only with SEMANTIC_LONG_TEST=1.
func TestSmallLongContext(t *testing.T) {
	if os.Getenv("SEMANTIC_LONG_TEST") != "1" {
		t.Skip("set SEMANTIC_LONG_TEST=1")
	}
	m, err := model.Load("builtin:small", "")
	if err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, m, 16, 0)
	s := newSeq(e, m.Config.SeqLen)
	r := &model.SplitMix64{State: 8}
	prompt := randTokens(r, m.Config.SeqLen, m.Config.Vocab)
	for pos := 0; pos < len(prompt); pos += 1024 {
		out, err := e.Step([]StepInput{{Seq: s, Tokens: prompt[pos : pos+1024]}})
		if err != nil {
			t.Fatal(err)
		}
		lo, hi := float32(math.Inf(1)), float32(math.Inf(-1))
		for _, v := range out[0] {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("position %d: non-finite logit", pos+1023)
			}
			lo, hi = min(lo, v), max(hi, v)
		}
		if hi-lo < 1 {
			t.Fatalf("position %d: logits nearly tied (%v..%v)", pos+1023, lo, hi)
		}
		t.Logf("position %d: logits in [%.2f, %.2f], argmax %d", pos+1023, lo, hi, Argmax(out[0]))
	}
	for _, b := range s.Blocks {
		for _, v := range b.Data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatal("non-finite KV")
			}
		}
	}
}
