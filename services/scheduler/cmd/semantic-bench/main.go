// Command semantic-bench measures the scheduler end to end (see package
// bench) and prints Markdown tables for docs/performance.md.
//
//	go run ./services/scheduler/cmd/semantic-bench [--model builtin:small] [--lengths 256,1024,2048,4096] [--reps 3] [--batches 1,4,16,32]
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/semantic-kv/semantic/services/scheduler/bench"
	"github.com/semantic-kv/semantic/services/scheduler/runner"
)

func main() {
	var cfg runner.Config
	fs := flag.NewFlagSet("semantic-bench", flag.ExitOnError)
	cfg.RegisterFlags(fs)
	lengths := fs.String("lengths", "256,1024,2048,4096", "context lengths for the TTFT table (tokens)")
	reps := fs.Int("reps", 3, "measurements per TTFT cell (the median is reported)")
	batches := fs.String("batches", "1,4,16,32", "concurrencies for the throughput table (empty skips it)")
	decodeTokens := fs.Int("decode-tokens", 64, "tokens each request generates in the throughput table")
	promptTokens := fs.Int("prompt-tokens", 64, "tokens of each request's random prompt in the throughput table")
	temperature := fs.Float64("temperature", 0, "sampling temperature of the throughput table's requests (0: greedy)")
	skipOneByOne := fs.Bool("skip-one-by-one", false, "throughput table: run the requests only all at once, not also one at a time")
	skipTTFT := fs.Bool("skip-ttft", false, "skip the TTFT table")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	_ = fs.Parse(os.Args[1:])
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fatal(err)
		}
		defer pprof.StopCPUProfile()
	}

	dir, err := os.MkdirTemp("", "semantic-bench-")
	if err != nil {
		fatal(err)
	}
	defer os.RemoveAll(dir)
	cfg.HotCacheBytes = 4 << 30
	cfg.PoolCapacityBlocks = 8192
	cfg.PoolMemoryBudget = 4 << 30
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	h := &bench.Harness{Dir: dir, Config: cfg, Log: log}
	ctx := context.Background()
	if err := h.StartPool(); err != nil {
		fatal(err)
	}
	if err := h.StartScheduler(ctx); err != nil {
		fatal(err)
	}
	defer h.Close()
	logf := func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
	fmt.Printf("semantic-bench: model %s, block %d tokens, kv %s, %d cores, %s\n\n", cfg.Model, cfg.BlockTokens, cfg.KVDType, runtime.NumCPU(), time.Now().UTC().Format(time.RFC3339))

	if !*skipTTFT {
		rows, err := bench.TTFT(ctx, h, ints(*lengths), *reps, logf)
		if err != nil {
			fatal(err)
		}
		fmt.Println("| context (tokens) | cold TTFT | warm, hot cache | warm, from pool (scheduler restarted) | warm, after pool restart | speed-up hot / pool / pool restart |")
		fmt.Println("|---:|---:|---:|---:|---:|---|")
		for _, r := range rows {
			fmt.Printf("| %d | %s | %s (%d cached) | %s (%d cached) | %s (%d cached) | %.0fx / %.0fx / %.0fx |\n", r.Tokens,
				ms(r.Cold), ms(r.Hot), r.CachedHot, ms(r.Pool), r.CachedPool, ms(r.Disk), r.CachedDisk,
				ratio(r.Cold, r.Hot), ratio(r.Cold, r.Pool), ratio(r.Cold, r.Disk))
		}
		fmt.Println()
	}
	if *batches != "" {
		rows, err := bench.Throughput(ctx, h, bench.ThroughputOptions{Concurrencies: ints(*batches), PromptLen: *promptTokens,
			MaxTokens: *decodeTokens, Temperature: float32(*temperature), SkipOneByOne: *skipOneByOne}, logf)
		if err != nil {
			fatal(err)
		}
		fmt.Println("| concurrent requests | batched tok/s | one at a time tok/s | ratio | decode tok/s per stream |")
		fmt.Println("|---:|---:|---:|---:|---:|")
		for _, r := range rows {
			ratio := "-"
			if r.OneByOne > 0 {
				ratio = fmt.Sprintf("%.2fx", r.Batched/r.OneByOne)
			}
			fmt.Printf("| %d | %.1f | %.1f | %s | %.1f |\n", r.Concurrency, r.Batched, r.OneByOne, ratio, r.Decode)
		}
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func ints(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			fatal(fmt.Errorf("bad number %q", f))
		}
		out = append(out, n)
	}
	return out
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "semantic-bench:", err)
	os.Exit(1)
}
