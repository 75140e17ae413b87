package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/semantic-kv/semantic/pkg/rpcstatus"
	"github.com/semantic-kv/semantic/services/scheduler/service"
)

// statusClientClosed is recorded (never sent) for a request whose client
// went away before the answer: nginx's 499, so dashboards can tell it from
// a server error.
const statusClientClosed = 499

// apiError is an error answered to a client, before it is written in one
// API's error JSON (see openAIError and anthropicError): the HTTP status,
// the request parameter at fault, and the message.
type apiError struct {
	status  int
	param   string // the request parameter at fault, in the API's own terms; "" if none
	message string
	// code is OpenAI's machine-readable "code" ("" for none).
	code string
	// retryAfter, in seconds, is sent as Retry-After when > 0.
	retryAfter int
	// noRetry sends x-should-retry: false, which the official SDKs honour
	// over their status-based retries (a request too large for the pool
	// stays too large).
	noRetry bool
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s", e.status, e.text()) }

// text is the message, starting with the parameter's name when there is one
// (the service's messages already do).
func (e *apiError) text() string {
	if e.param == "" {
		return e.message
	}
	if strings.HasPrefix(e.message, e.param+": ") {
		return e.message
	}
	return e.param + ": " + e.message
}

// badRequest is a 400 naming the parameter.
func badRequest(param, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, param: param, message: fmt.Sprintf(format, args...)}
}

// unsupported is the 400 for a parameter this server does not implement and
// will not ignore, because ignoring it would change the output.
func unsupported(param, what string) *apiError {
	return badRequest(param, "%s is not supported by this server", what)
}

// fromService turns an error of service.Run (a gRPC status; field names in
// the service's terms) into the HTTP error. It is the one place where gRPC
// codes become HTTP statuses, for both APIs; param translates the service's
// field names into the API's.
func fromService(err error, param func(string) string) *apiError {
	st, ok := status.FromError(err)
	if !ok {
		return &apiError{status: http.StatusInternalServerError, message: "internal error"}
	}
	e := &apiError{message: st.Message()}
	if f := rpcstatus.FieldOf(err); f != "" {
		// The service's message starts with its field name; the API's
		// name for it goes in front instead.
		e.param, e.message = f, strings.TrimPrefix(e.message, f+": ")
		if param != nil {
			e.param = param(f)
		}
	}
	switch st.Code() {
	case codes.InvalidArgument:
		e.status = http.StatusBadRequest
		if rpcstatus.IsTooLong(err) {
			e.status, e.code = http.StatusRequestEntityTooLarge, "context_length_exceeded"
		}
	case codes.FailedPrecondition, codes.OutOfRange:
		e.status = http.StatusBadRequest
	case codes.NotFound:
		e.status = http.StatusNotFound
	case codes.ResourceExhausted:
		if rpcstatus.SubjectOf(err) == service.PoolBlocksSubject {
			// More KV blocks than the pool has at all: waiting will not help.
			e.status, e.code, e.noRetry = http.StatusRequestEntityTooLarge, "request_too_large", true
		} else {
			e.status, e.code, e.retryAfter = http.StatusTooManyRequests, "rate_limit_exceeded", 1
		}
	case codes.Unavailable:
		e.status, e.code, e.retryAfter = http.StatusServiceUnavailable, "service_unavailable", 1
	case codes.DeadlineExceeded:
		e.status = http.StatusGatewayTimeout
	case codes.Canceled:
		e.status = statusClientClosed
	case codes.Aborted:
		e.status = http.StatusConflict
	case codes.Unimplemented:
		e.status = http.StatusNotImplemented
	case codes.Unauthenticated:
		e.status = http.StatusUnauthorized
	case codes.PermissionDenied:
		e.status = http.StatusForbidden
	default:
		e.status = http.StatusInternalServerError
	}
	return e
}

// asAPIError is err as an *apiError: itself, or mapped from the service.
func asAPIError(err error, param func(string) string) *apiError {
	var e *apiError
	if errors.As(err, &e) {
		return e
	}
	return fromService(err, param)
}

// setRetryHeaders writes the headers that tell a client whether and when to
// retry.
func setRetryHeaders(h http.Header, e *apiError) {
	if e.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.retryAfter))
	}
	if e.noRetry {
		h.Set("X-Should-Retry", "false")
	}
}

// openAIError is the OpenAI error body: {"error": {...}}.
type openAIError struct {
	Error openAIErrorBody `json:"error"`
}

type openAIErrorBody struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func newOpenAIError(e *apiError) openAIError {
	b := openAIErrorBody{Message: e.text(), Type: openAIType(e.status)}
	if e.param != "" {
		b.Param = &e.param
	}
	if e.code != "" {
		b.Code = &e.code
	}
	return openAIError{Error: b}
}

func openAIType(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "authentication_error"
	case status == http.StatusForbidden:
		return "permission_error"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status == http.StatusGatewayTimeout:
		return "timeout_error"
	case status >= 500:
		return "server_error"
	}
	return "invalid_request_error"
}

// anthropicError is the Anthropic error body: {"type": "error", "error": {...}}.
type anthropicError struct {
	Type  string              `json:"type"`
	Error anthropicErrorInner `json:"error"`
}

type anthropicErrorInner struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

func newAnthropicError(e *apiError) anthropicError {
	// Anthropic's errors have no param field: the message names it.
	return anthropicError{Type: "error", Error: anthropicErrorInner{Type: anthropicType(e.status), Message: e.text()}}
}

func anthropicType(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusForbidden:
		return "permission_error"
	case http.StatusNotFound:
		return "not_found_error"
	case http.StatusConflict:
		return "conflict_error"
	case http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	case http.StatusServiceUnavailable:
		return "overloaded_error"
	case http.StatusGatewayTimeout:
		return "timeout_error"
	}
	if status >= 500 {
		return "api_error"
	}
	return "invalid_request_error"
}
