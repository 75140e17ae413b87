package mtls

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
)

// identityHealth answers a health check with the caller's identity in the
// status (SERVING for a verified scheduler, NOT_SERVING otherwise), so that a
// real TLS handshake over loopback proves what FromContext sees.
type identityHealth struct {
	healthpb.UnimplementedHealthServer
	seen chan Identity
}

func (h *identityHealth) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	id, ok := FromContext(ctx)
	if _, isPeer := peer.FromContext(ctx); !isPeer {
		panic("no peer")
	}
	h.seen <- id
	if ok && id.In(GroupScheduler) {
		return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_NOT_SERVING}, nil
}

func TestIdentityOverRealTLS(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caFile, _, err := ca.WriteFiles(dir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := ca.Issue("pool-0", nil, []string{"localhost", "127.0.0.1"}, time.Hour)
	sc, sk, _ := srv.WriteFiles(dir, "pool")
	cli, _ := ca.Issue("sched-a", []string{GroupScheduler}, nil, time.Hour)
	cc, ck, _ := cli.WriteFiles(dir, "sched")
	other, _ := NewCA("other-ca", time.Hour)
	foreign, _ := other.Issue("sched-x", []string{GroupScheduler}, nil, time.Hour)
	fc, fk, _ := foreign.WriteFiles(dir, "foreign")

	scfg, err := ServerConfig(sc, sk, caFile)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(scfg)))
	h := &identityHealth{seen: make(chan Identity, 1)}
	healthpb.RegisterHealthServer(gs, h)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(ln) }()
	defer gs.Stop()

	check := func(t *testing.T, cfg *tls.Config) (Identity, healthpb.HealthCheckResponse_ServingStatus, error) {
		t.Helper()
		conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return Identity{}, 0, err
		}
		return <-h.seen, resp.GetStatus(), nil
	}

	cfg, err := ClientConfig(caFile, cc, ck, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	id, st, err := check(t, cfg)
	if err != nil || st != healthpb.HealthCheckResponse_SERVING || id.Name != "sched-a" || !id.In(GroupScheduler) || id.In(GroupAdmin) {
		t.Fatalf("scheduler certificate: %+v %v %v", id, st, err)
	}
	// No client certificate: the handshake succeeds, there is no identity.
	cfg, _ = ClientConfig(caFile, "", "", "localhost")
	if id, st, err := check(t, cfg); err != nil || st != healthpb.HealthCheckResponse_NOT_SERVING || id.Name != "" {
		t.Fatalf("no certificate: %+v %v %v", id, st, err)
	}
	// A certificate of another CA never yields an identity: Go's client does
	// not even send one the server's CertificateRequest does not accept.
	cfg, _ = ClientConfig(caFile, fc, fk, "localhost")
	if id, st, err := check(t, cfg); err == nil && (id.Name != "" || st != healthpb.HealthCheckResponse_NOT_SERVING) {
		t.Fatalf("a certificate from another CA was accepted: %+v", id)
	}
	// A client that does not trust the server's CA refuses it.
	otherCA, _, _ := other.WriteFiles(dir, "other")
	cfg, _ = ClientConfig(otherCA, cc, ck, "localhost")
	if _, _, err := check(t, cfg); err == nil {
		t.Fatal("a server of another CA was trusted")
	}
	// Plaintext gets no identity from FromContext.
	if _, ok := FromContext(context.Background()); ok {
		t.Fatal("identity without a peer")
	}
}
