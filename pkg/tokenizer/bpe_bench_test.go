package tokenizer

import (
	"testing"

	"github.com/semantic-kv/semantic/pkg/testmodels"
)

// BenchmarkBPEEncode encodes 10 KB of English prose with the Llama 3.2
// vocabulary (128,256 tokens, pre-tokenizer llama-bpe): "cached" is the
// steady state (the text's words in the word cache), "cold" empties the
// cache before every call, "nocache" encodes every word afresh;
// "merges/nocache" is the same vocabulary with the qwen2 pre-tokenizer,
// which does not take whole-word tokens as they are (ignore_merges), so
// every word is merged pair by pair. Run with
//
//	go test -run '^$' -bench BPEEncode -benchtime 2s ./tokenizer/
func BenchmarkBPEEncode(b *testing.B) {
	tok, _ := llama3(b)
	text := englishText(10 << 10)
	b.Logf("10 KB: %d tokens", len(tok.Encode(text, true)))
	cold := func(text string, bos bool) []int {
		for i := range tok.cache.slots {
			tok.cache.slots[i].Store(nil)
		}
		return tok.Encode(text, bos)
	}
	uncached := *tok
	uncached.cache = nil
	b.Run("cached", func(b *testing.B) { benchEncode(b, tok.Encode, text) })
	b.Run("cold", func(b *testing.B) { benchEncode(b, cold, text) })
	b.Run("nocache", func(b *testing.B) { benchEncode(b, uncached.Encode, text) })
	v, _ := testmodels.Llama3(b)
	merges, err := NewBPE(BPEVocab{Tokens: v.Tokens, Types: v.Types, Merges: v.Merges, Pre: "qwen2", BOS: -1, EOS: -1, UNK: -1, PAD: -1})
	if err != nil {
		b.Fatal(err)
	}
	merges.cache = nil
	b.Run("merges/nocache", func(b *testing.B) { benchEncode(b, merges.Encode, text) })
}

// BenchmarkNewBPE builds the Llama 3.2 tokenizer (128,256 tokens, 280,147
// merges): the tokenizer's share of loading a model.
func BenchmarkNewBPE(b *testing.B) {
	v, _ := testmodels.Llama3(b)
	for b.Loop() {
		if _, err := NewBPE(BPEVocab{Tokens: v.Tokens, Types: v.Types, Merges: v.Merges, Pre: "llama-bpe", BOS: 128000, EOS: 128001, UNK: -1, PAD: -1}); err != nil {
			b.Fatal(err)
		}
	}
}
