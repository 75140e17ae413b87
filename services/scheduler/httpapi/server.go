// Package httpapi serves the scheduler's OpenAI- and Anthropic-compatible
// HTTP API: POST /v1/chat/completions, /v1/completions and GET /v1/models
// (OpenAI), POST /v1/messages (Anthropic), and GET /health.
//
// Requests go to the same service layer as gRPC (service.Server.Run), with
// no gRPC hop in between: a conversation is sent as a full-context Generate
// with messages, so the service renders it with the model's chat template and
// the pool's lookup reuses the longest cached prefix. Which agent a request
// runs as comes from a header, the body's user, or the conversation itself
// (see agentID). docs/http.md describes the field mapping, the errors and
// what is not supported.
package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
)

// Service is what the API needs of the scheduler's service (*service.Server).
type Service interface {
	// Run executes one Generate request (see service.Server.Run).
	Run(ctx context.Context, req *schedulerv1.GenerateRequest, send func(*schedulerv1.GenerateResponse) error) error
	// Ready is nil when a request can be served (a pool node is healthy).
	Ready() error
}

// Model describes the served model to the API.
type Model struct {
	// ID names the model in the API: /v1/models lists it, and a request's
	// "model" must be it.
	ID string
	// ContextLength is the model's context in tokens.
	ContextLength int
	// Created is when the model was loaded ("created" in /v1/models).
	Created time.Time
	// TokenBytes is the text of a token; nil when the model has no
	// tokenizer. It tells which stop sequence ended a generation.
	TokenBytes func(uint32) []byte
}

// Config configures the API.
type Config struct {
	Service Service
	Model   Model
	Logger  *slog.Logger
	// MeterProvider and TracerProvider receive the API's metrics and a span
	// per request (the service's spans are its children); nil: none.
	MeterProvider  metric.MeterProvider
	TracerProvider trace.TracerProvider
	// MaxBodyBytes bounds a request body (default 16 MiB, the gRPC API's
	// message limit).
	MaxBodyBytes int64
	// BodyTimeout bounds reading a request body (default 1 minute).
	BodyTimeout time.Duration
	// WriteTimeout bounds each write of a response: a whole JSON answer, or
	// one event of a stream (default 1 minute).
	WriteTimeout time.Duration
	// Authorize, when set, runs before every API endpoint (not /health); an
	// error refuses the request, answered in the API's format: a gRPC status
	// UNAUTHENTICATED is 401 (with WWW-Authenticate: Bearer),
	// PERMISSION_DENIED 403. The context it returns is the request's from
	// then on, so what it learned (who the caller is) reaches the service.
	// This is the one place for authentication; nil lets every request
	// through.
	Authorize func(*http.Request) (context.Context, error)
}

// Defaults of Config.
const (
	DefaultMaxBodyBytes = 16 << 20
	DefaultBodyTimeout  = time.Minute
	DefaultWriteTimeout = time.Minute
)

// Handler is the API's http.Handler.
type Handler struct {
	cfg    Config
	log    *slog.Logger
	mux    *http.ServeMux
	tel    *telemetry
	routes map[string][]string // path -> methods, for 405 answers

	// inflight counts endpoint calls, so that Server.Shutdown can wait for
	// the last one after cancelling it.
	inflight sync.WaitGroup
}

// api says whose error format an endpoint answers in.
type api int

const (
	apiOpenAI api = iota
	apiAnthropic
)

// call is one request on its way through an endpoint.
type call struct {
	w     http.ResponseWriter
	r     *http.Request
	api   api
	route string
	start time.Time
	rec   *recorder
	id    string // request id
}

// endpoint serves one route. It returns the error to answer when it has not
// answered yet; one that has started a stream reports later errors in it.
type endpoint func(c *call) error

// New builds the API's handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Service == nil {
		return nil, errors.New("httpapi: Config.Service is required")
	}
	if cfg.Model.ContextLength <= 0 {
		return nil, errors.New("httpapi: Config.Model.ContextLength is required")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.BodyTimeout <= 0 {
		cfg.BodyTimeout = DefaultBodyTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Model.Created.IsZero() {
		cfg.Model.Created = time.Now()
	}
	tel, err := newTelemetry(cfg.MeterProvider, cfg.TracerProvider)
	if err != nil {
		return nil, err
	}
	h := &Handler{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(), tel: tel, routes: map[string][]string{}}
	h.handle("POST /v1/chat/completions", apiOpenAI, true, h.chatCompletions)
	h.handle("POST /v1/completions", apiOpenAI, true, h.completions)
	h.handle("GET /v1/models", apiOpenAI, true, h.listModels)
	h.handle("GET /v1/models/{model...}", apiOpenAI, true, h.getModel)
	h.handle("POST /v1/messages", apiAnthropic, true, h.messages)
	h.handle("GET /health", apiOpenAI, false, h.health)
	h.mux.Handle("/", h.wrap("unmatched", apiOpenAI, false, h.unmatched))
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) handle(pattern string, a api, authorize bool, ep endpoint) {
	method, path, _ := strings.Cut(pattern, " ")
	path = strings.TrimSuffix(path, "{model...}")
	h.routes[path] = append(h.routes[path], method)
	h.mux.Handle(pattern, h.wrap(pattern, a, authorize, ep))
}

// wrap is the chain every request passes, in order: telemetry (a server
// span joined to the caller's trace, metrics, the request id, a log line),
// panic recovery, authorization (Config.Authorize), the endpoint, and the
// rendering of the error it returns in its API's format.
func (h *Handler) wrap(route string, a api, authorize bool, ep endpoint) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.inflight.Add(1)
		defer h.inflight.Done()
		c := &call{r: r, api: a, route: route, start: time.Now(), id: requestID(r)}
		if a == apiOpenAI && strings.HasPrefix(r.URL.Path, "/v1/messages") {
			c.api = apiAnthropic // an unmatched Anthropic path
		}
		c.rec = &recorder{ResponseWriter: w}
		c.w = c.rec
		w.Header().Set("X-Request-ID", c.id)
		var span trace.Span
		c.r, span = h.tel.startSpan(c)
		defer func() { h.tel.end(c, span, h.log) }()
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler { //nolint:errorlint // the sentinel value itself
					panic(p)
				}
				h.log.Error("panic in http handler", "route", route, "request_id", c.id, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				if c.rec.status != 0 {
					panic(http.ErrAbortHandler) // mid-stream: cut the connection
				}
				h.writeError(c, &apiError{status: http.StatusInternalServerError, message: "internal error (request " + c.id + ")"})
			}
		}()
		var err error
		if authorize && h.cfg.Authorize != nil {
			var actx context.Context
			if actx, err = h.cfg.Authorize(c.r); err == nil {
				c.r = c.r.WithContext(actx)
			}
		}
		if err == nil {
			err = ep(c)
		}
		if err != nil {
			e := asAPIError(err, nil)
			c.rec.err = e
			if c.rec.status == 0 && e.status != statusClientClosed {
				h.writeError(c, e)
			}
		}
	})
}

// writeError answers e in the call's API format.
func (h *Handler) writeError(c *call, e *apiError) {
	setRetryHeaders(c.w.Header(), e)
	if e.status == http.StatusUnauthorized {
		c.w.Header().Set("WWW-Authenticate", "Bearer") // RFC 6750: how to authenticate
	}
	var body any = newOpenAIError(e)
	if c.api == apiAnthropic {
		body = newAnthropicError(e)
	}
	_ = writeJSON(c.w, e.status, body, h.cfg.WriteTimeout)
}

// unmatched answers a path the API does not serve (404) or a method a path
// does not take (405).
func (h *Handler) unmatched(c *call) error {
	path := c.r.URL.Path
	methods := h.routes[path]
	if methods == nil && strings.HasPrefix(path, "/v1/models/") {
		methods = h.routes["/v1/models/"]
	}
	if methods != nil {
		c.w.Header().Set("Allow", strings.Join(methods, ", "))
		return &apiError{status: http.StatusMethodNotAllowed, message: fmt.Sprintf("%s %s is not served; use %s", c.r.Method, path, strings.Join(methods, " or "))}
	}
	return &apiError{status: http.StatusNotFound, code: "not_found", message: fmt.Sprintf("no such endpoint: %s %s", c.r.Method, path)}
}

// health answers 200 while a request can be served, 503 otherwise (no
// healthy pool node): for load balancers and container checks.
func (h *Handler) health(c *call) error {
	if err := h.cfg.Service.Ready(); err != nil {
		c.w.Header().Set("Retry-After", "1")
		return writeJSON(c.w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": fromService(err, nil).message}, h.cfg.WriteTimeout)
	}
	return writeJSON(c.w, http.StatusOK, map[string]string{"status": "ok", "model": h.cfg.Model.ID}, h.cfg.WriteTimeout)
}

// requestID is the caller's X-Request-ID when it is reasonable, else a new
// one; it is echoed in the response and logged.
func requestID(r *http.Request) string {
	if v := r.Header.Get("X-Request-ID"); v != "" && len(v) <= 128 && printableASCII(v) {
		return v
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// randomID is an API object id: prefix and 24 random hex digits.
func randomID(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// recorder remembers the status written (0: nothing yet), for metrics and so
// that an error is not written after a response has begun.
type recorder struct {
	http.ResponseWriter
	status int
	err    *apiError // the error the endpoint ended with, if any
	agent  string
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (flush,
// deadlines).
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Server serves a Handler on its own listener, with timeouts fit for long
// streams, and shuts down with the process.
type Server struct {
	h      *Handler
	srv    *http.Server
	ln     net.Listener
	served chan error
	cancel context.CancelFunc
	once   sync.Once
	err    error
}

// Server timeouts. There is no overall read or write timeout: a stream lasts
// as long as its generation. Bodies and writes are bounded per request
// (Config.BodyTimeout, Config.WriteTimeout) instead.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
	// handlerGrace is how long Shutdown waits for handlers to return once
	// their requests are cancelled (each leaves the batch at its next step).
	handlerGrace = 10 * time.Second
)

// Listen starts serving h on addr.
func Listen(addr string, h *Handler) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http listen %s: %w", addr, err)
	}
	base, cancel := context.WithCancel(context.Background())
	s := &Server{h: h, ln: ln, served: make(chan error, 1), cancel: cancel}
	s.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return base },
		ErrorLog:          slog.NewLogLogger(h.log.Handler(), slog.LevelDebug),
	}
	go func() { s.served <- s.srv.Serve(ln) }()
	return s, nil
}

// Addr is the address the server listens on (":0" resolved).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Shutdown stops accepting requests and lets those in flight, streams
// included, finish until ctx ends; then it cancels what is left (each
// sequence leaves the batch and releases its lease) and waits for the
// handlers to return. Calls after the first return the first's result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.once.Do(func() {
		err := s.srv.Shutdown(ctx)
		if err != nil {
			s.h.log.Warn("http: in-flight requests outlasted the shutdown timeout; cancelling them")
			s.cancel()
			err = errors.Join(err, s.srv.Close())
		}
		s.cancel()
		if serr := <-s.served; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
		done := make(chan struct{})
		go func() { s.h.inflight.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(handlerGrace):
			s.h.log.Error("http: handlers still running after shutdown", "grace", handlerGrace)
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			err = nil // cut short as designed
		}
		s.err = err
	})
	return s.err
}
