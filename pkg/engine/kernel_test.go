package engine

import (
	"math"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/semantic-kv/semantic/pkg/model"
)

func randSlice(r *model.SplitMix64, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = r.Uniform(1)
	}
	return s
}

// forEachKernel runs f with the AVX-512 pair tiles and the AVX2 kernels
// (when the CPU has them) and with the pure-Go kernels.
func forEachKernel(t *testing.T, f func(t *testing.T)) {
	savedAsm, savedZ := useAsm, useZ
	defer func() { useAsm, useZ = savedAsm, savedZ }()
	if haveZ {
		useAsm, useZ = true, true
		t.Run("avx512", f)
	}
	useZ = false
	if haveAsm {
		useAsm = true
		t.Run("asm", f)
	}
	useAsm = false
	t.Run("go", f)
}

// TestGemmBatchInvariant: every element of a multi-row GEMM equals, bit for
// bit, the single-row GEMM of its row and the lone dot product of its row and
// column, whatever tile (3x4, 2x4, 1x4) computed it; and it is close to the
// naive triple loop.
func TestGemmBatchInvariant(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		r := &model.SplitMix64{State: 42}
		for _, k := range []int{8, 16, 64, 176, 520} {
			for _, m := range []int{1, 2, 3, 4, 5, 7, 16, 33, 50, 97} {
				n := 12
				a, w := randSlice(r, m*k), randSlice(r, n*k)
				c := make([]float32, m*n)
				gemmCols(m, k, a, k, packPairs(nil, m, k, a, k), w, k, c, n, 0, n)
				ref := make([]float32, m*n)
				naiveGemm(m, n, k, a, k, w, k, ref, n)
				for i := 0; i < m; i++ {
					one := make([]float32, n)
					gemmCols(1, k, a[i*k:], k, nil, w, k, one, n, 0, n)
					half := make([]float32, n)
					gemmCols(1, k, a[i*k:], k, nil, w, k, half, n, 0, 4)
					gemmCols(1, k, a[i*k:], k, nil, w, k, half, n, 4, n)
					for j := 0; j < n; j++ {
						got := c[i*n+j]
						d := dot(k, a[i*k:], w[j*k:])
						if math.Float32bits(got) != math.Float32bits(one[j]) || got != d || got != half[j] {
							t.Fatalf("k=%d m=%d (%d,%d): batch %v, single row %v, split %v, dot %v", k, m, i, j, got, one[j], half[j], d)
						}
						if diff := math.Abs(float64(got - ref[i*n+j])); diff > 1e-4*float64(k) {
							t.Fatalf("k=%d m=%d (%d,%d): %v vs naive %v", k, m, i, j, got, ref[i*n+j])
						}
					}
				}
			}
		}
	})
}

func TestAxpy(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		r := &model.SplitMix64{State: 7}
		for _, k := range []int{8, 16, 24, 6} {
			x, y := randSlice(r, k), randSlice(r, k)
			want := append([]float32(nil), y...)
			for i := range want {
				want[i] += 0.5 * x[i]
			}
			axpy(k, 0.5, x, y)
			for i := range y {
				if math.Abs(float64(y[i]-want[i])) > 1e-6 {
					t.Fatalf("k=%d i=%d: %v want %v", k, i, y[i], want[i])
				}
			}
		}
	})
}

// TestAttentionRuns: the run kernels give exactly the per-position values.
func TestAttentionRuns(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		r := &model.SplitMix64{State: 11}
		for _, hd := range []int{8, 16, 32, 64, 96, 6} {
			for _, n := range []int{1, 5, 16} {
				stride := 3 * hd
				q, k := randSlice(r, hd), randSlice(r, n*stride)
				got := make([]float32, n)
				scores(n, hd, q, k, stride, 8, got)
				for i := range got {
					if want := dot(hd, q, k[i*stride:]) / 8; got[i] != want {
						t.Fatalf("scores hd=%d n=%d t=%d: %v want %v", hd, n, i, got[i], want)
					}
				}
				a := randSlice(r, n)
				out, want := randSlice(r, hd), make([]float32, hd)
				copy(want, out)
				accum(n, hd, a, k, stride, out)
				for i := 0; i < n; i++ {
					axpy(hd, a[i], k[i*stride:], want)
				}
				if !sameBits(out, want) {
					t.Fatalf("accum hd=%d n=%d differs", hd, n)
				}
			}
		}
	})
}

// TestExp: the float32 exp of both families is accurate, maps -Inf to 0 and
// NaN to NaN, and the attention path (expSum) computes exactly vexp of
// s/scale - m and the 8-lane sum.
func TestExp(t *testing.T) {
	forEachKernel(t, func(t *testing.T) {
		var xs []float32
		for x := float32(-87); x < 88; x += 0.0137 {
			xs = append(xs, x)
		}
		xs = append(xs, 0, float32(math.Copysign(0, -1)), 1, -1, 1e-8, -1e-8)
		for len(xs)%8 != 0 {
			xs = append(xs, 0.5)
		}
		got := make([]float32, len(xs))
		vexp(xs, got)
		for i, x := range xs {
			want := math.Exp(float64(x))
			if rel := math.Abs(float64(got[i])-want) / want; rel > 4e-7 {
				t.Fatalf("exp(%v) = %v, want %v (rel err %.3g)", x, got[i], want, rel)
			}
		}
		special := []float32{float32(math.Inf(-1)), -1000, -88.5, float32(math.NaN()), 0, 0, 0, 0}
		vexp(special, got[:8])
		if got[0] != 0 || got[1] != 0 || got[2] != 0 || !math.IsNaN(float64(got[3])) || got[4] != 1 {
			t.Fatalf("special values: %v", got[:8])
		}
		r := &model.SplitMix64{State: 3}
		for _, n := range []int{8, 16, 200} {
			s := randSlice(r, n)
			for i := range s {
				s[i] *= 20
			}
			scale, m := float32(2.8284271), float32(3.5)
			x := make([]float32, n)
			for i := range s {
				x[i] = float32(s[i]/scale) - m
			}
			want := make([]float32, n)
			vexp(x, want)
			var l [8]float32
			for i, v := range want {
				l[i%8] += v
			}
			wsum := ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]))
			if sum := expSum(s, scale, m); !sameBits(s, want) || sum != wsum {
				t.Fatalf("n=%d: expSum differs from vexp (sum %v want %v)", n, sum, wsum)
			}
		}
	})
}

// TestTileRun: the multi-tile score kernels equal dot per element.
func TestTileRun(t *testing.T) {
	if !haveAsm {
		t.Skip("no assembly kernels")
	}
	r := &model.SplitMix64{State: 12}
	for _, k := range []int{8, 16, 64} {
		for rows := 1; rows <= 3; rows++ {
			for _, n4 := range []int{1, 2, 4, 5} {
				ldx, ldw, ldc := k+24, 3*k, 4*n4+5
				x, w := randSlice(r, rows*ldx), randSlice(r, 4*n4*ldw)
				c := make([]float32, rows*ldc)
				asmTileRun(rows, n4, k, x, ldx, w, ldw, c, ldc)
				for i := 0; i < rows; i++ {
					for j := 0; j < 4*n4; j++ {
						if want := dot(k, x[i*ldx:], w[j*ldw:]); c[i*ldc+j] != want {
							t.Fatalf("k=%d rows=%d n4=%d (%d,%d): %v want %v", k, rows, n4, i, j, c[i*ldc+j], want)
						}
					}
				}
			}
		}
	}
}

// TestAVX512MatchesAVX2: with and without the AVX-512 pair tiles the engine
// gives the same logits, bit for bit, for a chunked prefill and decode steps
// of a batch (multi-row attention jobs, GQA pairs of query heads, pair GEMM
// tiles with odd row counts). That is why both share the "avx2" cache tag: a
// cache written on a CPU without AVX-512 resumes exactly on one with it, and
// back. (The pure-Go family rounds differently and has its own tag.)
func TestAVX512MatchesAVX2(t *testing.T) {
	if !haveZ {
		t.Skip("this CPU has no AVX-512: the pair tiles cannot run (TestGemmBatchInvariant covers the others)")
	}
	m := hd64Model(t)
	r := &model.SplitMix64{State: 77}
	prompts := [][]uint32{randTokens(r, 203, m.Config.Vocab), randTokens(r, 150, m.Config.Vocab)}
	run := func() [][]float32 {
		e := newEngine(t, m, 16, 2)
		seqs := []*Sequence{newSeq(e, 240), newSeq(e, 240)}
		var all [][]float32
		for _, cut := range [][2]int{{0, 37}, {37, 150}} {
			in := []StepInput{{Seq: seqs[0], Tokens: prompts[0][cut[0]:cut[1]]}, {Seq: seqs[1], Tokens: prompts[1][cut[0]:min(cut[1], 149)]}}
			out, err := e.Step(in)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, out...)
		}
		for step := 0; step < 5; step++ {
			out, err := e.Step([]StepInput{{Seq: seqs[0], Tokens: []uint32{uint32(step + 3)}}, {Seq: seqs[1], Tokens: []uint32{uint32(step + 9), 4, 5}}})
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, out...)
		}
		return all
	}
	savedAsm, savedZ := useAsm, useZ
	defer func() { useAsm, useZ = savedAsm, savedZ }()
	useAsm, useZ = true, false
	ref := run()
	useZ = true
	got := run()
	for i := range ref {
		for j := range ref[i] {
			if math.Float32bits(got[i][j]) != math.Float32bits(ref[i][j]) {
				t.Fatalf("output %d logit %d: %v with AVX-512, %v without", i, j, got[i][j], ref[i][j])
			}
		}
	}
}

// TestAVX512Detected: where /proc/cpuinfo lists AVX-512 F and DQ, the pair
// tiles are on, so the avx512 runs of the kernel tests (and
// TestAVX512MatchesAVX2) cannot be skipped without notice on such a machine.
func TestAVX512Detected(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" || !haveAsm {
		t.Skip("not linux/amd64 with the assembly kernels")
	}
	info, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		t.Skipf("cpuinfo: %v", err)
	}
	flags := " " + strings.Join(strings.Fields(string(info)), " ") + " "
	want := strings.Contains(flags, " avx512f ") && strings.Contains(flags, " avx512dq ")
	if haveZ != want || useZ != want {
		t.Fatalf("cpuinfo lists AVX-512 F and DQ: %v; haveZ %v, useZ %v", want, haveZ, useZ)
	}
}
