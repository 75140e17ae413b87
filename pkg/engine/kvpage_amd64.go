//go:build !purego

package engine

//go:noescape
func prefetchRunsAsm(rows int, p *byte, stride, span int)

// prefetchRuns asks the CPU to start loading rows runs of span bytes, run r
// at p[r*stride:] (prefetches never fault, and the caller passes only runs
// inside p). Raw pages are read a head's slice of each row at a time, a
// pattern the hardware prefetchers miss: without this the decoder waits on
// memory at every row.
func prefetchRuns(p []byte, stride, rows, span int) {
	if rows > 0 && span > 0 && len(p) >= (rows-1)*stride+span {
		prefetchRunsAsm(rows, &p[0], stride, span)
	}
}
