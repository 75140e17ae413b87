package engine

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/model"
)

func randTokens(r *model.SplitMix64, n, vocab int) []uint32 {
	t := make([]uint32, n)
	for i := range t {
		t[i] = uint32(r.Next() % uint64(vocab))
	}
	return t
}

func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func intn(r *model.SplitMix64, n int) int { return int(r.Next() % uint64(n)) }

// prefillChunks feeds toks in random chunks, returning the last logits.
func prefillChunks(t *testing.T, e *Engine, s *Sequence, toks []uint32, r *model.SplitMix64) []float32 {
	t.Helper()
	var lg [][]float32
	var err error
	for len(toks) > 0 {
		n := 1 + intn(r, len(toks))
		if lg, err = e.Step([]StepInput{{Seq: s, Tokens: toks[:n]}}); err != nil {
			t.Fatal(err)
		}
		toks = toks[n:]
	}
	return lg[0]
}

// TestCacheEquivalence is the scheduler's warm-resume contract: request 1
// prefills in random chunks and decodes token by token; request 2 extends
// request 1's conversation and reuses a random prefix of its KV, written out
// with EncodeBlock and read back with DecodeBlock into a fresh engine
// (including a copy-on-write partial block). Its tokens and logits must be
// bit-identical to a cold run that prefills everything at once.
func TestCacheEquivalence(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		m := tinyModel(t)
		r := &model.SplitMix64{State: 2024}
		for trial := 0; trial < 10; trial++ {
			tpb := []int{1, 3, 4, 16, 32}[intn(r, 5)]
			workers := 1 + intn(r, 3)
			p1 := randTokens(r, 1+intn(r, 40), m.Config.Vocab)
			decode := 1 + intn(r, 10)
			const gen = 6

			// Request 1.
			e1 := newEngine(t, m, tpb, workers)
			s1 := newSeq(e1, 200)
			lg := prefillChunks(t, e1, s1, p1, r)
			hist := append([]uint32(nil), p1...)
			for i := 0; i < decode; i++ {
				next := Argmax(lg)
				hist = append(hist, next)
				out, err := e1.Step([]StepInput{{Seq: s1, Tokens: []uint32{next}}})
				if err != nil {
					t.Fatal(err)
				}
				lg = out[0]
			}
			if s1.Len != len(hist) {
				t.Fatalf("len %d, history %d", s1.Len, len(hist))
			}
			// Request 2 = history + a new turn.
			p2 := append(append([]uint32(nil), hist...), randTokens(r, 1+intn(r, 8), m.Config.Vocab)...)
			split := 1 + intn(r, s1.Len)

			// Warm: pool round trip of the prefix blocks.
			e2 := newEngine(t, m, tpb, 1+intn(r, 3))
			spec := e1.Spec()
			s2 := &Sequence{Len: split}
			for b := 0; b*tpb < split; b++ {
				src := s1.Blocks[b]
				if n := split - b*tpb; n < tpb {
					cow := e1.NewBlock()
					if err := CopyPrefix(cow, src, spec, n); err != nil {
						t.Fatal(err)
					}
					src = cow
				}
				payload, err := EncodeBlock(spec, src, kvspec.DTypeFloat32)
				if err != nil {
					t.Fatal(err)
				}
				blk, err := DecodeBlock(spec, payload, kvspec.DTypeFloat32)
				if err != nil {
					t.Fatal(err)
				}
				s2.Blocks = append(s2.Blocks, blk)
			}
			for len(s2.Blocks)*tpb < 200 {
				s2.Blocks = append(s2.Blocks, e2.NewBlock())
			}
			warm, warmLg := greedy(t, e2, s2, p2[split:], gen)

			e3 := newEngine(t, m, tpb, workers)
			cold, coldLg := greedy(t, e3, newSeq(e3, 200), p2, gen)
			sameTurn(t, fmt.Sprintf("trial %d (tpb %d split %d/%d)", trial, tpb, split, len(p2)), warm, cold, warmLg, coldLg)
		}
	})
}

// TestBatchedEqualsSolo runs sequences alone, then all together with
// staggered starts so one step mixes prefill chunks and decode tokens: every
// logit must be bit-identical.
func TestBatchedEqualsSolo(t *testing.T) {
	forEachKernelAndKV(t, func(t *testing.T) {
		m := tinyModel(t)
		r := &model.SplitMix64{State: 99}
		const nseq, gen = 5, 5
		prompts := make([][]uint32, nseq)
		for i := range prompts {
			prompts[i] = randTokens(r, 1+intn(r, 30), m.Config.Vocab)
		}
		solo := make([][][]float32, nseq)
		soloTok := make([][]uint32, nseq)
		for i, p := range prompts {
			e := newEngine(t, m, 8, 1)
			soloTok[i], solo[i] = greedy(t, e, newSeq(e, 64), p, gen)
		}
		for _, workers := range []int{1, 2, 3} {
			e := newEngine(t, m, 8, workers)
			seqs := make([]*Sequence, nseq)
			next := make([][]uint32, nseq)
			done := make([]int, nseq)
			for i := range seqs {
				seqs[i] = newSeq(e, 64)
				next[i] = prompts[i]
			}
			for step := 0; ; step++ {
				var batch []StepInput
				var who []int
				for i := range seqs {
					if i <= step && done[i] < gen { // sequence i joins at step i
						batch = append(batch, StepInput{Seq: seqs[i], Tokens: next[i]})
						who = append(who, i)
					}
				}
				if len(batch) == 0 {
					break
				}
				out, err := e.Step(batch)
				if err != nil {
					t.Fatal(err)
				}
				for j, i := range who {
					if !sameBits(out[j], solo[i][done[i]]) {
						t.Fatalf("workers %d: seq %d step %d: batched logits differ from solo", workers, i, done[i])
					}
					tok := Argmax(out[j])
					if tok != soloTok[i][done[i]] {
						t.Fatalf("token mismatch")
					}
					next[i] = []uint32{tok}
					done[i]++
				}
			}
		}
	})
}

// TestChunkedPrefillEqualsTokenByToken: the logits after any position and
// the KV pages are bit-identical however the prompt is chunked.
func TestChunkedPrefillEqualsTokenByToken(t *testing.T) {
	forEachKernelAndKV(t, func(t *testing.T) {
		m := tinyModel(t)
		r := &model.SplitMix64{State: 5}
		prompt := randTokens(r, 45, m.Config.Vocab)
		e := newEngine(t, m, 4, 2)
		ref := newSeq(e, 48)
		var perPos [][]float32
		for _, tok := range prompt {
			out, err := e.Step([]StepInput{{Seq: ref, Tokens: []uint32{tok}}})
			if err != nil {
				t.Fatal(err)
			}
			perPos = append(perPos, out[0])
		}
		for trial := 0; trial < 6; trial++ {
			s := newSeq(e, 48)
			for pos := 0; pos < len(prompt); {
				n := 1 + intn(r, len(prompt)-pos)
				if trial == 0 {
					n = len(prompt)
				}
				out, err := e.Step([]StepInput{{Seq: s, Tokens: prompt[pos : pos+n]}})
				if err != nil {
					t.Fatal(err)
				}
				pos += n
				if !sameBits(out[0], perPos[pos-1]) {
					t.Fatalf("trial %d: logits at position %d differ", trial, pos-1)
				}
			}
			for b := range s.Blocks {
				if !bytes.Equal(s.Blocks[b].Bytes(), ref.Blocks[b].Bytes()) {
					t.Fatalf("trial %d: block %d differs", trial, b)
				}
			}
		}
	})
}

func TestStepErrors(t *testing.T) {
	m := tinyModel(t)
	e := newEngine(t, m, 4, 2)
	good := newSeq(e, 8)
	if _, err := e.Step([]StepInput{{Seq: good, Tokens: []uint32{1, 2, 3}}}); err != nil {
		t.Fatal(err)
	}
	snapshot := func() [][]float32 {
		var s [][]float32
		for _, b := range good.Blocks {
			s = append(s, append([]float32(nil), b.Data...))
		}
		return s
	}
	before := snapshot()
	shared := newSeq(e, 8)
	shared.Blocks[0] = good.Blocks[0]
	small := &Sequence{Blocks: []*Block{{Data: make([]float32, 10)}}}
	long := newSeq(e, m.Config.SeqLen+4)
	long.Len = m.Config.SeqLen - 1
	cases := []struct {
		name  string
		batch []StepInput
		want  error
	}{
		{"token too big", []StepInput{{good, []uint32{1}}, {newSeq(e, 4), []uint32{uint32(m.Config.Vocab)}}}, ErrBadToken},
		// The largest id: would wrap negative as a 32-bit int.
		{"largest id", []StepInput{{good, []uint32{math.MaxUint32}}}, ErrBadToken},
		{"context", []StepInput{{good, []uint32{1}}, {long, []uint32{1, 2}}}, ErrContextLength},
		{"too few blocks", []StepInput{{good, []uint32{1}}, {&Sequence{}, []uint32{1}}}, ErrBlockGeometry},
		{"wrong block size", []StepInput{{good, []uint32{1}}, {small, []uint32{1}}}, ErrBlockGeometry},
		{"nil block", []StepInput{{good, []uint32{1}}, {&Sequence{Blocks: []*Block{nil}}, []uint32{1}}}, ErrBlockGeometry},
		{"nil seq", []StepInput{{good, []uint32{1}}, {nil, []uint32{1}}}, ErrBadInput},
		{"no tokens", []StepInput{{good, []uint32{1}}, {newSeq(e, 4), nil}}, ErrBadInput},
		{"duplicate", []StepInput{{good, []uint32{1}}, {good, []uint32{1}}}, ErrBadInput},
		{"shared written block", []StepInput{{good, []uint32{1}}, {shared, []uint32{1}}}, ErrBadInput},
	}
	for _, c := range cases {
		out, err := e.Step(c.batch)
		if !errors.Is(err, c.want) || out != nil {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
		if good.Len != 3 || !slices.EqualFunc(snapshot(), before, sameBits) {
			t.Fatalf("%s: state changed on error", c.name)
		}
	}
	if _, err := New(nil, Options{}); !errors.Is(err, ErrBadInput) {
		t.Errorf("nil model: %v", err)
	}
	if _, err := New(m, Options{TokensPerBlock: kvspec.MaxTokensPerBlock + 1}); !errors.Is(err, kvspec.ErrInvalidSpec) {
		t.Errorf("huge block: %v", err)
	}
}

func TestBlockCodec(t *testing.T) {
	m := tinyModel(t)
	e := newEngine(t, m, 4, 1)
	spec := e.Spec()
	if spec.DType != kvspec.DTypeFloat32 || spec.ModelTag != CacheTag(m.Tag, kvspec.DTypeFloat32) || !strings.HasPrefix(spec.ModelTag, m.Tag+"/e") || spec.BlockBytes() != 4*len(e.NewBlock().Data) {
		t.Fatalf("spec %v", spec)
	}
	s := newSeq(e, 8)
	if _, err := e.Step([]StepInput{{Seq: s, Tokens: []uint32{1, 5, 9, 13, 200, 7}}}); err != nil {
		t.Fatal(err)
	}
	b := s.Blocks[1]
	p32, err := EncodeBlock(spec, b, kvspec.DTypeFloat32)
	if err != nil || len(p32) != spec.BlockBytes() {
		t.Fatal(err, len(p32))
	}
	if !slices.Equal(p32, b.Bytes()) {
		t.Fatal("Bytes and EncodeBlock differ")
	}
	// Layout: position 1 of block 1 (pos 5), layer 2's V section starts at
	// spec.VOffset(2); element i of that row is little-endian float32.
	row := spec.RowElems()
	off := spec.VOffset(2) + 1*row*4
	if got := math.Float32frombits(uint32(p32[off]) | uint32(p32[off+1])<<8 | uint32(p32[off+2])<<16 | uint32(p32[off+3])<<24); got != b.Data[off/4] || got == 0 {
		t.Fatalf("layout: %v vs %v", got, b.Data[off/4])
	}
	// Positions past the filled count stay zero.
	for l := 0; l < spec.Layers; l++ {
		for _, o := range []int{spec.KOffset(l), spec.VOffset(l)} {
			for _, v := range b.Data[o/4+2*row : o/4+4*row] {
				if v != 0 {
					t.Fatal("unfilled rows not zero")
				}
			}
		}
	}
	d32, err := DecodeBlock(spec, p32, kvspec.DTypeFloat32)
	if err != nil || !sameBits(d32.Data, b.Data) {
		t.Fatal("f32 round trip", err)
	}
	view, err := BlockView(spec, p32)
	if err != nil || !sameBits(view.Data, b.Data) {
		t.Fatal("view", err)
	}
	p16, err := EncodeBlock(spec, b, kvspec.DTypeFloat16)
	if err != nil || len(p16) != spec.BlockBytes()/2 {
		t.Fatal(err)
	}
	d16, err := DecodeBlock(spec, p16, kvspec.DTypeFloat16)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range b.Data {
		if math.Abs(float64(d16.Data[i]-v)) > 1e-3*math.Max(1, math.Abs(float64(v))) {
			t.Fatalf("f16 %d: %v vs %v", i, d16.Data[i], v)
		}
	}
	// Bad geometry.
	if _, err := DecodeBlock(spec, p32[:len(p32)-4], kvspec.DTypeFloat32); !errors.Is(err, ErrBlockGeometry) {
		t.Errorf("short payload: %v", err)
	}
	if _, err := DecodeBlock(spec, p32, kvspec.DTypeFloat16); !errors.Is(err, ErrBlockGeometry) {
		t.Errorf("f32 payload as f16: %v", err)
	}
	if _, err := BlockView(spec, p16); !errors.Is(err, ErrBlockGeometry) {
		t.Errorf("view of f16: %v", err)
	}
	if _, err := EncodeBlock(spec, &Block{Data: make([]float32, 3)}, kvspec.DTypeFloat32); !errors.Is(err, ErrBlockGeometry) {
		t.Errorf("short block: %v", err)
	}
	if _, err := DecodeBlock(spec, p32, kvspec.DType(9)); !errors.Is(err, ErrBlockGeometry) {
		t.Errorf("bad dtype: %v", err)
	}
	other := spec
	other.TokensPerBlock = 8
	if _, err := DecodeBlock(other, p32, kvspec.DTypeFloat32); !errors.Is(err, ErrBlockGeometry) {
		t.Errorf("other geometry: %v", err)
	}
	if err := e.CheckSpec(other); !errors.Is(err, ErrBlockGeometry) {
		t.Errorf("CheckSpec: %v", err)
	}
	half := spec
	half.DType = kvspec.DTypeFloat16
	if err := e.CheckSpec(half); err != nil {
		t.Errorf("CheckSpec f16: %v", err)
	}
	if err := CopyPrefix(e.NewBlock(), b, spec, 5); !errors.Is(err, ErrBadInput) {
		t.Errorf("CopyPrefix n: %v", err)
	}
	if err := CopyPrefix(&Block{}, b, spec, 1); !errors.Is(err, ErrBlockGeometry) {
		t.Errorf("CopyPrefix size: %v", err)
	}
}

func TestSampler(t *testing.T) {
	logits := []float32{1, 3, 3, 0.5, -1, 2.9}
	if got := NewSampler(SamplingParams{}).Sample(logits); got != 1 {
		t.Fatalf("greedy: %d", got)
	}
	draw := func(p SamplingParams, n int) []uint32 {
		s := NewSampler(p)
		var out []uint32
		for i := 0; i < n; i++ {
			out = append(out, s.Sample(logits))
		}
		return out
	}
	p := SamplingParams{Temperature: 1, Seed: 7}
	a, b := draw(p, 200), draw(p, 200)
	if !slices.Equal(a, b) {
		t.Fatal("same seed, different tokens")
	}
	p.Seed = 8
	if slices.Equal(a, draw(p, 200)) {
		t.Fatal("different seed, same tokens")
	}
	for _, tok := range draw(SamplingParams{Temperature: 1, TopK: 2, Seed: 1}, 200) {
		if tok != 1 && tok != 2 {
			t.Fatalf("top-k 2 drew %d", tok)
		}
	}
	// Top-p 0.5: ids 1 and 2 alone carry ~0.6 of the mass.
	seen := map[uint32]bool{}
	for _, tok := range draw(SamplingParams{Temperature: 1, TopP: 0.5, Seed: 1}, 500) {
		seen[tok] = true
	}
	if len(seen) != 2 || !seen[1] || !seen[2] {
		t.Fatalf("top-p drew %v", seen)
	}
	// High temperature reaches everything.
	seen = map[uint32]bool{}
	for _, tok := range draw(SamplingParams{Temperature: 100, Seed: 3}, 2000) {
		seen[tok] = true
	}
	if len(seen) != len(logits) {
		t.Fatalf("temperature 100 drew %v", seen)
	}
	// The unsorted path (no top-k, no top-p) draws with the softmax
	// probabilities: 1/7, 2/7, 4/7 here.
	counts := make([]int, 3)
	s := NewSampler(SamplingParams{Temperature: 1, Seed: 5})
	for i := 0; i < 7000; i++ {
		counts[s.Sample([]float32{0, float32(math.Ln2), float32(2 * math.Ln2)})]++
	}
	for i, want := range []int{1000, 2000, 4000} {
		if math.Abs(float64(counts[i]-want)) > 200 {
			t.Fatalf("draw counts %v, want about 1000/2000/4000", counts)
		}
	}
	if got := NewSampler(SamplingParams{Temperature: 1}).Sample([]float32{float32(math.NaN()), 1}); got != 1 {
		t.Fatalf("NaN logit drawn: %d", got)
	}
	// Nothing to draw from: 0, greedy or not (a token id has no "none").
	for _, p := range []SamplingParams{{}, {Temperature: 1}, {Temperature: 1, TopK: 2}, {Temperature: 1, TopP: 0.5}} {
		if got := NewSampler(p).Sample(nil); got != 0 {
			t.Fatalf("%+v: empty logits drew %d", p, got)
		}
	}
}
