// Package runner assembles a scheduler from its configuration: the model and
// engine, the batch loop, the pool nodes (or an embedded pool), and the gRPC
// service. The binary's main.go and the end-to-end tests both build a
// scheduler through it, so they run the same thing.
package runner

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
	"github.com/semantic-kv/semantic/pkg/engine"
	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/model"
	"github.com/semantic-kv/semantic/pkg/mtls"
	"github.com/semantic-kv/semantic/services/blockpool/node"
	"github.com/semantic-kv/semantic/services/scheduler/auth"
	"github.com/semantic-kv/semantic/services/scheduler/batch"
	"github.com/semantic-kv/semantic/services/scheduler/embedded"
	"github.com/semantic-kv/semantic/services/scheduler/httpapi"
	"github.com/semantic-kv/semantic/services/scheduler/poolclient"
	"github.com/semantic-kv/semantic/services/scheduler/service"
)

// Config is the scheduler's own configuration (flags).
type Config struct {
	Model         string
	Pool          string
	BlockTokens   int
	KVDType       string
	MaxBatch      int
	StepTokens    int
	MaxQueue      int
	MaxAgentQueue int
	HotCacheBytes int64
	LeaseTTL      time.Duration
	Workers       int
	HolderID      string
	// GCPercent is the Go collector's target (debug.SetGCPercent) unless
	// the GOGC environment variable is set; 0 leaves the runtime's.
	GCPercent int

	// The embedded pool's settings (used when Pool is empty).
	PoolCapacityBlocks int
	PoolMemoryBudget   int64
	PoolDiskBudget     int64

	// HTTPListen is the address of the OpenAI- and Anthropic-compatible
	// HTTP API ("" disables it); HTTPMaxBodyBytes bounds its request bodies.
	HTTPListen       string
	HTTPMaxBodyBytes int64

	// VLLMMetrics exports the vLLM-compatible metric set on /metrics.
	VLLMMetrics bool

	// AuthKeys is the API keys file (auth.File); empty runs open: every
	// caller is auth.Open. RequireAuth refuses to start without one.
	AuthKeys    string
	RequireAuth bool

	// PoolTLSCA turns on TLS to remote pool nodes, verified against this CA;
	// PoolTLSCert and PoolTLSKey are the client certificate the nodes
	// authorize (group semantic:scheduler); PoolTLSServerName overrides
	// the name verified in the nodes' certificates.
	PoolTLSCA         string
	PoolTLSCert       string
	PoolTLSKey        string
	PoolTLSServerName string
}

// RegisterFlags binds the flags of Config.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Model, "model", "builtin:small", "model: builtin:small, builtin:tiny, gguf:PATH (or PATH.gguf), or llama2c:PATH[,tokenizer=PATH]")
	fs.StringVar(&c.Pool, "pool", "", "pool nodes: comma-separated host:port or dns:///name:port; empty runs an embedded pool in --data-dir")
	fs.IntVar(&c.BlockTokens, "block-tokens", 32, "token positions per KV block")
	fs.StringVar(&c.KVDType, "kv-dtype", "float32", "element type of stored KV blocks: "+kvspec.DTypeNames()+" (the engine keeps its KV pages in this type, encoding K and V as it writes them, so warm == cold)")
	fs.IntVar(&c.MaxBatch, "max-batch", 32, "most sequences in one engine step")
	fs.IntVar(&c.StepTokens, "step-tokens", 256, "token budget of one engine step (decode tokens first, then prefill chunks)")
	fs.IntVar(&c.MaxQueue, "max-queue", 256, "most requests admitted at once (waiting or running); more get RESOURCE_EXHAUSTED")
	fs.IntVar(&c.MaxAgentQueue, "max-agent-queue", 8, "most requests of one agent at once (running or waiting for it); more get RESOURCE_EXHAUSTED for that agent only")
	fs.Int64Var(&c.HotCacheBytes, "hot-cache-bytes", 1<<30, "byte budget of the local hot cache of KV blocks")
	fs.DurationVar(&c.LeaseTTL, "lease-ttl", 30*time.Second, "time to live of block leases (renewed every third of it)")
	fs.IntVar(&c.Workers, "workers", 0, "engine worker goroutines (0: one per core)")
	fs.StringVar(&c.HolderID, "holder-id", "", "name of this scheduler on its leases (default: host name and pid)")
	fs.IntVar(&c.PoolCapacityBlocks, "pool-capacity-blocks", 4096, "embedded pool: capacity in blocks")
	// The embedded pool shares this process with the hot cache, which already
	// holds every block this scheduler computed or read: a memory tier would
	// only keep a second copy (2049 tokens of a 110M model: 151 MB). Its
	// blocks are in files (read through the OS page cache) whatever this is.
	// KV pages are most of the live heap, and Go's default target (GOGC
	// 100) lets garbage grow to as much again before a collection: 50
	// bounds peak memory closer to what is in use, for about 1% of CPU
	// (docs/performance.md, "Peak memory").
	fs.IntVar(&c.GCPercent, "gc-percent", 50, "Go GC target percent (debug.SetGCPercent) unless GOGC is set; 0 keeps Go's default")
	fs.Int64Var(&c.PoolMemoryBudget, "pool-memory-budget", -1, "embedded pool: bytes of block payloads also kept in memory (-1: none, the hot cache in this process holds them; 0: unlimited)")
	fs.Int64Var(&c.PoolDiskBudget, "pool-disk-budget", 16<<30, "embedded pool: bytes of block files on disk")
	fs.StringVar(&c.HTTPListen, "http-listen", ":8080", "OpenAI- and Anthropic-compatible HTTP API listen address (empty disables it)")
	fs.Int64Var(&c.HTTPMaxBodyBytes, "http-max-body-bytes", httpapi.DefaultMaxBodyBytes, "largest HTTP API request body, in bytes")
	fs.BoolVar(&c.VLLMMetrics, "vllm-metrics", true, "also export the metrics vLLM dashboards and the Gateway API Inference Extension read (vllm:num_requests_waiting, ...) on /metrics")
	fs.StringVar(&c.AuthKeys, "auth-keys", "", "API keys file (JSON, keys stored hashed; see semantic-auth), reloaded on SIGHUP: callers send authorization: Bearer <key> (gRPC metadata; HTTP also x-api-key). Empty: no authentication, every caller is an admin of the empty tenant")
	fs.BoolVar(&c.RequireAuth, "require-auth", false, "refuse to start without --auth-keys")
	fs.StringVar(&c.PoolTLSCA, "pool-tls-ca", "", "CA certificate file (PEM) that remote pool nodes' certificates are verified against; setting it dials the pool with TLS")
	fs.StringVar(&c.PoolTLSCert, "pool-tls-cert", "", "client certificate file (PEM) presented to pool nodes (mutual TLS; the pool authorizes its Organization, e.g. semantic:scheduler); needs --pool-tls-key and --pool-tls-ca")
	fs.StringVar(&c.PoolTLSKey, "pool-tls-key", "", "private key file (PEM) of --pool-tls-cert")
	fs.StringVar(&c.PoolTLSServerName, "pool-tls-server-name", "", "name verified in pool nodes' certificates (default: the host of each --pool address); needs --pool-tls-ca")
}

// poolDialOptions are the dial options the --pool-tls-* flags ask for (none
// without --pool-tls-ca), refusing combinations that cannot be meant.
func (c *Config) poolDialOptions() ([]grpc.DialOption, error) {
	switch {
	case c.PoolTLSCA == "" && (c.PoolTLSCert != "" || c.PoolTLSKey != "" || c.PoolTLSServerName != ""):
		return nil, errors.New("--pool-tls-cert, --pool-tls-key and --pool-tls-server-name need --pool-tls-ca (the CA that pool nodes' certificates are verified against)")
	case (c.PoolTLSCert == "") != (c.PoolTLSKey == ""):
		return nil, errors.New("--pool-tls-cert and --pool-tls-key go together: the client certificate and its private key")
	case c.PoolTLSCA == "":
		return nil, nil
	case strings.TrimSpace(c.Pool) == "":
		return nil, errors.New("--pool-tls-ca is set but --pool is empty: the embedded pool is not dialed (give --pool, or drop the --pool-tls-* flags)")
	}
	tc, err := mtls.ClientConfig(c.PoolTLSCA, c.PoolTLSCert, c.PoolTLSKey, c.PoolTLSServerName)
	if err != nil {
		return nil, fmt.Errorf("--pool-tls-*: %w", err)
	}
	return []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tc))}, nil
}

// Deps are what the process provides.
type Deps struct {
	DataDir        string
	Logger         *slog.Logger
	MeterProvider  metric.MeterProvider
	TracerProvider trace.TracerProvider
	// Prometheus is the /metrics registry, for the vLLM-compatible metrics
	// (nil: none).
	Prometheus prometheus.Registerer
	// PoolDialOptions are used to dial remote pool nodes (TLS...).
	PoolDialOptions []grpc.DialOption
	Version         string
}

// Scheduler is an assembled scheduler.
type Scheduler struct {
	Model    *model.Model
	Engine   *engine.Engine
	Loop     *batch.Loop
	Pool     *poolclient.Cluster
	Embedded *embedded.Pool
	Service  *service.Server
	// HTTP serves the HTTP API; nil when Config.HTTPListen is empty.
	HTTP *httpapi.Server
	// Auth authenticates callers of both APIs (open without --auth-keys).
	// The gRPC server must run Auth.GRPC on every call: app.Runtime's
	// Authenticate, or Auth.ServerOptions for a server built by hand.
	Auth *auth.Authenticator
}

// Start builds and starts a scheduler.
func Start(ctx context.Context, cfg Config, deps Deps) (_ *Scheduler, err error) {
	log := deps.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Scheduler{}
	defer func() {
		if err != nil {
			_ = s.Close(context.Background())
		}
	}()
	if cfg.GCPercent != 0 && os.Getenv("GOGC") == "" {
		debug.SetGCPercent(cfg.GCPercent)
	}
	poolDial, err := cfg.poolDialOptions()
	if err != nil {
		return nil, err
	}
	switch {
	case cfg.AuthKeys == "" && cfg.RequireAuth:
		return nil, errors.New("--require-auth is set but --auth-keys is not: refusing to serve without API keys")
	case cfg.AuthKeys == "":
		log.Warn("no --auth-keys: authentication is off, every caller of the gRPC and HTTP APIs is an admin with access to every agent; do not expose the ports beyond a trusted network (--require-auth refuses this)")
	}
	if s.Auth, err = auth.New(cfg.AuthKeys, log.With("component", "auth")); err != nil {
		return nil, fmt.Errorf("--auth-keys: %w", err)
	}
	if !s.Auth.IsOpen() {
		log.Info("API keys loaded; reloaded on SIGHUP", "path", cfg.AuthKeys, "keys", s.Auth.Len())
		s.Auth.Watch()
	}
	start := time.Now()
	if s.Model, err = model.LoadWith(cfg.Model, model.LoadOptions{Log: log.With("model", cfg.Model)}); err != nil {
		return nil, err
	}
	mi := s.Model.Info
	log.Info("model loaded", "model", s.Model.Name, "format", mi.Format, "architecture", mi.Architecture,
		"params", s.Model.NumParams(), "weight_types", strings.Join(mi.WeightTypes, ","), "context", s.Model.Config.SeqLen,
		"vocab", s.Model.Config.Vocab, "tokenizer", mi.Tokenizer, "chat_template", mi.ChatTemplate, "tag", s.Model.Tag,
		"took", time.Since(start).Round(time.Millisecond))
	dtype, err := parseDType(cfg.KVDType)
	if err != nil {
		return nil, err
	}
	// The engine's pages are of the stored type: K and V are encoded into
	// them as they are written, and the pool keeps those very bytes.
	if s.Engine, err = engine.New(s.Model, engine.Options{Workers: cfg.Workers, TokensPerBlock: cfg.BlockTokens, KVDType: dtype}); err != nil {
		// q8_0/q4_0 need K rows that are whole 32-groups: name the flag.
		if fe := (*kvspec.FieldError)(nil); errors.As(err, &fe) && fe.Field == "dtype" {
			return nil, fmt.Errorf("--kv-dtype %s: %w", dtype, err)
		}
		return nil, err
	}
	spec := s.Engine.Spec()
	spec.DType = s.Engine.KVDType()
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	holder := cfg.HolderID
	if holder == "" {
		host, _ := os.Hostname()
		holder = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	// The flags' credentials come after the caller's options, so they win.
	pcfg := poolclient.Config{Spec: spec, LeaseTTL: cfg.LeaseTTL, Logger: log, DialOptions: append(slices.Clip(deps.PoolDialOptions), poolDial...)}
	if strings.TrimSpace(cfg.Pool) == "" {
		s.Embedded, err = embedded.Start(node.Config{
			DataDir: filepath.Join(deps.DataDir, "pool"), CapacityBlocks: cfg.PoolCapacityBlocks,
			MemoryBudgetBytes: cfg.PoolMemoryBudget, DiskBudgetBytes: cfg.PoolDiskBudget,
			Spec: &spec, Logger: log.With("component", "embedded-pool"), MeterProvider: deps.MeterProvider, Version: deps.Version,
		})
		if err != nil {
			return nil, err
		}
		pcfg.Targets = []string{embedded.Target}
		pcfg.Conns = map[string]grpc.ClientConnInterface{embedded.Target: s.Embedded.Conn}
	} else {
		for _, t := range strings.Split(cfg.Pool, ",") {
			if t = strings.TrimSpace(t); t != "" {
				pcfg.Targets = append(pcfg.Targets, t)
			}
		}
	}
	if s.Pool, err = poolclient.New(pcfg); err != nil {
		return nil, err
	}
	// Wait briefly for a pool node so the first requests do not fail; a
	// cluster whose nodes come up later is fine too (requests get
	// UNAVAILABLE until one is healthy).
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	if werr := s.Pool.WaitHealthy(wctx); werr != nil {
		log.Warn("no healthy pool node yet", "targets", pcfg.Targets)
	}
	cancel()
	s.Loop = batch.New(batch.Config{Engine: s.Engine, MaxBatch: cfg.MaxBatch, StepTokens: cfg.StepTokens, Logger: log})
	scfg := service.Config{
		Model: s.Model, Engine: s.Engine, Loop: s.Loop, Pool: s.Pool.PoolNodes(), Spec: spec, HolderID: holder,
		MaxQueue: cfg.MaxQueue, MaxAgentQueue: cfg.MaxAgentQueue, HotCacheBytes: cfg.HotCacheBytes, Logger: log, MeterProvider: deps.MeterProvider,
		TracerProvider: deps.TracerProvider, RequirePrincipal: !s.Auth.IsOpen(),
	}
	if cfg.VLLMMetrics {
		scfg.Prometheus = deps.Prometheus
	}
	s.Service, err = service.New(scfg)
	if err != nil {
		return nil, err
	}
	if cfg.HTTPListen != "" {
		if err := s.serveHTTP(cfg, deps, log); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// serveHTTP starts the HTTP API over the service (no gRPC hop).
func (s *Scheduler) serveHTTP(cfg Config, deps Deps, log *slog.Logger) error {
	m := httpapi.Model{ID: s.Model.Name, ContextLength: s.Model.Config.SeqLen, Created: time.Now()}
	if tok := s.Model.Tokenizer; tok != nil {
		// The tokenizer speaks int ids, the service uint32 (service/tokens.go).
		m.TokenBytes = func(id uint32) []byte { return tok.TokenBytes(int(id)) }
	}
	h, err := httpapi.New(httpapi.Config{
		Service: s.Service, Model: m, Logger: log.With("component", "http"),
		MeterProvider: deps.MeterProvider, TracerProvider: deps.TracerProvider, MaxBodyBytes: cfg.HTTPMaxBodyBytes,
		Authorize: s.Auth.HTTP,
	})
	if err != nil {
		return err
	}
	if s.HTTP, err = httpapi.Listen(cfg.HTTPListen, h); err != nil {
		return err
	}
	log.Info("http api listening", "addr", s.HTTP.Addr().String(), "model", m.ID)
	return nil
}

// Drain stops the HTTP API taking requests and lets those in flight finish
// until ctx ends, then cancels the rest (see httpapi.Server.Shutdown). The
// binary runs it alongside gRPC's graceful stop; Close runs it too.
func (s *Scheduler) Drain(ctx context.Context) error {
	if s.HTTP == nil {
		return nil
	}
	return s.HTTP.Shutdown(ctx)
}

// Register adds the SchedulerService to a gRPC server.
func (s *Scheduler) Register(r grpc.ServiceRegistrar) {
	schedulerv1.RegisterSchedulerServiceServer(r, s.Service)
}

// Close stops the HTTP API (Drain), the loop (failing what still runs), the
// pool clients, the embedded pool, and the keys file's SIGHUP watch.
func (s *Scheduler) Close(ctx context.Context) error {
	derr := s.Drain(ctx)
	if s.Loop != nil {
		s.Loop.Close()
	}
	if s.Pool != nil {
		s.Pool.Close()
	}
	var err error
	if s.Embedded != nil {
		err = s.Embedded.Close(ctx)
	}
	if s.Auth != nil {
		s.Auth.Close()
	}
	if s.Model != nil {
		// Unmaps a GGUF file; nothing reads the weights once the loop is closed.
		err = errors.Join(err, s.Model.Close())
	}
	return errors.Join(derr, err)
}

// parseDType reads --kv-dtype; empty means float32.
func parseDType(s string) (kvspec.DType, error) {
	if s == "" {
		return kvspec.DTypeFloat32, nil
	}
	d, err := kvspec.ParseDType(s)
	if err != nil {
		return 0, fmt.Errorf("--kv-dtype: %w", err)
	}
	return d, nil
}
