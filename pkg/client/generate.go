package client

import (
	"context"
	"errors"
	"io"
	"iter"
	"math/rand/v2"
	"strings"
	"time"

	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
)

// Finish reasons (GenerateResponse.finish_reason).
const (
	FinishLength  = schedulerv1.FinishReason_FINISH_REASON_LENGTH
	FinishStop    = schedulerv1.FinishReason_FINISH_REASON_STOP
	FinishEOS     = schedulerv1.FinishReason_FINISH_REASON_EOS
	FinishContext = schedulerv1.FinishReason_FINISH_REASON_CONTEXT
)

// Token is one generated token: its id and the text it adds (a token that
// ends inside a UTF-8 character adds its text with the next one).
type Token struct {
	ID    uint32
	Text  string
	Index int
}

// Stream is one Generate call. Range over Tokens once; after the loop,
// Usage, FinishReason and Text describe the whole answer.
type Stream struct {
	c   *Client
	ctx context.Context
	req *GenerateRequest

	text   strings.Builder
	tail   string
	ids    []uint32
	usage  *Usage
	finish FinishReason
	err    error
	used   bool
}

// Generate prepares a request; nothing is sent until Tokens is ranged over.
func (c *Client) Generate(ctx context.Context, req *GenerateRequest) *Stream {
	return &Stream{c: c, ctx: ctx, req: req}
}

// Tokens yields each token as the server produces it, then ends; a failure
// is yielded once as the error (an *Error) and ends the sequence. Breaking
// out of the loop cancels the request on the server. A request that fails
// with UNAVAILABLE before its first token is retried (WithRetry).
func (s *Stream) Tokens() iter.Seq2[Token, error] {
	return func(yield func(Token, error) bool) {
		if s.used {
			yield(Token{}, errors.New("client: a Stream can be ranged over once"))
			return
		}
		s.used = true
		ctx, cancel := context.WithCancel(s.ctx)
		defer cancel()
		stream, first, err := s.open(ctx)
		if err != nil {
			s.err = err
			yield(Token{}, err)
			return
		}
		msg := first
		for {
			if msg.GetUsage() != nil {
				s.usage, s.finish, s.tail = msg.GetUsage(), msg.GetFinishReason(), msg.GetText()
				s.text.WriteString(s.tail)
			} else {
				s.text.WriteString(msg.GetText())
				s.ids = append(s.ids, msg.GetTokenId())
				if !yield(Token{ID: msg.GetTokenId(), Text: msg.GetText(), Index: int(msg.GetIndex())}, nil) {
					return
				}
			}
			msg, err = stream.Recv()
			if errors.Is(err, io.EOF) {
				if s.usage == nil {
					s.err = &Error{Kind: ErrInternal, Message: "the stream ended without its final message"}
					yield(Token{}, s.err)
				}
				return
			}
			if err != nil {
				s.err = wrap(err)
				yield(Token{}, s.err)
				return
			}
		}
	}
}

// open starts the call and reads its first message, retrying UNAVAILABLE
// (no scheduler, no pool node yet) with a jittered exponential backoff.
func (s *Stream) open(ctx context.Context) (schedulerv1.SchedulerService_GenerateClient, *schedulerv1.GenerateResponse, error) {
	delay := s.c.opts.backoff
	for attempt := 0; ; attempt++ {
		stream, err := s.c.api.Generate(ctx, s.req)
		var first *schedulerv1.GenerateResponse
		if err == nil {
			first, err = stream.Recv()
			if errors.Is(err, io.EOF) {
				return nil, nil, &Error{Kind: ErrInternal, Message: "the stream ended without a message"}
			}
		}
		if err == nil {
			return stream, first, nil
		}
		werr := wrap(err)
		if !errors.Is(werr, ErrUnavailable) || attempt >= s.c.opts.retries {
			return nil, nil, werr
		}
		wait := delay/2 + rand.N(delay/2+1)
		select {
		case <-ctx.Done():
			return nil, nil, wrap(ctx.Err())
		case <-time.After(wait):
		}
		delay = min(2*delay, s.c.opts.maxDelay)
	}
}

// Usage is the final usage (prompt, cached and generated tokens, whether
// the turn was saved); nil until the stream has ended well.
func (s *Stream) Usage() *Usage { return s.usage }

// FinishReason says why generation stopped (after the stream ended).
func (s *Stream) FinishReason() FinishReason { return s.finish }

// Text is the text generated so far.
func (s *Stream) Text() string { return s.text.String() }

// Tail is the text the final message carried: text the server held back
// while it might have been the start of a stop string, released when it
// was not. It is part of Text but was never yielded as a Token, so a caller
// that prints tokens as they come prints Tail after the loop.
func (s *Stream) Tail() string { return s.tail }

// Err is the error that ended the stream, if any.
func (s *Stream) Err() error { return s.err }

// Result is a whole answer.
type Result struct {
	Text         string
	TokenIDs     []uint32
	FinishReason FinishReason
	Usage        *Usage
}

// Complete runs a request to its end and returns the whole answer.
func (c *Client) Complete(ctx context.Context, req *GenerateRequest) (*Result, error) {
	s := c.Generate(ctx, req)
	for _, err := range s.Tokens() {
		if err != nil {
			return nil, err
		}
	}
	return &Result{Text: s.Text(), TokenIDs: s.ids, FinishReason: s.finish, Usage: s.usage}, nil
}
