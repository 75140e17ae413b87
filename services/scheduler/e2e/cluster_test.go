//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
	"github.com/semantic-kv/semantic/pkg/tokenizer"
)

// Bounds of every wait (the whole test is meant to take a few minutes).
const (
	testBudget     = 12 * time.Minute // everything before cleanup
	upTimeout      = 4 * time.Minute  // compose up, including the health-gated start order
	readyTimeout   = 90 * time.Second // a service healthy and seen by the scheduler
	composeTimeout = 2 * time.Minute  // stop, start, restart
	downTimeout    = 3 * time.Minute
	rpcTimeout     = 60 * time.Second // one Generate
	maxTokens      = 8
)

var poolServices = []string{"pool1", "pool2", "pool3"}

// nodeIDOf is the --node-id compose gives each pool service.
func nodeIDOf(svc string) string { return "pool-" + strings.TrimPrefix(svc, "pool") }

func serviceOf(nodeID string) string { return "pool" + strings.TrimPrefix(nodeID, "pool-") }

func TestCluster(t *testing.T) {
	c := newCluster(t)
	// Ctrl-C or SIGTERM ends the test early, but still through the cleanups
	// (compose down -v); so does the overall budget, which is shorter than
	// `go test -timeout` (whose panic would skip them).
	sctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(sctx, testBudget)
	defer cancel()
	m := &measure{start: time.Now()}
	t.Cleanup(func() { m.print(t) }) // runs before the cluster's down (cleanups run last-in first-out)

	// ---- up ----------------------------------------------------------------
	ph := m.phase("up (compose up -d, all healthy)")
	if _, err := c.compose(ctx, upTimeout, "up", "-d"); err != nil {
		t.Fatalf("compose up: %v", err)
	}
	for _, svc := range append([]string{"scheduler"}, poolServices...) {
		if err := c.waitContainerHealthy(ctx, svc); err != nil {
			t.Fatalf("%s: %v", svc, err)
		}
	}
	s1 := c.dialScheduler(ctx, "scheduler")
	if err := c.waitPoolView(ctx, s1, poolServices, nil); err != nil {
		t.Fatalf("scheduler's view of the pool: %v", err)
	}
	ph.end()
	c.checkNodeIDs(ctx)
	ph = m.phase("trust boundary (keys, tenants, mTLS)")
	c.checkTrust(ctx, s1)
	ph.end()
	if t.Failed() {
		t.FailNow()
	}

	agents := newAgents(envInt("SEMANTIC_E2E_AGENTS", 20))

	// ---- first requests: cold, spread over the nodes ------------------------
	ph = m.phase("first request of each agent (cold)")
	m.round(ctx, t, ph, s1, agents, func(a *agent, u *schedulerv1.Usage) error {
		a.home = u.GetPoolNode()
		if u.GetCachedTokens() != 0 {
			return fmt.Errorf("cached_tokens = %d on a fresh cluster, want 0", u.GetCachedTokens())
		}
		if !strings.HasPrefix(a.home, "pool-") {
			return fmt.Errorf("pool_node = %q, want a node id pool-N", a.home)
		}
		return nil
	})
	ph.end()
	if t.Failed() {
		t.FailNow()
	}
	perNode := map[string][]*agent{}
	for _, a := range agents {
		perNode[a.home] = append(perNode[a.home], a)
	}
	var spread []string
	for _, svc := range poolServices {
		spread = append(spread, fmt.Sprintf("%s=%d", nodeIDOf(svc), len(perNode[nodeIDOf(svc)])))
	}
	m.note("home nodes (rendezvous): %s", strings.Join(spread, " "))
	if len(perNode) < 2 {
		t.Errorf("all %d agents on one node (%v): rendezvous hashing should spread them", len(agents), spread)
	}

	ph = m.phase("second request of each agent (warm)")
	m.round(ctx, t, ph, s1, agents, expectWarmAtHome(false))
	ph.end()

	// ---- one pool node down -------------------------------------------------
	// The node with the most agents (with 20 agents, every node has some).
	victim := nodeIDOf(poolServices[0])
	for _, svc := range poolServices {
		if len(perNode[nodeIDOf(svc)]) > len(perNode[victim]) {
			victim = nodeIDOf(svc)
		}
	}
	victimSvc := serviceOf(victim)
	m.note("node stopped: %s (%s), home of %d agents", victimSvc, victim, len(perNode[victim]))

	// Background load while the node goes down: other agents keep sending
	// requests; none may fail because of the stop.
	churn := startChurn(ctx, s1, 6)
	ph = m.phase("stop " + victimSvc)
	time.Sleep(500 * time.Millisecond) // let the churn run on every node first
	if _, err := c.compose(ctx, composeTimeout, "stop", victimSvc); err != nil {
		t.Fatalf("compose stop %s: %v", victimSvc, err)
	}
	if err := c.waitPoolView(ctx, s1, nil, []string{victim}); err != nil {
		t.Errorf("the scheduler still counts %s as healthy: %v", victim, err)
	}
	ph.end()
	time.Sleep(500 * time.Millisecond)
	cr := churn.stop()
	m.note("background load during the stop: %d requests, %d failed, %d on %s", cr.requests, len(cr.failures), cr.onVictim(victim), victim)
	m.mu.Lock()
	m.background += cr.requests
	m.failures += len(cr.failures)
	m.mu.Unlock()
	for _, f := range cr.failures {
		t.Errorf("request failed while %s stopped: %s", victimSvc, f)
	}

	ph = m.phase(victimSvc + " down: every agent once")
	m.round(ctx, t, ph, s1, agents, func(a *agent, u *schedulerv1.Usage) error {
		if a.home != victim {
			return expectWarmAtHome(false)(a, u)
		}
		// Its home is down: it runs cold on the next node of its order.
		if u.GetPoolNode() == victim || u.GetPoolNode() == "" {
			return fmt.Errorf("pool_node = %q while %s is down", u.GetPoolNode(), victim)
		}
		if u.GetCachedTokens() != 0 {
			return fmt.Errorf("cached_tokens = %d on fallback node %s, want 0 (cold)", u.GetCachedTokens(), u.GetPoolNode())
		}
		a.fallback = u.GetPoolNode()
		return nil
	})
	ph.end()

	// ---- the node is back ---------------------------------------------------
	ph = m.phase("start " + victimSvc + " (until the scheduler uses it)")
	if _, err := c.compose(ctx, composeTimeout, "start", victimSvc); err != nil {
		t.Fatalf("compose start %s: %v", victimSvc, err)
	}
	if err := c.waitContainerHealthy(ctx, victimSvc); err != nil {
		t.Fatalf("%s: %v", victimSvc, err)
	}
	m.note("%s container healthy %.1fs after start", victimSvc, time.Since(ph.t0).Seconds())
	if err := c.waitPoolView(ctx, s1, []string{victimSvc}, nil); err != nil {
		t.Fatalf("scheduler does not use %s again: %v", victim, err)
	}
	ph.end()

	ph = m.phase(victimSvc + " back: every agent once (warm at home)")
	m.round(ctx, t, ph, s1, agents, expectWarmAtHome(false))
	ph.end()

	// ---- scheduler restart: warm from the pool -----------------------------
	ph = m.phase("restart scheduler")
	s1.close()
	if _, err := c.compose(ctx, composeTimeout, "restart", "scheduler"); err != nil {
		t.Fatalf("compose restart scheduler: %v", err)
	}
	if err := c.waitContainerHealthy(ctx, "scheduler"); err != nil {
		t.Fatalf("scheduler: %v", err)
	}
	s1 = c.dialScheduler(ctx, "scheduler")
	if err := c.waitPoolView(ctx, s1, poolServices, nil); err != nil {
		t.Fatalf("restarted scheduler's view of the pool: %v", err)
	}
	ph.end()

	ph = m.phase("after scheduler restart: every agent once (warm from the pool)")
	m.round(ctx, t, ph, s1, agents, expectWarmAtHome(true))
	ph.end()

	// ---- a second scheduler shares the nodes -------------------------------
	ph = m.phase("start scheduler2 (profile)")
	if _, err := c.compose(ctx, upTimeout, "--profile", "scheduler2", "up", "-d", "--no-recreate", "scheduler2"); err != nil {
		t.Fatalf("compose up scheduler2: %v", err)
	}
	if err := c.waitContainerHealthy(ctx, "scheduler2"); err != nil {
		t.Fatalf("scheduler2: %v", err)
	}
	s2 := c.dialScheduler(ctx, "scheduler2")
	if err := c.waitPoolView(ctx, s2, poolServices, nil); err != nil {
		t.Fatalf("scheduler2's view of the pool: %v", err)
	}
	ph.end()

	ph = m.phase("agents move scheduler -> scheduler2 (warm, never seen there)")
	m.round(ctx, t, ph, s2, agents, expectWarmAtHome(true))
	ph.end()
	ph = m.phase("agents move back scheduler2 -> scheduler (warm)")
	m.round(ctx, t, ph, s1, agents, expectWarmAtHome(false))
	ph.end()

	for name, s := range map[string]*sched{"scheduler": s1, "scheduler2": s2} {
		st, err := s.client.GetStats(ctx, &schedulerv1.GetStatsRequest{})
		if err != nil {
			t.Errorf("%s GetStats: %v", name, err)
			continue
		}
		m.note("%s stats: completed=%d failed=%d prefix_hit_rate=%.2f prefill_tokens=%d cached_tokens=%d",
			name, st.GetRequestsCompleted(), st.GetRequestsFailed(), st.GetPrefixHitRate(), st.GetPrefillTokens(), st.GetCachedTokens())
		if st.GetRequestsFailed() != 0 {
			t.Errorf("%s counts %d failed requests", name, st.GetRequestsFailed())
		}
	}
	s1.close()
	s2.close()
}

// expectWarmAtHome checks a request ran on the agent's home node and reused
// its cache; fresh says the scheduler has never seen the agent (new process),
// so nothing may come from its hot cache: the warm tokens came from the pool.
func expectWarmAtHome(fresh bool) func(a *agent, u *schedulerv1.Usage) error {
	return func(a *agent, u *schedulerv1.Usage) error {
		if u.GetPoolNode() != a.home {
			return fmt.Errorf("pool_node = %q, want its home %q", u.GetPoolNode(), a.home)
		}
		if u.GetCachedTokens() == 0 {
			return fmt.Errorf("cached_tokens = 0 of %d prompt tokens on its home %s, want > 0 (warm)", u.GetPromptTokens(), a.home)
		}
		if fresh && u.GetHotCachedTokens() != 0 {
			return fmt.Errorf("hot_cached_tokens = %d from a scheduler that never saw the agent", u.GetHotCachedTokens())
		}
		return nil
	}
}

// ---- agents ------------------------------------------------------------------

// agent is a conversation: its whole context is sent with each request, as
// token ids (context so far + the last completion + a new turn).
type agent struct {
	id       string
	context  []uint32 // what the last successful request sent, plus its completion
	turn     int
	home     string         // pool_node of its first request
	fallback string         // pool_node while its home was down
	stored   map[string]int // by node: tokens of the agent's last request there (prompt + completion)
}

var byteTok = tokenizer.NewByte()

func newAgents(n int) []*agent {
	out := make([]*agent, n)
	for i := range out {
		out[i] = &agent{id: fmt.Sprintf("e2e-agent-%02d", i), stored: map[string]int{}}
	}
	return out
}

func encode(s string, bos bool) []uint32 {
	ids := byteTok.Encode(s, bos)
	out := make([]uint32, len(ids))
	for i, id := range ids {
		out[i] = uint32(id)
	}
	return out
}

// next is the prompt of the agent's next request. The first turn starts with
// the agent's own id, so no two agents share a block by content.
func (a *agent) next() []uint32 {
	if a.turn == 0 {
		return encode(fmt.Sprintf("You are %s, a long-lived agent. Keep notes of everything below and answer briefly.\n", a.id), true)
	}
	p := append([]uint32(nil), a.context...)
	return append(p, encode(fmt.Sprintf("\n[turn %d of %s] What changed since the last turn?\n", a.turn, a.id), false)...)
}

type result struct {
	usage     *schedulerv1.Usage
	tokens    []uint32
	wall      time.Duration
	prompt    []uint32
	streamErr error
}

func generate(ctx context.Context, c schedulerv1.SchedulerServiceClient, id string, prompt []uint32) result {
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	r := result{prompt: prompt}
	t0 := time.Now()
	stream, err := c.Generate(ctx, &schedulerv1.GenerateRequest{AgentId: id, PromptTokenIds: prompt, MaxTokens: maxTokens})
	if err != nil {
		r.streamErr = err
		return r
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			r.streamErr = err
			return r
		}
		if msg.GetUsage() != nil {
			r.usage = msg.GetUsage()
			continue
		}
		r.tokens = append(r.tokens, msg.GetTokenId())
	}
	r.wall = time.Since(t0)
	if r.usage == nil {
		r.streamErr = errors.New("stream ended without a usage message")
	}
	return r
}

// ---- measurements --------------------------------------------------------------

type measure struct {
	mu     sync.Mutex
	start  time.Time
	phases []*phase
	notes  []string
	// totals
	requests, failures, warm, cold int
	background                     int // requests of the background load (also counted in failures)
}

type phase struct {
	m                              *measure
	name                           string
	t0                             time.Time
	dur                            time.Duration
	requests, failures, warm, cold int
	ttftWarm, ttftCold             []float64
	cachedFrac                     []float64 // cached_tokens / prompt_tokens
	reuse                          []float64 // cached_tokens / what the agent last stored on that node
}

func (m *measure) phase(name string) *phase {
	p := &phase{m: m, name: name, t0: time.Now()}
	m.mu.Lock()
	m.phases = append(m.phases, p)
	m.mu.Unlock()
	return p
}

func (p *phase) end() { p.dur = time.Since(p.t0) }

func (m *measure) note(format string, args ...any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.notes = append(m.notes, fmt.Sprintf(format, args...))
}

func (m *measure) add(requests, failures, warm, cold int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests += requests
	m.failures += failures
	m.warm += warm
	m.cold += cold
}

// round sends one request for every agent, all at once, checks each usage
// with check, and advances the agents whose request succeeded.
func (m *measure) round(ctx context.Context, t *testing.T, p *phase, s *sched, agents []*agent, check func(*agent, *schedulerv1.Usage) error) {
	t.Helper()
	results := make([]result, len(agents))
	var wg sync.WaitGroup
	for i, a := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = generate(ctx, s.client, a.id, a.next())
		}()
	}
	wg.Wait()
	var failed []string
	for i, a := range agents {
		r := results[i]
		p.requests++
		if r.streamErr != nil {
			p.failures++
			failed = append(failed, fmt.Sprintf("%s: %v", a.id, r.streamErr))
			continue
		}
		u := r.usage
		if u.GetCachedTokens() > 0 {
			p.warm++
			p.ttftWarm = append(p.ttftWarm, u.GetTimeToFirstTokenMs())
			p.cachedFrac = append(p.cachedFrac, float64(u.GetCachedTokens())/float64(max(1, u.GetPromptTokens())))
			if prev := a.stored[u.GetPoolNode()]; prev > 0 {
				p.reuse = append(p.reuse, float64(u.GetCachedTokens())/float64(prev))
			}
		} else {
			p.cold++
			p.ttftCold = append(p.ttftCold, u.GetTimeToFirstTokenMs())
		}
		if err := check(a, u); err != nil {
			failed = append(failed, fmt.Sprintf("%s (turn %d, %d prompt tokens): %v", a.id, a.turn, len(r.prompt), err))
		}
		a.context = append(r.prompt, r.tokens...)
		a.stored[u.GetPoolNode()] = len(a.context)
		a.turn++
	}
	m.add(p.requests, p.failures, p.warm, p.cold)
	for _, f := range failed {
		t.Errorf("%s: %s", p.name, f)
	}
}

func (m *measure) print(t *testing.T) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "\n==== e2e cluster summary (%.1fs) ====\n", time.Since(m.start).Seconds())
	fmt.Fprintf(&b, "requests %d checked + %d background, failed %d; of the checked: warm %d (cached_tokens > 0), cold %d\n",
		m.requests, m.background, m.failures, m.warm, m.cold)
	fmt.Fprintf(&b, "%-64s %8s %5s %5s %5s %5s %10s %10s %7s %7s\n", "phase", "time", "reqs", "fail", "warm", "cold", "ttft warm", "ttft cold", "cached", "reuse")
	for _, p := range m.phases {
		fmt.Fprintf(&b, "%-64s %7.2fs %5d %5d %5d %5d %10s %10s %7s %7s\n", p.name, p.dur.Seconds(), p.requests, p.failures, p.warm, p.cold,
			msMedian(p.ttftWarm), msMedian(p.ttftCold), pct(p.cachedFrac), pct(p.reuse))
	}
	for _, n := range m.notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	fmt.Fprintf(&b, "(ttft: median time to first token as the scheduler reports it; cached: mean cached_tokens/prompt_tokens of warm requests;\n"+
		" reuse: mean cached_tokens / tokens the agent's previous request on that node stored, 100%% = nothing recomputed)\n")
	t.Log(b.String())
}

func msMedian(v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return strconv.FormatFloat(s[len(s)/2], 'f', 1, 64) + "ms"
}

func pct(v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	sum := 0.0
	for _, x := range v {
		sum += x
	}
	return strconv.FormatFloat(100*sum/float64(len(v)), 'f', 0, 64) + "%"
}

// ---- background load -----------------------------------------------------------

type churnResult struct {
	requests int
	failures []string
	nodes    map[string]int
}

func (c churnResult) onVictim(id string) int { return c.nodes[id] }

type churn struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	res    churnResult
}

// startChurn runs n agents of its own, each sending request after request,
// until stop.
func startChurn(ctx context.Context, s *sched, n int) *churn {
	ctx, cancel := context.WithCancel(ctx)
	ch := &churn{cancel: cancel, res: churnResult{nodes: map[string]int{}}}
	for i := 0; i < n; i++ {
		a := &agent{id: fmt.Sprintf("e2e-churn-%02d", i)}
		ch.wg.Add(1)
		go func() {
			defer ch.wg.Done()
			for ctx.Err() == nil && a.turn < 200 {
				// The request itself is not cancelled by stop: it runs to its end.
				r := generate(context.WithoutCancel(ctx), s.client, a.id, a.next())
				ch.mu.Lock()
				ch.res.requests++
				if r.streamErr != nil {
					ch.res.failures = append(ch.res.failures, fmt.Sprintf("%s turn %d: %v", a.id, a.turn, r.streamErr))
				} else {
					ch.res.nodes[r.usage.GetPoolNode()]++
				}
				ch.mu.Unlock()
				if r.streamErr == nil {
					a.context = append(r.prompt, r.tokens...)
					if len(a.context) > 1500 { // stay well inside the context window
						a.context, a.turn = nil, -1
					}
				}
				a.turn++
			}
		}()
	}
	return ch
}

func (ch *churn) stop() churnResult {
	ch.cancel()
	ch.wg.Wait()
	return ch.res
}

// ---- the compose cluster -----------------------------------------------------

type cluster struct {
	t       *testing.T
	cmd     []string // the compose command
	file    string
	project string
	env     []string
	sec     *secrets
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	ci := os.Getenv("CI") == "true"
	unavailable := func(format string, args ...any) {
		t.Helper()
		if ci {
			t.Fatalf("CI=true and "+format+": the end-to-end test needs Docker and compose", args...)
		}
		t.Skipf(format+" (set CI=true to make this a failure)", args...)
	}
	if _, err := exec.LookPath("docker"); err != nil {
		unavailable("docker is not installed")
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		unavailable("docker info failed: %v: %s", err, bytes.TrimSpace(out))
	}
	cmd := strings.Fields(os.Getenv("COMPOSE"))
	if len(cmd) == 0 {
		if exec.Command("docker", "compose", "version").Run() == nil {
			cmd = []string{"docker", "compose"}
		} else if _, err := exec.LookPath("docker-compose"); err == nil {
			cmd = []string{"docker-compose"}
		} else {
			unavailable("neither `docker compose` nor docker-compose is installed")
		}
	}
	if out, err := exec.Command(cmd[0], append(cmd[1:], "version")...).CombinedOutput(); err != nil {
		unavailable("%s version failed: %v: %s", strings.Join(cmd, " "), err, bytes.TrimSpace(out))
	}
	for _, img := range []string{"semantic/scheduler:dev", "semantic/blockpool:dev"} {
		if out, err := exec.Command("docker", "image", "inspect", "--format", "{{.Id}}", img).CombinedOutput(); err != nil {
			t.Fatalf("image %s is missing (run `make images`, or `make e2e` which builds it): %s", img, bytes.TrimSpace(out))
		}
	}
	file, err := filepath.Abs(filepath.Join("..", "..", "..", "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("compose file: %v", err)
	}
	model := os.Getenv("SEMANTIC_E2E_MODEL")
	if model == "" {
		model = "builtin:tiny"
	}
	c := &cluster{
		t: t, cmd: cmd, file: file, sec: makeSecrets(t),
		project: fmt.Sprintf("semantic-e2e-%d-%d", os.Getpid(), time.Now().UnixNano()%1_000_000),
	}
	// Every published port is a free one the daemon picks, so that runs in
	// parallel (and a `make compose-up` cluster) do not collide.
	c.env = append(os.Environ(),
		"SEMANTIC_MODEL="+model,
		"SEMANTIC_SCHEDULER_PORT=127.0.0.1:0", "SEMANTIC_SCHEDULER_METRICS_PORT=127.0.0.1:0", "SEMANTIC_SCHEDULER_HTTP_PORT=127.0.0.1:0",
		"SEMANTIC_SCHEDULER2_PORT=127.0.0.1:0", "SEMANTIC_SCHEDULER2_METRICS_PORT=127.0.0.1:0", "SEMANTIC_SCHEDULER2_HTTP_PORT=127.0.0.1:0",
		"SEMANTIC_POOL1_PORT=0", "SEMANTIC_POOL2_PORT=0", "SEMANTIC_POOL3_PORT=0",
		"SEMANTIC_POOL1_METRICS_PORT=0", "SEMANTIC_POOL2_METRICS_PORT=0", "SEMANTIC_POOL3_METRICS_PORT=0",
		"SEMANTIC_PROMETHEUS_PORT=127.0.0.1:0",
		"SEMANTIC_SECRETS_DIR="+c.sec.dir,
	)
	t.Logf("compose: %s -p %s -f %s (model %s)", strings.Join(cmd, " "), c.project, file, model)
	t.Cleanup(c.down)
	return c
}

// compose runs one compose command for the test's project with its own
// deadline; the output goes to the test log.
func (c *cluster) compose(ctx context.Context, timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	full := append(append(append([]string(nil), c.cmd[1:]...), "-p", c.project, "-f", c.file), args...)
	cmd := exec.CommandContext(ctx, c.cmd[0], full...)
	cmd.Env = c.env
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t0 := time.Now()
	err := cmd.Run()
	if s := strings.TrimSpace(stderr.String()); s != "" && (err != nil || len(args) > 0 && args[0] != "port" && args[0] != "ps") {
		c.t.Logf("$ compose %s (%.1fs)\n%s", strings.Join(args, " "), time.Since(t0).Seconds(), s)
	}
	if err != nil {
		return stdout.String(), fmt.Errorf("compose %s: %w (after %.1fs)", strings.Join(args, " "), err, time.Since(t0).Seconds())
	}
	return stdout.String(), nil
}

// down removes the cluster with its volumes, whatever happened; on failure it
// first prints the services' logs.
func (c *cluster) down() {
	if os.Getenv("SEMANTIC_E2E_KEEP") != "" {
		c.t.Logf("SEMANTIC_E2E_KEEP is set: leaving project %s running; remove it with: %s -p %s -f %s --profile scheduler2 down -v",
			c.project, strings.Join(c.cmd, " "), c.project, c.file)
		return
	}
	ctx := context.Background()
	if c.t.Failed() {
		if out, err := c.compose(ctx, time.Minute, "--profile", "scheduler2", "logs", "--no-color", "--tail", "60"); err == nil {
			c.t.Logf("service logs (last 60 lines each):\n%s", out)
		}
	}
	t0 := time.Now()
	if _, err := c.compose(ctx, downTimeout, "--profile", "scheduler2", "down", "-v", "--remove-orphans", "--timeout", "10"); err != nil {
		c.t.Errorf("compose down: %v", err)
		return
	}
	c.t.Logf("compose down -v: %.1fs", time.Since(t0).Seconds())
}

// hostPort is where a service's container port is published on this host.
func (c *cluster) hostPort(ctx context.Context, svc string, port int) (string, error) {
	out, err := c.compose(ctx, 30*time.Second, "port", svc, strconv.Itoa(port))
	if err != nil {
		return "", err
	}
	addr := strings.TrimSpace(out)
	host, p, err := net.SplitHostPort(addr)
	if err != nil || p == "0" || p == "" {
		return "", fmt.Errorf("%s:%d is not published (%q)", svc, port, addr)
	}
	if host == "0.0.0.0" || host == "::" || host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, p), nil
}

// waitContainerHealthy waits until the service's container reports healthy
// (the image's own `healthcheck` subcommand, run by Docker).
func (c *cluster) waitContainerHealthy(ctx context.Context, svc string) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	last := ""
	for {
		out, err := c.compose(ctx, 30*time.Second, "ps", "-q", svc)
		if id := strings.TrimSpace(out); err == nil && id != "" {
			st, err := exec.CommandContext(ctx, "docker", "inspect", "--format", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}", id).Output()
			last = strings.TrimSpace(string(st))
			if err == nil && last == "running healthy" {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("container not healthy within %s (last state %q)", readyTimeout, last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// sched is a connection to one scheduler.
type sched struct {
	name   string
	addr   string
	conn   *grpc.ClientConn
	client schedulerv1.SchedulerServiceClient
}

func (s *sched) close() { _ = s.conn.Close() }

func (c *cluster) dialScheduler(ctx context.Context, svc string) *sched {
	return c.dialSchedulerAs(ctx, svc, c.sec.userKey)
}

// dialSchedulerAs connects with an API key ("": none).
func (c *cluster) dialSchedulerAs(ctx context.Context, svc, key string) *sched {
	c.t.Helper()
	addr, err := c.hostPort(ctx, svc, 50051)
	if err != nil {
		c.t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, append(withKey(key), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		c.t.Fatal(err)
	}
	return &sched{name: svc, addr: addr, conn: conn, client: schedulerv1.NewSchedulerServiceClient(conn)}
}

// waitPoolView waits until the scheduler serves and sees every pool service
// of healthy as a healthy node with its node id, and none of unhealthy (node
// ids) as healthy.
func (c *cluster) waitPoolView(ctx context.Context, s *sched, healthy []string, unhealthy []string) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	hc := healthpb.NewHealthClient(s.conn)
	var last string
	for {
		last = func() string {
			cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
			defer ccancel()
			h, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
			if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				return fmt.Sprintf("health: %v %v", h.GetStatus(), err)
			}
			st, err := s.client.GetStats(cctx, &schedulerv1.GetStatsRequest{})
			if err != nil {
				return fmt.Sprintf("GetStats: %v", err)
			}
			seen := map[string]bool{}
			var view []string
			for _, n := range st.GetPoolNodes() {
				view = append(view, fmt.Sprintf("%s(%s) healthy=%v", n.GetNodeId(), n.GetAddress(), n.GetHealthy()))
				if n.GetHealthy() {
					seen[n.GetNodeId()] = true
				}
			}
			for _, svc := range healthy {
				if !seen[nodeIDOf(svc)] {
					return "waiting for " + nodeIDOf(svc) + ": " + strings.Join(view, ", ")
				}
			}
			for _, id := range unhealthy {
				if seen[id] {
					return "waiting for " + id + " to be unhealthy: " + strings.Join(view, ", ")
				}
			}
			return ""
		}()
		if last == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not within %s: %s", s.name, readyTimeout, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// checkNodeIDs asks every pool node for its id (GetPoolInfo on its published
// port) and finds the same id in its metrics (target_info's
// service_instance_id).
func (c *cluster) checkNodeIDs(ctx context.Context) {
	t := c.t
	for _, svc := range poolServices {
		want := nodeIDOf(svc)
		addr, err := c.hostPort(ctx, svc, 50061)
		if err != nil {
			t.Error(err)
			continue
		}
		// The pool authorizes by client certificate: the admin's.
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(c.sec.adminCert))
		if err != nil {
			t.Error(err)
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		info, err := blockpoolv1.NewBlockPoolServiceClient(conn).GetPoolInfo(cctx, &blockpoolv1.GetPoolInfoRequest{})
		cancel()
		conn.Close()
		if err != nil {
			t.Errorf("%s GetPoolInfo: %v", svc, err)
		} else if info.GetNodeId() != want {
			t.Errorf("%s GetPoolInfo node_id = %q, want %q", svc, info.GetNodeId(), want)
		}
		maddr, err := c.hostPort(ctx, svc, 9461)
		if err != nil {
			t.Error(err)
			continue
		}
		if err := metricHasLabel(ctx, "http://"+maddr+"/metrics", "target_info", `service_instance_id="`+want+`"`); err != nil {
			t.Errorf("%s metrics: %v", svc, err)
		}
	}
}

func metricHasLabel(ctx context.Context, url, metric, label string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, metric+"{") && strings.Contains(line, label) {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return fmt.Errorf("no %s series with %s at %s", metric, label, url)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
