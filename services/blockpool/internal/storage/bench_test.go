package storage

import (
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	storagev1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/storage/v1"
	bolt "go.etcd.io/bbolt"
)

// BenchmarkCommit measures durable (fsync) agent commits per second from
// concurrent writers, with db.Batch (concurrent commits share one fsync) and
// with db.Update (one fsync each).
func BenchmarkCommit(b *testing.B) {
	for _, mode := range []string{"batch", "update"} {
		for _, writers := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("%s/writers=%d", mode, writers), func(b *testing.B) {
				db, _, err := Open(filepath.Join(b.TempDir(), "pool.db"), Options{})
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				rec := &storagev1.AgentValue{ModelTag: "m", TokenIds: make([]uint32, 512), BlockHashes: make([][]byte, 32)}
				for i := range rec.BlockHashes {
					rec.BlockHashes[i] = make([]byte, 32)
				}
				var n atomic.Int64
				b.ResetTimer()
				start := time.Now()
				var wg sync.WaitGroup
				for w := range writers {
					wg.Go(func() {
						for {
							i := n.Add(1)
							if i > int64(b.N) {
								return
							}
							fn := func(tx *bolt.Tx) error {
								v := &storagev1.AgentValue{AgentId: fmt.Sprintf("agent-%d-%d", w, i%100), ModelTag: rec.ModelTag,
									TokenIds: rec.TokenIds, BlockHashes: rec.BlockHashes}
								return PutAgent(tx, v)
							}
							if mode == "batch" {
								err = db.Batch(fn)
							} else {
								err = db.Update(fn)
							}
							if err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "commits/s")
			})
		}
	}
}
