// Package node opens a complete block-pool node from a config: the pool (bbolt
// and block files in a data directory, lease-expiry loop) and its gRPC
// service. The blockpool binary uses it, and so does a scheduler that embeds
// the pool in-process.
package node

import (
	"errors"
	"log/slog"
	"time"

	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/poolwire"
	"github.com/semantic-kv/semantic/services/blockpool/pool"
	"github.com/semantic-kv/semantic/services/blockpool/server"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
)

// Config configures a node. Zero values fall back to defaults.
type Config struct {
	// DataDir holds pool.db and the blocks/ folder (required).
	DataDir string
	// NodeID names the node; default: the stored one, else derived from DataDir
	// (and persisted in bbolt's meta).
	NodeID string
	// CapacityBlocks is the number of blocks; 0: the stored capacity, else 1024.
	CapacityBlocks int
	// MaxCapacityBlocks bounds CapacityBlocks and Reconfigure (0: pool.DefaultMaxCapacity).
	MaxCapacityBlocks int
	// MaxAgents and MaxAgentBytes bound agent records and their bytes
	// (0: pool.DefaultMaxAgents, pool.DefaultMaxAgentBytes).
	MaxAgents     int
	MaxAgentBytes int64
	// MemoryBudgetBytes and DiskBudgetBytes bound payload bytes per tier (0 = unlimited;
	// a negative MemoryBudgetBytes keeps no payload in memory, see pool.Options).
	MemoryBudgetBytes, DiskBudgetBytes int64
	// Spec is optional: if nil, the stored spec applies, or none until the
	// first Reconfigure. A spec that differs from the stored one drops every
	// stored block and agent.
	Spec *kvspec.Spec
	// DefaultTTL and MaxTTL bound lease TTLs (defaults 30s and 10m).
	DefaultTTL, MaxTTL time.Duration
	Logger             *slog.Logger
	// MeterProvider receives the semantic.blockpool.* metrics; nil: no-op.
	MeterProvider metric.MeterProvider
	// Version is reported by GetPoolInfo.
	Version string
	// RequireIdentity: every BlockPoolService call needs a verified client
	// certificate, is authorized by its groups, and leases are bound to it
	// (server.RequireIdentity). The gRPC server the node is registered on
	// must verify client certificates (the binary sets this exactly when
	// --tls-client-ca is given); without that every call is refused.
	RequireIdentity bool
}

// Node is an open block-pool node.
type Node struct {
	pool *pool.Pool
	srv  *server.Server
}

// Open opens the pool in cfg.DataDir: recovers agents and blocks, bumps the
// epoch, starts the lease-expiry loop.
func Open(cfg Config) (*Node, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("blockpool node: DataDir is required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p, err := pool.Open(pool.Options{
		Dir: cfg.DataDir, NodeID: cfg.NodeID, Capacity: cfg.CapacityBlocks, MaxCapacity: cfg.MaxCapacityBlocks, Spec: cfg.Spec,
		MaxAgents: cfg.MaxAgents, MaxAgentBytes: cfg.MaxAgentBytes,
		MemoryBudget: cfg.MemoryBudgetBytes, DiskBudget: cfg.DiskBudgetBytes,
		DefaultTTL: cfg.DefaultTTL, MaxTTL: cfg.MaxTTL, Logger: log, MeterProvider: cfg.MeterProvider,
		TenantOf: tenantOf,
	})
	if err != nil {
		return nil, err
	}
	var opts []server.Option
	if cfg.RequireIdentity {
		opts = append(opts, server.RequireIdentity())
	}
	return &Node{pool: p, srv: server.New(p, cfg.Version, log, opts...)}, nil
}

// tenantOf is the wire's rule for the tenant of a pool agent id ("tenant/agent").
func tenantOf(id string) string {
	t, _ := poolwire.SplitAgentKey(id)
	return t
}

// Register registers semantic.blockpool.v1.BlockPoolService on s. The server
// should accept messages of at least poolwire.MaxChunkBytes plus headers (see
// poolwire.ServerOptions).
func (n *Node) Register(s grpc.ServiceRegistrar) { n.srv.Register(s) }

// Pool is the node's domain core, for in-process use and tests.
func (n *Node) Pool() *pool.Pool { return n.pool }

// Close stops the expiry loop and closes bbolt. Call it after the gRPC server
// has stopped.
func (n *Node) Close() error { return n.pool.Close() }
