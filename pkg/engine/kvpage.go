package engine

import (
	"encoding/binary"
	"fmt"

	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/quant"
)

// Pages in the stored type. An engine whose KVDType is float16, q8_0 or q4_0
// keeps each page as the payload itself (Block.Raw, the kvspec layout): K
// and V rows are encoded into it as they are written (encodeKV), the pool
// stores and returns those bytes, and attention decodes only the rows of the
// KV head it works on, into a per-worker scratch (kvRows). So a quantized
// page costs the engine its stored size in memory and memory bandwidth, and
// a warm request reads exactly the bytes the cold one wrote.
//
// Zero groups. A q8_0/q4_0 group whose float16 scale is ±0 decodes to ±0
// with signs that follow the quants (q*0), while a zero row must read as +0
// (fresh pages, rows past a partial block's count, RoundKV's contract).
// Every raw page therefore holds such a group in one spelling, zeroGroup:
// scale +0 and quants of value 0 (q8_0: 0x00; q4_0: code 8, bytes 0x88), so
// every element is float32(0)*(+0) = +0 and the decoders need no special
// case. The encoder writes it, NewBlock and CopyPrefix fill with it, and
// RawBlockView rewrites any other ±0-scale group of a loaded payload to it
// (older engines wrote q4_0 zero rows with a -0 scale).

// zeroGroup returns the one encoding of a group whose scale is ±0, for the
// block-quantized types (nil for the others).
func zeroGroup(dtype kvspec.DType) []byte {
	switch dtype {
	case kvspec.DTypeQ8_0:
		return zeroQ8[:]
	case kvspec.DTypeQ4_0:
		return zeroQ4[:]
	}
	return nil
}

var (
	zeroQ8 [quant.Q8_0BlockBytes]byte
	zeroQ4 = [quant.Q4_0BlockBytes]byte{0, 0, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88}
)

// fillZero sets p, a whole number of groups of dtype, to zero rows.
func fillZero(dtype kvspec.DType, p []byte) {
	z := zeroGroup(dtype)
	if z == nil || dtype == kvspec.DTypeQ8_0 {
		clear(p) // float16 +0 and the q8_0 zero group are all zero bytes
		return
	}
	for o := 0; o+len(z) <= len(p); o += len(z) {
		copy(p[o:], z)
	}
}

// normalizeZeroGroups rewrites every ±0-scale group of p (dtype q8_0 or
// q4_0; nothing for the others) to zeroGroup, in place.
func normalizeZeroGroups(dtype kvspec.DType, p []byte) {
	z := zeroGroup(dtype)
	if z == nil {
		return
	}
	for o := 0; o+len(z) <= len(p); o += len(z) {
		if zeroScale(p[o:]) {
			copy(p[o:o+len(z)], z)
		}
	}
}

// encodeKV writes row, one position's K (or V) of one layer, into dst as
// dtype (float16, q8_0 or q4_0; len(dst) = dtype.RowBytes(len(row))) with
// the rules kvround.go describes: each q8_0/q4_0 group clamped to the
// largest magnitude with a finite float16 scale, quantized with pkg/quant's
// ggml quantizers, and written as zeroGroup when its scale is ±0. row is not
// changed. It does not allocate (the group is clamped in a stack copy).
func encodeKV(dtype kvspec.DType, dst []byte, row []float32) {
	switch dtype {
	case kvspec.DTypeFloat16:
		dst = dst[:2*len(row)]
		for i, v := range row {
			binary.LittleEndian.PutUint16(dst[2*i:], quant.F32ToF16(v))
		}
	case kvspec.DTypeQ8_0, kvspec.DTypeQ4_0:
		bb, lim := quant.Q8_0BlockBytes, float32(q8Limit)
		if dtype == kvspec.DTypeQ4_0 {
			bb, lim = quant.Q4_0BlockBytes, q4Limit
		}
		var x [quant.BlockSize]float32
		for g, o := 0, 0; g+quant.BlockSize <= len(row); g, o = g+quant.BlockSize, o+bb {
			copy(x[:], row[g:g+quant.BlockSize])
			clampAbs(x[:], lim)
			y := dst[o : o+bb]
			if dtype == kvspec.DTypeQ8_0 {
				quant.QuantizeQ8_0(y, x[:])
			} else {
				quant.QuantizeQ4_0(y, x[:])
			}
			if zeroScale(y) {
				copy(y, zeroGroup(dtype))
			}
		}
	default:
		panic(fmt.Sprintf("engine: encodeKV: no encoding for %v", dtype))
	}
}

// decodeKV is the inverse of encodeKV on what it writes: dst gets the
// values the page stores (the decoders attention reads with).
func decodeKV(dtype kvspec.DType, dst []float32, src []byte) {
	switch dtype {
	case kvspec.DTypeFloat16:
		quant.DecodeF16(dst, src[:2*len(dst)])
	case kvspec.DTypeQ8_0:
		quant.DequantizeQ8_0(dst, src[:len(dst)/quant.BlockSize*quant.Q8_0BlockBytes])
	case kvspec.DTypeQ4_0:
		quant.DequantizeQ4_0(dst, src[:len(dst)/quant.BlockSize*quant.Q4_0BlockBytes])
	default:
		panic(fmt.Sprintf("engine: decodeKV: no encoding for %v", dtype))
	}
}

// rawDType is the stored type of a raw page of n bytes with spec's
// geometry: the sizes of float16, q8_0 and q4_0 pages always differ (2, 34/32
// and 18/32 bytes an element), so the size names the type.
func rawDType(spec kvspec.Spec, n int) (kvspec.DType, bool) {
	for _, dt := range []kvspec.DType{kvspec.DTypeFloat16, kvspec.DTypeQ8_0, kvspec.DTypeQ4_0} {
		s := spec
		s.DType = dt
		if s.Validate() == nil && s.BlockBytes() == n {
			return dt, true
		}
	}
	return kvspec.DTypeUnspecified, false
}

// RawBlockView wraps a payload of dtype (from the pool) as a page with no
// copy, for an engine whose KVDType is dtype: for float32 it is
// BlockView(spec, payload); for the other types the block's Raw is the
// payload itself, after every ±0-scale q8_0/q4_0 group is rewritten in
// place to the one zero spelling the engine reads (which decodes to the same
// values, so DecodeBlock of the payload is unchanged). A payload of the
// wrong size is an error. The caller must keep the payload alive and not
// change it while the block is in use.
func RawBlockView(spec kvspec.Spec, payload []byte, dtype kvspec.DType) (*Block, error) {
	if dtype == kvspec.DTypeFloat32 {
		return BlockView(spec, payload)
	}
	n, _, err := payloadSize(spec, dtype)
	if err != nil {
		return nil, err
	}
	if len(payload) != n {
		return nil, fmt.Errorf("%w: payload of %d bytes, spec %v as %v needs %d", ErrBlockGeometry, len(payload), spec, dtype, n)
	}
	normalizeZeroGroups(dtype, payload)
	return &Block{Raw: payload}, nil
}

// pageBytes is the size of one of the engine's raw pages (0 for float32
// engines, whose pages are Data).
func (e *Engine) pageBytes() int {
	if e.kvDType == kvspec.DTypeFloat32 {
		return 0
	}
	s := e.spec
	s.DType = e.kvDType
	return s.BlockBytes()
}

// pageMismatch says how blk does not fit the engine ("" when it does): a
// float32 engine needs Data of its page's floats, the others Raw of the
// stored page's bytes.
func (e *Engine) pageMismatch(blk *Block) string {
	switch {
	case blk == nil:
		return "is nil"
	case e.kvDType == kvspec.DTypeFloat32 && (len(blk.Data) != e.blockFloats || blk.Raw != nil):
		return fmt.Sprintf("has %d floats and %d bytes, a float32 page needs %d floats", len(blk.Data), len(blk.Raw), e.blockFloats)
	case e.kvDType != kvspec.DTypeFloat32 && (len(blk.Raw) != e.pageBytes() || blk.Data != nil):
		return fmt.Sprintf("has %d bytes and %d floats, a %v page needs %d bytes", len(blk.Raw), len(blk.Data), e.kvDType, e.pageBytes())
	}
	return ""
}

// storeKV writes x (kv elements) as token row `row` of the page (row counts
// rows from the page start: section*tpb + slot), encoding it for a raw page.
func (e *Engine) storeKV(blk *Block, row int, x []float32) {
	if blk.Raw == nil {
		copy(blk.Data[row*e.kv:(row+1)*e.kv], x)
		return
	}
	rb := e.kvDType.RowBytes(e.kv)
	encodeKV(e.kvDType, blk.Raw[row*rb:(row+1)*rb], x)
}

// kvRows returns the token rows [b0, min(b0+tpb, p)) of KV head kvh of
// section sec (2*layer for K, 2*layer+1 for V) of the page blocks[b0/tpb],
// and their stride: head h of row t is rows[t*stride : t*stride+hd]. A
// float32 page gives a view of itself; a raw page is decoded into ws's
// scratch, only the 32-groups (q8_0/q4_0) or the halves (float16) covering
// the head, with the same values DecodeBlock gives, and the same slice of
// the next page (rows before p) is prefetched.
func (e *Engine) kvRows(ws *attnWork, blocks []*Block, b0, p, sec, kvh int) ([]float32, int) {
	hd, kv, tpb := e.hd, e.kv, e.tpb
	blk, n := blocks[b0/tpb], min(tpb, p-b0)
	if blk.Raw == nil {
		return blk.Data[sec*tpb*kv+kvh*hd:], kv
	}
	rb := e.kvDType.RowBytes(kv)
	base := sec * tpb * rb
	// The head's bytes in each row: [off, off+span).
	var off, span, g0, w int
	switch e.kvDType {
	case kvspec.DTypeFloat16:
		off, span, w = 2*kvh*hd, 2*hd, hd
	default:
		// The groups [g0, g1) cover the head; with hd < 32 (or not a
		// multiple of 32) a group spans several heads.
		g1 := ((kvh+1)*hd + quant.BlockSize - 1) / quant.BlockSize
		g0 = kvh * hd / quant.BlockSize
		bb := rb / (kv / quant.BlockSize)
		off, span, w = g0*bb, (g1-g0)*bb, (g1-g0)*quant.BlockSize
	}
	if next := b0 + tpb; next < p {
		prefetchRuns(blocks[next/tpb].Raw[base+off:], rb, min(tpb, p-next), span)
	}
	ws.kv = grow(ws.kv, n*w)
	src := blk.Raw[base+off:]
	switch e.kvDType {
	case kvspec.DTypeFloat16:
		quant.DecodeF16Rows(ws.kv, w, src, rb, n, hd)
		return ws.kv, w
	case kvspec.DTypeQ8_0:
		quant.DequantizeQ8_0Rows(ws.kv, w, src, rb, n, w/quant.BlockSize)
	default:
		quant.DequantizeQ4_0Rows(ws.kv, w, src, rb, n, w/quant.BlockSize)
	}
	return ws.kv[kvh*hd-g0*quant.BlockSize:], w
}
