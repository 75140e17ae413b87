package httpapi

// Integration tests: the real bin/scheduler (embedded pool) serving the real
// stories260K model, driven with the official OpenAI and Anthropic Go SDKs.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	anthropicoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
	"github.com/semantic-kv/semantic/pkg/testmodels"
	"github.com/semantic-kv/semantic/pkg/testproc"
	"github.com/semantic-kv/semantic/services/scheduler/auth"
)

var (
	binOnce sync.Once
	binDir  string
)

// schedulerBinary builds bin/scheduler once per test run (TestMain removes it).
func schedulerBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "semantic-httpapi-bin-")
		if err != nil {
			t.Fatal(err)
		}
		testproc.Build(t, dir, "./services/scheduler")
		binDir = dir
	})
	if binDir == "" {
		t.Fatal("building the scheduler failed in an earlier test")
	}
	return filepath.Join(binDir, "scheduler")
}

// node is a running scheduler with its HTTP API and gRPC clients.
type node struct {
	*testproc.Proc
	base   string // http://host:port
	hc     *http.Client
	grpc   schedulerv1.SchedulerServiceClient
	oai    openai.Client
	claude anthropic.Client
}

func startNode(t *testing.T, args ...string) *node {
	t.Helper()
	if testing.Short() {
		t.Skip("starts the scheduler binary")
	}
	bin := schedulerBinary(t)
	args = append([]string{"--log-format", "json", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
		"--http-listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--block-tokens", "8"}, args...)
	p := testproc.Start(t, exec.Command(bin, args...))
	if p.HTTPAddr == "" {
		t.Fatalf("no HTTP address logged:\n%s", p.Logs())
	}
	conn, err := grpc.NewClient(p.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(func() {
		conn.Close()
		hc.CloseIdleConnections()
	})
	n := &node{Proc: p, base: "http://" + p.HTTPAddr, hc: hc, grpc: schedulerv1.NewSchedulerServiceClient(conn)}
	// No retries: the tests see every answer as it is.
	n.oai = openai.NewClient(option.WithBaseURL(n.base+"/v1/"), option.WithAPIKey("unused"), option.WithHTTPClient(hc), option.WithMaxRetries(0))
	n.claude = anthropic.NewClient(anthropicoption.WithBaseURL(n.base+"/"), anthropicoption.WithAPIKey("unused"),
		anthropicoption.WithHTTPClient(hc), anthropicoption.WithMaxRetries(0))
	return n
}

func startStories(t *testing.T, args ...string) *node {
	t.Helper()
	return startNode(t, append([]string{"--model", "gguf:" + testmodels.File(t, "stories260K.gguf")}, args...)...)
}

const stories = "stories260K"

// greedy asks the Anthropic SDK for temperature 0 (its params have no
// temperature field any more; the API still takes it).
var greedy = anthropicoption.WithJSONSet("temperature", 0)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// A conversation through the OpenAI SDK: the models list, a first turn, a
// second turn that resends the first (its cached tokens cover all of the
// first turn's prompt and reply), streaming with usage, and completions.
func TestOpenAISDK(t *testing.T) {
	n := startStories(t)
	ctx := testCtx(t)
	models, err := n.oai.Models.List(ctx)
	if err != nil || len(models.Data) != 1 || models.Data[0].ID != stories {
		t.Fatalf("models: %v %v", models, err)
	}
	if !strings.Contains(models.Data[0].RawJSON(), `"context_length":2048`) {
		t.Fatalf("model: %s", models.Data[0].RawJSON())
	}

	// Rounds: greedy and sampled with a system prompt (its own per round, so
	// that the first turn is cold), and one whose sampled reply (" thick
	// bess ...") tokenizes differently as text than as the ids the model
	// drew, which the scheduler realigns (service/realign.go).
	for _, round := range []struct {
		system string
		temp   float64
		tokens int64
	}{{"Greedy: a story about Lily.", 0, 40}, {"Sampled: a story about Lily.", 1.2, 40}, {"", 1.5, 30}} {
		temp := round.temp
		msgs := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Lily and Tom went to the park.")}
		if round.system != "" {
			msgs = append([]openai.ChatCompletionMessageParamUnion{openai.SystemMessage(round.system)}, msgs...)
		}
		params := openai.ChatCompletionNewParams{Model: stories, Messages: msgs, MaxTokens: openai.Int(round.tokens),
			Temperature: openai.Float(temp), Seed: openai.Int(4)}
		agent := option.WithHeader(HeaderAgentID, fmt.Sprintf("chat-%v", temp))
		first, err := n.oai.Chat.Completions.New(ctx, params, agent)
		if err != nil {
			t.Fatalf("turn 1: %v\n%s", err, n.Logs())
		}
		u1 := first.Usage
		if first.Choices[0].Message.Content == "" || u1.CompletionTokens == 0 || u1.PromptTokensDetails.CachedTokens != 0 ||
			first.Object != "chat.completion" || first.Model != stories {
			t.Fatalf("turn 1: %s", first.RawJSON())
		}
		params.Messages = append(msgs, first.Choices[0].Message.ToParam(), openai.UserMessage(" Then they went home."))
		second, err := n.oai.Chat.Completions.New(ctx, params, agent)
		if err != nil {
			t.Fatalf("turn 2: %v", err)
		}
		u2 := second.Usage
		prev := u1.PromptTokens + u1.CompletionTokens
		t.Logf("temperature %v, reply %q: turn 1 prompt %d + reply %d = %d tokens; turn 2: %d of %d prompt tokens cached",
			temp, first.Choices[0].Message.Content, u1.PromptTokens, u1.CompletionTokens, prev, u2.PromptTokensDetails.CachedTokens, u2.PromptTokens)
		if u2.PromptTokensDetails.CachedTokens < prev {
			t.Fatalf("turn 2 reused %d tokens; turn 1's prompt and reply are %d", u2.PromptTokensDetails.CachedTokens, prev)
		}
	}

	// Streaming, with usage: the same text as the same request unstreamed
	// (greedy), the role first, the finish reason, the usage chunk.
	params := openai.ChatCompletionNewParams{Model: stories, Messages: []openai.ChatCompletionMessageParamUnion{
		openai.UserMessage("Once upon a time")}, MaxTokens: openai.Int(24), Temperature: openai.Float(0)}
	whole, err := n.oai.Chat.Completions.New(ctx, params, option.WithHeader(HeaderAgentID, "whole"))
	if err != nil {
		t.Fatal(err)
	}
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	st := n.oai.Chat.Completions.NewStreaming(ctx, params, option.WithHeader(HeaderAgentID, "streamed"))
	acc := openai.ChatCompletionAccumulator{}
	chunks := 0
	for st.Next() {
		ch := st.Current()
		if chunks == 0 && (len(ch.Choices) != 1 || ch.Choices[0].Delta.Role != "assistant") {
			t.Fatalf("first chunk %s", ch.RawJSON())
		}
		chunks++
		acc.AddChunk(ch)
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	if acc.Choices[0].Message.Content != whole.Choices[0].Message.Content || acc.Choices[0].FinishReason != "length" ||
		acc.Usage.CompletionTokens != 24 || acc.Usage.PromptTokens != whole.Usage.PromptTokens || chunks < 5 {
		t.Fatalf("streamed %q (%s, %+v) in %d chunks; whole %q", acc.Choices[0].Message.Content, acc.Choices[0].FinishReason,
			acc.Usage, chunks, whole.Choices[0].Message.Content)
	}

	// Completions: the text prompt continues like the gRPC prompt does.
	comp, err := n.oai.Completions.New(ctx, openai.CompletionNewParams{Model: stories, Prompt: openai.CompletionNewParamsPromptUnion{
		OfString: openai.String("Once upon a time")}, MaxTokens: openai.Int(24), Temperature: openai.Float(0)})
	if err != nil {
		t.Fatal(err)
	}
	if comp.Choices[0].Text != whole.Choices[0].Message.Content || comp.Choices[0].FinishReason != "length" {
		t.Fatalf("completion %q, chat %q", comp.Choices[0].Text, whole.Choices[0].Message.Content)
	}
	cst := n.oai.Completions.NewStreaming(ctx, openai.CompletionNewParams{Model: stories, Prompt: openai.CompletionNewParamsPromptUnion{
		OfString: openai.String("Once upon a time")}, MaxTokens: openai.Int(24), Temperature: openai.Float(0)})
	var text strings.Builder
	for cst.Next() {
		if c := cst.Current(); len(c.Choices) > 0 {
			text.WriteString(c.Choices[0].Text)
		}
	}
	if err := cst.Err(); err != nil || text.String() != comp.Choices[0].Text {
		t.Fatalf("streamed completion %q: %v", text.String(), err)
	}
}

// The same conversation through the Anthropic SDK: a second turn reads
// the first turn's prompt and reply from the cache; streaming; a stop
// sequence.
func TestAnthropicSDK(t *testing.T) {
	n := startStories(t)
	ctx := testCtx(t)
	msgs := []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Lily and Tom went to the park."))}
	params := anthropic.MessageNewParams{Model: stories, MaxTokens: 40, Messages: msgs,
		System: []anthropic.TextBlockParam{{Text: "A story about Lily."}}}
	first, err := n.claude.Messages.New(ctx, params, greedy)
	if err != nil {
		t.Fatalf("turn 1: %v\n%s", err, n.Logs())
	}
	u1 := first.Usage
	if first.Content[0].Text == "" || u1.CacheReadInputTokens != 0 || u1.InputTokens == 0 || first.StopReason != anthropic.StopReasonMaxTokens {
		t.Fatalf("turn 1: %s", first.RawJSON())
	}
	params.Messages = append(msgs, first.ToParam(), anthropic.NewUserMessage(anthropic.NewTextBlock(" Then they went home.")))
	second, err := n.claude.Messages.New(ctx, params, greedy)
	if err != nil {
		t.Fatalf("turn 2: %v", err)
	}
	prev := u1.InputTokens + u1.CacheReadInputTokens + u1.OutputTokens
	t.Logf("turn 1 prompt %d + reply %d = %d tokens; turn 2: %d cached, %d computed", u1.InputTokens+u1.CacheReadInputTokens,
		u1.OutputTokens, prev, second.Usage.CacheReadInputTokens, second.Usage.InputTokens)
	if second.Usage.CacheReadInputTokens < prev {
		t.Fatalf("turn 2 reused %d tokens; turn 1's prompt and reply are %d", second.Usage.CacheReadInputTokens, prev)
	}

	// Streamed: the events in order, accumulated into the same message.
	st := n.claude.Messages.NewStreaming(ctx, params, greedy, anthropicoption.WithHeader(HeaderAgentID, "streamer"))
	var acc anthropic.Message
	var types []string
	for st.Next() {
		ev := st.Current()
		if len(types) == 0 || types[len(types)-1] != ev.Type {
			types = append(types, ev.Type)
		}
		if err := acc.Accumulate(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	// (The SDK passes over the ping event.)
	if strings.Join(types, ",") != "message_start,content_block_start,content_block_delta,content_block_stop,message_delta,message_stop" {
		t.Fatalf("events %v", types)
	}
	if acc.Content[0].Text != second.Content[0].Text || acc.StopReason != second.StopReason ||
		acc.Usage.OutputTokens != second.Usage.OutputTokens || acc.Usage.CacheReadInputTokens+acc.Usage.InputTokens != second.Usage.CacheReadInputTokens+second.Usage.InputTokens ||
		acc.Usage.CacheReadInputTokens < prev {
		t.Fatalf("streamed %q %s %+v; whole %q %s %+v", acc.Content[0].Text, acc.StopReason, acc.Usage, second.Content[0].Text, second.StopReason, second.Usage)
	}

	// A stop sequence from the text the model writes.
	words := strings.Fields(first.Content[0].Text)
	stop := words[min(2, len(words)-1)]
	params.Messages, params.StopSequences = msgs, []string{"zzz", stop}
	stopped, err := n.claude.Messages.New(ctx, params, greedy, anthropicoption.WithHeader(HeaderAgentID, "stopper"))
	if err != nil {
		t.Fatal(err)
	}
	if stopped.StopReason != anthropic.StopReasonStopSequence || stopped.StopSequence != stop || strings.Contains(stopped.Content[0].Text, stop) ||
		!strings.HasPrefix(first.Content[0].Text, stopped.Content[0].Text) {
		t.Fatalf("stop %q: %s", stop, stopped.RawJSON())
	}
}

// The HTTP APIs compute the same tokens as the gRPC API for the same
// conversation (greedy): the agents' stored contexts are identical.
func TestSameTokensAsGRPC(t *testing.T) {
	n := startStories(t)
	ctx := testCtx(t)
	const system, user = "A story about Lily.", "Lily and Tom went to the park."
	stream, err := n.grpc.Generate(ctx, &schedulerv1.GenerateRequest{AgentId: "via-grpc", MaxTokens: 32, Messages: []*schedulerv1.ChatMessage{
		{Role: "system", Content: system}, {Role: "user", Content: user}}})
	if err != nil {
		t.Fatal(err)
	}
	var grpcText strings.Builder
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		grpcText.WriteString(msg.GetText())
	}
	oa, err := n.oai.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: stories, MaxTokens: openai.Int(32), Temperature: openai.Float(0),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage(system), openai.UserMessage(user)}}, option.WithHeader(HeaderAgentID, "via-openai"))
	if err != nil {
		t.Fatal(err)
	}
	an, err := n.claude.Messages.New(ctx, anthropic.MessageNewParams{Model: stories, MaxTokens: 32,
		System: []anthropic.TextBlockParam{{Text: system}}, Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(user))}},
		greedy, anthropicoption.WithHeader(HeaderAgentID, "via-anthropic"))
	if err != nil {
		t.Fatal(err)
	}
	if oa.Choices[0].Message.Content != grpcText.String() || an.Content[0].Text != grpcText.String() {
		t.Fatalf("gRPC %q, OpenAI %q, Anthropic %q", grpcText.String(), oa.Choices[0].Message.Content, an.Content[0].Text)
	}
	var want []uint32
	for _, agent := range []string{"via-grpc", "via-openai", "via-anthropic"} {
		ag, err := n.grpc.GetAgent(ctx, &schedulerv1.GetAgentRequest{AgentId: agent})
		if err != nil {
			t.Fatal(err)
		}
		if want == nil {
			want = ag.GetAgent().GetTokenIds()
		} else if !slices.Equal(ag.GetAgent().GetTokenIds(), want) {
			t.Fatalf("%s stored %v\ngRPC stored %v", agent, ag.GetAgent().GetTokenIds(), want)
		}
	}
}

// openAIStatus and claudeStatus unpack an SDK error.
func openAIStatus(t *testing.T, err error) *openai.Error {
	t.Helper()
	var e *openai.Error
	if !errors.As(err, &e) {
		t.Fatalf("not an API error: %v", err)
	}
	return e
}

func claudeStatus(t *testing.T, err error) *anthropic.Error {
	t.Helper()
	var e *anthropic.Error
	if !errors.As(err, &e) {
		t.Fatalf("not an API error: %v", err)
	}
	return e
}

// Every error case through the SDKs (and raw HTTP where an SDK cannot send
// the request): 400 naming the parameter, 404 unknown model, 413 too long.
func TestSDKErrors(t *testing.T) {
	n := startStories(t)
	ctx := testCtx(t)
	user := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hi")}
	for _, c := range []struct {
		params openai.ChatCompletionNewParams
		status int
		param  string
	}{
		{openai.ChatCompletionNewParams{Model: "gpt-4o", Messages: user}, 404, "model"},
		{openai.ChatCompletionNewParams{Model: stories, Messages: user, Tools: []openai.ChatCompletionToolUnionParam{
			openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{Name: "f"})}}, 400, "tools"},
		{openai.ChatCompletionNewParams{Model: stories, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(
			[]openai.ChatCompletionContentPartUnionParam{openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: "http://x/y.png"})})}},
			400, "messages[0].content[0].type"},
		{openai.ChatCompletionNewParams{Model: stories, Messages: user, N: openai.Int(2)}, 400, "n"},
		{openai.ChatCompletionNewParams{Model: stories, Messages: user, Logprobs: openai.Bool(true)}, 400, "logprobs"},
		{openai.ChatCompletionNewParams{Model: stories, Messages: user, MaxTokens: openai.Int(4096)}, 400, "max_tokens"},
		{openai.ChatCompletionNewParams{Model: stories, Messages: user, Temperature: openai.Float(3)}, 400, "temperature"},
		{openai.ChatCompletionNewParams{Model: stories, Messages: []openai.ChatCompletionMessageParamUnion{
			openai.UserMessage(strings.Repeat("Lily ran. ", 40000))}}, 413, "messages"},
	} {
		_, err := n.oai.Chat.Completions.New(ctx, c.params)
		e := openAIStatus(t, err)
		if e.StatusCode != c.status || e.Param != c.param {
			t.Errorf("want %d %s: %d %s", c.status, c.param, e.StatusCode, e.RawJSON())
		}
	}
	// A context that the rendered prompt fills leaves no room: 413.
	_, err := n.oai.Completions.New(ctx, openai.CompletionNewParams{Model: stories, Prompt: openai.CompletionNewParamsPromptUnion{
		OfArrayOfTokens: slices.Repeat([]int64{300}, 2048)}})
	if e := openAIStatus(t, err); e.StatusCode != 413 || e.Param != "prompt" || e.Code != "context_length_exceeded" {
		t.Errorf("full context: %d %s", e.StatusCode, e.RawJSON())
	}

	for _, c := range []struct {
		params anthropic.MessageNewParams
		opts   []anthropicoption.RequestOption
		status int
		typ    string
		param  string
	}{
		{anthropic.MessageNewParams{Model: "claude-sonnet-4-5", MaxTokens: 8, Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Hi"))}},
			nil, 404, "not_found_error", "model"},
		{anthropic.MessageNewParams{Model: stories, MaxTokens: 8, Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewImageBlockBase64("image/png", "AAAA"))}},
			nil, 400, "invalid_request_error", "messages[0].content[0].type"},
		{anthropic.MessageNewParams{Model: stories, MaxTokens: 8, Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Hi"))},
			Tools: []anthropic.ToolUnionParam{{OfTool: &anthropic.ToolParam{Name: "f", InputSchema: anthropic.ToolInputSchemaParam{}}}}},
			nil, 400, "invalid_request_error", "tools"},
		{anthropic.MessageNewParams{Model: stories, MaxTokens: 8, Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Hi"))}},
			[]anthropicoption.RequestOption{anthropicoption.WithJSONSet("temperature", 1.5)}, 400, "invalid_request_error", "temperature"},
		{anthropic.MessageNewParams{Model: stories, MaxTokens: 8, Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Hi"))},
			Thinking: anthropic.ThinkingConfigParamOfEnabled(1024)}, nil, 400, "invalid_request_error", "thinking"},
		{anthropic.MessageNewParams{Model: stories, MaxTokens: 8, Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(strings.Repeat("Lily ran. ", 40000)))}},
			nil, 413, "request_too_large", "messages"},
	} {
		_, err := n.claude.Messages.New(ctx, c.params, c.opts...)
		e := claudeStatus(t, err)
		if e.StatusCode != c.status || string(e.Type()) != c.typ && c.status != 413 || !strings.HasPrefix(e.Message, c.param+": ") {
			t.Errorf("want %d %s %s: %d %s", c.status, c.typ, c.param, e.StatusCode, e.RawJSON())
		}
	}

	// Bodies the SDKs will not send: a missing max_tokens, a wrong type, and
	// 100 MB (refused without reading it all).
	for _, c := range []struct {
		path, body string
		status     int
		want       string
	}{
		{"/v1/messages", `{"model":"stories260K","messages":[{"role":"user","content":"Hi"}]}`, 400, `max_tokens: is required`},
		{"/v1/chat/completions", `{"model":"stories260K","messages":[{"role":"user","content":"Hi"}],"max_tokens":"ten"}`, 400, `"param":"max_tokens"`},
	} {
		resp, err := n.hc.Post(n.base+c.path, "application/json", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || !strings.Contains(string(raw), c.want) {
			t.Errorf("%s: %d %s", c.body, resp.StatusCode, raw)
		}
	}
	big := &countingReader{}
	big.n.Store(100 << 20)
	resp, err := n.hc.Post(n.base+"/v1/chat/completions", "application/json", big)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || big.read.Load() >= 100<<20 {
		t.Fatalf("100 MB body: %d %s after %d bytes", resp.StatusCode, raw, big.read.Load())
	}
	t.Logf("100 MB body: 413 after the client sent %d MB", big.read.Load()>>20)
}

// A slow model (builtin:small, tens of tokens a second on two cores) and a
// queue of one: a second request meanwhile is 429 with Retry-After; a client
// that disconnects mid-stream cancels its sequence, whose lease is released;
// the HTTP metrics count all of it.
func TestQueueFullAndDisconnect(t *testing.T) {
	n := startNode(t, "--model", "builtin:small", "--max-queue", "1")
	ctx := testCtx(t)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st := n.oai.Chat.Completions.NewStreaming(sctx, openai.ChatCompletionNewParams{Model: "builtin:small", MaxTokens: openai.Int(4000), Temperature: openai.Float(0),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Tell me everything.")}}, option.WithHeader(HeaderAgentID, "talker"))
	for i := 0; i < 3 && st.Next(); i++ {
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	stats, err := n.grpc.GetStats(ctx, &schedulerv1.GetStatsRequest{})
	if err != nil || stats.GetRunning() != 1 || stats.GetBlocksLeased() == 0 {
		t.Fatalf("while streaming: %v %v", stats, err)
	}

	// The queue is full: 429, with Retry-After, in both formats.
	_, err = n.oai.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "builtin:small", MaxTokens: openai.Int(4),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Me too.")}})
	if e := openAIStatus(t, err); e.StatusCode != 429 || e.Response.Header.Get("Retry-After") != "1" || e.Type != "rate_limit_error" {
		t.Fatalf("queue full: %d %v %s", e.StatusCode, e.Response.Header, e.RawJSON())
	}
	_, err = n.claude.Messages.New(ctx, anthropic.MessageNewParams{Model: "builtin:small", MaxTokens: 4,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Me too."))}})
	if e := claudeStatus(t, err); e.StatusCode != 429 || e.Type() != anthropic.ErrorTypeRateLimitError {
		t.Fatalf("queue full: %d %s", e.StatusCode, e.RawJSON())
	}

	// The client goes away: its sequence ends and its lease is released.
	cancel()
	_ = st.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		stats, err = n.grpc.GetStats(ctx, &schedulerv1.GetStatsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if stats.GetRunning() == 0 && stats.GetWaiting() == 0 && stats.GetBlocksLeased() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still running after the client left: %v", stats)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if stats.GetRequestsFailed() == 0 {
		t.Fatalf("the cancelled request did not fail: %v", stats)
	}
	// The agent's record was not committed from the abandoned stream.
	if _, err := n.grpc.GetAgent(ctx, &schedulerv1.GetAgentRequest{AgentId: "talker"}); err == nil {
		t.Fatal("abandoned stream committed its agent")
	}

	// And the queue has room again.
	ok, err := n.oai.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "builtin:small", MaxTokens: openai.Int(4),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Now?")}})
	if err != nil || ok.Usage.CompletionTokens == 0 {
		t.Fatalf("after: %v %v", ok, err)
	}

	// The metrics: requests by route and status (499: the one that left),
	// latency and time to first token.
	metrics := scrape(t, n)
	for _, want := range []string{
		`semantic_http_requests_total{http_response_status_code="200",http_route="POST /v1/chat/completions"`,
		`semantic_http_requests_total{http_response_status_code="429",http_route="POST /v1/chat/completions"`,
		`semantic_http_requests_total{http_response_status_code="429",http_route="POST /v1/messages"`,
		`semantic_http_requests_total{http_response_status_code="499",http_route="POST /v1/chat/completions"`,
		`semantic_http_request_duration_seconds_count{`,
		`semantic_http_time_to_first_token_seconds_count{`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func scrape(t *testing.T, n *node) string {
	t.Helper()
	// The exporter may see the last request's end a moment after its client.
	var body string
	for i := 0; i < 50; i++ {
		resp, err := n.hc.Get("http://" + n.MetricsAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(raw)
		if strings.Contains(body, `status_code="499"`) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return body
}

// With no pool node reachable the API answers 503 (Retry-After), and
// /health says so.
func TestNoPool(t *testing.T) {
	n := startNode(t, "--model", "builtin:tiny", "--pool", "127.0.0.1:1")
	ctx := testCtx(t)
	_, err := n.oai.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "builtin:tiny", MaxTokens: openai.Int(4),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hi")}})
	if e := openAIStatus(t, err); e.StatusCode != 503 || e.Response.Header.Get("Retry-After") == "" {
		t.Fatalf("%d %s", e.StatusCode, e.RawJSON())
	}
	_, err = n.claude.Messages.New(ctx, anthropic.MessageNewParams{Model: "builtin:tiny", MaxTokens: 4,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Hi"))}})
	if e := claudeStatus(t, err); e.StatusCode != 503 || e.Type() != anthropic.ErrorTypeOverloadedError {
		t.Fatalf("%d %s", e.StatusCode, e.RawJSON())
	}
	resp, err := n.hc.Get(n.base + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("health: %d", resp.StatusCode)
	}
}

// SIGTERM with a stream in flight: the HTTP API drains alongside gRPC, the
// stream is cut at the shutdown timeout, and the process exits cleanly.
func TestGracefulShutdown(t *testing.T) {
	n := startNode(t, "--model", "builtin:small", "--shutdown-timeout", "2s")
	ctx := testCtx(t)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, n.base+"/v1/chat/completions", strings.NewReader(
		`{"model":"builtin:small","max_tokens":4000,"temperature":0,"stream":true,"messages":[{"role":"user","content":"Go on."}]}`))
	resp, err := n.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	n.Proc.Signal(15) // SIGTERM
	_, _ = io.Copy(io.Discard, br)
	select {
	case <-n.Done():
	case <-time.After(30 * time.Second):
		t.Fatalf("did not exit:\n%s", n.Logs())
	}
	if err := n.Err(); err != nil {
		t.Fatalf("exit: %v\n%s", err, n.Logs())
	}
	took := time.Since(began)
	if took > 15*time.Second {
		t.Fatalf("shutdown took %v", took)
	}
	// New connections are refused once it is down.
	if _, err := n.hc.Get(n.base + "/health"); err == nil {
		t.Fatal("still serving")
	}
	if !regexp.MustCompile(`"msg":"stopped"`).MatchString(n.Logs()) {
		t.Fatalf("no clean stop:\n%s", n.Logs())
	}
	t.Logf("stopped %v after SIGTERM with a stream in flight", took.Round(time.Millisecond))
}

// The real binary with --auth-keys: the official SDKs authenticate with
// their API key options (OpenAI's Authorization: Bearer, Anthropic's
// x-api-key) and get 401 authentication_error with a wrong key; gRPC calls
// need the authorization metadata (health stays open); SIGHUP reloads the
// keys file.
func TestSDKsWithAPIKeys(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.json")
	writeKey := func() string {
		t.Helper()
		k, err := auth.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		f := &auth.File{Keys: []auth.Key{{Name: "ci", Tenant: "acme", Role: auth.RoleUser, SHA256: auth.HashKey(k)}}}
		if err := f.Write(path); err != nil {
			t.Fatal(err)
		}
		return k
	}
	key := writeKey()
	n := startNode(t, "--model", "builtin:tiny", "--auth-keys", path, "--require-auth")
	if strings.Contains(n.Logs(), "authentication is off") {
		t.Fatalf("warned that authentication is off with keys:\n%s", n.Logs())
	}
	ctx := testCtx(t)
	model := "builtin:tiny"
	oaiAs := func(k string) openai.Client {
		return openai.NewClient(option.WithBaseURL(n.base+"/v1/"), option.WithAPIKey(k), option.WithHTTPClient(n.hc), option.WithMaxRetries(0))
	}
	claudeAs := func(k string) anthropic.Client {
		return anthropic.NewClient(anthropicoption.WithBaseURL(n.base+"/"), anthropicoption.WithAPIKey(k),
			anthropicoption.WithHTTPClient(n.hc), anthropicoption.WithMaxRetries(0))
	}
	chat := openai.ChatCompletionNewParams{Model: model, MaxTokens: openai.Int(4),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hi")}}
	msg := anthropic.MessageNewParams{Model: model, MaxTokens: 4,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Hi"))}}

	oai, claude := oaiAs(key), claudeAs(key)
	if _, err := oai.Chat.Completions.New(ctx, chat); err != nil {
		t.Fatalf("OpenAI SDK with the key: %v", err)
	}
	if _, err := oai.Models.List(ctx); err != nil {
		t.Fatalf("OpenAI SDK models with the key: %v", err)
	}
	if _, err := claude.Messages.New(ctx, msg); err != nil {
		t.Fatalf("Anthropic SDK with the key: %v", err)
	}
	_, err := n.oai.Chat.Completions.New(ctx, chat) // "unused"
	if e := openAIStatus(t, err); e.StatusCode != 401 || e.Type != "authentication_error" {
		t.Fatalf("OpenAI SDK with a wrong key: %d %s", e.StatusCode, e.RawJSON())
	}
	_, err = n.claude.Messages.New(ctx, msg)
	if e := claudeStatus(t, err); e.StatusCode != 401 || e.Type() != anthropic.ErrorTypeAuthenticationError {
		t.Fatalf("Anthropic SDK with a wrong key: %d %s", e.StatusCode, e.RawJSON())
	}

	if _, err := n.grpc.GetStats(ctx, &schedulerv1.GetStatsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("gRPC without a key: want UNAUTHENTICATED, got %v", err)
	}
	withKey := func(k string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+k)
	}
	list, err := n.grpc.ListAgents(withKey(key), &schedulerv1.ListAgentsRequest{})
	// Both APIs derive one agent from the one conversation.
	if err != nil || len(list.GetAgents()) != 1 || list.GetAgents()[0].GetTenant() != "acme" {
		t.Fatalf("gRPC with the key: the HTTP requests' agent is tenant acme's: %v %v", list, err)
	}
	conn, err := grpc.NewClient(n.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health without a key: %v %v", resp, err)
	}

	// SIGHUP: the new file's key works, the old one no longer does.
	fresh := writeKey()
	if err := n.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := n.grpc.GetStats(withKey(fresh), &schedulerv1.GetStatsRequest{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the key written before SIGHUP: %v\n%s", err, n.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := oai.Models.List(ctx); openAIStatus(t, err).StatusCode != 401 {
		t.Fatalf("the removed key after SIGHUP: %v", err)
	}
}
