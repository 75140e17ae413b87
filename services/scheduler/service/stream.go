package service

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/trace"

	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
)

// tokenStream sends a request's tokens to its transport as the loop makes
// them: the message per token (with its text, held back while it may begin
// a stop string), the time to the first token, the latency histograms. A
// send that fails cancels the sequence (the loop drops it at its next step)
// and is kept as the request's outcome.
type tokenStream struct {
	ctx       context.Context
	r         *admitted
	s         *Server
	send      func(*schedulerv1.GenerateResponse) error
	cancelSeq context.CancelFunc

	text    *textStream
	timer   *tokenTimer
	ttft    time.Duration
	index   int
	sendErr error
}

func (s *Server) newTokenStream(ctx context.Context, r *admitted, send func(*schedulerv1.GenerateResponse) error, cancelSeq context.CancelFunc) *tokenStream {
	return &tokenStream{ctx: ctx, r: r, s: s, send: send, cancelSeq: cancelSeq,
		text: newTextStream(r.req.GetStop()), timer: s.vllm.timer(r.arrival)}
}

// token streams one generated token.
func (t *tokenStream) token(tok uint32) {
	now := time.Now()
	if t.index == 0 {
		t.ttft = now.Sub(t.r.arrival)
		trace.SpanFromContext(t.ctx).AddEvent("first token")
	}
	t.timer.token(now)
	msg := &schedulerv1.GenerateResponse{TokenId: tok, Index: uint32(t.index)}
	if tk := t.s.cfg.Model.Tokenizer; tk != nil {
		msg.Text = t.text.push(tokenBytes(tk, tok))
	}
	t.index++
	if t.sendErr == nil {
		// A client that went away cancels ctx; the loop drops the sequence
		// at its next step and the events end.
		if t.sendErr = t.send(msg); t.sendErr != nil {
			t.cancelSeq()
		}
	}
}
