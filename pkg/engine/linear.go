package engine

import (
	"github.com/semantic-kv/semantic/pkg/gguf"
	"github.com/semantic-kv/semantic/pkg/model"
	"github.com/semantic-kv/semantic/pkg/quant"
)

// linear is one matrix product C = A·Wᵀ whose output columns come from one
// or more weight tensors placed at column offsets (q, k and v fused into one
// product; gate and up into another), so a step reads the activations once
// and hands out the work of all the parts in one parallel region.
//
// Weights are used where they lie (the mapped file, or the heap for
// generated models): float32 rows with the register-tiled float kernels,
// quantized rows with the activations quantized once per product to Q8_0
// blocks (Q8_0, Q4_0 weights) or Q8_K super-blocks (the K-quants; a product
// mixing both kinds quantizes to both), F16/BF16 rows decoded a chunk at a
// time into a worker's scratch. Only float32 matrices whose rows are not
// whole 8-float vectors are repacked into one padded matrix (packed). Either
// way every output element is one dot product of one weight row with one
// activation row, computed by one procedure that does not depend on the
// batch or on how rows are split between workers (batch invariance, see
// docs/engine.md).
type linear struct {
	n, k   int       // output columns and input stride (both padded)
	packed []float32 // float32 rows that need padding: [n][k]
	parts  []linPart // otherwise
	q8     bool      // some part takes Q8_0 activations
	q8k    bool      // some part takes Q8_K activations (a K-quant)
	float  bool      // some rows go through the float kernels (F32, F16, BF16)
	chunks []linChunk
}

// linPart is one tensor's rows, written to output columns off, off+1, ....
type linPart struct {
	t   *model.Tensor
	off int
	rb  int // bytes of one row (set by newLinear)
}

// linChunk is a unit of parallel work: rows [r0, r1) of one part.
type linChunk struct {
	part, r0, r1 int
}

// linChunkBytes sizes a chunk of weight rows so it stays in L2 while the
// activation rows stream past it.
const linChunkBytes = 64 << 10

func newLinear(n, k int, parts ...linPart) linear {
	l := linear{n: n, k: k, parts: parts}
	allF32, aligned := true, true
	for _, p := range parts {
		allF32 = allF32 && p.t.Type == gguf.TensorF32
		aligned = aligned && p.t.Cols%8 == 0
		l.q8 = l.q8 || model.IsQuantized(p.t.Type) && !model.IsKQuant(p.t.Type)
		l.q8k = l.q8k || model.IsKQuant(p.t.Type)
		l.float = l.float || !model.IsQuantized(p.t.Type)
	}
	if allF32 && !aligned {
		// Rows that are not whole 8-lane vectors: repack into the padded
		// matrix the float kernels need (a copy, but only small models
		// have such shapes).
		l.packed = make([]float32, n*k)
		for _, p := range parts {
			pack(l.packed, k, p.off, p.t.F32, p.t.Rows, p.t.Cols)
		}
		l.parts = nil
		return l
	}
	for i := range l.parts {
		p := &l.parts[i]
		p.rb = p.t.RowBytes()
		per := linChunkRows(p.t)
		for r0 := 0; r0 < p.t.Rows; r0 += per {
			l.chunks = append(l.chunks, linChunk{part: i, r0: r0, r1: min(r0+per, p.t.Rows)})
		}
	}
	return l
}

// linChunkRows is the rows of one chunk of t: about linChunkBytes, a
// multiple of the 8-row tiles (the 1x8 decode tile and the 8-column pair
// tiles; a chunk of 20 rows left 4 to the narrower tiles, 12% of a 110M
// decode batch's time).
func linChunkRows(t *model.Tensor) int { return max(8, linChunkBytes/max(t.RowBytes(), 1)) &^ 7 }

// q8RowBytes is the size of k activations quantized to Q8_0 blocks.
func q8RowBytes(k int) int { return k / quant.BlockSize * quant.Q8_0BlockBytes }

// q8KRowBytes is the size of k activations quantized to Q8_K super-blocks.
func q8KRowBytes(k int) int { return k / quant.KBlockSize * quant.Q8_KBlockBytes }

// matmul computes C[i][off+r] = dot(W_part row r, A row i) for the m rows of
// A (stride lda) into C (stride ldc).
func (e *Engine) matmul(l *linear, m int, a []float32, lda int, c []float32, ldc int) {
	if l.packed != nil {
		e.gemm(m, l.n, l.k, a, lda, e.pairs(m, l.k, a, lda), l.packed, c, ldc)
		return
	}
	k := l.parts[0].t.Cols
	var pa []float32
	if l.float {
		pa = e.pairs(m, k, a, lda)
	}
	// The quantized activations: m rows of Q8_0 (qb bytes each) then m
	// rows of Q8_K (kb bytes each), in the engine's one scratch buffer.
	qb, kb := 0, 0
	if l.q8 {
		qb = q8RowBytes(k)
	}
	if l.q8k {
		kb = q8KRowBytes(k)
	}
	var qa, qk []byte
	if qb+kb > 0 {
		b := &e.buf
		if cap(b.qa) < m*(qb+kb) {
			b.qa = make([]byte, m*(qb+kb))
		}
		b.qa = b.qa[:m*(qb+kb)]
		qa, qk = b.qa[:m*qb], b.qa[m*qb:]
		// A few rows (decode) are quantized here: a parallel region would
		// cost more than it saves.
		grain := 8
		if m <= 4 {
			grain = m
		}
		e.parallel(m, grain, func(_, lo, hi int) {
			for i := lo; i < hi; i++ {
				row := a[i*lda : i*lda+k]
				if qb > 0 {
					quant.QuantizeActivations(qa[i*qb:(i+1)*qb], row)
				}
				if kb > 0 {
					quant.QuantizeActivationsK(qk[i*kb:(i+1)*kb], row)
				}
			}
		})
	}
	e.parallel(len(l.chunks), 1, func(w, lo, hi int) {
		for _, ch := range l.chunks[lo:hi] {
			p := l.parts[ch.part]
			t := p.t
			rows := ch.r1 - ch.r0
			out := c[p.off+ch.r0:]
			switch t.Type {
			case gguf.TensorQ8_0:
				quant.MatQ8_0(k, rows, t.Data[ch.r0*p.rb:ch.r1*p.rb], m, qa, qb, out, ldc)
			case gguf.TensorQ4_0:
				quant.MatQ4_0(k, rows, t.Data[ch.r0*p.rb:ch.r1*p.rb], m, qa, qb, out, ldc)
			case gguf.TensorQ4_K:
				quant.MatQ4_K(k, rows, t.Data[ch.r0*p.rb:ch.r1*p.rb], m, qk, kb, out, ldc)
			case gguf.TensorQ5_K:
				quant.MatQ5_K(k, rows, t.Data[ch.r0*p.rb:ch.r1*p.rb], m, qk, kb, out, ldc)
			case gguf.TensorQ6_K:
				quant.MatQ6_K(k, rows, t.Data[ch.r0*p.rb:ch.r1*p.rb], m, qk, kb, out, ldc)
			case gguf.TensorF32:
				// Used in place (often the mapped file), with the same
				// register tiles as a packed matrix: the same bits.
				e.floatRows(k, m, a, lda, pa, t.F32[ch.r0*k:ch.r1*k], rows, out, ldc)
			default:
				// F16 and BF16: the chunk's rows are decoded once into the
				// worker's scratch and used for every activation row.
				buf := e.rowf[w][:rows*k]
				for r := ch.r0; r < ch.r1; r++ {
					t.Row(buf[(r-ch.r0)*k:], r)
				}
				e.floatRows(k, m, a, lda, pa, buf, rows, out, ldc)
			}
		}
	})
}

// floatRows computes out[i*ldc+r] = dot(w row r, a row i) for float32 rows:
// whole 4-row tiles with the GEMM kernels, the rest (and every row when k is
// not a multiple of 8) with dot, whose order is the tiles' order. pa is A
// packed for the AVX-512 tiles, or nil.
func (e *Engine) floatRows(k, m int, a []float32, lda int, pa []float32, w []float32, rows int, out []float32, ldc int) {
	tiled := 0
	if k%8 == 0 {
		tiled = rows &^ 3
		if tiled > 0 {
			gemmCols(m, k, a, lda, pa, w, k, out, ldc, 0, tiled)
		}
	}
	for r := tiled; r < rows; r++ {
		for i := 0; i < m; i++ {
			out[i*ldc+r] = dot(k, w[r*k:(r+1)*k], a[i*lda:])
		}
	}
}

// decodeScratch is the floats a worker needs to decode one chunk of this
// product's F16/BF16 rows.
func (l *linear) decodeScratch() int {
	n := 0
	for _, p := range l.parts {
		if p.t.Type == gguf.TensorF16 || p.t.Type == gguf.TensorBF16 {
			n = max(n, linChunkRows(p.t)*p.t.Cols)
		}
	}
	return n
}

// pairs packs the m activation rows of a product once for the AVX-512 tiles
// (packPairs) into the engine's scratch; nil when those tiles are off.
func (e *Engine) pairs(m, k int, a []float32, lda int) []float32 {
	p := packPairs(e.buf.pa, m, k, a, lda)
	if p != nil {
		e.buf.pa = p
	}
	return p
}
