package poolwire

import (
	"testing"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	"github.com/semantic-kv/semantic/pkg/kvspec"
	"google.golang.org/protobuf/proto"
)

// A spec survives the trip through its wire form, every element type included.
func TestSpecRoundTrip(t *testing.T) {
	for _, d := range []kvspec.DType{kvspec.DTypeFloat32, kvspec.DTypeFloat16, kvspec.DTypeQ8_0, kvspec.DTypeQ4_0} {
		s := kvspec.Spec{Layers: 2, KVHeads: 4, HeadDim: 8, TokensPerBlock: 16, DType: d, ModelTag: "m"}
		c := SpecToProto(&s)
		if c.BlockBytes != uint64(s.BlockBytes()) || c.Dtype == blockpoolv1.ElementType_ELEMENT_TYPE_UNSPECIFIED {
			t.Fatalf("%v: wire form %v", d, c)
		}
		if got := SpecFromProto(c); got != s {
			t.Fatalf("round trip: got %v want %v", got, s)
		}
	}
	if SpecToProto(nil) != nil || SpecFromProto(nil) != (kvspec.Spec{}) {
		t.Fatal("nil spec")
	}
	// An element type this side does not know converts to one Validate refuses.
	if s := SpecFromProto(&blockpoolv1.CacheSpec{Dtype: 9}); s.DType != kvspec.DTypeUnspecified {
		t.Fatal("unknown dtype:", s.DType)
	}
}

// FuzzSpecFromProto: any wire spec converts without panicking, and a valid one
// survives a trip back through its wire form.
func FuzzSpecFromProto(f *testing.F) {
	for _, c := range []*blockpoolv1.CacheSpec{
		{Layers: 1, KvHeads: 1, HeadDim: 1, TokensPerBlock: 1, Dtype: 2, ModelTag: "m"},
		{Layers: 1 << 30, Dtype: 7},
		{Layers: 1, KvHeads: 2, HeadDim: 16, TokensPerBlock: 3, Dtype: 3, ModelTag: "m"},
		{Layers: 1, KvHeads: 1, HeadDim: 16, TokensPerBlock: 3, Dtype: 4, ModelTag: "m"},
	} {
		b, _ := proto.Marshal(c)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var c blockpoolv1.CacheSpec
		if proto.Unmarshal(b, &c) != nil {
			return
		}
		s := SpecFromProto(&c)
		if s.Validate() != nil {
			return
		}
		if back := SpecFromProto(SpecToProto(&s)); back != s {
			t.Fatalf("valid spec %v came back as %v", s, back)
		}
	})
}
