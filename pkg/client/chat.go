package client

import (
	"context"
	"iter"
	"slices"
)

// Conversation is a chat with one agent: each Send resends the whole
// conversation as messages (rendered with the model's chat template), and
// the scheduler reuses the cached prefix — the previous turns, replies
// included — so only the new message is prefilled.
type Conversation struct {
	c        *Client
	agent    string
	messages []*Message
	// Request is the template of every turn's request: set MaxTokens,
	// Temperature, Stop, CacheSalt... (AgentId and Messages are filled in).
	Request GenerateRequest
}

// Conversation starts a chat as agent, optionally with a system prompt.
func (c *Client) Conversation(agent, system string) *Conversation {
	conv := &Conversation{c: c, agent: agent, Request: GenerateRequest{MaxTokens: 256}}
	if system != "" {
		conv.messages = append(conv.messages, &Message{Role: "system", Content: system})
	}
	return conv
}

// Messages is the conversation so far.
func (cv *Conversation) Messages() []*Message { return slices.Clone(cv.messages) }

// Send adds the user's message, streams the reply (range over the returned
// Stream's Tokens), and — once the stream has ended well — adds the reply
// to the conversation. A turn that fails leaves the conversation as it was.
func (cv *Conversation) Send(ctx context.Context, user string) *TurnStream {
	req := &GenerateRequest{
		AgentId: cv.agent, MaxTokens: cv.Request.GetMaxTokens(), Temperature: cv.Request.GetTemperature(),
		TopP: cv.Request.GetTopP(), TopK: cv.Request.GetTopK(), Seed: cv.Request.GetSeed(),
		Stop: cv.Request.GetStop(), CacheSalt: cv.Request.GetCacheSalt(),
		Messages: append(slices.Clone(cv.messages), &Message{Role: "user", Content: user}),
	}
	return &TurnStream{Stream: cv.c.Generate(ctx, req), conv: cv, msgs: req.Messages}
}

// Say is Send run to its end: the reply as one Result.
func (cv *Conversation) Say(ctx context.Context, user string) (*Result, error) {
	ts := cv.Send(ctx, user)
	for _, err := range ts.Tokens() {
		if err != nil {
			return nil, err
		}
	}
	return &Result{Text: ts.Text(), TokenIDs: ts.ids, FinishReason: ts.finish, Usage: ts.usage}, nil
}

// TurnStream is one turn of a Conversation.
type TurnStream struct {
	*Stream
	conv *Conversation
	msgs []*Message
}

// Tokens is Stream.Tokens; when the reply has ended well it joins the
// conversation.
func (ts *TurnStream) Tokens() iter.Seq2[Token, error] {
	inner := ts.Stream.Tokens()
	return func(yield func(Token, error) bool) {
		stopped := false
		inner(func(t Token, err error) bool {
			if !yield(t, err) {
				stopped = true
				return false
			}
			return true
		})
		if !stopped && ts.err == nil && ts.usage != nil {
			ts.conv.messages = append(ts.msgs, &Message{Role: "assistant", Content: ts.Text()})
		}
	}
}
