// Package nodetest serves a block-pool node on loopback for tests of any
// module: the node behind the gRPC server the blockpool binary runs
// (pkg/server with the pool's transport options), plain or over TLS, with
// its invariants checked when it stops.
package nodetest

import (
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"

	"github.com/semantic-kv/semantic/pkg/poolwire"
	"github.com/semantic-kv/semantic/pkg/server"
	"github.com/semantic-kv/semantic/services/blockpool/node"
)

// Node is a served node.
type Node struct {
	*node.Node
	// Addr is the loopback address it serves on.
	Addr string
	stop func()
}

// Serve opens a node with cfg (DataDir defaults to a temporary directory,
// Logger to a discarding one) and serves it with opts (TLS files, say; the
// pool's transport options are added). The node stops when the test ends,
// or earlier with Stop.
func Serve(t testing.TB, cfg node.Config, opts server.Options) *Node {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = filepath.Join(t.TempDir(), "pool")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Logger == nil {
		opts.Logger = cfg.Logger
	}
	opts.Extra = append(opts.Extra, poolwire.ServerOptions()...)
	n, err := node.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	gs, hs, err := server.New(opts)
	if err != nil {
		n.Close()
		t.Fatal(err)
	}
	n.Register(gs)
	server.MarkServing(gs, hs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		n.Close()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = gs.Serve(ln); close(done) }()
	var once sync.Once
	s := &Node{Node: n, Addr: ln.Addr().String()}
	s.stop = func() {
		once.Do(func() {
			gs.Stop()
			<-done
			if err := n.Pool().Check(); err != nil {
				t.Error("pool invariant when the node stopped: ", err)
			}
			_ = n.Close()
		})
	}
	t.Cleanup(s.stop)
	return s
}

// Stop stops serving and closes the node (once; the test's end does it too).
func (s *Node) Stop() { s.stop() }
