// Command semantic-gguf writes GGUF model files with the project's own
// writer and reference quantizers: a float model quantized to another type,
// or random weights of a real model shape (for benchmarks against other
// engines on the same file).
//
//	semantic-gguf quantize --type Q8_0 IN OUT      IN: gguf:PATH, PATH.gguf or llama2c:PATH
//	semantic-gguf random --shape 42M --type Q4_0 OUT
//
// TYPE is one matrix type (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K) or
// Q4_K_M, llama.cpp's mix of Q4_K and Q6_K (model.MixType). Matrices whose
// rows are not whole blocks of the type fall back to Q8_0 (K types, when
// the row is whole 32-blocks) or F16, as llama.cpp's quantizer falls back.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/semantic-kv/semantic/pkg/gguf"
	"github.com/semantic-kv/semantic/pkg/model"
	"github.com/semantic-kv/semantic/pkg/tokenizer"
)

// shapes are llama2.c's model shapes (the tinyllamas checkpoints), with a
// context long enough for 2K-token prefill benchmarks and Llama 2's vocabulary size.
var shapes = map[string]model.Config{
	"15M":  {Dim: 288, HiddenDim: 768, Layers: 6, Heads: 6, KVHeads: 6, Vocab: 32000, SeqLen: 4096, NormEps: 1e-5, RopeTheta: 10000},
	"42M":  {Dim: 512, HiddenDim: 1376, Layers: 8, Heads: 8, KVHeads: 8, Vocab: 32000, SeqLen: 4096, NormEps: 1e-5, RopeTheta: 10000},
	"110M": {Dim: 768, HiddenDim: 2048, Layers: 12, Heads: 12, KVHeads: 12, Vocab: 32000, SeqLen: 4096, NormEps: 1e-5, RopeTheta: 10000},
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	fs := flag.NewFlagSet("semantic-gguf "+os.Args[1], flag.ExitOnError)
	typ := fs.String("type", "F32", "matrix type: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, or the mix Q4_K_M")
	shape := fs.String("shape", "42M", "random: model shape (15M, 42M, 110M)")
	seed := fs.Uint64("seed", 42, "random: weight seed")
	_ = fs.Parse(os.Args[2:])
	opts, err := parseType(*typ)
	if err != nil {
		exit(err)
	}
	switch os.Args[1] {
	case "quantize":
		if fs.NArg() != 2 {
			usage()
		}
		exit(quantize(fs.Arg(0), fs.Arg(1), opts))
	case "random":
		if fs.NArg() != 1 {
			usage()
		}
		c, ok := shapes[*shape]
		if !ok {
			exit(fmt.Errorf("unknown shape %q (15M, 42M, 110M)", *shape))
		}
		m, err := model.Random("random-"+*shape, c, *seed)
		if err != nil {
			exit(err)
		}
		opts.Untied, opts.Metadata = true, syntheticVocab(c.Vocab)
		w, err := model.WriteGGUF(m, opts)
		if err != nil {
			exit(err)
		}
		exit(w.WriteFile(fs.Arg(0)))
	default:
		usage()
	}
}

// quantize converts a float32 model to the type or mix of opts, keeping a
// GGUF source's tokenizer and chat template keys.
func quantize(in, out string, opts model.GGUFOptions) error {
	m, err := model.Load(in, "")
	if err != nil {
		return err
	}
	defer m.Close()
	meta := map[string]any{}
	if path, ok := strings.CutPrefix(in, "gguf:"); ok || strings.HasSuffix(in, ".gguf") {
		if !ok {
			path = in
		}
		f, err := gguf.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		for _, k := range f.Keys() {
			if strings.HasPrefix(k, "tokenizer.") {
				v, _ := f.Value(k)
				meta[k] = v.Any()
			}
		}
	}
	opts.Metadata = meta
	w, err := model.WriteGGUF(m, opts)
	if err != nil {
		return err
	}
	return w.WriteFile(out)
}

// parseType reads --type: a matrix type, or a mix.
func parseType(s string) (model.GGUFOptions, error) {
	for _, t := range model.SupportedTypes {
		if strings.EqualFold(t.String(), s) {
			return model.GGUFOptions{Type: t}, nil
		}
	}
	if mix, err := model.ParseMix(s); err == nil && mix != "" {
		return model.GGUFOptions{Mix: mix}, nil
	}
	return model.GGUFOptions{}, fmt.Errorf("unknown type %q (supported: %v and the mix %s)", s, model.SupportedTypes, model.MixQ4_K_M)
}

// syntheticVocab is a SentencePiece vocabulary of n pieces in GGUF's
// tokenizer keys: the llama specials, the 256 byte pieces, then generated
// word pieces with descending scores. It lets other engines (which refuse a
// file without a tokenizer) load the benchmark files.
func syntheticVocab(n int) map[string]any {
	tokens := []string{"<unk>", "<s>", "</s>"}
	types := []int32{tokenizer.TokenUnknown, tokenizer.TokenControl, tokenizer.TokenControl}
	for b := 0; b < 256; b++ {
		tokens = append(tokens, fmt.Sprintf("<0x%02X>", b))
		types = append(types, tokenizer.TokenByte)
	}
	seen := map[string]bool{}
	letters := "etaoinshrdlcumwfgypbvkjxqz"
	r := model.SplitMix64{State: 7}
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

func usage() {
	fmt.Fprintln(os.Stderr, "usage:\n  semantic-gguf quantize --type TYPE IN OUT\n  semantic-gguf random --shape 15M|42M|110M --type TYPE [--seed N] OUT")
	os.Exit(2)
}

// exit ends the program: status 1 with the error, or 0.
func exit(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "semantic-gguf:", err)
		os.Exit(1)
	}
	os.Exit(0)
}
