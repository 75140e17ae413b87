// Package poolnode is the seam between the scheduler's service and the block
// pool: Node (the PoolNode of issue 12) is what a request needs of one pool
// node, Set is the nodes an agent can be served from, and Lease and Writer
// are a granted lease and a block upload through it.
//
// Implementations:
//
//   - poolclient (Cluster.PoolNodes) is the remote one, over gRPC. The
//     embedded pool is the same code over pkg/inproc, a
//     grpc.ClientConnInterface that calls the pool's own handlers
//     (validation included) in process: there is no second, in-process
//     implementation to keep in step with the first.
//   - Instrument decorates a Set with the pool calls' spans and metrics, so
//     that the service's own code has none.
//   - poolnodetest.Fake is an in-memory node for unit tests of the service,
//     enforcing what the service relies on the real node to enforce.
//
// Domain types are used where converting is cheap: block hashes are
// kvspec.Hash (LeaseRequest.Pin, CommitRequest.Hashes), agent ids and token
// ids are plain values. Where a conversion would only copy a message field
// by field, the generated message is returned as it is: the lookup's answer
// (blockpoolv1.LookupAgentResponse), a lease's blocks
// (blockpoolv1.LeasedBlock), block headers (blockpoolv1.BlockHeader), an
// agent's record (blockpoolv1.AgentRecord) and a page of agents
// (blockpoolv1.ListAgentsRequest/Response).
//
// Errors are a node's gRPC statuses, passed on (the service maps them in its
// one toStatus), or the domain errors below.
package poolnode

import (
	"context"
	"errors"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	"github.com/semantic-kv/semantic/pkg/kvspec"
)

// ErrNoHealthyNode is returned when no pool node can take a request.
var ErrNoHealthyNode = errors.New("no healthy block-pool node")

// ErrConflict is what Lease.Commit returns when the agent's record changed
// since the lookup (committed elsewhere, or deleted): the turn is not saved,
// and its written blocks are still good cache content.
var ErrConflict = errors.New("agent record changed since the lookup")

// ErrDataLoss is what a block transfer that came back damaged (short, or
// data before its header) wraps.
var ErrDataLoss = errors.New("block transfer damaged")

// Set is the pool nodes a scheduler knows. Each call returns a new slice,
// which the caller may change (Instrument wraps its elements in place).
type Set interface {
	// Nodes returns every known node (healthy or not) in a stable order.
	Nodes() []Node
	// Order returns every node in the agent's rendezvous order: the first
	// is its home. agentKey is the agent's pool id (poolwire.AgentKey).
	Order(agentKey string) []Node
}

// Node is one block-pool node as a request sees it.
type Node interface {
	// ID is the node's id once known, else "".
	ID() string
	// Address is how the node is reached (a host:port, or "embedded").
	Address() string
	// Name is the node's id if known, else its address: what usage reports.
	Name() string
	// Healthy reports whether the node serves and has the scheduler's spec.
	Healthy() bool
	// CapacityBlocks is the node's capacity in blocks (0: not known yet).
	CapacityBlocks() int

	// Lookup finds the longest cached prefix of req.Tokens for the agent.
	Lookup(ctx context.Context, req LookupRequest) (*blockpoolv1.LookupAgentResponse, error)
	// Lease takes req.Count blocks: the leading pinned hashes that are
	// cached (hits, stopping at the first miss), fresh blocks for the rest;
	// all or nothing. The lease is kept alive until Release.
	Lease(ctx context.Context, req LeaseRequest) (Lease, error)
	// GetAgent returns the agent's record; NOT_FOUND when it has none.
	GetAgent(ctx context.Context, agentKey string) (*blockpoolv1.AgentRecord, error)
	// ListAgents returns a page of the node's agents.
	ListAgents(ctx context.Context, req *blockpoolv1.ListAgentsRequest) (*blockpoolv1.ListAgentsResponse, error)
	// DeleteAgent drops the agent's record; NOT_FOUND when it has none.
	DeleteAgent(ctx context.Context, agentKey string) error
}

// LookupRequest asks a node for the cached prefix of an agent's context.
type LookupRequest struct {
	AgentKey string
	Tokens   []uint32
	ModelTag string
	Salt     string
	// Realigned marks a lookup of a context realigned with the agent's
	// stored ids (service/realign.go). The node never sees it: it is a
	// note for instrumentation (the lookup span's "realigned" attribute).
	Realigned bool
}

// LeaseRequest asks for blocks.
type LeaseRequest struct {
	// Holder names the scheduler: every later call through the lease
	// presents it, and the node refuses a call that does not.
	Holder   string
	AgentKey string
	Count    int
	// Pin are the hashes of the cached blocks to reuse, in chain order.
	Pin      []kvspec.Hash
	ModelTag string
}

// CommitRequest replaces the agent's record with the blocks of a context.
type CommitRequest struct {
	AgentKey string
	ModelTag string
	Salt     string
	// Hashes are the chain hashes of Tokens' blocks (the tail included),
	// each cached on the node or written through the lease.
	Hashes []kvspec.Hash
	Tokens []uint32
	// ExpectedVersion is the record's version the lookup saw (0: none); a
	// record changed meanwhile makes the commit fail with ABORTED.
	ExpectedVersion     uint64
	TenantMaxAgents     uint32
	TenantMaxAgentBytes uint64
}

// Lease is a granted lease. Its methods present the lease's id, epoch and
// holder to the node; after Release none may be called.
type Lease interface {
	ID() uint64
	// Blocks are the leased blocks: the Hits first (with their hashes),
	// then fresh ones.
	Blocks() []*blockpoolv1.LeasedBlock
	Hits() int
	// ReadBlocks streams the payloads of filled blocks of the lease,
	// calling fn per block with its header and whole payload, a fresh slice
	// that fn may keep.
	ReadBlocks(ctx context.Context, ids []uint32, fn func(h *blockpoolv1.BlockHeader, payload []byte) error) error
	// NewWriter opens an upload of blocks into the lease's fresh blocks.
	NewWriter(ctx context.Context) (Writer, error)
	// Commit replaces the agent's record through this lease; ErrConflict
	// (wrapped) when the record is no longer at req.ExpectedVersion.
	Commit(ctx context.Context, req CommitRequest) error
	// Release ends the lease, keeping its written blocks as cache content
	// when commit is set, and stops renewing it. It has its own deadline,
	// so that a cancelled request still frees its blocks.
	Release(commit bool) error
}

// Writer uploads blocks through a lease.
type Writer interface {
	// Write sends one block: its header and payload.
	Write(h *blockpoolv1.BlockHeader, payload []byte) error
	// Close finishes the upload: the blocks are durable when it returns
	// without error.
	Close() error
}

// HashesToBytes converts block hashes for the wire.
func HashesToBytes(hs []kvspec.Hash) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}
