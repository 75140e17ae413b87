// Package malformed makes a request whose bytes are not a valid protobuf
// message an INVALID_ARGUMENT, as any other bad input is. grpc-go answers a
// codec's decode error with INTERNAL (a server fault) before any interceptor
// runs, so GuardCodec turns a decode failure into an empty message marked
// with an unknown field that carries the error, and Check — called by the
// servers' interceptors (pkg/server) on every received message — turns the
// mark into the status.
package malformed

import (
	"bytes"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	gproto "google.golang.org/protobuf/proto"
)

// malformedField is the marker's field number: the largest protobuf allows,
// so it collides with no field of ours.
const malformedField = protowire.MaxValidNumber

var malformedPrefix = []byte("semantic: malformed request: ")

// GuardCodec wraps a server codec so that a message that fails to decode
// reaches the interceptors marked as malformed instead of failing in grpc.
func GuardCodec(base encoding.CodecV2) encoding.CodecV2 { return guardCodec{base} }

// DefaultCodec is the proto codec wrapped by GuardCodec: what pkg/server
// installs.
func DefaultCodec() encoding.CodecV2 { return GuardCodec(encoding.GetCodecV2(proto.Name)) }

type guardCodec struct{ base encoding.CodecV2 }

func (c guardCodec) Marshal(v any) (mem.BufferSlice, error) { return c.base.Marshal(v) }
func (c guardCodec) Name() string                           { return c.base.Name() }

func (c guardCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.base.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	m, ok := v.(gproto.Message)
	if !ok {
		return err
	}
	gproto.Reset(m)
	b := protowire.AppendTag(nil, malformedField, protowire.BytesType)
	b = protowire.AppendBytes(b, append(append([]byte(nil), malformedPrefix...), err.Error()...))
	m.ProtoReflect().SetUnknown(b)
	return nil
}

// Check is the INVALID_ARGUMENT status for a message GuardCodec marked, or
// nil for any other.
func Check(v any) error {
	m, ok := v.(gproto.Message)
	if !ok {
		return nil
	}
	u := m.ProtoReflect().GetUnknown()
	num, typ, n := protowire.ConsumeTag(u)
	if n < 0 || num != malformedField || typ != protowire.BytesType {
		return nil
	}
	msg, k := protowire.ConsumeBytes(u[n:])
	if k < 0 || !bytes.HasPrefix(msg, malformedPrefix) {
		return nil
	}
	return status.Error(codes.InvalidArgument, string(msg))
}
