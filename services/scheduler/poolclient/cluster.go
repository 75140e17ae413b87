// Package poolclient is the scheduler's side of the block-pool contract: the
// set of pool nodes, each agent's home node by rendezvous hashing over the
// healthy ones, node health, lease keep-alives, and block transfer. It is
// the remote implementation of the service's pool seam (poolnode, through
// Cluster.PoolNodes), for remote nodes and the embedded one alike.
package poolclient

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/poolwire"
	"github.com/semantic-kv/semantic/services/scheduler/poolnode"
)

// Config describes the pool nodes to use.
type Config struct {
	// Targets are the pool nodes: "host:port" each, or "dns:///name:port"
	// for a name that resolves to several addresses (a headless Kubernetes
	// service); such a name is re-resolved every ResolveEvery.
	Targets []string
	// Conns are pre-made connections by target (the embedded pool's
	// in-process connection, pkg/inproc); a target listed here is not
	// dialed, and not closed by the cluster.
	Conns map[string]grpc.ClientConnInterface
	// DialOptions are used for every dialed target (TLS, keepalive...).
	DialOptions []grpc.DialOption
	// Spec is the geometry this scheduler computes with. A node whose spec
	// differs is reconfigured to it (refused by the node while leased).
	Spec kvspec.Spec
	// LeaseTTL is the time to live requested for leases; keep-alives are sent
	// every third of it.
	LeaseTTL     time.Duration
	ResolveEvery time.Duration
	Logger       *slog.Logger
}

// ErrNoHealthyNode is returned when no pool node can take a request (the
// seam's error: poolnode.ErrNoHealthyNode).
var ErrNoHealthyNode = poolnode.ErrNoHealthyNode

// ErrDataLoss is what a block transfer that came back damaged (short, or
// data before its header) wraps (poolnode.ErrDataLoss).
var ErrDataLoss = poolnode.ErrDataLoss

// Cluster is the scheduler's view of the pool nodes.
type Cluster struct {
	cfg Config
	log *slog.Logger

	mu    sync.RWMutex
	nodes map[string]*Node // by address

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New connects to the configured nodes and starts watching their health. It
// does not wait for any node to be healthy.
func New(cfg Config) (*Cluster, error) {
	if len(cfg.Targets) == 0 {
		return nil, errors.New("poolclient: no pool targets")
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 30 * time.Second
	}
	if cfg.ResolveEvery <= 0 {
		cfg.ResolveEvery = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Cluster{cfg: cfg, log: cfg.Logger, nodes: map[string]*Node{}, ctx: ctx, cancel: cancel}
	var static []string
	for _, t := range cfg.Targets {
		if name, ok := strings.CutPrefix(t, "dns:///"); ok {
			c.wg.Add(1)
			go c.resolveLoop(name)
			continue
		}
		static = append(static, t)
	}
	for _, addr := range static {
		if err := c.addNode(addr, ""); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// addNode dials addr. authority, when set, is the name the address was
// resolved from (a dns:/// target): the node is addressed, and its TLS
// certificate verified, by that name rather than by its IP address, which
// a certificate for a service name does not list.
func (c *Cluster) addNode(addr, authority string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.nodes[addr]; ok {
		return nil
	}
	conn := c.cfg.Conns[addr]
	owned := false
	if conn == nil {
		// The block pool's own client options (windows, buffers, the
		// copy-avoiding codec) first; the caller's (credentials) after.
		opts := poolwire.ClientOptions()
		if len(c.cfg.DialOptions) == 0 {
			opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
		}
		// A node that restarts should be back in use within seconds, not
		// after gRPC's default reconnect backoff of up to two minutes.
		opts = append(opts, grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 200 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 5 * time.Second,
		}))
		if authority != "" {
			opts = append(opts, grpc.WithAuthority(authority))
		}
		opts = append(opts, c.cfg.DialOptions...)
		cc, err := grpc.NewClient(addr, opts...)
		if err != nil {
			return fmt.Errorf("pool %s: %w", addr, err)
		}
		conn, owned = cc, true
	}
	// The node's own context ends its health watch and spec re-checks when
	// the node is removed (a DNS name stopped resolving to it) or the
	// cluster closes.
	n := newNode(c.ctx, c, addr, conn, owned)
	c.nodes[addr] = n
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		n.watch(n.ctx)
	}()
	return nil
}

func (c *Cluster) removeNode(addr string) {
	c.mu.Lock()
	n := c.nodes[addr]
	delete(c.nodes, addr)
	c.mu.Unlock()
	if n != nil {
		n.close()
	}
}

// resolveLoop keeps the node set equal to what name resolves to.
func (c *Cluster) resolveLoop(name string) {
	defer c.wg.Done()
	host, port, err := net.SplitHostPort(name)
	if err != nil {
		c.log.Error("pool target", "target", name, "err", err)
		return
	}
	t := time.NewTicker(c.cfg.ResolveEvery)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
		ips, err := net.DefaultResolver.LookupHost(ctx, host)
		cancel()
		if err != nil {
			c.log.Warn("resolving pool target", "name", host, "err", err)
		} else {
			want := map[string]bool{}
			for _, ip := range ips {
				want[net.JoinHostPort(ip, port)] = true
			}
			for addr := range want {
				if err := c.addNode(addr, name); err != nil {
					c.log.Warn("adding pool node", "addr", addr, "err", err)
				}
			}
			c.mu.RLock()
			var gone []string
			for addr, n := range c.nodes {
				if n.owned && !want[addr] {
					gone = append(gone, addr)
				}
			}
			c.mu.RUnlock()
			for _, addr := range gone {
				c.removeNode(addr)
			}
		}
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Close stops health watching and keep-alives and closes dialed connections.
func (c *Cluster) Close() {
	c.cancel()
	c.wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	for addr, n := range c.nodes {
		n.close()
		delete(c.nodes, addr)
	}
}

// Nodes returns every known node, sorted by address.
func (c *Cluster) Nodes() []*Node {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]*Node, 0, len(c.nodes))
	for _, n := range c.nodes {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr < out[j].Addr })
	return out
}

// Order returns every node in the agent's rendezvous order: the first is its
// home. Highest-random-weight hashing moves only a removed or added node's
// share of agents when the node set changes. The weight key is the node's
// id once known (stable across address changes), else its address.
func (c *Cluster) Order(agentID string) []*Node {
	return orderNodes(agentID, c.Nodes())
}

// orderNodes sorts nodes into agentID's rendezvous order. Only node ids are
// hashed, never addresses: an agent's home must not depend on how a node was
// reached (a static address, one of several a DNS name resolves to) or on
// whether this scheduler has talked to it yet, or two schedulers — or one
// scheduler before and after it learns a node's id — would home the agent on
// different nodes and split its records. A node whose id is not known yet
// (it has never answered) cannot be anyone's home: it goes after the others,
// where it is skipped as unhealthy anyway, and takes its place in the order
// once its id is learned, as a node coming back does.
func orderNodes(agentID string, nodes []*Node) []*Node {
	type scored struct {
		n     *Node
		known bool
		score uint64
	}
	s := make([]scored, len(nodes))
	for i, n := range nodes {
		id := n.ID()
		s[i] = scored{n: n, known: id != ""}
		if s[i].known {
			s[i].score = rendezvousScore(agentID, id)
		}
	}
	sort.SliceStable(s, func(i, j int) bool {
		if s[i].known != s[j].known {
			return s[i].known
		}
		if !s[i].known {
			return s[i].n.Addr < s[j].n.Addr
		}
		return s[i].score > s[j].score
	})
	out := make([]*Node, len(s))
	for i := range s {
		out[i] = s[i].n
	}
	return out
}

// WaitHealthy blocks until at least one node is healthy or ctx ends.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		for _, n := range c.Nodes() {
			if n.Healthy() {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// rendezvousScore is the weight of node key for agentID: FNV-1a over both,
// finished with a 64-bit mixer so that close keys spread apart.
func rendezvousScore(agentID, key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(agentID))
	h.Write([]byte{0})
	h.Write([]byte(key))
	x := h.Sum64()
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}
