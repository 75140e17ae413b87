package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"time"

	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
)

// chatRequest is the body of POST /v1/chat/completions: the fields this
// server implements, and those it refuses (openAIRefused). Other fields are
// ignored: they do not change the output (store, metadata, service_tier,
// parallel_tool_calls, prompt_cache_key, safety_identifier, ...).
type chatRequest struct {
	Model               string          `json:"model"`
	Messages            []chatMessage   `json:"messages"`
	MaxTokens           *int64          `json:"max_tokens"`
	MaxCompletionTokens *int64          `json:"max_completion_tokens"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	Seed                *int64          `json:"seed"`
	Stop                json.RawMessage `json:"stop"`
	Stream              *bool           `json:"stream"`
	StreamOptions       *streamOptions  `json:"stream_options"`
	User                string          `json:"user"`
	N                   *int64          `json:"n"`
	openAIRefused
}

// chatMessage is one message of a chat request.
type chatMessage struct {
	Role         string          `json:"role"`
	Content      json.RawMessage `json:"content"`
	Name         json.RawMessage `json:"name"`
	ToolCalls    json.RawMessage `json:"tool_calls"`
	ToolCallID   json.RawMessage `json:"tool_call_id"`
	FunctionCall json.RawMessage `json:"function_call"`
	Audio        json.RawMessage `json:"audio"`
	Refusal      json.RawMessage `json:"refusal"`
}

type streamOptions struct {
	IncludeUsage *bool `json:"include_usage"`
}

// openAIRefused are the OpenAI parameters that would change the output and
// that this server does not implement: a request that sets one to anything
// but its neutral value is refused with a 400 naming it, never served as if
// it were not there.
type openAIRefused struct {
	Tools            json.RawMessage `json:"tools"`
	ToolChoice       json.RawMessage `json:"tool_choice"`
	Functions        json.RawMessage `json:"functions"`
	FunctionCall     json.RawMessage `json:"function_call"`
	Logprobs         json.RawMessage `json:"logprobs"`
	TopLogprobs      json.RawMessage `json:"top_logprobs"`
	ResponseFormat   json.RawMessage `json:"response_format"`
	PresencePenalty  json.RawMessage `json:"presence_penalty"`
	FrequencyPenalty json.RawMessage `json:"frequency_penalty"`
	LogitBias        json.RawMessage `json:"logit_bias"`
	Modalities       json.RawMessage `json:"modalities"`
	Audio            json.RawMessage `json:"audio"`
	Prediction       json.RawMessage `json:"prediction"`
	WebSearchOptions json.RawMessage `json:"web_search_options"`
	ReasoningEffort  json.RawMessage `json:"reasoning_effort"`
	Verbosity        json.RawMessage `json:"verbosity"`
	// Completions only.
	Echo   json.RawMessage `json:"echo"`
	Suffix json.RawMessage `json:"suffix"`
	BestOf json.RawMessage `json:"best_of"`
}

// check refuses every parameter given a value other than a neutral one.
func (o *openAIRefused) check() *apiError {
	for _, p := range []struct {
		name, what string
		raw        json.RawMessage
		neutral    []string // JSON values that change nothing
	}{
		{"tools", "tool calling", o.Tools, []string{`[]`}},
		{"tool_choice", "tool calling", o.ToolChoice, []string{`"none"`}},
		{"functions", "function calling", o.Functions, []string{`[]`}},
		{"function_call", "function calling", o.FunctionCall, []string{`"none"`}},
		{"logprobs", "logprobs", o.Logprobs, []string{`false`}},
		{"top_logprobs", "top_logprobs", o.TopLogprobs, []string{`0`}},
		{"response_format", "a response_format other than text", o.ResponseFormat, []string{`{"type":"text"}`}},
		{"presence_penalty", "presence_penalty", o.PresencePenalty, []string{`0`}},
		{"frequency_penalty", "frequency_penalty", o.FrequencyPenalty, []string{`0`}},
		{"logit_bias", "logit_bias", o.LogitBias, []string{`{}`}},
		{"modalities", "output other than text", o.Modalities, []string{`["text"]`}},
		{"audio", "audio output", o.Audio, nil},
		{"prediction", "predicted outputs", o.Prediction, nil},
		{"web_search_options", "web search", o.WebSearchOptions, nil},
		{"reasoning_effort", "reasoning_effort", o.ReasoningEffort, nil},
		{"verbosity", "verbosity", o.Verbosity, nil},
		{"echo", "echo", o.Echo, []string{`false`}},
		{"suffix", "suffix", o.Suffix, []string{`""`}},
		{"best_of", "best_of", o.BestOf, []string{`1`}},
	} {
		if present(p.raw) && !isNeutral(p.raw, p.neutral) {
			return unsupported(p.name, p.what)
		}
	}
	return nil
}

// isNeutral reports whether raw is one of the JSON values in neutral
// (compared as decoded values: 0 and 0.0 are the same).
func isNeutral(raw json.RawMessage, neutral []string) bool {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return false
	}
	for _, n := range neutral {
		var nv any
		_ = json.Unmarshal([]byte(n), &nv)
		if reflect.DeepEqual(v, nv) {
			return true
		}
	}
	return false
}

// openAIParam names the service's fields as the OpenAI API does.
func openAIParam(f string) string {
	switch {
	case f == "agent_id":
		return HeaderAgentID
	case strings.HasPrefix(f, "prompt_token_ids"):
		return "prompt" + strings.TrimPrefix(f, "prompt_token_ids")
	}
	return f
}

// joinParts is how the text parts of one message become its content.
const joinParts = "\n"

// openAIContent is a message's content: a string, or an array of text parts
// joined by newlines. Other part types (image_url, input_audio, file) are
// refused.
func openAIContent(raw json.RawMessage, field string) (string, *apiError) {
	return textContent(raw, field, "content parts", "content")
}

// textContent reads what both APIs accept as text: a string, or an array of
// {"type": "text", "text": ...} items joined by newlines (items names them in
// the error for a malformed array, what in the refusal of another type).
func textContent(raw json.RawMessage, field, items, what string) (string, *apiError) {
	if !present(raw) {
		return "", badRequest(field, "is required")
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var parts []struct {
		Type string  `json:"type"`
		Text *string `json:"text"`
	}
	if json.Unmarshal(raw, &parts) != nil {
		return "", badRequest(field, "must be a string or an array of %s", items)
	}
	texts := make([]string, len(parts))
	for j, p := range parts {
		if p.Type != "text" {
			return "", unsupported(fmt.Sprintf("%s[%d].type", field, j), fmt.Sprintf("%s of type %q (only text)", what, p.Type))
		}
		if p.Text == nil {
			return "", badRequest(fmt.Sprintf("%s[%d].text", field, j), "is required")
		}
		texts[j] = *p.Text
	}
	return strings.Join(texts, joinParts), nil
}

// checkCommon checks what chat and completion requests share: the model,
// the refused parameters, n, and the streaming flags it returns.
func (h *Handler) checkCommon(model string, refused *openAIRefused, n *int64, stream *bool, opts *streamOptions) (streaming, includeUsage bool, e *apiError) {
	if e := h.checkModel(model); e != nil {
		return false, false, e
	}
	if e := refused.check(); e != nil {
		return false, false, e
	}
	if e := checkN(n); e != nil {
		return false, false, e
	}
	return streamFlags(stream, opts)
}

// streamFlags checks stream and stream_options.
func streamFlags(stream *bool, opts *streamOptions) (streaming, includeUsage bool, e *apiError) {
	streaming = stream != nil && *stream
	if opts != nil {
		if !streaming {
			return false, false, badRequest("stream_options", "is only allowed when stream is true")
		}
		includeUsage = opts.IncludeUsage != nil && *opts.IncludeUsage
	}
	return streaming, includeUsage, nil
}

func checkN(n *int64) *apiError {
	if n != nil && *n != 1 {
		return unsupported("n", "n other than 1 (one choice per request)")
	}
	return nil
}

// chatToGenerate checks a chat request and translates it into the service's.
func (h *Handler) chatToGenerate(r *http.Request, body *chatRequest) (*generateCall, *apiError) {
	streaming, includeUsage, e := h.checkCommon(body.Model, &body.openAIRefused, body.N, body.Stream, body.StreamOptions)
	if e != nil {
		return nil, e
	}
	if len(body.Messages) == 0 {
		return nil, badRequest("messages", "must hold at least one message")
	}
	msgs := make([]*schedulerv1.ChatMessage, len(body.Messages))
	var firstSystem, firstUser *string
	for i, m := range body.Messages {
		field := fmt.Sprintf("messages[%d]", i)
		role := m.Role
		switch role {
		case "system", "developer":
			// The developer role is the system role of newer OpenAI models.
			role = "system"
		case "user", "assistant":
		case "tool", "function":
			return nil, unsupported(field+".role", fmt.Sprintf("role %q (tool calling)", m.Role))
		default:
			return nil, badRequest(field+".role", "must be system, developer, user or assistant, got %q", m.Role)
		}
		for _, f := range []struct {
			name, what string
			raw        json.RawMessage
		}{
			{"name", "a message name", m.Name},
			{"tool_calls", "tool calling", m.ToolCalls},
			{"tool_call_id", "tool calling", m.ToolCallID},
			{"function_call", "function calling", m.FunctionCall},
			{"audio", "audio", m.Audio},
			{"refusal", "refusal messages", m.Refusal},
		} {
			if present(f.raw) && !emptyArray(f.raw) {
				return nil, unsupported(field+"."+f.name, f.what)
			}
		}
		content := ""
		// An assistant message may come back without content: an empty
		// reply, as the SDKs resend it.
		if role != "assistant" || present(m.Content) {
			var e *apiError
			if content, e = openAIContent(m.Content, field+".content"); e != nil {
				return nil, e
			}
		}
		msgs[i] = &schedulerv1.ChatMessage{Role: role, Content: content}
		switch {
		case role == "system" && firstSystem == nil:
			firstSystem = &msgs[i].Content
		case role == "user" && firstUser == nil:
			firstUser = &msgs[i].Content
		}
	}
	agent, e := agentID(r, body.User, func() string { return conversationID(deref(firstSystem), deref(firstUser)) })
	if e != nil {
		return nil, e
	}
	req := &schedulerv1.GenerateRequest{AgentId: agent, Messages: msgs}
	stops, e := stringOrStrings(body.Stop, "stop")
	if e != nil {
		return nil, e
	}
	p := sampling{maxTokens: body.MaxCompletionTokens, maxField: "max_completion_tokens", temperature: body.Temperature, maxTemp: 2,
		topP: body.TopP, seed: body.Seed, stops: stops, stopField: "stop"}
	if body.MaxTokens != nil {
		if body.MaxCompletionTokens != nil && *body.MaxCompletionTokens != *body.MaxTokens {
			return nil, badRequest("max_tokens", "give max_tokens or max_completion_tokens, not both with different values")
		}
		p.maxTokens, p.maxField = body.MaxTokens, "max_tokens"
	}
	if e := p.apply(req, h.cfg.Model.ContextLength); e != nil {
		return nil, e
	}
	return &generateCall{req: req, stream: streaming, includeUsage: includeUsage}, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// Response objects.

type chatCompletion struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
	Usage   *openAIUsage `json:"usage"`
}

type chatChoice struct {
	Index        int            `json:"index"`
	Message      chatOutMessage `json:"message"`
	Logprobs     *struct{}      `json:"logprobs"`
	FinishReason string         `json:"finish_reason"`
}

type chatOutMessage struct {
	Role    string  `json:"role"`
	Content string  `json:"content"`
	Refusal *string `json:"refusal"`
}

type openAIUsage struct {
	PromptTokens        int                 `json:"prompt_tokens"`
	CompletionTokens    int                 `json:"completion_tokens"`
	TotalTokens         int                 `json:"total_tokens"`
	PromptTokensDetails promptTokensDetails `json:"prompt_tokens_details"`
}

// promptTokensDetails.CachedTokens is the prompt tokens whose KV was reused
// from the agent's cache instead of computed.
type promptTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

type chatChunk struct {
	ID      string            `json:"id"`
	Object  string            `json:"object"`
	Created int64             `json:"created"`
	Model   string            `json:"model"`
	Choices []chatChunkChoice `json:"choices"`
	// Usage is null on every chunk but the last when the client asked for
	// usage (stream_options.include_usage), and absent otherwise.
	Usage any `json:"usage,omitempty"`
}

type chatChunkChoice struct {
	Index        int       `json:"index"`
	Delta        chatDelta `json:"delta"`
	Logprobs     *struct{} `json:"logprobs"`
	FinishReason *string   `json:"finish_reason"`
}

type chatDelta struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

func newOpenAIUsage(u *schedulerv1.Usage) *openAIUsage {
	return &openAIUsage{
		PromptTokens: int(u.GetPromptTokens()), CompletionTokens: int(u.GetCompletionTokens()),
		TotalTokens:         int(u.GetPromptTokens() + u.GetCompletionTokens()),
		PromptTokensDetails: promptTokensDetails{CachedTokens: int(u.GetCachedTokens())},
	}
}

// openAIFinish is the finish_reason of a service finish reason: the end of
// the text (EOS) or a stop sequence is "stop"; max_tokens or the end of the
// context is "length".
func openAIFinish(f schedulerv1.FinishReason) string {
	switch f {
	case schedulerv1.FinishReason_FINISH_REASON_LENGTH, schedulerv1.FinishReason_FINISH_REASON_CONTEXT:
		return "length"
	}
	return "stop"
}

var nullJSON = json.RawMessage("null")

// chatCompletions serves POST /v1/chat/completions.
func (h *Handler) chatCompletions(c *call) error {
	var body chatRequest
	if e := readJSON(c.w, c.r, h.cfg.MaxBodyBytes, h.cfg.BodyTimeout, &body); e != nil {
		return e
	}
	gc, e := h.chatToGenerate(c.r, &body)
	if e != nil {
		return e
	}
	req, streaming, includeUsage := gc.req, gc.stream, gc.includeUsage
	id, created := randomID("chatcmpl-"), time.Now().Unix()
	if !streaming {
		var text strings.Builder
		g, err := h.generate(c, req, false, func(t string) error { text.WriteString(t); return nil })
		if err != nil {
			return asAPIError(err, openAIParam)
		}
		return writeJSON(c.w, http.StatusOK, chatCompletion{
			ID: id, Object: "chat.completion", Created: created, Model: h.cfg.Model.ID,
			Choices: []chatChoice{{Message: chatOutMessage{Role: "assistant", Content: text.String()},
				FinishReason: openAIFinish(g.final.GetFinishReason())}},
			Usage: newOpenAIUsage(g.final.GetUsage()),
		}, h.cfg.WriteTimeout)
	}

	sse := newSSEWriter(c.w, h.cfg.WriteTimeout)
	chunk := func(d chatDelta, finish *string) chatChunk {
		ch := chatChunk{ID: id, Object: "chat.completion.chunk", Created: created, Model: h.cfg.Model.ID,
			Choices: []chatChunkChoice{{Delta: d, FinishReason: finish}}}
		if includeUsage {
			ch.Usage = nullJSON
		}
		return ch
	}
	// The role comes first, in a chunk of its own, when the first text is
	// ready (so that an error before it still gets its HTTP status).
	begin := func() error {
		if sse.started {
			return nil
		}
		empty := ""
		return sse.event("", chunk(chatDelta{Role: "assistant", Content: &empty}, nil))
	}
	g, err := h.generate(c, req, true, func(t string) error {
		if err := begin(); err != nil {
			return err
		}
		return sse.event("", chunk(chatDelta{Content: &t}, nil))
	})
	if err != nil {
		return h.streamError(c, sse, err, openAIParam)
	}
	if err := begin(); err != nil {
		return errClientGone
	}
	finish := openAIFinish(g.final.GetFinishReason())
	if err := sse.event("", chunk(chatDelta{}, &finish)); err != nil {
		return errClientGone
	}
	if includeUsage {
		if err := sse.event("", chatChunk{ID: id, Object: "chat.completion.chunk", Created: created, Model: h.cfg.Model.ID,
			Choices: []chatChunkChoice{}, Usage: newOpenAIUsage(g.final.GetUsage())}); err != nil {
			return errClientGone
		}
	}
	if err := sse.done(); err != nil {
		return errClientGone
	}
	return nil
}

// streamError ends an OpenAI stream with err: as the HTTP error when nothing
// was sent yet, else as an error event (what OpenAI's SDKs read as the
// stream's error).
func (h *Handler) streamError(c *call, sse *sseWriter, err error, param func(string) string) error {
	e := asAPIError(err, param)
	if !sse.started || e == errClientGone {
		return e
	}
	c.rec.err = e
	_ = sse.event("", newOpenAIError(e))
	return nil
}

// completionRequest is the body of POST /v1/completions.
type completionRequest struct {
	Model         string          `json:"model"`
	Prompt        json.RawMessage `json:"prompt"`
	MaxTokens     *int64          `json:"max_tokens"`
	Temperature   *float64        `json:"temperature"`
	TopP          *float64        `json:"top_p"`
	Seed          *int64          `json:"seed"`
	Stop          json.RawMessage `json:"stop"`
	Stream        *bool           `json:"stream"`
	StreamOptions *streamOptions  `json:"stream_options"`
	User          string          `json:"user"`
	N             *int64          `json:"n"`
	openAIRefused
}

// completionMaxTokens is OpenAI's default max_tokens for completions.
const completionMaxTokens = 16

// completionToGenerate checks a completion request and translates it. The
// prompt is a string, or token ids; an array holding one of these is taken
// too, several (a batch) are refused.
func (h *Handler) completionToGenerate(r *http.Request, body *completionRequest) (*generateCall, *apiError) {
	streaming, includeUsage, e := h.checkCommon(body.Model, &body.openAIRefused, body.N, body.Stream, body.StreamOptions)
	if e != nil {
		return nil, e
	}
	text, ids, e := completionPrompt(body.Prompt)
	if e != nil {
		return nil, e
	}
	agent, e := agentID(r, body.User, func() string {
		if ids != nil {
			return promptID(fmt.Sprint(ids[:min(len(ids), promptPrefixBytes/4)]))
		}
		return promptID(text)
	})
	if e != nil {
		return nil, e
	}
	req := &schedulerv1.GenerateRequest{AgentId: agent, Prompt: text, PromptTokenIds: ids}
	stops, e := stringOrStrings(body.Stop, "stop")
	if e != nil {
		return nil, e
	}
	p := sampling{maxTokens: body.MaxTokens, maxField: "max_tokens", defaultMax: completionMaxTokens, temperature: body.Temperature,
		maxTemp: 2, topP: body.TopP, seed: body.Seed, stops: stops, stopField: "stop"}
	if e := p.apply(req, h.cfg.Model.ContextLength); e != nil {
		return nil, e
	}
	return &generateCall{req: req, stream: streaming, includeUsage: includeUsage}, nil
}

// completionPrompt decodes a completion's prompt.
func completionPrompt(raw json.RawMessage) (string, []uint32, *apiError) {
	if !present(raw) {
		return "", nil, badRequest("prompt", "is required")
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil, nil
	}
	var strs []string
	if json.Unmarshal(raw, &strs) == nil {
		if len(strs) != 1 {
			return "", nil, unsupported("prompt", "a batch of prompts (one prompt per request)")
		}
		return strs[0], nil, nil
	}
	var ids []int64
	if json.Unmarshal(raw, &ids) != nil {
		var batch [][]int64
		if json.Unmarshal(raw, &batch) != nil {
			return "", nil, badRequest("prompt", "must be a string, or an array of token ids")
		}
		if len(batch) != 1 {
			return "", nil, unsupported("prompt", "a batch of prompts (one prompt per request)")
		}
		ids = batch[0]
	}
	if len(ids) == 0 {
		return "", nil, badRequest("prompt", "must not be empty")
	}
	out := make([]uint32, len(ids))
	for i, id := range ids {
		if id < 0 || id > 1<<31 {
			return "", nil, badRequest(fmt.Sprintf("prompt[%d]", i), "token id %d is out of range", id)
		}
		out[i] = uint32(id)
	}
	return "", out, nil
}

type completion struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"`
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []completionChoice `json:"choices"`
	Usage   any                `json:"usage,omitempty"`
}

type completionChoice struct {
	Text         string    `json:"text"`
	Index        int       `json:"index"`
	Logprobs     *struct{} `json:"logprobs"`
	FinishReason *string   `json:"finish_reason"`
}

// completions serves POST /v1/completions.
func (h *Handler) completions(c *call) error {
	var body completionRequest
	if e := readJSON(c.w, c.r, h.cfg.MaxBodyBytes, h.cfg.BodyTimeout, &body); e != nil {
		return e
	}
	gc, e := h.completionToGenerate(c.r, &body)
	if e != nil {
		return e
	}
	req, streaming, includeUsage := gc.req, gc.stream, gc.includeUsage
	id, created := randomID("cmpl-"), time.Now().Unix()
	obj := func(choices []completionChoice, usage any) completion {
		return completion{ID: id, Object: "text_completion", Created: created, Model: h.cfg.Model.ID, Choices: choices, Usage: usage}
	}
	if !streaming {
		var text strings.Builder
		g, err := h.generate(c, req, false, func(t string) error { text.WriteString(t); return nil })
		if err != nil {
			return asAPIError(err, openAIParam)
		}
		finish := openAIFinish(g.final.GetFinishReason())
		return writeJSON(c.w, http.StatusOK, obj([]completionChoice{{Text: text.String(), FinishReason: &finish}},
			newOpenAIUsage(g.final.GetUsage())), h.cfg.WriteTimeout)
	}
	sse := newSSEWriter(c.w, h.cfg.WriteTimeout)
	var usage any
	if includeUsage {
		usage = nullJSON
	}
	g, err := h.generate(c, req, true, func(t string) error {
		return sse.event("", obj([]completionChoice{{Text: t}}, usage))
	})
	if err != nil {
		return h.streamError(c, sse, err, openAIParam)
	}
	finish := openAIFinish(g.final.GetFinishReason())
	if err := sse.event("", obj([]completionChoice{{FinishReason: &finish}}, usage)); err != nil {
		return errClientGone
	}
	if includeUsage {
		if err := sse.event("", obj([]completionChoice{}, newOpenAIUsage(g.final.GetUsage()))); err != nil {
			return errClientGone
		}
	}
	if err := sse.done(); err != nil {
		return errClientGone
	}
	return nil
}

// modelObject is an entry of GET /v1/models. context_length is not in
// OpenAI's object; clients of other servers (OpenRouter, LM Studio) read it.
type modelObject struct {
	ID            string `json:"id"`
	Object        string `json:"object"`
	Created       int64  `json:"created"`
	OwnedBy       string `json:"owned_by"`
	ContextLength int    `json:"context_length"`
}

// anthropicModel is an entry of Anthropic's GET /v1/models.
type anthropicModel struct {
	Type          string `json:"type"`
	ID            string `json:"id"`
	DisplayName   string `json:"display_name"`
	CreatedAt     string `json:"created_at"`
	ContextLength int    `json:"context_length"`
}

func (h *Handler) modelObjects() (modelObject, anthropicModel) {
	m := h.cfg.Model
	return modelObject{ID: m.ID, Object: "model", Created: m.Created.Unix(), OwnedBy: "semantic", ContextLength: m.ContextLength},
		anthropicModel{Type: "model", ID: m.ID, DisplayName: m.ID, CreatedAt: m.Created.UTC().Format(time.RFC3339), ContextLength: m.ContextLength}
}

// isAnthropic reports whether a request comes from an Anthropic client
// (its SDKs send anthropic-version), for the paths both APIs share.
func isAnthropic(r *http.Request) bool { return r.Header.Get("anthropic-version") != "" }

// listModels serves GET /v1/models: the served model, in the OpenAI or the
// Anthropic shape.
func (h *Handler) listModels(c *call) error {
	o, a := h.modelObjects()
	if isAnthropic(c.r) {
		return writeJSON(c.w, http.StatusOK, map[string]any{"data": []anthropicModel{a}, "has_more": false, "first_id": a.ID, "last_id": a.ID}, h.cfg.WriteTimeout)
	}
	return writeJSON(c.w, http.StatusOK, map[string]any{"object": "list", "data": []modelObject{o}}, h.cfg.WriteTimeout)
}

// getModel serves GET /v1/models/{model}.
func (h *Handler) getModel(c *call) error {
	if isAnthropic(c.r) {
		c.api = apiAnthropic
	}
	if e := h.checkModel(c.r.PathValue("model")); e != nil {
		return e
	}
	o, a := h.modelObjects()
	if isAnthropic(c.r) {
		return writeJSON(c.w, http.StatusOK, a, h.cfg.WriteTimeout)
	}
	return writeJSON(c.w, http.StatusOK, o, h.cfg.WriteTimeout)
}
