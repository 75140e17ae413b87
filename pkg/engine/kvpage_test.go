package engine

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/model"
	"github.com/semantic-kv/semantic/pkg/quant"
)

// kvType is the page type newEngine gives its engines (0: float32);
// forEachKernelAndKV sets it, so a test written for float32 pages runs over
// every page type (TestBatchedEqualsSolo, TestChunkedPrefillEqualsTokenByToken).
var kvType kvspec.DType

// forEachKernelAndKV runs f for every kernel family and every page type
// (float32, then the raw stored types).
func forEachKernelAndKV(t *testing.T, f func(t *testing.T)) {
	defer func() { kvType = kvspec.DTypeUnspecified }()
	for _, dt := range append([]kvspec.DType{kvspec.DTypeFloat32}, storedTypes...) {
		t.Run(dt.String(), func(t *testing.T) {
			kvType = dt
			forEachKernel(t, f)
		})
	}
}

// attentionModels are models whose head sizes take every path of the raw
// page reads: a 32-group spanning four heads (stories260K, hd 8) or two
// (tiny, hd 16), whole groups per head (hd 64, 128) with and without the
// assembly accumulation (hd%32 == 0).
func attentionModels(t *testing.T) map[string]*model.Model {
	ms := map[string]*model.Model{"tiny": tinyModel(t)}
	for _, c := range []struct {
		name        string
		heads, kvh  int
		dim, hidden int
	}{{"hd64", 4, 2, 256, 64}, {"hd128", 4, 1, 512, 64}} {
		m, err := model.Random(c.name, model.Config{Dim: c.dim, HiddenDim: c.hidden, Layers: 2, Heads: c.heads, KVHeads: c.kvh, Vocab: 300, SeqLen: 256, NormEps: 1e-5, RopeTheta: 10000}, 7)
		if err != nil {
			t.Fatal(err)
		}
		ms[c.name] = m
	}
	m, err := model.Load("gguf:"+modelsFile(t, "stories260K.gguf"), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	ms["stories260K"] = m
	return ms
}

// TestAttentionRawEqualsFloat: attention over an engine's raw pages equals,
// bit for bit, attention over float32 pages holding DecodeBlock's values of
// the same pages, for every layer, query row and head: the raw reads decode
// the right groups of the right rows, with the codec's values. (Warm ==
// cold alone could not catch a read that is consistently wrong.)
func TestAttentionRawEqualsFloat(t *testing.T) {
	for name, m := range attentionModels(t) {
		for _, dt := range storedTypes {
			t.Run(name+"/"+dt.String(), func(t *testing.T) {
				forEachKernel(t, func(t *testing.T) {
					r := &model.SplitMix64{State: 77}
					for _, tpb := range []int{3, 16} {
						eR, err := New(m, Options{Workers: 2, TokensPerBlock: tpb, KVDType: dt})
						if err != nil {
							t.Fatal(err)
						}
						eF := newEngine(t, m, tpb, 2)
						const L = 41
						sR := newSeq(eR, L)
						if _, err := eR.Step([]StepInput{{Seq: sR, Tokens: randTokens(r, L, m.Config.Vocab)}}); err != nil {
							t.Fatal(err)
						}
						sF := &Sequence{Len: L}
						for _, b := range sR.Blocks {
							d, err := DecodeBlock(eR.Spec(), b.Raw, dt)
							if err != nil {
								t.Fatal(err)
							}
							sF.Blocks = append(sF.Blocks, d)
						}
						// The last rows query positions up to L-1: one
						// decode row, and a chunk of prefill rows.
						for _, rows := range []int{1, 5} {
							q := randSlice(r, rows*eR.qkvN)
							var att [2][]float32
							for k, e := range []*Engine{eR, eF} {
								s := []*Sequence{sR, sF}[k]
								e.ensure(rows, 1)
								copy(e.buf.qkv, q)
								for i := 0; i < rows; i++ {
									e.buf.pos[i], e.buf.seq[i] = L-rows+i, 0
								}
								for layer := 0; layer < m.Config.Layers; layer++ {
									e.attention([]StepInput{{Seq: s}}, rows, layer)
									att[k] = append(att[k], e.buf.att[:rows*e.qP]...)
								}
							}
							if !sameBits(att[0], att[1]) {
								i := firstDiff(att[0], att[1])
								t.Fatalf("tpb %d rows %d: element %d: raw %v, float %v", tpb, rows, i, att[0][i], att[1][i])
							}
						}
					}
				})
			})
		}
	}
}

// TestNewBlockZero: a fresh raw page's rows decode to +0 (kvspec: the
// encoding of a zero row), through DecodeBlock and through attention's
// reads.
func TestNewBlockZero(t *testing.T) {
	for _, dt := range storedTypes {
		e, err := New(tinyModel(t), Options{Workers: 1, TokensPerBlock: 4, KVDType: dt})
		if err != nil {
			t.Fatal(err)
		}
		b := e.NewBlock()
		qs := e.Spec()
		qs.DType = dt
		if b.Data != nil || len(b.Raw) != qs.BlockBytes() || len(b.Bytes()) != qs.BlockBytes() {
			t.Fatalf("%v: page of %d bytes, spec %d", dt, len(b.Raw), qs.BlockBytes())
		}
		d, err := DecodeBlock(e.Spec(), b.Raw, dt)
		if err != nil || !sameBits(d.Data, make([]float32, len(d.Data))) {
			t.Fatalf("%v: fresh page decodes to %v (%v)", dt, d.Data[:8], err)
		}
		var ws attnWork
		rows, stride := e.kvRows(&ws, []*Block{b}, 0, 4, 3, 1)
		for i := 0; i < 4; i++ {
			if v := rows[i*stride : i*stride+e.hd]; !sameBits(v, make([]float32, e.hd)) {
				t.Fatalf("%v: fresh page reads %v", dt, v)
			}
		}
	}
}

// TestCopyPrefixRaw: CopyPrefix on raw pages copies n rows of each section
// and leaves the rest zero rows, as it does on the float32 pages of their
// values; mismatched pages and counts are errors that change nothing.
func TestCopyPrefixRaw(t *testing.T) {
	m := tinyModel(t)
	for _, dt := range storedTypes {
		e, err := New(m, Options{Workers: 1, TokensPerBlock: 4, KVDType: dt})
		if err != nil {
			t.Fatal(err)
		}
		spec := e.Spec()
		s := newSeq(e, 8)
		if _, err := e.Step([]StepInput{{Seq: s, Tokens: []uint32{3, 1, 4, 1, 5, 9, 2, 6}}}); err != nil {
			t.Fatal(err)
		}
		src := s.Blocks[1]
		srcF, err := DecodeBlock(spec, src.Raw, dt)
		if err != nil {
			t.Fatal(err)
		}
		for n := 0; n <= 4; n++ {
			dst := e.NewBlock()
			for i := range dst.Raw {
				dst.Raw[i] = byte(i) // stale content must go
			}
			if err := CopyPrefix(dst, src, spec, n); err != nil {
				t.Fatal(err)
			}
			dstF := &Block{Data: make([]float32, len(srcF.Data))}
			if err := CopyPrefix(dstF, srcF, spec, n); err != nil {
				t.Fatal(err)
			}
			got, err := DecodeBlock(spec, dst.Raw, dt)
			if err != nil || !sameBits(got.Data, dstF.Data) {
				t.Fatalf("%v n=%d: raw CopyPrefix decodes differently (%v)", dt, n, err)
			}
			// Byte for byte: the payload the float32 page encodes to
			// (zero rows in the engine's spelling).
			if want, err := EncodeBlock(spec, dstF, dt); err != nil || !slices.Equal(dst.Raw, want) {
				t.Fatalf("%v n=%d: raw CopyPrefix bytes differ from the encoded float32 copy (%v)", dt, n, err)
			}
		}
		other := kvspec.DTypeFloat16
		if dt == other {
			other = kvspec.DTypeQ8_0
		}
		oe, err := New(m, Options{Workers: 1, TokensPerBlock: 4, KVDType: other})
		if err != nil {
			t.Fatal(err)
		}
		dst := e.NewBlock()
		before := slices.Clone(dst.Raw)
		for _, c := range []struct {
			name     string
			dst, src *Block
			n        int
			want     error
		}{
			{"float dst", &Block{Data: make([]float32, len(srcF.Data))}, src, 2, ErrBlockGeometry},
			{"float src", dst, srcF, 2, ErrBlockGeometry},
			{"other type", oe.NewBlock(), src, 2, ErrBlockGeometry},
			{"short", &Block{Raw: dst.Raw[:len(dst.Raw)-1]}, src, 2, ErrBlockGeometry},
			{"n > tpb", dst, src, 5, ErrBadInput},
			{"n < 0", dst, src, -1, ErrBadInput},
		} {
			if err := CopyPrefix(c.dst, c.src, spec, c.n); !errors.Is(err, c.want) {
				t.Errorf("%v %s: %v, want %v", dt, c.name, err, c.want)
			}
		}
		if !slices.Equal(dst.Raw, before) {
			t.Errorf("%v: a refused CopyPrefix changed the page", dt)
		}
	}
}

// TestRawBlockView: the pool's payload becomes the page with no copy, a
// wrong size is refused, and every ±0-scale group is rewritten to the one
// zero spelling, which decodes to the same values (+0) and reads as +0.
func TestRawBlockView(t *testing.T) {
	m := tinyModel(t)
	for _, dt := range append([]kvspec.DType{kvspec.DTypeFloat32}, storedTypes...) {
		e, err := New(m, Options{Workers: 1, TokensPerBlock: 2, KVDType: dt})
		if err != nil {
			t.Fatal(err)
		}
		spec := e.Spec()
		s := newSeq(e, 2)
		if _, err := e.Step([]StepInput{{Seq: s, Tokens: []uint32{7, 8}}}); err != nil {
			t.Fatal(err)
		}
		payload := slices.Clone(s.Blocks[0].Bytes())
		for _, n := range []int{0, 1, len(payload) - 1, len(payload) + 1} {
			if _, err := RawBlockView(spec, make([]byte, n), dt); !errors.Is(err, ErrBlockGeometry) {
				t.Errorf("%v: payload of %d bytes: %v", dt, n, err)
			}
		}
		if dt == kvspec.DTypeFloat32 {
			b, err := RawBlockView(spec, payload, dt)
			if err != nil || b.Raw != nil || len(b.Data) != e.blockFloats {
				t.Fatalf("float32: %v", err)
			}
			continue
		}
		bb := quant.Q8_0BlockBytes
		if dt == kvspec.DTypeQ4_0 {
			bb = quant.Q4_0BlockBytes
		}
		if dt != kvspec.DTypeFloat16 {
			// Layer 1's K row of position 0 (one group in tiny): ±0
			// scales with quants that would decode to -0 or garbage.
			qs := spec
			qs.DType = dt
			g := payload[qs.KOffset(1):]
			binary.LittleEndian.PutUint16(g, 0x8000)
			for i := 2; i < bb; i++ {
				g[i] = byte(0x80 + i) // negative q8_0 quants; q4_0 codes < 8 and > 8
			}
			h := payload[qs.VOffset(1):]
			binary.LittleEndian.PutUint16(h, 0x0000)
			for i := 2; i < bb; i++ {
				h[i] = 0x03
			}
		}
		want, err := DecodeBlock(spec, payload, dt)
		if err != nil {
			t.Fatal(err)
		}
		b, err := RawBlockView(spec, payload, dt)
		if err != nil {
			t.Fatal(err)
		}
		if b.Data != nil || &b.Raw[0] != &payload[0] || len(b.Raw) != len(payload) {
			t.Fatalf("%v: RawBlockView copied the payload", dt)
		}
		got, err := DecodeBlock(spec, b.Raw, dt)
		if err != nil || !sameBits(got.Data, want.Data) {
			t.Fatalf("%v: normalising changed the decoded values (%v)", dt, err)
		}
		if dt != kvspec.DTypeFloat16 {
			qs := spec
			qs.DType = dt
			for _, o := range []int{qs.KOffset(1), qs.VOffset(1)} {
				if !slices.Equal(b.Raw[o:o+bb], zeroGroup(dt)) {
					t.Fatalf("%v: group at %d is % x, not the zero group", dt, o, b.Raw[o:o+bb])
				}
			}
			var ws attnWork
			for sec := 2; sec < 4; sec++ {
				rows, _ := e.kvRows(&ws, []*Block{b}, 0, 1, sec, 0)
				if !sameBits(rows[:e.hd], make([]float32, e.hd)) {
					t.Fatalf("%v: normalised zero group reads %v", dt, rows[:e.hd])
				}
			}
		}
		// The engine takes the wrapped page; and refuses a page of the
		// wrong kind or size.
		seq := &Sequence{Blocks: []*Block{b, e.NewBlock()}, Len: 2}
		if _, err := e.Step([]StepInput{{Seq: seq, Tokens: []uint32{9}}}); err != nil {
			t.Fatal(err)
		}
		for _, bad := range []*Block{want, {Raw: b.Raw[:len(b.Raw)-1]}, {Raw: b.Raw, Data: want.Data}} {
			var ie *InputError
			if _, err := e.Step([]StepInput{{Seq: &Sequence{Blocks: []*Block{bad}}, Tokens: []uint32{1}}}); !errors.Is(err, ErrBlockGeometry) || !errors.As(err, &ie) {
				t.Errorf("%v: bad page: %v", dt, err)
			}
		}
	}
	// A float32 engine refuses raw pages.
	e := newEngine(t, m, 2, 1)
	if _, err := e.Step([]StepInput{{Seq: &Sequence{Blocks: []*Block{{Raw: make([]byte, 4*e.blockFloats)}}}, Tokens: []uint32{1}}}); !errors.Is(err, ErrBlockGeometry) {
		t.Errorf("float32 engine, raw page: %v", err)
	}
}

// TestStoreKVNoAlloc: encoding a row into a page and RoundKV allocate
// nothing (they run for every K and V row of every step).
func TestStoreKVNoAlloc(t *testing.T) {
	row := randSlice(&model.SplitMix64{State: 5}, 256)
	for _, dt := range storedTypes {
		dst := make([]byte, dt.RowBytes(len(row)))
		y := slices.Clone(row)
		if n := testing.AllocsPerRun(20, func() {
			encodeKV(dt, dst, row)
			copy(y, row)
			RoundKV(dt, y)
		}); n != 0 {
			t.Errorf("%v: %v allocations per row", dt, n)
		}
		// RoundKV is the decoded encoding.
		want := make([]float32, len(row))
		decodeKV(dt, want, dst)
		if !sameBits(y, want) {
			t.Errorf("%v: RoundKV differs from decode(encode)", dt)
		}
		if math.Float32bits(want[0]) == math.Float32bits(row[0]) && dt != kvspec.DTypeFloat16 {
			t.Errorf("%v: the row was not rounded", dt)
		}
	}
}
