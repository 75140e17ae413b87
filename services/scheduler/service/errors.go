package service

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/semantic-kv/semantic/services/scheduler/batch"
	"github.com/semantic-kv/semantic/services/scheduler/poolnode"
)

// toStatus is the one place where the scheduler's domain errors become gRPC
// statuses, applied where a call leaves the service (Run, the agent RPCs):
//
//	a gRPC status                 -> itself (the service's own refusals, and
//	                                 a pool node's answers, passed on)
//	poolnode.ErrNoHealthyNode   -> UNAVAILABLE
//	poolnode.ErrDataLoss        -> DATA_LOSS (a block transfer came back damaged)
//	batch.ErrClosed               -> UNAVAILABLE (shutting down: retry elsewhere)
//	batch.ErrEngine               -> INTERNAL
//	context errors                -> CANCELLED / DEADLINE_EXCEEDED
//	anything else                 -> INTERNAL
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	case errors.Is(err, poolnode.ErrNoHealthyNode), errors.Is(err, batch.ErrClosed):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, poolnode.ErrDataLoss):
		return status.Error(codes.DataLoss, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}
