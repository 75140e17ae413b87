// Package embedded runs a block-pool node inside the scheduler process, on a
// local data directory, and connects to it through the same gRPC contract as
// a remote node: the pool's own handlers (validation included) called in
// process over pkg/inproc, with no transport and no serialization. It is the
// single-process default that `make run` starts: the same code paths as a
// cluster, minus the network. The service reaches it as it reaches any node,
// through the poolnode seam whose implementation is poolclient's, here over
// Conn instead of a dialed connection.
package embedded

import (
	"context"
	"fmt"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/semantic-kv/semantic/pkg/inproc"
	"github.com/semantic-kv/semantic/services/blockpool/node"
	"github.com/semantic-kv/semantic/services/scheduler/poolclient"
)

// Target is the address the embedded pool is known by in the scheduler.
const Target = "embedded"

// Pool is a running in-process pool node.
type Pool struct {
	Node *node.Node
	// Conn reaches the node's BlockPoolService and its health service.
	Conn   *inproc.Conn
	health *health.Server
}

// Start opens the node and registers it, with a health service that says
// SERVING, on an in-process connection. The node logs and measures itself
// through cfg (Logger, MeterProvider); in process there are no RPCs to
// trace.
func Start(cfg node.Config) (*Pool, error) {
	n, err := node.Open(cfg)
	if err != nil {
		return nil, fmt.Errorf("embedded pool: %w", err)
	}
	p := &Pool{Node: n, Conn: inproc.New(), health: health.NewServer()}
	n.Register(p.Conn)
	healthpb.RegisterHealthServer(p.Conn, p.health)
	p.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	p.health.SetServingStatus(poolclient.ServiceName, healthpb.HealthCheckResponse_SERVING)
	return p, nil
}

// Close marks the node NOT_SERVING (health watchers see it), waits for the
// calls in flight, and closes the node. Calls still running when ctx ends
// are not cut: they end with their callers' contexts.
func (p *Pool) Close(ctx context.Context) error {
	p.health.Shutdown()
	done := make(chan error, 1)
	go func() { done <- p.Conn.Close() }()
	select {
	case err := <-done:
		if err != nil {
			return err
		}
	case <-ctx.Done():
		return fmt.Errorf("embedded pool: calls still running when closing: %w", ctx.Err())
	}
	return p.Node.Close()
}
