package engine

import (
	"encoding/binary"

	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/quant"
)

// Rounding at write: an engine whose stored type (Options.KVDType) is not
// float32 keeps its pages in that type (kvpage.go) and encodes every K and V
// row as it writes it (encodeKV); attention reads the decoded values. The
// pool stores those very bytes, so a warm request attends over exactly what
// the cold one did. RoundKV is the same rounding on a float32 row,
// decode(encode(row)), for tests and tools that compare against float32
// pages holding the stored values.
//
// The encoding must make those values a fixed point of the float32 codec
// (EncodeBlock/DecodeBlock): for each group of 32,
// dequantize(quantize(RoundKV(x))) == RoundKV(x), so that a float32 page of
// rounded rows and the raw page agree whichever way they are converted.
// pkg/quant's quantizers (ggml's reference rules, which must not change:
// GGUF weights are quantized with them) already give that whenever the
// group's float16 scale is finite and non-zero: a dequantized Q8_0 group is
// q*D with max|q| = 127, so requantizing finds amax = 127*D (exact in
// float32), d = D exactly and the same q; a Q4_0 group's first
// largest-magnitude element is -8*D, so d = D again and every x*(1/D)+8.5
// truncates to the same code. Two cases are not fixed points, and encodeKV
// handles them here rather than in pkg/quant:
//   - a scale that overflows float16 (|x| beyond 127*65504 for Q8_0,
//     8*65504 for Q4_0, or ±Inf) dequantizes to NaN/±Inf, which requantizes
//     to zeros: the group is first clamped to the largest magnitude the
//     format represents, so the scale is at most 65504;
//   - a scale that underflows to zero dequantizes to zeros whose signs
//     follow the quants (q*0 is -0 for negative q, and a Q4_0 zero group's
//     scale is -0 so all its elements are -0), while the engine's fresh
//     pages, the rows past a partial block's count and CopyPrefix's tail
//     are +0: such a group is written as the one zero spelling (zeroGroup,
//     +0 scale and zero-valued quants), which decodes to +0, and
//     DecodeBlock decodes every group with a ±0 scale as +0
//     (zeroScaleGroups), so zeros survive the codec with their bits.
// NaN elements quantize to 0 (pkg/quant's defined behaviour), so a rounded
// quantized row is always finite. Float16 needs neither: F16ToF32 and
// F32ToF16 are exact inverses on halves (±Inf and NaN included).

// Largest magnitudes with a finite float16 scale: Q8_0's scale is amax/127
// and Q4_0's is max/-8, and 65504 is the largest finite half. Both products
// are exact in float32, and dividing them back gives exactly 65504.
const (
	q8Limit = 127 * 65504
	q4Limit = 8 * 65504
)

// RoundKV rounds row, one position's K (or V) of one layer (len a multiple
// of dtype.GroupElems()), in place to the values that a page of dtype stores
// for it: decode(encode(row)) with the engine's own encoder, as described
// above. float32 (and an unspecified dtype) leave it unchanged. Safe for
// concurrent use on disjoint rows; it does not allocate (one group at a time
// goes through a stack buffer).
func RoundKV(dtype kvspec.DType, row []float32) {
	switch dtype {
	case kvspec.DTypeFloat16, kvspec.DTypeQ8_0, kvspec.DTypeQ4_0:
	default:
		return
	}
	// 32 elements at a time: one q8_0/q4_0 group, or up to 32 halves. A
	// trailing partial group (outside the contract) is left as it is.
	n := len(row)
	if dtype != kvspec.DTypeFloat16 {
		n -= n % quant.BlockSize
	}
	var buf [2 * quant.BlockSize]byte
	for g := 0; g < n; g += quant.BlockSize {
		x := row[g:min(g+quant.BlockSize, n)]
		p := buf[:dtype.RowBytes(len(x))]
		encodeKV(dtype, p, x)
		decodeKV(dtype, x, p)
	}
}

// clampAbs limits every element to [-lim, lim] (±Inf included); NaN stays.
func clampAbs(x []float32, lim float32) {
	for i, v := range x {
		if v > lim {
			x[i] = lim
		} else if v < -lim {
			x[i] = -lim
		}
	}
}

// zeroScale reports whether a Q8_0/Q4_0 block's float16 scale is ±0.
func zeroScale(block []byte) bool { return binary.LittleEndian.Uint16(block)&0x7fff == 0 }

// zeroScaleGroups sets to +0 every group of dst (dequantized from src, blocks
// of blockBytes) whose scale is ±0: the one spelling of a zero group, the
// one RoundKV writes and fresh pages hold.
func zeroScaleGroups(dst []float32, src []byte, blockBytes int) {
	for g, o := 0, 0; g+quant.BlockSize <= len(dst) && o+blockBytes <= len(src); g, o = g+quant.BlockSize, o+blockBytes {
		if zeroScale(src[o:]) {
			clear(dst[g : g+quant.BlockSize])
		}
	}
}
