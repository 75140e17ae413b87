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
	var data []byte
	var unmap func([]byte) error
	if size > 0 { // an empty mapping is an error; Parse reports the truncation
		if data, unmap, err = mapFile(osf, int(size)); err != nil {
			return nil, fmt.Errorf("gguf: mapping %s: %w", path, err)
		}
	}
	f := &File{data: data, unmap: unmap, size: int64(len(data))}
	if err := f.parse(); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
