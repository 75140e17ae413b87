// Package proctest runs the real binaries as separate processes: `make run`
// restarted on the same data directory, and a scheduler killed with SIGKILL
// while it holds a lease on a separate pool process.
package proctest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
)

// repoRoot is the directory holding go.work.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.work not found above the test directory")
		}
		dir = parent
	}
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds bin/scheduler and bin/blockpool once per test run.
func binaries(t *testing.T) (scheduler, blockpool string) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "semantic-bin-")
		if buildErr != nil {
			return
		}
		for _, b := range []string{"scheduler", "blockpool"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, b), "./services/"+b)
			cmd.Dir = repoRoot(t)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", b, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
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

// proc is a running server process whose JSON logs tell its address.
type proc struct {
	cmd  *exec.Cmd
	addr string
	logs *strings.Builder
	mu   sync.Mutex
	done chan struct{}
}

func (p *proc) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// start runs cmd in its own process group and waits for its "serving" log line.
func start(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, logs: &strings.Builder{}, done: make(chan struct{})}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.logs.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "serving" {
				addr, _ := rec["addr"].(string)
				select {
				case ready <- addr:
				default:
				}
			}
		}
		_ = cmd.Wait()
		close(p.done)
	}()
	select {
	case p.addr = <-ready:
	case <-p.done:
		t.Fatalf("%s exited before serving:\n%s", cmd.Path, p.logText())
	case <-time.After(3 * time.Minute):
		p.signal(syscall.SIGKILL)
		t.Fatalf("%s did not start:\n%s", cmd.Path, p.logText())
	}
	t.Cleanup(func() { p.signal(syscall.SIGKILL); <-p.done })
	return p
}

// signal sends sig to the whole process group (make and its child).
func (p *proc) signal(sig syscall.Signal) { _ = syscall.Kill(-p.cmd.Process.Pid, sig) }

func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("did not stop after SIGTERM:\n%s", p.logText())
	}
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
	root := repoRoot(t)
	data := t.TempDir()
	makeRun := func() *proc {
		cmd := exec.Command("make", "--no-print-directory", "run", "DATA_DIR="+data, "LISTEN=127.0.0.1:0", "METRICS_LISTEN=")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "SEMANTIC_LOG_FORMAT=json")
		return start(t, cmd)
	}
	p := makeRun()
	c := schedulerv1.NewSchedulerServiceClient(dial(t, p.addr))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	prompts := map[string]string{"alice": "You are Alice, a careful planner. ", "bob": "You are Bob, who writes Go. "}
	turn1 := map[string][]uint32{}
	for agent, prompt := range prompts {
		u, toks, err := generate(ctx, c, &schedulerv1.GenerateRequest{AgentId: agent, Prompt: prompt, MaxTokens: 8})
		if err != nil {
			t.Fatalf("%s: %v\n%s", agent, err, p.logText())
		}
		if u.GetCachedTokens() != 0 {
			t.Fatalf("%s: first turn cached %d", agent, u.GetCachedTokens())
		}
		turn1[agent] = toks
	}
	p.stop(t)

	p = makeRun()
	c = schedulerv1.NewSchedulerServiceClient(dial(t, p.addr))
	for agent := range prompts {
		u, _, err := generate(ctx, c, &schedulerv1.GenerateRequest{AgentId: agent, Prompt: " Next turn.", Append: true, MaxTokens: 4})
		if err != nil {
			t.Fatalf("%s after restart: %v\n%s", agent, err, p.logText())
		}
		want := uint32(1 + len(prompts[agent]) + len(turn1[agent])) // BOS + bytes + completion
		if u.GetCachedTokens() != want {
			t.Fatalf("%s after restart: cached %d tokens, want %d", agent, u.GetCachedTokens(), want)
		}
		t.Logf("%s after restart: %d of %d prompt tokens cached, TTFT %.1f ms", agent, u.GetCachedTokens(), u.GetPromptTokens(), u.GetTimeToFirstTokenMs())
	}
	p.stop(t)
}

// A scheduler killed with SIGKILL stops renewing its lease; the separate pool
// process reclaims every block after the TTL.
func TestKilledSchedulerLeasesExpire(t *testing.T) {
	schedBin, poolBin := binaries(t)
	pool := start(t, exec.Command(poolBin, "--log-format", "json", "--listen", "127.0.0.1:0", "--metrics-listen", "",
		"--data-dir", t.TempDir(), "--capacity-blocks", "512", "--node-id", "pool-under-test"))
	sched := start(t, exec.Command(schedBin, "--log-format", "json", "--listen", "127.0.0.1:0", "--metrics-listen", "",
		"--data-dir", t.TempDir(), "--model", "builtin:small", "--pool", pool.addr, "--lease-ttl", "2s", "--block-tokens", "16"))
	pc := blockpoolv1.NewBlockPoolServiceClient(dial(t, pool.addr))
	sc := schedulerv1.NewSchedulerServiceClient(dial(t, sched.addr))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := sc.Generate(ctx, &schedulerv1.GenerateRequest{AgentId: "doomed", Prompt: "A long story begins here.", MaxTokens: 2000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("%v\n%s", err, sched.logText())
	}
	info, err := pc.GetPoolInfo(ctx, &blockpoolv1.GetPoolInfoRequest{})
	if err != nil || info.GetLeasedBlocks() == 0 || info.GetActiveLeases() != 1 {
		t.Fatalf("while generating: %v %v", info, err)
	}
	// Keep-alives hold the lease past its TTL while the scheduler lives.
	time.Sleep(3 * time.Second)
	if info, _ = pc.GetPoolInfo(ctx, &blockpoolv1.GetPoolInfoRequest{}); info.GetActiveLeases() != 1 {
		t.Fatalf("lease lapsed while the scheduler was alive: %v\n%s", info, sched.logText())
	}
	killed := time.Now()
	sched.signal(syscall.SIGKILL)
	<-sched.done
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
	pool.stop(t)
}

// A pool node that a scheduler is connected to (health watch, keep-alives)
// stops gracefully at once when no request is running: the scheduler ends
// its long-lived streams when the node stops serving or has no leases.
func TestPoolStopsPromptlyUnderAnIdleScheduler(t *testing.T) {
	schedBin, poolBin := binaries(t)
	pool := start(t, exec.Command(poolBin, "--log-format", "json", "--listen", "127.0.0.1:0", "--metrics-listen", "",
		"--data-dir", t.TempDir(), "--capacity-blocks", "256", "--shutdown-timeout", "8s"))
	sched := start(t, exec.Command(schedBin, "--log-format", "json", "--listen", "127.0.0.1:0", "--metrics-listen", "",
		"--data-dir", t.TempDir(), "--model", "builtin:tiny", "--pool", pool.addr, "--lease-ttl", "3s"))
	sc := schedulerv1.NewSchedulerServiceClient(dial(t, sched.addr))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, _, err := generate(ctx, sc, &schedulerv1.GenerateRequest{AgentId: "brief", Prompt: "hi", MaxTokens: 4}); err != nil {
		t.Fatalf("%v\n%s", err, sched.logText())
	}
	began := time.Now()
	pool.stop(t)
	took := time.Since(began)
	if strings.Contains(pool.logText(), "graceful stop timed out") || took > 6*time.Second {
		t.Fatalf("pool took %v to stop and had to cut calls:\n%s", took, pool.logText())
	}
	t.Logf("pool stopped in %v", took.Round(time.Millisecond))
	sched.stop(t)
}
