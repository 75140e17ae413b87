package poolwire

import (
	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	"github.com/semantic-kv/semantic/pkg/malformed"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	gproto "google.golang.org/protobuf/proto"
)

// The two codecs below are the proto codec, byte-identical on the wire, with
// one shortcut each for the GetBlocksResponse that carries block payloads.
// They are installed by ServerOptions and ClientOptions.

// serverCodec is the proto codec, except that a GetBlocksResponse with a
// large data field is encoded without copying the payload: the message is the
// marshalled header (if any) and the data field's tag and length, followed by
// the payload slice itself, which grpc writes straight to the transport.
// Payloads are immutable once filled, so holding the slice until it is
// written is safe. The wire bytes are exactly what proto.Marshal would produce.
type serverCodec struct{ base encoding.CodecV2 }

// zeroCopyMin is the smallest chunk worth the special path.
const zeroCopyMin = 4 << 10

func (c serverCodec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(*blockpoolv1.GetBlocksResponse); ok && len(m.Data) >= zeroCopyMin {
		// Field 1 (the block header, if any) then field 2 (the data): the
		// order proto.Marshal uses, so the bytes are the same.
		var prefix []byte
		if m.Header != nil {
			hb, err := gproto.Marshal(m.Header)
			if err != nil {
				return nil, err
			}
			prefix = protowire.AppendTag(make([]byte, 0, len(hb)+16), 1, protowire.BytesType)
			prefix = protowire.AppendBytes(prefix, hb)
		}
		prefix = protowire.AppendTag(prefix, 2, protowire.BytesType)
		prefix = protowire.AppendVarint(prefix, uint64(len(m.Data)))
		return mem.BufferSlice{mem.SliceBuffer(prefix), mem.SliceBuffer(m.Data)}, nil
	}
	return c.base.Marshal(v)
}

func (c serverCodec) Unmarshal(data mem.BufferSlice, v any) error { return c.base.Unmarshal(data, v) }

func (c serverCodec) Name() string { return proto.Name }

// newServerCodec decodes through malformed.GuardCodec, so that a request
// whose bytes are not protobuf is INVALID_ARGUMENT, as on every server.
func newServerCodec() encoding.CodecV2 {
	return serverCodec{base: malformed.GuardCodec(encoding.GetCodecV2(proto.Name))}
}

// clientCodec is the decoding side, for clients: a GetBlocksResponse is
// decoded from one materialized copy of the message with its data field
// aliasing that copy, instead of the proto codec's materialize-then-copy.
// Everything else goes to the proto codec. The result is the same message.
type clientCodec struct{ base encoding.CodecV2 }

func (c clientCodec) Marshal(v any) (mem.BufferSlice, error) { return c.base.Marshal(v) }

func (c clientCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*blockpoolv1.GetBlocksResponse)
	if !ok || data.Len() < zeroCopyMin {
		return c.base.Unmarshal(data, v)
	}
	b := data.Materialize()
	// Fast path only for the exact shapes the server sends: an optional
	// header field, then one data field.
	var hdr *blockpoolv1.BlockHeader
	rest := b
	if num, typ, n := protowire.ConsumeTag(rest); n > 0 && num == 1 && typ == protowire.BytesType {
		hb, m1 := protowire.ConsumeBytes(rest[n:])
		if m1 < 0 {
			return c.base.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, v)
		}
		hdr = &blockpoolv1.BlockHeader{}
		if err := gproto.Unmarshal(hb, hdr); err != nil {
			return err
		}
		rest = rest[n+m1:]
	}
	num, typ, n := protowire.ConsumeTag(rest)
	if n > 0 && num == 2 && typ == protowire.BytesType {
		if payload, m2 := protowire.ConsumeBytes(rest[n:]); m2 > 0 && n+m2 == len(rest) {
			m.Reset()
			m.Header = hdr
			m.Data = payload
			return nil
		}
	}
	return c.base.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, v)
}

func (c clientCodec) Name() string { return proto.Name }

func newClientCodec() encoding.CodecV2 { return clientCodec{base: encoding.GetCodecV2(proto.Name)} }
