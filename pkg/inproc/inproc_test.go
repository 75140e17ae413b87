package inproc_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/semantic-kv/semantic/pkg/inproc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// service is grpc's interop test service, enough of it to exercise every
// kind of call: echo, streamed download, streamed upload, full duplex.
type service struct {
	testgrpc.UnimplementedTestServiceServer
	kept []byte // the last unary payload, as the handler received it
}

func (s *service) UnaryCall(_ context.Context, r *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	switch string(r.GetPayload().GetBody()) {
	case "fail":
		return nil, status.Error(codes.FailedPrecondition, "told to fail")
	case "panic":
		panic("told to panic")
	}
	s.kept = r.GetPayload().GetBody()
	return &testgrpc.SimpleResponse{Payload: r.GetPayload()}, nil
}

func (s *service) StreamingOutputCall(r *testgrpc.StreamingOutputCallRequest, st grpc.ServerStreamingServer[testgrpc.StreamingOutputCallResponse]) error {
	for _, p := range r.GetResponseParameters() {
		if err := st.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: bytes.Repeat([]byte{'x'}, int(p.GetSize()))}}); err != nil {
			return err
		}
	}
	if r.GetResponseStatus().GetCode() != 0 {
		return status.Error(codes.Code(r.GetResponseStatus().GetCode()), r.GetResponseStatus().GetMessage())
	}
	return nil
}

func (s *service) StreamingInputCall(st grpc.ClientStreamingServer[testgrpc.StreamingInputCallRequest, testgrpc.StreamingInputCallResponse]) error {
	total := 0
	for {
		r, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return st.SendAndClose(&testgrpc.StreamingInputCallResponse{AggregatedPayloadSize: int32(total)})
		}
		if err != nil {
			return err
		}
		total += len(r.GetPayload().GetBody())
	}
}

// FullDuplexCall echoes each request until the client closes, or blocks
// until the stream's context ends when asked to.
func (s *service) FullDuplexCall(st grpc.BidiStreamingServer[testgrpc.StreamingOutputCallRequest, testgrpc.StreamingOutputCallResponse]) error {
	for {
		r, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if string(r.GetPayload().GetBody()) == "wait" {
			<-st.Context().Done()
			return st.Context().Err()
		}
		if err := st.Send(&testgrpc.StreamingOutputCallResponse{Payload: r.GetPayload()}); err != nil {
			return err
		}
	}
}

func setup(t *testing.T) (*inproc.Conn, *service, testgrpc.TestServiceClient) {
	c := inproc.New()
	s := &service{}
	testgrpc.RegisterTestServiceServer(c, s)
	t.Cleanup(func() { c.Close() })
	return c, s, testgrpc.NewTestServiceClient(c)
}

func TestUnary(t *testing.T) {
	_, s, cl := setup(t)
	ctx := context.Background()
	body := []byte("hello")
	resp, err := cl.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: body}})
	if err != nil || string(resp.GetPayload().GetBody()) != "hello" {
		t.Fatalf("%v %v", resp, err)
	}
	// Copies, not shared memory: the caller may reuse its message, and the
	// handler keeps what it received.
	body[0] = 'J'
	if string(s.kept) != "hello" || string(resp.GetPayload().GetBody()) != "hello" {
		t.Fatalf("the handover aliased the caller's bytes: kept %q, reply %q", s.kept, resp.GetPayload().GetBody())
	}
	_, err = cl.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("fail")}})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("handler status: %v", err)
	}
	_, err = cl.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("panic")}})
	if status.Code(err) != codes.Internal {
		t.Fatalf("panic: %v", err)
	}
	if _, err := cl.EmptyCall(ctx, &testgrpc.Empty{}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("unimplemented: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := cl.UnaryCall(cctx, &testgrpc.SimpleRequest{}); status.Code(err) != codes.Canceled {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestStreams(t *testing.T) {
	_, _, cl := setup(t)
	ctx := context.Background()
	// Download: every message, then the handler's status.
	st, err := cl.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{
		ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1}, {Size: 1 << 20}, {Size: 3}},
		ResponseStatus:     &testgrpc.EchoStatus{Code: int32(codes.ResourceExhausted), Message: "done"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for {
		r, err := st.Recv()
		if err != nil {
			if status.Code(err) != codes.ResourceExhausted || len(sizes) != 3 || sizes[1] != 1<<20 {
				t.Fatalf("download: %v after %v", err, sizes)
			}
			break
		}
		sizes = append(sizes, len(r.GetPayload().GetBody()))
	}
	// Upload.
	up, err := cl.StreamingInputCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1000)
	for range 5 {
		if err := up.Send(&testgrpc.StreamingInputCallRequest{Payload: &testgrpc.Payload{Body: buf}}); err != nil {
			t.Fatal(err)
		}
		buf[0]++ // reusing the buffer after Send is allowed
	}
	if r, err := up.CloseAndRecv(); err != nil || r.GetAggregatedPayloadSize() != 5000 {
		t.Fatalf("upload: %v %v", r, err)
	}
	// Full duplex.
	bidi, err := cl.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := bidi.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte{byte(i)}}}); err != nil {
			t.Fatal(err)
		}
		r, err := bidi.Recv()
		if err != nil || r.GetPayload().GetBody()[0] != byte(i) {
			t.Fatalf("echo %d: %v %v", i, r, err)
		}
	}
	_ = bidi.CloseSend()
	if _, err := bidi.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("end of duplex: %v", err)
	}
}

// A client that goes away ends the handler through its context; Close
// waits for handlers and then refuses calls.
func TestCancelAndClose(t *testing.T) {
	c, _, cl := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	bidi, err := cl.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := bidi.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("wait")}}); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := bidi.Recv(); status.Code(err) != codes.Canceled {
		t.Fatalf("after cancel: %v", err)
	}
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(time.Minute):
		t.Fatal("Close did not return: a handler is still running")
	}
	if _, err := cl.UnaryCall(context.Background(), &testgrpc.SimpleRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("after Close: %v", err)
	}
}

// A client-streaming call ends with its one response: the stream's
// context is released without the caller cancelling it (as grpc does), so
// a long-lived caller context does not collect finished streams.
func TestClientStreamEndsWithItsResponse(t *testing.T) {
	_, _, cl := setup(t)
	up, err := cl.StreamingInputCall(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Send(&testgrpc.StreamingInputCallRequest{Payload: &testgrpc.Payload{Body: []byte("abc")}}); err != nil {
		t.Fatal(err)
	}
	if r, err := up.CloseAndRecv(); err != nil || r.GetAggregatedPayloadSize() != 3 {
		t.Fatalf("%v %v", r, err)
	}
	select {
	case <-up.Context().Done():
	case <-time.After(time.Minute):
		t.Fatal("the stream's context is still live after its response")
	}
}
