// Package client is the Go SDK of semantic's SchedulerService: dial a
// scheduler, generate for an agent as a stream you range over or as one
// collected result, hold a conversation whose context stays warm between
// turns, and list, read and delete agents — with API keys, TLS, retries of
// requests that never started, and errors as values callers can test with
// errors.Is instead of parsing status codes.
//
//	c, err := client.Dial("localhost:50051", client.WithAPIKey(key))
//	res, err := c.Complete(ctx, &client.GenerateRequest{AgentId: "alice", Prompt: "Hello", MaxTokens: 16})
//	fmt.Println(res.Text, res.Usage.GetCachedTokens())
//
// Requests, usage and agents are the API's own messages (type aliases of
// pkg/api/semantic/scheduler/v1), so every field the server knows is here.
package client

import (
	"context"
	"crypto/tls"
	"errors"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
)

// The API's messages, as this package uses them.
type (
	GenerateRequest = schedulerv1.GenerateRequest
	Message         = schedulerv1.ChatMessage
	Usage           = schedulerv1.Usage
	Agent           = schedulerv1.AgentInfo
	ModelInfo       = schedulerv1.ModelInfo
	Stats           = schedulerv1.GetStatsResponse
	FinishReason    = schedulerv1.FinishReason
)

// Client is a connection to one scheduler (or a load balancer in front of
// several). It is safe for concurrent use; Close it when done.
type Client struct {
	conn *grpc.ClientConn
	api  schedulerv1.SchedulerServiceClient
	opts options
}

type options struct {
	apiKey   string
	tls      *tls.Config
	retries  int
	backoff  time.Duration
	maxDelay time.Duration
	dial     []grpc.DialOption
}

// Option configures Dial.
type Option func(*options)

// WithAPIKey sends key with every call (authorization: Bearer). Over a
// plaintext connection the key travels in clear: use WithTLS outside a
// trusted network.
func WithAPIKey(key string) Option { return func(o *options) { o.apiKey = key } }

// WithTLS connects with TLS (nil: the system's roots, the dialed host name).
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) {
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		o.tls = cfg
	}
}

// WithRetry sets how often a request that failed with UNAVAILABLE before
// its first token is tried again (default 3) and the first backoff (default
// 100ms, doubling up to 2s, with jitter). Nothing is retried once a token
// has arrived: the caller has seen part of the answer.
func WithRetry(attempts int, backoff time.Duration) Option {
	return func(o *options) { o.retries, o.backoff = attempts, backoff }
}

// WithDialOptions adds gRPC dial options (interceptors, a custom dialer).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dial = append(o.dial, opts...) }
}

// Dial connects to a scheduler at addr (host:port, or any gRPC target). It
// does not wait for the server: the first call does.
func Dial(addr string, opts ...Option) (*Client, error) {
	o := options{retries: 3, backoff: 100 * time.Millisecond, maxDelay: 2 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	if o.retries < 0 || o.backoff < 0 {
		return nil, errors.New("client: negative retries or backoff")
	}
	creds := insecure.NewCredentials()
	if o.tls != nil {
		creds = credentials.NewTLS(o.tls)
	}
	dial := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if o.apiKey != "" {
		dial = append(dial, grpc.WithPerRPCCredentials(bearer{key: o.apiKey, secure: o.tls != nil}))
	}
	conn, err := grpc.NewClient(addr, append(dial, o.dial...)...)
	if err != nil {
		return nil, err
	}
	return &Client{conn: conn, api: schedulerv1.NewSchedulerServiceClient(conn), opts: o}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Conn is the underlying connection (for the health service, say).
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// bearer is the API key as per-call credentials.
type bearer struct {
	key    string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.key}, nil
}

// RequireTransportSecurity is false so that a key can be used on loopback
// and inside a trusted network without TLS (WithAPIKey says so).
func (b bearer) RequireTransportSecurity() bool { return false }

// Stats reports the scheduler's state: requests running and waiting, batch
// size, decode rate, hit rate, pool nodes.
func (c *Client) Stats(ctx context.Context) (*Stats, error) {
	s, err := c.api.GetStats(ctx, &schedulerv1.GetStatsRequest{})
	return s, wrap(err)
}
