package model

import (
	"fmt"
	"strings"

	"github.com/semantic-kv/semantic/pkg/tokenizer"
)

// RandomShapes are llama2.c's model shapes (the tinyllamas checkpoints), with a
// context long enough for 2K-token prefill benchmarks and Llama 2's vocabulary
// size: the shapes of the random-weight files that benchmarks compare
// engines on (bin/semantic-gguf random).
var RandomShapes = map[string]Config{
	"15M":  {Dim: 288, HiddenDim: 768, Layers: 6, Heads: 6, KVHeads: 6, Vocab: 32000, SeqLen: 4096, NormEps: 1e-5, RopeTheta: 10000},
	"42M":  {Dim: 512, HiddenDim: 1376, Layers: 8, Heads: 8, KVHeads: 8, Vocab: 32000, SeqLen: 4096, NormEps: 1e-5, RopeTheta: 10000},
	"110M": {Dim: 768, HiddenDim: 2048, Layers: 12, Heads: 12, KVHeads: 12, Vocab: 32000, SeqLen: 4096, NormEps: 1e-5, RopeTheta: 10000},
}

// SyntheticVocab is a SentencePiece vocabulary of n pieces in GGUF's
// tokenizer keys: the llama specials, the 256 byte pieces, then generated
// word pieces with descending scores. It lets other engines (which refuse a
// file without a tokenizer) load the benchmark files.
func SyntheticVocab(n int) map[string]any {
	tokens := []string{"<unk>", "<s>", "</s>"}
	types := []int32{tokenizer.TokenUnknown, tokenizer.TokenControl, tokenizer.TokenControl}
	for b := 0; b < 256; b++ {
		tokens = append(tokens, fmt.Sprintf("<0x%02X>", b))
		types = append(types, tokenizer.TokenByte)
	}
	seen := map[string]bool{}
	letters := "etaoinshrdlcumwfgypbvkjxqz"
	r := SplitMix64{State: 7}
	for _, c := range letters {
		for _, p := range []string{string(c), "▁" + string(c)} {
			seen[p] = true
			tokens = append(tokens, p)
		}
	}
	for len(tokens) < n {
		k := 2 + int(r.Next()%6)
		var sb strings.Builder
		if r.Next()%2 == 0 {
			sb.WriteString("▁")
		}
		for i := 0; i < k; i++ {
			// The square favours the frequent letters at the front.
			x := r.Next() % 26
			sb.WriteByte(letters[x*x/26])
		}
		if p := sb.String(); !seen[p] {
			seen[p] = true
			tokens = append(tokens, p)
		}
	}
	tokens = tokens[:n]
	for len(types) < n {
		types = append(types, tokenizer.TokenNormal)
	}
	scores := make([]float32, n)
	for i := range scores {
		scores[i] = -float32(i)
	}
	return map[string]any{
		"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.scores": scores,
		"tokenizer.ggml.token_type": types, "tokenizer.ggml.bos_token_id": uint32(1), "tokenizer.ggml.eos_token_id": uint32(2),
		"tokenizer.ggml.unknown_token_id": uint32(0),
	}
}
