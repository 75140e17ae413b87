package server_test

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/mtls"
	"github.com/semantic-kv/semantic/pkg/mtls/mtlstest"
	"github.com/semantic-kv/semantic/pkg/poolwire"
	pkgserver "github.com/semantic-kv/semantic/pkg/server"
	"github.com/semantic-kv/semantic/services/blockpool/node"
	"github.com/semantic-kv/semantic/services/blockpool/node/nodetest"
	"github.com/semantic-kv/semantic/services/blockpool/pool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// tlsEnv is a block-pool node that verifies client certificates
// (node.Config.RequireIdentity, as the binary with --tls-client-ca) behind
// the project's gRPC server with real TLS on a loopback socket, and client
// certificates made for the test.
type tlsEnv struct {
	t      *testing.T
	n      *node.Node
	addr   string
	caFile string
	certs  map[string][2]string // who -> certificate and key files
}

func newTLSEnv(t *testing.T, configured bool) *tlsEnv {
	t.Helper()
	pki := mtlstest.New(t, "pool-ca")
	dir, caFile := pki.Dir, pki.CAFile
	e := &tlsEnv{t: t, caFile: caFile, certs: map[string][2]string{}}
	issue := func(p *mtlstest.PKI, who, cn string, groups []string, hosts []string) {
		c, k := p.Issue(who, cn, groups, hosts)
		e.certs[who] = [2]string{c, k}
	}
	issue(pki, "pool", "pool-0", nil, []string{"localhost", "127.0.0.1"})
	issue(pki, "sched-a", "sched-a", []string{mtls.GroupScheduler}, nil)
	issue(pki, "sched-b", "sched-b", []string{mtls.GroupScheduler}, nil)
	issue(pki, "admin", "ops", []string{mtls.GroupAdmin}, nil)
	issue(pki, "nogroup", "nobody", nil, nil)
	issue(pki, "othergroup", "web", []string{"semantic:web"}, nil)
	issue(mtlstest.New(t, "other-ca"), "foreign", "sched-a", []string{mtls.GroupScheduler, mtls.GroupAdmin}, nil) // same name, another CA

	cfg := node.Config{DataDir: filepath.Join(dir, "data"), CapacityBlocks: 32, RequireIdentity: true, MaxTTL: time.Minute}
	if configured {
		s := spec
		cfg.Spec = &s
	}
	// The pool's invariants are checked when it stops (nodetest).
	served := nodetest.Serve(t, cfg, pkgserver.Options{
		TLSCertFile: e.certs["pool"][0], TLSKeyFile: e.certs["pool"][1], TLSClientCAFile: caFile})
	e.n, e.addr = served.Node, served.Addr
	return e
}

// conn dials the pool as who ("" for no client certificate).
func (e *tlsEnv) conn(who string) *grpc.ClientConn {
	e.t.Helper()
	cfg, err := mtls.ClientConfig(e.caFile, e.certs[who][0], e.certs[who][1], "localhost")
	if err != nil {
		e.t.Fatal(err)
	}
	conn, err := grpc.NewClient(e.addr, append(poolwire.ClientOptions(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return conn
}

func (e *tlsEnv) client(who string) blockpoolv1.BlockPoolServiceClient {
	return blockpoolv1.NewBlockPoolServiceClient(e.conn(who))
}

// idle checks the invariants and that no lease or leased block is left.
func (e *tlsEnv) idle(start pool.Counts) {
	e.t.Helper()
	if err := e.n.Pool().Check(); err != nil {
		e.t.Fatal("invariant: ", err)
	}
	c := e.n.Pool().Counts()
	if c.ActiveLeases != 0 || c.Leased != 0 || c.Free+c.Cached != c.Capacity || c.Capacity != start.Capacity {
		e.t.Fatalf("counts did not return to idle: start %+v now %+v", start, c)
	}
}

// putAs writes blocks through l presenting holder.
func putAs(ctx context.Context, c blockpoolv1.BlockPoolServiceClient, holder string, l *blockpoolv1.LeaseResponse, blocks map[int]kvspec.Hash) (*blockpoolv1.PutBlocksResponse, error) {
	st, err := c.PutBlocks(ctx)
	if err != nil {
		return nil, err
	}
	first := true
	for i, h := range blocks {
		data := payload(h)
		m := &blockpoolv1.PutBlocksRequest{Data: data, Header: &blockpoolv1.BlockHeader{BlockId: l.Blocks[i].BlockId, Hash: h[:], TokenCount: 4,
			Checksum: kvspec.Checksum(data), Size: uint64(len(data))}}
		if first {
			m.LeaseId, m.Epoch, m.Holder, first = l.LeaseId, l.Epoch, holder, false
		}
		if err := st.Send(m); err != nil {
			break
		}
	}
	return st.CloseAndRecv()
}

// readAs reads blocks through l presenting holder and returns the bytes read.
func readAs(ctx context.Context, c blockpoolv1.BlockPoolServiceClient, holder string, l *blockpoolv1.LeaseResponse, ids ...uint32) (int, error) {
	st, err := c.GetBlocks(ctx, &blockpoolv1.GetBlocksRequest{Holder: holder, LeaseId: l.LeaseId, Epoch: l.Epoch, BlockIds: ids})
	if err != nil {
		return 0, err
	}
	n := 0
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n += len(m.Data)
	}
}

// keepAliveAs renews l once presenting holder.
func keepAliveAs(ctx context.Context, c blockpoolv1.BlockPoolServiceClient, holder string, l *blockpoolv1.LeaseResponse) (*blockpoolv1.KeepAliveResponse, error) {
	ka, err := c.KeepAlive(ctx)
	if err != nil {
		return nil, err
	}
	defer ka.CloseSend()
	// A refused stream may end before the request is sent: its status is
	// what Recv reports.
	_ = ka.Send(&blockpoolv1.KeepAliveRequest{Holder: holder, LeaseId: l.LeaseId, Epoch: l.Epoch})
	return ka.Recv()
}

// flow is a scheduler's whole request: lease, write, read, commit, release.
func flow(t *testing.T, c blockpoolv1.BlockPoolServiceClient, agent string, tokens []uint32) []kvspec.Hash {
	t.Helper()
	ctx := context.Background()
	hs := kvspec.ChainHashes(tokens, spec.TokensPerBlock, tag, "", true)
	l, err := c.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: agent, Count: uint32(len(hs)), BlockHashes: bs(hs), ModelTag: tag})
	if err != nil {
		t.Fatal("Lease: ", err)
	}
	todo := map[int]kvspec.Hash{}
	for i := int(l.Hits); i < len(hs); i++ {
		todo[i] = hs[i]
	}
	if _, err := putAs(ctx, c, "s", l, todo); err != nil {
		t.Fatal("PutBlocks: ", err)
	}
	if n, err := readAs(ctx, c, "s", l, l.Blocks[0].BlockId); err != nil || n != spec.BlockBytes() {
		t.Fatal("GetBlocks: ", n, err)
	}
	if _, err := c.CommitAgent(ctx, &blockpoolv1.CommitAgentRequest{Holder: "s", LeaseId: l.LeaseId, Epoch: l.Epoch, AgentId: agent,
		ModelTag: tag, BlockHashes: bs(hs), TokenIds: tokens}); err != nil {
		t.Fatal("CommitAgent: ", err)
	}
	if _, err := c.Release(ctx, &blockpoolv1.ReleaseRequest{Holder: "s", LeaseId: l.LeaseId, Epoch: l.Epoch, Commit: true}); err != nil {
		t.Fatal("Release: ", err)
	}
	return hs
}

// everyRPC calls each BlockPoolService method once with a plausible request
// and returns the errors by method.
func everyRPC(ctx context.Context, c blockpoolv1.BlockPoolServiceClient) map[string]error {
	l := &blockpoolv1.LeaseResponse{LeaseId: 1, Epoch: 1, Blocks: []*blockpoolv1.LeasedBlock{{BlockId: 0}}}
	errs := map[string]error{}
	_, errs["GetPoolInfo"] = c.GetPoolInfo(ctx, &blockpoolv1.GetPoolInfoRequest{})
	_, errs["Reconfigure"] = c.Reconfigure(ctx, &blockpoolv1.ReconfigureRequest{Spec: poolwire.SpecToProto(&spec)})
	_, errs["Lease"] = c.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: "a", Count: 1, ModelTag: tag})
	_, errs["KeepAlive"] = keepAliveAs(ctx, c, "s", l)
	_, errs["Release"] = c.Release(ctx, &blockpoolv1.ReleaseRequest{Holder: "s", LeaseId: 1, Epoch: 1})
	_, errs["PutBlocks"] = putAs(ctx, c, "s", l, map[int]kvspec.Hash{0: {1}})
	_, errs["GetBlocks"] = readAs(ctx, c, "s", l, 0)
	_, errs["CommitAgent"] = c.CommitAgent(ctx, &blockpoolv1.CommitAgentRequest{AgentId: "a", ModelTag: tag, BlockHashes: [][]byte{make([]byte, 32)}, TokenIds: []uint32{1}})
	_, errs["LookupAgent"] = c.LookupAgent(ctx, &blockpoolv1.LookupAgentRequest{AgentId: "a", ModelTag: tag, TokenIds: []uint32{1}})
	_, errs["ListAgents"] = c.ListAgents(ctx, &blockpoolv1.ListAgentsRequest{})
	_, errs["GetAgent"] = c.GetAgent(ctx, &blockpoolv1.GetAgentRequest{AgentId: "victim"})
	_, errs["DeleteAgent"] = c.DeleteAgent(ctx, &blockpoolv1.DeleteAgentRequest{AgentId: "victim"})
	return errs
}

// Issue #13 (authentication): a pool that verifies client certificates
// refuses every BlockPoolService call without one (UNAUTHENTICATED), with one
// of another CA (never authorized), and with one in no allowed group
// (PERMISSION_DENIED); health stays open; nothing changes.
func TestAuthzRefusesCallersWithoutAllowedCertificate(t *testing.T) {
	e := newTLSEnv(t, true)
	ctx := context.Background()
	flow(t, e.client("sched-a"), "victim", toks(1, 8))
	start := e.n.Pool().Counts()

	// Health and reflection are other services: open without a certificate.
	hc := healthpb.NewHealthClient(e.conn(""))
	if r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "semantic.blockpool.v1.BlockPoolService"}); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatal("health without a certificate:", r, err)
	}
	for who, want := range map[string]codes.Code{"": codes.Unauthenticated, "nogroup": codes.PermissionDenied, "othergroup": codes.PermissionDenied} {
		errs := everyRPC(ctx, e.client(who))
		if len(errs) != len(blockpoolv1.BlockPoolService_ServiceDesc.Methods)+len(blockpoolv1.BlockPoolService_ServiceDesc.Streams) {
			t.Fatalf("everyRPC covers %d methods", len(errs))
		}
		for m, err := range errs {
			if status.Code(err) != want {
				t.Errorf("%q calling %s: %v, want %v", who, m, err, want)
			}
		}
	}
	_, err := e.client("").Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: "a", Count: 1, ModelTag: tag})
	if st, _ := status.FromError(err); st.Code() != codes.Unauthenticated || !strings.Contains(st.Message(), "client certificate") {
		t.Fatal("no certificate:", err)
	}
	// A certificate of another CA, even one naming both groups and the name
	// of a real scheduler, is never authorized (the handshake fails or the
	// call has no identity).
	for m, err := range everyRPC(ctx, e.client("foreign")) {
		if c := status.Code(err); c != codes.Unauthenticated && c != codes.Unavailable {
			t.Errorf("foreign certificate calling %s: %v", m, err)
		}
	}
	if c := e.n.Pool().Counts(); c.Agents != start.Agents || c.Cached != start.Cached || c.Spec == nil || *c.Spec != spec {
		t.Fatalf("refused callers changed the pool: %+v -> %+v", start, c)
	}
	if _, err := e.n.Pool().GetAgent("victim"); err != nil {
		t.Fatal("victim's record:", err)
	}
	e.idle(start)
}

// Issue #13 (authorization): a scheduler certificate runs the whole flow but
// may not reconfigure a configured pool (PERMISSION_DENIED, nothing dropped)
// unless the request changes nothing; an admin certificate may.
func TestAuthzSchedulerFlowAdminReconfigure(t *testing.T) {
	e := newTLSEnv(t, true)
	ctx := context.Background()
	sched := e.client("sched-a")
	flow(t, sched, "agent-1", toks(1, 10))
	flow(t, sched, "agent-1b", toks(1, 10)) // hits the cached blocks
	if r, err := sched.ListAgents(ctx, &blockpoolv1.ListAgentsRequest{}); err != nil || len(r.Agents) != 2 {
		t.Fatal(r, err)
	}
	start := e.n.Pool().Counts()

	other := spec
	other.ModelTag = "another-model"
	for _, r := range []*blockpoolv1.ReconfigureRequest{
		{Spec: poolwire.SpecToProto(&other)},
		{Spec: poolwire.SpecToProto(&spec), CapacityBlocks: 16},
	} {
		_, err := sched.Reconfigure(ctx, r)
		if st, _ := status.FromError(err); st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), "admin certificate") {
			t.Fatal("scheduler reconfigured a configured pool:", err)
		}
	}
	if c := e.n.Pool().Counts(); c.Agents != 2 || c.Cached != start.Cached || c.Capacity != 32 || *c.Spec != spec {
		t.Fatalf("refused reconfigure changed the pool: %+v -> %+v", start, c)
	}
	// A request that changes nothing is allowed (what a scheduler that
	// checks its spec sends).
	for _, capacity := range []uint32{0, 32} {
		if r, err := sched.Reconfigure(ctx, &blockpoolv1.ReconfigureRequest{Spec: poolwire.SpecToProto(&spec), CapacityBlocks: capacity}); err != nil || r.DroppedAgents != 0 {
			t.Fatal(r, err)
		}
	}
	e.idle(start)
	// The admin may.
	r, err := e.client("admin").Reconfigure(ctx, &blockpoolv1.ReconfigureRequest{Spec: poolwire.SpecToProto(&other), CapacityBlocks: 16})
	if err != nil || r.DroppedAgents != 2 || r.Info.CapacityBlocks != 16 {
		t.Fatal(r, err)
	}
	_, err = sched.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: "a", Count: 1, ModelTag: tag})
	wantCode(t, err, codes.FailedPrecondition, "")
	if c := e.n.Pool().Counts(); c.Agents != 0 || c.Free != 16 {
		t.Fatalf("%+v", c)
	}
}

// A scheduler may give an unconfigured pool its first spec.
func TestAuthzSchedulerConfiguresNewPool(t *testing.T) {
	e := newTLSEnv(t, false)
	ctx := context.Background()
	sched := e.client("sched-a")
	if _, err := sched.Reconfigure(ctx, &blockpoolv1.ReconfigureRequest{Spec: poolwire.SpecToProto(&spec)}); err != nil {
		t.Fatal(err)
	}
	flow(t, sched, "a", toks(2, 5))
	other := spec
	other.ModelTag = "another-model"
	_, err := sched.Reconfigure(ctx, &blockpoolv1.ReconfigureRequest{Spec: poolwire.SpecToProto(&other)})
	wantCode(t, err, codes.PermissionDenied, "")
	e.idle(e.n.Pool().Counts())
}

// Issue #13, defect 3 with mTLS: a lease is bound to the certificate that
// took it. Another scheduler certificate presenting the same holder string
// gets PERMISSION_DENIED on every use of the lease and changes nothing; the
// owner's lease keeps working.
func TestAuthzLeaseBoundToIdentity(t *testing.T) {
	e := newTLSEnv(t, true)
	ctx := context.Background()
	owner, thief := e.client("sched-a"), e.client("sched-b")
	hs := flow(t, owner, "victim", toks(1, 8))
	start := e.n.Pool().Counts()
	l, err := owner.Lease(ctx, &blockpoolv1.LeaseRequest{Holder: "s", AgentId: "victim", Count: 3, BlockHashes: bs(hs), ModelTag: tag})
	if err != nil || l.Hits != 2 {
		t.Fatal(l, err)
	}
	held := e.n.Pool().Counts()
	fresh := kvspec.ChainHashes(toks(1, 12), spec.TokensPerBlock, tag, "", true)

	_, err = thief.Release(ctx, &blockpoolv1.ReleaseRequest{Holder: "s", LeaseId: l.LeaseId, Epoch: l.Epoch})
	wantCode(t, err, codes.PermissionDenied, "")
	_, err = keepAliveAs(ctx, thief, "s", l)
	wantCode(t, err, codes.PermissionDenied, "")
	_, err = putAs(ctx, thief, "s", l, map[int]kvspec.Hash{2: fresh[2]})
	wantCode(t, err, codes.PermissionDenied, "")
	n, err := readAs(ctx, thief, "s", l, l.Blocks[0].BlockId)
	wantCode(t, err, codes.PermissionDenied, "")
	if n != 0 {
		t.Fatal("another identity read", n, "bytes")
	}
	_, err = thief.CommitAgent(ctx, &blockpoolv1.CommitAgentRequest{Holder: "s", LeaseId: l.LeaseId, Epoch: l.Epoch, AgentId: "victim",
		ModelTag: tag, BlockHashes: bs(hs), TokenIds: toks(1, 8), ExpectedVersion: 1})
	wantCode(t, err, codes.PermissionDenied, "")
	if c := e.n.Pool().Counts(); c.Leased != held.Leased || c.ActiveLeases != 1 || c.DiskBytes != held.DiskBytes || c.Agents != held.Agents {
		t.Fatalf("refused calls changed the pool: %+v -> %+v", held, c)
	}
	if r, _ := e.n.Pool().GetAgent("victim"); r.Version != 1 {
		t.Fatal("victim's record changed:", r.Version)
	}

	// The owner: renew, read, write, commit, release.
	if r, err := keepAliveAs(ctx, owner, "s", l); err != nil || r.Status != blockpoolv1.LeaseStatus_LEASE_STATUS_ACTIVE {
		t.Fatal(r, err)
	}
	if n, err := readAs(ctx, owner, "s", l, l.Blocks[0].BlockId, l.Blocks[1].BlockId); err != nil || n != 2*spec.BlockBytes() {
		t.Fatal(n, err)
	}
	if _, err := putAs(ctx, owner, "s", l, map[int]kvspec.Hash{2: fresh[2]}); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.CommitAgent(ctx, &blockpoolv1.CommitAgentRequest{Holder: "s", LeaseId: l.LeaseId, Epoch: l.Epoch, AgentId: "victim",
		ModelTag: tag, BlockHashes: bs(fresh), TokenIds: toks(1, 12), ExpectedVersion: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.Release(ctx, &blockpoolv1.ReleaseRequest{Holder: "s", LeaseId: l.LeaseId, Epoch: l.Epoch, Commit: true}); err != nil {
		t.Fatal(err)
	}
	e.idle(start)
}
