package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/semantic-kv/semantic/pkg/rpcstatus"
	"github.com/semantic-kv/semantic/services/blockpool/pool"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// toStatus is the one place where domain errors become gRPC statuses:
//
//	pool.ArgError            -> INVALID_ARGUMENT + BadRequest naming the field
//	pool.ExhaustedError      -> RESOURCE_EXHAUSTED + QuotaFailure (asked, available) naming the resource:
//	                            pool/blocks, pool/disk, pool/agents, pool/agent-bytes,
//	                            tenant/agents, tenant/agent-bytes
//	authorization (authz.go) -> UNAUTHENTICATED (no client certificate), PERMISSION_DENIED
//	pool.ErrFailedPrecondition -> FAILED_PRECONDITION (leases active, not configured, model tag, block state)
//	pool.ErrAborted          -> ABORTED (agent version race)
//	pool.ErrNotFound         -> NOT_FOUND (lease, agent, block)
//	pool.ErrPermissionDenied -> PERMISSION_DENIED (another holder's lease, or another identity's)
//	pool.ErrDataLoss         -> DATA_LOSS (checksum mismatch)
//	context errors           -> CANCELED / DEADLINE_EXCEEDED
//	anything else            -> INTERNAL
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var ae *pool.ArgError
	var ex *pool.ExhaustedError
	switch {
	case errors.As(err, &ae):
		return rpcstatus.InvalidArgument(ae.Field, "%s", ae.Reason)
	case errors.As(err, &ex):
		unit := "blocks"
		switch ex.Resource {
		case "pool/disk", "pool/agent-bytes", "tenant/agent-bytes":
			unit = "bytes"
		case "pool/agents", "tenant/agents":
			unit = "agents"
		}
		return rpcstatus.Exhausted(ex.Resource, "asked %d %s, available %d", ex.Asked, unit, ex.Available)
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, pool.ErrDataLoss):
		return status.Error(codes.DataLoss, err.Error())
	case errors.Is(err, pool.ErrPermissionDenied):
		return status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, pool.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, pool.ErrAborted):
		return status.Error(codes.Aborted, err.Error())
	case errors.Is(err, pool.ErrFailedPrecondition):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, pool.ErrExhausted):
		return status.Error(codes.ResourceExhausted, err.Error())
	}
	return status.Error(codes.Internal, fmt.Sprintf("internal: %v", err))
}
