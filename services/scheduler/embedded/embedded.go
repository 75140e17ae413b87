// Package embedded runs a block-pool node inside the scheduler process, on a
// local data directory, and connects to it through the same gRPC contract as
// a remote node, over an in-memory connection. It is the single-process
// default that `make run` starts: the same code paths as a cluster, minus the
// network.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/semantic-kv/semantic/pkg/poolwire"
	"github.com/semantic-kv/semantic/pkg/server"
	"github.com/semantic-kv/semantic/services/blockpool/node"
)

// Target is the address the embedded pool is known by in the scheduler.
const Target = "embedded"

// Pool is a running in-process pool node.
type Pool struct {
	Node *node.Node
	Conn *grpc.ClientConn
	srv  *grpc.Server
	lis  *bufconn.Listener
	done chan error
}

// Start opens the node and serves it over an in-memory listener.
func Start(cfg node.Config, log *slog.Logger, mp metric.MeterProvider, tp trace.TracerProvider) (*Pool, error) {
	n, err := node.Open(cfg)
	if err != nil {
		return nil, fmt.Errorf("embedded pool: %w", err)
	}
	srv, hs, err := server.New(server.Options{Logger: log.With("component", "embedded-pool"), MeterProvider: mp, TracerProvider: tp,
		Extra: poolwire.ServerOptions()})
	if err != nil {
		_ = n.Close()
		return nil, err
	}
	n.Register(srv)
	server.MarkServing(srv, hs)
	lis := bufconn.Listen(4 << 20)
	p := &Pool{Node: n, srv: srv, lis: lis, done: make(chan error, 1)}
	go func() { p.done <- srv.Serve(lis) }()
	p.Conn, err = grpc.NewClient("passthrough:///"+Target, append(poolwire.ClientOptions(),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		_ = p.Close(context.Background())
		return nil, err
	}
	return p, nil
}

// Close stops serving (in-flight calls get until ctx ends) and closes the node.
func (p *Pool) Close(ctx context.Context) error {
	if p.Conn != nil {
		_ = p.Conn.Close()
	}
	stopped := make(chan struct{})
	go func() { p.srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-ctx.Done():
		p.srv.Stop()
		<-stopped
	case <-time.After(30 * time.Second):
		p.srv.Stop()
		<-stopped
	}
	err := <-p.done
	if errors.Is(err, grpc.ErrServerStopped) {
		err = nil
	}
	return errors.Join(err, p.Node.Close())
}
