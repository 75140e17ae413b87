package engine

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/semantic-kv/semantic/pkg/model"
)

// TestStories260KReference checks the forward pass against llama2.c's run.c:
// the greedy ids for shared/models/stories260K.bin, and for the same weights
// as GGUF (stories260K.gguf, written by llama.cpp's converter), must match
// exactly.
func TestStories260KReference(t *testing.T) {
	for _, ref := range []string{"llama2c:" + modelsFile(t, "stories260K.bin"), "gguf:" + modelsFile(t, "stories260K.gguf")} {
		t.Run(ref[:strings.Index(ref, ":")], func(t *testing.T) {
			m, err := model.Load(ref, "")
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			checkStoriesReference(t, m)
		})
	}
}

func checkStoriesReference(t *testing.T, m *model.Model) {
	raw, err := os.ReadFile(modelsFile(t, "stories260K_greedy_reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Cases []struct {
			Prompt       []uint32 `json:"prompt_token_ids"`
			Steps        int      `json:"steps_total"`
			Continuation []uint32 `json:"greedy_continuation"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Cases) == 0 {
		t.Fatal("no cases in reference")
	}
	for _, tpb := range []int{16, 7} {
		e := newEngine(t, m, tpb, 2)
		for ci, c := range doc.Cases {
			// run.c: positions 0..steps-1; the prompt is forced, every other
			// position's next token is the argmax.
			n := c.Steps - len(c.Prompt) + 1
			if n != len(c.Continuation) {
				t.Fatalf("case %d: steps %d, prompt %d, but %d continuation ids", ci, c.Steps, len(c.Prompt), len(c.Continuation))
			}
			s := newSeq(e, c.Steps)
			got, _ := greedy(t, e, s, c.Prompt, n)
			if !slices.Equal(got, c.Continuation) {
				for i := range got {
					if got[i] != c.Continuation[i] {
						t.Errorf("tpb %d case %d: first divergence at generated token %d: got %d want %d\n got %v\nwant %v", tpb, ci, i, got[i], c.Continuation[i], got, c.Continuation)
						break
					}
				}
			}
		}
	}
}
