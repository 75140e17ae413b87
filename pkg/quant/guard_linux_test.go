package quant

import (
	"math/rand/v2"
	"os"
	"syscall"
	"testing"
	"unsafe"
)

// guarded returns n bytes of fresh memory that touch an inaccessible page:
// right after the last byte (atEnd) or right before the first, so any access
// past the slice faults. Prefetches are not accesses and do not fault.
func guarded(t *testing.T, n int, atEnd bool) []byte {
	t.Helper()
	page := os.Getpagesize()
	size := (n + page - 1) / page * page
	if size == 0 {
		size = page
	}
	mem, err := syscall.Mmap(-1, 0, size+2*page, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Skipf("mmap: %v", err)
	}
	t.Cleanup(func() { syscall.Munmap(mem) })
	if err := syscall.Mprotect(mem[:page], syscall.PROT_NONE); err != nil {
		t.Skipf("mprotect: %v", err)
	}
	if err := syscall.Mprotect(mem[page+size:], syscall.PROT_NONE); err != nil {
		t.Skipf("mprotect: %v", err)
	}
	if atEnd {
		return mem[page+size-n : page+size : page+size]
	}
	return mem[page : page+n : page+n]
}

func guardedF32(t *testing.T, n int, atEnd bool) []float32 {
	b := guarded(t, 4*n, atEnd)
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), n)
}

// TestNoOutOfBounds runs every kernel on buffers that end (or start) at an
// inaccessible page: the assembly must read and write only inside the
// slices it was given.
func TestNoOutOfBounds(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	for _, atEnd := range []bool{true, false} {
		for _, k := range []int{32, 64, 96, 4096} {
			nb := k / 32
			for _, f := range families {
				for _, shape := range [][2]int{{1, 1}, {3, 1}, {5, 2}, {7, 3}, {9, 4}, {2, 5}, {13, 8}, {8, 1}, {16, 3}, {12, 4}, {17, 9}} {
					rows, n := shape[0], shape[1]
					x := guardedF32(t, n*k, atEnd)
					for i := range x {
						x[i] = float32(rng.NormFloat64())
					}
					a := guarded(t, n*nb*34, atEnd)
					for i := 0; i < n; i++ {
						QuantizeActivations(a[i*nb*34:(i+1)*nb*34], x[i*k:(i+1)*k])
					}
					w := guarded(t, rows*nb*f.wbb, atEnd)
					for r := 0; r < rows; r++ {
						f.quantize(w[r*nb*f.wbb:(r+1)*nb*f.wbb], x[:k])
					}
					out := guardedF32(t, n*rows, atEnd)
					f.mat(k, rows, w, n, a, nb*34, out, rows)
					for _, m := range asmMats(f) {
						m.mat(nb, rows, w, n, a, nb*34, out, rows)
					}
					if haveAsm {
						_ = f.dotAsm(nb, w[(rows-1)*nb*f.wbb:], a[(n-1)*nb*34:])
					}
					_ = f.dot(k, w[(rows-1)*nb*f.wbb:], a[(n-1)*nb*34:])
				}
			}
			for _, m := range []int{1, 7, 8, 9, 31, 4096} {
				src := guarded(t, 2*m, atEnd)
				dst := guardedF32(t, m, atEnd)
				DecodeF16(dst, src)
				DecodeBF16(dst, src)
			}
		}
	}
}
