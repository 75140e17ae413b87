package app

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/semantic-kv/semantic/pkg/testproc"
)

// childEnv makes the test binary act as a server binary built on this package,
// so the tests below exercise a real process: real signals, real sockets.
const childEnv = "SEMANTIC_APP_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		Main(Binary{Name: "apptest", DefaultListen: "127.0.0.1:0"})
		return
	}
	os.Exit(m.Run())
}

// startChild runs the test binary as a server and waits until it serves.
func startChild(t *testing.T, args ...string) *testproc.Proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"--log-format", "json", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--shutdown-timeout", "2s"}, args...)...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	return testproc.Start(t, cmd)
}

func TestServerHealthReflectionMetricsAndSigterm(t *testing.T) {
	c := startChild(t)
	conn, err := grpc.NewClient(c.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", resp, err)
	}

	// Reflection lists the health service, as grpcurl's "list" would show.
	rs, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	rr, err := rs.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range rr.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !contains(names, "grpc.health.v1.Health") || !contains(names, "grpc.reflection.v1.ServerReflection") {
		t.Fatalf("reflection lists %v", names)
	}
	_ = rs.CloseSend()

	// The healthcheck subcommand against the live server.
	var out, errOut bytes.Buffer
	if code := healthcheck(Binary{Name: "apptest"}, []string{"--addr", c.Addr}, &out, &errOut); code != 0 {
		t.Fatalf("healthcheck against live server exited %d: %s", code, errOut.String())
	}

	// /metrics serves Prometheus text with otelgrpc's server metrics.
	hr, err := http.Get("http://" + c.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(hr.Body)
	hr.Body.Close()
	if !strings.Contains(string(body), "rpc_server_call_duration") {
		t.Fatalf("metrics lack otelgrpc server metrics:\n%.2000s", body)
	}

	// An in-flight server stream (health Watch never ends by itself) must not
	// keep the process alive past the shutdown deadline after SIGTERM.
	ws, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := ws.Recv(); err != nil || m.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watch: %v %v", m, err)
	}
	start := time.Now()
	c.Signal(syscall.SIGTERM)
	// The stream sees NOT_SERVING first: shutdown drains traffic before it cuts.
	if m, err := ws.Recv(); err != nil || m.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("watch after SIGTERM: %v %v", m, err)
	}
	select {
	case <-c.Done():
		if err := c.Err(); err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, c.Logs())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("process still running 15s after SIGTERM (deadline 2s)")
	}
	t.Logf("exited %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(c.Logs(), "graceful stop timed out") {
		t.Fatalf("expected the in-flight stream to be cut at the deadline; logs:\n%s", c.Logs())
	}

	// And the healthcheck against no server fails.
	if code := healthcheck(Binary{Name: "apptest"}, []string{"--addr", c.Addr, "--timeout", "500ms"}, &out, &errOut); code != 1 {
		t.Fatalf("healthcheck against a dead server exited %d", code)
	}
}

func TestEnvFlagsAndMasking(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	var c Common
	c.register(fs, ":1", ":2")
	if err := fs.Parse([]string{"--log-level", "debug"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"SEMANTIC_LOG_LEVEL": "error", // the command line wins
		"SEMANTIC_DATA_DIR":  "/tmp/x",
		"SEMANTIC_TLS_KEY":   "/secret/key.pem",
	}
	if err := applyEnv(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if c.LogLevel != "debug" || c.DataDir != "/tmp/x" || c.TLSKey != "/secret/key.pem" {
		t.Fatalf("got %+v", c)
	}
	for _, kv := range Effective(fs) {
		if kv[0] == "tls-key" && kv[1] != "****" {
			t.Fatalf("tls-key printed as %q", kv[1])
		}
	}
	for name, secret := range map[string]bool{"tls-key": true, "api-token": true, "block-tokens": false, "spec-tokens-per-block": false, "keepalive-time": false} {
		if isSecret(name) != secret {
			t.Errorf("isSecret(%q) = %v", name, !secret)
		}
	}
	env["SEMANTIC_MAX_MSG_BYTES"] = "lots"
	fs2 := flag.NewFlagSet("y", flag.ContinueOnError)
	var c2 Common
	c2.register(fs2, ":1", ":2")
	_ = fs2.Parse(nil)
	if err := applyEnv(fs2, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err == nil || !strings.Contains(err.Error(), "SEMANTIC_MAX_MSG_BYTES") {
		t.Fatalf("bad env value not reported: %v", err)
	}
}

func TestHelpListsEveryFlagWithEnv(t *testing.T) {
	var out, errOut bytes.Buffer
	b := Binary{Name: "apptest", DefaultListen: ":1", Flags: func(fs *flag.FlagSet) { fs.String("model", "builtin:small", "model to serve") }}
	if code := Run(context.Background(), b, []string{"--help"}, &out, &errOut); code != 0 {
		t.Fatalf("--help exited %d", code)
	}
	for _, want := range []string{"--listen", "SEMANTIC_LISTEN", "--model", "SEMANTIC_MODEL", "--metrics-listen", "--data-dir", "--log-format", "--log-level", "healthcheck", "version"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, errOut.String())
		}
	}
	out.Reset()
	if code := Run(context.Background(), b, []string{"version"}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "apptest ") {
		t.Fatalf("version: %d %q", code, out.String())
	}
	if code := Run(context.Background(), b, []string{"--log-format", "xml"}, &out, &errOut); code != 2 {
		t.Fatalf("bad --log-format exited %d", code)
	}
}

func TestDialAddr(t *testing.T) {
	for in, want := range map[string]string{":50051": "localhost:50051", "0.0.0.0:1": "localhost:1", "10.0.0.1:2": "10.0.0.1:2", "[::]:3": "localhost:3"} {
		if got := HostPort(in); got != want {
			t.Errorf("HostPort(%q) = %q, want %q", in, got, want)
		}
	}
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// Drains registered with OnShutdown run when shutdown begins, with the
// shutdown timeout as their deadline, and before the binary's stop; a failed
// drain fails the exit code.
func TestOnShutdownDrainsBeforeStop(t *testing.T) {
	for _, fail := range []bool{false, true} {
		var mu sync.Mutex
		var order []string
		note := func(s string) {
			mu.Lock()
			defer mu.Unlock()
			order = append(order, s)
		}
		ctx, cancel := context.WithCancel(context.Background())
		b := Binary{Name: "draintest", DefaultListen: "127.0.0.1:0", Start: func(_ context.Context, rt *Runtime) (func(context.Context) error, error) {
			rt.OnShutdown(func(dctx context.Context) error {
				note("drain")
				if _, ok := dctx.Deadline(); !ok {
					return errors.New("drain without a deadline")
				}
				if fail {
					return errors.New("drain failed")
				}
				return nil
			})
			cancel() // shut down as soon as it serves
			return func(context.Context) error { note("stop"); return nil }, nil
		}}
		code := Run(ctx, b, []string{"--metrics-listen", "", "--shutdown-timeout", "2s"}, io.Discard, io.Discard)
		want := 0
		if fail {
			want = 1
		}
		if code != want || strings.Join(order, ",") != "drain,stop" {
			t.Fatalf("fail=%v: exit %d, order %v", fail, code, order)
		}
	}
}

// Runtime.Authenticate, installed by Start, runs on every call of the
// server, unary and streaming: its error ends the call, and the context it
// returns is what the handler sees.
func TestAuthenticateHookRunsOnEveryCall(t *testing.T) {
	type ctxKey struct{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := make(chan string, 1)
	// probe.Probe/Who answers with what the handler's context carries.
	probe := &grpc.ServiceDesc{ServiceName: "probe.Probe", HandlerType: (*any)(nil), Methods: []grpc.MethodDesc{{
		MethodName: "Who",
		Handler: func(_ any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			in := new(emptypb.Empty)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, _ any) (any, error) {
				who, _ := ctx.Value(ctxKey{}).(string)
				return nil, status.Error(codes.FailedPrecondition, "who="+who)
			}
			if ic == nil {
				return h(ctx, in)
			}
			return ic(ctx, in, &grpc.UnaryServerInfo{FullMethod: "/probe.Probe/Who"}, h)
		},
	}}}
	b := Binary{Name: "authtest", DefaultListen: "127.0.0.1:0", Start: func(_ context.Context, rt *Runtime) (func(context.Context) error, error) {
		rt.Authenticate(func(ctx context.Context, method string) (context.Context, error) {
			if strings.HasPrefix(method, "/grpc.reflection.") {
				return nil, status.Error(codes.Unauthenticated, "no key")
			}
			return context.WithValue(ctx, ctxKey{}, "checked "+method), nil
		})
		rt.GRPC.RegisterService(probe, struct{}{})
		addr <- rt.Addr.String()
		return nil, nil
	}}
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, b, []string{"--metrics-listen", "", "--shutdown-timeout", "2s"}, io.Discard, io.Discard)
	}()
	conn, err := grpc.NewClient(<-addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cctx, ccancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer ccancel()
	err = conn.Invoke(cctx, "/probe.Probe/Who", &emptypb.Empty{}, &emptypb.Empty{}, grpc.WaitForReady(true))
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || st.Message() != "who=checked /probe.Probe/Who" {
		t.Fatalf("the handler did not get the hook's context: %v", err)
	}
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(cctx)
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("reflection (a stream): want UNAUTHENTICATED from the hook, got %v", err)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d", code)
	}
}
