package node_test

import (
	"context"
	"net"
	"testing"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/poolwire"
	"github.com/semantic-kv/semantic/services/blockpool/node"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestEmbedAndReopen opens a node the way an embedding scheduler does, serves
// it, and reopens it on the same data dir: node id stable, epoch bumped.
func TestEmbedAndReopen(t *testing.T) {
	dir := t.TempDir()
	spec := kvspec.Spec{Layers: 1, KVHeads: 1, HeadDim: 4, TokensPerBlock: 4, DType: kvspec.DTypeFloat16, ModelTag: "m"}
	var ids []string
	var epochs []uint64
	for range 2 {
		n, err := node.Open(node.Config{DataDir: dir, CapacityBlocks: 16, Spec: &spec, Version: "v-test"})
		if err != nil {
			t.Fatal(err)
		}
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		gs := grpc.NewServer(poolwire.ServerOptions()...)
		n.Register(gs)
		go gs.Serve(ln)
		conn, _ := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		info, err := blockpoolv1.NewBlockPoolServiceClient(conn).GetPoolInfo(context.Background(), &blockpoolv1.GetPoolInfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if info.CapacityBlocks != 16 || info.Version != "v-test" || info.Spec.ModelTag != "m" {
			t.Fatal(info)
		}
		ids = append(ids, info.NodeId)
		epochs = append(epochs, info.Epoch)
		conn.Close()
		gs.Stop()
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if ids[0] != ids[1] || ids[0] == "" || epochs[1] != epochs[0]+1 {
		t.Fatal(ids, epochs)
	}
	if _, err := node.Open(node.Config{}); err == nil {
		t.Fatal("empty DataDir accepted")
	}
}
