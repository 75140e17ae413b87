//go:build purego || !amd64

package quant

func quantizeQ8K(dst []byte, src []float32) { quantizeQ8KGo(dst, src) }

func dotK(t kType, nb int, w, a []byte) float32 { return dotKGoFuncs[t](nb, w, a) }

func matK(t kType, nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
	matKGo(t, nb, rows, w, n, a, lda, out, ldo)
}

// The assembly entry points, for the tests that compare the two families.
func quantizeQ8KAsm(dst []byte, src []float32)     { panic("quant: no assembly") }
func dotKAsm(t kType, nb int, w, a []byte) float32 { panic("quant: no assembly") }
func matKAsm(t kType, nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
	panic("quant: no assembly")
}
