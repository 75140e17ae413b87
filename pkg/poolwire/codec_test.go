package poolwire

import (
	"bytes"
	"testing"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	"google.golang.org/grpc/mem"
	protoapi "google.golang.org/protobuf/proto"
)

// The zero-copy codecs must be byte-identical to the proto codec on the wire.
func TestZeroCopyCodecMatchesProto(t *testing.T) {
	sc, cc := newServerCodec(), newClientCodec()
	for _, n := range []int{0, 10, zeroCopyMin, 1 << 20, 4 << 20} {
		data := bytes.Repeat([]byte{0xab, 0x01}, n/2)
		for _, m := range []*blockpoolv1.GetBlocksResponse{
			{Data: data},
			{Header: &blockpoolv1.BlockHeader{BlockId: 3, Size: 9}, Data: data},
		} {
			want, _ := protoapi.Marshal(m)
			got, err := sc.Marshal(m)
			if err != nil || !bytes.Equal(got.Materialize(), want) {
				t.Fatalf("n=%d header=%v: encoding differs", n, m.Header != nil)
			}
			var back blockpoolv1.GetBlocksResponse
			if err := cc.Unmarshal(mem.BufferSlice{mem.SliceBuffer(want)}, &back); err != nil || !protoapi.Equal(&back, m) {
				t.Fatalf("n=%d: decode differs: %v", n, err)
			}
		}
	}
}
