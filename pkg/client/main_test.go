package client_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/semantic-kv/semantic/pkg/testproc"
)

// The examples and tests run against a real scheduler process (embedded
// pool, builtin:tiny) that requires API keys: server is its address, and
// userKey, otherKey and adminKey are keys of tenants "acme" (user), "rival"
// (user) and "ops" (admin).
var (
	server                      string
	userKey, otherKey, adminKey string
)

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "client tests:", err)
		code = 1
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "semantic-client-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	bin, err := testproc.BuildBinary(dir, "./services/scheduler")
	if err != nil {
		return 0, err
	}
	// The keys file as docs/security.md describes it (written by hand: this
	// module does not depend on the scheduler's).
	type key struct {
		Name   string `json:"name"`
		Tenant string `json:"tenant"`
		Role   string `json:"role"`
		SHA256 string `json:"sha256"`
	}
	file := struct {
		Tenants map[string]map[string]int `json:"tenants"`
		Keys    []key                     `json:"keys"`
	}{Tenants: map[string]map[string]int{"acme": {"max_requests": 8}}}
	for _, k := range []struct {
		dst                *string
		name, tenant, role string
	}{{&userKey, "acme", "acme", "user"}, {&otherKey, "rival", "rival", "user"}, {&adminKey, "ops", "ops", "admin"}} {
		var b [32]byte
		_, _ = rand.Read(b[:])
		*k.dst = "sk-sem-" + base64.RawURLEncoding.EncodeToString(b[:])
		h := sha256.Sum256([]byte(*k.dst))
		file.Keys = append(file.Keys, key{Name: k.name, Tenant: k.tenant, Role: k.role, SHA256: hex.EncodeToString(h[:])})
	}
	raw, err := json.Marshal(file)
	if err != nil {
		return 0, err
	}
	keys := filepath.Join(dir, "keys.json")
	if err := os.WriteFile(keys, raw, 0o600); err != nil {
		return 0, err
	}
	p, err := testproc.Launch(exec.Command(bin, "--model", "builtin:tiny", "--data-dir", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0",
		"--http-listen", "", "--metrics-listen", "", "--log-format", "json", "--auth-keys", keys, "--require-auth"))
	if err != nil {
		return 0, err
	}
	defer p.Kill()
	server = p.Addr
	return m.Run(), nil
}
