package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
	"github.com/semantic-kv/semantic/pkg/chat"
	"github.com/semantic-kv/semantic/pkg/testmodels"
)

type storiesCase struct {
	PromptText   string   `json:"prompt_text"`
	PromptIDs    []uint32 `json:"prompt_token_ids"`
	Steps        int      `json:"steps_total"`
	Continuation []uint32 `json:"greedy_continuation"`
	Stdout       string   `json:"stdout_text"`
}

func storiesReference(t *testing.T) []storiesCase {
	raw, err := os.ReadFile(testmodels.File(t, "stories260K_greedy_reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ Cases []storiesCase }
	if err := json.Unmarshal(raw, &doc); err != nil || len(doc.Cases) == 0 {
		t.Fatalf("reference: %v (%d cases)", err, len(doc.Cases))
	}
	return doc.Cases
}

// TestStories260KGGUFServesRunC: the real GGUF file through the real
// scheduler over gRPC gives llama2.c run.c's prompt ids, greedy ids and text
// for every reference case, from a text prompt and from messages (the plain
// template of a model without one), cold and then warm.
func TestStories260KGGUFServesRunC(t *testing.T) {
	cfg := testConfig()
	cfg.Model = "gguf:" + testmodels.File(t, "stories260K.gguf")
	ts := startScheduler(t, t.TempDir(), cfg)
	ctx := context.Background()
	st, err := ts.client.GetStats(ctx, &schedulerv1.GetStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	mi := st.GetModelInfo()
	if mi.GetArchitecture() != "llama" || mi.GetFormat() != "gguf" || mi.GetTokenizer() != "sentencepiece" ||
		mi.GetContextLength() != 2048 || mi.GetName() != "stories260K" || mi.GetVocabSize() != 512 || !slices.Equal(mi.GetWeightTypes(), []string{"F32"}) ||
		mi.GetChatTemplate() || mi.GetParameters() == 0 {
		t.Fatalf("model info %v", mi)
	}
	for i, c := range storiesReference(t) {
		n := uint32(c.Steps - len(c.PromptIDs) + 1)
		check := func(what string, r *result) {
			t.Helper()
			if !slices.Equal(r.tokens, c.Continuation) {
				t.Fatalf("case %d %s: tokens %v\nwant %v", i, what, r.tokens, c.Continuation)
			}
			if c.PromptText != "" && c.PromptText+r.text != c.Stdout {
				t.Fatalf("case %d %s: text %q\nrun.c printed %q", i, what, c.PromptText+r.text, c.Stdout)
			}
		}
		agent := fmt.Sprintf("ids-%d", i)
		check("ids", mustGenerate(t, ts.client, &schedulerv1.GenerateRequest{AgentId: agent, PromptTokenIds: c.PromptIDs, MaxTokens: n}))
		if c.PromptText == "" {
			continue
		}
		for _, form := range []string{"prompt", "messages"} {
			// Its own salt: content-addressed blocks of the other forms'
			// agents must not make the first request warm.
			req := &schedulerv1.GenerateRequest{AgentId: fmt.Sprintf("%s-%d", form, i), MaxTokens: n, CacheSalt: form}
			if form == "prompt" {
				req.Prompt = c.PromptText
			} else {
				req.Messages = []*schedulerv1.ChatMessage{{Role: "user", Content: c.PromptText}}
			}
			cold := mustGenerate(t, ts.client, req)
			check(form+" cold", cold)
			if cold.usage.GetCachedTokens() != 0 || cold.usage.GetPromptTokens() != uint32(len(c.PromptIDs)) {
				t.Fatalf("case %d %s cold: usage %v", i, form, cold.usage)
			}
			// The agent's record starts with run.c's prompt ids.
			ag, err := ts.client.GetAgent(ctx, &schedulerv1.GetAgentRequest{AgentId: req.AgentId})
			if err != nil || !slices.Equal(ag.GetAgent().GetTokenIds()[:len(c.PromptIDs)], c.PromptIDs) ||
				ag.GetModel().GetCacheTag() != ag.GetAgent().GetModelTag() {
				t.Fatalf("case %d %s: agent %v, %v", i, form, ag, err)
			}
			warm := mustGenerate(t, ts.client, req)
			check(form+" warm", warm)
			if warm.usage.GetCachedTokens() == 0 {
				t.Fatalf("case %d %s warm: nothing reused: %v", i, form, warm.usage)
			}
		}
	}
	checkPoolQuiet(t, ts.pool)
}

// TestStoriesChatStaysWarm: a conversation resent turn by turn reuses the
// cached prefix: the second turn's cached tokens cover the first turn's
// prompt and all of its reply.
func TestStoriesChatStaysWarm(t *testing.T) {
	cfg := testConfig()
	cfg.Model = "gguf:" + testmodels.File(t, "stories260K.gguf")
	ts := startScheduler(t, t.TempDir(), cfg)
	msgs := []*schedulerv1.ChatMessage{{Role: "user", Content: "Lily and Tom went to the park."}}
	first := mustGenerate(t, ts.client, &schedulerv1.GenerateRequest{AgentId: "chat", Messages: msgs, MaxTokens: 24})
	msgs = append(msgs, &schedulerv1.ChatMessage{Role: "assistant", Content: first.text},
		&schedulerv1.ChatMessage{Role: "user", Content: " Then they went home."})
	second := mustGenerate(t, ts.client, &schedulerv1.GenerateRequest{AgentId: "chat", Messages: msgs, MaxTokens: 8})
	stored := first.usage.GetPromptTokens() + uint32(len(first.tokens))
	t.Logf("turn 2: %d of %d prompt tokens cached; turn 1 stored %d", second.usage.GetCachedTokens(), second.usage.GetPromptTokens(), stored)
	if second.usage.GetCachedTokens() < stored {
		t.Fatalf("turn 2 reused %d tokens, turn 1's prompt and reply are %d", second.usage.GetCachedTokens(), stored)
	}
	// Errors name the field. Text that cannot fit the context is refused
	// before it is tokenized.
	huge := strings.Repeat("a", ts.Model.MaxTextBytes()+1)
	for _, bad := range []*schedulerv1.GenerateRequest{
		{AgentId: "x", MaxTokens: 1, Prompt: huge},
		{AgentId: "x", MaxTokens: 1, Messages: []*schedulerv1.ChatMessage{{Role: "user", Content: huge}}},
		{AgentId: "x", MaxTokens: 1, Messages: []*schedulerv1.ChatMessage{{Role: "wizard", Content: "hi"}}},
		{AgentId: "x", MaxTokens: 1, Messages: msgs, Prompt: "also"},
		{AgentId: "x", MaxTokens: 1, Messages: msgs, Append: true},
	} {
		_, err := generate(context.Background(), ts.client, bad)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "messages") &&
			!strings.Contains(err.Error(), "append") && !strings.Contains(err.Error(), "prompt") {
			t.Fatalf("%.80v: %v", bad, err)
		}
		if len(bad.GetPrompt()) > 1000 || len(bad.GetMessages()) == 1 && len(bad.GetMessages()[0].GetContent()) > 1000 {
			if !strings.Contains(err.Error(), "bytes") { // refused by size, not after tokenizing
				t.Fatalf("huge text: %v", err)
			}
		}
	}
}

// TestStoriesChatRealignsReply: when the model samples a reply whose text
// tokenizes differently (" b" "o" "x" where the tokenizer writes " box"), the
// next turn still reuses all of it: the stored ids stand in for the text
// they spell. The turn computes exactly what a cold run of the same ids
// computes.
func TestStoriesChatRealignsReply(t *testing.T) {
	cfg := testConfig()
	cfg.Model = "gguf:" + testmodels.File(t, "stories260K.gguf")
	ts := startScheduler(t, t.TempDir(), cfg)
	ctx := context.Background()
	user := []*schedulerv1.ChatMessage{{Role: "user", Content: "Lily and Tom went to the park."}}
	for seed := uint64(0); seed < 40; seed++ {
		agent := fmt.Sprintf("realign-%d", seed)
		req := &schedulerv1.GenerateRequest{AgentId: agent, Messages: user, MaxTokens: 30, Seed: seed}
		if seed > 0 {
			req.Temperature = 1.5
		}
		first := mustGenerate(t, ts.client, req)
		ag, err := ts.client.GetAgent(ctx, &schedulerv1.GetAgentRequest{AgentId: agent})
		if err != nil {
			t.Fatal(err)
		}
		stored := ag.GetAgent().GetTokenIds()
		conv := append(slices.Clone(user), &schedulerv1.ChatMessage{Role: "assistant", Content: first.text},
			&schedulerv1.ChatMessage{Role: "user", Content: " Then they went home."})
		canon, err := ts.Model.ChatTokens(toChat(conv))
		if err != nil {
			t.Fatal(err)
		}
		lcp := 0
		for lcp < len(stored) && lcp < len(canon) && int(stored[lcp]) == canon[lcp] {
			lcp++
		}
		if lcp == len(stored) {
			continue // the reply tokenizes as sampled: nothing to realign
		}
		second := mustGenerate(t, ts.client, &schedulerv1.GenerateRequest{AgentId: agent, Messages: conv, MaxTokens: 8})
		t.Logf("seed %d: reply %q; its ids and the text's agree for %d of %d stored tokens; turn 2 reused %d of %d",
			seed, first.text, lcp, len(stored), second.usage.GetCachedTokens(), second.usage.GetPromptTokens())
		if second.usage.GetCachedTokens() < uint32(len(stored)) {
			t.Fatalf("turn 2 reused %d tokens, turn 1 stored %d", second.usage.GetCachedTokens(), len(stored))
		}
		// The context turn 2 ran on: the stored ids, then the new turn's.
		ag, err = ts.client.GetAgent(ctx, &schedulerv1.GetAgentRequest{AgentId: agent})
		if err != nil {
			t.Fatal(err)
		}
		context2 := ag.GetAgent().GetTokenIds()[:second.usage.GetPromptTokens()]
		if !slices.Equal(context2[:len(stored)], stored) {
			t.Fatalf("turn 2's context does not start with turn 1's ids")
		}
		cold := mustGenerate(t, ts.client, &schedulerv1.GenerateRequest{AgentId: agent + "-cold", PromptTokenIds: context2, MaxTokens: 8, CacheSalt: "cold"})
		if cold.usage.GetCachedTokens() != 0 || !slices.Equal(cold.tokens, second.tokens) {
			t.Fatalf("warm %v, cold run of the same ids %v (cached %d)", second.tokens, cold.tokens, cold.usage.GetCachedTokens())
		}
		checkPoolQuiet(t, ts.pool)
		return
	}
	t.Fatal("no reply in 40 tried needed realigning: pick other seeds")
}

func toChat(in []*schedulerv1.ChatMessage) []chat.Message {
	out := make([]chat.Message, len(in))
	for i, m := range in {
		out[i] = chat.Message{Role: m.GetRole(), Content: m.GetContent()}
	}
	return out
}
