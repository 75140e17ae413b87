package model

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/semantic-kv/semantic/pkg/chat"
	"github.com/semantic-kv/semantic/pkg/gguf"
	"github.com/semantic-kv/semantic/pkg/tokenizer"
)

// SupportedTokenizers are the tokenizer.ggml.model values LoadGGUF accepts
// (a file without one loads without a tokenizer: callers send token ids):
// "llama" (SentencePiece) and "gpt2" (byte-level BPE, with the
// pre-tokenizers of tokenizer.SupportedPreTokenizers).
var SupportedTokenizers = []string{"llama", "gpt2"}

// endOfTurnTexts are control tokens that end an assistant turn in the chat
// formats of common families, or end the text (Llama 3's <|end_of_text|>
// when EOS is <|eot_id|>): with the file's eot_token_id and eom_token_id,
// the tokens that end generation besides EOS, as llama.cpp's end-of-
// generation set.
var endOfTurnTexts = []string{"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<|end_of_text|>"}

// vocabKeys are the tokenizer.* keys both tokenizer families read.
type vocabKeys struct {
	tokens             []string
	types              []int32 // nil when the file has none
	bos, eos, unk, pad int     // -1: none
}

// loadVocab builds the tokenizer, special ids, end-of-generation tokens and
// chat template from the tokenizer.* keys. A file without
// tokenizer.ggml.model has no tokenizer.
//
// BOS: m.BOS is the BOS id only when the vocabulary asks for it
// (tokenizer.ggml.add_bos_token, whose default is llama.cpp's: true for
// SentencePiece and the Llama 3 pre-tokenizers, false for other byte-level
// BPE vocabularies such as Qwen's). Callers prepend m.BOS when it is not
// -1, and ChatTokens only when the template did not write it, so Llama 3
// gets <|begin_of_text|> exactly once and Qwen none.
func loadVocab(f *gguf.File, m *Model) error {
	kind, err := f.String("tokenizer.ggml.model")
	if errors.Is(err, gguf.ErrMissingKey) {
		return nil
	}
	if err != nil {
		return err
	}
	if !slices.Contains(SupportedTokenizers, kind) {
		return fmt.Errorf("%w: tokenizer.ggml.model %q; supported tokenizers: llama (SentencePiece), gpt2 (byte-level BPE)", ErrUnsupported, kind)
	}
	k, err := readVocabKeys(f, m.Config.Vocab)
	if err != nil {
		return err
	}
	var tok tokenizer.Tokenizer
	addBOS := true
	switch kind {
	case "llama":
		v := tokenizer.SPMVocab{Tokens: k.tokens, Types: k.types, BOS: k.bos, EOS: k.eos, UNK: k.unk, PAD: k.pad, AddBOS: true, AddSpacePrefix: true}
		if v.Scores, err = f.Float32s("tokenizer.ggml.scores"); err != nil && !errors.Is(err, gguf.ErrMissingKey) {
			return err
		}
		if err := readBool(f, "tokenizer.ggml.add_bos_token", &v.AddBOS); err != nil {
			return err
		}
		if err := readBool(f, "tokenizer.ggml.add_space_prefix", &v.AddSpacePrefix); err != nil {
			return err
		}
		if tok, err = tokenizer.NewSentencePiece(v); err != nil {
			return err
		}
		addBOS = v.AddBOS
	case "gpt2":
		if tok, addBOS, err = loadBPE(f, k); err != nil {
			return err
		}
	}
	m.Tokenizer = tok
	m.Info.Tokenizer = tok.Kind()
	m.EOS = k.eos
	if addBOS {
		m.BOS = k.bos
	}
	if m.StopTokens, err = stopTokens(f, k, m.EOS); err != nil {
		return err
	}
	return loadTemplate(f, m, k)
}

// loadBPE builds a byte-level BPE tokenizer from tokenizer.ggml.merges and
// tokenizer.ggml.pre (absent: llama.cpp's "default"); addBOS is
// tokenizer.ggml.add_bos_token or its default for the pre-tokenizer.
func loadBPE(f *gguf.File, k vocabKeys) (_ tokenizer.Tokenizer, addBOS bool, err error) {
	v := tokenizer.BPEVocab{Tokens: k.tokens, Types: k.types, BOS: k.bos, EOS: k.eos, UNK: k.unk, PAD: k.pad}
	if v.Pre, err = f.String("tokenizer.ggml.pre"); err != nil && !errors.Is(err, gguf.ErrMissingKey) {
		return nil, false, err
	}
	if v.Merges, err = f.Strings("tokenizer.ggml.merges"); err != nil {
		return nil, false, err
	}
	v.AddBOS = tokenizer.BPEDefaultAddBOS(v.Pre)
	if err := readBool(f, "tokenizer.ggml.add_bos_token", &v.AddBOS); err != nil {
		return nil, false, err
	}
	tok, err := tokenizer.NewBPE(v)
	if errors.Is(err, tokenizer.ErrUnsupportedPreTokenizer) {
		return nil, false, fmt.Errorf("%w: tokenizer.ggml.pre: %w", ErrUnsupported, err)
	}
	if err != nil {
		return nil, false, err
	}
	return tok, v.AddBOS, nil
}

// readVocabKeys reads the tokens (as many as the embedding has rows), their
// types and the special ids.
func readVocabKeys(f *gguf.File, vocab int) (vocabKeys, error) {
	k := vocabKeys{bos: -1, eos: -1, unk: -1, pad: -1}
	var err error
	if k.tokens, err = f.Strings("tokenizer.ggml.tokens"); err != nil {
		return k, err
	}
	if len(k.tokens) != vocab {
		return k, fmt.Errorf("%w: tokenizer.ggml.tokens has %d tokens but token_embd.weight has %d rows", ErrBadConfig, len(k.tokens), vocab)
	}
	if types, err := f.Ints("tokenizer.ggml.token_type"); err == nil {
		k.types = make([]int32, len(types))
		for i, t := range types {
			if t < math.MinInt32 || t > math.MaxInt32 {
				return k, fmt.Errorf("%w: tokenizer.ggml.token_type[%d] = %d", ErrBadConfig, i, t)
			}
			k.types[i] = int32(t)
		}
	} else if !errors.Is(err, gguf.ErrMissingKey) {
		return k, err
	}
	for _, s := range []struct {
		dst *int
		key string
	}{
		{&k.bos, "tokenizer.ggml.bos_token_id"},
		{&k.eos, "tokenizer.ggml.eos_token_id"},
		{&k.unk, "tokenizer.ggml.unknown_token_id"},
		{&k.pad, "tokenizer.ggml.padding_token_id"},
	} {
		id, ok, err := tokenID(f, s.key)
		if err != nil || !ok {
			if err != nil {
				return k, err
			}
			continue
		}
		if id >= int64(len(k.tokens)) {
			return k, fmt.Errorf("%w: %s = %d is outside the vocabulary (%d tokens)", ErrBadConfig, s.key, id, len(k.tokens))
		}
		*s.dst = int(id)
	}
	return k, nil
}

// tokenID reads a token id key: ok is false when it is absent or says
// "none" (converters write -1, as int32 or as uint32 0xFFFFFFFF).
func tokenID(f *gguf.File, key string) (id int64, ok bool, err error) {
	id, err = f.Int(key)
	switch {
	case errors.Is(err, gguf.ErrMissingKey) || (err == nil && (id == -1 || id == math.MaxUint32)):
		return 0, false, nil
	case err != nil:
		return 0, false, err
	case id < 0:
		return 0, false, fmt.Errorf("%w: %s = %d", ErrBadConfig, key, id)
	}
	return id, true, nil
}

// readBool sets *dst to the boolean key's value, if the file has it.
func readBool(f *gguf.File, key string, dst *bool) error {
	b, err := f.Bool(key)
	switch {
	case errors.Is(err, gguf.ErrMissingKey):
		return nil
	case err != nil:
		return err
	}
	*dst = b
	return nil
}

// stopTokens are the tokens that end generation besides EOS: the file's
// tokenizer.ggml.eot_token_id and eom_token_id (ignored when outside the
// vocabulary, as llama.cpp does), and the control and user-defined tokens
// (any token, in a file without types) whose text is one of
// endOfTurnTexts.
func stopTokens(f *gguf.File, k vocabKeys, eos int) ([]int, error) {
	stops := map[int]bool{}
	for _, key := range []string{"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"} {
		id, ok, err := tokenID(f, key)
		if err != nil {
			return nil, err
		}
		if ok && id < int64(len(k.tokens)) {
			stops[int(id)] = true
		}
	}
	for id, t := range k.tokens {
		if (k.types == nil || k.types[id] == tokenizer.TokenControl || k.types[id] == tokenizer.TokenUserDefined) && slices.Contains(endOfTurnTexts, t) {
			stops[id] = true
		}
	}
	delete(stops, eos)
	var out []int
	for id := range stops {
		out = append(out, id)
	}
	sort.Ints(out)
	return out, nil
}

// loadTemplate compiles tokenizer.chat_template, or sets the plain fallback
// when the file has none.
func loadTemplate(f *gguf.File, m *Model, k vocabKeys) error {
	src, err := f.String("tokenizer.chat_template")
	switch {
	case errors.Is(err, gguf.ErrMissingKey):
		m.Template = chat.Plain()
		return nil
	case err != nil:
		return err
	}
	text := func(id int) string {
		if id < 0 {
			return ""
		}
		return k.tokens[id]
	}
	// A template this engine cannot render does not stop the model from
	// serving prompts; conversations then fail with the reason.
	m.Info.ChatTemplate = true
	if m.Template, err = chat.New(src, text(k.bos), text(k.eos)); err != nil {
		m.Template, m.TemplateErr = nil, fmt.Errorf("tokenizer.chat_template: %w", err)
	}
	return nil
}
