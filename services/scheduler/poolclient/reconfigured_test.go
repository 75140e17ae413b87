package poolclient_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/mtls"
	"github.com/semantic-kv/semantic/pkg/mtls/mtlstest"
	pkgserver "github.com/semantic-kv/semantic/pkg/server"
	"github.com/semantic-kv/semantic/pkg/testproc"
	"github.com/semantic-kv/semantic/services/blockpool/node"
	"github.com/semantic-kv/semantic/services/blockpool/node/nodetest"
	"github.com/semantic-kv/semantic/services/scheduler/poolclient"
)

var (
	schedSpec = kvspec.Spec{Layers: 1, KVHeads: 1, HeadDim: 8, TokensPerBlock: 4, DType: kvspec.DTypeFloat16, ModelTag: "sched-model"}
	otherSpec = kvspec.Spec{Layers: 1, KVHeads: 1, HeadDim: 8, TokensPerBlock: 4, DType: kvspec.DTypeFloat16, ModelTag: "someone-elses-model"}
)

// startPool serves a real pool node on loopback: plaintext, or with mTLS
// (the node then authorizes by client certificate) when tls is set, in which
// case it returns the scheduler's dial option.
func startPool(t *testing.T, withTLS bool) (*node.Node, string, []grpc.DialOption) {
	t.Helper()
	dir := t.TempDir()
	s := schedSpec
	var opts pkgserver.Options
	var dial []grpc.DialOption
	if withTLS {
		pki := mtlstest.New(t, "pool-ca")
		caFile := pki.CAFile
		opts.TLSCertFile, opts.TLSKeyFile = pki.Issue("pool", "pool-0", nil, []string{"localhost", "127.0.0.1"})
		opts.TLSClientCAFile = caFile
		cc, ck := pki.Issue("sched", "sched-a", []string{mtls.GroupScheduler}, nil)
		cfg, err := mtls.ClientConfig(caFile, cc, ck, "localhost")
		if err != nil {
			t.Fatal(err)
		}
		dial = append(dial, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	}
	served := nodetest.Serve(t, node.Config{DataDir: filepath.Join(dir, "data"), CapacityBlocks: 16, Spec: &s, RequireIdentity: withTLS}, opts)
	return served.Node, served.Addr, dial
}

func newCluster(t *testing.T, addr string, dial []grpc.DialOption, log *testproc.SyncBuffer) (*poolclient.Cluster, *poolclient.Node) {
	t.Helper()
	c, err := poolclient.New(poolclient.Config{Targets: []string{addr}, DialOptions: dial, Spec: schedSpec, LeaseTTL: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	return c, c.Nodes()[0]
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for: ", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func lookup(n *poolclient.Node) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := n.Client.LookupAgent(ctx, &blockpoolv1.LookupAgentRequest{AgentId: "a", TokenIds: []uint32{1, 2, 3}, ModelTag: schedSpec.ModelTag})
	return err
}

// Issue #13, defect 4 (scheduler side): a node reconfigured underneath the
// scheduler answers FAILED_PRECONDITION while its health says SERVING. The
// scheduler stops using it at once and checks its spec again; a pool that
// lets the scheduler configure it gets the scheduler's spec back and the node
// is healthy again.
func TestReconfiguredNodeIsRestored(t *testing.T) {
	n, addr, dial := startPool(t, false)
	logs := &testproc.SyncBuffer{}
	_, pn := newCluster(t, addr, dial, logs)
	if _, err := n.Pool().Reconfigure(context.Background(), otherSpec, 0); err != nil {
		t.Fatal(err)
	}
	if err := lookup(pn); status.Code(err) != codes.FailedPrecondition {
		t.Fatal("lookup on the reconfigured node:", err)
	}
	eventually(t, "the scheduler's spec restored and the node healthy", func() bool {
		s := n.Pool().Spec()
		return s != nil && *s == schedSpec && pn.Healthy()
	})
	if err := lookup(pn); err != nil {
		t.Fatal(err)
	}
	l, err := pn.Lease(context.Background(), &blockpoolv1.LeaseRequest{Holder: "s", AgentId: "a", Count: 1, ModelTag: schedSpec.ModelTag})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Release(false); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "refused the scheduler's spec") {
		t.Fatal("no warning logged:\n", logs.String())
	}
}

// With mTLS the scheduler may not reconfigure a configured pool: the node
// stays unhealthy, with a warning, until an operator restores the spec; then
// the re-check finds it usable again.
func TestReconfiguredNodeStaysUnhealthyWhenPoolRefuses(t *testing.T) {
	n, addr, dial := startPool(t, true)
	logs := &testproc.SyncBuffer{}
	_, pn := newCluster(t, addr, dial, logs)
	if _, err := n.Pool().Reconfigure(context.Background(), otherSpec, 0); err != nil {
		t.Fatal(err)
	}
	_, err := pn.Lease(context.Background(), &blockpoolv1.LeaseRequest{Holder: "s", AgentId: "a", Count: 1, ModelTag: schedSpec.ModelTag})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatal("lease on the reconfigured node:", err)
	}
	if pn.Healthy() {
		t.Fatal("node still reported healthy after FAILED_PRECONDITION")
	}
	eventually(t, "a warning that the spec was not restored", func() bool {
		return strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), "it was not restored") &&
			strings.Contains(logs.String(), "PermissionDenied")
	})
	time.Sleep(300 * time.Millisecond)
	if pn.Healthy() {
		t.Fatal("node turned healthy though its spec is not the scheduler's")
	}
	if s := n.Pool().Spec(); *s != otherSpec {
		t.Fatal("a scheduler certificate reconfigured the pool:", s)
	}
	// The operator restores the spec: the re-check sees it.
	if _, err := n.Pool().Reconfigure(context.Background(), schedSpec, 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the node healthy again", pn.Healthy)
	if err := lookup(pn); err != nil {
		t.Fatal(err)
	}
}
