package client

import (
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/semantic-kv/semantic/pkg/rpcstatus"
)

// Kinds of failure a caller may want to handle, for errors.Is. Every error
// the client returns for a failed call is an *Error that matches one of them.
var (
	ErrInvalidArgument  = errors.New("invalid argument")       // Error.Field names the request field
	ErrTooLong          = errors.New("context too long")       // the prompt or conversation does not fit the model
	ErrUnauthenticated  = errors.New("unauthenticated")        // no API key, or an unknown one
	ErrPermissionDenied = errors.New("permission denied")      // another tenant's agent, or a role that may not
	ErrNotFound         = errors.New("not found")              // no such agent
	ErrQueueFull        = errors.New("queue full")             // the scheduler's (or the tenant's) request bound: retry later
	ErrAgentBusy        = errors.New("agent busy")             // too many requests of this agent at once
	ErrPoolFull         = errors.New("pool full")              // the request needs more KV blocks than the pool has
	ErrUnavailable      = errors.New("unavailable")            // no scheduler or no pool node: retry later
	ErrConflict         = errors.New("conflict")               // ABORTED: a concurrent change won
	ErrFailed           = errors.New("failed precondition")    // FAILED_PRECONDITION: the request cannot run in this state
	ErrInternal         = errors.New("internal error")         // a server bug: report it
	ErrCanceled         = errors.New("canceled or timed out")  // the caller's context ended
	ErrOther            = errors.New("unexpected status code") // anything else
)

// Error is a failed call: the kind (for errors.Is), the gRPC code, and the
// request field or quota subject the server named.
type Error struct {
	Kind    error
	Code    codes.Code
	Field   string // INVALID_ARGUMENT: the offending request field
	Subject string // RESOURCE_EXHAUSTED: the bound that was hit (scheduler/queue, ...)
	Message string
}

func (e *Error) Error() string { return "semantic: " + e.Kind.Error() + ": " + e.Message }

// Is makes errors.Is(err, ErrQueueFull) and the like work.
func (e *Error) Is(target error) bool { return target == e.Kind }

// GRPCStatus lets status.Code and status.Convert read the original code.
func (e *Error) GRPCStatus() *status.Status { return status.New(e.Code, e.Message) }

// Wrap turns an error of a gRPC call into an *Error with its kind (nil
// stays nil), for callers that also use the generated clients directly.
func Wrap(err error) error { return wrap(err) }

func wrap(err error) error {
	if err == nil {
		return nil
	}
	if e, ok := err.(*Error); ok {
		return e
	}
	st := status.Convert(err)
	e := &Error{Code: st.Code(), Message: st.Message(), Field: rpcstatus.FieldOf(err), Subject: rpcstatus.SubjectOf(err)}
	switch st.Code() {
	case codes.InvalidArgument:
		e.Kind = ErrInvalidArgument
		if rpcstatus.IsTooLong(err) {
			e.Kind = ErrTooLong
		}
	case codes.Unauthenticated:
		e.Kind = ErrUnauthenticated
	case codes.PermissionDenied:
		e.Kind = ErrPermissionDenied
	case codes.NotFound:
		e.Kind = ErrNotFound
	case codes.ResourceExhausted:
		switch e.Subject {
		case rpcstatus.SubjectAgentQueue:
			e.Kind = ErrAgentBusy
		case rpcstatus.SubjectPoolBlocks:
			e.Kind = ErrPoolFull
		default:
			e.Kind = ErrQueueFull
		}
	case codes.Unavailable:
		e.Kind = ErrUnavailable
	case codes.Aborted:
		e.Kind = ErrConflict
	case codes.FailedPrecondition:
		e.Kind = ErrFailed
	case codes.Internal, codes.DataLoss, codes.Unknown:
		e.Kind = ErrInternal
	case codes.Canceled, codes.DeadlineExceeded:
		e.Kind = ErrCanceled
	default:
		e.Kind = ErrOther
	}
	return e
}
