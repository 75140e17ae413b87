package runner

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
	"github.com/semantic-kv/semantic/pkg/mtls"
	"github.com/semantic-kv/semantic/pkg/mtls/mtlstest"
	"github.com/semantic-kv/semantic/pkg/server"
	"github.com/semantic-kv/semantic/services/blockpool/node"
	"github.com/semantic-kv/semantic/services/blockpool/node/nodetest"
)

// startTLSPoolNode serves a block-pool node on loopback over mutual TLS.
func startTLSPoolNode(t *testing.T, certFile, keyFile, clientCAFile string) string {
	t.Helper()
	return nodetest.Serve(t, node.Config{NodeID: "tls-pool", CapacityBlocks: 512},
		server.Options{TLSCertFile: certFile, TLSKeyFile: keyFile, TLSClientCAFile: clientCAFile}).Addr
}

// The --pool-tls-* flags dial the pool over mutual TLS with the scheduler's
// certificate (group semantic:scheduler); combinations that cannot be meant
// are refused at start, naming the flags.
func TestPoolTLSFlags(t *testing.T) {
	pki := mtlstest.New(t, "test-ca")
	dir, caFile := pki.Dir, pki.CAFile
	issue := func(name string, groups, hosts []string) (string, string) {
		return pki.Issue(name, name, groups, hosts)
	}
	poolCert, poolKey := issue("pool", nil, []string{"pool.test"})
	schedCert, schedKey := issue("scheduler", []string{mtls.GroupScheduler}, nil)
	addr := startTLSPoolNode(t, poolCert, poolKey, caFile)

	quiet := Deps{DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, bad := range []struct {
		name string
		set  func(*Config)
		want string
	}{
		{"cert without CA", func(c *Config) { c.PoolTLSCert, c.PoolTLSKey = schedCert, schedKey }, "--pool-tls-ca"},
		{"server name without CA", func(c *Config) { c.PoolTLSServerName = "pool.test" }, "--pool-tls-ca"},
		{"cert without key", func(c *Config) { c.PoolTLSCA, c.PoolTLSCert = caFile, schedCert }, "--pool-tls-key"},
		{"key without cert", func(c *Config) { c.PoolTLSCA, c.PoolTLSKey = caFile, schedKey }, "--pool-tls-cert"},
		{"embedded pool", func(c *Config) { c.Pool, c.PoolTLSCA = "", caFile }, "--pool"},
		{"missing CA file", func(c *Config) { c.PoolTLSCA = filepath.Join(dir, "nope.pem") }, "--pool-tls"},
	} {
		cfg := testConfig()
		cfg.Pool = addr
		bad.set(&cfg)
		if _, err := Start(context.Background(), cfg, quiet); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Fatalf("%s: want an error naming %s, got %v", bad.name, bad.want, err)
		}
	}

	cfg := testConfig()
	cfg.Pool, cfg.PoolTLSCA, cfg.PoolTLSCert, cfg.PoolTLSKey, cfg.PoolTLSServerName = addr, caFile, schedCert, schedKey, "pool.test"
	ts := startScheduler(t, t.TempDir(), cfg)
	if !ts.Pool.Nodes()[0].Healthy() {
		t.Fatal("the TLS pool node is not healthy")
	}
	req := &schedulerv1.GenerateRequest{AgentId: "tls", PromptTokenIds: []uint32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, MaxTokens: 3}
	mustGenerate(t, ts.client, req)
	if r := mustGenerate(t, ts.client, req); r.usage.GetCachedTokens() == 0 || r.usage.GetPoolNode() != "tls-pool" {
		t.Fatalf("second request over TLS: %+v", r.usage)
	}
}
