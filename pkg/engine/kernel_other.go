//go:build !amd64 || purego

package engine

const haveAsm = false

func asmTile(rows, k int, x []float32, ldx int, w []float32, ldw int, c []float32, ldc int) {
	panic("unreachable")
}
func asmRow8(k int, x, w []float32, ldw int, c []float32) { panic("unreachable") }
func asmDot(k int, x, y []float32) float32                { panic("unreachable") }
func asmAxpy(k int, a float32, x, y []float32)            { panic("unreachable") }

func asmScores(n, hd int, q, k []float32, stride int, scale float32, out []float32) {
	panic("unreachable")
}
func asmAccum(n, hd int, a, v []float32, stride int, out []float32) { panic("unreachable") }

func asmExp(x, out []float32)                         { panic("unreachable") }
func asmExpSum(s []float32, scale, m float32) float32 { panic("unreachable") }
func asmSilu(h1, h3, out []float32)                   { panic("unreachable") }
func asmMax(s []float32) float32                      { panic("unreachable") }

func asmTileRun(rows, n4, k int, x []float32, ldx int, w []float32, ldw int, c []float32, ldc int) {
	panic("unreachable")
}

const haveZ = false

func asmPairRun(pairs, n4, k int, p []float32, w []float32, ldw int, c []float32, ldc int) {
	panic("unreachable")
}
func asmPair8(pairs, k int, p []float32, w []float32, ldw int, c []float32, ldc int) {
	panic("unreachable")
}
func asmAccum2(n, hd int, a0, a1, v []float32, stride int, o0, o1 []float32) { panic("unreachable") }
