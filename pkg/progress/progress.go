// Package progress logs how far a long operation has come: at most once per
// interval while it runs, and once when it ends with the time it took. An
// operator watching a large model load or a pool recover with many agents
// sees it move; an operation that finishes within the interval logs only its
// end.
package progress

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultInterval is how often a running operation reports.
const DefaultInterval = 2 * time.Second

// Reporter reports one operation. Add may be called from many goroutines.
type Reporter struct {
	log   *slog.Logger
	msg   string
	unit  string
	total int64
	every time.Duration
	start time.Time
	done  atomic.Int64

	mu   sync.Mutex
	last time.Time
}

// New starts reporting msg, an operation of total units (bytes, blocks,
// agents; 0 when unknown). A nil log reports nothing.
func New(log *slog.Logger, msg string, total int64, unit string) *Reporter {
	now := time.Now()
	return &Reporter{log: log, msg: msg, unit: unit, total: total, every: DefaultInterval, start: now, last: now}
}

// Add counts n more units done and logs the progress if the interval has
// passed since the last report.
func (r *Reporter) Add(n int64) {
	d := r.done.Add(n)
	if r.log == nil {
		return
	}
	now := time.Now()
	r.mu.Lock()
	if now.Sub(r.last) < r.every {
		r.mu.Unlock()
		return
	}
	r.last = now
	r.mu.Unlock()
	attrs := []any{"done", d, "unit", r.unit, "elapsed", now.Sub(r.start).Round(time.Millisecond)}
	if r.total > 0 {
		frac := float64(d) / float64(r.total)
		attrs = append(attrs, "total", r.total, "percent", int(100*frac))
		if frac > 0 {
			eta := time.Duration(float64(now.Sub(r.start)) * (1 - frac) / frac)
			attrs = append(attrs, "eta", eta.Round(time.Second))
		}
	}
	r.log.Info(r.msg, attrs...)
}

// Done logs the end of the operation with the time it took and attrs.
func (r *Reporter) Done(attrs ...any) {
	if r.log == nil {
		return
	}
	r.log.Info(r.msg+" done", append([]any{"took", time.Since(r.start).Round(time.Millisecond), r.unit, r.done.Load()}, attrs...)...)
}
