package auth

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/semantic-kv/semantic/pkg/server"
)

// Open is the principal of every caller of a scheduler without API keys: an
// admin of the empty tenant, which is what the scheduler was before keys
// (agents stored under their own ids, cache salts unchanged).
var Open = Principal{Role: RoleAdmin}

type principalKey struct{}

// NewContext returns ctx carrying p.
func NewContext(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal an authenticated call's context carries.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// Messages of the UNAUTHENTICATED statuses, one per transport: each says
// where the key goes.
const (
	msgNoKeyGRPC = "API key required: send the metadata authorization: Bearer <key>"
	msgNoKeyHTTP = "API key required: send the header Authorization: Bearer <key> (or x-api-key: <key>)"
	msgNotBearer = "authorization: must be Bearer <key>"
	msgUnknown   = "unknown API key"
)

// Authenticator authenticates the scheduler's callers by API key. Its key set
// is read from the keys file and replaced whole, atomically, by Reload (on
// SIGHUP once Watch runs): a call sees either the old keys or the new, and a
// file that does not read or validate leaves the old keys in place. Without
// a keys file it lets every caller in as Open.
type Authenticator struct {
	path string
	log  *slog.Logger
	keys atomic.Pointer[Keys] // nil: open

	mu   sync.Mutex // guards stop and done (Watch, Close)
	stop chan struct{}
	done chan struct{}
}

// New reads the keys file at path; an empty path makes an open
// authenticator.
func New(path string, log *slog.Logger) (*Authenticator, error) {
	if log == nil {
		log = slog.Default()
	}
	a := &Authenticator{path: path, log: log}
	if path == "" {
		return a, nil
	}
	f, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	a.keys.Store(f.Index())
	return a, nil
}

// IsOpen reports whether the authenticator lets every caller in (no keys
// file).
func (a *Authenticator) IsOpen() bool { return a.path == "" }

// Len is the number of keys in use (0 when open).
func (a *Authenticator) Len() int {
	if k := a.keys.Load(); k != nil {
		return k.Len()
	}
	return 0
}

// Reload reads the keys file again and, when it is good, swaps the key set
// in. A bad file keeps the current keys; the error says why.
func (a *Authenticator) Reload() error {
	if a.IsOpen() {
		return nil
	}
	f, err := ReadFile(a.path)
	if err != nil {
		a.log.Error("reloading API keys failed; keeping the previous keys", "path", a.path, "keys", a.Len(), "err", err)
		return err
	}
	a.keys.Store(f.Index())
	a.log.Info("API keys reloaded", "path", a.path, "keys", len(f.Keys))
	return nil
}

// Watch reloads the keys file on every SIGHUP until Close. It does nothing
// for an open authenticator, and only once.
func (a *Authenticator) Watch() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.IsOpen() || a.stop != nil {
		return
	}
	a.stop, a.done = make(chan struct{}), make(chan struct{})
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer close(a.done)
		defer signal.Stop(hup)
		for {
			select {
			case <-a.stop:
				return
			case <-hup:
				_ = a.Reload() // logged either way
			}
		}
	}()
}

// Close stops Watch's goroutine and waits for it.
func (a *Authenticator) Close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stop == nil {
		return
	}
	close(a.stop)
	<-a.done
	a.stop = nil
}

// Authenticate looks key up. The error is an UNAUTHENTICATED status.
func (a *Authenticator) Authenticate(key string) (Principal, error) {
	k := a.keys.Load()
	if k == nil {
		return Open, nil
	}
	p, err := k.Lookup(key)
	if err != nil {
		return Principal{}, status.Error(codes.Unauthenticated, msgUnknown)
	}
	return p, nil
}

// errNoKey marks a call that carries no key at all; each transport answers
// it with its own message.
var errNoKey = errors.New("no API key")

// bearer reads the key of an Authorization header value: "Bearer <key>",
// the scheme in any case (RFC 9110). "" and errNoKey for an empty value.
func bearer(v string) (string, error) {
	if v == "" {
		return "", errNoKey
	}
	scheme, key, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(key) == "" {
		return "", status.Error(codes.Unauthenticated, msgNotBearer)
	}
	return strings.TrimSpace(key), nil
}

// openMethod reports whether a gRPC method is served without a key: health
// checks (load balancers, `scheduler healthcheck`) and reflection (which
// lists services, never data).
func openMethod(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/grpc.health.v1.Health/") ||
		strings.HasPrefix(fullMethod, "/grpc.reflection.")
}

// GRPC authenticates a gRPC call by its "authorization: Bearer <key>"
// metadata and returns its context carrying the principal (app.Runtime's
// Authenticate hook, and the interceptors below). Health and reflection are
// served to anyone, with no principal at all: they read no agent, and a
// call that reached the service without one would be refused there
// (service.Config.RequirePrincipal), never run as an admin.
func (a *Authenticator) GRPC(ctx context.Context, fullMethod string) (context.Context, error) {
	if a.IsOpen() {
		return NewContext(ctx, Open), nil
	}
	if openMethod(fullMethod) {
		return ctx, nil
	}
	var v string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if vs := md.Get("authorization"); len(vs) > 0 {
			v = vs[0]
		}
	}
	key, err := bearer(v)
	if errors.Is(err, errNoKey) {
		return nil, status.Error(codes.Unauthenticated, msgNoKeyGRPC)
	}
	if err != nil {
		return nil, err
	}
	p, err := a.Authenticate(key)
	if err != nil {
		return nil, err
	}
	return NewContext(ctx, p), nil
}

// HTTP authenticates an HTTP API request by "Authorization: Bearer <key>"
// (OpenAI's clients) or "x-api-key: <key>" (Anthropic's) and returns its
// context carrying the principal: httpapi.Config.Authorize.
func (a *Authenticator) HTTP(r *http.Request) (context.Context, error) {
	if a.IsOpen() {
		return NewContext(r.Context(), Open), nil
	}
	key, err := bearer(r.Header.Get("Authorization"))
	if errors.Is(err, errNoKey) {
		if key = strings.TrimSpace(r.Header.Get("X-Api-Key")); key == "" {
			return nil, status.Error(codes.Unauthenticated, msgNoKeyHTTP)
		}
		err = nil
	}
	if err != nil {
		return nil, err
	}
	p, err := a.Authenticate(key)
	if err != nil {
		return nil, err
	}
	return NewContext(r.Context(), p), nil
}

// ServerOptions are the interceptors that run GRPC on every call of a gRPC
// server, for servers that are not built by pkg/app (tests, benchmarks).
func (a *Authenticator) ServerOptions() []grpc.ServerOption {
	return server.ContextInterceptors(a.GRPC)
}
