//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/semantic-kv/semantic/pkg/mtls"
	"github.com/semantic-kv/semantic/services/scheduler/auth"
)

// secrets are the credentials the test's cluster runs with: what `make
// compose-secrets` makes with bin/semantic-auth, made here with the same
// packages so that the test owns them (docker-compose.yml reads them from
// SEMANTIC_SECRETS_DIR).
type secrets struct {
	dir       string
	userKey   string // tenant "demo", role user
	otherKey  string // tenant "rival", role user
	adminKey  string // tenant "ops", role admin
	adminCert credentials.TransportCredentials
	// schedCert is a scheduler's client certificate (may lease, may not
	// reconfigure a configured pool); noCert trusts the CA but presents none.
	schedCert, noCert credentials.TransportCredentials
}

func makeSecrets(t *testing.T) *secrets {
	t.Helper()
	dir := t.TempDir()
	// The containers run as uid 65532: the files must be readable to it.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ca, err := mtls.NewCA("semantic-e2e-ca", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caFile, _, err := ca.WriteFiles(dir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	issue := func(file, name string, groups, hosts []string) (string, string) {
		is, err := ca.Issue(name, groups, hosts, 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		c, k, err := is.WriteFiles(dir, file)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(k, 0o644); err != nil {
			t.Fatal(err)
		}
		return c, k
	}
	issue("pool", "pool", nil, []string{"pool", "pool1", "pool2", "pool3", "localhost", "127.0.0.1"})
	issue("scheduler", "scheduler", []string{mtls.GroupScheduler}, nil)
	issue("scheduler2", "scheduler2", []string{mtls.GroupScheduler}, nil)
	ac, ak := issue("admin", "admin", []string{mtls.GroupAdmin}, nil)
	tc, tk := issue("tester", "tester", []string{mtls.GroupScheduler}, nil)

	s := &secrets{dir: dir}
	f := &auth.File{Tenants: map[string]auth.Quota{"demo": {MaxRequests: 64}}}
	for _, k := range []struct {
		dst          *string
		name, tenant string
		role         auth.Role
	}{{&s.userKey, "demo", "demo", auth.RoleUser}, {&s.otherKey, "rival", "rival", auth.RoleUser}, {&s.adminKey, "ops", "ops", auth.RoleAdmin}} {
		key, err := auth.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		*k.dst = key
		f.Keys = append(f.Keys, auth.Key{Name: k.name, Tenant: k.tenant, Role: k.role, SHA256: auth.HashKey(key)})
	}
	keys := filepath.Join(dir, "keys.json")
	if err := f.Write(keys); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(keys, 0o644); err != nil {
		t.Fatal(err)
	}
	tlsCreds := func(cert, key string) credentials.TransportCredentials {
		cfg, err := mtls.ClientConfig(caFile, cert, key, "localhost")
		if err != nil {
			t.Fatal(err)
		}
		return credentials.NewTLS(cfg)
	}
	s.adminCert, s.schedCert, s.noCert = tlsCreds(ac, ak), tlsCreds(tc, tk), tlsCreds("", "")
	return s
}

// bearer sends an API key with every call; the test's scheduler listens
// without TLS on loopback, so it does not insist on transport security.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }

// withKey is the dial option of a client with key ("" for none).
func withKey(key string) []grpc.DialOption {
	if key == "" {
		return nil
	}
	return []grpc.DialOption{grpc.WithPerRPCCredentials(bearer(key))}
}
