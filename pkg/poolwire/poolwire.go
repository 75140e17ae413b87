// Package poolwire is the block pool's wire contract as both of its sides use
// it: the request limits, the conversion of a cache spec to and from its proto
// form, and the gRPC transport (message limits, windows, buffers, the
// zero-copy codecs) of a server and of a client that move megabyte blocks.
//
// It depends on the generated API, kvspec and gRPC only. A pool client (the
// scheduler's poolclient) needs nothing else of the pool: it links neither the
// pool core, nor its storage, nor its server.
package poolwire

import (
	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	"github.com/semantic-kv/semantic/pkg/kvspec"
)

// Request limits of BlockPoolService. Each keeps one message well under
// gRPC's default 4 MiB receive limit or bounds the work one call can ask for;
// the pool server refuses a request over any of them with INVALID_ARGUMENT.
const (
	// MaxChunkBytes bounds one data chunk of PutBlocks and GetBlocks.
	MaxChunkBytes = 4 << 20
	// MinChunkBytes is the smallest chunk GetBlocks accepts (below it the
	// per-message overhead dominates).
	MinChunkBytes = 1 << 10
	// DefaultChunkBytes is GetBlocks' chunk size when the request says 0, and
	// the chunk size clients send and ask for.
	DefaultChunkBytes = 1 << 20
	// MaxTokens bounds the token ids of one commit or lookup.
	MaxTokens = 1 << 20
	// MaxHolderLen bounds a lease holder name.
	MaxHolderLen = 128
	// MaxSaltLen bounds a cache salt, in bytes.
	MaxSaltLen = 128
	// MaxPageSize bounds ListAgents pages; DefaultPageSize is used for 0.
	MaxPageSize, DefaultPageSize = 1000, 100
	// MaxCapacityBlocks bounds Reconfigure's capacity.
	MaxCapacityBlocks = 1 << 24
)

// SpecFromProto converts a wire spec (nil converts to the zero spec). It does
// not validate: kvspec.Spec.Validate does, where a spec is accepted.
func SpecFromProto(c *blockpoolv1.CacheSpec) kvspec.Spec {
	if c == nil {
		return kvspec.Spec{}
	}
	return kvspec.Spec{Layers: int(c.Layers), KVHeads: int(c.KvHeads), HeadDim: int(c.HeadDim),
		TokensPerBlock: int(c.TokensPerBlock), DType: dtypeFromProto(c.Dtype), ModelTag: c.ModelTag}
}

// SpecToProto converts a spec to its wire form (nil to nil).
func SpecToProto(s *kvspec.Spec) *blockpoolv1.CacheSpec {
	if s == nil {
		return nil
	}
	return &blockpoolv1.CacheSpec{Layers: uint32(s.Layers), KvHeads: uint32(s.KVHeads), HeadDim: uint32(s.HeadDim),
		TokensPerBlock: uint32(s.TokensPerBlock), Dtype: dtypeToProto(s.DType), ModelTag: s.ModelTag,
		BlockBytes: uint64(s.BlockBytes())}
}

// dtypes pairs each element type with its wire enum.
var dtypes = []struct {
	d kvspec.DType
	e blockpoolv1.ElementType
}{
	{kvspec.DTypeFloat32, blockpoolv1.ElementType_ELEMENT_TYPE_FLOAT32},
	{kvspec.DTypeFloat16, blockpoolv1.ElementType_ELEMENT_TYPE_FLOAT16},
	{kvspec.DTypeQ8_0, blockpoolv1.ElementType_ELEMENT_TYPE_Q8_0},
	{kvspec.DTypeQ4_0, blockpoolv1.ElementType_ELEMENT_TYPE_Q4_0},
}

func dtypeFromProto(e blockpoolv1.ElementType) kvspec.DType {
	for _, x := range dtypes {
		if x.e == e {
			return x.d
		}
	}
	return kvspec.DTypeUnspecified
}

func dtypeToProto(d kvspec.DType) blockpoolv1.ElementType {
	for _, x := range dtypes {
		if x.d == d {
			return x.e
		}
	}
	return blockpoolv1.ElementType_ELEMENT_TYPE_UNSPECIFIED
}
