package quant

import (
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"testing"
)

// TestAVX512Detected guards against the AVX-512 tiles silently never being
// tested: on a Linux amd64 machine whose CPU lists AVX-512 F/BW/VL/VNNI in
// /proc/cpuinfo, the default (non-purego) build must select them (unless
// built with -tags noavx512).
func TestAVX512Detected(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" || !haveAsm {
		t.Skip("not linux/amd64 with the assembly")
	}
	info, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		t.Skipf("cpuinfo: %v", err)
	}
	flags := " " + string(info) + " "
	want := true
	for _, f := range []string{"avx512f", "avx512bw", "avx512vl", "avx512_vnni"} {
		want = want && strings.Contains(flags, " "+f+" ")
	}
	if haveAVX512 != want || useAVX512 != (want && !avx512Off) {
		t.Fatalf("cpuinfo lists AVX-512 F/BW/VL/VNNI: %v; haveAVX512 %v, useAVX512 %v (noavx512 tag %v)", want, haveAVX512, useAVX512, avx512Off)
	}
}

// TestTileShapes runs every weight row count that exercises the tiles and
// their leftovers (the 1x8 tile and the 4-row tiles, with 0..7 rows left
// for the AVX2 tiles and the 1x1 kernel) against every activation row count
// 1..9 (the 4-row groups and the 3, 2, 1 remainders), with padded lda and
// ldo: every assembly family must match the pure-Go family bit for bit and
// write exactly the outputs it should (problem.run).
func TestTileShapes(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, f := range families {
		for _, k := range []int{32, 64, 288} {
			for _, rows := range []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 32} {
				for n := 1; n <= 9; n++ {
					p := newProblem(rng, f, k, rows, n)
					want := p.run(t, f.matGo)
					for _, m := range asmMats(f) {
						got := p.run(t, m.mat)
						for i := 0; i < n; i++ {
							for r := 0; r < rows; r++ {
								g, w := got[i*p.ldo+r], want[i*p.ldo+r]
								if math.Float32bits(g) != math.Float32bits(w) {
									t.Fatalf("%s %s k=%d rows=%d n=%d [%d,%d]: %v (%#08x), pure Go %v (%#08x)",
										f.name, m.name, k, rows, n, i, r, g, math.Float32bits(g), w, math.Float32bits(w))
								}
							}
						}
					}
				}
			}
		}
	}
}
