// Package proctest runs the real binaries as separate processes: `make run`
// restarted on the same data directory, a scheduler killed with SIGKILL
// while it holds a lease on a separate pool process, and a pool node stopping
// promptly under a connected scheduler.
package proctest

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
	"github.com/semantic-kv/semantic/pkg/testproc"
)

var (
	buildOnce sync.Once
	binDir    string
)

// binaries builds bin/scheduler and bin/blockpool once per test run.
func binaries(t *testing.T) (scheduler, blockpool string) {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "semantic-bin-")
		if err != nil {
			t.Fatal(err)
		}
		testproc.Build(t, dir, "./services/scheduler")
		testproc.Build(t, dir, "./services/blockpool")
		binDir = dir
	})
	if binDir == "" {
		t.Fatal("building the binaries failed in an earlier test")
	}
	return filepath.Join(binDir, "scheduler"), filepath.Join(binDir, "blockpool")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func generate(ctx context.Context, c schedulerv1.SchedulerServiceClient, req *schedulerv1.GenerateRequest) (*schedulerv1.Usage, []uint32, error) {
	stream, err := c.Generate(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	var toks []uint32
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil, toks, errors.New("stream ended without usage")
		}
		if err != nil {
			return nil, toks, err
		}
		if msg.GetUsage() != nil {
			return msg.GetUsage(), toks, nil
		}
		toks = append(toks, msg.GetTokenId())
	}
}

// `make run`, the README's first command: two agents generate, the process
// restarts on the same data directory, and both agents' next turns are warm.
func TestMakeRunRestartKeepsAgentsWarm(t *testing.T) {
	root := testproc.RepoRoot(t)
	data := t.TempDir()
	makeRun := func() *testproc.Proc {
		cmd := exec.Command("make", "--no-print-directory", "run", "DATA_DIR="+data, "LISTEN=127.0.0.1:0", "METRICS_LISTEN=", "HTTP_LISTEN=127.0.0.1:0")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "SEMANTIC_LOG_FORMAT=json")
		return testproc.Start(t, cmd)
	}
	p := makeRun()
	c := schedulerv1.NewSchedulerServiceClient(dial(t, p.Addr))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// `make run` serves the HTTP API too.
	if p.HTTPAddr == "" {
		t.Fatalf("make run logged no HTTP API address:\n%s", p.Logs())
	}
	resp, err := http.Get("http://" + p.HTTPAddr + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	models, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(models), `"context_length"`) {
		t.Fatalf("GET /v1/models: %s %s", resp.Status, models)
	}
	prompts := map[string]string{"alice": "You are Alice, a careful planner. ", "bob": "You are Bob, who writes Go. "}
	turn1 := map[string][]uint32{}
	for agent, prompt := range prompts {
		u, toks, err := generate(ctx, c, &schedulerv1.GenerateRequest{AgentId: agent, Prompt: prompt, MaxTokens: 8})
		if err != nil {
			t.Fatalf("%s: %v\n%s", agent, err, p.Logs())
		}
		if u.GetCachedTokens() != 0 {
			t.Fatalf("%s: first turn cached %d", agent, u.GetCachedTokens())
		}
		turn1[agent] = toks
	}
	p.Stop(t, 30*time.Second)

	p = makeRun()
	c = schedulerv1.NewSchedulerServiceClient(dial(t, p.Addr))
	for agent := range prompts {
		u, _, err := generate(ctx, c, &schedulerv1.GenerateRequest{AgentId: agent, Prompt: " Next turn.", Append: true, MaxTokens: 4})
		if err != nil {
			t.Fatalf("%s after restart: %v\n%s", agent, err, p.Logs())
		}
		want := uint32(1 + len(prompts[agent]) + len(turn1[agent])) // BOS + bytes + completion
		if u.GetCachedTokens() != want {
			t.Fatalf("%s after restart: cached %d tokens, want %d", agent, u.GetCachedTokens(), want)
		}
		t.Logf("%s after restart: %d of %d prompt tokens cached, TTFT %.1f ms", agent, u.GetCachedTokens(), u.GetPromptTokens(), u.GetTimeToFirstTokenMs())
	}
	p.Stop(t, 30*time.Second)
}

// A scheduler killed with SIGKILL stops renewing its lease; the separate pool
// process reclaims every block after the TTL.
func TestKilledSchedulerLeasesExpire(t *testing.T) {
	schedBin, poolBin := binaries(t)
	pool := testproc.Start(t, exec.Command(poolBin, "--log-format", "json", "--listen", "127.0.0.1:0", "--metrics-listen", "",
		"--data-dir", t.TempDir(), "--capacity-blocks", "512", "--node-id", "pool-under-test"))
	sched := testproc.Start(t, exec.Command(schedBin, "--log-format", "json", "--listen", "127.0.0.1:0", "--metrics-listen", "", "--http-listen", "",
		"--data-dir", t.TempDir(), "--model", "builtin:small", "--pool", pool.Addr, "--lease-ttl", "2s", "--block-tokens", "16"))
	pc := blockpoolv1.NewBlockPoolServiceClient(dial(t, pool.Addr))
	sc := schedulerv1.NewSchedulerServiceClient(dial(t, sched.Addr))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := sc.Generate(ctx, &schedulerv1.GenerateRequest{AgentId: "doomed", Prompt: "A long story begins here.", MaxTokens: 2000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("%v\n%s", err, sched.Logs())
	}
	info, err := pc.GetPoolInfo(ctx, &blockpoolv1.GetPoolInfoRequest{})
	if err != nil || info.GetLeasedBlocks() == 0 || info.GetActiveLeases() != 1 {
		t.Fatalf("while generating: %v %v", info, err)
	}
	// Keep-alives hold the lease past its TTL while the scheduler lives.
	time.Sleep(3 * time.Second)
	if info, _ = pc.GetPoolInfo(ctx, &blockpoolv1.GetPoolInfoRequest{}); info.GetActiveLeases() != 1 {
		t.Fatalf("lease lapsed while the scheduler was alive: %v\n%s", info, sched.Logs())
	}
	killed := time.Now()
	sched.Kill()
	for {
		info, err = pc.GetPoolInfo(ctx, &blockpoolv1.GetPoolInfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if info.GetActiveLeases() == 0 && info.GetLeasedBlocks() == 0 {
			break
		}
		if time.Since(killed) > 30*time.Second {
			t.Fatalf("pool still holds the dead scheduler's lease: %v", info)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if info.GetFreeBlocks()+info.GetCachedBlocks() != info.GetCapacityBlocks() {
		t.Fatalf("counts do not add up after expiry: %v", info)
	}
	t.Logf("lease reclaimed %v after SIGKILL (TTL 2s)", time.Since(killed).Round(10*time.Millisecond))
	pool.Stop(t, 30*time.Second)
}

// A pool node that a scheduler is connected to (health watch, keep-alives)
// stops gracefully at once when no request is running: the scheduler ends
// its long-lived streams when the node stops serving or has no leases.
func TestPoolStopsPromptlyUnderAnIdleScheduler(t *testing.T) {
	schedBin, poolBin := binaries(t)
	pool := testproc.Start(t, exec.Command(poolBin, "--log-format", "json", "--listen", "127.0.0.1:0", "--metrics-listen", "",
		"--data-dir", t.TempDir(), "--capacity-blocks", "256", "--shutdown-timeout", "8s"))
	sched := testproc.Start(t, exec.Command(schedBin, "--log-format", "json", "--listen", "127.0.0.1:0", "--metrics-listen", "", "--http-listen", "",
		"--data-dir", t.TempDir(), "--model", "builtin:tiny", "--pool", pool.Addr, "--lease-ttl", "3s"))
	sc := schedulerv1.NewSchedulerServiceClient(dial(t, sched.Addr))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, _, err := generate(ctx, sc, &schedulerv1.GenerateRequest{AgentId: "brief", Prompt: "hi", MaxTokens: 4}); err != nil {
		t.Fatalf("%v\n%s", err, sched.Logs())
	}
	began := time.Now()
	pool.Stop(t, 30*time.Second)
	took := time.Since(began)
	if strings.Contains(pool.Logs(), "graceful stop timed out") || took > 6*time.Second {
		t.Fatalf("pool took %v to stop and had to cut calls:\n%s", took, pool.Logs())
	}
	t.Logf("pool stopped in %v", took.Round(time.Millisecond))
	sched.Stop(t, 30*time.Second)
}
