package server_test

import (
	"errors"
	"testing"
	"time"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/poolwire"
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
		&blockpoolv1.ListAgentsRequest{PageSize: 10, PageToken: poolwire.AgentPageToken("t/a"), Tenant: "t"},
		&blockpoolv1.CommitAgentRequest{LeaseId: 7, Holder: "s", AgentId: "t/a", ModelTag: "m", BlockHashes: [][]byte{make([]byte, 32)}, TokenIds: []uint32{1, 2}, TenantMaxAgents: 3},
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
			if err == nil && cr.LeaseId != 0 && cr.Holder == "" {
				t.Fatal("commit through a lease without a holder")
			}
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
			n, after, err := server.ValidateListAgents(&la)
			checkInvalid(t, err)
			if err == nil && (n < 1 || n > 1000) {
				t.Fatal("accepted page size", n)
			}
			if err == nil && (la.PageToken == "") != (after == "") {
				t.Fatalf("page token %q read as %q", la.PageToken, after)
			}
		}
	})
}

// FuzzValidatorBounds covers what FuzzValidateRequests leaves out: the agent
// key check of GetAgent and DeleteAgent (poolwire.CheckAgentKey, as the
// server uses it), the tenant of ListAgents, the spec a Reconfigure passes on
// (kvspec.Spec.Validate, whose field the pool reports as spec.<field>), the
// header of every PutBlocks message, GetBlocks against other capacities, and
// that whatever a validator accepts is inside the contract's bounds.
func FuzzValidatorBounds(f *testing.F) {
	seeds := []proto.Message{
		&blockpoolv1.GetAgentRequest{AgentId: "a.b:c-d_e"},
		&blockpoolv1.GetAgentRequest{AgentId: "tenant-1/a"},
		&blockpoolv1.GetAgentRequest{AgentId: "BAD/a"},
		&blockpoolv1.ListAgentsRequest{Tenant: "Not A Tenant"},
		&blockpoolv1.DeleteAgentRequest{AgentId: "bad id", ExpectedVersion: 3},
		&blockpoolv1.ReconfigureRequest{Spec: &blockpoolv1.CacheSpec{Layers: 256, KvHeads: 256, HeadDim: 1024, TokensPerBlock: 1024, Dtype: 1, ModelTag: "m"}},
		&blockpoolv1.ReconfigureRequest{Spec: &blockpoolv1.CacheSpec{Layers: 1, KvHeads: 1, HeadDim: 1, TokensPerBlock: 1, Dtype: 99, ModelTag: ""}, CapacityBlocks: 1<<24 + 1},
		&blockpoolv1.PutBlocksRequest{LeaseId: 1, Epoch: 1, Holder: "s", Header: &blockpoolv1.BlockHeader{Hash: make([]byte, 32), ParentHash: make([]byte, 32)}, Data: []byte{1, 2}},
		&blockpoolv1.PutBlocksRequest{Header: &blockpoolv1.BlockHeader{Hash: make([]byte, 33)}},
		&blockpoolv1.GetBlocksRequest{BlockIds: make([]uint32, 65), ChunkBytes: 1023},
		&blockpoolv1.LeaseRequest{Holder: string(make([]byte, 129)), AgentId: "a", Count: 1, ModelTag: "m"},
		&blockpoolv1.CommitAgentRequest{AgentId: "a", ModelTag: "m", CacheSalt: string(make([]byte, 129))},
		&blockpoolv1.LookupAgentRequest{AgentId: "a", ModelTag: string(make([]byte, 129))},
	}
	for _, m := range seeds {
		b, _ := proto.Marshal(m)
		f.Add(b, uint32(64))
	}
	f.Add([]byte{}, uint32(0))
	f.Fuzz(func(t *testing.T, b []byte, capacity uint32) {
		var ga blockpoolv1.GetAgentRequest
		if proto.Unmarshal(b, &ga) == nil {
			err := poolwire.CheckAgentKey("agent_id", ga.AgentId)
			checkInvalid(t, err)
			_, agent := poolwire.SplitAgentKey(ga.AgentId)
			if err == nil && (len(agent) == 0 || len(agent) > rpcstatus.MaxAgentIDLen || len(ga.AgentId) > poolwire.MaxTenantLen+1+rpcstatus.MaxAgentIDLen) {
				t.Fatalf("accepted agent id %q", ga.AgentId)
			}
		}
		var da blockpoolv1.DeleteAgentRequest
		if proto.Unmarshal(b, &da) == nil {
			checkInvalid(t, poolwire.CheckAgentKey("agent_id", da.AgentId))
		}
		var la blockpoolv1.ListAgentsRequest
		if proto.Unmarshal(b, &la) == nil {
			if _, _, err := server.ValidateListAgents(&la); err == nil && la.Tenant != "" && !poolwire.ValidTenant(la.Tenant) {
				t.Fatalf("accepted tenant %q", la.Tenant)
			}
		}
		var rr blockpoolv1.ReconfigureRequest
		if proto.Unmarshal(b, &rr) == nil {
			sp, err := server.ValidateReconfigure(&rr)
			checkInvalid(t, err)
			if err == nil {
				if rr.CapacityBlocks > poolwire.MaxCapacityBlocks {
					t.Fatal("accepted capacity", rr.CapacityBlocks)
				}
				// The pool's check of the spec: nil, or a field to name.
				if err := sp.Validate(); err != nil {
					var fe *kvspec.FieldError
					if !errors.As(err, &fe) || fe.Field == "" {
						t.Fatalf("spec refused without a field: %v", err)
					}
				} else if sp.BlockBytes() <= 0 || sp.BlockBytes() > kvspec.MaxBlockBytes || sp.ModelTag == "" {
					t.Fatalf("spec accepted out of bounds: %+v (%d bytes a block)", sp, sp.BlockBytes())
				}
			}
		}
		var pr blockpoolv1.PutBlocksRequest
		if proto.Unmarshal(b, &pr) == nil && pr.Header != nil {
			_, _, err := server.ValidateHeader(pr.Header)
			checkInvalid(t, err)
			if err == nil && (len(pr.Header.Hash) != kvspec.HashSize || len(pr.Header.ParentHash) != 0 && len(pr.Header.ParentHash) != kvspec.HashSize) {
				t.Fatal("accepted header hashes of", len(pr.Header.Hash), len(pr.Header.ParentHash))
			}
		}
		var gr blockpoolv1.GetBlocksRequest
		if proto.Unmarshal(b, &gr) == nil {
			chunk, err := server.ValidateGetBlocks(&gr, int(capacity%(1<<20)))
			checkInvalid(t, err)
			if err == nil && (chunk < poolwire.MinChunkBytes || chunk > poolwire.MaxChunkBytes || len(gr.BlockIds) == 0 || len(gr.BlockIds) > int(capacity%(1<<20))) {
				t.Fatal("accepted chunk", chunk, "for", len(gr.BlockIds), "ids of capacity", capacity)
			}
		}
		var lr blockpoolv1.LeaseRequest
		if proto.Unmarshal(b, &lr) == nil {
			hs, _, err := server.ValidateLease(&lr)
			if err == nil && (lr.Holder == "" || len(lr.Holder) > poolwire.MaxHolderLen || !poolwire.ValidAgentKey(lr.AgentId) ||
				lr.ModelTag == "" || len(lr.ModelTag) > kvspec.MaxModelTagLen || len(hs) != len(lr.BlockHashes)) {
				t.Fatalf("accepted lease request %v", &lr)
			}
		}
		var cr blockpoolv1.CommitAgentRequest
		if proto.Unmarshal(b, &cr) == nil {
			if _, err := server.ValidateCommit(&cr); err == nil && (len(cr.CacheSalt) > poolwire.MaxSaltLen || len(cr.TokenIds) > poolwire.MaxTokens ||
				!poolwire.ValidAgentKey(cr.AgentId) || cr.ModelTag == "" || len(cr.ModelTag) > kvspec.MaxModelTagLen) {
				t.Fatalf("accepted commit request %v", &cr)
			}
		}
		var lk blockpoolv1.LookupAgentRequest
		if proto.Unmarshal(b, &lk) == nil {
			if err := server.ValidateLookup(&lk); err == nil && (len(lk.CacheSalt) > poolwire.MaxSaltLen || len(lk.TokenIds) > poolwire.MaxTokens ||
				!poolwire.ValidAgentKey(lk.AgentId) || lk.ModelTag == "" || len(lk.ModelTag) > kvspec.MaxModelTagLen) {
				t.Fatalf("accepted lookup request %v", &lk)
			}
		}
	})
}
