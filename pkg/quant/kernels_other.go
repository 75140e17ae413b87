//go:build purego || !amd64

package quant

// haveAsm is false without the amd64 assembly: every kernel is the pure-Go
// family, which computes the same bits.
const haveAsm = false

func quantizeQ8(dst []byte, src []float32) { quantizeQ8Go(dst, src) }

func dotQ8(nb int, w, a []byte) float32 { return dotQ8Go(nb, w, a) }

func dotQ4(nb int, w, a []byte) float32 { return dotQ4Go(nb, w, a) }

func matQ8(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
	matQ8Go(nb, rows, w, n, a, lda, out, ldo)
}

func matQ4(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
	matQ4Go(nb, rows, w, n, a, lda, out, ldo)
}

func decodeF16Any(dst []float32, src []byte)  { decodeF16Go(dst, src) }
func decodeBF16Any(dst []float32, src []byte) { decodeBF16Go(dst, src) }

// The assembly entry points, for the tests that compare the two families.
func quantizeQ8Asm(dst []byte, src []float32) { panic("quant: no assembly") }
func dotQ8Asm(nb int, w, a []byte) float32    { panic("quant: no assembly") }
func dotQ4Asm(nb int, w, a []byte) float32    { panic("quant: no assembly") }
func matQ8Asm(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
	panic("quant: no assembly")
}
func matQ4Asm(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
	panic("quant: no assembly")
}

// No AVX-512 tiles either; useAVX512 is a variable only so that the tests
// that switch it compile everywhere (nothing reads it here).
const haveAVX512 = false

var useAVX512 = false

func matQ8AVX2(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
	panic("quant: no assembly")
}
func matQ4AVX2(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
	panic("quant: no assembly")
}
func matQ8AVX512(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
	panic("quant: no assembly")
}
func matQ4AVX512(nb, rows int, w []byte, n int, a []byte, lda int, out []float32, ldo int) {
	panic("quant: no assembly")
}
func f32ToF16Asm(f float32) uint16            { panic("quant: no assembly") }
func decodeF16Asm(dst []float32, src []byte)  { panic("quant: no assembly") }
func decodeBF16Asm(dst []float32, src []byte) { panic("quant: no assembly") }
