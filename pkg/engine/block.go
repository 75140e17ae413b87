package engine

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"

	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/quant"
)

// Block is one KV page in the kvspec layout: for each layer, the K section
// [TokensPerBlock][KVHeads][HeadDim], then the V section. Exactly one field
// is set, by the engine's stored type (Options.KVDType): Data, the elements
// as float32, for float32 engines; Raw, the page as its stored type (the
// payload the pool keeps, kvpage.go), for float16, q8_0 and q4_0 engines.
type Block struct {
	Data []float32
	Raw  []byte
}

// NewBlock returns a page of the engine's geometry and stored type whose
// rows are all zero.
func (e *Engine) NewBlock() *Block {
	if n := e.pageBytes(); n > 0 {
		b := &Block{Raw: make([]byte, n)}
		fillZero(e.kvDType, b.Raw)
		return b
	}
	return &Block{Data: make([]float32, e.blockFloats)}
}

var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// Bytes is the block's payload for the pool: Raw itself for a raw page;
// for a float32 page, on little-endian hosts a view of Data (no copy: writes
// through it change the block), otherwise an encoded copy.
func (b *Block) Bytes() []byte {
	if b.Raw != nil {
		return b.Raw
	}
	if len(b.Data) == 0 {
		return nil
	}
	if littleEndian {
		return unsafe.Slice((*byte)(unsafe.Pointer(&b.Data[0])), 4*len(b.Data))
	}
	out := make([]byte, 4*len(b.Data))
	for i, v := range b.Data {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
	}
	return out
}

// payloadSize is the byte size of a block of spec's geometry stored as
// dtype, and the number of float32 elements of its page.
func payloadSize(spec kvspec.Spec, dtype kvspec.DType) (bytes, floats int, err error) {
	s := spec
	s.DType = dtype
	if err := s.Validate(); err != nil {
		return 0, 0, fmt.Errorf("%w: %w", ErrBlockGeometry, err)
	}
	return s.BlockBytes(), 2 * s.Layers * s.TokensPerBlock * s.RowElems(), nil
}

// EncodeBlock serialises b, a page of spec's geometry (spec.DType is
// ignored), as a new payload of dtype. A raw page must already be of dtype
// (its size tells) and is copied. A float32 page is encoded: float16 rounds
// to nearest even, values past the half range becoming ±Inf; q8_0 and q4_0
// quantize each 32 consecutive elements (a row is a whole number of groups,
// so no group spans two rows) with pkg/quant's ggml rules, a group whose
// scale is ±0 written as the engine's zero group. A float32 page
// whose rows went through RoundKV for dtype encodes without loss:
// DecodeBlock gives it back bit for bit.
func EncodeBlock(spec kvspec.Spec, b *Block, dtype kvspec.DType) ([]byte, error) {
	n, floats, err := payloadSize(spec, dtype)
	if err != nil {
		return nil, err
	}
	if b != nil && b.Raw != nil {
		if got, ok := rawDType(spec, len(b.Raw)); !ok || got != dtype || b.Data != nil {
			return nil, fmt.Errorf("%w: raw page of %d bytes is not a %v page of spec %v (%d bytes)", ErrBlockGeometry, len(b.Raw), dtype, spec, n)
		}
		return append([]byte(nil), b.Raw...), nil
	}
	if b == nil || len(b.Data) != floats {
		got := -1
		if b != nil {
			got = len(b.Data)
		}
		return nil, fmt.Errorf("%w: block has %d floats, spec needs %d", ErrBlockGeometry, got, floats)
	}
	out := make([]byte, n)
	switch dtype {
	case kvspec.DTypeFloat32:
		if littleEndian {
			copy(out, b.Bytes())
		} else {
			for i, v := range b.Data {
				binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
			}
		}
	case kvspec.DTypeFloat16:
		for i, v := range b.Data {
			binary.LittleEndian.PutUint16(out[2*i:], quant.F32ToF16(v))
		}
	case kvspec.DTypeQ8_0:
		quant.QuantizeQ8_0(out, b.Data)
	case kvspec.DTypeQ4_0:
		quant.QuantizeQ4_0(out, b.Data)
	default:
		// Validate accepted a type this codec does not know: a new DType
		// was added to kvspec without a case here.
		return nil, fmt.Errorf("%w: no codec for element type %v", ErrBlockGeometry, dtype)
	}
	// Zero groups in the one spelling the engine's pages use (kvpage.go).
	normalizeZeroGroups(dtype, out)
	return out, nil
}

// DecodeBlock parses a payload of dtype into a new float32 page, checking its
// size against spec's geometry (spec.DType is ignored). A payload of the
// wrong size is an error; any bytes of the right size decode (a quantized
// block with a NaN or Inf scale gives NaN/Inf elements, as float16 ones do).
func DecodeBlock(spec kvspec.Spec, payload []byte, dtype kvspec.DType) (*Block, error) {
	n, floats, err := payloadSize(spec, dtype)
	if err != nil {
		return nil, err
	}
	if len(payload) != n {
		return nil, fmt.Errorf("%w: payload of %d bytes, spec %v as %v needs %d", ErrBlockGeometry, len(payload), spec, dtype, n)
	}
	b := &Block{Data: make([]float32, floats)}
	switch dtype {
	case kvspec.DTypeFloat32:
		if littleEndian {
			copy(b.Bytes(), payload)
		} else {
			for i := range b.Data {
				b.Data[i] = math.Float32frombits(binary.LittleEndian.Uint32(payload[4*i:]))
			}
		}
	case kvspec.DTypeFloat16:
		for i := range b.Data {
			b.Data[i] = quant.F16ToF32(binary.LittleEndian.Uint16(payload[2*i:]))
		}
	case kvspec.DTypeQ8_0:
		quant.DequantizeQ8_0(b.Data, payload)
		zeroScaleGroups(b.Data, payload, quant.Q8_0BlockBytes)
	case kvspec.DTypeQ4_0:
		quant.DequantizeQ4_0(b.Data, payload)
		zeroScaleGroups(b.Data, payload, quant.Q4_0BlockBytes)
	default:
		return nil, fmt.Errorf("%w: no codec for element type %v", ErrBlockGeometry, dtype)
	}
	return b, nil
}

// BlockView returns a block that aliases a float32 payload with no copy when
// the host is little-endian and the payload is 4-byte aligned (the pool's
// buffers are), and a decoded copy otherwise. The caller must keep the
// payload alive and unchanged while the block is in use.
func BlockView(spec kvspec.Spec, payload []byte) (*Block, error) {
	n, _, err := payloadSize(spec, kvspec.DTypeFloat32)
	if err != nil {
		return nil, err
	}
	if len(payload) != n {
		return nil, fmt.Errorf("%w: payload of %d bytes, spec %v needs %d", ErrBlockGeometry, len(payload), spec, n)
	}
	if littleEndian && uintptr(unsafe.Pointer(&payload[0]))%4 == 0 {
		return &Block{Data: unsafe.Slice((*float32)(unsafe.Pointer(&payload[0])), n/4)}, nil
	}
	return DecodeBlock(spec, payload, kvspec.DTypeFloat32)
}

// CopyPrefix copies the first n positions of every layer's K and V from src
// to dst and zeroes dst's remaining positions (kvspec: rows past a partial
// block's count are zero; for a raw page, the encoding of a zero row), for
// copy-on-write reuse of a partially matching block. Both pages must be
// float32 pages, or raw pages of one stored type, of spec's geometry
// (spec.DType is ignored). It returns an error, changing nothing, if a
// block does not match spec or n is outside [0, TokensPerBlock]; callers may
// ignore it when the arguments are known good.
func CopyPrefix(dst, src *Block, spec kvspec.Spec, n int) error {
	_, floats, err := payloadSize(spec, kvspec.DTypeFloat32)
	if err != nil {
		return err
	}
	if dst == nil || src == nil {
		return fmt.Errorf("%w: CopyPrefix of a nil block", ErrBlockGeometry)
	}
	dt := kvspec.DTypeFloat32
	if src.Raw != nil {
		var ok bool
		if dt, ok = rawDType(spec, len(src.Raw)); !ok || len(dst.Raw) != len(src.Raw) || src.Data != nil || dst.Data != nil {
			return fmt.Errorf("%w: CopyPrefix needs two raw pages of one type of spec %v, have %d and %d bytes", ErrBlockGeometry, spec, len(dst.Raw), len(src.Raw))
		}
	} else if len(dst.Data) != floats || len(src.Data) != floats || dst.Raw != nil {
		return fmt.Errorf("%w: CopyPrefix blocks must have %d floats", ErrBlockGeometry, floats)
	}
	if n < 0 || n > spec.TokensPerBlock {
		return fmt.Errorf("%w: CopyPrefix of %d positions, block holds %d", ErrBadInput, n, spec.TokensPerBlock)
	}
	if dt != kvspec.DTypeFloat32 {
		row := dt.RowBytes(spec.RowElems())
		sec := spec.TokensPerBlock * row
		for s := 0; s < 2*spec.Layers; s++ {
			o := s * sec
			copy(dst.Raw[o:o+n*row], src.Raw[o:o+n*row])
			fillZero(dt, dst.Raw[o+n*row:o+sec])
		}
		return nil
	}
	row := spec.RowElems()
	sec := spec.TokensPerBlock * row
	for s := 0; s < 2*spec.Layers; s++ {
		o := s * sec
		copy(dst.Data[o:o+n*row], src.Data[o:o+n*row])
		clear(dst.Data[o+n*row : o+sec])
	}
	return nil
}
