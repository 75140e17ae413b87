package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/poolwire"
	"github.com/semantic-kv/semantic/services/blockpool/pool"
	"github.com/semantic-kv/semantic/services/blockpool/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

type benchEnv struct {
	p     *pool.Pool
	conns []*grpc.ClientConn
	stop  func()
}

func newBench(b *testing.B, sp kvspec.Spec, capacity, conns int) *benchEnv {
	p, err := pool.Open(pool.Options{Dir: b.TempDir(), Capacity: capacity, Spec: &sp, NoSync: true, MaxTTL: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	gs := grpc.NewServer(poolwire.ServerOptions()...)
	server.New(p, "bench", nil).Register(gs)
	go gs.Serve(ln)
	e := &benchEnv{p: p}
	for range conns {
		c, err := grpc.NewClient(ln.Addr().String(),
			append(poolwire.ClientOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
		if err != nil {
			b.Fatal(err)
		}
		e.conns = append(e.conns, c)
	}
	e.stop = func() {
		for _, c := range e.conns {
			c.Close()
		}
		gs.Stop()
		p.Close()
	}
	return e
}

// BenchmarkGRPCLeaseRelease: Lease+Release round trips over loopback TCP with
// 1, 8 and 64 concurrent clients (one connection each), reporting pairs per
// second and the p50/p99 latency of one pair.
func BenchmarkGRPCLeaseRelease(b *testing.B) {
	for _, clients := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			e := newBench(b, spec, 4096, clients)
			defer e.stop()
			ctx := context.Background()
			lat := make([][]time.Duration, clients)
			var wg sync.WaitGroup
			var next sync.Mutex
			issued := 0
			b.ResetTimer()
			start := time.Now()
			for c := range clients {
				cl := blockpoolv1.NewBlockPoolServiceClient(e.conns[c])
				wg.Go(func() {
					for {
						next.Lock()
						if issued >= b.N {
							next.Unlock()
							return
						}
						issued++
						next.Unlock()
						t0 := time.Now()
						l, err := cl.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: "a", Count: 4, ModelTag: tag})
						if err != nil {
							b.Error(err)
							return
						}
						if _, err := cl.Release(ctx, &blockpoolv1.ReleaseRequest{Holder: "s", LeaseId: l.LeaseId, Epoch: l.Epoch}); err != nil {
							b.Error(err)
							return
						}
						lat[c] = append(lat[c], time.Since(t0))
					}
				})
			}
			wg.Wait()
			el := time.Since(start)
			all := slices.Concat(lat...)
			slices.Sort(all)
			if len(all) > 0 {
				b.ReportMetric(float64(len(all))/el.Seconds(), "pairs/s")
				b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
			}
		})
	}
}

func specOf(blockBytes int) kvspec.Spec {
	// 16 tokens x 8 heads x 32 dims x fp16 = 8 KiB per layer section pair half.
	layers := blockBytes / (2 * 16 * 8 * 32 * 2)
	return kvspec.Spec{Layers: layers, KVHeads: 8, HeadDim: 32, TokensPerBlock: 16, DType: kvspec.DTypeFloat16, ModelTag: tag}
}

// BenchmarkGetBlocks streams blocks held in the memory tier over loopback TCP
// (8 blocks per call, 4 MiB chunks), beside BenchmarkRawTCP of the same sizes.
func BenchmarkGetBlocks(b *testing.B) {
	for _, size := range []int{16 << 10, 256 << 10, 2 << 20} {
		b.Run(fmt.Sprintf("block=%dKiB", size>>10), func(b *testing.B) {
			sp := specOf(size)
			if sp.BlockBytes() != size {
				b.Fatal("spec size", sp.BlockBytes())
			}
			const n = 8
			e := newBench(b, sp, 64, 1)
			defer e.stop()
			ctx := context.Background()
			c := blockpoolv1.NewBlockPoolServiceClient(e.conns[0])
			l, err := c.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: "a", Count: n, ModelTag: tag})
			if err != nil {
				b.Fatal(err)
			}
			data := make([]byte, size)
			ids := make([]uint32, n)
			for i := range n {
				ids[i] = l.Blocks[i].BlockId
				h := kvspec.Hash{byte(i)}
				w, err := e.p.BeginWrite(ctx, l.LeaseId, l.Epoch, "s", pool.WriteHeader{BlockID: ids[i], Hash: h, TokenCount: 16, Checksum: kvspec.Checksum(data), Size: int64(size)})
				if err != nil {
					b.Fatal(err)
				}
				w.Write(data)
				if err := w.Commit(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(n * size))
			b.ResetTimer()
			for b.Loop() {
				st, err := c.GetBlocks(ctx, &blockpoolv1.GetBlocksRequest{Holder: "s", LeaseId: l.LeaseId, Epoch: l.Epoch, BlockIds: ids, ChunkBytes: poolwire.MaxChunkBytes})
				if err != nil {
					b.Fatal(err)
				}
				got := 0
				for {
					m, err := st.Recv()
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					got += len(m.Data)
				}
				if got != n*size {
					b.Fatal("short read", got)
				}
			}
		})
	}
}

// BenchmarkRawTCP is the baseline: the same bytes copied over a loopback TCP
// connection with no framing, measured in the same run.
func BenchmarkRawTCP(b *testing.B) {
	for _, size := range []int{16 << 10, 256 << 10, 2 << 20} {
		b.Run(fmt.Sprintf("block=%dKiB", size>>10), func(b *testing.B) {
			const n = 8
			ln, _ := net.Listen("tcp", "127.0.0.1:0")
			defer ln.Close()
			go func() {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				defer conn.Close()
				buf := make([]byte, size)
				var req [1]byte
				for {
					if _, err := io.ReadFull(conn, req[:]); err != nil {
						return
					}
					for range n {
						if _, err := conn.Write(buf); err != nil {
							return
						}
					}
				}
			}()
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			buf := make([]byte, 1<<20)
			b.SetBytes(int64(n * size))
			for b.Loop() {
				conn.Write([]byte{1})
				if _, err := io.CopyBuffer(io.Discard, io.LimitReader(conn, int64(n*size)), buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
