package poolclient_test

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/semantic-kv/semantic/pkg/mtls"
	"github.com/semantic-kv/semantic/pkg/mtls/mtlstest"
	pkgserver "github.com/semantic-kv/semantic/pkg/server"
	"github.com/semantic-kv/semantic/pkg/testproc"
	"github.com/semantic-kv/semantic/services/blockpool/node"
	"github.com/semantic-kv/semantic/services/blockpool/node/nodetest"
	"github.com/semantic-kv/semantic/services/scheduler/poolclient"
)

// A dns:/// target over TLS: the nodes it resolves to are dialed by IP, but
// verified by the name (the certificate of a service lists its DNS name,
// not the pods' addresses), as in the compose cluster and on Kubernetes.
// A node that cannot be reached is logged, not silently retried.
func TestDNSTargetVerifiesTheName(t *testing.T) {
	pki := mtlstest.New(t, "pool-ca")
	certFile, keyFile := pki.Issue("pool", "pool-0", nil, []string{"localhost"}) // no IP address
	s := schedSpec
	served := nodetest.Serve(t, node.Config{DataDir: filepath.Join(pki.Dir, "data"), CapacityBlocks: 16, Spec: &s, RequireIdentity: true},
		pkgserver.Options{TLSCertFile: certFile, TLSKeyFile: keyFile, TLSClientCAFile: pki.CAFile})
	_, port, _ := net.SplitHostPort(served.Addr)

	cc, ck := pki.Issue("sched", "sched-a", []string{mtls.GroupScheduler}, nil)
	cfg, err := mtls.ClientConfig(pki.CAFile, cc, ck, "")
	if err != nil {
		t.Fatal(err)
	}
	var logs testproc.SyncBuffer
	c, err := poolclient.New(poolclient.Config{Targets: []string{"dns:///localhost:" + port}, Spec: schedSpec, LeaseTTL: 5 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg))},
		Logger:      slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatalf("no node healthy through dns:///localhost:%s over TLS: %v\n%s", port, err, logs.String())
	}
	// localhost may also resolve to ::1, where nothing listens: that node
	// is reported as not reachable.
	for _, nd := range c.Nodes() {
		if strings.HasPrefix(nd.Addr, "[::1]") && !nd.Healthy() {
			eventually(t, "the unreachable node is logged", func() bool { return strings.Contains(logs.String(), "pool node not reachable") })
		}
	}
}
