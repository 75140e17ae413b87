package quant

import (
	"fmt"
	"testing"
)

// BenchmarkDequantRows: one KV head's slice of a page as the engine reads
// it (16 rows of 2 or 4 blocks out of 256-element rows), in elements/s.
func BenchmarkDequantRows(b *testing.B) {
	const rows, rowElems = 16, 256
	for _, nb := range []int{2, 4} {
		for _, f := range []struct {
			name string
			bb   int
			fn   func([]float32, int, []byte, int, int, int)
		}{{"Q8_0", Q8_0BlockBytes, DequantizeQ8_0Rows}, {"Q4_0", Q4_0BlockBytes, DequantizeQ4_0Rows}, {"F16", 0, nil}} {
			b.Run(fmt.Sprintf("%s/nb=%d", f.name, nb), func(b *testing.B) {
				dst := make([]float32, rows*nb*BlockSize)
				if f.fn == nil {
					src := make([]byte, rows*rowElems*2)
					for i := 0; i < b.N; i++ {
						DecodeF16Rows(dst, nb*BlockSize, src, 2*rowElems, rows, nb*BlockSize)
					}
				} else {
					src := make([]byte, rows*rowElems/BlockSize*f.bb)
					for i := 0; i < b.N; i++ {
						f.fn(dst, nb*BlockSize, src, rowElems/BlockSize*f.bb, rows, nb)
					}
				}
				b.ReportMetric(float64(b.N*len(dst))/b.Elapsed().Seconds()/1e9, "Gelem/s")
			})
		}
	}
}
