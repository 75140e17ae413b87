package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
)

// messagesRequest is the body of POST /v1/messages (Anthropic Messages).
// Fields not listed are ignored: they do not change the output
// (service_tier, cache_control on blocks: every prompt is cached anyway).
type messagesRequest struct {
	Model     string             `json:"model"`
	Messages  []anthropicMessage `json:"messages"`
	System    json.RawMessage    `json:"system"`
	MaxTokens *int64             `json:"max_tokens"`
	Metadata  *struct {
		UserID *string `json:"user_id"`
	} `json:"metadata"`
	StopSequences []string `json:"stop_sequences"`
	Stream        *bool    `json:"stream"`
	Temperature   *float64 `json:"temperature"`
	TopP          *float64 `json:"top_p"`
	TopK          *int64   `json:"top_k"`
	// Refused when set (see check).
	Tools             json.RawMessage `json:"tools"`
	ToolChoice        json.RawMessage `json:"tool_choice"`
	Thinking          json.RawMessage `json:"thinking"`
	MCPServers        json.RawMessage `json:"mcp_servers"`
	Container         json.RawMessage `json:"container"`
	ContextManagement json.RawMessage `json:"context_management"`
	OutputFormat      json.RawMessage `json:"output_format"`
	OutputConfig      json.RawMessage `json:"output_config"`
}

type anthropicMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// check refuses the parameters that would change the output and that this
// server does not implement.
func (m *messagesRequest) check() *apiError {
	for _, p := range []struct {
		name, what string
		raw        json.RawMessage
		neutral    []string
	}{
		{"tools", "tool use", m.Tools, []string{`[]`}},
		{"tool_choice", "tool use", m.ToolChoice, []string{`{"type":"none"}`, `{"type":"auto"}`}},
		{"thinking", "extended thinking", m.Thinking, []string{`{"type":"disabled"}`}},
		{"mcp_servers", "MCP servers", m.MCPServers, []string{`[]`}},
		{"container", "containers", m.Container, nil},
		{"context_management", "context management", m.ContextManagement, nil},
		{"output_format", "structured output", m.OutputFormat, nil},
		{"output_config", "output configuration (effort, format)", m.OutputConfig, []string{`{}`}},
	} {
		if present(p.raw) && !isNeutral(p.raw, p.neutral) {
			return unsupported(p.name, p.what)
		}
	}
	return nil
}

// anthropicText is a system prompt or a message's content: a string, or an
// array of text blocks joined by newlines. Other block types (image,
// document, tool_use, tool_result, thinking) are refused.
func anthropicText(raw json.RawMessage, field string) (string, *apiError) {
	return textContent(raw, field, "content blocks", "content blocks")
}

// messagesToGenerate checks a Messages request and translates it: the
// system prompt becomes the conversation's first message.
func (h *Handler) messagesToGenerate(r *http.Request, body *messagesRequest) (*generateCall, *apiError) {
	if e := h.checkModel(body.Model); e != nil {
		return nil, e
	}
	if e := body.check(); e != nil {
		return nil, e
	}
	if body.MaxTokens == nil {
		return nil, badRequest("max_tokens", "is required")
	}
	if len(body.Messages) == 0 {
		return nil, badRequest("messages", "must hold at least one message")
	}
	var msgs []*schedulerv1.ChatMessage
	system := ""
	if present(body.System) {
		var e *apiError
		if system, e = anthropicText(body.System, "system"); e != nil {
			return nil, e
		}
		msgs = append(msgs, &schedulerv1.ChatMessage{Role: "system", Content: system})
	}
	firstUser := ""
	for i, m := range body.Messages {
		field := fmt.Sprintf("messages[%d]", i)
		if m.Role != "user" && m.Role != "assistant" {
			return nil, badRequest(field+".role", "must be user or assistant, got %q (the system prompt is the system parameter)", m.Role)
		}
		text, e := anthropicText(m.Content, field+".content")
		if e != nil {
			return nil, e
		}
		if m.Role == "user" && firstUser == "" && i == firstUserIndex(body.Messages) {
			firstUser = text
		}
		msgs = append(msgs, &schedulerv1.ChatMessage{Role: m.Role, Content: text})
	}
	if last := body.Messages[len(body.Messages)-1]; last.Role == "assistant" {
		// Anthropic continues a final assistant message (a prefill); a chat
		// template would open a new turn after it instead.
		return nil, unsupported(fmt.Sprintf("messages[%d]", len(body.Messages)-1), "a final assistant message (prefill)")
	}
	user := ""
	if body.Metadata != nil && body.Metadata.UserID != nil {
		user = *body.Metadata.UserID
	}
	agent, e := agentID(r, user, func() string { return conversationID(system, firstUser) })
	if e != nil {
		return nil, e
	}
	req := &schedulerv1.GenerateRequest{AgentId: agent, Messages: msgs}
	p := sampling{maxTokens: body.MaxTokens, maxField: "max_tokens", temperature: body.Temperature, maxTemp: 1,
		topP: body.TopP, topK: body.TopK, stops: body.StopSequences, stopField: "stop_sequences"}
	if e := p.apply(req, h.cfg.Model.ContextLength); e != nil {
		return nil, e
	}
	return &generateCall{req: req, stream: body.Stream != nil && *body.Stream}, nil
}

func firstUserIndex(msgs []anthropicMessage) int {
	for i, m := range msgs {
		if m.Role == "user" {
			return i
		}
	}
	return -1
}

var messagesIndex = regexp.MustCompile(`^messages\[(\d+)\]`)

// anthropicParam names the service's fields as the Anthropic API does; with
// a system prompt, the service's messages[0] is it.
func anthropicParam(hasSystem bool) func(string) string {
	return func(f string) string {
		switch {
		case f == "agent_id":
			return HeaderAgentID
		case f == "stop" || strings.HasPrefix(f, "stop["):
			return "stop_sequences" + strings.TrimPrefix(f, "stop")
		}
		if m := messagesIndex.FindStringSubmatch(f); m != nil && hasSystem {
			i, _ := strconv.Atoi(m[1])
			if i == 0 { // messages[0].content[2] is system[2]
				return "system" + strings.TrimPrefix(strings.TrimPrefix(f, m[0]), ".content")
			}
			return fmt.Sprintf("messages[%d]", i-1) + strings.TrimPrefix(f, m[0])
		}
		return f
	}
}

// Response objects.

type anthropicResponse struct {
	ID           string           `json:"id"`
	Type         string           `json:"type"`
	Role         string           `json:"role"`
	Model        string           `json:"model"`
	Content      []anthropicBlock `json:"content"`
	StopReason   *string          `json:"stop_reason"`
	StopSequence *string          `json:"stop_sequence"`
	Usage        anthropicUsage   `json:"usage"`
}

type anthropicBlock struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// anthropicUsage follows Anthropic's accounting: input_tokens are the prompt
// tokens computed, cache_read_input_tokens those reused from the cache
// (their sum is the prompt). Nothing is billed as a cache write, so
// cache_creation_input_tokens is 0.
type anthropicUsage struct {
	InputTokens              int `json:"input_tokens"`
	CacheCreationInputTokens int `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int `json:"cache_read_input_tokens"`
	OutputTokens             int `json:"output_tokens"`
}

func newAnthropicUsage(u *schedulerv1.Usage) anthropicUsage {
	return anthropicUsage{
		InputTokens:          int(u.GetPromptTokens() - u.GetCachedTokens()),
		CacheReadInputTokens: int(u.GetCachedTokens()), OutputTokens: int(u.GetCompletionTokens()),
	}
}

// anthropicStop is the stop_reason of a service finish reason.
func anthropicStop(f schedulerv1.FinishReason) string {
	switch f {
	case schedulerv1.FinishReason_FINISH_REASON_STOP:
		return "stop_sequence"
	case schedulerv1.FinishReason_FINISH_REASON_LENGTH:
		return "max_tokens"
	case schedulerv1.FinishReason_FINISH_REASON_CONTEXT:
		return "model_context_window_exceeded"
	}
	return "end_turn"
}

// messages serves POST /v1/messages.
func (h *Handler) messages(c *call) error {
	var body messagesRequest
	if e := readJSON(c.w, c.r, h.cfg.MaxBodyBytes, h.cfg.BodyTimeout, &body); e != nil {
		return e
	}
	gc, e := h.messagesToGenerate(c.r, &body)
	if e != nil {
		return e
	}
	req, streaming := gc.req, gc.stream
	param := anthropicParam(present(body.System))
	id := randomID("msg_")
	stopOf := func(g *generation) (*string, *string) {
		reason := anthropicStop(g.final.GetFinishReason())
		var seq *string
		if s := g.stopSequence(req.GetStop(), h.cfg.Model.TokenBytes); s != "" {
			seq = &s
		}
		return &reason, seq
	}
	if !streaming {
		var text strings.Builder
		g, err := h.generate(c, req, false, func(t string) error { text.WriteString(t); return nil })
		if err != nil {
			return asAPIError(err, param)
		}
		reason, seq := stopOf(g)
		return writeJSON(c.w, http.StatusOK, anthropicResponse{
			ID: id, Type: "message", Role: "assistant", Model: h.cfg.Model.ID,
			Content: []anthropicBlock{{Type: "text", Text: text.String()}}, StopReason: reason, StopSequence: seq,
			Usage: newAnthropicUsage(g.final.GetUsage()),
		}, h.cfg.WriteTimeout)
	}

	// The stream: message_start, ping, content_block_start, a
	// content_block_delta per piece of text, content_block_stop,
	// message_delta (stop reason, usage), message_stop. The prompt's token
	// counts are known at the end only: message_start carries zeros and
	// message_delta the totals (its usage counts are cumulative, and the
	// SDKs take them over message_start's).
	sse := newSSEWriter(c.w, h.cfg.WriteTimeout)
	begin := func() error {
		if sse.started {
			return nil
		}
		if err := sse.event("message_start", map[string]any{"type": "message_start", "message": anthropicResponse{
			ID: id, Type: "message", Role: "assistant", Model: h.cfg.Model.ID, Content: []anthropicBlock{}}}); err != nil {
			return err
		}
		if err := sse.event("ping", map[string]string{"type": "ping"}); err != nil {
			return err
		}
		return sse.event("content_block_start", map[string]any{"type": "content_block_start", "index": 0,
			"content_block": anthropicBlock{Type: "text", Text: ""}})
	}
	g, err := h.generate(c, req, true, func(t string) error {
		if err := begin(); err != nil {
			return err
		}
		return sse.event("content_block_delta", map[string]any{"type": "content_block_delta", "index": 0,
			"delta": map[string]string{"type": "text_delta", "text": t}})
	})
	if err != nil {
		e := asAPIError(err, param)
		if !sse.started || e == errClientGone {
			return e
		}
		c.rec.err = e
		_ = sse.event("error", newAnthropicError(e))
		return nil
	}
	if err := begin(); err != nil {
		return errClientGone
	}
	reason, seq := stopOf(g)
	for _, ev := range []struct {
		name string
		data any
	}{
		{"content_block_stop", map[string]any{"type": "content_block_stop", "index": 0}},
		{"message_delta", map[string]any{"type": "message_delta",
			"delta": map[string]any{"stop_reason": reason, "stop_sequence": seq},
			"usage": newAnthropicUsage(g.final.GetUsage())}},
		{"message_stop", map[string]string{"type": "message_stop"}},
	} {
		if err := sse.event(ev.name, ev.data); err != nil {
			return errClientGone
		}
	}
	return nil
}
