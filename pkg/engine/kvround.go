package engine

import (
	"encoding/binary"

	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/quant"
)

// Rounding at write: the engine attends over float32 pages, but the pool
// stores them as the scheduler's --kv-dtype. If a cold request attended over
// unrounded float32 K/V while a warm one attended over the pool's rounded
// copy, they would compute different bits. So the engine rounds every K and
// V row through the stored type as it writes it into the page (RoundKV): the
// page then holds only values the stored type represents exactly, and
// DecodeBlock(EncodeBlock(page)) == page bit for bit, so warm == cold for
// every dtype.
//
// That needs RoundKV's output to be a fixed point of the codec: for each
// group of 32, dequantize(quantize(RoundKV(x))) == RoundKV(x). pkg/quant's
// quantizers (ggml's reference rules, which must not change: GGUF weights
// are quantized with them) already give that whenever the group's float16
// scale is finite and non-zero: a dequantized Q8_0 group is q*D with
// max|q| = 127, so requantizing finds amax = 127*D (exact in float32),
// d = D exactly and the same q; a Q4_0 group's first largest-magnitude
// element is -8*D, so d = D again and every x*(1/D)+8.5 truncates to the same
// code. Two cases are not fixed points, and RoundKV handles them here rather
// than in pkg/quant:
//   - a scale that overflows float16 (|x| beyond 127*65504 for Q8_0,
//     8*65504 for Q4_0, or ±Inf) dequantizes to NaN/±Inf, which requantizes
//     to zeros: RoundKV first clamps the group to the largest magnitude the
//     format represents, so the scale is at most 65504;
//   - a scale that underflows to zero dequantizes to zeros whose signs
//     follow the quants (q*0 is -0 for negative q, and a Q4_0 zero group's
//     scale is -0 so all its elements are -0), while the engine's fresh
//     pages, the rows past a partial block's count and CopyPrefix's tail
//     are +0: RoundKV writes such a group as +0, and DecodeBlock decodes
//     every group with a ±0 scale as +0 (zeroScaleGroups), so zeros survive
//     the codec with their bits.
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
// of dtype.GroupElems()), in place to the values that a block of dtype stores
// exactly, as described above. float32 (and an unspecified dtype) leave it
// unchanged. Safe for concurrent use on disjoint rows; it does not allocate.
func RoundKV(dtype kvspec.DType, row []float32) {
	switch dtype {
	case kvspec.DTypeFloat16:
		for i, v := range row {
			row[i] = quant.F16ToF32(quant.F32ToF16(v))
		}
	case kvspec.DTypeQ8_0:
		var buf [quant.Q8_0BlockBytes]byte
		for g := 0; g+quant.BlockSize <= len(row); g += quant.BlockSize {
			x := row[g : g+quant.BlockSize]
			clampAbs(x, q8Limit)
			quant.QuantizeQ8_0(buf[:], x)
			if zeroScale(buf[:]) {
				clear(x)
			} else {
				quant.DequantizeQ8_0(x, buf[:])
			}
		}
	case kvspec.DTypeQ4_0:
		var buf [quant.Q4_0BlockBytes]byte
		for g := 0; g+quant.BlockSize <= len(row); g += quant.BlockSize {
			x := row[g : g+quant.BlockSize]
			clampAbs(x, q4Limit)
			quant.QuantizeQ4_0(buf[:], x)
			if zeroScale(buf[:]) {
				clear(x)
			} else {
				quant.DequantizeQ4_0(x, buf[:])
			}
		}
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
