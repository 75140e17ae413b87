//go:build !amd64 || purego

package engine

// prefetchRuns is a hint only; without the assembly there is none.
func prefetchRuns(p []byte, stride, rows, span int) {}
