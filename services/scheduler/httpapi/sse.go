package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"
)

// sseWriter writes a text/event-stream response. Nothing is sent before the
// first event, so that an error found before it (a full queue, no pool) can
// still be answered with its own HTTP status and error JSON.
type sseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
	// writeTimeout bounds each event's write: a client that stops reading
	// without closing the connection fails the write, which ends its
	// sequence, rather than holding it forever.
	writeTimeout time.Duration
	started      bool
	buf          bytes.Buffer
}

func newSSEWriter(w http.ResponseWriter, writeTimeout time.Duration) *sseWriter {
	return &sseWriter{w: w, rc: http.NewResponseController(w), writeTimeout: writeTimeout}
}

// start sends the response header, once.
func (s *sseWriter) start() {
	if s.started {
		return
	}
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // proxies: do not buffer the stream
	s.w.WriteHeader(http.StatusOK)
}

// event writes one event, named when name is not "" (Anthropic names every
// event; OpenAI sends data lines only), with v as its JSON data, and flushes.
func (s *sseWriter) event(name string, v any) error {
	s.buf.Reset()
	if name != "" {
		s.buf.WriteString("event: ")
		s.buf.WriteString(name)
		s.buf.WriteByte('\n')
	}
	s.buf.WriteString("data: ")
	enc := json.NewEncoder(&s.buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil { // Encode ends the line
		return err
	}
	s.buf.WriteByte('\n')
	return s.flush()
}

// done writes OpenAI's end-of-stream line.
func (s *sseWriter) done() error {
	s.buf.Reset()
	s.buf.WriteString("data: [DONE]\n\n")
	return s.flush()
}

func (s *sseWriter) flush() error {
	s.start()
	if s.writeTimeout > 0 {
		_ = s.rc.SetWriteDeadline(time.Now().Add(s.writeTimeout))
	}
	if _, err := s.w.Write(s.buf.Bytes()); err != nil {
		return err
	}
	return s.rc.Flush()
}

// writeJSON writes a whole JSON response with status, within writeTimeout.
func writeJSON(w http.ResponseWriter, status int, v any, writeTimeout time.Duration) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	if writeTimeout > 0 {
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(writeTimeout))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}
