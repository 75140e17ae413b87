package engine

import (
	"math"

	"github.com/semantic-kv/semantic/pkg/model"
)

// refForward is an independent, plain float64 forward pass of a llama model
// (run.c's algorithm written out with no batching, tiling, padding or
// quantized activations; the weights are dequantized to their exact stored
// values). It returns the logits after every token of toks.
func refForward(m *model.Model, toks []int) [][]float64 {
	c := m.Config
	hd, kvd, group := c.HeadDim(), c.KVDim(), c.Heads/c.KVHeads
	f64 := func(t *model.Tensor) [][]float64 {
		flat := t.Dequantize()
		out := make([][]float64, t.Rows)
		for r := range out {
			out[r] = make([]float64, t.Cols)
			for j := range out[r] {
				out[r][j] = float64(flat[r*t.Cols+j])
			}
		}
		return out
	}
	vec := func(v []float32) []float64 {
		out := make([]float64, len(v))
		for i, x := range v {
			out[i] = float64(x)
		}
		return out
	}
	matvec := func(w [][]float64, x []float64) []float64 {
		out := make([]float64, len(w))
		for r, row := range w {
			var s float64
			for j, v := range row {
				s += v * x[j]
			}
			out[r] = s
		}
		return out
	}
	rms := func(x, w []float64) []float64 {
		var ss float64
		for _, v := range x {
			ss += v * v
		}
		inv := 1 / math.Sqrt(ss/float64(len(x))+float64(c.NormEps))
		out := make([]float64, len(x))
		for i := range x {
			out[i] = w[i] * x[i] * inv
		}
		return out
	}
	type layer struct {
		an, fn                     []float64
		wq, wk, wv, wo, w1, w2, w3 [][]float64
		ks, vs                     [][]float64
	}
	layers := make([]layer, c.Layers)
	for i := range layers {
		l := &m.Layers[i]
		layers[i] = layer{an: vec(l.AttNorm), fn: vec(l.FFNNorm), wq: f64(&l.Wq), wk: f64(&l.Wk), wv: f64(&l.Wv),
			wo: f64(&l.Wo), w1: f64(&l.W1), w2: f64(&l.W2), w3: f64(&l.W3)}
	}
	emb, cls, fnorm := f64(&m.Embedding), f64(&m.Classifier), vec(m.FinalNorm)
	rope := func(v []float64, pos int) {
		for h := 0; h < len(v); h += hd {
			for i := 0; i < hd; i += 2 {
				freq := 1 / math.Pow(float64(c.RopeTheta), float64(i)/float64(hd))
				a := float64(pos) * freq
				co, si := math.Cos(a), math.Sin(a)
				v0, v1 := v[h+i], v[h+i+1]
				v[h+i], v[h+i+1] = v0*co-v1*si, v0*si+v1*co
			}
		}
	}
	var out [][]float64
	for pos, tok := range toks {
		x := append([]float64(nil), emb[tok]...)
		for li := range layers {
			L := &layers[li]
			xb := rms(x, L.an)
			q, k, v := matvec(L.wq, xb), matvec(L.wk, xb), matvec(L.wv, xb)
			rope(q, pos)
			rope(k, pos)
			L.ks, L.vs = append(L.ks, k), append(L.vs, v)
			att := make([]float64, c.Dim)
			for h := 0; h < c.Heads; h++ {
				kh := (h / group) * hd
				sc := make([]float64, pos+1)
				mx := math.Inf(-1)
				for t := 0; t <= pos; t++ {
					var s float64
					for d := 0; d < hd; d++ {
						s += q[h*hd+d] * L.ks[t][kh+d]
					}
					sc[t] = s / math.Sqrt(float64(hd))
					mx = math.Max(mx, sc[t])
				}
				var sum float64
				for t := range sc {
					sc[t] = math.Exp(sc[t] - mx)
					sum += sc[t]
				}
				for t := range sc {
					for d := 0; d < hd; d++ {
						att[h*hd+d] += sc[t] / sum * L.vs[t][kh+d]
					}
				}
			}
			_ = kvd
			o := matvec(L.wo, att)
			for i := range x {
				x[i] += o[i]
			}
			xb = rms(x, L.fn)
			h1, h3 := matvec(L.w1, xb), matvec(L.w3, xb)
			for i := range h1 {
				h1[i] = h1[i] / (1 + math.Exp(-h1[i])) * h3[i]
			}
			f := matvec(L.w2, h1)
			for i := range x {
				x[i] += f[i]
			}
		}
		out = append(out, matvec(cls, rms(x, fnorm)))
	}
	return out
}
