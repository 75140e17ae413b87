// Package bench measures the scheduler end to end, as a client sees it: time
// to first token for agents that come back with long contexts (cold, warm
// from the scheduler's hot cache, warm from a pool node after a scheduler
// restart, warm after a pool restart) and aggregate decode throughput under
// continuous batching against one request at a time. Every number comes with
// its baseline from the same run.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
	"github.com/semantic-kv/semantic/pkg/poolwire"
	"github.com/semantic-kv/semantic/pkg/server"
	"github.com/semantic-kv/semantic/services/blockpool/node"
	"github.com/semantic-kv/semantic/services/scheduler/runner"
)

// Harness runs a pool node and a scheduler in this process, each behind its
// own loopback gRPC server, so that either can be restarted alone.
type Harness struct {
	Dir    string
	Config runner.Config
	Log    *slog.Logger

	poolNode *node.Node
	poolSrv  *grpc.Server
	poolAddr string

	sched    *runner.Scheduler
	schedSrv *grpc.Server
	conn     *grpc.ClientConn
	Client   schedulerv1.SchedulerServiceClient
}

// StartPool opens the pool node on Dir/pool and serves it on loopback.
func (h *Harness) StartPool() error {
	n, err := node.Open(node.Config{DataDir: filepath.Join(h.Dir, "pool"), NodeID: "bench-pool",
		CapacityBlocks: h.Config.PoolCapacityBlocks, MemoryBudgetBytes: h.Config.PoolMemoryBudget,
		DiskBudgetBytes: h.Config.PoolDiskBudget, Logger: h.Log})
	if err != nil {
		return err
	}
	srv, hs, err := server.New(server.Options{Logger: h.Log, Extra: poolwire.ServerOptions()})
	if err != nil {
		return err
	}
	n.Register(srv)
	server.MarkServing(srv, hs)
	addr := h.poolAddr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	h.poolNode, h.poolSrv, h.poolAddr = n, srv, ln.Addr().String()
	go func() { _ = srv.Serve(ln) }()
	return nil
}

// StopPool stops the pool node (its memory tier is lost; disk stays).
func (h *Harness) StopPool() error {
	h.poolSrv.Stop()
	return h.poolNode.Close()
}

// StartScheduler starts a scheduler against the pool node.
func (h *Harness) StartScheduler(ctx context.Context) error {
	cfg := h.Config
	cfg.Pool = h.poolAddr
	s, err := runner.Start(ctx, cfg, runner.Deps{DataDir: filepath.Join(h.Dir, "scheduler"), Logger: h.Log})
	if err != nil {
		return err
	}
	srv, _, err := server.New(server.Options{Logger: h.Log})
	if err != nil {
		return err
	}
	s.Register(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() { _ = srv.Serve(ln) }()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	h.sched, h.schedSrv, h.conn, h.Client = s, srv, conn, schedulerv1.NewSchedulerServiceClient(conn)
	return nil
}

// StopScheduler stops the scheduler (its hot cache is lost).
func (h *Harness) StopScheduler() error {
	h.conn.Close()
	h.schedSrv.Stop()
	return h.sched.Close(context.Background())
}

// Close stops both.
func (h *Harness) Close() error {
	return errors.Join(h.StopScheduler(), h.StopPool())
}

// Turn is one measured request.
type Turn struct {
	TTFT          time.Duration // first token as seen by the client
	Total         time.Duration
	Cached, Hot   int
	Prompt, Count int
}

// Generate runs one request and measures it from the client.
func Generate(ctx context.Context, c schedulerv1.SchedulerServiceClient, req *schedulerv1.GenerateRequest) (Turn, error) {
	start := time.Now()
	stream, err := c.Generate(ctx, req)
	if err != nil {
		return Turn{}, err
	}
	var t Turn
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return t, errors.New("stream ended without usage")
		}
		if err != nil {
			return t, err
		}
		if u := msg.GetUsage(); u != nil {
			t.Total = time.Since(start)
			t.Cached, t.Hot, t.Prompt = int(u.GetCachedTokens()), int(u.GetHotCachedTokens()), int(u.GetPromptTokens())
			return t, nil
		}
		if t.Count == 0 {
			t.TTFT = time.Since(start)
		}
		t.Count++
	}
}

// Context makes a random context of n tokens for the byte-level built-in
// models: BOS, then byte tokens.
func Context(r *rand.Rand, n int) []uint32 {
	out := make([]uint32, n)
	out[0] = 1
	for i := 1; i < n; i++ {
		out[i] = uint32(3 + r.IntN(256))
	}
	return out
}

// TTFTRow is the result for one context length.
type TTFTRow struct {
	Tokens                 int
	Cold, Hot, Pool, Disk  time.Duration
	CachedHot, CachedPool  int
	CachedDisk, CachedCold int
}

// TTFT measures time to first token for agents returning with each context
// length: the agent sent all but the last 16 tokens before; the request
// resends the whole context, as chat clients do. Each mode is measured reps
// times on fresh random contexts and the median is reported.
func TTFT(ctx context.Context, h *Harness, lengths []int, reps int, logf func(string, ...any)) ([]TTFTRow, error) {
	r := rand.New(rand.NewPCG(42, 4242))
	type sample struct{ cold, hot, pool, disk Turn }
	results := map[int][]sample{}
	type pending struct {
		L     int
		ctx   []uint32
		salt  string
		agent string
	}
	var todo []pending
	for rep := 0; rep < reps; rep++ {
		for _, L := range lengths {
			todo = append(todo, pending{L: L, ctx: Context(r, L), salt: fmt.Sprintf("bench-%d-%d", L, rep), agent: fmt.Sprintf("agent-%d-%d", L, rep)})
		}
	}
	samples := make([]sample, len(todo))
	gen := func(agent, salt string, prompt []uint32) (Turn, error) {
		return Generate(ctx, h.Client, &schedulerv1.GenerateRequest{AgentId: agent, PromptTokenIds: prompt, MaxTokens: 1, CacheSalt: salt})
	}
	// Each phase says what it does and how far it has come (stderr), so a
	// long run on a big model is visibly alive.
	phase := func(n int, what string) func() {
		start := time.Now()
		logf("TTFT phase %d/3: %s (%d contexts)", n, what, len(todo))
		return func() { logf("TTFT phase %d/3 done in %v", n, time.Since(start).Round(time.Millisecond)) }
	}
	// Phase 1, on a running scheduler: cold, then seed, then warm from the hot cache.
	end := phase(1, "cold, then warm from the scheduler's hot cache")
	for i, p := range todo {
		var err error
		if samples[i].cold, err = gen("cold-"+p.agent, "cold-"+p.salt, p.ctx); err != nil {
			return nil, err
		}
		if _, err = gen(p.agent, p.salt, p.ctx[:p.L-16]); err != nil {
			return nil, err
		}
		if samples[i].hot, err = gen(p.agent, p.salt, p.ctx); err != nil {
			return nil, err
		}
		logf("  [%d/%d] L=%d cold %v (cached %d), hot %v (cached %d)", i+1, len(todo), p.L, samples[i].cold.TTFT, samples[i].cold.Cached, samples[i].hot.TTFT, samples[i].hot.Cached)
	}
	end()
	// Phase 2: a new scheduler (empty hot cache), same pool node.
	end = phase(2, "warm from the pool node (scheduler restarted)")
	if err := h.StopScheduler(); err != nil {
		return nil, err
	}
	if err := h.StartScheduler(ctx); err != nil {
		return nil, err
	}
	for i, p := range todo {
		var err error
		if samples[i].pool, err = gen("pool-"+p.agent, p.salt, p.ctx); err != nil {
			return nil, err
		}
		logf("  [%d/%d] L=%d from pool %v (cached %d)", i+1, len(todo), p.L, samples[i].pool.TTFT, samples[i].pool.Cached)
	}
	end()
	// Phase 3: pool and scheduler restarted: blocks come from disk.
	end = phase(3, "warm from the pool's disk (pool and scheduler restarted)")
	if err := h.StopScheduler(); err != nil {
		return nil, err
	}
	if err := h.StopPool(); err != nil {
		return nil, err
	}
	if err := h.StartPool(); err != nil {
		return nil, err
	}
	if err := h.StartScheduler(ctx); err != nil {
		return nil, err
	}
	for i, p := range todo {
		var err error
		if samples[i].disk, err = gen("disk-"+p.agent, p.salt, p.ctx); err != nil {
			return nil, err
		}
		logf("  [%d/%d] L=%d after pool restart %v (cached %d)", i+1, len(todo), p.L, samples[i].disk.TTFT, samples[i].disk.Cached)
		results[p.L] = append(results[p.L], samples[i])
	}
	end()
	var rows []TTFTRow
	for _, L := range lengths {
		ss := results[L]
		pick := func(f func(sample) Turn) Turn {
			ts := make([]Turn, len(ss))
			for i, s := range ss {
				ts[i] = f(s)
			}
			sort.Slice(ts, func(i, j int) bool { return ts[i].TTFT < ts[j].TTFT })
			return ts[len(ts)/2]
		}
		cold, hot := pick(func(s sample) Turn { return s.cold }), pick(func(s sample) Turn { return s.hot })
		pool, disk := pick(func(s sample) Turn { return s.pool }), pick(func(s sample) Turn { return s.disk })
		rows = append(rows, TTFTRow{Tokens: L, Cold: cold.TTFT, Hot: hot.TTFT, Pool: pool.TTFT, Disk: disk.TTFT,
			CachedCold: cold.Cached, CachedHot: hot.Cached, CachedPool: pool.Cached, CachedDisk: disk.Cached})
	}
	return rows, nil
}

// ThroughputRow is aggregate decode throughput at one concurrency.
type ThroughputRow struct {
	Concurrency int
	// Generated tokens per second of wall time, from the first request sent
	// to the last stream ended (prompt prefill included), all at once and
	// (unless skipped) the same requests one at a time.
	Batched, OneByOne         float64
	BatchedWall, OneByOneWall time.Duration
	// Decode is the median over the concurrent requests of each one's
	// tokens after the first per second after its first token: the rate a
	// single stream sees, prefill excluded (what engines report as their
	// "eval" rate).
	Decode float64
}

// ThroughputOptions choose the throughput table's requests.
type ThroughputOptions struct {
	Concurrencies []int
	PromptLen     int // tokens of each request's random prompt
	MaxTokens     int // tokens each request generates
	Temperature   float32
	// SkipOneByOne leaves out the one-at-a-time run (OneByOne stays 0).
	SkipOneByOne bool
}

// Throughput runs n agents generating MaxTokens each, all at once, and the
// same n requests one at a time, for each n of o.Concurrencies.
func Throughput(ctx context.Context, h *Harness, o ThroughputOptions, logf func(string, ...any)) ([]ThroughputRow, error) {
	r := rand.New(rand.NewPCG(7, 77))
	var rows []ThroughputRow
	logf("throughput: %d concurrencies, %d tokens per request, temperature %g", len(o.Concurrencies), o.MaxTokens, o.Temperature)
	for k, n := range o.Concurrencies {
		prompts := make([][]uint32, n)
		for i := range prompts {
			prompts[i] = Context(r, o.PromptLen)
		}
		run := func(tag string, concurrent bool) (time.Duration, []Turn, error) {
			start := time.Now()
			turns := make([]Turn, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := 0; i < n; i++ {
				one := func(i int) {
					id := fmt.Sprintf("tp-%s-%d-%d", tag, n, i)
					turns[i], errs[i] = Generate(ctx, h.Client, &schedulerv1.GenerateRequest{
						AgentId: id, CacheSalt: id, PromptTokenIds: prompts[i], MaxTokens: uint32(o.MaxTokens),
						Temperature: o.Temperature, Seed: uint64(i + 1)})
				}
				if concurrent {
					wg.Add(1)
					go func(i int) { defer wg.Done(); one(i) }(i)
				} else {
					one(i)
				}
			}
			wg.Wait()
			return time.Since(start), turns, errors.Join(errs...)
		}
		row := ThroughputRow{Concurrency: n}
		if !o.SkipOneByOne {
			wall, turns, err := run("seq", false)
			if err != nil {
				return nil, err
			}
			row.OneByOne, row.OneByOneWall = float64(generated(turns))/wall.Seconds(), wall
		}
		wall, turns, err := run("bat", true)
		if err != nil {
			return nil, err
		}
		row.Batched, row.BatchedWall = float64(generated(turns))/wall.Seconds(), wall
		row.Decode = medianDecode(turns)
		logf("  [%d/%d] n=%d batched %.1f tok/s (%.1f tok/s per stream), one by one %.1f tok/s", k+1, len(o.Concurrencies), n, row.Batched, row.Decode, row.OneByOne)
		rows = append(rows, row)
	}
	return rows, nil
}

func generated(turns []Turn) int {
	total := 0
	for _, t := range turns {
		total += t.Count
	}
	return total
}

// medianDecode is the median of each turn's decode rate: tokens after the
// first over the time after the first.
func medianDecode(turns []Turn) float64 {
	var rates []float64
	for _, t := range turns {
		if d := t.Total - t.TTFT; t.Count > 1 && d > 0 {
			rates = append(rates, float64(t.Count-1)/d.Seconds())
		}
	}
	if len(rates) == 0 {
		return 0
	}
	slices.Sort(rates)
	return rates[len(rates)/2]
}
