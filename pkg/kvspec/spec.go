// Package kvspec holds the one definition of a KV block that the engine, the
// scheduler and the block pool share: the cache geometry (Spec), the byte
// layout of a block payload, the chained content hash that names a full block,
// and the payload checksum.
//
// A block holds the keys and values of TokensPerBlock consecutive positions for
// every layer. Its payload layout is fixed so that the engine can attend over a
// pool block in place with no conversion:
//
//	for layer in 0..Layers-1:
//	    K[layer]: TokensPerBlock x KVHeads x HeadDim elements
//	    V[layer]: TokensPerBlock x KVHeads x HeadDim elements
//
// Elements are little-endian IEEE-754 float32 (DTypeFloat32) or float16
// (DTypeFloat16). Rows of positions past a partial block's token count are
// zero.
package kvspec

import (
	"errors"
	"fmt"
)

// DType is the element type of a block payload.
type DType uint8

const (
	// DTypeUnspecified is the zero value; it is never valid in a Spec.
	DTypeUnspecified DType = 0
	// DTypeFloat32 stores every K and V element as 4 bytes.
	DTypeFloat32 DType = 1
	// DTypeFloat16 stores every K and V element as 2 bytes (IEEE half).
	DTypeFloat16 DType = 2
)

// Size is the number of bytes of one element.
func (d DType) Size() int {
	switch d {
	case DTypeFloat32:
		return 4
	case DTypeFloat16:
		return 2
	default:
		return 0
	}
}

// ParseDType parses an element type's name: "float32" (or "f32") or
// "float16" (or "f16"), the names String gives.
func ParseDType(name string) (DType, error) {
	switch name {
	case "float32", "f32":
		return DTypeFloat32, nil
	case "float16", "f16":
		return DTypeFloat16, nil
	}
	return DTypeUnspecified, fmt.Errorf("want float32 or float16, got %q", name)
}

func (d DType) String() string {
	switch d {
	case DTypeFloat32:
		return "float32"
	case DTypeFloat16:
		return "float16"
	default:
		return fmt.Sprintf("dtype(%d)", uint8(d))
	}
}

// Limits that keep a spec's block size within what one gRPC message stream
// and one block file comfortably hold.
const (
	MaxLayers         = 256
	MaxKVHeads        = 256
	MaxHeadDim        = 1024
	MaxTokensPerBlock = 1024
	// MaxBlockBytes bounds one block payload (256 MiB).
	MaxBlockBytes = 256 << 20
	// MaxModelTagLen bounds the model tag string.
	MaxModelTagLen = 128
)

// Spec is the geometry of every block of one pool, plus the tag of the model
// whose KV the blocks hold. Two specs are compatible only if they are equal.
type Spec struct {
	Layers         int
	KVHeads        int
	HeadDim        int
	TokensPerBlock int
	DType          DType
	// ModelTag identifies the weights (see model.Tag). A block written under
	// one tag is never read under another.
	ModelTag string
}

// ErrInvalidSpec is wrapped by every error Validate returns.
var ErrInvalidSpec = errors.New("invalid cache spec")

// FieldError names the Spec field that failed validation, so that services can
// report it as a BadRequest field violation.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s: %s: %s", ErrInvalidSpec, e.Field, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalidSpec) true.
func (e *FieldError) Unwrap() error { return ErrInvalidSpec }

// Validate reports the first field that is out of range.
func (s Spec) Validate() error {
	check := func(field string, v, max int) error {
		if v < 1 || v > max {
			return &FieldError{Field: field, Reason: fmt.Sprintf("must be in 1..%d, got %d", max, v)}
		}
		return nil
	}
	if err := check("layers", s.Layers, MaxLayers); err != nil {
		return err
	}
	if err := check("kv_heads", s.KVHeads, MaxKVHeads); err != nil {
		return err
	}
	if err := check("head_dim", s.HeadDim, MaxHeadDim); err != nil {
		return err
	}
	if err := check("tokens_per_block", s.TokensPerBlock, MaxTokensPerBlock); err != nil {
		return err
	}
	if s.DType.Size() == 0 {
		return &FieldError{Field: "dtype", Reason: "must be float32 or float16"}
	}
	if s.ModelTag == "" || len(s.ModelTag) > MaxModelTagLen {
		return &FieldError{Field: "model_tag", Reason: fmt.Sprintf("must be 1..%d bytes", MaxModelTagLen)}
	}
	if s.BlockBytes() > MaxBlockBytes {
		return &FieldError{Field: "tokens_per_block", Reason: fmt.Sprintf("block of %d bytes exceeds %d", s.BlockBytes(), MaxBlockBytes)}
	}
	return nil
}

// RowElems is the number of elements of one position's K (or V) in one layer.
func (s Spec) RowElems() int { return s.KVHeads * s.HeadDim }

// SectionBytes is the size of one layer's K (or V) section of a block.
func (s Spec) SectionBytes() int { return s.TokensPerBlock * s.RowElems() * s.DType.Size() }

// BlockBytes is the exact payload size of every block of this spec.
func (s Spec) BlockBytes() int { return 2 * s.Layers * s.SectionBytes() }

// KOffset is the byte offset of layer's K section inside a block payload.
func (s Spec) KOffset(layer int) int { return 2 * layer * s.SectionBytes() }

// VOffset is the byte offset of layer's V section inside a block payload.
func (s Spec) VOffset(layer int) int { return (2*layer + 1) * s.SectionBytes() }

// BlocksFor is the number of blocks needed to hold n tokens.
func (s Spec) BlocksFor(n int) int { return (n + s.TokensPerBlock - 1) / s.TokensPerBlock }

func (s Spec) String() string {
	return fmt.Sprintf("layers=%d kv_heads=%d head_dim=%d tokens_per_block=%d dtype=%s model=%s block_bytes=%d",
		s.Layers, s.KVHeads, s.HeadDim, s.TokensPerBlock, s.DType, s.ModelTag, s.BlockBytes())
}
