package progress

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/semantic-kv/semantic/pkg/testproc"
)

func TestReportsAtMostEveryIntervalAndAtTheEnd(t *testing.T) {
	var buf testproc.SyncBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	r := New(log, "checking", 1000, "bytes")
	r.every = time.Hour // nothing is due while the adds run
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 250 {
				r.Add(1)
			}
		}()
	}
	wg.Wait()
	r.mu.Lock()
	r.last = time.Now().Add(-2 * time.Hour) // the interval has passed
	r.mu.Unlock()
	r.Add(0) // a report with the count
	r.Add(0) // within the interval again: nothing
	r.Done("files", 3)
	out := buf.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "done=1000") || !strings.Contains(lines[0], "percent=100") {
		t.Fatalf("reports:\n%s", out)
	}
	if !strings.Contains(lines[1], `msg="checking done"`) || !strings.Contains(lines[1], "bytes=1000") || !strings.Contains(lines[1], "files=3") || !strings.Contains(lines[1], "took=") {
		t.Fatalf("end report: %s", lines[1])
	}
	New(nil, "quiet", 1, "x").Add(1) // a nil logger reports nothing, never panics
}
