package engine

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/model"
	"github.com/semantic-kv/semantic/pkg/quant"
)

var storedTypes = []kvspec.DType{kvspec.DTypeFloat16, kvspec.DTypeQ8_0, kvspec.DTypeQ4_0}

// codecRoundTrip is what the pool does to a row: encode as dtype, decode.
func codecRoundTrip(t *testing.T, dtype kvspec.DType, row []float32) []float32 {
	t.Helper()
	spec := kvspec.Spec{Layers: 1, KVHeads: 1, HeadDim: len(row), TokensPerBlock: 1, DType: dtype, ModelTag: "m"}
	// A block of one layer and one position: K is row, V is zero.
	b := &Block{Data: make([]float32, 2*len(row))}
	copy(b.Data, row)
	p, err := EncodeBlock(spec, b, dtype)
	if err != nil {
		t.Fatal(err)
	}
	d, err := DecodeBlock(spec, p, dtype)
	if err != nil {
		t.Fatal(err)
	}
	return d.Data[:len(row)]
}

// kvRows are the rows RoundKV must handle: random at several scales, rows
// with zeros, tiny values whose float16 scale is subnormal or zero, huge
// values up to and past the formats' range, ±Inf, NaN, and negative maxima
// (Q4_0 keeps the sign of the largest element in its scale).
func kvRows() map[string][]float32 {
	r := &model.SplitMix64{State: 31}
	const n = 4 * quant.BlockSize
	rnd := func(scale float64) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32((float64(r.Next()>>11)/(1<<53)*2 - 1) * scale)
		}
		return x
	}
	rows := map[string][]float32{}
	for _, sc := range []float64{1e-9, 1e-7, 3e-6, 1e-4, 0.01, 1, 3, 100, 1e4, 5e5, 1e6, 9e6, 1e9, 1e30} {
		rows[fmt.Sprintf("random %g", sc)] = rnd(sc)
	}
	zeros := rnd(2)
	for i := range zeros {
		if i%3 != 0 {
			zeros[i] = 0
		}
		if i%7 == 0 {
			zeros[i] = float32(math.Copysign(0, -1))
		}
	}
	rows["with zeros"] = zeros
	rows["all zero"] = make([]float32, n)
	negz := make([]float32, n)
	for i := range negz {
		negz[i] = float32(math.Copysign(0, -1))
	}
	rows["all -0"] = negz
	neg := rnd(1)
	for g := 0; g < n; g += quant.BlockSize {
		neg[g+5] = -4 // the largest magnitude of each group is negative
	}
	rows["negative maxima"] = neg
	pos := rnd(1)
	for g := 0; g < n; g += quant.BlockSize {
		pos[g+9] = 4
		pos[g+20] = -4 // tie: the first one (positive) sets the Q4_0 scale
	}
	rows["tied maxima"] = pos
	// Mixed groups: one tiny, one huge, one with a NaN, one with ±Inf.
	mixed := rnd(1)
	for i := 0; i < 32; i++ {
		mixed[i] *= 1e-8
		mixed[32+i] *= 1e8
	}
	mixed[70] = float32(math.NaN())
	mixed[100] = float32(math.Inf(1))
	mixed[101] = float32(math.Inf(-1))
	rows["mixed"] = mixed
	edges := rnd(1)
	for g := 0; g < n; g += quant.BlockSize {
		edges[g] = []float32{q8Limit, -q4Limit, 65504 * 127.001, 65504 * 8.0001}[g/quant.BlockSize]
	}
	rows["range edges"] = edges
	return rows
}

// TestRoundKVIsFixedPoint is what makes warm == cold possible: a row that
// RoundKV has rounded comes back bit for bit from the pool's codec and from
// another RoundKV, for every stored type and every kind of row.
func TestRoundKVIsFixedPoint(t *testing.T) {
	for name, row := range kvRows() {
		for _, dt := range storedTypes {
			y := slices.Clone(row)
			RoundKV(dt, y)
			if got := codecRoundTrip(t, dt, y); !sameBits(got, y) {
				i := firstDiff(got, y)
				t.Errorf("%s %v: codec changes element %d: %v -> %v", name, dt, i, y[i], got[i])
			}
			z := slices.Clone(y)
			RoundKV(dt, z)
			if !sameBits(z, y) {
				i := firstDiff(z, y)
				t.Errorf("%s %v: RoundKV not idempotent at %d: %v -> %v", name, dt, i, y[i], z[i])
			}
			if dt != kvspec.DTypeFloat16 {
				for i, v := range y {
					if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
						t.Fatalf("%s %v: element %d is %v; quantized rows are always finite", name, dt, i, v)
					}
				}
			}
		}
	}
}

// TestRoundKVAccuracy: on ordinary rows RoundKV is exactly the codec's own
// rounding (the guards change nothing there), and the error is within the
// format's step.
func TestRoundKVAccuracy(t *testing.T) {
	for _, name := range []string{"random 0.01", "random 1", "random 100", "negative maxima", "with zeros"} {
		row := kvRows()[name]
		for _, dt := range storedTypes {
			y := slices.Clone(row)
			RoundKV(dt, y)
			if want := codecRoundTrip(t, dt, row); !sameBits(y, want) {
				t.Errorf("%s %v: RoundKV differs from the codec's rounding", name, dt)
			}
			for g := 0; g < len(row); g += quant.BlockSize {
				var amax float64
				for _, v := range row[g : g+quant.BlockSize] {
					amax = math.Max(amax, math.Abs(float64(v)))
				}
				// Half a step, plus the float16 rounding of the scale.
				tol := map[kvspec.DType]float64{kvspec.DTypeFloat16: amax / 1024, kvspec.DTypeQ8_0: amax / 127, kvspec.DTypeQ4_0: amax / 8}[dt]
				for i := g; i < g+quant.BlockSize; i++ {
					if d := math.Abs(float64(y[i] - row[i])); d > tol {
						t.Fatalf("%s %v: element %d %v -> %v (error %g > %g)", name, dt, i, row[i], y[i], d, tol)
					}
				}
			}
		}
	}
}

// TestRoundKVGuardsNeeded documents why RoundKV is more than
// dequantize(quantize(x)): without the clamp, an overflowing group's
// round trip is not a fixed point (NaN, then zeros), and a group whose scale
// underflows keeps zero signs that the next round trip changes. If pkg/quant
// ever made these fixed points, the guards could go.
func TestRoundKVGuardsNeeded(t *testing.T) {
	plain := func(dt kvspec.DType, x []float32) []float32 {
		y := slices.Clone(x)
		switch dt {
		case kvspec.DTypeQ8_0:
			var b [quant.Q8_0BlockBytes]byte
			quant.QuantizeQ8_0(b[:], y)
			quant.DequantizeQ8_0(y, b[:])
		case kvspec.DTypeQ4_0:
			var b [quant.Q4_0BlockBytes]byte
			quant.QuantizeQ4_0(b[:], y)
			quant.DequantizeQ4_0(y, b[:])
		}
		return y
	}
	rows := kvRows()
	for _, dt := range []kvspec.DType{kvspec.DTypeQ8_0, kvspec.DTypeQ4_0} {
		for _, name := range []string{"random 1e+09", "random 1e-07"} {
			x := rows[name][:quant.BlockSize]
			once := plain(dt, x)
			if sameBits(plain(dt, once), once) {
				t.Errorf("%v %s: the plain round trip is already a fixed point; update RoundKV's comment", dt, name)
			}
		}
	}
}

func firstDiff(a, b []float32) int {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	return -1
}

// TestQuantizedBlockCodec: q8_0 and q4_0 pages have the kvspec layout (one
// group per 32 elements of a row, sections in order), EncodeBlock of a raw
// page is a copy, the float32 codec round-trips the page's values to the
// same bytes, and wrong sizes and geometries are errors.
func TestQuantizedBlockCodec(t *testing.T) {
	m := tinyModel(t) // kv_heads*head_dim = 32
	for _, dt := range []kvspec.DType{kvspec.DTypeQ8_0, kvspec.DTypeQ4_0} {
		e, err := New(m, Options{Workers: 1, TokensPerBlock: 4, KVDType: dt})
		if err != nil {
			t.Fatal(err)
		}
		if e.KVDType() != dt || e.Spec().DType != kvspec.DTypeFloat32 {
			t.Fatalf("engine dtype %v spec %v", e.KVDType(), e.Spec())
		}
		spec := e.Spec()
		s := newSeq(e, 8)
		if _, err := e.Step([]StepInput{{Seq: s, Tokens: []uint32{1, 5, 9, 13, 200, 7}}}); err != nil {
			t.Fatal(err)
		}
		b := s.Blocks[1] // positions 4, 5 filled; 6, 7 zero
		p, err := EncodeBlock(spec, b, dt)
		if err != nil {
			t.Fatal(err)
		}
		qs := spec
		qs.DType = dt
		if len(p) != qs.BlockBytes() || len(b.Raw) != len(p) || b.Data != nil || &p[0] == &b.Raw[0] || !slices.Equal(p, b.Bytes()) {
			t.Fatalf("%v: payload %d bytes, spec says %d, page %d bytes", dt, len(p), qs.BlockBytes(), len(b.Raw))
		}
		d, err := DecodeBlock(spec, p, dt)
		if err != nil {
			t.Fatal(err)
		}
		// The page's values re-encode to the page: the engine's encoding
		// is the codec's, zero rows included.
		if p2, err := EncodeBlock(spec, d, dt); err != nil || !slices.Equal(p2, p) {
			t.Fatalf("%v: float32 round trip of an engine page is not exact (%v)", dt, err)
		}
		other := kvspec.DTypeQ4_0
		if dt == other {
			other = kvspec.DTypeQ8_0
		}
		if _, err := EncodeBlock(spec, b, other); !errors.Is(err, ErrBlockGeometry) {
			t.Errorf("%v page encoded as %v: %v", dt, other, err)
		}
		// Layout: layer 2's V row of position 1 is one block at VOffset(2)
		// + RowBytes, and decodes to the page's row.
		row := spec.RowElems()
		off := qs.VOffset(2) + qs.RowBytes()
		got := make([]float32, row)
		if dt == kvspec.DTypeQ8_0 {
			quant.DequantizeQ8_0(got, p[off:off+qs.RowBytes()])
		} else {
			quant.DequantizeQ4_0(got, p[off:off+qs.RowBytes()])
		}
		want := d.Data[(2*2+1)*spec.TokensPerBlock*row+row : (2*2+1)*spec.TokensPerBlock*row+2*row]
		if !sameBits(got, want) || slices.Max(want) == 0 {
			t.Fatalf("%v: layout: %v vs %v", dt, got, want)
		}
		// Bad sizes and geometry: errors, never panics.
		for _, n := range []int{0, 1, len(p) - 1, len(p) + 1, len(p) - qs.RowBytes(), 2 * len(p)} {
			if _, err := DecodeBlock(spec, make([]byte, n), dt); !errors.Is(err, ErrBlockGeometry) {
				t.Errorf("%v: payload of %d bytes: %v", dt, n, err)
			}
		}
		if _, err := EncodeBlock(spec, &Block{Data: make([]float32, 32)}, dt); !errors.Is(err, ErrBlockGeometry) {
			t.Errorf("%v: short block: %v", dt, err)
		}
		odd := spec
		odd.HeadDim = 12 // 24-element rows: not a whole number of groups
		if _, err := DecodeBlock(odd, make([]byte, 64), dt); !errors.Is(err, ErrBlockGeometry) {
			t.Errorf("%v: 24-element rows: %v", dt, err)
		}
		if _, err := EncodeBlock(odd, &Block{Data: make([]float32, 2*4*4*24)}, dt); !errors.Is(err, ErrBlockGeometry) {
			t.Errorf("%v: encode 24-element rows: %v", dt, err)
		}
		if err := e.CheckSpec(qs); err != nil {
			t.Errorf("CheckSpec %v: %v", dt, err)
		}
	}
}

// TestNewRefusesUngroupedRows: an engine for q8_0/q4_0 needs K rows that are
// a whole number of 32-groups.
func TestNewRefusesUngroupedRows(t *testing.T) {
	c := model.Config{Dim: 48, HiddenDim: 64, Layers: 1, Heads: 4, KVHeads: 2, Vocab: 300, SeqLen: 64, NormEps: 1e-5, RopeTheta: 10000}
	m, err := model.Random("odd", c, 1) // 2 heads x 12 = 24-element rows
	if err != nil {
		t.Fatal(err)
	}
	for _, dt := range []kvspec.DType{kvspec.DTypeQ8_0, kvspec.DTypeQ4_0} {
		var fe *kvspec.FieldError
		if _, err := New(m, Options{Workers: 1, KVDType: dt}); !errors.As(err, &fe) || fe.Field != "dtype" {
			t.Errorf("%v: %v", dt, err)
		}
	}
	for _, dt := range []kvspec.DType{0, kvspec.DTypeFloat32, kvspec.DTypeFloat16} {
		if _, err := New(m, Options{Workers: 1, KVDType: dt}); err != nil {
			t.Errorf("%v: %v", dt, err)
		}
	}
}

// TestWarmEqualsColdStored is TestCacheEquivalence for the stored types:
// request 1's pages are copied out as payloads (EncodeBlock: what the pool
// stores) and wrapped back with RawBlockView (what the scheduler's load
// does), request 2 resumes from them in a fresh engine, and its tokens and
// logits must equal a cold run's bit for bit. The float32 codec gives the
// same payload back from the page's values (so a tool that decodes a block
// sees what the engine attended over).
func TestWarmEqualsColdStored(t *testing.T) {
	t.Run("tiny", func(t *testing.T) { warmEqualsColdStored(t, tinyModel(t), 6) })
	// A trained GGUF model (head dimension 8: a 32-group spans four heads).
	t.Run("stories260K", func(t *testing.T) {
		m, err := model.Load("gguf:"+modelsFile(t, "stories260K.gguf"), "")
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		warmEqualsColdStored(t, m, 3)
	})
}

func warmEqualsColdStored(t *testing.T, m *model.Model, trials int) {
	for _, dt := range storedTypes {
		t.Run(dt.String(), func(t *testing.T) {
			forEachKernel(t, func(t *testing.T) {
				r := &model.SplitMix64{State: 4242}
				for trial := 0; trial < trials; trial++ {
					tpb := []int{1, 3, 4, 16}[intn(r, 4)]
					newE := func() *Engine {
						e, err := New(m, Options{Workers: 1 + intn(r, 3), TokensPerBlock: tpb, KVDType: dt})
						if err != nil {
							t.Fatal(err)
						}
						return e
					}
					const gen = 6
					p1 := randTokens(r, 2+intn(r, 40), m.Config.Vocab)
					e1 := newE()
					s1 := newSeq(e1, 200)
					lg := prefillChunks(t, e1, s1, p1, r)
					hist := append(slices.Clone(p1), Argmax(lg))
					if _, err := e1.Step([]StepInput{{Seq: s1, Tokens: hist[len(hist)-1:]}}); err != nil {
						t.Fatal(err)
					}
					p2 := append(slices.Clone(hist), randTokens(r, 1+intn(r, 8), m.Config.Vocab)...)
					split := 1 + intn(r, s1.Len)

					spec := e1.Spec()
					e2 := newE()
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
						payload, err := EncodeBlock(spec, src, dt)
						if err != nil {
							t.Fatal(err)
						}
						dec, err := DecodeBlock(spec, payload, dt)
						if err != nil {
							t.Fatal(err)
						}
						if re, err := EncodeBlock(spec, dec, dt); err != nil || !slices.Equal(re, payload) {
							t.Fatalf("trial %d: block %d changed in the %v float32 round trip (%v)", trial, b, dt, err)
						}
						blk, err := RawBlockView(spec, payload, dt)
						if err != nil {
							t.Fatal(err)
						}
						if !slices.Equal(blk.Raw, src.Raw) || &blk.Raw[0] != &payload[0] {
							t.Fatalf("trial %d: block %d: RawBlockView changed or copied the payload", trial, b)
						}
						s2.Blocks = append(s2.Blocks, blk)
					}
					for len(s2.Blocks)*tpb < 200 {
						s2.Blocks = append(s2.Blocks, e2.NewBlock())
					}
					warm, warmLg := greedy(t, e2, s2, p2[split:], gen)
					e3 := newE()
					cold, coldLg := greedy(t, e3, newSeq(e3, 200), p2, gen)
					sameTurn(t, fmt.Sprintf("trial %d (tpb %d split %d/%d)", trial, tpb, split, len(p2)), warm, cold, warmLg, coldLg)
				}
			})
		})
	}
}

// FuzzDecodeBlock: any payload, of any size, decodes or is refused with
// ErrBlockGeometry for every element type; never a panic. A payload that
// decodes re-encodes to the same size.
func FuzzDecodeBlock(f *testing.F) {
	spec := kvspec.Spec{Layers: 1, KVHeads: 2, HeadDim: 16, TokensPerBlock: 2, DType: kvspec.DTypeFloat32, ModelTag: "m"}
	for _, dt := range []kvspec.DType{kvspec.DTypeFloat32, kvspec.DTypeFloat16, kvspec.DTypeQ8_0, kvspec.DTypeQ4_0} {
		s := spec
		s.DType = dt
		f.Add(uint8(dt), make([]byte, s.BlockBytes()))
		f.Add(uint8(dt), make([]byte, s.BlockBytes()-1))
	}
	f.Add(uint8(9), []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, d uint8, payload []byte) {
		dt := kvspec.DType(d)
		b, err := DecodeBlock(spec, payload, dt)
		if err != nil {
			if !errors.Is(err, ErrBlockGeometry) {
				t.Fatalf("%v, %d bytes: %v", dt, len(payload), err)
			}
			return
		}
		p, err := EncodeBlock(spec, b, dt)
		if err != nil || len(p) != len(payload) {
			t.Fatalf("%v: re-encode: %v (%d bytes of %d)", dt, err, len(p), len(payload))
		}
	})
}
