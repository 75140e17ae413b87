// Command blockpool serves semantic.blockpool.v1.BlockPoolService: a pool of
// KV blocks with leases, a content-addressed cache, per-agent records in bbolt
// and block files on disk.
//
//	blockpool --listen :50061 --data-dir DIR --capacity-blocks N \
//	    --memory-budget BYTES --disk-budget BYTES [--lease-ttl 30s --lease-max-ttl 10m]
//	    [--max-capacity-blocks N --max-agents N --max-agent-bytes BYTES]
//	    [--spec-layers L --spec-kv-heads H --spec-head-dim D --spec-tokens-per-block T --spec-dtype float16 --spec-model-tag TAG]
//
// Without spec flags the stored spec applies, or the first scheduler sets it
// with Reconfigure.
//
// With --tls-client-ca (and --tls-cert, --tls-key) the pool authorizes every
// BlockPoolService call by the caller's client certificate: schedulers
// (group semantic:scheduler) may lease, write, read, commit, list and delete,
// and configure a pool that has no spec yet; reconfiguring a configured pool
// needs an admin certificate (semantic:admin). Leases are bound to the
// certificate that took them. Without it the pool accepts any client.
package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/semantic-kv/semantic/pkg/app"
	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/poolwire"
	"github.com/semantic-kv/semantic/services/blockpool/node"
)

func main() {
	var (
		capacity, maxCapacity   int
		memBudget, diskBudget   int64
		maxAgents               int
		maxAgentBytes           int64
		ttl, maxTTL             time.Duration
		layers, heads, dim, tpb int
		dtype, modelTag         string
	)
	app.Main(app.Binary{
		Name:                 "blockpool",
		DefaultListen:        ":50061",
		DefaultMetricsListen: ":9461",
		Flags: func(fs *flag.FlagSet) {
			fs.IntVar(&capacity, "capacity-blocks", 0, "pool capacity in blocks (0: the stored capacity, else 1024)")
			fs.IntVar(&maxCapacity, "max-capacity-blocks", 0, "largest capacity --capacity-blocks or a Reconfigure may set (0: 262144)")
			fs.IntVar(&maxAgents, "max-agents", 0, "most agent records kept; beyond it the least recently used idle ones are dropped (0: 100000)")
			fs.Int64Var(&maxAgentBytes, "max-agent-bytes", 0, "most bytes of agent records (token ids, hashes) kept in memory (0: 256 MiB)")
			fs.Int64Var(&memBudget, "memory-budget", 1<<30, "bytes of block payloads kept in memory (0 = unlimited, -1 = none: blocks are read from their files)")
			fs.Int64Var(&diskBudget, "disk-budget", 0, "bytes of block files on disk (0 = unlimited)")
			fs.DurationVar(&ttl, "lease-ttl", 30*time.Second, "default lease time to live")
			fs.DurationVar(&maxTTL, "lease-max-ttl", 10*time.Minute, "longest lease time to live a client may ask for")
			fs.IntVar(&layers, "spec-layers", 0, "cache spec: layers (set all spec flags, or none)")
			fs.IntVar(&heads, "spec-kv-heads", 0, "cache spec: KV heads per layer")
			fs.IntVar(&dim, "spec-head-dim", 0, "cache spec: elements per head")
			fs.IntVar(&tpb, "spec-tokens-per-block", 0, "cache spec: token positions per block")
			fs.StringVar(&dtype, "spec-dtype", "float16", "cache spec: element type, "+kvspec.DTypeNames())
			fs.StringVar(&modelTag, "spec-model-tag", "", "cache spec: model tag")
		},
		// Transport tuning and the copy-avoiding codec for block payloads.
		ServerOptions: poolwire.ServerOptions(),
		Start: func(ctx context.Context, rt *app.Runtime) (func(context.Context) error, error) {
			var spec *kvspec.Spec
			if modelTag != "" || layers != 0 {
				d, err := kvspec.ParseDType(dtype)
				if err != nil {
					return nil, fmt.Errorf("--spec-dtype: %w", err)
				}
				s := kvspec.Spec{Layers: layers, KVHeads: heads, HeadDim: dim, TokensPerBlock: tpb, DType: d, ModelTag: modelTag}
				if err := s.Validate(); err != nil {
					return nil, fmt.Errorf("spec flags: %w", err)
				}
				spec = &s
			}
			n, err := node.Open(node.Config{
				DataDir: rt.Common.DataDir, NodeID: rt.Common.NodeID, CapacityBlocks: capacity, MaxCapacityBlocks: maxCapacity,
				MaxAgents: maxAgents, MaxAgentBytes: maxAgentBytes,
				MemoryBudgetBytes: memBudget, DiskBudgetBytes: diskBudget, Spec: spec,
				DefaultTTL: ttl, MaxTTL: maxTTL, Logger: rt.Logger, MeterProvider: rt.MeterProvider, Version: app.Version,
				RequireIdentity: rt.Common.TLSClientCA != "",
			})
			if err != nil {
				return nil, err
			}
			if rt.Common.TLSClientCA == "" {
				rt.Logger.Warn("block pool accepts any client: whoever can reach --listen can read, overwrite and delete agents and reconfigure the pool; " +
					"turn on mutual TLS with --tls-cert, --tls-key and --tls-client-ca (certificates from `semantic-auth certs`)")
			}
			n.Register(rt.GRPC)
			return func(context.Context) error { return n.Close() }, nil
		},
	})
}
