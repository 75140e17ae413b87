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
// (DTypeFloat16), or ggml's Q8_0 or Q4_0 blocks (DTypeQ8_0, DTypeQ4_0): each
// run of 32 consecutive elements of one position's K (or V) row becomes one
// block of a float16 scale and 32 quants, so a row of KVHeads*HeadDim
// elements (a multiple of 32 for these types) is RowBytes bytes and a section
// is TokensPerBlock such rows. Rows of positions past a partial block's token
// count are zero (for the quantized types: the encoding of a zero row).
package kvspec

import (
	"errors"
	"fmt"

	"github.com/semantic-kv/semantic/pkg/quant"
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
	// DTypeQ8_0 stores each 32 elements as ggml's Q8_0 block: a float16
	// scale and 32 int8 quants (34 bytes, 8.5 bits an element).
	DTypeQ8_0 DType = 3
	// DTypeQ4_0 stores each 32 elements as ggml's Q4_0 block: a float16
	// scale and 32 4-bit quants (18 bytes, 4.5 bits an element).
	DTypeQ4_0 DType = 4
)

// dtypeInfo is the one table of element types: names, and the bytes of a
// group of elements (one element for the float types, quant.BlockSize for
// the block-quantized ones).
var dtypeInfo = [...]struct {
	name, alias string
	group       int // elements per group; a row must be a whole number of groups
	groupBytes  int
}{
	DTypeFloat32: {"float32", "f32", 1, 4},
	DTypeFloat16: {"float16", "f16", 1, 2},
	DTypeQ8_0:    {"q8_0", "", quant.BlockSize, quant.Q8_0BlockBytes},
	DTypeQ4_0:    {"q4_0", "", quant.BlockSize, quant.Q4_0BlockBytes},
}

// Valid reports whether d is one of the element types above.
func (d DType) Valid() bool { return d != DTypeUnspecified && int(d) < len(dtypeInfo) }

// GroupElems is the number of consecutive elements stored together: 1 for
// float32 and float16, 32 for q8_0 and q4_0 (one scale per group). A row's
// length must be a multiple of it. It is 0 for an invalid type.
func (d DType) GroupElems() int {
	if !d.Valid() {
		return 0
	}
	return dtypeInfo[d].group
}

// RowBytes is the number of bytes that n consecutive elements take, n a
// multiple of GroupElems. It is 0 for an invalid type or an n that is not a
// whole number of groups, so that a bad spec never gets a plausible size.
func (d DType) RowBytes(n int) int {
	if !d.Valid() || n < 0 || n%dtypeInfo[d].group != 0 {
		return 0
	}
	return n / dtypeInfo[d].group * dtypeInfo[d].groupBytes
}

// ParseDType parses an element type's name: "float32" (or "f32"), "float16"
// (or "f16"), "q8_0" or "q4_0", the names String gives.
func ParseDType(name string) (DType, error) {
	for d := DTypeFloat32; d.Valid(); d++ {
		if i := dtypeInfo[d]; name == i.name || (i.alias != "" && name == i.alias) {
			return d, nil
		}
	}
	return DTypeUnspecified, fmt.Errorf("want %s, got %q", DTypeNames(), name)
}

// DTypeNames lists the valid names ("float32, float16, q8_0 or q4_0") for
// error messages and flag help texts.
func DTypeNames() string {
	s := ""
	for d := DTypeFloat32; d.Valid(); d++ {
		switch {
		case d == DTypeFloat32:
		case (d + 1).Valid():
			s += ", "
		default:
			s += " or "
		}
		s += dtypeInfo[d].name
	}
	return s
}

func (d DType) String() string {
	if d.Valid() {
		return dtypeInfo[d].name
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
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
	if !s.DType.Valid() {
		return &FieldError{Field: "dtype", Reason: "must be " + DTypeNames()}
	}
	if g := s.DType.GroupElems(); s.RowElems()%g != 0 {
		return &FieldError{Field: "dtype", Reason: fmt.Sprintf("%s needs kv_heads*head_dim to be a multiple of %d, got %d", s.DType, g, s.RowElems())}
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

// RowBytes is the size of one position's K (or V) row of one layer.
func (s Spec) RowBytes() int { return s.DType.RowBytes(s.RowElems()) }

// SectionBytes is the size of one layer's K (or V) section of a block.
func (s Spec) SectionBytes() int { return s.TokensPerBlock * s.RowBytes() }

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
