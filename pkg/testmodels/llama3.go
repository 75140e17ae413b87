package testmodels

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
)

// Llama3Vocab is the Llama 3.2 byte-level BPE vocabulary of
// SharedDir/tokenizers/llama3.2, laid out as a GGUF file's tokenizer.ggml.*
// keys hold it (tokenizer.ggml.pre "llama-bpe").
type Llama3Vocab struct {
	// Tokens: encoder.json's 128,000 tokens in id order, then Llama 3.2's
	// 256 special tokens (128000 <|begin_of_text|>, 128001
	// <|end_of_text|>, 128006 <|start_header_id|>, 128007
	// <|end_header_id|>, 128008 <|eom_id|>, 128009 <|eot_id|>, ... and
	// <|reserved_special_token_N|> for the rest).
	Tokens []string
	// Types: 1 (normal) for encoder.json's tokens, 3 (control) for the
	// special ones.
	Types []int32
	// Merges: vocab.bpe's lines, in rank order.
	Merges []string
}

// Llama 3.2's special token ids.
const (
	Llama3BOS         = 128000 // <|begin_of_text|>
	Llama3EndOfText   = 128001 // <|end_of_text|>
	Llama3StartHeader = 128006 // <|start_header_id|>
	Llama3EndHeader   = 128007 // <|end_header_id|>
	Llama3EOM         = 128008 // <|eom_id|>
	Llama3EOT         = 128009 // <|eot_id|>
	Llama3Vocabulary  = 128256 // tokens in all
)

// TokenizerCase is a text and the ids an independent implementation
// tokenized it to (no BOS).
type TokenizerCase struct {
	Text string `json:"text"`
	// IDs are reference.json's ids, from ollama v0.17.4's tokenizer.
	IDs []int `json:"ids"`
	// Want are the ids a byte-level BPE that merges the leftmost of
	// equal-rank pairs first gives, as Hugging Face tokenizers, llama.cpp
	// and tiktoken (Llama 3's own) do: IDs, except for the texts of
	// OllamaTies.
	Want []int `json:"-"`
}

// OllamaTies are the reference texts whose IDs differ from the
// leftmost-first ids, and those ids: ollama's merge queue orders pairs by
// rank alone, so equal-rank pairs merge in its heap's order. Its 32 a's
// are aaa aaaaaaaa aaaa aa aaaaaaaa aaa aaaa (33746 70540 29558 5418 70540
// 33746 29558); Hugging Face tokenizers, llama.cpp and tiktoken give four
// aaaaaaaa (70540).
var OllamaTies = map[string][]int{strings.Repeat("a", 32): {70540, 70540, 70540, 70540}}

var llama3 struct {
	once  sync.Once
	vocab *Llama3Vocab
	cases []TokenizerCase
	err   error
}

// Llama3 loads the Llama 3.2 vocabulary (once per process; callers must not
// modify it) and the reference tokenizations of reference.json, skipping
// the test when the files are missing (failing it when CI=true). Test
// tokenizers against each case's Want.
func Llama3(t testing.TB) (*Llama3Vocab, []TokenizerCase) {
	t.Helper()
	enc := Shared(t, "tokenizers/llama3.2/encoder.json")
	bpe := Shared(t, "tokenizers/llama3.2/vocab.bpe")
	ref := Shared(t, "tokenizers/llama3.2/reference.json")
	llama3.once.Do(func() { llama3.vocab, llama3.cases, llama3.err = loadLlama3(enc, bpe, ref) })
	if llama3.err != nil {
		t.Fatal(llama3.err)
	}
	return llama3.vocab, llama3.cases
}

func loadLlama3(encPath, bpePath, refPath string) (*Llama3Vocab, []TokenizerCase, error) {
	var enc map[string]int
	if err := readJSON(encPath, &enc); err != nil {
		return nil, nil, err
	}
	v := &Llama3Vocab{Tokens: make([]string, Llama3Vocabulary), Types: make([]int32, Llama3Vocabulary)}
	for tok, id := range enc {
		if id < 0 || id >= Llama3BOS || v.Tokens[id] != "" {
			return nil, nil, fmt.Errorf("%s: token %q has id %d (out of range or taken)", encPath, tok, id)
		}
		v.Tokens[id], v.Types[id] = tok, 1
	}
	names := map[int]string{
		128000: "<|begin_of_text|>", 128001: "<|end_of_text|>", 128004: "<|finetune_right_pad_id|>",
		128006: "<|start_header_id|>", 128007: "<|end_header_id|>", 128008: "<|eom_id|>", 128009: "<|eot_id|>",
		128010: "<|python_tag|>",
	}
	reserved := 0
	for id := Llama3BOS; id < Llama3Vocabulary; id++ {
		name, ok := names[id]
		if !ok {
			name = fmt.Sprintf("<|reserved_special_token_%d|>", reserved)
			reserved++
		}
		v.Tokens[id], v.Types[id] = name, 3
	}
	data, err := os.ReadFile(bpePath)
	if err != nil {
		return nil, nil, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if line != "" && !strings.HasPrefix(line, "#version") {
			v.Merges = append(v.Merges, line)
		}
	}
	var ref struct {
		Cases []TokenizerCase `json:"cases"`
	}
	if err := readJSON(refPath, &ref); err != nil {
		return nil, nil, err
	}
	if len(v.Merges) == 0 || len(ref.Cases) == 0 {
		return nil, nil, fmt.Errorf("%s, %s: no merges or no cases", bpePath, refPath)
	}
	for i := range ref.Cases {
		c := &ref.Cases[i]
		c.Want = c.IDs
		if ids, ok := OllamaTies[c.Text]; ok {
			c.Want = ids
		}
	}
	return v, ref.Cases, nil
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
