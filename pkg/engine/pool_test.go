package engine

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// TestWorkerPool: every region runs fn exactly once per worker index, with
// regions of changing width back to back and after the helpers have parked
// or exited; idle helpers exit, so a dropped engine leaves no goroutines.
func TestWorkerPool(t *testing.T) {
	base := runtime.NumGoroutine()
	p := newWorkerPool(4)
	var calls [4]atomic.Int64
	want := [4]int64{}
	for i := 0; i < 3000; i++ {
		nw := 1 + i%4
		if i%500 == 499 {
			time.Sleep(2 * poolIdle) // helpers exit; the next region restarts them
		}
		var seen [4]atomic.Int32
		p.run(nw, func(w int) {
			seen[w].Add(1)
			calls[w].Add(1)
		})
		for w := 0; w < 4; w++ {
			n := seen[w].Load()
			if (w < nw && n != 1) || (w >= nw && n != 0) {
				t.Fatalf("region %d (width %d): worker %d ran %d times", i, nw, w, n)
			}
			if w < nw {
				want[w]++
			}
		}
	}
	for w := range calls {
		if calls[w].Load() != want[w] {
			t.Fatalf("worker %d: %d calls, want %d", w, calls[w].Load(), want[w])
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		t.Fatalf("%d goroutines after the helpers' idle time, %d before", n, base)
	}
}
