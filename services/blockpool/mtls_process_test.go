package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	"github.com/semantic-kv/semantic/pkg/mtls"
	"github.com/semantic-kv/semantic/pkg/poolwire"
	"github.com/semantic-kv/semantic/pkg/testproc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

const openWarning = "block pool accepts any client"

// Issue #13 (authentication), the binary's wiring: without --tls-client-ca
// the pool warns at start that it accepts any client; with it every call
// needs a client certificate of the pool's CA and a scheduler certificate may
// not reconfigure a configured pool.
func TestClientCAFlagTurnsOnAuthorization(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binary")
	}
	bin := testproc.Build(t, t.TempDir(), "./services/blockpool")
	open := start(t, bin, t.TempDir())
	if logs := open.Logs(); !strings.Contains(logs, openWarning) || !strings.Contains(logs, `"level":"WARN"`) {
		t.Fatalf("no warning that the pool is open:\n%s", logs)
	}

	dir := t.TempDir()
	ca, err := mtls.NewCA("pool-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caFile, _, _ := ca.WriteFiles(dir, "ca")
	srv, _ := ca.Issue("pool-0", nil, []string{"localhost", "127.0.0.1"}, time.Hour)
	sc, sk, _ := srv.WriteFiles(dir, "pool")
	sched, _ := ca.Issue("sched-a", []string{mtls.GroupScheduler}, nil, time.Hour)
	cc, ck, _ := sched.WriteFiles(dir, "sched")
	p := testproc.Start(t, exec.Command(bin, "--listen", "127.0.0.1:0", "--metrics-listen", "", "--log-format", "json",
		"--data-dir", filepath.Join(dir, "data"), "--tls-cert", sc, "--tls-key", sk, "--tls-client-ca", caFile,
		"--spec-layers", "1", "--spec-kv-heads", "1", "--spec-head-dim", "8", "--spec-tokens-per-block", "4",
		"--spec-dtype", "float32", "--spec-model-tag", crashSpec.ModelTag))
	if strings.Contains(p.Logs(), openWarning) {
		t.Fatalf("an mTLS pool warned that it is open:\n%s", p.Logs())
	}
	client := func(cert, key string) blockpoolv1.BlockPoolServiceClient {
		cfg, err := mtls.ClientConfig(caFile, cert, key, "localhost")
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient(p.Addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return blockpoolv1.NewBlockPoolServiceClient(conn)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = client("", "").Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: "a", Count: 1, ModelTag: crashSpec.ModelTag})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatal("no certificate:", err)
	}
	s := client(cc, ck)
	l, err := s.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: "a", Count: 1, ModelTag: crashSpec.ModelTag})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Release(ctx, &blockpoolv1.ReleaseRequest{Holder: "s", LeaseId: l.LeaseId, Epoch: l.Epoch}); err != nil {
		t.Fatal(err)
	}
	other := crashSpec
	other.ModelTag = "another-model"
	_, err = s.Reconfigure(ctx, &blockpoolv1.ReconfigureRequest{Spec: poolwire.SpecToProto(&other)})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatal("scheduler reconfigured a configured pool:", err)
	}
}
