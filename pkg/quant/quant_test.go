package quant

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// f16Value is the exact value of a finite half, computed independently of
// F16ToF32 (in float64).
func f16Value(h uint16) float64 {
	e := int(h>>10) & 0x1f
	m := float64(h & 0x3ff)
	var v float64
	if e == 0 {
		v = m * math.Pow(2, -24)
	} else {
		v = (1 + m/1024) * math.Pow(2, float64(e-15))
	}
	if h&0x8000 != 0 {
		v = -v
	}
	return v
}

func TestF16Exhaustive(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		f := F16ToF32(h)
		e := h & 0x7c00
		m := h & 0x3ff
		switch {
		case e == 0x7c00 && m != 0:
			if f == f {
				t.Fatalf("F16ToF32(%#04x) = %v, want NaN", h, f)
			}
			if got := math.Float32bits(f); got&0x7fffffff != 0x7f800000|uint32(m)<<13 || got>>31 != uint32(h>>15) {
				t.Fatalf("F16ToF32(%#04x) = %#08x, payload not kept", h, got)
			}
		case e == 0x7c00:
			if !math.IsInf(float64(f), 0) || math.Signbit(float64(f)) != (h&0x8000 != 0) {
				t.Fatalf("F16ToF32(%#04x) = %v, want Inf", h, f)
			}
		default:
			if float64(f) != f16Value(h) || math.Signbit(float64(f)) != (h&0x8000 != 0) {
				t.Fatalf("F16ToF32(%#04x) = %v, want %v", h, f, f16Value(h))
			}
		}
		if back := F32ToF16(f); back != h {
			t.Fatalf("F32ToF16(F16ToF32(%#04x)) = %#04x", h, back)
		}
	}
}

// TestF32ToF16RNE checks every rounding boundary: for each pair of adjacent
// finite halves, the exact midpoint rounds to the even one and the floats
// just around it to the nearer one.
func TestF32ToF16RNE(t *testing.T) {
	for i := 0; i < 0x7bff; i++ { // positive finite halves but the largest
		for _, sign := range []uint16{0, 0x8000} {
			lo, hi := uint16(i)|sign, uint16(i+1)|sign
			mid := float32((f16Value(lo) + f16Value(hi)) / 2) // exact: 12 significant bits
			even := lo
			if lo&1 == 1 {
				even = hi
			}
			if got := F32ToF16(mid); got != even {
				t.Fatalf("F32ToF16(%g) = %#04x, want %#04x (tie to even)", mid, got, even)
			}
			below := math.Nextafter32(mid, 0)
			above := math.Nextafter32(mid, float32(math.Inf(int(1-2*int(sign>>15)))))
			if got := F32ToF16(below); got != lo {
				t.Fatalf("F32ToF16(%g) = %#04x, want %#04x", below, got, lo)
			}
			if got := F32ToF16(above); got != hi {
				t.Fatalf("F32ToF16(%g) = %#04x, want %#04x", above, got, hi)
			}
		}
	}
	for _, c := range []struct {
		f float32
		h uint16
	}{
		{65504, 0x7bff},
		{65519.996, 0x7bff},
		{65520, 0x7c00}, // tie between 65504 (odd) and 65536: rounds to Inf
		{1e10, 0x7c00},
		{-1e10, 0xfc00},
		{float32(math.Inf(1)), 0x7c00},
		{float32(math.Inf(-1)), 0xfc00},
		{0x1p-25, 0},                               // half the smallest subnormal: tie, to even 0
		{math.Nextafter32(0x1p-25, 1), 1},          // just above: smallest subnormal
		{0x1p-26, 0},                               // below
		{3 * 0x1p-25, 2},                           // 1.5 subnormal units: tie to even 2
		{-3 * 0x1p-25, 0x8002},                     // same, negative
		{math.Float32frombits(1), 0},               // float32 subnormal
		{math.Float32frombits(0x80000001), 0x8000}, // keeps the sign
		{0x1p-14 - 0x1p-25, 0x0400},                // rounds up into the smallest normal
		{1, 0x3c00},
		{-2, 0xc000},
		{0.1, 0x2e66},
	} {
		if got := F32ToF16(c.f); got != c.h {
			t.Errorf("F32ToF16(%g) = %#04x, want %#04x", c.f, got, c.h)
		}
	}
	// NaNs stay NaNs, even when the payload is only in the low bits.
	for _, b := range []uint32{0x7fc00000, 0xffc00000, 0x7f800001, 0x7fa00000, 0xff800fff} {
		h := F32ToF16(math.Float32frombits(b))
		if h&0x7c00 != 0x7c00 || h&0x3ff == 0 || h>>15 != uint16(b>>31) {
			t.Errorf("F32ToF16(NaN %#08x) = %#04x, not a NaN of the same sign", b, h)
		}
	}
}

// TestF32ToF16Hardware compares F32ToF16 with F16C's VCVTPS2PH (round to
// nearest even) on a dense sweep of float32 bit patterns.
func TestF32ToF16Hardware(t *testing.T) {
	if !haveAsm {
		t.Skip("no AVX2/F16C assembly")
	}
	check := func(b uint32) {
		f := math.Float32frombits(b)
		if f != f {
			return // the hardware quiets signalling NaNs; F32ToF16 keeps payloads
		}
		if got, want := F32ToF16(f), f32ToF16Asm(f); got != want {
			t.Fatalf("F32ToF16(%#08x = %g) = %#04x, VCVTPS2PH gives %#04x", b, f, got, want)
		}
	}
	step := uint32(997)
	if testing.Short() {
		step = 65537
	}
	for b := uint64(0); b < 1<<32; b += uint64(step) {
		check(uint32(b))
	}
	// Every float32 in the half range with the bits that decide rounding.
	for e := uint32(100); e < 145; e++ {
		for m := uint32(0); m < 1<<23; m += 0x1000 - 1 {
			check(e<<23 | m)
			check(e<<23 | m ^ 0x1fff)
			check(1<<31 | e<<23 | m)
		}
	}
}

func TestBF16(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		f := BF16ToF32(h)
		if math.Float32bits(f) != uint32(h)<<16 {
			t.Fatalf("BF16ToF32(%#04x) = %#08x", h, math.Float32bits(f))
		}
		if back := F32ToBF16(f); back != h {
			t.Fatalf("F32ToBF16(BF16ToF32(%#04x)) = %#04x", h, back)
		}
	}
	for _, c := range []struct {
		b uint32
		h uint16
	}{
		{0x3f808000, 0x3f80}, // 1 + 2^-8: tie, to even
		{0x3f818000, 0x3f82}, // 1 + 3*2^-8: tie, to even (up)
		{0x3f808001, 0x3f81}, // just above the tie
		{0x3f807fff, 0x3f80}, // just below
		{0x7f7fffff, 0x7f80}, // max float32 rounds to Inf
		{0xff7fffff, 0xff80},
		{0x00000001, 0x0000}, // subnormal rounds to 0
		{0x80008000, 0x8000}, // tie between -0 and the smallest negative subnormal: to even
		{0x7f800000, 0x7f80},
	} {
		if got := F32ToBF16(math.Float32frombits(c.b)); got != c.h {
			t.Errorf("F32ToBF16(%#08x) = %#04x, want %#04x", c.b, got, c.h)
		}
	}
	for _, b := range []uint32{0x7fc00000, 0x7f800001, 0xff80ffff, 0x7fffffff} {
		h := F32ToBF16(math.Float32frombits(b))
		if h&0x7f80 != 0x7f80 || h&0x7f == 0 || h>>15 != uint16(b>>31) {
			t.Errorf("F32ToBF16(NaN %#08x) = %#04x, not a NaN of the same sign", b, h)
		}
	}
}

func TestDecode(t *testing.T) {
	src := []byte{0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b, 0x01, 0x00, 0x00, 0x7c}
	want := []float32{1, -2, 65504, 0x1p-24, float32(math.Inf(1))}
	got := make([]float32, 5)
	DecodeF16(got, src)
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("DecodeF16[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	bsrc := []byte{0x80, 0x3f, 0x00, 0xc0, 0x49, 0x40}
	bwant := []float32{1, -2, 3.140625}
	DecodeBF16(got[:3], bsrc)
	for i := range bwant {
		if got[i] != bwant[i] {
			t.Errorf("DecodeBF16[%d] = %v, want %v", i, got[i], bwant[i])
		}
	}
	mustPanic(t, "DecodeF16 length", func() { DecodeF16(got, src[:8]) })
	// Every half, at every position modulo 8 (the assembly does groups of
	// 8, Go the rest): bit-identical to F16ToF32 and BF16ToF32.
	all := make([]byte, 2<<16)
	for i := 0; i < 1<<16; i++ {
		binary.LittleEndian.PutUint16(all[2*i:], uint16(i))
	}
	for _, shift := range []int{0, 3} {
		n := 1<<16 - shift
		in := all[2*shift:]
		outs := map[string][]float32{}
		for name, f := range map[string]func([]float32, []byte){
			"DecodeF16": DecodeF16, "decodeF16Go": decodeF16Go, "DecodeBF16": DecodeBF16, "decodeBF16Go": decodeBF16Go,
		} {
			outs[name] = make([]float32, n)
			f(outs[name], in)
		}
		if haveAsm {
			outs["decodeF16Asm"], outs["decodeBF16Asm"] = make([]float32, n), make([]float32, n)
			decodeF16Asm(outs["decodeF16Asm"], in)
			decodeBF16Asm(outs["decodeBF16Asm"], in)
		}
		for i := 0; i < n; i++ {
			h := uint16(i + shift)
			for name, out := range outs {
				want := math.Float32bits(F16ToF32(h))
				if strings.Contains(name, "BF16") {
					want = math.Float32bits(BF16ToF32(h))
				}
				if got := math.Float32bits(out[i]); got != want {
					t.Fatalf("%s(%#04x) = %#08x, want %#08x", name, h, got, want)
				}
			}
		}
	}
	mustPanic(t, "DecodeBF16 length", func() { DecodeBF16(got[:4], src) })
}

func TestQuantizeQ8_0Bytes(t *testing.T) {
	x := make([]float32, 64)
	// Block 0: amax 127 so d = 1 and id = 1: quants are roundf(x), half away
	// from zero.
	copy(x, []float32{127, -63.5, 0.5, -0.5, 1.49, 2.5, -2.5, 0, -126.6})
	// Block 1: all zero.
	got := make([]byte, 68)
	QuantizeQ8_0(got, x)
	want := make([]byte, 68)
	want[0], want[1] = 0x00, 0x3c // fp16(1)
	for i, q := range []int8{127, -64, 1, -1, 1, 3, -3, 0, -127} {
		want[2+i] = byte(q)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("QuantizeQ8_0:\n got % x\nwant % x", got, want)
	}

	// amax 1: d = 1/127 (fp16 0x2008), id = 127.00000373... ; 0.5*id rounds to 64.
	x2 := make([]float32, 32)
	x2[0], x2[1], x2[2] = 1, -0.5, 0.25
	got2 := make([]byte, 34)
	QuantizeQ8_0(got2, x2)
	d := float32(1) / 127
	if h := binary.LittleEndian.Uint16(got2); h != F32ToF16(d) || h != 0x2008 {
		t.Fatalf("Q8_0 scale = %#04x, want %#04x", h, F32ToF16(d))
	}
	if q := []int8{int8(got2[2]), int8(got2[3]), int8(got2[4])}; q[0] != 127 || q[1] != -64 || q[2] != 32 {
		t.Fatalf("Q8_0 quants = %v, want [127 -64 32]", q)
	}
}

func TestQuantizeQ4_0Bytes(t *testing.T) {
	x := make([]float32, 32)
	// max = -8 (the largest magnitude, negative): d = -8/-8 = 1, id = 1.
	copy(x, []float32{-8, 7, 8, 0, -0.6, 3.4, 7.49, -7.5})
	x[16], x[17], x[31] = 1, -1, 2.5
	got := make([]byte, 18)
	QuantizeQ4_0(got, x)
	// codes = min(15, trunc(x + 8.5)).
	lo := []byte{0, 15, 15, 8, 7, 11, 15, 1}
	hi := make([]byte, 16)
	for j := range hi {
		hi[j] = 8
	}
	hi[0], hi[1], hi[15] = 9, 7, 11
	want := make([]byte, 18)
	want[0], want[1] = 0x00, 0x3c
	for j := 0; j < 16; j++ {
		l := byte(8)
		if j < len(lo) {
			l = lo[j]
		}
		want[2+j] = l | hi[j]<<4
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("QuantizeQ4_0:\n got % x\nwant % x", got, want)
	}
	// The first element of largest magnitude decides the sign of d.
	y := make([]float32, 32)
	y[3], y[9] = 4, -4
	QuantizeQ4_0(got, y)
	if h := binary.LittleEndian.Uint16(got); h != F32ToF16(-0.5) {
		t.Fatalf("Q4_0 scale = %#04x, want fp16(-0.5) = %#04x", h, F32ToF16(-0.5))
	}
	deq := make([]float32, 32)
	DequantizeQ4_0(deq, got)
	if deq[3] != 4 || deq[9] != -3.5 { // -4/-0.5 = 8 clamps to code 15: 7*-0.5
		t.Fatalf("Q4_0 dequantized %v %v, want 4 -3.5", deq[3], deq[9])
	}
}

// TestQuantizeRoundTrip checks the reconstruction error of the reference
// quantizers against their bound: for Q8_0, |x - deq| <= d/2 plus the fp16
// rounding of d times up to 127 quants, where fp16 rounding is 2^-11
// relative, or 2^-25 absolute once d is a subnormal half (below 2^-14); for
// Q4_0 the same with 8 quants, except the elements that clamp to code 15
// (x*id > 7.5, only possible opposite in sign to max), which may be off by
// up to |d|.
func TestQuantizeRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 200; trial++ {
		nb := 1 + rng.IntN(8)
		x := randRow(rng, nb*32)
		q8 := make([]byte, nb*34)
		q4 := make([]byte, nb*18)
		QuantizeQ8_0(q8, x)
		QuantizeQ4_0(q4, x)
		d8 := make([]float32, len(x))
		d4 := make([]float32, len(x))
		DequantizeQ8_0(d8, q8)
		DequantizeQ4_0(d4, q4)
		for b := 0; b < nb; b++ {
			var amax, max float64
			for _, v := range x[b*32 : b*32+32] {
				if math.Abs(float64(v)) > amax {
					amax, max = math.Abs(float64(v)), float64(v)
				}
			}
			d := amax / 127
			d4s := math.Abs(max / 8)
			// The largest error of the stored (fp16) scale.
			h8 := math.Max(d/2048, 0x1p-25)
			h4 := math.Max(d4s/2048, 0x1p-25)
			for i := b * 32; i < b*32+32; i++ {
				e8 := math.Abs(float64(x[i]) - float64(d8[i]))
				if lim := d/2 + 127*h8 + 1e-6*amax; e8 > lim {
					t.Fatalf("Q8_0 element %d: x=%v deq=%v err %g > %g", i, x[i], d8[i], e8, lim)
				}
				e4 := math.Abs(float64(x[i]) - float64(d4[i]))
				lim := d4s/2 + 8*h4 + 1e-6*amax
				if float64(x[i])/(-max/8) > 7.5 {
					lim = d4s + 8*h4 + 1e-6*amax
				}
				if e4 > lim {
					t.Fatalf("Q4_0 element %d: x=%v deq=%v err %g > %g", i, x[i], d4[i], e4, lim)
				}
			}
		}
	}
}

// TestQuantizeActivations checks that the assembly quantizer writes exactly
// the bytes of the pure-Go reference, on random rows and on the inputs the C
// reference leaves undefined.
func TestQuantizeActivations(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var rows [][]float32
	for trial := 0; trial < 300; trial++ {
		rows = append(rows, randRow(rng, 32*(1+rng.IntN(16))))
	}
	// Random bit patterns: every exponent, NaNs, Infs, subnormals.
	for trial := 0; trial < 300; trial++ {
		x := make([]float32, 64)
		for i := range x {
			x[i] = math.Float32frombits(rng.Uint32())
		}
		rows = append(rows, x)
	}
	special := func(vals ...float32) []float32 {
		x := make([]float32, 32)
		copy(x, vals)
		return x
	}
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	rows = append(rows,
		special(),                              // all zero
		special(float32(math.Copysign(0, -1))), // -0
		special(127, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 126.5, -126.5), // ties away from zero
		special(nan, 1, -2),             // NaN ignored, quantized to 0
		special(inf, 1, -inf),           // Inf scale, id 0, Inf*0 = NaN -> 0
		special(1e-37, -3e-38),          // 1/d overflows: zeros
		special(1.5e-36, 1e-36, -7e-37), // subnormal d, finite id
		special(math.Float32frombits(1), math.Float32frombits(0x80000007)),
		special(3e38, -3e38, 1), // d near float32 max
		special(8.4e6, -1),      // scale overflows fp16
		special(65504*127, 3),   // largest finite fp16 scale
	)
	for _, x := range rows {
		ref := make([]byte, len(x)/32*34)
		quantizeQ8Go(ref, x)
		for _, q := range ref[2:34] {
			if int8(q) == -128 {
				t.Fatalf("quantizer produced -128 for %v", x[:32])
			}
		}
		got := make([]byte, len(ref))
		QuantizeActivations(got, x)
		if !bytes.Equal(got, ref) {
			t.Fatalf("QuantizeActivations differs from the reference for %v:\n got % x\nwant % x", x, got, ref)
		}
		if haveAsm {
			clear(got)
			quantizeQ8Asm(got, x)
			if !bytes.Equal(got, ref) {
				t.Fatalf("assembly quantizer differs from Go for %v:\n got % x\nwant % x", x, got, ref)
			}
		}
	}
	mustPanic(t, "length", func() { QuantizeActivations(make([]byte, 33), make([]float32, 32)) })
	mustPanic(t, "k", func() { QuantizeActivations(make([]byte, 34), make([]float32, 31)) })
}

func TestCheckScales(t *testing.T) {
	for _, bb := range []int{Q8_0BlockBytes, Q4_0BlockBytes} {
		data := make([]byte, 10*bb+3) // a trailing partial block is ignored
		for b := 0; b < 10; b++ {
			binary.LittleEndian.PutUint16(data[b*bb:], 0x7bff) // max finite
		}
		if got := CheckScales(bb, data); got != -1 {
			t.Fatalf("CheckScales(finite) = %d", got)
		}
		for _, h := range []uint16{0x7c00, 0xfc00, 0x7e00, 0x7c01, 0xffff} {
			for _, at := range []int{0, 4, 9} {
				d := append([]byte(nil), data...)
				binary.LittleEndian.PutUint16(d[at*bb:], h)
				binary.LittleEndian.PutUint16(d[9*bb:], h) // a later bad block too
				if got := CheckScales(bb, d); got != at {
					t.Fatalf("CheckScales(%d, scale %#04x at %d) = %d", bb, h, at, got)
				}
			}
		}
		// The quants are not scales: 0x7c in a quant byte is fine.
		d := append([]byte(nil), data...)
		for i := range d {
			if i%bb >= 2 {
				d[i] = 0x7c
			}
		}
		if got := CheckScales(bb, d); got != -1 {
			t.Fatalf("CheckScales saw quants as scales: %d", got)
		}
	}
}

func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s: no panic", what)
		}
	}()
	f()
}

// randRow returns n floats with a block-varying magnitude (as activations
// and weights have), some blocks all zero.
func randRow(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for b := 0; b < n/32; b++ {
		scale := float32(math.Pow(10, rng.Float64()*6-4))
		if rng.IntN(20) == 0 {
			continue // all-zero block
		}
		for i := b * 32; i < b*32+32; i++ {
			x[i] = float32(rng.NormFloat64()) * scale
		}
	}
	return x
}
