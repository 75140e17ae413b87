package server

import (
	"context"

	"google.golang.org/grpc"

	"github.com/semantic-kv/semantic/pkg/malformed"
)

// The interceptors that answer a request malformed.GuardCodec marked with
// INVALID_ARGUMENT before any handler runs.

// malformedUnary refuses a marked unary request.
func malformedUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := malformed.Check(req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// malformedStream refuses a marked stream message as it is received.
func malformedStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, guardStream{ss})
}

type guardStream struct{ grpc.ServerStream }

func (s guardStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return malformed.Check(m)
}
