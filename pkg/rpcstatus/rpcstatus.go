// Package rpcstatus builds the gRPC statuses both services return for bad
// input, so that every INVALID_ARGUMENT names its field the same way (a
// google.rpc.BadRequest detail) and every RESOURCE_EXHAUSTED carries a
// google.rpc.QuotaFailure detail. Input too long for the model's context is
// an INVALID_ARGUMENT with a google.rpc.ErrorInfo detail as well (reason
// TOO_LONG), so that a front end can tell it apart (HTTP answers 413).
package rpcstatus

import (
	"fmt"
	"regexp"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// InvalidArgument is an INVALID_ARGUMENT status whose message and BadRequest
// detail name field.
func InvalidArgument(field, format string, args ...any) error {
	desc := fmt.Sprintf(format, args...)
	st := status.New(codes.InvalidArgument, fmt.Sprintf("%s: %s", field, desc))
	if d, err := st.WithDetails(&errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: desc}},
	}); err == nil {
		st = d
	}
	return st.Err()
}

// Exhausted is a RESOURCE_EXHAUSTED status with a QuotaFailure detail naming
// the subject (for example "pool/blocks") and what was asked and available.
func Exhausted(subject, format string, args ...any) error {
	desc := fmt.Sprintf(format, args...)
	st := status.New(codes.ResourceExhausted, desc)
	if d, err := st.WithDetails(&errdetails.QuotaFailure{
		Violations: []*errdetails.QuotaFailure_Violation{{Subject: subject, Description: desc}},
	}); err == nil {
		st = d
	}
	return st.Err()
}

// Domain is the google.rpc.ErrorInfo domain of this project's reasons.
const Domain = "semantic-kv"

// ReasonTooLong is the ErrorInfo reason of TooLong statuses.
const ReasonTooLong = "TOO_LONG"

// TooLong is InvalidArgument for input that cannot fit (a prompt or
// conversation longer than the model's context): the field is named the same
// way, and an ErrorInfo detail with reason TOO_LONG marks it as a size
// problem rather than a malformed value.
func TooLong(field, format string, args ...any) error {
	st := status.Convert(InvalidArgument(field, format, args...))
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: ReasonTooLong, Domain: Domain}); err == nil {
		st = d
	}
	return st.Err()
}

// IsTooLong reports whether err is a TooLong status.
func IsTooLong(err error) bool {
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok && ei.GetReason() == ReasonTooLong && ei.GetDomain() == Domain {
			return true
		}
	}
	return false
}

// SubjectOf returns the first QuotaFailure violation's subject of err (for
// example "scheduler/queue"), or "".
func SubjectOf(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return ""
	}
	for _, d := range st.Details() {
		if qf, ok := d.(*errdetails.QuotaFailure); ok && len(qf.GetViolations()) > 0 {
			return qf.GetViolations()[0].GetSubject()
		}
	}
	return ""
}

// FieldOf returns the first BadRequest field violation's field of err, or "".
func FieldOf(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return ""
	}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.FieldViolations) > 0 {
			return br.FieldViolations[0].Field
		}
	}
	return ""
}

// Subjects of the scheduler's RESOURCE_EXHAUSTED statuses (their
// QuotaFailure), shared by the service that returns them and the clients
// that tell them apart (pkg/client): a full queue is worth retrying soon; a
// request that needs more blocks than the pool has is not.
const (
	SubjectQueue          = "scheduler/queue"           // the scheduler's admission queue
	SubjectAgentQueue     = "scheduler/agent-queue"     // one agent's requests
	SubjectTenantRequests = "scheduler/tenant-requests" // a tenant's max_requests
	SubjectPoolBlocks     = "pool/blocks"               // more blocks than the pool has
)

// MaxAgentIDLen bounds agent ids.
const MaxAgentIDLen = 128

var agentIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// ValidAgentID reports whether id matches [A-Za-z0-9._:-]{1,128}.
func ValidAgentID(id string) bool { return agentIDPattern.MatchString(id) }

// CheckAgentID returns an INVALID_ARGUMENT status naming field when id is not a
// valid agent id, and nil otherwise.
func CheckAgentID(field, id string) error {
	if !ValidAgentID(id) {
		return InvalidArgument(field, "must match [A-Za-z0-9._:-]{1,128}, got %q", truncate(id, 64))
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
