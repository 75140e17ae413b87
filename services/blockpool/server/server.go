// Package server is the gRPC face of the block pool
// (semantic.blockpool.v1.BlockPoolService): it validates every request at the
// wire level (validate.go), converts between wire and domain types, streams
// payloads, and maps domain errors to status codes in one place (errors.go).
// The limits, spec conversion, codecs and transport options it shares with
// pool clients are in pkg/poolwire; a grpc.Server for it takes
// poolwire.ServerOptions.
package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	"github.com/semantic-kv/semantic/pkg/mtls"
	"github.com/semantic-kv/semantic/pkg/poolwire"
	"github.com/semantic-kv/semantic/pkg/rpcstatus"
	"github.com/semantic-kv/semantic/services/blockpool/pool"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Server implements blockpoolv1.BlockPoolServiceServer over a pool.
type Server struct {
	blockpoolv1.UnimplementedBlockPoolServiceServer
	p       *pool.Pool
	version string
	log     *slog.Logger
	// requireIdentity: every call needs a verified client certificate and
	// is authorized by its groups (authz.go).
	requireIdentity bool
}

// Option changes a Server made by New.
type Option func(*Server)

// RequireIdentity makes every call need a verified client certificate of a
// group allowed to call the method, and binds leases to the certificate's
// identity (authz.go). The gRPC server must verify client certificates
// (mtls.ServerConfig with a client CA): without that no call has an identity
// and every call is refused.
func RequireIdentity() Option { return func(s *Server) { s.requireIdentity = true } }

// New returns a server for p; version is reported by GetPoolInfo.
func New(p *pool.Pool, version string, log *slog.Logger, opts ...Option) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{p: p, version: version, log: log}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Register registers the service on s.
func (s *Server) Register(r grpc.ServiceRegistrar) {
	blockpoolv1.RegisterBlockPoolServiceServer(r, s)
}

func (s *Server) info() *blockpoolv1.GetPoolInfoResponse {
	c := s.p.Counts()
	return &blockpoolv1.GetPoolInfoResponse{
		NodeId: c.NodeID, Spec: poolwire.SpecToProto(c.Spec), CapacityBlocks: uint32(c.Capacity),
		FreeBlocks: uint32(c.Free), LeasedBlocks: uint32(c.Leased), CachedBlocks: uint32(c.Cached),
		MemoryBytes: uint64(c.MemoryBytes), DiskBytes: uint64(c.DiskBytes),
		MemoryBudgetBytes: uint64(c.MemoryBudget), DiskBudgetBytes: uint64(c.DiskBudget),
		Epoch: c.Epoch, ActiveLeases: uint32(c.ActiveLeases), Agents: uint32(c.Agents), Version: s.version,
	}
}

// GetPoolInfo implements the RPC.
func (s *Server) GetPoolInfo(ctx context.Context, _ *blockpoolv1.GetPoolInfoRequest) (*blockpoolv1.GetPoolInfoResponse, error) {
	if err := s.authorize(ctx, methodGetPoolInfo); err != nil {
		return nil, err
	}
	return s.info(), nil
}

// Reconfigure implements the RPC.
func (s *Server) Reconfigure(ctx context.Context, r *blockpoolv1.ReconfigureRequest) (*blockpoolv1.ReconfigureResponse, error) {
	if err := s.authorize(ctx, methodReconfigure); err != nil {
		return nil, err
	}
	spec, err := ValidateReconfigure(r)
	if err != nil {
		return nil, err
	}
	res, err := s.p.ReconfigureIf(ctx, spec, int(r.CapacityBlocks), s.reconfigureAllowed(ctx, spec, int(r.CapacityBlocks)))
	if err != nil {
		return nil, toStatus(err)
	}
	by, _ := mtls.FromContext(ctx) // empty without mTLS
	s.log.Info("pool reconfigured", "spec", spec.String(), "capacity", r.CapacityBlocks,
		"dropped_blocks", res.DroppedBlocks, "dropped_agents", res.DroppedAgents, "by", by.Name)
	return &blockpoolv1.ReconfigureResponse{Info: s.info(), DroppedBlocks: uint32(res.DroppedBlocks), DroppedAgents: uint32(res.DroppedAgents)}, nil
}

// Lease implements the RPC.
func (s *Server) Lease(ctx context.Context, r *blockpoolv1.LeaseRequest) (*blockpoolv1.LeaseResponse, error) {
	if err := s.authorize(ctx, methodLease); err != nil {
		return nil, err
	}
	hs, ttl, err := ValidateLease(r)
	if err != nil {
		return nil, err
	}
	g, err := s.p.Lease(ctx, pool.LeaseRequest{Holder: leaseHolder(ctx, r.Holder), AgentID: r.AgentId, Count: int(r.Count), Hashes: hs, TTL: ttl, ModelTag: r.ModelTag})
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &blockpoolv1.LeaseResponse{LeaseId: g.LeaseID, Epoch: g.Epoch, ExpireTime: timestamppb.New(g.Expire),
		Ttl: durationpb.New(g.TTL), Hits: uint32(g.Hits), Blocks: make([]*blockpoolv1.LeasedBlock, len(g.Blocks))}
	for i, b := range g.Blocks {
		lb := &blockpoolv1.LeasedBlock{BlockId: b.ID, Filled: b.Filled, TokenCount: uint32(b.TokenCount)}
		if b.Filled {
			lb.Hash = b.Hash[:]
		}
		resp.Blocks[i] = lb
	}
	return resp, nil
}

// KeepAlive implements the RPC: one answer per request, until the client
// closes its side or the stream's context ends.
func (s *Server) KeepAlive(stream blockpoolv1.BlockPoolService_KeepAliveServer) error {
	ctx := stream.Context()
	if err := s.authorize(ctx, methodKeepAlive); err != nil {
		return err
	}
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		resp := &blockpoolv1.KeepAliveResponse{LeaseId: r.LeaseId}
		exp, ttl, err := s.p.KeepAlive(ctx, r.LeaseId, r.Epoch, leaseHolder(ctx, r.Holder))
		switch {
		case err == nil:
			resp.Status = blockpoolv1.LeaseStatus_LEASE_STATUS_ACTIVE
			resp.ExpireTime, resp.Ttl = timestamppb.New(exp), durationpb.New(ttl)
		case errors.Is(err, pool.ErrNotFound):
			resp.Status = blockpoolv1.LeaseStatus_LEASE_STATUS_NOT_FOUND
		default:
			return toStatus(err)
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// Release implements the RPC.
func (s *Server) Release(ctx context.Context, r *blockpoolv1.ReleaseRequest) (*blockpoolv1.ReleaseResponse, error) {
	if err := s.authorize(ctx, methodRelease); err != nil {
		return nil, err
	}
	res, err := s.p.Release(ctx, r.LeaseId, r.Epoch, leaseHolder(ctx, r.Holder), r.Commit)
	if err != nil {
		return nil, toStatus(err)
	}
	return &blockpoolv1.ReleaseResponse{FreedBlocks: uint32(res.Freed), CachedBlocks: uint32(res.Cached)}, nil
}

// PutBlocks implements the RPC. Each block is committed (durable) as soon as
// its last byte arrives; a stream that breaks mid-block aborts that block,
// which stays unfilled, and no file is left behind.
func (s *Server) PutBlocks(stream blockpoolv1.BlockPoolService_PutBlocksServer) (err error) {
	ctx := stream.Context()
	var (
		leaseID, epoch uint64
		holder         string
		w              *pool.BlockWrite
		size           uint64
		blocks         uint32
		bytes          uint64
		first          = true
	)
	if err := s.authorize(ctx, methodPutBlocks); err != nil {
		return err
	}
	defer func() {
		if w != nil {
			w.Abort()
		}
	}()
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			if w != nil {
				return rpcstatus.InvalidArgument("data", "stream ended after %d of %d bytes of a block", w.Received(), size)
			}
			return stream.SendAndClose(&blockpoolv1.PutBlocksResponse{BlocksWritten: blocks, BytesWritten: bytes})
		}
		if err != nil {
			return err
		}
		if first {
			if m.LeaseId == 0 {
				return rpcstatus.InvalidArgument("lease_id", "the first message must name the lease")
			}
			leaseID, epoch, holder, first = m.LeaseId, m.Epoch, m.Holder, false
		} else if m.LeaseId != 0 && (m.LeaseId != leaseID || m.Epoch != epoch) || m.Holder != "" && m.Holder != holder {
			return rpcstatus.InvalidArgument("lease_id", "one stream writes through one lease")
		}
		if err := checkChunk(m.Data); err != nil {
			return err
		}
		if h := m.Header; h != nil {
			if w != nil {
				return rpcstatus.InvalidArgument("header", "new block after %d of %d bytes of the previous one", w.Received(), size)
			}
			hash, parent, err := ValidateHeader(h)
			if err != nil {
				return err
			}
			w, err = s.p.BeginWrite(ctx, leaseID, epoch, leaseHolder(ctx, holder), pool.WriteHeader{BlockID: h.BlockId, Hash: hash, Parent: parent,
				TokenCount: int(h.TokenCount), Checksum: h.Checksum, Size: int64(h.Size)})
			if err != nil {
				return toStatus(err)
			}
			size = h.Size
		} else if len(m.Data) > 0 && w == nil {
			return rpcstatus.InvalidArgument("header", "data before a block header")
		}
		if len(m.Data) > 0 {
			if err := w.Write(m.Data); err != nil {
				return toStatus(err)
			}
		}
		if w != nil && uint64(w.Received()) == size {
			err := w.Commit(ctx)
			w = nil
			if err != nil {
				return toStatus(err)
			}
			blocks++
			bytes += size
		}
	}
}

// GetBlocks implements the RPC. Payloads are sent as sub-slices of the
// stored buffer: no copy beyond the one into the wire.
func (s *Server) GetBlocks(r *blockpoolv1.GetBlocksRequest, stream blockpoolv1.BlockPoolService_GetBlocksServer) error {
	ctx := stream.Context()
	if err := s.authorize(ctx, methodGetBlocks); err != nil {
		return err
	}
	chunk, err := ValidateGetBlocks(r, s.p.Counts().Capacity)
	if err != nil {
		return err
	}
	holder := leaseHolder(ctx, r.Holder)
	for _, id := range r.BlockIds {
		d, err := s.p.ReadBlock(ctx, r.LeaseId, r.Epoch, holder, id)
		if err != nil {
			return toStatus(err)
		}
		h := &blockpoolv1.BlockHeader{BlockId: id, Hash: d.Hash[:], TokenCount: uint32(d.TokenCount),
			Checksum: d.Checksum, Size: uint64(len(d.Payload))}
		if !d.Parent.IsZero() {
			h.ParentHash = d.Parent[:]
		}
		// The header travels with the first chunk, so a small block is one
		// message; further data messages are windows on the stored payload.
		msg := &blockpoolv1.GetBlocksResponse{Header: h}
		for off := 0; off < len(d.Payload); off += chunk {
			msg.Data = d.Payload[off:min(off+chunk, len(d.Payload))]
			if err := stream.Send(msg); err != nil {
				return err
			}
			msg = &blockpoolv1.GetBlocksResponse{}
		}
	}
	return nil
}

// CommitAgent implements the RPC.
func (s *Server) CommitAgent(ctx context.Context, r *blockpoolv1.CommitAgentRequest) (*blockpoolv1.CommitAgentResponse, error) {
	if err := s.authorize(ctx, methodCommitAgent); err != nil {
		return nil, err
	}
	hs, err := ValidateCommit(r)
	if err != nil {
		return nil, err
	}
	req := pool.CommitRequest{LeaseID: r.LeaseId, Epoch: r.Epoch, AgentID: r.AgentId, ModelTag: r.ModelTag,
		Salt: r.CacheSalt, Hashes: hs, Tokens: r.TokenIds, ExpectedVersion: r.ExpectedVersion,
		TenantMaxAgents: int(r.TenantMaxAgents), TenantMaxAgentBytes: int64(min(r.TenantMaxAgentBytes, math.MaxInt64))}
	if r.LeaseId != 0 {
		req.Holder = leaseHolder(ctx, r.Holder)
	}
	v, err := s.p.CommitAgent(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	return &blockpoolv1.CommitAgentResponse{Version: v}, nil
}

// LookupAgent implements the RPC.
func (s *Server) LookupAgent(ctx context.Context, r *blockpoolv1.LookupAgentRequest) (*blockpoolv1.LookupAgentResponse, error) {
	if err := s.authorize(ctx, methodLookupAgent); err != nil {
		return nil, err
	}
	if err := ValidateLookup(r); err != nil {
		return nil, err
	}
	res, err := s.p.Lookup(ctx, pool.LookupRequest{AgentID: r.AgentId, Tokens: r.TokenIds, ModelTag: r.ModelTag, Salt: r.CacheSalt})
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &blockpoolv1.LookupAgentResponse{MatchedTokens: uint32(res.MatchedTokens), AgentVersion: res.AgentVersion,
		AgentTokenIds: res.AgentTokens, Source: blockpoolv1.MatchSource(res.Source)}
	for _, b := range res.Blocks {
		resp.Blocks = append(resp.Blocks, &blockpoolv1.CachedBlock{Hash: b.Hash[:], TokenCount: uint32(b.TokenCount), UsableTokens: uint32(b.UsableTokens)})
	}
	return resp, nil
}

func recordToProto(r *pool.AgentRecord) *blockpoolv1.AgentRecord {
	out := &blockpoolv1.AgentRecord{AgentId: r.AgentID, ModelTag: r.ModelTag, TokenIds: r.Tokens, Version: r.Version,
		LastUsedTime: timestamppb.New(r.LastUsed), CreateTime: timestamppb.New(r.Created), CacheSalt: r.Salt,
		BlockHashes: make([][]byte, len(r.Hashes))}
	for i := range r.Hashes {
		out.BlockHashes[i] = r.Hashes[i][:]
	}
	return out
}

// ListAgents implements the RPC.
func (s *Server) ListAgents(ctx context.Context, r *blockpoolv1.ListAgentsRequest) (*blockpoolv1.ListAgentsResponse, error) {
	if err := s.authorize(ctx, methodListAgents); err != nil {
		return nil, err
	}
	n, after, err := ValidateListAgents(r)
	if err != nil {
		return nil, err
	}
	page, more := s.p.ListAgents(n, after, r.Tenant)
	resp := &blockpoolv1.ListAgentsResponse{}
	if more {
		resp.NextPageToken = poolwire.AgentPageToken(page[len(page)-1].AgentID)
	}
	for _, a := range page {
		resp.Agents = append(resp.Agents, &blockpoolv1.AgentSummary{AgentId: a.AgentID, ModelTag: a.ModelTag,
			TokenCount: uint32(len(a.Tokens)), BlockCount: uint32(len(a.Hashes)), Version: a.Version,
			LastUsedTime: timestamppb.New(a.LastUsed)})
	}
	return resp, nil
}

// GetAgent implements the RPC.
func (s *Server) GetAgent(ctx context.Context, r *blockpoolv1.GetAgentRequest) (*blockpoolv1.GetAgentResponse, error) {
	if err := s.authorize(ctx, methodGetAgent); err != nil {
		return nil, err
	}
	if err := poolwire.CheckAgentKey("agent_id", r.AgentId); err != nil {
		return nil, err
	}
	a, err := s.p.GetAgent(r.AgentId)
	if err != nil {
		return nil, toStatus(err)
	}
	return &blockpoolv1.GetAgentResponse{Agent: recordToProto(a)}, nil
}

// DeleteAgent implements the RPC.
func (s *Server) DeleteAgent(ctx context.Context, r *blockpoolv1.DeleteAgentRequest) (*blockpoolv1.DeleteAgentResponse, error) {
	if err := s.authorize(ctx, methodDeleteAgent); err != nil {
		return nil, err
	}
	if err := poolwire.CheckAgentKey("agent_id", r.AgentId); err != nil {
		return nil, err
	}
	n, err := s.p.DeleteAgent(ctx, r.AgentId, r.ExpectedVersion)
	if err != nil {
		return nil, toStatus(err)
	}
	return &blockpoolv1.DeleteAgentResponse{ReleasedBlocks: uint32(n)}, nil
}
