// Package server builds the gRPC server both semantic binaries run: health
// (grpc.health.v1) and reflection registered, an otelgrpc stats handler,
// request ids, structured request logs, panic recovery, message size and
// keepalive limits, and TLS when a certificate is given.
package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/semantic-kv/semantic/pkg/malformed"
	"github.com/semantic-kv/semantic/pkg/mtls"
)

// Options configure New. The zero value is usable: defaults are filled in.
type Options struct {
	Logger *slog.Logger
	// MaxMsgBytes bounds received and sent messages (default 16 MiB).
	MaxMsgBytes int
	// TLSCertFile and TLSKeyFile turn TLS on when both are set.
	TLSCertFile, TLSKeyFile string
	// TLSClientCAFile, with TLS on, verifies client certificates against
	// this CA (mtls.ServerConfig); services read the caller's identity with
	// mtls.FromContext.
	TLSClientCAFile string
	// KeepaliveTime is how often the server pings an idle connection
	// (default 30s); KeepaliveTimeout is how long it waits for the ack
	// (default 10s). Clients may ping as often as every 5s.
	KeepaliveTime, KeepaliveTimeout time.Duration
	MeterProvider                   metric.MeterProvider
	TracerProvider                  trace.TracerProvider
	// Extra options are applied last, so they override the defaults (a
	// service's transport tuning, codecs).
	Extra []grpc.ServerOption
}

// DefaultMaxMsgBytes is the default message size limit.
const DefaultMaxMsgBytes = 16 << 20

// RequestIDKey is the metadata key that carries a request id. A client may
// set it; otherwise the server makes one. The server echoes it in the
// response header.
const RequestIDKey = "x-request-id"

// New returns a gRPC server with health and reflection registered, and the
// health server so the caller can flip serving status at start and shutdown.
func New(opts Options) (*grpc.Server, *health.Server, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if opts.MaxMsgBytes <= 0 {
		opts.MaxMsgBytes = DefaultMaxMsgBytes
	}
	if opts.KeepaliveTime <= 0 {
		opts.KeepaliveTime = 30 * time.Second
	}
	if opts.KeepaliveTimeout <= 0 {
		opts.KeepaliveTimeout = 10 * time.Second
	}
	var otelOpts []otelgrpc.Option
	if opts.MeterProvider != nil {
		otelOpts = append(otelOpts, otelgrpc.WithMeterProvider(opts.MeterProvider))
	}
	if opts.TracerProvider != nil {
		otelOpts = append(otelOpts, otelgrpc.WithTracerProvider(opts.TracerProvider))
	}
	sopts := []grpc.ServerOption{
		grpc.StatsHandler(otelgrpc.NewServerHandler(otelOpts...)),
		grpc.MaxRecvMsgSize(opts.MaxMsgBytes),
		grpc.MaxSendMsgSize(opts.MaxMsgBytes),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: opts.KeepaliveTime, Timeout: opts.KeepaliveTimeout}),
		// Schedulers keep long-lived connections to pools with client-side
		// pings; allow them rather than answering with GOAWAY.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		// Stop waits for handlers to return, so stores are closed only after
		// every handler has released what it holds.
		grpc.WaitForHandlers(true),
		grpc.ChainUnaryInterceptor(unaryInterceptor(log), malformedUnary),
		grpc.ChainStreamInterceptor(streamInterceptor(log), malformedStream),
		// Undecodable requests become INVALID_ARGUMENT (pkg/malformed). A
		// service with its own codec wraps it in malformed.GuardCodec too.
		grpc.ForceServerCodecV2(malformed.DefaultCodec()),
	}
	if opts.TLSCertFile != "" || opts.TLSKeyFile != "" || opts.TLSClientCAFile != "" {
		cfg, err := mtls.ServerConfig(opts.TLSCertFile, opts.TLSKeyFile, opts.TLSClientCAFile)
		if err != nil {
			return nil, nil, err
		}
		sopts = append(sopts, grpc.Creds(credentials.NewTLS(cfg)))
	}
	s := grpc.NewServer(append(sopts, opts.Extra...)...)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(s, hs)
	reflection.Register(s)
	return s, hs, nil
}

type requestIDCtxKey struct{}

// RequestID returns the request id of a server call's context, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDCtxKey{}).(string)
	return id
}

// withRequestID takes the caller's request id or makes one, stores it in the
// context and echoes it in the response header.
func withRequestID(ctx context.Context) (context.Context, string) {
	var id string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(RequestIDKey); len(v) > 0 && len(v[0]) <= 128 {
			id = v[0]
		}
	}
	if id == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs(RequestIDKey, id))
	return context.WithValue(ctx, requestIDCtxKey{}, id), id
}

// recovered turns a panic in a handler into INTERNAL, logging the stack so
// that one bad request cannot take the process down.
func recovered(log *slog.Logger, method, id string, p any) error {
	log.Error("panic in handler", "method", method, "request_id", id, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	return status.Errorf(codes.Internal, "internal error (request %s)", id)
}

func logCall(log *slog.Logger, method, id string, start time.Time, err error) {
	code := status.Code(err)
	level := slog.LevelDebug
	switch code {
	case codes.OK, codes.Canceled, codes.NotFound, codes.InvalidArgument, codes.AlreadyExists, codes.Aborted:
	case codes.Internal, codes.Unknown, codes.DataLoss:
		level = slog.LevelError
	default:
		level = slog.LevelWarn
	}
	attrs := []any{"method", method, "request_id", id, "code", code.String(), "duration_ms", float64(time.Since(start).Microseconds()) / 1000}
	if err != nil {
		attrs = append(attrs, "err", status.Convert(err).Message())
	}
	log.Log(context.Background(), level, "rpc", attrs...)
}

func unaryInterceptor(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		ctx, id := withRequestID(ctx)
		start := time.Now()
		defer func() {
			if p := recover(); p != nil {
				resp, err = nil, recovered(log, info.FullMethod, id, p)
			}
			logCall(log, info.FullMethod, id, start, err)
		}()
		return handler(ctx, req)
	}
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }

func streamInterceptor(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		ctx, id := withRequestID(ss.Context())
		start := time.Now()
		defer func() {
			if p := recover(); p != nil {
				err = recovered(log, info.FullMethod, id, p)
			}
			logCall(log, info.FullMethod, id, start, err)
		}()
		return handler(srv, &ctxStream{ServerStream: ss, ctx: ctx})
	}
}

// MarkServing sets every service registered on s, and the server as a whole
// (""), to SERVING on hs. Call it after registering services, before Serve.
func MarkServing(s *grpc.Server, hs *health.Server) {
	for name := range s.GetServiceInfo() {
		hs.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
}

// ContextInterceptors are unary and stream interceptors that run fn on every
// call before the handler: fn's error refuses the call, and the context it
// returns is the handler's (an authenticated principal in it, say). Add them
// with Options.Extra; they run after New's own (request id, log, recovery).
func ContextInterceptors(fn func(ctx context.Context, method string) (context.Context, error)) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			ctx, err := fn(ctx, info.FullMethod)
			if err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			ctx, err := fn(ss.Context(), info.FullMethod)
			if err != nil {
				return err
			}
			return h(srv, &ctxStream{ServerStream: ss, ctx: ctx})
		}),
	}
}
