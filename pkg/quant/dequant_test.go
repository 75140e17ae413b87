package quant

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

// dequantScales are the float16 scales whose products need care: ±0,
// subnormals, the extremes of the normal range, ±Inf, quiet and signalling
// NaNs (with and without payload bits and sign).
var dequantScales = []uint16{
	0x0000, 0x8000, 0x0001, 0x8001, 0x03ff, 0x83ff, 0x0400, 0x3c00, 0xbc00, 0x7bff, 0xfbff,
	0x7c00, 0xfc00, 0x7e00, 0xfe00, 0x7c01, 0xfc01, 0x7d55, 0x7fff, 0xffff, 0x1234, 0x5555,
}

// dequantCase returns nb random blocks of blockBytes, each with a random
// scale or one of dequantScales, and, in turn, every byte value in the
// quants (so all 256 Q8_0 codes and all 16x16 Q4_0 nibble pairs appear).
func dequantCase(rng *rand.Rand, nb, blockBytes int) []byte {
	src := make([]byte, nb*blockBytes)
	for i := range src {
		src[i] = byte(rng.Uint32())
	}
	for b := 0; b < nb; b++ {
		blk := src[b*blockBytes:]
		if b%2 == 0 {
			binary.LittleEndian.PutUint16(blk, dequantScales[(b/2)%len(dequantScales)])
		}
		for i := 2; i < blockBytes; i++ {
			blk[i] = byte(b*(blockBytes-2) + i)
		}
	}
	return src
}

// TestDequantizeFamiliesAgree: the assembly and the Go decoders give the
// same bits for every scale and quant, one run or strided runs, and the
// exported functions equal the reference formula y = float32(q)*d.
func TestDequantizeFamiliesAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(71, 72))
	for _, f := range []struct {
		name            string
		bb              int
		one             func([]float32, []byte)
		rows, goF, asmF func([]float32, int, []byte, int, int, int)
		ref             func(q []byte, i int) int32
	}{
		{"Q8_0", Q8_0BlockBytes, DequantizeQ8_0, DequantizeQ8_0Rows, dequantQ8Go, dequantQ8Asm,
			func(q []byte, i int) int32 { return int32(int8(q[i])) }},
		{"Q4_0", Q4_0BlockBytes, DequantizeQ4_0, DequantizeQ4_0Rows, dequantQ4Go, dequantQ4Asm,
			func(q []byte, i int) int32 {
				if i < 16 {
					return int32(q[i]&15) - 8
				}
				return int32(q[i-16]>>4) - 8
			}},
	} {
		for _, nb := range []int{1, 2, 3, 4, 7, 64} {
			src := dequantCase(rng, nb, f.bb)
			want := make([]float32, nb*BlockSize)
			for b := 0; b < nb; b++ {
				d := F16ToF32(binary.LittleEndian.Uint16(src[b*f.bb:]))
				for i := 0; i < BlockSize; i++ {
					want[b*BlockSize+i] = float32(f.ref(src[b*f.bb+2:], i)) * d
				}
			}
			got := make([]float32, len(want))
			f.one(got, src)
			sameF32(t, f.name+" exported", got, want)
			clear(got)
			f.goF(got, 0, src, 0, 1, nb)
			sameF32(t, f.name+" go", got, want)
			if haveAsm {
				clear(got)
				f.asmF(got, 0, src, 0, 1, nb)
				sameF32(t, f.name+" asm", got, want)
			}
			// Strided: runs of 1..nb blocks out of rows of nb blocks,
			// into a destination with a gap after each run; the gap
			// must stay untouched.
			for run := 1; run <= nb; run++ {
				first := rng.IntN(nb - run + 1)
				rows := 1 + rng.IntN(5)
				srcAll := dequantCase(rng, rows*nb, f.bb)
				ld := run*BlockSize + rng.IntN(9)
				impls := []func([]float32, int, []byte, int, int, int){f.rows, f.goF}
				if haveAsm {
					impls = append(impls, f.asmF)
				}
				for _, fn := range impls {
					dst := make([]float32, (rows-1)*ld+run*BlockSize)
					for i := range dst {
						dst[i] = -7
					}
					fn(dst, ld, srcAll[first*f.bb:], nb*f.bb, rows, run)
					for r := 0; r < rows; r++ {
						w := make([]float32, run*BlockSize)
						f.one(w, srcAll[(r*nb+first)*f.bb:(r*nb+first+run)*f.bb])
						sameF32(t, f.name+" strided", dst[r*ld:r*ld+run*BlockSize], w)
						if r < rows-1 {
							for _, v := range dst[r*ld+run*BlockSize : (r+1)*ld] {
								if v != -7 {
									t.Fatalf("%s: strided write outside a run", f.name)
								}
							}
						}
					}
				}
			}
		}
		mustPanic(t, f.name+"Rows short dst", func() { f.rows(make([]float32, 63), 32, make([]byte, 2*f.bb), f.bb, 2, 1) })
		mustPanic(t, f.name+"Rows short src", func() { f.rows(make([]float32, 64), 32, make([]byte, 2*f.bb-1), f.bb, 2, 1) })
		mustPanic(t, f.name+"Rows overlapping runs", func() { f.rows(make([]float32, 128), 16, make([]byte, 4*f.bb), f.bb, 2, 1) })
	}
}

// TestDecodeF16Rows: strided runs decode as DecodeF16 of each run.
func TestDecodeF16Rows(t *testing.T) {
	rng := rand.New(rand.NewPCG(73, 74))
	for _, n := range []int{1, 7, 8, 9, 64} {
		rows, lds, ldd := 3, 2*n+2*rng.IntN(5), n+rng.IntN(5)
		src := make([]byte, (rows-1)*lds+2*n)
		for i := range src {
			src[i] = byte(rng.Uint32())
		}
		dst := make([]float32, (rows-1)*ldd+n)
		DecodeF16Rows(dst, ldd, src, lds, rows, n)
		for r := 0; r < rows; r++ {
			w := make([]float32, n)
			DecodeF16(w, src[r*lds:r*lds+2*n])
			sameF32(t, "DecodeF16Rows", dst[r*ldd:r*ldd+n], w)
		}
	}
	// Every half, as 4 strided runs, in both families.
	all := make([]byte, 4*(2*16384+6))
	for h := 0; h < 65536; h++ {
		r, i := h/16384, h%16384
		binary.LittleEndian.PutUint16(all[r*(2*16384+6)+2*i:], uint16(h))
	}
	for _, n := range []int{16384, 16381} {
		want := make([]float32, 4*16390)
		for r := 0; r < 4; r++ {
			for i := 0; i < n; i++ {
				want[r*16390+i] = F16ToF32(binary.LittleEndian.Uint16(all[r*(2*16384+6)+2*i:]))
			}
		}
		impls := map[string]func([]float32, int, []byte, int, int, int){"exported": DecodeF16Rows, "go": decodeF16RowsGo}
		if haveAsm {
			impls["asm"] = decodeF16RowsAsm
		}
		for name, fn := range impls {
			got := make([]float32, len(want))
			fn(got, 16390, all, 2*16384+6, 4, n)
			sameF32(t, "DecodeF16Rows "+name, got, want)
		}
	}
	mustPanic(t, "DecodeF16Rows short", func() { DecodeF16Rows(make([]float32, 15), 8, make([]byte, 32), 16, 2, 8) })
}

func sameF32(t *testing.T, what string, got, want []float32) {
	t.Helper()
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: element %d = %#08x (%v), want %#08x (%v)", what, i, math.Float32bits(got[i]), got[i], math.Float32bits(want[i]), want[i])
		}
	}
}
