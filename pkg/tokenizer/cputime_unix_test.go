//go:build unix

package tokenizer

import (
	"syscall"
	"time"
)

// cpuTime is the CPU time (user + system) this process has used so far, for
// benchmark metrics that a loaded, shared machine does not distort as much
// as wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
