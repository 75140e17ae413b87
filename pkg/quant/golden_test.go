package quant

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
	"testing"
)

// goldenSums hashes the bytes the quantizers write and the bits the kernels
// return for a fixed, seeded problem. The expected values were recorded on
// amd64 (both families agree); any platform or build tag that runs this test
// must reproduce them bit for bit. A change here means a change of the
// package's float order or of the quantizers' output, which invalidates
// every KV cache built with the old bits: do it knowingly.
func goldenSums() (quant, q8, q4 uint64) {
	rng := rand.New(rand.NewPCG(2024, 7))
	const k, rows, n = 512, 37, 6
	x := make([]float32, n*k)
	for i := range x {
		x[i] = float32(rng.NormFloat64()) * float32(math.Pow(10, float64(i/32%7)-3))
	}
	wf := make([]float32, rows*k)
	for i := range wf {
		wf[i] = float32(rng.NormFloat64()) * 0.02
	}
	a := make([]byte, n*k/32*34)
	for i := 0; i < n; i++ {
		QuantizeActivations(a[i*k/32*34:(i+1)*k/32*34], x[i*k:(i+1)*k])
	}
	w8 := make([]byte, rows*k/32*34)
	w4 := make([]byte, rows*k/32*18)
	QuantizeQ8_0(w8, wf)
	QuantizeQ4_0(w4, wf)
	h := fnv.New64a()
	h.Write(a)
	h.Write(w8)
	h.Write(w4)
	quant = h.Sum64()
	sum := func(out []float32) uint64 {
		h := fnv.New64a()
		for _, v := range out {
			b := math.Float32bits(v)
			h.Write([]byte{byte(b), byte(b >> 8), byte(b >> 16), byte(b >> 24)})
		}
		return h.Sum64()
	}
	out := make([]float32, n*rows)
	MatQ8_0(k, rows, w8, n, a, k/32*34, out, rows)
	q8 = sum(out)
	MatQ4_0(k, rows, w4, n, a, k/32*34, out, rows)
	q4 = sum(out)
	return
}

// TestGolden checks the sums with every tile family the machine has (the
// AVX-512 tiles off and on).
func TestGolden(t *testing.T) {
	for _, on := range avx512Modes() {
		withAVX512(on, func() {
			quant, q8, q4 := goldenSums()
			const wantQuant, wantQ8, wantQ4 = 0x2b7f17d440bf2924, 0xabf981234549c046, 0x4de1f7e3c0912c46
			if quant != wantQuant || q8 != wantQ8 || q4 != wantQ4 {
				t.Fatalf("golden sums (AVX-512 %v): quantizers %#x (want %#x), MatQ8_0 %#x (want %#x), MatQ4_0 %#x (want %#x)",
					on, quant, uint64(wantQuant), q8, uint64(wantQ8), q4, uint64(wantQ4))
			}
		})
	}
}
