// Package inproc connects a gRPC client to services in the same process
// without a transport: a Conn is both the grpc.ServiceRegistrar the services
// register on and the grpc.ClientConnInterface their generated clients call
// through. A call runs the service's handler directly, on the caller's
// context; messages are handed over as copies of the proto messages, never
// serialized, so a megabyte block costs one copy instead of a marshal, a
// trip through a pipe and an unmarshal.
//
// It exists for the scheduler's embedded pool (services/scheduler/embedded),
// which used to run a gRPC server on grpc's test-only bufconn listener in
// production. What a real server adds around a handler is absent here:
// interceptors, metadata, peer and TLS information, flow control. Its
// callers are this process's own code, so none of that is needed: the
// handlers still validate every request.
package inproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Conn is an in-process connection to the services registered on it.
type Conn struct {
	mu      sync.RWMutex
	unary   map[string]unaryMethod
	streams map[string]streamMethod
	closed  bool
	wg      sync.WaitGroup // running stream handlers
}

type unaryMethod struct {
	impl    any
	handler grpc.MethodHandler
}

type streamMethod struct {
	impl any
	desc grpc.StreamDesc
}

// New returns a Conn with no services.
func New() *Conn {
	return &Conn{unary: map[string]unaryMethod{}, streams: map[string]streamMethod{}}
}

// RegisterService implements grpc.ServiceRegistrar.
func (c *Conn) RegisterService(sd *grpc.ServiceDesc, impl any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range sd.Methods {
		c.unary["/"+sd.ServiceName+"/"+m.MethodName] = unaryMethod{impl: impl, handler: m.Handler}
	}
	for _, s := range sd.Streams {
		c.streams["/"+sd.ServiceName+"/"+s.StreamName] = streamMethod{impl: impl, desc: s}
	}
}

// ErrClosed is the UNAVAILABLE status of calls on a closed Conn.
var ErrClosed = status.Error(codes.Unavailable, "inproc: connection closed")

// Close refuses new calls and waits for the stream handlers still running
// (their callers' contexts end them).
func (c *Conn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.wg.Wait()
	return nil
}

// transfer hands src over as dst: a deep copy, so that neither side sees
// the other reuse its message (gRPC lets a sender reuse a message once
// SendMsg returns).
func transfer(dst, src any) error {
	d, ok1 := dst.(proto.Message)
	s, ok2 := src.(proto.Message)
	if !ok1 || !ok2 || d.ProtoReflect().Descriptor() != s.ProtoReflect().Descriptor() {
		return status.Errorf(codes.Internal, "inproc: cannot hand a %T over as a %T", src, dst)
	}
	proto.Reset(d)
	proto.Merge(d, s)
	return nil
}

// move hands over src, a message no one else holds (a clone made by the
// sender), as dst without copying it again: dst's fields take src's values.
func move(dst, src any) error {
	d, ok1 := dst.(proto.Message)
	s, ok2 := src.(proto.Message)
	if !ok1 || !ok2 || d.ProtoReflect().Descriptor() != s.ProtoReflect().Descriptor() {
		return status.Errorf(codes.Internal, "inproc: cannot hand a %T over as a %T", src, dst)
	}
	proto.Reset(d)
	dr := d.ProtoReflect()
	s.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		dr.Set(fd, v)
		return true
	})
	return nil
}

// recovered turns a handler's panic into INTERNAL, as a gRPC server's
// recovery interceptor would, so one bad call does not take the process down.
func recovered(method string, p any) error {
	return status.Errorf(codes.Internal, "inproc: panic in %s: %v\n%s", method, p, debug.Stack())
}

// Invoke implements grpc.ClientConnInterface for unary methods.
func (c *Conn) Invoke(ctx context.Context, method string, args, reply any, _ ...grpc.CallOption) (err error) {
	c.mu.RLock()
	m, ok := c.unary[method]
	closed := c.closed
	c.mu.RUnlock()
	switch {
	case closed:
		return ErrClosed
	case !ok:
		return status.Errorf(codes.Unimplemented, "inproc: unknown method %s", method)
	}
	if err := ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	defer func() {
		if p := recover(); p != nil {
			err = recovered(method, p)
		}
	}()
	resp, err := m.handler(m.impl, ctx, func(v any) error { return transfer(v, args) }, nil)
	if err != nil {
		return toStatus(err)
	}
	return transfer(reply, resp)
}

// toStatus keeps statuses and context errors as gRPC would report them.
func toStatus(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Unknown, err.Error())
}

// NewStream implements grpc.ClientConnInterface for streaming methods: the
// handler runs on its own goroutine with a server stream joined to the
// returned client stream by channels.
func (c *Conn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, _ ...grpc.CallOption) (grpc.ClientStream, error) {
	c.mu.RLock()
	m, ok := c.streams[method]
	closed := c.closed
	if ok && !closed {
		c.wg.Add(1)
	}
	c.mu.RUnlock()
	switch {
	case closed:
		return nil, ErrClosed
	case !ok:
		return nil, status.Errorf(codes.Unimplemented, "inproc: unknown method %s", method)
	}
	ctx, cancel := context.WithCancel(ctx)
	p := &pipe{ctx: ctx, cancel: cancel, toServer: make(chan any, 1), toClient: make(chan any, 1), done: make(chan struct{})}
	go func() {
		defer c.wg.Done()
		var err error
		func() {
			defer func() {
				if r := recover(); r != nil {
					err = recovered(method, r)
				}
			}()
			err = m.desc.Handler(m.impl, &serverStream{p})
		}()
		if err != nil {
			err = toStatus(err)
		}
		p.finish(err)
	}()
	return &clientStream{p: p, method: strings.TrimPrefix(method, "/"), serverStreams: desc.ServerStreams}, nil
}

// pipe joins one stream's two ends.
type pipe struct {
	ctx    context.Context
	cancel context.CancelFunc

	toServer chan any // closed by CloseSend
	sendOnce sync.Once

	toClient chan any      // never closed: done says the handler returned
	done     chan struct{} // closed when the handler returned, after err is set
	err      error         // the handler's status
}

func (p *pipe) finish(err error) {
	p.err = err
	close(p.done)
}

type serverStream struct{ p *pipe }

func (s *serverStream) Context() context.Context     { return s.p.ctx }
func (s *serverStream) SetHeader(metadata.MD) error  { return nil }
func (s *serverStream) SendHeader(metadata.MD) error { return nil }
func (s *serverStream) SetTrailer(metadata.MD)       {}

func (s *serverStream) SendMsg(m any) error {
	c, ok := m.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "inproc: %T is not a proto message", m)
	}
	select {
	case s.p.toClient <- proto.Clone(c):
		return nil
	case <-s.p.ctx.Done():
		return status.FromContextError(s.p.ctx.Err()).Err()
	}
}

func (s *serverStream) RecvMsg(m any) error {
	select {
	case v, ok := <-s.p.toServer:
		if !ok {
			return io.EOF
		}
		return move(m, v)
	case <-s.p.ctx.Done():
		return status.FromContextError(s.p.ctx.Err()).Err()
	}
}

type clientStream struct {
	p             *pipe
	method        string
	serverStreams bool
}

func (s *clientStream) Header() (metadata.MD, error) { return nil, nil }
func (s *clientStream) Trailer() metadata.MD         { return nil }
func (s *clientStream) Context() context.Context     { return s.p.ctx }

func (s *clientStream) CloseSend() error {
	s.p.sendOnce.Do(func() { close(s.p.toServer) })
	return nil
}

// SendMsg hands m to the handler. As on a gRPC stream, a send after the
// server has finished returns io.EOF (RecvMsg then has the status).
func (s *clientStream) SendMsg(m any) error {
	c, ok := m.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "inproc: %T is not a proto message", m)
	}
	select {
	case s.p.toServer <- proto.Clone(c):
		return nil
	case <-s.p.done:
		return io.EOF
	case <-s.p.ctx.Done():
		return status.FromContextError(s.p.ctx.Err()).Err()
	}
}

// RecvMsg receives the handler's next message; when the handler has
// returned, its status (io.EOF for OK), and the stream's context ends. On a
// stream whose server sends one message (client streaming), that message
// ends the stream, as in grpc: RecvMsg waits for the handler to return and
// reports its status if it failed after all.
func (s *clientStream) RecvMsg(m any) error {
	select {
	case v := <-s.p.toClient:
		if !s.serverStreams {
			<-s.p.done
			s.p.cancel()
			if s.p.err != nil {
				return s.p.err
			}
		}
		return move(m, v)
	case <-s.p.done:
		// Messages sent before the handler returned come first.
		select {
		case v := <-s.p.toClient:
			return move(m, v)
		default:
		}
		s.p.cancel()
		if s.p.err != nil {
			return s.p.err
		}
		return io.EOF
	case <-s.p.ctx.Done():
		return status.FromContextError(s.p.ctx.Err()).Err()
	}
}

// String names the stream's method (for debugging).
func (s *clientStream) String() string { return fmt.Sprintf("inproc stream %s", s.method) }
