package poolwire

import "google.golang.org/grpc"

// maxMsgBytes admits one MaxChunkBytes data chunk plus its block header.
const maxMsgBytes = MaxChunkBytes + 64<<10

// ServerOptions are the grpc.Server options a pool node is tuned for: a
// receive limit that admits a MaxChunkBytes data chunk plus its header, HTTP/2
// windows and buffers sized for megabyte blocks, and the zero-copy codec for
// GetBlocks data (byte-identical on the wire to the proto codec).
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxMsgBytes),
		grpc.InitialWindowSize(8 << 20), grpc.InitialConnWindowSize(16 << 20),
		grpc.WriteBufferSize(1 << 20), grpc.ReadBufferSize(1 << 20),
		grpc.ForceServerCodecV2(newServerCodec()),
	}
}

// ClientOptions are the matching dial options for a client that reads and
// writes blocks: windows, buffers and message limits for MaxChunkBytes chunks,
// and the codec that decodes GetBlocks data without a second copy. They carry
// no credentials: the caller adds its own.
func ClientOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithInitialWindowSize(8 << 20), grpc.WithInitialConnWindowSize(16 << 20),
		grpc.WithReadBufferSize(1 << 20), grpc.WithWriteBufferSize(1 << 20),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsgBytes), grpc.MaxCallSendMsgSize(maxMsgBytes),
			grpc.ForceCodecV2(newClientCodec())),
	}
}
