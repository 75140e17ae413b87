package server

import (
	"fmt"
	"time"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/rpcstatus"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Request limits. Each keeps one message well under gRPC's default 4 MiB
// receive limit or bounds the work one call can ask for.
const (
	// MaxChunkBytes bounds one data chunk of PutBlocks and GetBlocks.
	MaxChunkBytes = 4 << 20
	// MinChunkBytes is the smallest chunk GetBlocks accepts (below it the
	// per-message overhead dominates).
	MinChunkBytes = 1 << 10
	// DefaultChunkBytes is GetBlocks' chunk size when the request says 0.
	DefaultChunkBytes = 1 << 20
	// MaxTokens bounds the token ids of one commit or lookup.
	MaxTokens = 1 << 20
	// MaxHolderLen bounds a lease holder name.
	MaxHolderLen = 128
	// MaxPageSize bounds ListAgents pages; DefaultPageSize is used for 0.
	MaxPageSize, DefaultPageSize = 1000, 100
	// MaxCapacityBlocks bounds Reconfigure's capacity.
	MaxCapacityBlocks = 1 << 24
)

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

func checkTokens(field string, t []uint32, allowEmpty bool) error {
	if len(t) == 0 && !allowEmpty {
		return rpcstatus.InvalidArgument(field, "must not be empty")
	}
	if len(t) > MaxTokens {
		return rpcstatus.InvalidArgument(field, "at most %d tokens, got %d", MaxTokens, len(t))
	}
	return nil
}

func checkModelTag(field, tag string) error {
	if tag == "" || len(tag) > kvspec.MaxModelTagLen {
		return rpcstatus.InvalidArgument(field, "must be 1..%d bytes", kvspec.MaxModelTagLen)
	}
	return nil
}

func checkTTL(d *durationpb.Duration, maxTTL time.Duration) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, rpcstatus.InvalidArgument("ttl", "%v", err)
	}
	ttl := d.AsDuration()
	if ttl < 0 || ttl > maxTTL {
		return 0, rpcstatus.InvalidArgument("ttl", "must be in 0..%s, got %s", maxTTL, ttl)
	}
	if ttl > 0 && ttl < 100*time.Millisecond {
		return 0, rpcstatus.InvalidArgument("ttl", "must be at least 100ms, got %s", ttl)
	}
	return ttl, nil
}

// SpecFromProto converts and validates a wire spec (field names prefixed by
// field, e.g. "spec.layers").
func SpecFromProto(field string, c *blockpoolv1.CacheSpec) (kvspec.Spec, error) {
	if c == nil {
		return kvspec.Spec{}, rpcstatus.InvalidArgument(field, "is required")
	}
	s := kvspec.Spec{Layers: int(c.Layers), KVHeads: int(c.KvHeads), HeadDim: int(c.HeadDim),
		TokensPerBlock: int(c.TokensPerBlock), ModelTag: c.ModelTag}
	switch c.Dtype {
	case blockpoolv1.ElementType_ELEMENT_TYPE_FLOAT32:
		s.DType = kvspec.DTypeFloat32
	case blockpoolv1.ElementType_ELEMENT_TYPE_FLOAT16:
		s.DType = kvspec.DTypeFloat16
	}
	if err := s.Validate(); err != nil {
		if fe, ok := err.(*kvspec.FieldError); ok {
			return s, rpcstatus.InvalidArgument(field+"."+fe.Field, "%s", fe.Reason)
		}
		return s, rpcstatus.InvalidArgument(field, "%v", err)
	}
	return s, nil
}

// SpecToProto converts a spec to its wire form.
func SpecToProto(s *kvspec.Spec) *blockpoolv1.CacheSpec {
	if s == nil {
		return nil
	}
	c := &blockpoolv1.CacheSpec{Layers: uint32(s.Layers), KvHeads: uint32(s.KVHeads), HeadDim: uint32(s.HeadDim),
		TokensPerBlock: uint32(s.TokensPerBlock), ModelTag: s.ModelTag, BlockBytes: uint64(s.BlockBytes())}
	switch s.DType {
	case kvspec.DTypeFloat32:
		c.Dtype = blockpoolv1.ElementType_ELEMENT_TYPE_FLOAT32
	case kvspec.DTypeFloat16:
		c.Dtype = blockpoolv1.ElementType_ELEMENT_TYPE_FLOAT16
	}
	return c
}

// ValidateLease checks a LeaseRequest's fields that need no pool state.
func ValidateLease(r *blockpoolv1.LeaseRequest, maxTTL time.Duration) ([]kvspec.Hash, time.Duration, error) {
	if r.Holder == "" || len(r.Holder) > MaxHolderLen {
		return nil, 0, rpcstatus.InvalidArgument("holder", "must be 1..%d bytes", MaxHolderLen)
	}
	if err := rpcstatus.CheckAgentID("agent_id", r.AgentId); err != nil {
		return nil, 0, err
	}
	if r.Count < 1 {
		return nil, 0, rpcstatus.InvalidArgument("count", "must be at least 1")
	}
	if len(r.BlockHashes) > int(r.Count) {
		return nil, 0, rpcstatus.InvalidArgument("block_hashes", "%d hashes for count %d", len(r.BlockHashes), r.Count)
	}
	if err := checkModelTag("model_tag", r.ModelTag); err != nil {
		return nil, 0, err
	}
	hs, err := hashes("block_hashes", r.BlockHashes)
	if err != nil {
		return nil, 0, err
	}
	ttl, err := checkTTL(r.Ttl, maxTTL)
	return hs, ttl, err
}

// ValidateHeader checks a BlockHeader's fields that need no pool state.
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
	if h.Size == 0 || h.Size > kvspec.MaxBlockBytes {
		return hash, parent, rpcstatus.InvalidArgument("header.size", "must be in 1..%d, got %d", kvspec.MaxBlockBytes, h.Size)
	}
	if h.TokenCount == 0 || h.TokenCount > kvspec.MaxTokensPerBlock {
		return hash, parent, rpcstatus.InvalidArgument("header.token_count", "must be in 1..%d, got %d", kvspec.MaxTokensPerBlock, h.TokenCount)
	}
	return hash, parent, nil
}

// ValidateCommit checks a CommitAgentRequest's fields that need no pool state.
func ValidateCommit(r *blockpoolv1.CommitAgentRequest) ([]kvspec.Hash, error) {
	if err := rpcstatus.CheckAgentID("agent_id", r.AgentId); err != nil {
		return nil, err
	}
	if err := checkModelTag("model_tag", r.ModelTag); err != nil {
		return nil, err
	}
	if err := checkTokens("token_ids", r.TokenIds, false); err != nil {
		return nil, err
	}
	if len(r.BlockHashes) == 0 {
		return nil, rpcstatus.InvalidArgument("block_hashes", "must not be empty")
	}
	if len(r.CacheSalt) > 256 {
		return nil, rpcstatus.InvalidArgument("cache_salt", "at most 256 bytes")
	}
	return hashes("block_hashes", r.BlockHashes)
}

// ValidateLookup checks a LookupAgentRequest.
func ValidateLookup(r *blockpoolv1.LookupAgentRequest) error {
	if err := rpcstatus.CheckAgentID("agent_id", r.AgentId); err != nil {
		return err
	}
	if err := checkModelTag("model_tag", r.ModelTag); err != nil {
		return err
	}
	if len(r.CacheSalt) > 256 {
		return rpcstatus.InvalidArgument("cache_salt", "at most 256 bytes")
	}
	return checkTokens("token_ids", r.TokenIds, true)
}
