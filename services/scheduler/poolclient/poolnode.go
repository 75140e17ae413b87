package poolclient

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	"github.com/semantic-kv/semantic/services/scheduler/poolnode"
)

// This file is the remote implementation of the scheduler's pool seam
// (poolnode.Set, Node, Lease, Writer) over the gRPC client above. It is also
// the embedded pool's: that node is reached over pkg/inproc, a
// grpc.ClientConnInterface that calls its handlers in process (Config.Conns).
// The adapters only change signatures; every call goes through Node.Client
// (specClient) and the keeper exactly as the lower-level API does.

// PoolNodes is the cluster as the service sees it.
func (c *Cluster) PoolNodes() poolnode.Set { return clusterSet{c} }

type clusterSet struct{ c *Cluster }

func (s clusterSet) Nodes() []poolnode.Node                { return asPoolNodes(s.c.Nodes()) }
func (s clusterSet) Order(agentKey string) []poolnode.Node { return asPoolNodes(s.c.Order(agentKey)) }

func asPoolNodes(ns []*Node) []poolnode.Node {
	out := make([]poolnode.Node, len(ns))
	for i, n := range ns {
		out[i] = remoteNode{n}
	}
	return out
}

// remoteNode is a Node as a poolnode.Node: its Lease takes and returns the
// seam's types (the embedded *Node's takes the wire request, for callers
// that speak the wire contract, such as tests planting records).
type remoteNode struct{ *Node }

var _ poolnode.Node = remoteNode{}

// Address is the node's address.
func (n *Node) Address() string { return n.Addr }

// Lookup asks the node for the longest cached prefix of req.Tokens.
func (n *Node) Lookup(ctx context.Context, req poolnode.LookupRequest) (*blockpoolv1.LookupAgentResponse, error) {
	return n.Client.LookupAgent(ctx, &blockpoolv1.LookupAgentRequest{
		AgentId: req.AgentKey, TokenIds: req.Tokens, ModelTag: req.ModelTag, CacheSalt: req.Salt,
	})
}

// GetAgent returns the agent's record (NOT_FOUND: none).
func (n *Node) GetAgent(ctx context.Context, agentKey string) (*blockpoolv1.AgentRecord, error) {
	resp, err := n.Client.GetAgent(ctx, &blockpoolv1.GetAgentRequest{AgentId: agentKey})
	if err != nil {
		return nil, err
	}
	return resp.GetAgent(), nil
}

// ListAgents returns a page of the node's agents.
func (n *Node) ListAgents(ctx context.Context, req *blockpoolv1.ListAgentsRequest) (*blockpoolv1.ListAgentsResponse, error) {
	return n.Client.ListAgents(ctx, req)
}

// DeleteAgent drops the agent's record (NOT_FOUND: none).
func (n *Node) DeleteAgent(ctx context.Context, agentKey string) error {
	_, err := n.Client.DeleteAgent(ctx, &blockpoolv1.DeleteAgentRequest{AgentId: agentKey})
	return err
}

// Lease takes blocks, with the cluster's lease TTL, and keeps them alive.
func (n remoteNode) Lease(ctx context.Context, req poolnode.LeaseRequest) (poolnode.Lease, error) {
	l, err := n.Node.Lease(ctx, &blockpoolv1.LeaseRequest{
		Holder: req.Holder, AgentId: req.AgentKey, Count: uint32(req.Count),
		BlockHashes: poolnode.HashesToBytes(req.Pin), ModelTag: req.ModelTag,
	})
	if err != nil {
		return nil, err
	}
	return remoteLease{l}, nil
}

// remoteLease is a Lease as a poolnode.Lease (ReadBlocks is the Lease's own).
type remoteLease struct{ *Lease }

var _ poolnode.Lease = remoteLease{}

func (l remoteLease) ID() uint64                         { return l.GetLeaseId() }
func (l remoteLease) Blocks() []*blockpoolv1.LeasedBlock { return l.GetBlocks() }
func (l remoteLease) Hits() int                          { return int(l.GetHits()) }

func (l remoteLease) NewWriter(ctx context.Context) (poolnode.Writer, error) {
	w, err := l.Lease.NewWriter(ctx)
	if err != nil {
		return nil, err
	}
	return remoteWriter{w}, nil
}

func (l remoteLease) Release(commit bool) error {
	_, err := l.Lease.Release(commit)
	return err
}

// Commit replaces the agent's record; the lease's id, epoch and holder prove
// that its written blocks are this scheduler's.
func (l remoteLease) Commit(ctx context.Context, req poolnode.CommitRequest) error {
	_, err := l.node.Client.CommitAgent(ctx, &blockpoolv1.CommitAgentRequest{
		LeaseId: l.GetLeaseId(), Epoch: l.GetEpoch(), Holder: l.holder, AgentId: req.AgentKey,
		ModelTag: req.ModelTag, BlockHashes: poolnode.HashesToBytes(req.Hashes), TokenIds: req.Tokens,
		ExpectedVersion: req.ExpectedVersion, CacheSalt: req.Salt,
		TenantMaxAgents: req.TenantMaxAgents, TenantMaxAgentBytes: req.TenantMaxAgentBytes,
	})
	if status.Code(err) == codes.Aborted {
		// The node's ABORTED for a commit is the lost race on the record's
		// version: the domain's ErrConflict, with the node's message.
		return fmt.Errorf("%w: %s", poolnode.ErrConflict, status.Convert(err).Message())
	}
	return err
}

// remoteWriter is a Writer as a poolnode.Writer.
type remoteWriter struct{ *Writer }

func (w remoteWriter) Close() error {
	_, err := w.Writer.Close()
	return err
}
