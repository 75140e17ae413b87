package gguf

import (
	"fmt"
	"math"
	"os"
)

// Open maps the file at path read-only and parses it (see Parse for what is
// checked). The tensor data stays in the mapping: nothing of it is read
// until used, and nothing is copied into the Go heap. Close the File to
// unmap it. On platforms outside Go's "unix" build constraint (Windows,
// wasm, plan9) the whole file is read into memory instead.
//
// Errors from the file system carry the path (they are *os.PathError);
// errors about the contents wrap ErrBadFile and do not repeat the path, so
// callers should add it.
func Open(path string) (*File, error) {
	m, err := Map(path)
	if err != nil {
		return nil, err
	}
	f := &File{data: m.Data, unmap: m.unmap, size: int64(len(m.Data))}
	if err := f.parse(); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Mapping is a whole file mapped read-only (Map).
type Mapping struct {
	// Data is the file's bytes: the page cache's pages, shared with every
	// process mapping the same file. Writing to it faults.
	Data  []byte
	unmap func([]byte) error
}

// Close releases the mapping; Data must not be used after.
func (m *Mapping) Close() error {
	data, unmap := m.Data, m.unmap
	m.Data, m.unmap = nil, nil
	if unmap != nil && len(data) > 0 {
		return unmap(data)
	}
	return nil
}

// Map maps the regular file at path read-only and shared (reads it into
// memory where the platform has no mmap, as Open does). Open uses it for
// GGUF files; the llama2.c checkpoint loader uses it so that float32
// weights are read where they lie instead of copied.
func Map(path string) (*Mapping, error) {
	osf, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer osf.Close()
	fi, err := osf.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("gguf: %s is not a regular file", path)
	}
	size := fi.Size()
	if size > math.MaxInt {
		return nil, fmt.Errorf("gguf: %s is too large to map (%d bytes)", path, size)
	}
	m := &Mapping{}
	if size > 0 { // an empty mapping is an error; parsers report the truncation
		if m.Data, m.unmap, err = mapFile(osf, int(size)); err != nil {
			return nil, fmt.Errorf("gguf: mapping %s: %w", path, err)
		}
	}
	return m, nil
}
