// Package mtls holds the TLS configurations of semantic's node-to-node links
// and the identity a verified client certificate carries.
//
// Identities follow the Kubernetes convention for client certificates: the
// subject's CommonName is the identity's name and its Organization entries
// are the groups it belongs to. The block pool authorizes by group:
// GroupScheduler may lease, write, read and commit; GroupAdmin may also
// reconfigure a pool that already has a spec. Certificates are made by
// `semantic-auth certs` (services/scheduler/cmd/semantic-auth).
package mtls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Groups a client certificate's Organization may name.
const (
	GroupScheduler = "semantic:scheduler"
	GroupAdmin     = "semantic:admin"
)

// Identity is who a verified client certificate says the caller is.
type Identity struct {
	Name   string   // the certificate subject's CommonName
	Groups []string // its Organization entries
}

// In reports whether the identity belongs to group.
func (id Identity) In(group string) bool { return slices.Contains(id.Groups, group) }

// FromContext returns the identity of a gRPC server call's peer: its client
// certificate's, when the TLS handshake verified one against the server's
// client CA. ok is false for a plaintext connection and for a TLS client
// that presented no certificate.
func FromContext(ctx context.Context) (id Identity, ok bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Identity{}, false
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return Identity{}, false
	}
	leaf := ti.State.VerifiedChains[0][0]
	return Identity{Name: leaf.Subject.CommonName, Groups: slices.Clone(leaf.Subject.Organization)}, true
}

// ServerConfig is a server's TLS configuration: its certificate and key,
// and, when clientCAFile is set, client certificates verified against that
// CA. A client certificate is verified if given but not required at the
// handshake, so that health checks and reflection work without one; each
// service decides what an unauthenticated caller may do (FromContext).
func ServerConfig(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("tls: both a certificate and a key are needed")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCAFile != "" {
		pool, err := loadPool(clientCAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}

// ClientConfig is a client's TLS configuration: the server's certificate
// verified against caFile (the system roots when empty), serverName
// overriding the name checked (empty: the dialed host), and the client's own
// certificate when certFile and keyFile are set.
func ClientConfig(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		pool, err := loadPool(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("tls: a client certificate needs both its certificate and its key")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls: %s holds no PEM certificate", file)
	}
	return pool, nil
}
