package model

import (
	"fmt"
	"strings"

	"github.com/semantic-kv/semantic/pkg/gguf"
)

// MixQ4_K_M names llama.cpp's LLAMA_FTYPE_MOSTLY_Q4_K_M mix for
// GGUFOptions.Mix: Q4_K for most matrices, Q6_K where llama.cpp's
// llama_tensor_get_type spends more bits (see MixType).
const MixQ4_K_M = "Q4_K_M"

// llama.cpp's general.file_type values (enum llama_ftype) of the K types.
const (
	fileTypeQ4_K_S = 14 // also what llama-quantize --pure Q4_K_S writes: Q4_K everywhere
	fileTypeQ4_K_M = 15
	fileTypeQ5_K_S = 16
	fileTypeQ6_K   = 18
)

// ParseMix returns the mix named s (case-insensitive; "" for none) as
// GGUFOptions.Mix spells it, or an error naming the mixes there are.
func ParseMix(s string) (string, error) {
	if s == "" || strings.EqualFold(s, MixQ4_K_M) {
		return strings.ToUpper(s), nil
	}
	return "", GGUFOptions{Mix: s}.checkMix()
}

// useMoreBits is llama.cpp's use_more_bits: the first and last eighth of the
// layers and every third layer in between.
func useMoreBits(layer, layers int) bool {
	return layer < layers/8 || layer >= 7*layers/8 || (layer-layers/8)%3 == 2
}

// MixType is the type llama.cpp's quantizer (llama_tensor_get_type) gives a
// matrix of a llama-style model under mix (MixQ4_K_M), before the fallback
// for rows that are not whole blocks (see fallbackType): output.weight, and
// token_embd.weight when it is also the output (tied), Q6_K; attn_v and
// ffn_down Q6_K in the layers useMoreBits picks; everything else Q4_K. name
// is the tensor name without ".weight" and without the "blk.N." prefix
// ("token_embd", "attn_v", "output", ...); layer is N (ignored for the
// others). This is the rule for dense models below 70B; llama.cpp's special
// cases for Falcon, mixture-of-experts models, fused attn_qkv tensors and
// 70B models (attn_v Q5_K) do not arise in the architectures the project
// writes. Without a mix it returns typ.
func MixType(mix string, typ gguf.TensorType, name string, layer, layers int, tied bool) gguf.TensorType {
	if mix != MixQ4_K_M {
		return typ
	}
	switch {
	case name == "output" || name == "token_embd" && tied:
		return gguf.TensorQ6_K
	case name == "attn_v" || name == "ffn_down":
		if useMoreBits(layer, layers) {
			return gguf.TensorQ6_K
		}
	}
	return gguf.TensorQ4_K
}

// fallbackType is the type a matrix of cols columns gets when its rows are
// not whole blocks of typ. llama.cpp falls back from Q4_K to Q5_0, Q5_K to
// Q5_1 and Q6_K to Q8_0 (F16 when even those do not fit); Q5_0 and Q5_1 are
// not supported here, so every K-quant falls back to Q8_0 when cols is a
// multiple of 32 and to F16 otherwise (the output matrix under Q4_K_M too:
// llama.cpp gives it Q8_0 when its rows are not whole 256-blocks). The
// legacy types fall back to F16, as before.
func fallbackType(typ gguf.TensorType, cols int) gguf.TensorType {
	if bs := typ.BlockSize(); bs <= 1 || cols%bs == 0 {
		return typ
	}
	if IsKQuant(typ) && cols%32 == 0 {
		return gguf.TensorQ8_0
	}
	return gguf.TensorF16
}

// checkMix refuses a mix WriteGGUF does not know.
func (o GGUFOptions) checkMix() error {
	if o.Mix != "" && o.Mix != MixQ4_K_M {
		return fmt.Errorf("%w: unknown quantization mix %q (supported: %s)", ErrBadConfig, o.Mix, MixQ4_K_M)
	}
	return nil
}

// fileType is general.file_type for the options: the mix's, or the one
// type's (LLAMA_FTYPE_*; plain Q4_K, Q5_K are written as llama-quantize
// --pure writes them, Q4_K_S and Q5_K_S).
func (o GGUFOptions) fileType() int {
	if o.Mix == MixQ4_K_M {
		return fileTypeQ4_K_M
	}
	switch o.Type {
	case gguf.TensorQ4_K:
		return fileTypeQ4_K_S
	case gguf.TensorQ5_K:
		return fileTypeQ5_K_S
	case gguf.TensorQ6_K:
		return fileTypeQ6_K
	}
	return fileType(o.Type)
}
