// Package app is the one bootstrap both semantic binaries run: flags (each
// also an environment variable), the version and healthcheck subcommands,
// structured logging, telemetry, the gRPC server, and graceful shutdown on
// SIGINT/SIGTERM. A binary's main.go only describes itself in a Binary and
// calls Main.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/semantic-kv/semantic/pkg/server"
	"github.com/semantic-kv/semantic/pkg/telemetry"
)

// Version is the software version, set at build time with
// -ldflags "-X github.com/semantic-kv/semantic/pkg/app.Version=...".
var Version = "dev"

// Runtime is what a binary's Start gets to wire its services with.
type Runtime struct {
	Logger         *slog.Logger
	GRPC           *grpc.Server
	Health         *health.Server
	MeterProvider  metric.MeterProvider
	TracerProvider trace.TracerProvider
	Common         *Common
	// Addr is the address the gRPC server listens on (":0" resolved).
	Addr net.Addr
	// MetricsAddr is the resolved /metrics address, empty when disabled.
	MetricsAddr string
	// Prometheus registers collectors on /metrics beside the OpenTelemetry
	// instruments; nil when /metrics is disabled.
	Prometheus prometheus.Registerer

	drains []func(context.Context) error
	auth   atomic.Pointer[Authenticate]
}

// Authenticate authenticates one gRPC call: it returns the context the
// handler gets (carrying who the caller is) or the error that ends the call.
type Authenticate func(ctx context.Context, fullMethod string) (context.Context, error)

// Authenticate installs fn as the gRPC server's authentication: every call,
// the health and reflection services' included (fn decides which it lets
// through), passes it after the request id, logging and recovery
// interceptors (so a refusal is logged with its request id) and before the
// handler. Call it from Binary.Start, before the server serves; without it
// every call goes through.
func (rt *Runtime) Authenticate(fn Authenticate) { rt.auth.Store(&fn) }

// authenticate runs the installed Authenticate, if any.
func (rt *Runtime) authenticate(ctx context.Context, method string) (context.Context, error) {
	fn := rt.auth.Load()
	if fn == nil {
		return ctx, nil
	}
	return (*fn)(ctx, method)
}

// interceptors run rt.authenticate on every call. They are part of the
// server from the start; what they run is installed later, by Start.
func (rt *Runtime) interceptors() []grpc.ServerOption {
	return server.ContextInterceptors(rt.authenticate)
}

// OnShutdown registers drain to run when shutdown begins, alongside the gRPC
// server's graceful stop and with the same --shutdown-timeout: a server of
// the binary's own (an HTTP API) stops taking requests and lets those in
// flight finish at the same time as gRPC does, not after it. Call it from
// Binary.Start. The stop function Start returns runs after every drain.
func (rt *Runtime) OnShutdown(drain func(ctx context.Context) error) {
	rt.drains = append(rt.drains, drain)
}

// Binary describes one semantic binary.
type Binary struct {
	// Name is the binary's name: the service.name of its telemetry.
	Name string
	// DefaultListen and DefaultMetricsListen are the defaults of --listen and
	// --metrics-listen.
	DefaultListen, DefaultMetricsListen string
	// Flags registers the binary's own flags.
	Flags func(fs *flag.FlagSet)
	// ServerOptions are extra gRPC server options (transport tuning).
	ServerOptions []grpc.ServerOption
	// Start registers services on rt.GRPC before the server starts serving.
	// The returned stop runs at shutdown, after the gRPC server has stopped
	// and before telemetry is flushed; it closes stores.
	Start func(ctx context.Context, rt *Runtime) (stop func(context.Context) error, err error)
}

// Main runs the binary with the process's arguments and exits.
func Main(b Binary) {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Run(ctx, b, os.Args[1:], os.Stdout, os.Stderr)
	cancel()
	os.Exit(code)
}

// Run is Main without the process: it returns the exit code. The server runs
// until ctx is cancelled (Main cancels it on SIGINT or SIGTERM).
func Run(ctx context.Context, b Binary, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "version":
			fmt.Fprintf(stdout, "%s %s\n", b.Name, Version)
			return 0
		case "healthcheck":
			return healthcheck(b, args[1:], stdout, stderr)
		}
	}
	fs := flag.NewFlagSet(b.Name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var common Common
	common.register(fs, b.DefaultListen, b.DefaultMetricsListen)
	if b.Flags != nil {
		b.Flags(fs)
	}
	fs.Usage = func() { usage(stderr, b.Name, fs) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q (see --help)\n", b.Name, fs.Arg(0))
		return 2
	}
	if err := applyEnv(fs, lookupEnv); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", b.Name, err)
		return 2
	}
	log, err := NewLogger(stderr, common.LogFormat, common.LogLevel)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", b.Name, err)
		return 2
	}
	log = log.With("service", b.Name)
	if err := serve(ctx, b, fs, &common, log); err != nil {
		log.Error("exiting", "err", err)
		return 1
	}
	return 0
}

// NewLogger builds the slog logger the flags ask for.
func NewLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format must be text or json, got %q", format)
	}
}

func serve(ctx context.Context, b Binary, fs *flag.FlagSet, common *Common, log *slog.Logger) error {
	cfg := []any{"version", Version}
	for _, kv := range Effective(fs) {
		cfg = append(cfg, kv[0], kv[1])
	}
	log.Info("starting", cfg...)

	nodeID := common.NodeID
	if nodeID == "" {
		nodeID, _ = os.Hostname()
	}
	tel, err := telemetry.Setup(ctx, telemetry.Config{
		ServiceName: b.Name, Version: Version, NodeID: nodeID,
		MetricsListen: common.MetricsListen, Logger: log,
	})
	if err != nil {
		return err
	}
	// Telemetry is flushed last, with its own deadline, whatever happens.
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			log.Warn("telemetry shutdown", "err", err)
		}
	}()

	rt := &Runtime{
		Logger: log, Common: common, MetricsAddr: tel.MetricsAddr, Prometheus: tel.Prometheus,
		MeterProvider: tel.MeterProvider, TracerProvider: tel.TracerProvider,
	}
	gs, hs, err := server.New(server.Options{
		Logger: log, MaxMsgBytes: common.MaxMsgBytes,
		TLSCertFile: common.TLSCert, TLSKeyFile: common.TLSKey, TLSClientCAFile: common.TLSClientCA,
		KeepaliveTime: common.KeepaliveTime,
		MeterProvider: tel.MeterProvider, TracerProvider: tel.TracerProvider,
		Extra: append(slices.Clip(b.ServerOptions), rt.interceptors()...),
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", common.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", common.Listen, err)
	}
	rt.GRPC, rt.Health, rt.Addr = gs, hs, ln.Addr()
	stop := func(context.Context) error { return nil }
	if b.Start != nil {
		s, err := b.Start(ctx, rt)
		if err != nil {
			ln.Close()
			return err
		}
		if s != nil {
			stop = s
		}
	}
	server.MarkServing(gs, hs)

	serveErr := make(chan error, 1)
	go func() { serveErr <- gs.Serve(ln) }()
	log.Info("serving", "addr", ln.Addr().String())

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "timeout", common.ShutdownTimeout.String())
	case runErr = <-serveErr:
		log.Error("server stopped", "err", runErr)
	}
	drained := make(chan error, len(rt.drains))
	dctx, dcancel := context.WithTimeout(context.Background(), common.ShutdownTimeout)
	for _, d := range rt.drains {
		go func() { drained <- d(dctx) }()
	}
	shutdownGRPC(gs, hs, common.ShutdownTimeout, log)
	for range rt.drains {
		if err := <-drained; err != nil {
			log.Error("draining", "err", err)
			runErr = errors.Join(runErr, err)
		}
	}
	dcancel()
	sctx, cancel := context.WithTimeout(context.Background(), common.ShutdownTimeout)
	defer cancel()
	if err := stop(sctx); err != nil {
		log.Error("stopping services", "err", err)
		runErr = errors.Join(runErr, err)
	}
	log.Info("stopped")
	return runErr
}

// shutdownGRPC marks every service NOT_SERVING (so load balancers and health
// checks stop sending work), lets in-flight calls finish for up to timeout,
// then cuts whatever is left.
func shutdownGRPC(gs *grpc.Server, hs *health.Server, timeout time.Duration, log *slog.Logger) {
	hs.Shutdown()
	done := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(done)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		log.Warn("graceful stop timed out; cancelling in-flight calls")
		gs.Stop()
		<-done
	}
}

// healthcheck dials the local server's health service: exit 0 when it is
// SERVING, 1 otherwise. It exists for container health checks in images that
// have no shell.
func healthcheck(b Binary, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(b.Name+" healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := b.DefaultListen
	if v, ok := lookupEnv(EnvName("listen")); ok {
		listen = v
	}
	addr := fs.String("addr", dialAddr(listen), "address of the server to check")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for an answer")
	service := fs.String("service", "", "service name to check (empty: the whole server)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	creds := insecure.NewCredentials()
	if v, _ := lookupEnv(EnvName("tls-cert")); v != "" {
		// The check runs next to the server it checks: it wants to know the
		// server answers, not who it is.
		creds = credentials.NewTLS(&tls.Config{InsecureSkipVerify: true}) //nolint:gosec
	}
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return 1
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: *service})
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck %s: %v\n", *addr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s %s\n", *addr, resp.GetStatus())
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return 1
	}
	return 0
}

// dialAddr turns a listen address into one to dial on this host.
func dialAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// HostPort is dialAddr for callers outside this package (tests, tools).
func HostPort(listen string) string { return dialAddr(strings.TrimSpace(listen)) }
