package service

import (
	"slices"
	"testing"

	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
	"github.com/semantic-kv/semantic/pkg/engine"
	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/services/scheduler/batch"
	"github.com/semantic-kv/semantic/services/scheduler/poolnode/poolnodetest"
)

// newFakeEnvKV is newFakeEnv with pages and blocks of dtype and a hot cache
// of hotBlocks blocks (0: off).
func newFakeEnvKV(t *testing.T, dtype kvspec.DType, hotBlocks int) *fakeEnv {
	t.Helper()
	m, err := tinyModel()
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(m, engine.Options{Workers: 2, TokensPerBlock: fakeTPB, KVDType: dtype})
	if err != nil {
		t.Fatal(err)
	}
	spec := eng.Spec()
	spec.DType = dtype
	e := &fakeEnv{spec: spec}
	f := poolnodetest.New("fake-0", spec, 64)
	e.nodes = append(e.nodes, f)
	e.loop = batch.New(batch.Config{Engine: eng})
	t.Cleanup(e.loop.Close)
	e.s, err = New(Config{Model: m, Engine: eng, Loop: e.loop, Pool: poolnodetest.Set{f}, Spec: spec, HolderID: "test-scheduler",
		HotCacheBytes: int64(hotBlocks * spec.BlockBytes())})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// The engine's pages are the stored blocks for every element type: the
// blocks written back are the spec's size (the fake node checks), a warm
// turn resumes from them, through the node or the hot cache, with a
// copy-on-write partial block, and computes the tokens of a cold run; and
// the hot cache counts a page at its real size.
func TestStoredPagesWarmEqualsCold(t *testing.T) {
	for _, dt := range []kvspec.DType{kvspec.DTypeFloat32, kvspec.DTypeFloat16, kvspec.DTypeQ8_0, kvspec.DTypeQ4_0} {
		t.Run(dt.String(), func(t *testing.T) {
			p := prompt(13)
			second := &schedulerv1.GenerateRequest{AgentId: "a", PromptTokenIds: append(slices.Clone(p), 9, 10, 11), MaxTokens: 6}
			var want []uint32
			// A hot cache of 4 blocks holds the first turn's pages only if
			// it counts each at its stored size.
			for _, hot := range []int{0, 4} {
				e := newFakeEnvKV(t, dt, hot)
				if tr := e.run(&schedulerv1.GenerateRequest{AgentId: "a", PromptTokenIds: p, MaxTokens: 3}); tr.err != nil || !tr.final.GetUsage().GetTurnSaved() {
					t.Fatalf("first turn: %v %+v", tr.err, tr.final.GetUsage())
				}
				n := e.nodes[0].CachedBlocks()
				if n == 0 || n > 4 {
					t.Fatalf("%d blocks written back", n)
				}
				if st := e.s.hot.Stats(); hot > 0 && (st.Entries != n || st.Bytes != int64(n*e.spec.BlockBytes())) {
					t.Fatalf("hot cache %+v after %d blocks of %d bytes", st, n, e.spec.BlockBytes())
				}
				warm := e.run(second)
				u := warm.final.GetUsage()
				// 13 prompt tokens: three full blocks of 4 used in place, a
				// partly matching fourth copied.
				if warm.err != nil || u.GetCachedTokens() != 13 || (hot > 0) != (u.GetHotCachedTokens() == 13) {
					t.Fatalf("hot %d: warm turn: %v %+v", hot, warm.err, u)
				}
				cold := newFakeEnvKV(t, dt, 0).run(second)
				if cold.err != nil || cold.final.GetUsage().GetCachedTokens() != 0 {
					t.Fatalf("cold turn: %v %+v", cold.err, cold.final.GetUsage())
				}
				if !slices.Equal(warm.tokens, cold.tokens) {
					t.Fatalf("hot %d: warm %v, cold %v", hot, warm.tokens, cold.tokens)
				}
				if want != nil && !slices.Equal(warm.tokens, want) {
					t.Fatalf("warm from the hot cache %v, from the node %v", warm.tokens, want)
				}
				want = warm.tokens
			}
		})
	}
}
