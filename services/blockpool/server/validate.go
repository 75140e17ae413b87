package server

import (
	"fmt"
	"time"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/poolwire"
	"github.com/semantic-kv/semantic/pkg/rpcstatus"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Wire-level validation: what a request must be before the pool core sees it
// (the agent id rule, poolwire.CheckAgentKey: an agent id, optionally after
// its tenant and "/"; byte lengths of hashes, the poolwire limits, well-formed
// durations). Rules that depend on the pool's spec, options or state (counts,
// TTL bounds, sizes against the spec, chain hashes) are the core's, and reach
// the caller through toStatus.

func hashAt(field string, i int, b []byte) (kvspec.Hash, error) {
	h, err := kvspec.HashFromBytes(b)
	if err != nil {
		return h, rpcstatus.InvalidArgument(fmt.Sprintf("%s[%d]", field, i), "must be %d bytes, got %d", kvspec.HashSize, len(b))
	}
	return h, nil
}

func hashes(field string, in [][]byte) ([]kvspec.Hash, error) {
	out := make([]kvspec.Hash, len(in))
	for i, b := range in {
		h, err := hashAt(field, i, b)
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

func checkTokens(field string, t []uint32) error {
	if len(t) > poolwire.MaxTokens {
		return rpcstatus.InvalidArgument(field, "at most %d tokens, got %d", poolwire.MaxTokens, len(t))
	}
	return nil
}

func checkModelTag(field, tag string) error {
	if tag == "" || len(tag) > kvspec.MaxModelTagLen {
		return rpcstatus.InvalidArgument(field, "must be 1..%d bytes", kvspec.MaxModelTagLen)
	}
	return nil
}

func checkSalt(field, salt string) error {
	if len(salt) > poolwire.MaxSaltLen {
		return rpcstatus.InvalidArgument(field, "at most %d bytes", poolwire.MaxSaltLen)
	}
	return nil
}

// ttlFromProto converts a requested TTL (nil: 0, the pool's default); its
// range is the pool's to check.
func ttlFromProto(d *durationpb.Duration) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, rpcstatus.InvalidArgument("ttl", "%v", err)
	}
	return d.AsDuration(), nil
}

// ValidateReconfigure checks that a ReconfigureRequest names a spec and
// bounds the capacity; the spec's fields are the pool's to check
// (kvspec.Spec.Validate).
func ValidateReconfigure(r *blockpoolv1.ReconfigureRequest) (kvspec.Spec, error) {
	if r.Spec == nil {
		return kvspec.Spec{}, rpcstatus.InvalidArgument("spec", "is required")
	}
	if r.CapacityBlocks > poolwire.MaxCapacityBlocks {
		return kvspec.Spec{}, rpcstatus.InvalidArgument("capacity_blocks", "at most %d", poolwire.MaxCapacityBlocks)
	}
	return poolwire.SpecFromProto(r.Spec), nil
}

// ValidateGetBlocks checks a GetBlocksRequest against the pool's capacity and
// returns the chunk size to send.
func ValidateGetBlocks(r *blockpoolv1.GetBlocksRequest, capacity int) (int, error) {
	if len(r.BlockIds) == 0 {
		return 0, rpcstatus.InvalidArgument("block_ids", "must not be empty")
	}
	if len(r.BlockIds) > capacity {
		return 0, rpcstatus.InvalidArgument("block_ids", "at most %d ids", capacity)
	}
	chunk := int(r.ChunkBytes)
	if chunk == 0 {
		chunk = poolwire.DefaultChunkBytes
	}
	if chunk < poolwire.MinChunkBytes || chunk > poolwire.MaxChunkBytes {
		return 0, rpcstatus.InvalidArgument("chunk_bytes", "must be 0 or in %d..%d, got %d", poolwire.MinChunkBytes, poolwire.MaxChunkBytes, chunk)
	}
	return chunk, nil
}

// checkChunk bounds one PutBlocks data chunk.
func checkChunk(data []byte) error {
	if len(data) > poolwire.MaxChunkBytes {
		return rpcstatus.InvalidArgument("data", "chunk of %d bytes exceeds %d", len(data), poolwire.MaxChunkBytes)
	}
	return nil
}

// ValidateListAgents checks a ListAgentsRequest and returns the page size and
// the agent id the page starts after ("" for the first page).
func ValidateListAgents(r *blockpoolv1.ListAgentsRequest) (int, string, error) {
	n := int(r.PageSize)
	if n == 0 {
		n = poolwire.DefaultPageSize
	}
	if n > poolwire.MaxPageSize {
		return 0, "", rpcstatus.InvalidArgument("page_size", "at most %d", poolwire.MaxPageSize)
	}
	if r.Tenant != "" && !poolwire.ValidTenant(r.Tenant) {
		return 0, "", rpcstatus.InvalidArgument("tenant", "must be empty or a tenant [a-z0-9][a-z0-9_-]{0,62}")
	}
	var after string
	if r.PageToken != "" {
		var err error
		if after, err = poolwire.ParseAgentPageToken(r.PageToken); err != nil {
			return 0, "", err
		}
	}
	return n, after, nil
}

// ValidateLease checks a LeaseRequest's fields that need no pool state.
func ValidateLease(r *blockpoolv1.LeaseRequest) ([]kvspec.Hash, time.Duration, error) {
	if r.Holder == "" || len(r.Holder) > poolwire.MaxHolderLen {
		return nil, 0, rpcstatus.InvalidArgument("holder", "must be 1..%d bytes", poolwire.MaxHolderLen)
	}
	if err := poolwire.CheckAgentKey("agent_id", r.AgentId); err != nil {
		return nil, 0, err
	}
	if err := checkModelTag("model_tag", r.ModelTag); err != nil {
		return nil, 0, err
	}
	hs, err := hashes("block_hashes", r.BlockHashes)
	if err != nil {
		return nil, 0, err
	}
	ttl, err := ttlFromProto(r.Ttl)
	return hs, ttl, err
}

// ValidateHeader checks a BlockHeader's hashes; its size and token count are
// checked against the spec by the pool.
func ValidateHeader(h *blockpoolv1.BlockHeader) (kvspec.Hash, kvspec.Hash, error) {
	var parent kvspec.Hash
	hash, err := kvspec.HashFromBytes(h.Hash)
	if err != nil {
		return hash, parent, rpcstatus.InvalidArgument("header.hash", "must be %d bytes, got %d", kvspec.HashSize, len(h.Hash))
	}
	if len(h.ParentHash) != 0 {
		if parent, err = kvspec.HashFromBytes(h.ParentHash); err != nil {
			return hash, parent, rpcstatus.InvalidArgument("header.parent_hash", "must be empty or %d bytes, got %d", kvspec.HashSize, len(h.ParentHash))
		}
	}
	return hash, parent, nil
}

// ValidateCommit checks a CommitAgentRequest's fields that need no pool state.
// A commit through a lease names the lease's holder, as every other use of a
// lease does.
func ValidateCommit(r *blockpoolv1.CommitAgentRequest) ([]kvspec.Hash, error) {
	if err := poolwire.CheckAgentKey("agent_id", r.AgentId); err != nil {
		return nil, err
	}
	if r.LeaseId != 0 && (r.Holder == "" || len(r.Holder) > poolwire.MaxHolderLen) {
		return nil, rpcstatus.InvalidArgument("holder", "must be 1..%d bytes (the lease's holder) when lease_id is set", poolwire.MaxHolderLen)
	}
	if err := checkModelTag("model_tag", r.ModelTag); err != nil {
		return nil, err
	}
	if err := checkTokens("token_ids", r.TokenIds); err != nil {
		return nil, err
	}
	if err := checkSalt("cache_salt", r.CacheSalt); err != nil {
		return nil, err
	}
	return hashes("block_hashes", r.BlockHashes)
}

// ValidateLookup checks a LookupAgentRequest.
func ValidateLookup(r *blockpoolv1.LookupAgentRequest) error {
	if err := poolwire.CheckAgentKey("agent_id", r.AgentId); err != nil {
		return err
	}
	if err := checkModelTag("model_tag", r.ModelTag); err != nil {
		return err
	}
	if err := checkSalt("cache_salt", r.CacheSalt); err != nil {
		return err
	}
	return checkTokens("token_ids", r.TokenIds)
}
