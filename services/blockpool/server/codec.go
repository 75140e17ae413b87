package server

import (
	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// zeroCopyCodec is the proto codec, except that a GetBlocksResponse that
// carries only data is encoded without copying the payload: the message is a
// 1-6 byte field header followed by the payload slice itself, which grpc
// writes straight to the transport. Payloads are immutable once filled, so
// holding the slice until it is written is safe. The wire bytes are exactly
// what proto.Marshal would produce.
type zeroCopyCodec struct{ base encoding.CodecV2 }

// zeroCopyMin is the smallest chunk worth the special path.
const zeroCopyMin = 4 << 10

func (c zeroCopyCodec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(*blockpoolv1.GetBlocksResponse); ok && m.Header == nil && len(m.Data) >= zeroCopyMin {
		hdr := protowire.AppendTag(make([]byte, 0, 8), 2, protowire.BytesType)
		hdr = protowire.AppendVarint(hdr, uint64(len(m.Data)))
		return mem.BufferSlice{mem.SliceBuffer(hdr), mem.SliceBuffer(m.Data)}, nil
	}
	return c.base.Marshal(v)
}

func (c zeroCopyCodec) Unmarshal(data mem.BufferSlice, v any) error { return c.base.Unmarshal(data, v) }

func (c zeroCopyCodec) Name() string { return proto.Name }

func newCodec() encoding.CodecV2 { return zeroCopyCodec{base: encoding.GetCodecV2(proto.Name)} }

// Unmarshal side, for clients: a GetBlocksResponse is decoded from one
// materialized copy of the message with its data field aliasing that copy,
// instead of the proto codec's materialize-then-copy. Everything else goes to
// the proto codec. The result is the same message.
type clientCodec struct{ base encoding.CodecV2 }

func (c clientCodec) Marshal(v any) (mem.BufferSlice, error) { return c.base.Marshal(v) }

func (c clientCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*blockpoolv1.GetBlocksResponse)
	if !ok || data.Len() < zeroCopyMin {
		return c.base.Unmarshal(data, v)
	}
	b := data.Materialize()
	// Fast path only for the exact shape the server sends: one data field.
	num, typ, n := protowire.ConsumeTag(b)
	if n > 0 && num == 2 && typ == protowire.BytesType {
		if payload, m2 := protowire.ConsumeBytes(b[n:]); m2 > 0 && n+m2 == len(b) {
			m.Reset()
			m.Data = payload
			return nil
		}
	}
	return c.base.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, v)
}

func (c clientCodec) Name() string { return proto.Name }
