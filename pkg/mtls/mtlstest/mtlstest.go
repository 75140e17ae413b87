// Package mtlstest makes a CA and certificates in a test's temporary
// directory, for tests of mutual TLS over real sockets.
package mtlstest

import (
	"testing"
	"time"

	"github.com/semantic-kv/semantic/pkg/mtls"
)

// PKI is a CA with its certificate written to CAFile.
type PKI struct {
	t      testing.TB
	Dir    string
	CA     *mtls.CA
	CAFile string
}

// New makes a CA named name (valid for an hour) in a new temporary
// directory.
func New(t testing.TB, name string) *PKI {
	t.Helper()
	dir := t.TempDir()
	ca, err := mtls.NewCA(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caFile, _, err := ca.WriteFiles(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	return &PKI{t: t, Dir: dir, CA: ca, CAFile: caFile}
}

// Issue writes a certificate for cn in groups (a server certificate too for
// hosts) to Dir/file.pem and Dir/file-key.pem, and returns both paths.
func (p *PKI) Issue(file, cn string, groups, hosts []string) (certFile, keyFile string) {
	p.t.Helper()
	is, err := p.CA.Issue(cn, groups, hosts, time.Hour)
	if err != nil {
		p.t.Fatal(err)
	}
	c, k, err := is.WriteFiles(p.Dir, file)
	if err != nil {
		p.t.Fatal(err)
	}
	return c, k
}
