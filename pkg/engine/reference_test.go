package engine

import (
	"math"

	"github.com/semantic-kv/semantic/pkg/model"
)

// refForward is an independent, plain float64 forward pass (run.c's
// algorithm written out with no batching, tiling, padding or quantized
// activations; the weights are dequantized to their exact stored values),
// with each architecture's additions written from its published definition
// (Hugging Face transformers' modeling_qwen2.py and modeling_qwen3.py, Meta's
// Llama 3.1 rope scaling) rather than from the engine:
//
//   - Qwen2: q, k, v projections have biases; rope is rotate_half, i.e.
//     element i of a head pairs with element i+hd/2 (llama's GGUF tensors
//     are permuted so that pairs are adjacent instead);
//   - Qwen3: no biases; RMSNorm (eps of the model) over each head of q and
//     of k, with one hd-sized weight per layer, before the rope; the head
//     size is a config field;
//   - Llama 3.1: each pair's inverse frequency divided by its factor
//     (rope_freqs.weight); linear scaling divides every position.
//
// It returns the logits after every token of toks.
func refForward(m *model.Model, toks []uint32) [][]float64 {
	c := m.Config
	hd, group := c.HeadDim(), c.Heads/c.KVHeads
	neox := c.Arch == model.ArchQwen2 || c.Arch == model.ArchQwen3
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
		if v == nil {
			return nil
		}
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
		an, fn, bq, bk, bv, qn, kn []float64
		wq, wk, wv, wo, w1, w2, w3 [][]float64
		ks, vs                     [][]float64
	}
	layers := make([]layer, c.Layers)
	for i := range layers {
		l := &m.Layers[i]
		layers[i] = layer{an: vec(l.AttNorm), fn: vec(l.FFNNorm), wq: f64(&l.Wq), wk: f64(&l.Wk), wv: f64(&l.Wv),
			wo: f64(&l.Wo), w1: f64(&l.W1), w2: f64(&l.W2), w3: f64(&l.W3),
			bq: vec(l.Bq), bk: vec(l.Bk), bv: vec(l.Bv), qn: vec(l.QNorm), kn: vec(l.KNorm)}
	}
	emb, cls, fnorm := f64(&m.Embedding), f64(&m.Classifier), vec(m.FinalNorm)
	invFreq := make([]float64, hd/2)
	for i := range invFreq {
		invFreq[i] = 1 / math.Pow(float64(c.RopeTheta), float64(2*i)/float64(hd))
		if m.RopeFreqs != nil {
			invFreq[i] /= float64(m.RopeFreqs[i])
		}
	}
	rope := func(v []float64, pos int) {
		p := float64(pos)
		if c.RopeScale > 1 {
			p /= float64(c.RopeScale)
		}
		for h := 0; h < len(v); h += hd {
			x := v[h : h+hd]
			out := make([]float64, hd)
			for i, f := range invFreq {
				co, si := math.Cos(p*f), math.Sin(p*f)
				if neox { // x*cos + rotate_half(x)*sin, rotate_half(x) = (-x2, x1)
					out[i] = x[i]*co - x[i+hd/2]*si
					out[i+hd/2] = x[i+hd/2]*co + x[i]*si
				} else {
					out[2*i] = x[2*i]*co - x[2*i+1]*si
					out[2*i+1] = x[2*i]*si + x[2*i+1]*co
				}
			}
			copy(x, out)
		}
	}
	add := func(x, b []float64) {
		for i := range b {
			x[i] += b[i]
		}
	}
	headNorm := func(x, w []float64) {
		for h := 0; h < len(x); h += hd {
			copy(x[h:h+hd], rms(x[h:h+hd], w))
		}
	}
	var out [][]float64
	for pos, tok := range toks {
		x := append([]float64(nil), emb[tok]...)
		for li := range layers {
			L := &layers[li]
			xb := rms(x, L.an)
			q, k, v := matvec(L.wq, xb), matvec(L.wk, xb), matvec(L.wv, xb)
			add(q, L.bq)
			add(k, L.bk)
			add(v, L.bv)
			if L.qn != nil {
				headNorm(q, L.qn)
				headNorm(k, L.kn)
			}
			rope(q, pos)
			rope(k, pos)
			L.ks, L.vs = append(L.ks, k), append(L.vs, v)
			att := make([]float64, c.QDim())
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
