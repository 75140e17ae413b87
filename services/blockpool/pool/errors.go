package pool

import (
	"errors"
	"fmt"
)

// Error categories. Every error the pool returns wraps exactly one of them, so
// that the gRPC layer maps errors to status codes in one place with errors.Is.
var (
	// ErrInvalidArgument: the request itself is malformed (see ArgError).
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrExhausted: not enough blocks (or disk) to grant the request (see ExhaustedError).
	ErrExhausted = errors.New("pool exhausted")
	// ErrFailedPrecondition: refused because of the pool's state.
	ErrFailedPrecondition = errors.New("failed precondition")
	// ErrAborted: an optimistic-concurrency race was lost.
	ErrAborted = errors.New("aborted")
	// ErrNotFound: unknown lease, agent or block.
	ErrNotFound = errors.New("not found")
	// ErrDataLoss: a stored payload failed its checksum; it was dropped.
	ErrDataLoss = errors.New("data loss")
	// ErrPermissionDenied: the caller is not the one the object belongs to.
	ErrPermissionDenied = errors.New("permission denied")
)

// Specific errors, each wrapping its category.
var (
	ErrLeaseNotFound   = fmt.Errorf("lease %w (unknown, expired, released or of an older epoch)", ErrNotFound)
	ErrAgentNotFound   = fmt.Errorf("agent %w", ErrNotFound)
	ErrBlockNotFound   = fmt.Errorf("block %w", ErrNotFound)
	ErrNotConfigured   = fmt.Errorf("%w: pool has no cache spec yet (Reconfigure first)", ErrFailedPrecondition)
	ErrLeasesActive    = fmt.Errorf("%w: leases are active", ErrFailedPrecondition)
	ErrModelMismatch   = fmt.Errorf("%w: model tag differs from the pool's spec", ErrFailedPrecondition)
	ErrNotWritable     = fmt.Errorf("%w: block is not writable through this lease (filled or being written)", ErrFailedPrecondition)
	ErrNotFilled       = fmt.Errorf("%w: block holds no payload", ErrFailedPrecondition)
	ErrVersionMismatch = fmt.Errorf("%w: agent version mismatch", ErrAborted)
	ErrChecksum        = fmt.Errorf("%w: checksum mismatch", ErrDataLoss)
	ErrClosed          = fmt.Errorf("%w: pool closed", ErrFailedPrecondition)
	ErrNotHolder       = fmt.Errorf("%w: the lease belongs to another holder", ErrPermissionDenied)
)

// ArgError names the request field that is invalid.
type ArgError struct {
	Field  string
	Reason string
}

func (e *ArgError) Error() string { return fmt.Sprintf("invalid argument: %s: %s", e.Field, e.Reason) }

// Unwrap makes errors.Is(err, ErrInvalidArgument) true.
func (e *ArgError) Unwrap() error { return ErrInvalidArgument }

func argErr(field, format string, args ...any) error {
	return &ArgError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// ExhaustedError says what was asked and what could be had.
type ExhaustedError struct {
	// Resource is "pool/blocks", "pool/disk", "pool/agents",
	// "pool/agent-bytes", "tenant/agents" or "tenant/agent-bytes".
	Resource string
	// Asked and Available are in blocks for pool/blocks, agents for the
	// .../agents resources, bytes for the others.
	Asked, Available int64
}

func (e *ExhaustedError) Error() string {
	return fmt.Sprintf("pool exhausted: %s: asked %d, available %d", e.Resource, e.Asked, e.Available)
}

// Unwrap makes errors.Is(err, ErrExhausted) true.
func (e *ExhaustedError) Unwrap() error { return ErrExhausted }
