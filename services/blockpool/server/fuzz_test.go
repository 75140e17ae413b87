package server_test

import (
	"testing"
	"time"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	"github.com/semantic-kv/semantic/pkg/rpcstatus"
	"github.com/semantic-kv/semantic/services/blockpool/server"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// checkInvalid: a validator either accepts or returns INVALID_ARGUMENT naming a field.
func checkInvalid(t *testing.T, err error) {
	if err == nil {
		return
	}
	if status.Code(err) != codes.InvalidArgument || rpcstatus.FieldOf(err) == "" {
		t.Fatalf("validator returned %v (field %q)", err, rpcstatus.FieldOf(err))
	}
}

// FuzzValidateRequests feeds arbitrary bytes, decoded as each request type,
// to the validators: they must never panic and must name a field on refusal.
func FuzzValidateRequests(f *testing.F) {
	seeds := []proto.Message{
		&blockpoolv1.LeaseRequest{Holder: "s", AgentId: "a", Count: 2, BlockHashes: [][]byte{make([]byte, 32)}, ModelTag: "m", Ttl: durationpb.New(time.Second)},
		&blockpoolv1.LeaseRequest{Holder: "s", AgentId: "a b", Count: 0, Ttl: &durationpb.Duration{Seconds: -1, Nanos: 5}},
		&blockpoolv1.BlockHeader{BlockId: 1, Hash: make([]byte, 32), TokenCount: 4, Size: 128, ParentHash: make([]byte, 31)},
		&blockpoolv1.CommitAgentRequest{AgentId: "a", ModelTag: "m", BlockHashes: [][]byte{make([]byte, 32)}, TokenIds: []uint32{1, 2}},
		&blockpoolv1.LookupAgentRequest{AgentId: "x:y.z", TokenIds: []uint32{1}, ModelTag: "m"},
		&blockpoolv1.ReconfigureRequest{Spec: &blockpoolv1.CacheSpec{Layers: 1, KvHeads: 1, HeadDim: 1, TokensPerBlock: 1, Dtype: 2, ModelTag: "m"}, CapacityBlocks: 8},
		&blockpoolv1.GetBlocksRequest{LeaseId: 1, Epoch: 1, BlockIds: []uint32{0, 1}, ChunkBytes: 4096},
		&blockpoolv1.ListAgentsRequest{PageSize: 10, PageToken: "x"},
	}
	for _, m := range seeds {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var lr blockpoolv1.LeaseRequest
		if proto.Unmarshal(b, &lr) == nil {
			_, ttl, err := server.ValidateLease(&lr)
			checkInvalid(t, err)
			if err == nil && lr.Ttl == nil && ttl != 0 {
				t.Fatal("ttl without a request ttl", ttl)
			}
		}
		var h blockpoolv1.BlockHeader
		if proto.Unmarshal(b, &h) == nil {
			_, _, err := server.ValidateHeader(&h)
			checkInvalid(t, err)
		}
		var cr blockpoolv1.CommitAgentRequest
		if proto.Unmarshal(b, &cr) == nil {
			hs, err := server.ValidateCommit(&cr)
			checkInvalid(t, err)
			if err == nil && len(hs) != len(cr.BlockHashes) {
				t.Fatal("hash count")
			}
		}
		var lk blockpoolv1.LookupAgentRequest
		if proto.Unmarshal(b, &lk) == nil {
			checkInvalid(t, server.ValidateLookup(&lk))
		}
		var rr blockpoolv1.ReconfigureRequest
		if proto.Unmarshal(b, &rr) == nil {
			_, err := server.ValidateReconfigure(&rr)
			checkInvalid(t, err)
		}
		var gr blockpoolv1.GetBlocksRequest
		if proto.Unmarshal(b, &gr) == nil {
			chunk, err := server.ValidateGetBlocks(&gr, 64)
			checkInvalid(t, err)
			if err == nil && (chunk <= 0 || len(gr.BlockIds) > 64) {
				t.Fatal("accepted chunk", chunk, "for", len(gr.BlockIds), "ids")
			}
		}
		var la blockpoolv1.ListAgentsRequest
		if proto.Unmarshal(b, &la) == nil {
			n, err := server.ValidateListAgents(&la)
			checkInvalid(t, err)
			if err == nil && (n < 1 || n > 1000) {
				t.Fatal("accepted page size", n)
			}
		}
	})
}
