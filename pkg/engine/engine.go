// Package engine runs the batched transformer forward pass of a model.Model
// over KV pages laid out exactly as kvspec blocks, so blocks from the pool
// are attended over in place. It contains no RPC; the scheduler drives it.
//
// Every output element is computed with a reduction order that depends only
// on the model, never on the batch: a request gets bit-identical logits
// whether it runs alone or batched, and whether its KV was computed in one
// prefill, in chunks, or one token at a time (see docs/engine.md).
package engine

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/model"
)

// Errors of Step and the block codec; test with errors.Is.
var (
	// ErrBadToken: a token id not below the vocabulary size.
	ErrBadToken = errors.New("token id out of vocabulary")
	// ErrContextLength: a sequence would grow past the model's context.
	ErrContextLength = errors.New("context length exceeded")
	// ErrBlockGeometry: a block or payload does not match the spec, or a
	// sequence has too few blocks for its positions.
	ErrBlockGeometry = errors.New("block geometry mismatch")
	// ErrBadInput: a malformed batch (nil sequence, no tokens, a sequence
	// twice, a block written by one sequence and used by another).
	ErrBadInput = errors.New("bad step input")
)

// InputError is a Step error that one input of the batch alone causes (a
// token outside the vocabulary, a sequence past the context, too few or
// malformed blocks): Input is its index in the batch. Step returns it before
// it writes anything, so the batch without that input can be stepped again.
// Err wraps one of the sentinel errors above (errors.Is sees through).
type InputError struct {
	Input int
	Err   error
}

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

// DefaultTokensPerBlock is the page size when Options leaves it zero.
const DefaultTokensPerBlock = 16

// Options configure an Engine.
type Options struct {
	Workers        int // goroutines per parallel region; 0 = GOMAXPROCS
	TokensPerBlock int // positions per KV page; 0 = DefaultTokensPerBlock
	// KVDType is the element type of the pages (the pool's blocks); 0 =
	// float32. Float32 pages are Block.Data; for float16, q8_0 and q4_0 the
	// pages are the stored payload itself (Block.Raw): every K and V row is
	// encoded into it as it is written, attention decodes the rows it reads,
	// and the pool keeps the same bytes, so a warm request computes exactly
	// what the cold one did (kvpage.go).
	KVDType kvspec.DType
}

// Engine runs forward passes for one model. It is not safe for concurrent
// use: call Step from one goroutine at a time (the scheduler's loop). Step
// itself spreads the work over Options.Workers goroutines.
type Engine struct {
	m       *model.Model
	cfg     model.Config
	spec    kvspec.Spec
	kvDType kvspec.DType // the pages' element type (kvpage.go)
	workers int
	tpb     int
	hd, kv  int
	group   int // query heads per KV head

	// Padded sizes: every dimension is rounded up to a multiple of 8 so the
	// kernels never need a tail; the padding is zero and adds exact zeros.
	dimP, qP, kvP, hidP, vocabP, qkvN int
	layers                            []engineLayer
	finalNorm                         []float32
	cls                               linear    // [vocabP] outputs
	ropeCos, ropeSin                  []float32 // [SeqLen][hd/2]
	neox                              bool      // rope pairs (i, i+hd/2), not (2i, 2i+1)
	blockFloats                       int

	pool    *workerPool
	buf     scratch
	attw    []attnWork  // per worker
	rowf    [][]float32 // per worker: one decoded F16/BF16 weight row
	jobs    []attnJob
	writers map[*Block]int
}

type engineLayer struct {
	attNorm, ffnNorm []float32
	bq, bk, bv       []float32 // q/k/v biases, or nil
	qNorm, kNorm     []float32 // per-head RMSNorm weights of q and k, or nil
	wqkv             linear    // q at column 0, k at qP, v at qP+kvP
	wo               linear
	w13              linear // w1 (gate) at 0, w3 (up) at hidP
	w2               linear
}

type scratch struct {
	qa                   []byte    // activation rows quantized to Q8_0 and/or Q8_K blocks
	pa                   []float32 // activation rows packed in pairs (packPairs)
	x, xb, qkv, att, tmp []float32
	h13, hb              []float32
	pos                  []int
	seq                  []int
	xl, logits           []float32
}

func pad8(n int) int { return (n + 7) &^ 7 }

// pack copies a [rows][cols] matrix into dst rows starting at row r0 with
// stride ld (dst is zeroed already).
func pack(dst []float32, ld, r0 int, src []float32, rows, cols int) {
	for r := 0; r < rows; r++ {
		copy(dst[(r0+r)*ld:(r0+r)*ld+cols], src[r*cols:(r+1)*cols])
	}
}

// New prepares an engine: it validates the options and repacks the weights
// into padded, fused matrices (q/k/v in one, w1/w3 in one), so each step
// reads each weight once for the whole batch.
func New(m *model.Model, opts Options) (*Engine, error) {
	if m == nil {
		return nil, fmt.Errorf("%w: nil model", ErrBadInput)
	}
	c := m.Config
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if opts.Workers < 0 || opts.TokensPerBlock < 0 {
		return nil, fmt.Errorf("%w: negative option %+v", ErrBadInput, opts)
	}
	w := opts.Workers
	if w == 0 {
		w = runtime.GOMAXPROCS(0)
	}
	tpb := opts.TokensPerBlock
	if tpb == 0 {
		tpb = DefaultTokensPerBlock
	}
	kvd := opts.KVDType
	if kvd == kvspec.DTypeUnspecified {
		kvd = kvspec.DTypeFloat32
	}
	spec := m.CacheSpec(tpb, kvd)
	spec.ModelTag = CacheTag(m.Tag, kvd)
	// Validating with the stored type refuses q8_0/q4_0 for a model whose
	// K row (kv_heads*head_dim) is not a whole number of 32-groups.
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	spec.DType = kvspec.DTypeFloat32
	e := &Engine{
		m: m, cfg: c, spec: spec, kvDType: kvd, workers: w, tpb: tpb,
		hd: c.HeadDim(), kv: c.KVDim(), group: c.Heads / c.KVHeads,
		dimP: pad8(c.Dim), qP: pad8(c.QDim()), kvP: pad8(c.KVDim()), hidP: pad8(c.HiddenDim), vocabP: pad8(c.Vocab),
		blockFloats: spec.BlockBytes() / 4, pool: newWorkerPool(w),
		writers: map[*Block]int{}, neox: c.Arch.NeoxRope(),
	}
	e.qkvN = e.qP + 2*e.kvP
	if err := m.Check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	e.layers = make([]engineLayer, c.Layers)
	var wg sync.WaitGroup
	for i := range e.layers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, p := &m.Layers[i], &e.layers[i]
			p.attNorm, p.ffnNorm = l.AttNorm, l.FFNNorm
			p.bq, p.bk, p.bv, p.qNorm, p.kNorm = l.Bq, l.Bk, l.Bv, l.QNorm, l.KNorm
			p.wqkv = newLinear(e.qkvN, e.dimP, linPart{t: &l.Wq, off: 0}, linPart{t: &l.Wk, off: e.qP}, linPart{t: &l.Wv, off: e.qP + e.kvP})
			p.wo = newLinear(e.dimP, e.qP, linPart{t: &l.Wo, off: 0})
			p.w13 = newLinear(2*e.hidP, e.dimP, linPart{t: &l.W1, off: 0}, linPart{t: &l.W3, off: e.hidP})
			p.w2 = newLinear(e.dimP, e.hidP, linPart{t: &l.W2, off: 0})
		}()
	}
	wg.Wait()
	e.finalNorm = m.FinalNorm
	e.cls = newLinear(e.vocabP, e.dimP, linPart{t: &m.Classifier, off: 0})
	// Per-worker scratch for a chunk of decoded F16/BF16 rows.
	scratch := 0
	for _, ls := range e.layers {
		for _, l := range []*linear{&ls.wqkv, &ls.wo, &ls.w13, &ls.w2} {
			scratch = max(scratch, l.decodeScratch())
		}
	}
	scratch = max(scratch, e.cls.decodeScratch())
	e.rowf = make([][]float32, w)
	for i := range e.rowf {
		e.rowf[i] = make([]float32, scratch)
	}
	// RoPE tables, computed as run.c does in float32: freq = 1/theta^(2i/hs)
	// for pair i, angle = pos*freq. Llama 3.1 frequency factors and linear
	// scaling divide the frequency (one more float32 rounding each, only for
	// models that have them).
	half := e.hd / 2
	e.ropeCos = make([]float32, c.SeqLen*half)
	e.ropeSin = make([]float32, c.SeqLen*half)
	for i := 0; i < half; i++ {
		ex := float32(2*i) / float32(e.hd)
		freq := 1 / float32(math.Pow(float64(c.RopeTheta), float64(ex)))
		if m.RopeFreqs != nil {
			freq /= m.RopeFreqs[i]
		}
		if c.RopeScale > 1 {
			freq /= c.RopeScale
		}
		for pos := 0; pos < c.SeqLen; pos++ {
			v := float64(float32(pos) * freq)
			e.ropeCos[pos*half+i] = float32(math.Cos(v))
			e.ropeSin[pos*half+i] = float32(math.Sin(v))
		}
	}
	e.attw = make([]attnWork, w)
	return e, nil
}

// Model is the engine's model.
func (e *Engine) Model() *model.Model { return e.m }

// ArithmeticVersion names the engine's floating-point procedure (kernels,
// reduction orders, exp). Warm output equals cold output bit for bit only when
// the cached KV was computed by the same procedure, so it is part of the cache
// tag: bump it with any change that can alter a single bit of K, V or logits.
const ArithmeticVersion = 2

// CacheTag is the model tag stamped on this engine's KV blocks: the weights'
// tag, the arithmetic version, the kernel family (AVX2 and pure-Go kernels
// round differently; the AVX-512 tiles compute the AVX2 kernels' bits, so
// they share "avx2") and, for a stored type other than float32, "-r" and
// the type K and V are encoded to at write, so no block is ever resumed by an
// engine that would not have computed exactly the same bits.
// (Float16 blocks written before rounding at write existed carry no "-r"
// and are never resumed; float32 blocks keep their tag.)
func CacheTag(modelTag string, stored kvspec.DType) string {
	family := "go"
	if useAsm {
		family = "avx2"
	}
	tag := fmt.Sprintf("%s/e%d-%s", modelTag, ArithmeticVersion, family)
	if stored != kvspec.DTypeFloat32 {
		tag += "-r" + stored.String()
	}
	return tag
}

// Spec is the geometry of the engine's pages, with DType float32; the pages
// themselves are of KVDType (Spec with DType = KVDType gives their size).
func (e *Engine) Spec() kvspec.Spec { return e.spec }

// KVDType is the element type of the engine's pages (Options.KVDType;
// float32 when that was left zero): K and V are encoded to it as they are
// written, and the pool must store blocks of this type, byte for byte, for
// warm == cold to hold.
func (e *Engine) KVDType() kvspec.DType { return e.kvDType }

// Workers is the number of goroutines a step uses.
func (e *Engine) Workers() int { return e.workers }

// CheckSpec reports whether blocks of spec s can be decoded for this engine:
// the same geometry and model tag (any dtype).
func (e *Engine) CheckSpec(s kvspec.Spec) error {
	want := e.spec
	want.DType = s.DType
	if s != want {
		return fmt.Errorf("%w: spec {%v} does not match engine {%v}", ErrBlockGeometry, s, e.spec)
	}
	return want.Validate()
}

// Sequence is one sequence's page table. Len positions have their KV filled;
// Blocks[i] holds positions [i*TokensPerBlock, (i+1)*TokensPerBlock).
type Sequence struct {
	Blocks []*Block
	Len    int
}

// StepInput appends Tokens to Seq at positions Seq.Len, Seq.Len+1, ....
// Token ids are uint32, the type of the wire and of the whole scheduler
// (request, batch loop, sampler), so no token slice is converted on the way
// from a request to the engine.
type StepInput struct {
	Seq    *Sequence
	Tokens []uint32
}

func (e *Engine) validate(batch []StepInput) error {
	clear(e.writers)
	seen := make(map[*Sequence]int, len(batch))
	for i, in := range batch {
		if in.Seq == nil {
			return &InputError{Input: i, Err: fmt.Errorf("%w: input %d: nil sequence", ErrBadInput, i)}
		}
		if j, dup := seen[in.Seq]; dup {
			return fmt.Errorf("%w: inputs %d and %d are the same sequence", ErrBadInput, j, i)
		}
		seen[in.Seq] = i
		if len(in.Tokens) == 0 {
			return &InputError{Input: i, Err: fmt.Errorf("%w: input %d: no tokens", ErrBadInput, i)}
		}
		for _, t := range in.Tokens {
			// Compared as uint64: int(t) would wrap negative past 2^31 where
			// int is 32 bits, and Vocab (positive) always fits.
			if uint64(t) >= uint64(e.cfg.Vocab) {
				return &InputError{Input: i, Err: fmt.Errorf("%w: input %d: token %d not in [0,%d)", ErrBadToken, i, t, e.cfg.Vocab)}
			}
		}
		s := in.Seq
		if s.Len < 0 {
			return &InputError{Input: i, Err: fmt.Errorf("%w: input %d: negative length %d", ErrBadInput, i, s.Len)}
		}
		end := s.Len + len(in.Tokens)
		if end > e.cfg.SeqLen {
			return &InputError{Input: i, Err: fmt.Errorf("%w: input %d: %d positions + %d tokens > context %d", ErrContextLength, i, s.Len, len(in.Tokens), e.cfg.SeqLen)}
		}
		need := (end + e.tpb - 1) / e.tpb
		if len(s.Blocks) < need {
			return &InputError{Input: i, Err: fmt.Errorf("%w: input %d: %d positions need %d blocks of %d tokens, sequence has %d", ErrBlockGeometry, i, end, need, e.tpb, len(s.Blocks))}
		}
		for b := 0; b < need; b++ {
			if msg := e.pageMismatch(s.Blocks[b]); msg != "" {
				return &InputError{Input: i, Err: fmt.Errorf("%w: input %d: block %d %s", ErrBlockGeometry, i, b, msg)}
			}
		}
		for b := s.Len / e.tpb; b < need; b++ {
			if j, ok := e.writers[s.Blocks[b]]; ok && j != i {
				return fmt.Errorf("%w: inputs %d and %d write the same block", ErrBadInput, j, i)
			}
			e.writers[s.Blocks[b]] = i
		}
	}
	// A block this step writes must not be read by another sequence of the
	// step: its bits would depend on the order of the work.
	for i, in := range batch {
		for b := 0; b < (in.Seq.Len+len(in.Tokens)+e.tpb-1)/e.tpb; b++ {
			if j, ok := e.writers[in.Seq.Blocks[b]]; ok && j != i {
				return fmt.Errorf("%w: input %d reads a block that input %d writes", ErrBadInput, i, j)
			}
		}
	}
	return nil
}

func grow(s []float32, n int) []float32 {
	if cap(s) >= n {
		return s[:n]
	}
	return make([]float32, n)
}

func (e *Engine) ensure(rows, batch int) {
	b := &e.buf
	b.x = grow(b.x, rows*e.dimP)
	b.xb = grow(b.xb, rows*e.dimP)
	b.qkv = grow(b.qkv, rows*e.qkvN)
	b.att = grow(b.att, rows*e.qP)
	b.tmp = grow(b.tmp, rows*e.dimP)
	b.h13 = grow(b.h13, rows*2*e.hidP)
	b.hb = grow(b.hb, rows*e.hidP)
	b.xl = grow(b.xl, batch*e.dimP)
	b.logits = grow(b.logits, batch*e.vocabP)
	if cap(b.pos) < rows {
		b.pos = make([]int, rows)
		b.seq = make([]int, rows)
	}
	b.pos, b.seq = b.pos[:rows], b.seq[:rows]
}

// parallel runs fn over [0,n) in chunks of grain, on up to e.workers
// goroutines (the caller's included, the others from the engine's pool). Which goroutine runs a chunk never
// affects a result: chunks write disjoint outputs.
func (e *Engine) parallel(n, grain int, fn func(w, lo, hi int)) {
	if n <= 0 {
		return
	}
	grain = max(grain, 1)
	chunks := (n + grain - 1) / grain
	nw := min(e.workers, chunks)
	if nw <= 1 {
		fn(0, 0, n)
		return
	}
	var next atomic.Int64
	work := func(w int) {
		for {
			c := int(next.Add(1)) - 1
			if c >= chunks {
				return
			}
			lo := c * grain
			fn(w, lo, min(lo+grain, n))
		}
	}
	e.pool.run(nw, work)
}

// gemm is C = A·Wᵀ for m rows, n output columns (a multiple of 4), split
// over goroutines by columns only, never along k. pa is A packed by
// packPairs, or nil.
func (e *Engine) gemm(m, n, k int, a []float32, lda int, pa []float32, w []float32, c []float32, ldc int) {
	tiles := n / 4
	grain := max(1, tiles/(4*e.workers))
	e.parallel(tiles, grain, func(_, lo, hi int) {
		gemmCols(m, k, a, lda, pa, w, k, c, ldc, 4*lo, 4*hi)
	})
}

// addTo adds b to x element by element.
func addTo(x, b []float32) {
	b = b[:len(x)]
	for i := range x {
		x[i] += b[i]
	}
}

// rmsnorm writes w * x / rms(x) to out (which may be x).
func rmsnorm(out, x, w []float32, eps float32) {
	n := len(w)
	x = x[:n]
	var ss float32
	for _, v := range x {
		ss += float32(v * v)
	}
	ss /= float32(n)
	ss += eps
	ss = 1 / float32(math.Sqrt(float64(ss)))
	out = out[:n]
	for j := range out {
		out[j] = w[j] * float32(ss*x[j])
	}
}

// Step advances every input by its tokens in one forward pass and returns the
// logits after the last token of each input. It writes the new positions' K
// and V into the sequences' blocks in place and advances Seq.Len. All input
// is validated before any state is touched, so an error leaves blocks and
// lengths unchanged.
func (e *Engine) Step(batch []StepInput) ([][]float32, error) {
	if len(batch) == 0 {
		return nil, nil
	}
	if err := e.validate(batch); err != nil {
		return nil, err
	}
	c := e.cfg
	rows := 0
	for _, in := range batch {
		rows += len(in.Tokens)
	}
	e.ensure(rows, len(batch))
	b := &e.buf
	r := 0
	last := make([]int, len(batch))
	for i, in := range batch {
		for t, tok := range in.Tokens {
			b.pos[r] = in.Seq.Len + t
			b.seq[r] = i
			e.m.Embedding.Row(b.x[r*e.dimP:], int(tok)) // tok < Vocab (validate)
			r++
		}
		last[i] = r - 1
	}
	dP := e.dimP
	for li := range e.layers {
		L := &e.layers[li]
		e.parallel(rows, 16, func(_, lo, hi int) {
			for r := lo; r < hi; r++ {
				rmsnorm(b.xb[r*dP:], b.x[r*dP:], L.attNorm, c.NormEps)
			}
		})
		e.matmul(&L.wqkv, rows, b.xb, dP, b.qkv, e.qkvN)
		e.parallel(rows, 16, func(_, lo, hi int) {
			for r := lo; r < hi; r++ {
				e.ropeAndStore(L, batch[b.seq[r]].Seq, li, b.pos[r], b.qkv[r*e.qkvN:(r+1)*e.qkvN])
			}
		})
		e.attention(batch, rows, li)
		e.matmul(&L.wo, rows, b.att, e.qP, b.tmp, dP)
		e.parallel(rows, 16, func(_, lo, hi int) {
			for r := lo; r < hi; r++ {
				x := b.x[r*dP : r*dP+c.Dim]
				addTo(x, b.tmp[r*dP:])
				rmsnorm(b.xb[r*dP:], x, L.ffnNorm, c.NormEps)
			}
		})
		e.matmul(&L.w13, rows, b.xb, dP, b.h13, 2*e.hidP)
		e.parallel(rows, 16, func(_, lo, hi int) {
			for r := lo; r < hi; r++ {
				// The whole padded row: the padding is zero in and out.
				h1 := b.h13[r*2*e.hidP : r*2*e.hidP+e.hidP]
				h3 := b.h13[r*2*e.hidP+e.hidP : (r+1)*2*e.hidP]
				out := b.hb[r*e.hidP : (r+1)*e.hidP]
				silu(h1, h3, out)
			}
		})
		e.matmul(&L.w2, rows, b.hb, e.hidP, b.tmp, dP)
		e.parallel(rows, 16, func(_, lo, hi int) {
			for r := lo; r < hi; r++ {
				x := b.x[r*dP : r*dP+c.Dim]
				addTo(x, b.tmp[r*dP:])
			}
		})
	}
	for i, r := range last {
		rmsnorm(b.xl[i*dP:], b.x[r*dP:], e.finalNorm, c.NormEps)
	}
	e.matmul(&e.cls, len(batch), b.xl, dP, b.logits, e.vocabP)
	out := make([][]float32, len(batch))
	for i := range out {
		out[i] = append([]float32(nil), b.logits[i*e.vocabP:i*e.vocabP+c.Vocab]...)
		batch[i].Seq.Len += len(batch[i].Tokens)
	}
	return out, nil
}

// ropeAndStore finishes q, k and v of one row in place and writes k and v
// into the page at pos: the biases are added (Qwen2), each head of q and k
// is RMS-normalised (Qwen3), and q and k are rotated, by adjacent pairs
// (2i, 2i+1) inside each head as run.c does, or by pairs (i, i+hd/2) for
// the NEOX-style architectures.
func (e *Engine) ropeAndStore(L *engineLayer, s *Sequence, layer, pos int, qkv []float32) {
	half := e.hd / 2
	cs, sn := e.ropeCos[pos*half:(pos+1)*half], e.ropeSin[pos*half:(pos+1)*half]
	a, b := 2, 1 // pair i is (a*i, a*i+b) inside a head
	if e.neox {
		a, b = 1, half
	}
	rot := func(v []float32) {
		for h := 0; h+e.hd <= len(v); h += e.hd {
			for i := 0; i < half; i++ {
				i0, i1 := h+a*i, h+a*i+b
				v0, v1 := v[i0], v[i1]
				fcr, fci := cs[i], sn[i]
				v[i0] = float32(v0*fcr) - float32(v1*fci)
				v[i1] = float32(v0*fci) + float32(v1*fcr)
			}
		}
	}
	q := qkv[:e.cfg.QDim()]
	k := qkv[e.qP : e.qP+e.kv]
	v := qkv[e.qP+e.kvP : e.qP+e.kvP+e.kv]
	if L.bq != nil {
		addTo(q, L.bq)
		addTo(k, L.bk)
		addTo(v, L.bv)
	}
	if L.qNorm != nil {
		for h := 0; h < len(q); h += e.hd {
			rmsnorm(q[h:h+e.hd], q[h:h+e.hd], L.qNorm, e.cfg.NormEps)
		}
		for h := 0; h < len(k); h += e.hd {
			rmsnorm(k[h:h+e.hd], k[h:h+e.hd], L.kNorm, e.cfg.NormEps)
		}
	}
	rot(q)
	rot(k)
	// Attention reads K and V from the page, in its stored type, so this
	// request attends over exactly what a later warm one reads from the pool.
	blk, slot := s.Blocks[pos/e.tpb], pos%e.tpb
	e.storeKV(blk, 2*layer*e.tpb+slot, k)
	e.storeKV(blk, (2*layer+1)*e.tpb+slot, v)
}

// attnJob is one unit of attention work: query rows [r0, r1) of one
// sequence (consecutive positions) against one KV head, i.e. every query
// head of that KV head's group for those rows.
type attnJob struct {
	r0, r1, kvh int
	cost        int
}

// attnWork is one worker's attention scratch.
type attnWork struct {
	s   []float32 // scores then exp weights: [vectors][ld]
	acc []float32 // [vectors][hd]
	sum []float32 // [vectors]
	kv  []float32 // one raw page's rows of one KV head, decoded (kvRows)
	qp  []float32 // the job's query vectors packed in pairs (packPair)
}

// attnTileFloats bounds the score buffer of one job (rows x group x
// positions), so it stays in L2 while the job's K/V pages stream through L1.
const attnTileFloats = 1 << 17

// attnMaxRows bounds the query rows of one job.
const attnMaxRows = 16

// attention computes, for every row and query head, softmax(q·K/sqrt(hs))·V
// over positions 0..pos of the row's sequence, reading K and V from the
// pages.
//
// Every (row, head) value is computed by one goroutine with one procedure
// that depends only on the row's query and positions 0..pos (see
// attnVector), so it is independent of the batch and of chunking. Work is
// grouped to reuse K/V from cache: a job is up to attnMaxRows consecutive
// rows of one sequence times the query heads of one KV head; it walks the
// pages once for the scores (each K row used by every query of the job,
// through the batch-invariant GEMM tiles) and once for the weighted V sum.
// Jobs are handed out largest first.
func (e *Engine) attention(batch []StepInput, rows, layer int) {
	b := &e.buf
	c := e.cfg
	jobs := e.jobs[:0]
	for r0 := 0; r0 < rows; {
		r1 := r0 + 1
		for r1 < rows && b.seq[r1] == b.seq[r0] {
			r1++
		}
		// Rows r0..r1-1 are one input: consecutive positions.
		p := b.pos[r1-1] + 1
		per := max(1, min(attnMaxRows, attnTileFloats/(e.group*pad8(p))))
		for t0 := r0; t0 < r1; t0 += per {
			t1 := min(t0+per, r1)
			for kvh := 0; kvh < c.KVHeads; kvh++ {
				jobs = append(jobs, attnJob{r0: t0, r1: t1, kvh: kvh, cost: (t1 - t0) * (b.pos[t1-1] + 1)})
			}
		}
		r0 = r1
	}
	e.jobs = jobs
	slices.SortStableFunc(jobs, func(x, y attnJob) int { return y.cost - x.cost })
	e.parallel(len(jobs), 1, func(w, lo, hi int) {
		for _, j := range jobs[lo:hi] {
			e.attnJob(&e.attw[w], batch[b.seq[j.r0]].Seq.Blocks, layer, j)
		}
	})
}

// attnJob runs one job. For every query vector v (row i, head g of the
// group) the value is, in this order:
//
//  1. raw[t] = dot(q, K[t]) for t = 0..pos (the GEMM element order, whatever
//     tile computes it);
//  2. m = max(raw)/scale;
//  3. w[t] = exp(raw[t]/scale - m), summed in 8 lanes (expSum);
//  4. acc = sum over t in order of w[t]*V[t] (one FMA chain per element);
//  5. out = acc / sum.
//
// Extra scores a tile computes past a row's own position are ignored.
func (e *Engine) attnJob(ws *attnWork, blocks []*Block, layer int, j attnJob) {
	b := &e.buf
	hd, tpb, g := e.hd, e.tpb, e.group
	nr := j.r1 - j.r0
	nv := nr * g
	pos0 := b.pos[j.r0]
	p := b.pos[j.r1-1] + 1
	// Row stride of the score buffer: padded past a multiple of 4 KiB so the
	// rows of the job do not all map to the same L1 sets.
	ld := pad8(p) + 16
	ws.s = grow(ws.s, nv*ld)
	ws.acc = grow(ws.acc, nv*hd)
	ws.sum = grow(ws.sum, nv)
	sc, acc := ws.s, ws.acc
	qrow := func(i, h int) []float32 {
		o := (j.r0+i)*e.qkvN + (j.kvh*g+h)*hd
		return b.qkv[o : o+hd]
	}
	tiles := hd%8 == 0
	// The job's query vectors side by side in pairs (v, v+1), v = h*nr+i,
	// for the AVX-512 tiles; nil when they are off.
	var qp []float32
	if useZ && tiles && nv >= 2 {
		ws.qp = grow(ws.qp, (nv&^1)*hd)
		qp = ws.qp
		for v := 0; v+1 < nv; v += 2 {
			packPair(qp[v*hd:(v+2)*hd], qrow(v%nr, v/nr), qrow((v+1)%nr, (v+1)/nr))
		}
	}
	// 1. Scores, page by page: every K row of the page is used by all the
	// job's queries while it is in L1.
	for b0 := 0; b0 < p; b0 += tpb {
		n := min(tpb, p-b0)
		kb, ks := e.kvRows(ws, blocks, b0, p, 2*layer, j.kvh)
		if qp != nil {
			e.pairScores(qp, nr, nv, n, kb, ks, sc[b0:], ld, qrow)
			continue
		}
		i0 := max(0, b0-pos0) // rows before i0 end before this page
		for h := 0; h < g; h++ {
			for i := i0; i < nr; {
				rr := 1
				if tiles {
					rr = min(3, nr-i)
				}
				q := b.qkv[(j.r0+i)*e.qkvN+(j.kvh*g+h)*hd:]
				out := sc[(h*nr+i)*ld+b0:]
				t := 0
				if tiles {
					t = n &^ 3
					if useAsm {
						asmTileRun(rr, t/4, hd, q, e.qkvN, kb, ks, out, ld)
					} else {
						for u := 0; u < t; u += 4 {
							goTile(rr, hd, q, e.qkvN, kb[u*ks:], ks, out[u:], ld)
						}
					}
				}
				for ; t < n; t++ {
					for x := 0; x < rr; x++ {
						out[x*ld+t] = dot(hd, qrow(i+x, h), kb[t*ks:])
					}
				}
				i += rr
			}
		}
	}
	// 2-3. Softmax weights (unnormalised) and their sums.
	scale := float32(math.Sqrt(float64(hd)))
	ninf := float32(math.Inf(-1))
	for h := 0; h < g; h++ {
		for i := 0; i < nr; i++ {
			v := h*nr + i
			n := pos0 + i + 1
			row := sc[v*ld : v*ld+pad8(n)]
			for t := n; t < len(row); t++ {
				row[t] = ninf
			}
			ws.sum[v] = expSum(row, scale, vmax(row)/scale)
		}
	}
	// 4. Weighted V sums, page by page.
	clear(acc[:nv*hd])
	for b0 := 0; b0 < p; b0 += tpb {
		n := min(tpb, p-b0)
		vb, vs := e.kvRows(ws, blocks, b0, p, 2*layer+1, j.kvh)
		// Terms of vector v on this page: its row's positions in it.
		terms := func(v int) int { return max(0, min(n, pos0+v%nr+1-b0)) }
		v := 0
		if useZ && hd%64 == 0 {
			// Two vectors at a time share each V row's loads: the terms
			// both have, then the longer one's rest, in order.
			for ; v+1 < nv; v += 2 {
				n0, n1 := terms(v), terms(v+1)
				c := min(n0, n1)
				asmAccum2(c, hd, sc[v*ld+b0:], sc[(v+1)*ld+b0:], vb, vs, acc[v*hd:(v+1)*hd], acc[(v+1)*hd:(v+2)*hd])
				if n0 > c {
					accum(n0-c, hd, sc[v*ld+b0+c:], vb[c*vs:], vs, acc[v*hd:(v+1)*hd])
				}
				if n1 > c {
					accum(n1-c, hd, sc[(v+1)*ld+b0+c:], vb[c*vs:], vs, acc[(v+1)*hd:(v+2)*hd])
				}
			}
		}
		for ; v < nv; v++ {
			accum(terms(v), hd, sc[v*ld+b0:], vb, vs, acc[v*hd:(v+1)*hd])
		}
	}
	// 5. Normalise into the output rows.
	for h := 0; h < g; h++ {
		for i := 0; i < nr; i++ {
			v := h*nr + i
			out := b.att[(j.r0+i)*e.qP+(j.kvh*g+h)*hd:][:hd]
			s := ws.sum[v]
			for d, x := range acc[v*hd : (v+1)*hd] {
				out[d] = x / s
			}
		}
	}
}

// pairScores computes one page's scores for all nv query vectors of a job
// with the AVX-512 pair tiles: row v of out (stride ld) gets dot(q_v, K[t])
// for the page's n positions, K rows at kb with stride ks. Vectors are
// taken four pairs at a time, then one pair; an odd last vector and the
// columns past a multiple of 4 use the AVX2 kernels and dot, which compute
// the same bits. Rows whose position ends before the page get scores they
// never read (the step after masks each row past its own position).
func (e *Engine) pairScores(qp []float32, nr, nv, n int, kb []float32, ks int, out []float32, ld int, qrow func(i, h int) []float32) {
	hd := e.hd
	n4 := n / 4
	v := 0
	for v+1 < nv {
		pairs := 1
		if v+8 <= nv {
			pairs = 4
		}
		asmPairRun(pairs, n4, hd, qp[v*hd:], kb, ks, out[v*ld:], ld)
		v += 2 * pairs
	}
	if v < nv {
		asmTileRun(1, n4, hd, qrow(v%nr, v/nr), hd, kb, ks, out[v*ld:], ld)
	}
	for t := 4 * n4; t < n; t++ {
		for v := 0; v < nv; v++ {
			out[v*ld+t] = dot(hd, qrow(v%nr, v/nr), kb[t*ks:])
		}
	}
}
