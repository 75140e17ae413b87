//go:build unix

package gguf

import (
	"os"

	"golang.org/x/sys/unix"
)

// mapSupported reports whether Open maps files (rather than reading them).
const mapSupported = true

// mapFile maps size bytes of f read-only and shared: the pages are the page
// cache's, so several processes serving the same model share one copy, and
// the file descriptor can be closed at once.
func mapFile(f *os.File, size int) ([]byte, func([]byte) error, error) {
	data, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return data, unix.Munmap, nil
}
