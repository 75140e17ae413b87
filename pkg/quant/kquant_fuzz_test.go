package quant

import (
	"encoding/binary"
	"math"
	"testing"
)

// kFuzzProblem builds a K-quant product from fuzz bytes: the first bytes
// choose the type, the super-blocks per row and the shape, the rest fill
// the weights and activations (repeated as needed), so any bytes make a
// valid call: NaN and Inf scales, -128 activations and inconsistent bsums
// included.
func kFuzzProblem(data []byte) (f kFamily, p *problem) {
	if len(data) < 4 {
		data = append(data, make([]byte, 4-len(data))...)
	}
	f = kFamilies[int(data[0])%len(kFamilies)]
	nb := 1 + int(data[1])%3
	rows, n := 1+int(data[2])%6, 1+int(data[3])%6
	body := data[4:]
	if len(body) == 0 {
		body = []byte{0}
	}
	fill := func(dst []byte, off int) {
		for i := range dst {
			dst[i] = body[(off+i)%len(body)]
		}
	}
	p = &problem{k: nb * 256, rows: rows, n: n, lda: nb * Q8_KBlockBytes, ldo: rows}
	p.w = make([]byte, rows*nb*f.t.blockBytes())
	fill(p.w, 0)
	p.a = make([]byte, n*p.lda)
	fill(p.a, len(p.w))
	return f, p
}

// FuzzKKernels: any bytes decode and multiply without a panic, and the
// pure-Go and assembly families agree bit for bit (NaN payloads aside).
func FuzzKKernels(fz *testing.F) {
	fz.Add([]byte{0, 0, 0, 0})
	fz.Add([]byte{1, 2, 5, 3, 0x00, 0x7c, 0x00, 0x3c, 0x80, 0x7f})       // Inf d
	fz.Add([]byte{2, 1, 3, 5, 0x01, 0x7e, 0xff, 0xff, 0x80, 0x80, 0x00}) // NaN
	fz.Add([]byte{0, 2, 4, 4, 0xff, 0x7b, 0xff, 0xfb, 0xff, 0x7f, 0x80}) // extremes
	fz.Add([]byte{2, 0, 0, 0, 0x00, 0x00, 0x80, 0x7f, 0x33, 0x12, 0x9a}) // Q6_K, Inf activation d
	fz.Fuzz(func(t *testing.T, data []byte) {
		f, p := kFuzzProblem(data)
		nb, bb := p.k/256, f.t.blockBytes()
		deq := make([]float32, p.k)
		for r := 0; r < p.rows; r++ {
			f.deq(deq, p.w[r*nb*bb:(r+1)*nb*bb])
		}
		DequantizeQ8_K(deq, p.a[:nb*Q8_KBlockBytes])
		_ = CheckScalesQ4_K(Q4_KBlockBytes, p.w)
		_ = CheckScalesQ6_K(p.w)
		g := p.runK(t, f.goMat())
		if !haveAsm {
			return
		}
		a := p.runK(t, f.asmMat())
		for idx := range g {
			if idx%p.ldo >= p.rows || g[idx] != g[idx] && a[idx] != a[idx] {
				continue
			}
			if math.Float32bits(g[idx]) != math.Float32bits(a[idx]) {
				t.Fatalf("%s: out[%d]: pure Go %v (%#08x), assembly %v (%#08x)", f.name, idx, g[idx], math.Float32bits(g[idx]), a[idx], math.Float32bits(a[idx]))
			}
		}
	})
}

// FuzzKQuantizers: any float32 bits quantize without a panic (activations
// to Q8_K with identical bytes in both families, quants in [-127, 127];
// weights with the reference K quantizers, whose blocks then decode).
func FuzzKQuantizers(fz *testing.F) {
	fz.Add([]byte{0, 0, 0x80, 0x7f, 0, 0, 0xc0, 0x7f})
	fz.Add([]byte{1, 0, 0, 0, 0x55, 0x55, 0x55, 0x01})
	fz.Add([]byte{0, 0, 0x80, 0x3f, 0, 0, 0x80, 0xbf, 0, 0, 0, 0x40})
	fz.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 4 {
			return
		}
		x := make([]float32, 256*(1+len(data)/1024%2))
		for i := range x {
			o := 4 * i % (len(data) &^ 3)
			x[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[o:]))
		}
		ref := make([]byte, len(x)/256*Q8_KBlockBytes)
		quantizeQ8KGo(ref, x)
		for b := 0; b < len(x)/256; b++ {
			for _, q := range ref[b*Q8_KBlockBytes+4 : b*Q8_KBlockBytes+260] {
				if int8(q) == -128 {
					t.Fatalf("Q8_K quant -128 for %v", x)
				}
			}
		}
		if haveAsm {
			got := make([]byte, len(ref))
			quantizeQ8KAsm(got, x)
			if string(got) != string(ref) {
				t.Fatalf("assembly Q8_K quantizer differs for %v", x)
			}
		}
		d := make([]float32, len(x))
		for _, f := range kFamilies {
			q := make([]byte, len(x)/256*f.t.blockBytes())
			f.quantize(q, x)
			f.deq(d, q)
		}
	})
}
