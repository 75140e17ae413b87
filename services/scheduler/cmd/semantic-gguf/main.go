// Command semantic-gguf writes GGUF model files with the project's own
// writer and reference quantizers: a float model quantized to another type,
// or random weights of a real model shape (for benchmarks against other
// engines on the same file).
//
//	semantic-gguf quantize --type Q8_0 IN OUT      IN: gguf:PATH, PATH.gguf or llama2c:PATH
//	semantic-gguf random --shape 42M --type Q4_0 OUT
//	semantic-gguf random --shape 42M --format llama2c OUT.bin   (also writes OUT.bin.tokenizer)
//
// A random model's weights depend only on --shape and --seed, so the GGUF
// file of any --type and the llama2.c checkpoint of the same shape and seed
// hold the same model: llama2.c's run.c reads the checkpoint (float32 only)
// and its tokenizer file, other engines read the GGUF file.
//
// TYPE is one matrix type (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K) or
// Q4_K_M, llama.cpp's mix of Q4_K and Q6_K (model.MixType). Matrices whose
// rows are not whole blocks of the type fall back to Q8_0 (K types, when
// the row is whole 32-blocks) or F16, as llama.cpp's quantizer falls back.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/semantic-kv/semantic/pkg/gguf"
	"github.com/semantic-kv/semantic/pkg/model"
	"github.com/semantic-kv/semantic/pkg/tokenizer"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	fs := flag.NewFlagSet("semantic-gguf "+os.Args[1], flag.ExitOnError)
	typ := fs.String("type", "F32", "matrix type: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, or the mix Q4_K_M")
	shape := fs.String("shape", "42M", "random: model shape (15M, 42M, 110M)")
	seed := fs.Uint64("seed", 42, "random: weight seed")
	format := fs.String("format", "gguf", "random: file format, gguf or llama2c (float32 checkpoint plus OUT.tokenizer in llama2.c's tokenizer.bin format)")
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
		c, ok := model.RandomShapes[*shape]
		if !ok {
			exit(fmt.Errorf("unknown shape %q (15M, 42M, 110M)", *shape))
		}
		m, err := model.Random("random-"+*shape, c, *seed)
		if err != nil {
			exit(err)
		}
		vocab := model.SyntheticVocab(c.Vocab)
		switch *format {
		case "gguf":
		case "llama2c":
			if *typ != "F32" {
				exit(fmt.Errorf("--format llama2c holds float32 weights only, not --type %s", *typ))
			}
			exit(writeLlama2c(m, vocab, fs.Arg(0)))
		default:
			exit(fmt.Errorf("--format: want gguf or llama2c, got %q", *format))
		}
		opts.Untied, opts.Metadata = true, vocab
		w, err := model.WriteGGUF(m, opts)
		if err != nil {
			exit(err)
		}
		exit(w.WriteFile(fs.Arg(0)))
	default:
		usage()
	}
}

// writeLlama2c writes m as a llama2.c checkpoint at out and vocab's pieces
// and scores as llama2.c's tokenizer.bin at out + ".tokenizer".
func writeLlama2c(m *model.Model, vocab map[string]any, out string) error {
	write := func(path string, fn func(io.Writer) error) error {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := fn(f); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	if err := write(out, func(w io.Writer) error { return model.WriteLlama2c(w, m) }); err != nil {
		return err
	}
	pieces, scores := vocab["tokenizer.ggml.tokens"].([]string), vocab["tokenizer.ggml.scores"].([]float32)
	return write(out+".tokenizer", func(w io.Writer) error { return tokenizer.WriteLlama2c(w, pieces, scores) })
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

func usage() {
	fmt.Fprintln(os.Stderr, "usage:\n  semantic-gguf quantize --type TYPE IN OUT\n  semantic-gguf random --shape 15M|42M|110M [--type TYPE | --format llama2c] [--seed N] OUT")
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
