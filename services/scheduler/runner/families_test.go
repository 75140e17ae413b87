package runner

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
	"github.com/semantic-kv/semantic/pkg/chat"
	"github.com/semantic-kv/semantic/pkg/gguf"
	"github.com/semantic-kv/semantic/pkg/model"
	"github.com/semantic-kv/semantic/pkg/testmodels"
)

// familyFile writes a random-weight GGUF of one model family with the Llama
// 3.2 byte-level BPE vocabulary (for Qwen, its first two reserved special
// tokens renamed to ChatML's <|im_start|> and <|im_end|>, pre-tokenizer
// qwen2, no BOS) and the family's real chat template.
func familyFile(t *testing.T, arch model.Arch, tmpl string) string {
	t.Helper()
	v, _ := testmodels.Llama3(t)
	src, err := os.ReadFile(filepath.Join("..", "..", "..", "pkg", "chat", "testdata", tmpl))
	if err != nil {
		t.Fatal(err)
	}
	c := model.Config{Arch: arch, Dim: 64, HiddenDim: 128, Layers: 2, Heads: 4, KVHeads: 2,
		Vocab: testmodels.Llama3Vocabulary, SeqLen: 512, NormEps: 1e-5, RopeTheta: 5e5}
	if arch == model.ArchQwen3 {
		c.HeadSize = 32
	}
	m, err := model.Random("family-"+string(arch), c, 21)
	if err != nil {
		t.Fatal(err)
	}
	meta := map[string]any{
		"tokenizer.ggml.model":      "gpt2",
		"tokenizer.ggml.token_type": v.Types,
		"tokenizer.ggml.merges":     v.Merges,
		"tokenizer.chat_template":   string(src),
	}
	tokens := slices.Clone(v.Tokens)
	if arch == model.ArchLlama {
		if err := m.SetRopeFreqs(model.Llama3RopeFreqs(c.HeadDim(), float64(c.RopeTheta), 32, 1, 4, 8192)); err != nil {
			t.Fatal(err)
		}
		meta["tokenizer.ggml.pre"] = "llama-bpe"
		meta["tokenizer.ggml.bos_token_id"] = uint32(testmodels.Llama3BOS)
		meta["tokenizer.ggml.eos_token_id"] = uint32(testmodels.Llama3EndOfText)
		meta["tokenizer.ggml.eot_token_id"] = uint32(testmodels.Llama3EOT)
		meta["tokenizer.ggml.add_bos_token"] = true
	} else {
		tokens[128002], tokens[128003] = "<|im_start|>", "<|im_end|>"
		meta["tokenizer.ggml.pre"] = "qwen2"
		meta["tokenizer.ggml.eos_token_id"] = uint32(128003)
		meta["tokenizer.ggml.add_bos_token"] = false
	}
	meta["tokenizer.ggml.tokens"] = tokens
	w, err := model.WriteGGUF(m, model.GGUFOptions{Type: gguf.TensorQ8_0, Metadata: meta})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), string(arch)+".gguf")
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestModelFamiliesServeConversations: a Llama 3.x-style file (rope factors,
// Llama 3.2 template with header tokens) and Qwen2 / Qwen3 files (ChatML,
// biases or Q/K norms, NEOX rope) load in the real scheduler; a conversation
// with a system prompt renders to exactly the tokens the model's template and
// tokenizer give (header and turn markers as single special tokens, BOS once
// for Llama, none for Qwen), the end-of-turn token is an end token, and the
// same conversation sent again is served warm with the same tokens.
func TestModelFamiliesServeConversations(t *testing.T) {
	msgs := []*schedulerv1.ChatMessage{
		{Role: "system", Content: "You are terse. <|eot_id|><|im_end|> are just text here."},
		{Role: "user", Content: "Name three colours, 日本語 too."},
	}
	for _, fc := range []struct {
		arch   model.Arch
		tmpl   string
		marker string // a special token the rendering must contain once per message
		eot    int
	}{
		{model.ArchLlama, "llama3.2-instruct.jinja", "<|start_header_id|>", testmodels.Llama3EOT},
		{model.ArchQwen2, "qwen2.5.jinja", "<|im_start|>", 128003},
		{model.ArchQwen3, "chatml.jinja", "<|im_start|>", 128003},
	} {
		t.Run(string(fc.arch), func(t *testing.T) {
			path := familyFile(t, fc.arch, fc.tmpl)
			m, err := model.Load(path, "")
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if m.Config.Arch != fc.arch || m.Info.Tokenizer != "bpe" || !m.Info.ChatTemplate || !slices.Contains(m.EndTokens(), fc.eot) {
				t.Fatalf("model %+v info %+v end tokens %v", m.Config, m.Info, m.EndTokens())
			}
			cm := make([]chat.Message, len(msgs))
			for i, x := range msgs {
				cm[i] = chat.Message{Role: x.GetRole(), Content: x.GetContent()}
			}
			want, err := m.ChatTokens(cm)
			if err != nil {
				t.Fatal(err)
			}
			marker := m.Tokenizer.EncodeSpecial(fc.marker, false)
			if len(marker) != 1 || count(want, marker[0]) < len(msgs)+1 {
				t.Fatalf("rendering %v lacks %s as one special token per turn", want, fc.marker)
			}
			if bos := count(want, testmodels.Llama3BOS); (fc.arch == model.ArchLlama) != (bos == 1) || bos > 1 {
				t.Fatalf("BOS appears %d times", bos)
			}
			// The user's text spells the end-of-turn markers but is not one.
			if count(want, fc.eot) != 2 { // system and user turns end with it (ChatML: <|im_end|>; Llama: <|eot_id|>)
				t.Fatalf("end-of-turn token appears %d times in %v", count(want, fc.eot), want)
			}

			cfg := testConfig()
			cfg.Model = "gguf:" + path
			ts := startScheduler(t, t.TempDir(), cfg)
			req := &schedulerv1.GenerateRequest{AgentId: "a", Messages: msgs, MaxTokens: 12}
			cold := mustGenerate(t, ts.client, req)
			if int(cold.usage.GetPromptTokens()) != len(want) || cold.usage.GetCachedTokens() != 0 {
				t.Fatalf("cold usage %+v, want %d prompt tokens", cold.usage, len(want))
			}
			warm := mustGenerate(t, ts.client, req)
			if !slices.Equal(warm.tokens, cold.tokens) || warm.text != cold.text {
				t.Fatalf("warm %v %q != cold %v %q", warm.tokens, warm.text, cold.tokens, cold.text)
			}
			if int(warm.usage.GetCachedTokens()) != len(want)-1 {
				t.Fatalf("warm reused %d tokens, want %d", warm.usage.GetCachedTokens(), len(want)-1)
			}
		})
	}
}

func count(ids []int, id int) (n int) {
	for _, x := range ids {
		if x == id {
			n++
		}
	}
	return n
}
