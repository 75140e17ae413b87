//go:build !unix

package gguf

import (
	"io"
	"os"
)

// mapSupported reports whether Open maps files (rather than reading them).
const mapSupported = false

// mapFile reads the whole file into memory: this platform has no mmap in
// golang.org/x/sys/unix. The tensor data is then in the Go heap, which costs
// the file's size in memory and the time to read it.
func mapFile(f *os.File, size int) ([]byte, func([]byte) error, error) {
	data := make([]byte, size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, nil, err
	}
	return data, nil, nil
}
