package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/semantic-kv/semantic/pkg/mtls"
	"github.com/semantic-kv/semantic/services/scheduler/auth"
)

func runOK(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	code, err := run(args, &out, &errb)
	if code != 0 || err != nil {
		t.Fatalf("semantic-auth %s: exit %d, %v\n%s", strings.Join(args, " "), code, err, errb.String())
	}
	return out.String()
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The certificates the command writes verify against its CA with the
// identities and groups the pool authorizes by, and a TLS client and server
// built from them (mtls) complete a handshake.
func TestCerts(t *testing.T) {
	dir := t.TempDir()
	runOK(t, "certs", "--out", dir, "--schedulers", "sched-a,sched-b", "--pool-hosts", "pool1,localhost,127.0.0.1")
	ca := readCert(t, filepath.Join(dir, "ca.pem"))
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for file, want := range map[string][]string{"sched-a": {mtls.GroupScheduler}, "sched-b": {mtls.GroupScheduler}, "admin": {mtls.GroupAdmin}, "pool": nil} {
		c := readCert(t, filepath.Join(dir, file+".pem"))
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s: %v", file, err)
		}
		if c.Subject.CommonName != file || !slices.Equal(c.Subject.Organization, want) {
			t.Errorf("%s: subject %v", file, c.Subject)
		}
		if st, err := os.Stat(filepath.Join(dir, file+"-key.pem")); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s key: %v %v", file, st.Mode(), err)
		}
	}
	if err := readCert(t, filepath.Join(dir, "pool.pem")).VerifyHostname("pool1"); err != nil {
		t.Error(err)
	}
	scfg, err := mtls.ServerConfig(filepath.Join(dir, "pool.pem"), filepath.Join(dir, "pool-key.pem"), filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ccfg, err := mtls.ClientConfig(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "sched-a.pem"), filepath.Join(dir, "sched-a-key.pem"), "pool1")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			peer <- err.Error()
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			peer <- err.Error()
			return
		}
		peer <- tc.ConnectionState().VerifiedChains[0][0].Subject.CommonName
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), ccfg)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write([]byte("x")) // completes the TLS 1.3 handshake on the server side
	if got := <-peer; got != "sched-a" {
		t.Fatalf("server saw %q", got)
	}
	c.Close()

	// A second run keeps the CA and the leaves; --renew reissues the leaves
	// from the same CA.
	before, _ := os.ReadFile(filepath.Join(dir, "sched-a.pem"))
	out := runOK(t, "certs", "--out", dir, "--schedulers", "sched-a")
	if !strings.Contains(out, "kept") {
		t.Errorf("second run: %s", out)
	}
	runOK(t, "certs", "--out", dir, "--schedulers", "sched-a", "--renew")
	after, _ := os.ReadFile(filepath.Join(dir, "sched-a.pem"))
	if bytes.Equal(before, after) {
		t.Error("--renew kept the old certificate")
	}
	if !readCert(t, filepath.Join(dir, "ca.pem")).Equal(ca) {
		t.Error("the CA changed")
	}
	if _, err := readCert(t, filepath.Join(dir, "sched-a.pem")).Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("renewed certificate: %v", err)
	}
	// issue: one more identity from the same CA.
	runOK(t, "issue", "--ca", dir, "--name", "ops", "--group", "admin", "--out", dir)
	if c := readCert(t, filepath.Join(dir, "ops.pem")); !slices.Equal(c.Subject.Organization, []string{mtls.GroupAdmin}) {
		t.Errorf("issued: %v", c.Subject)
	}
}

func TestKeys(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys.json")
	k1 := strings.TrimSpace(runOK(t, "key", "--file", file, "--name", "ci", "--tenant", "acme"))
	k2 := strings.TrimSpace(runOK(t, "key", "--file", file, "--name", "ops", "--tenant", "ops", "--role", "admin"))
	runOK(t, "quota", "--file", file, "--tenant", "acme", "--max-agents", "10", "--max-requests", "4")
	f, err := auth.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(file)
	if strings.Contains(string(raw), k1) || strings.Contains(string(raw), k2) {
		t.Fatal("the keys file holds a key")
	}
	p, err := f.Index().Lookup(k1)
	if err != nil || p.Tenant != "acme" || p.Role != auth.RoleUser || p.Quota.MaxAgents != 10 || p.Quota.MaxRequests != 4 {
		t.Fatalf("key 1: %+v %v", p, err)
	}
	if p, err := f.Index().Lookup(k2); err != nil || p.Role != auth.RoleAdmin {
		t.Fatalf("key 2: %+v %v", p, err)
	}
	if out := runOK(t, "list", "--file", file); !strings.Contains(out, "ci") || strings.Contains(out, k1) {
		t.Errorf("list: %s", out)
	}
	runOK(t, "revoke", "--file", file, "--name", "ci")
	f, _ = auth.ReadFile(file)
	if _, err := f.Index().Lookup(k1); err == nil {
		t.Fatal("revoked key still accepted")
	}
	for _, args := range [][]string{
		{"key", "--file", file, "--name", "ops", "--tenant", "ops"},    // name taken
		{"key", "--file", file, "--name", "x", "--tenant", "Bad/Name"}, // tenant
		{"key", "--file", file, "--name", "x", "--tenant", "t", "--role", "root"},
		{"revoke", "--file", file, "--name", "nobody"},
	} {
		if code, err := run(args, &bytes.Buffer{}, &bytes.Buffer{}); code != 1 || err == nil {
			t.Errorf("%v: exit %d, %v", args, code, err)
		}
	}
	for _, args := range [][]string{{}, {"nope"}, {"key", "--file", file}, {"certs"}, {"certs", "--out", t.TempDir(), "--key-mode", "9"}} {
		if code, _ := run(args, &bytes.Buffer{}, &bytes.Buffer{}); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}
