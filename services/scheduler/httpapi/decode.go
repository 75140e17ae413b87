package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"time"
)

// readJSON reads r's body into v. The body is bounded: a declared length
// over maxBytes is refused before anything is read, and a body that runs
// past it is cut off there (http.MaxBytesReader, which also makes the server
// close the connection rather than drain the rest), both 413. Reading it
// must finish within timeout, so a client that trickles a body does not hold
// a handler. Then decodeJSON.
func readJSON(w http.ResponseWriter, r *http.Request, maxBytes int64, timeout time.Duration, v any) *apiError {
	if r.ContentLength > maxBytes {
		return &apiError{status: http.StatusRequestEntityTooLarge, code: "request_too_large", noRetry: true,
			message: fmt.Sprintf("the request body of %d bytes is larger than the limit of %d", r.ContentLength, maxBytes)}
	}
	rc := http.NewResponseController(w)
	if timeout > 0 {
		_ = rc.SetReadDeadline(time.Now().Add(timeout))
		// Streams run long after the body is read: lift the deadline.
		defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBytes))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return &apiError{status: http.StatusRequestEntityTooLarge, code: "request_too_large", noRetry: true,
			message: fmt.Sprintf("the request body is larger than the limit of %d bytes", maxBytes)}
	case errors.Is(err, os.ErrDeadlineExceeded):
		return &apiError{status: http.StatusRequestTimeout, message: "reading the request body took longer than " + timeout.String()}
	case err != nil:
		return badRequest("", "reading the request body: %v", err)
	}
	return decodeJSON(data, v)
}

// decodeJSON decodes one JSON object into v. Unknown fields are ignored:
// clients send fields of newer API versions, and those that would change
// the output are listed in the request types and refused there. A value of
// the wrong type is a 400 naming its field.
func decodeJSON(data []byte, v any) *apiError {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return jsonError(err, "")
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("", "the request body holds more than one JSON value")
	}
	return nil
}

// jsonError words a decoding error; prefix is the path of the value that
// was decoded ("" for the body).
func jsonError(err error, prefix string) *apiError {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		field := te.Field
		switch {
		case prefix != "" && field != "":
			field = prefix + "." + field
		case prefix != "":
			field = prefix
		}
		if field == "" {
			return badRequest("", "the request body must be a JSON object, not %s", te.Value)
		}
		return badRequest(field, "must be %s, not %s", kindName(te.Type), te.Value)
	case errors.As(err, &se):
		return badRequest(prefix, "invalid JSON at byte %d: %v", se.Offset, se)
	case errors.Is(err, io.EOF):
		return badRequest("", "the request body is empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest(prefix, "the JSON ends early")
	}
	return badRequest(prefix, "%v", err)
}

// kindName says what a Go type accepts, in JSON terms.
func kindName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer in range"
	case reflect.Float32, reflect.Float64:
		return "a number in range"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "a " + t.String()
}

// present reports whether a raw field was given with a value other than null.
func present(raw json.RawMessage) bool {
	return len(raw) > 0 && string(bytes.TrimSpace(raw)) != "null"
}

// emptyArray reports whether raw is an empty JSON array.
func emptyArray(raw json.RawMessage) bool {
	var a []json.RawMessage
	return json.Unmarshal(raw, &a) == nil && len(a) == 0
}

// stringOrStrings decodes a parameter that is a string or an array of
// strings (OpenAI's stop, a completion's prompt); null gives nil.
func stringOrStrings(raw json.RawMessage, field string) ([]string, *apiError) {
	if !present(raw) {
		return nil, nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, badRequest(field, "must be a string or an array of strings")
	}
	return many, nil
}
