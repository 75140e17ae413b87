package poolclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	durpb "google.golang.org/protobuf/types/known/durationpb"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	"github.com/semantic-kv/semantic/pkg/poolwire"
)

// ServiceName is the health-checked service of a pool node.
const ServiceName = "semantic.blockpool.v1.BlockPoolService"

// Node is one pool node.
type Node struct {
	Addr string
	// Client calls the node. A FAILED_PRECONDITION from its Lease,
	// LookupAgent or CommitAgent marks the node unhealthy and checks its
	// spec again (specClient).
	Client blockpoolv1.BlockPoolServiceClient

	cluster *Cluster
	conn    grpc.ClientConnInterface
	owned   bool // the cluster dialed conn (a *grpc.ClientConn) and closes it

	healthy atomic.Bool
	nodeID  atomic.Pointer[string]
	// capacity is the node's capacity in blocks, learned with its id.
	capacity atomic.Int64

	// hmu orders the health watch's view (serving) with the spec
	// re-check's, so that a re-check never marks healthy a node that
	// stopped serving meanwhile; it also guards closed against rechecks
	// starting after close.
	hmu        sync.Mutex
	serving    bool // the health watch's last status was SERVING
	closed     bool
	rechecking atomic.Bool    // a spec re-check runs
	rechecks   sync.WaitGroup // spec re-checks, waited for by close

	keeper *keeper
	ctx    context.Context    // the node's life: ends at removal or cluster close
	cancel context.CancelFunc // ends ctx
}

func newNode(ctx context.Context, c *Cluster, addr string, conn grpc.ClientConnInterface, owned bool) *Node {
	n := &Node{Addr: addr, cluster: c, conn: conn, owned: owned}
	n.ctx, n.cancel = context.WithCancel(ctx)
	n.Client = specClient{BlockPoolServiceClient: blockpoolv1.NewBlockPoolServiceClient(conn), n: n}
	n.keeper = newKeeper(n)
	return n
}

// Healthy reports whether the node serves and has the scheduler's spec.
func (n *Node) Healthy() bool { return n.healthy.Load() }

// ID is the node's id once it has answered GetPoolInfo, else "".
func (n *Node) ID() string {
	if p := n.nodeID.Load(); p != nil {
		return *p
	}
	return ""
}

// Name is the node's id if known, else its address: what usage reports.
func (n *Node) Name() string {
	if id := n.ID(); id != "" {
		return id
	}
	return n.Addr
}

// CapacityBlocks is the node's capacity in blocks as of its last health
// check (0 before the first).
func (n *Node) CapacityBlocks() int { return int(n.capacity.Load()) }

func (n *Node) close() {
	n.hmu.Lock()
	n.closed = true
	n.hmu.Unlock()
	n.cancel()
	n.rechecks.Wait()
	n.keeper.stop()
	n.healthy.Store(false)
	if cc, ok := n.conn.(*grpc.ClientConn); ok && n.owned {
		_ = cc.Close()
	}
}

// watch follows the node's health stream; when the node turns SERVING it
// makes sure the node has the scheduler's spec before marking it healthy.
func (n *Node) watch(ctx context.Context) {
	log := n.cluster.log.With("pool", n.Addr)
	hc := healthpb.NewHealthClient(n.conn)
	backoff := 100 * time.Millisecond
	// A node that cannot be reached at all (wrong address, refused TLS
	// handshake) would otherwise never be logged, as it never turns
	// unhealthy: say why, at most every unreachableLogEvery.
	var lastUnreachable time.Time
	for ctx.Err() == nil {
		// Each watch has its own context: when the node stops serving, the
		// stream is ended from this side so that the node's graceful stop
		// does not wait on it.
		wctx, cancel := context.WithCancel(ctx)
		stream, err := hc.Watch(wctx, &healthpb.HealthCheckRequest{Service: ServiceName})
		if err == nil {
			for {
				resp, rerr := stream.Recv()
				if rerr != nil {
					err = rerr
					break
				}
				serving := resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
				usable := serving
				if serving {
					if e := n.ensureSpec(ctx); e != nil {
						log.Warn("pool node not usable", "err", e)
						usable = false
					}
				}
				n.hmu.Lock()
				n.serving = serving
				changed := n.healthy.Swap(usable) != usable
				n.hmu.Unlock()
				if changed {
					log.Info("pool node health changed", "healthy", usable, "node_id", n.ID())
				}
				if !usable {
					err = fmt.Errorf("status %s", resp.GetStatus())
					break
				}
				backoff = 100 * time.Millisecond
			}
		}
		cancel()
		n.hmu.Lock()
		n.serving = false
		was := n.healthy.Swap(false)
		n.hmu.Unlock()
		switch {
		case ctx.Err() != nil:
		case was:
			log.Warn("pool node unhealthy", "err", err)
		case time.Since(lastUnreachable) >= unreachableLogEvery:
			lastUnreachable = time.Now()
			log.Warn("pool node not reachable", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		// Capped at a second: a node back from a restart is in use again
		// within about a second (its connection's backoff is capped alike).
		if backoff < time.Second {
			backoff = min(2*backoff, time.Second)
		}
	}
}

// unreachableLogEvery spaces the warnings about a node that cannot be
// reached.
const unreachableLogEvery = 30 * time.Second

// ensureSpec learns the node's id and reconfigures it to the scheduler's spec
// when it has another one (or none yet).
func (n *Node) ensureSpec(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	info, err := n.Client.GetPoolInfo(ctx, &blockpoolv1.GetPoolInfoRequest{})
	if err != nil {
		return err
	}
	id := info.GetNodeId()
	n.nodeID.Store(&id)
	n.capacity.Store(int64(info.GetCapacityBlocks()))
	spec := n.cluster.cfg.Spec
	if poolwire.SpecFromProto(info.GetSpec()) == spec {
		return nil
	}
	// Capacity 0 keeps the node's own: sizing is the node operator's call.
	_, err = n.Client.Reconfigure(ctx, &blockpoolv1.ReconfigureRequest{Spec: poolwire.SpecToProto(&spec)})
	if err == nil {
		n.cluster.log.Info("pool node reconfigured", "pool", n.Addr, "spec", spec.String())
	}
	return err
}

// specClient is a node's client. The node's spec is checked when the node
// turns SERVING (watch), but an operator may reconfigure it later (another
// model tag or geometry: every record dropped); the node then answers Lease,
// LookupAgent and CommitAgent with FAILED_PRECONDITION (model tag differs, or
// no spec) while its health still says SERVING. Those answers are where the
// scheduler learns of it: the node is marked unhealthy at once, so requests
// go elsewhere, and its spec is checked again (specLost).
type specClient struct {
	blockpoolv1.BlockPoolServiceClient
	n *Node
}

func (c specClient) Lease(ctx context.Context, in *blockpoolv1.LeaseRequest, opts ...grpc.CallOption) (*blockpoolv1.LeaseResponse, error) {
	r, err := c.BlockPoolServiceClient.Lease(ctx, in, opts...)
	c.n.checkPrecondition(err)
	return r, err
}

func (c specClient) LookupAgent(ctx context.Context, in *blockpoolv1.LookupAgentRequest, opts ...grpc.CallOption) (*blockpoolv1.LookupAgentResponse, error) {
	r, err := c.BlockPoolServiceClient.LookupAgent(ctx, in, opts...)
	c.n.checkPrecondition(err)
	return r, err
}

func (c specClient) CommitAgent(ctx context.Context, in *blockpoolv1.CommitAgentRequest, opts ...grpc.CallOption) (*blockpoolv1.CommitAgentResponse, error) {
	r, err := c.BlockPoolServiceClient.CommitAgent(ctx, in, opts...)
	c.n.checkPrecondition(err)
	return r, err
}

// checkPrecondition reacts to a FAILED_PRECONDITION of Lease, LookupAgent or
// CommitAgent, which the pool answers only when its spec is not the one the
// request names (or while it closes): a healthy node becomes unhealthy and
// its spec is checked again.
func (n *Node) checkPrecondition(err error) {
	if status.Code(err) != codes.FailedPrecondition || !n.healthy.CompareAndSwap(true, false) {
		return
	}
	n.cluster.log.Warn("pool node refused the scheduler's spec (reconfigured by someone else?); unhealthy until its spec is checked again",
		"pool", n.Addr, "node_id", n.ID(), "err", err)
	n.specLost()
}

// specLost re-checks the node's spec (ensureSpec: restoring the scheduler's
// spec where the pool allows it) until it matches, with backoff, then marks
// the node healthy again if its health watch still sees it serving. A node
// that refuses (a pool with mTLS lets only an admin reconfigure it) stays
// unhealthy, with a warning per try, until an operator restores the spec or
// the node is removed.
func (n *Node) specLost() {
	n.hmu.Lock()
	defer n.hmu.Unlock()
	if n.closed || !n.rechecking.CompareAndSwap(false, true) {
		return
	}
	n.rechecks.Add(1)
	go func() {
		defer n.rechecks.Done()
		defer n.rechecking.Store(false)
		log := n.cluster.log.With("pool", n.Addr)
		backoff := 200 * time.Millisecond
		for n.ctx.Err() == nil {
			err := n.ensureSpec(n.ctx)
			if err == nil {
				n.hmu.Lock()
				healthy := n.serving && !n.healthy.Swap(n.serving)
				n.hmu.Unlock()
				if healthy {
					log.Info("pool node has the scheduler's spec again", "healthy", true, "node_id", n.ID())
				}
				return
			}
			if n.ctx.Err() != nil || n.healthy.Load() {
				return // gone, or the health watch found it usable meanwhile
			}
			log.Warn("pool node not usable: its spec is not the scheduler's and it was not restored", "err", err, "retry_in", backoff)
			select {
			case <-n.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 30*time.Second)
		}
	}()
}

// Lease is a granted lease the node keeps alive until Release.
type Lease struct {
	*blockpoolv1.LeaseResponse
	node   *Node
	holder string // LeaseRequest.holder: the pool binds the lease to it
}

// Lease asks the node for blocks and keeps the lease alive until Release.
func (n *Node) Lease(ctx context.Context, req *blockpoolv1.LeaseRequest) (*Lease, error) {
	if req.Ttl == nil {
		req.Ttl = durationpb(n.cluster.cfg.LeaseTTL)
	}
	resp, err := n.Client.Lease(ctx, req)
	if err != nil {
		return nil, err
	}
	l := &Lease{LeaseResponse: resp, node: n, holder: req.GetHolder()}
	n.keeper.track(l)
	return l, nil
}

// Release ends the lease (commit or abort) and stops renewing it. It uses its
// own short deadline so that a cancelled request still frees its blocks.
func (l *Lease) Release(commit bool) (*blockpoolv1.ReleaseResponse, error) {
	l.node.keeper.untrack(l.GetLeaseId())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return l.node.Client.Release(ctx, &blockpoolv1.ReleaseRequest{LeaseId: l.GetLeaseId(), Epoch: l.GetEpoch(), Commit: commit, Holder: l.holder})
}

// keeper renews a node's leases over one KeepAlive stream, open only while
// there are leases to renew (an idle stream would hold up the node's
// graceful stop).
type keeper struct {
	node   *Node
	mu     sync.Mutex
	leases map[uint64]*Lease
	cancel context.CancelFunc
	done   chan struct{}
	wake   chan struct{}
}

func newKeeper(n *Node) *keeper {
	return &keeper{node: n, leases: map[uint64]*Lease{}, wake: make(chan struct{}, 1)}
}

func (k *keeper) track(l *Lease) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.leases[l.GetLeaseId()] = l
	if k.cancel == nil {
		ctx, cancel := context.WithCancel(context.Background())
		k.cancel, k.done = cancel, make(chan struct{})
		go k.run(ctx, k.done)
	}
	k.poke()
}

func (k *keeper) untrack(id uint64) {
	k.mu.Lock()
	delete(k.leases, id)
	k.mu.Unlock()
	k.poke()
}

// poke wakes the keeper to look at its leases again.
func (k *keeper) poke() {
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

func (k *keeper) stop() {
	k.mu.Lock()
	cancel, done := k.cancel, k.done
	k.cancel = nil
	k.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func (k *keeper) snapshot() []*Lease {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]*Lease, 0, len(k.leases))
	for _, l := range k.leases {
		out = append(out, l)
	}
	return out
}

// markLost stops renewing a lease the node no longer knows (expired, or
// voided by a node restart). The request that holds it finds out when its
// writes are refused, and finishes without updating the agent's record.
func (k *keeper) markLost(id uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.leases[id]; ok {
		delete(k.leases, id)
		k.node.cluster.log.Warn("lease lost", "pool", k.node.Addr, "lease", id)
	}
}

// run sends a renewal for every tracked lease every third of the lease TTL,
// reopening the stream with backoff when it breaks.
func (k *keeper) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	every := k.node.cluster.cfg.LeaseTTL / 3
	if every < 50*time.Millisecond {
		every = 50 * time.Millisecond
	}
	for ctx.Err() == nil {
		if len(k.snapshot()) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-k.wake:
			}
			continue
		}
		err := k.session(ctx, every)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			continue // no leases left: the stream was closed
		}
		k.node.cluster.log.Debug("keepalive stream broke", "pool", k.node.Addr, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(every / 2):
		}
	}
}

func (k *keeper) session(ctx context.Context, every time.Duration) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := k.node.Client.KeepAlive(sctx)
	if err != nil {
		return err
	}
	recvErr := make(chan error, 1)
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			if resp.GetStatus() == blockpoolv1.LeaseStatus_LEASE_STATUS_NOT_FOUND {
				k.markLost(resp.GetLeaseId())
			}
		}
	}()
	t := time.NewTicker(every)
	defer t.Stop()
	closeIdle := func() error {
		_ = stream.CloseSend()
		cancel()
		<-recvErr
		return nil
	}
	for {
		leases := k.snapshot()
		if len(leases) == 0 {
			return closeIdle()
		}
		for _, l := range leases {
			if err := stream.Send(&blockpoolv1.KeepAliveRequest{LeaseId: l.GetLeaseId(), Epoch: l.GetEpoch(), Holder: l.holder}); err != nil {
				cancel()
				<-recvErr
				return err
			}
		}
	wait:
		for {
			select {
			case <-ctx.Done():
				_ = closeIdle()
				return ctx.Err()
			case err := <-recvErr:
				return err
			case <-k.wake:
				// Leases came or went: close the stream once none are
				// left. New leases wait for the next tick (they were just
				// granted a full TTL).
				if len(k.snapshot()) == 0 {
					return closeIdle()
				}
			case <-t.C:
				break wait
			}
		}
	}
}

// ReadBlocks streams the payloads of leased blocks, calling fn for each block
// with its header and whole payload (fn must not keep payload past the call
// unless it owns it: a fresh slice is allocated per block, so it may).
func (l *Lease) ReadBlocks(ctx context.Context, ids []uint32, fn func(h *blockpoolv1.BlockHeader, payload []byte) error) error {
	if len(ids) == 0 {
		return nil
	}
	stream, err := l.node.Client.GetBlocks(ctx, &blockpoolv1.GetBlocksRequest{LeaseId: l.GetLeaseId(), Epoch: l.GetEpoch(), BlockIds: ids, ChunkBytes: poolwire.DefaultChunkBytes, Holder: l.holder})
	if err != nil {
		return err
	}
	var hdr *blockpoolv1.BlockHeader
	var buf []byte
	flush := func() error {
		if hdr == nil {
			return nil
		}
		if uint64(len(buf)) != hdr.GetSize() {
			return fmt.Errorf("%w: block %d: got %d of %d bytes", ErrDataLoss, hdr.GetBlockId(), len(buf), hdr.GetSize())
		}
		err := fn(hdr, buf)
		hdr, buf = nil, nil
		return err
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return flush()
		}
		if err != nil {
			return err
		}
		if h := msg.GetHeader(); h != nil {
			if err := flush(); err != nil {
				return err
			}
			hdr, buf = h, make([]byte, 0, h.GetSize())
		}
		if len(msg.GetData()) > 0 {
			if hdr == nil {
				return fmt.Errorf("%w: block data before its header", ErrDataLoss)
			}
			buf = append(buf, msg.GetData()...)
		}
	}
}

// Writer writes blocks through a lease over one PutBlocks stream.
type Writer struct {
	stream blockpoolv1.BlockPoolService_PutBlocksClient
	first  bool
	lease  *Lease
}

// NewWriter opens a PutBlocks stream for the lease.
func (l *Lease) NewWriter(ctx context.Context) (*Writer, error) {
	s, err := l.node.Client.PutBlocks(ctx)
	if err != nil {
		return nil, err
	}
	return &Writer{stream: s, first: true, lease: l}, nil
}

// Write sends one block: its header, then its payload in chunks.
func (w *Writer) Write(h *blockpoolv1.BlockHeader, payload []byte) error {
	msg := &blockpoolv1.PutBlocksRequest{Header: h}
	if w.first {
		msg.LeaseId, msg.Epoch, msg.Holder = w.lease.GetLeaseId(), w.lease.GetEpoch(), w.lease.holder
		w.first = false
	}
	for off := 0; ; {
		end := min(off+poolwire.DefaultChunkBytes, len(payload))
		msg.Data = payload[off:end]
		if err := w.stream.Send(msg); err != nil {
			return err
		}
		off = end
		if off >= len(payload) {
			return nil
		}
		msg = &blockpoolv1.PutBlocksRequest{}
	}
}

// Close finishes the stream and returns the node's acknowledgement: the
// blocks are durable when it returns without error.
func (w *Writer) Close() (*blockpoolv1.PutBlocksResponse, error) {
	return w.stream.CloseAndRecv()
}

func durationpb(d time.Duration) *durpb.Duration { return durpb.New(d) }
