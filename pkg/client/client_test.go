package client_test

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/semantic-kv/semantic/pkg/client"
)

// A request that cannot start (nothing listens) is tried 1 + retries times
// with backoff, then fails as ErrUnavailable.
func TestRetriesUnavailableBeforeTheFirstToken(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	var calls atomic.Int32
	count := grpc.WithStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		calls.Add(1)
		return streamer(ctx, desc, cc, method, opts...)
	})
	c, err := client.Dial(addr, client.WithRetry(2, 5*time.Millisecond), client.WithDialOptions(count))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Complete(context.Background(), &client.GenerateRequest{AgentId: "a", Prompt: "x", MaxTokens: 1})
	if !errors.Is(err, client.ErrUnavailable) || calls.Load() != 3 {
		t.Fatalf("err %v after %d calls, want ErrUnavailable after 3", err, calls.Load())
	}
}

// Breaking out of the token loop cancels the request; the agent is free for
// the next one at once.
func TestBreakCancels(t *testing.T) {
	ctx := context.Background()
	c, err := client.Dial(server, client.WithAPIKey(userKey))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := c.Generate(ctx, &client.GenerateRequest{AgentId: "breaker", Prompt: "x", MaxTokens: 200})
	for _, err := range s.Tokens() {
		if err != nil {
			t.Fatal(err)
		}
		break
	}
	for range s.Tokens() { // a second range is refused
	}
	if s.Usage() != nil {
		t.Fatal("usage after a cancelled stream")
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := c.Complete(ctx, &client.GenerateRequest{AgentId: "breaker", Prompt: "y", MaxTokens: 2}); err != nil {
		t.Fatal(err)
	}
}

// A conversation turn that fails leaves the conversation unchanged.
func TestFailedTurnLeavesConversation(t *testing.T) {
	c, _ := client.Dial(server, client.WithAPIKey(userKey))
	defer c.Close()
	conv := c.Conversation("conv-fail", "")
	conv.Request.MaxTokens = 0 // invalid
	if _, err := conv.Say(context.Background(), "hi"); !errors.Is(err, client.ErrInvalidArgument) {
		t.Fatalf("err %v", err)
	}
	if n := len(conv.Messages()); n != 0 {
		t.Fatalf("%d messages after a failed turn", n)
	}
}
