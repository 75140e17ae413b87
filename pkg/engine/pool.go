package engine

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// workerPool runs the parallel regions of a step on helper goroutines that
// stay alive between regions. A decode step is some fifty regions of 50-400
// µs each (one per matrix product and attention); starting a goroutine for
// each and waking a parked thread costs tens of µs a region, which is why
// the helpers spin briefly after a region before parking, and park before
// they exit. They exit after poolIdle without work, so an idle or dropped
// engine holds no goroutines.
//
// Regions are started by one goroutine at a time (Step is not concurrent).
type workerPool struct {
	mu    sync.Mutex
	alive []bool          // per helper (index 0, the caller, unused)
	wake  []chan struct{} // per helper, buffered 1: a region may have started
	cur   atomic.Pointer[region]
}

// region is one parallel region: helpers 1..nw-1 each run fn once.
type region struct {
	fn      func(w int)
	nw      int
	pending atomic.Int64 // helpers that have not finished fn
}

const (
	// poolSpin is the checks of cur a helper makes before parking: about
	// 250 µs. Between regions and between steps the caller runs serial
	// work (norms, logits copy, the batch loop's sampling and events) for
	// tens to hundreds of µs; a helper that parked in the meantime must be
	// woken through the scheduler, which cost 10-17% of batch-1 decode
	// with 2,000 checks (5 µs): 121-134 against 142-148 tok/s on the 42M
	// float32 model (docs/perf/engine.md).
	poolSpin = 100000
	poolIdle = 20 * time.Millisecond // parked this long without work: exit
)

func newWorkerPool(workers int) *workerPool {
	p := &workerPool{alive: make([]bool, workers), wake: make([]chan struct{}, workers)}
	for i := range p.wake {
		p.wake[i] = make(chan struct{}, 1)
	}
	p.cur.Store(&region{})
	return p
}

// run calls fn(w) for w in [0, nw): w = 0 on the calling goroutine, the
// others on helpers, and returns when all have returned.
func (p *workerPool) run(nw int, fn func(w int)) {
	if nw <= 1 {
		fn(0)
		return
	}
	r := &region{fn: fn, nw: nw}
	r.pending.Store(int64(nw - 1))
	p.mu.Lock()
	prev := p.cur.Load()
	p.cur.Store(r)
	for w := 1; w < nw; w++ {
		if !p.alive[w] {
			p.alive[w] = true
			go p.helper(w, prev)
			continue
		}
		select {
		case p.wake[w] <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
	p.mu.Unlock()
	fn(0)
	for i := 0; r.pending.Load() > 0; i++ {
		if i%64 == 63 {
			runtime.Gosched()
		}
	}
}

// helper runs every region after seen that includes it, then spins, parks,
// and exits when no region comes.
func (p *workerPool) helper(w int, seen *region) {
	timer := time.NewTimer(poolIdle)
	defer timer.Stop()
	for {
		if r := p.cur.Load(); r != seen {
			seen = r
			if w < r.nw {
				r.fn(w)
				r.pending.Add(-1)
			}
			continue
		}
		spun := false
		for i := 0; i < poolSpin; i++ {
			if p.cur.Load() != seen {
				spun = true
				break
			}
			if i%64 == 63 {
				runtime.Gosched()
			}
		}
		if spun {
			continue
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(poolIdle)
		select {
		case <-p.wake[w]:
		case <-timer.C:
			// Exit unless a region started meanwhile: run starts regions
			// under mu and starts a new helper for a slot marked dead.
			p.mu.Lock()
			if p.cur.Load() != seen {
				p.mu.Unlock()
				continue
			}
			p.alive[w] = false
			p.mu.Unlock()
			return
		}
	}
}
