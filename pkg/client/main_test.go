package client_test

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
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
	root, err := repoRoot()
	if err != nil {
		return 0, err
	}
	bin := filepath.Join(dir, "scheduler")
	build := exec.Command("go", "build", "-o", bin, "./services/scheduler")
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("go build: %v\n%s", err, out)
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
	cmd := exec.Command(bin, "--model", "builtin:tiny", "--data-dir", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0",
		"--http-listen", "", "--metrics-listen", "", "--log-format", "json", "--auth-keys", keys, "--require-auth")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	}()
	addr := make(chan string, 1)
	var logs strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "serving" {
				addr <- line.Addr
			}
		}
	}()
	select {
	case server = <-addr:
	case <-time.After(2 * time.Minute):
		return 0, fmt.Errorf("the scheduler did not serve within 2 minutes")
	}
	return m.Run(), nil
}

func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOWORK").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		return "", fmt.Errorf("go env GOWORK: %v (the tests run inside the repository's workspace)", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}
