package proctest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
	"github.com/semantic-kv/semantic/pkg/model"
	"github.com/semantic-kv/semantic/pkg/testproc"
)

// The soak test (issue #13, "Tests"): 64 agents hold multi-turn
// conversations with a scheduler process that uses a separate pool process,
// while turns are cancelled, clients disconnect mid-stream, the pool is
// restarted on its data directory and a client tries to Reconfigure the pool
// to another model under active leases. Failures a client sees are fine
// (UNAVAILABLE while the pool restarts, CANCELLED); a turn whose final Usage
// said turn_saved and that is then missing or changed is not. Afterwards
// nothing is leased, a sample of agents re-run their last turn warm and get
// the cold result token for token, and both processes are healthy.
//
// Duration: -soak (go test -run Soak ./proctest -args -soak=10m), else
// $SEMANTIC_SOAK_DURATION, else 2m (20s under -short).

var soakFlag = flag.Duration("soak", 0, "duration of TestSoak (0: $SEMANTIC_SOAK_DURATION, else 2m, or 20s with -short)")

func soakDuration(t *testing.T) time.Duration {
	if *soakFlag > 0 {
		return *soakFlag
	}
	if v := os.Getenv("SEMANTIC_SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SEMANTIC_SOAK_DURATION: %v", err)
		}
		return d
	}
	if testing.Short() {
		return 20 * time.Second
	}
	return 2 * time.Minute
}

const (
	soakAgents = 64
	// soakMaxContext starts a new conversation once the context passes
	// it, so that no agent runs into the model's context.
	soakMaxContext = 600
	soakTurnLimit  = time.Minute
)

// soakStats is the summary: what happened to every turn.
type soakStats struct {
	mu          sync.Mutex
	turnsOK     int
	saved       int
	unsaved     map[string]int // by turn_unsaved_reason
	errors      map[string]int // by status code
	cancels     int            // turns the client cancelled
	disconnects int            // turns whose connection the client closed
	verified    int            // saved-turn checks against GetAgent that passed
	// restartChecked: agents whose saved record was read back intact from
	// the restarted pool before their next turn.
	restartChecked int
	failures       []string // broken promises: a saved turn missing, a leak, an unexpected code
	// details: the first turn_unsaved_detail of each reason, for people.
	details map[string]string
	// firstUnavail, lastUnavail: when turns failed with UNAVAILABLE.
	firstUnavail, lastUnavail time.Time
}

func (s *soakStats) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.failures) < 50 {
		s.failures = append(s.failures, fmt.Sprintf(format, args...))
	}
}

func (s *soakStats) add(f func(s *soakStats)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

// soakAgent is one agent's conversation and what its client knows was saved.
type soakAgent struct {
	idx      int
	messages bool // messages conversations; else a first prompt, then append turns
	convs    int  // conversations begun
	// restartChecked: the record was checked once the restarted pool served.
	restartChecked bool
	rng            *rand.Rand

	// certain: nothing since the last saved turn has an unknown outcome
	// (an error or cancel may have been committed before the client
	// learnt it). known is the record's token ids as of the last saved
	// turn (append mode); for messages, the record's length and tail.
	certain   bool
	known     []uint32
	knownLen  int
	knownTail []uint32

	conv []*schedulerv1.ChatMessage // messages mode: the conversation so far

	// The last saved turn, for the warm/cold re-run: its context (ids or
	// messages), max_tokens and completion. lastValid: it is the turn
	// that made the current record.
	lastValid bool
	lastCtx   []uint32
	lastMsgs  []*schedulerv1.ChatMessage
	lastMax   uint32
	lastOut   []uint32
}

func (a *soakAgent) id() string { return fmt.Sprintf("soak-%02d", a.idx) }

// checkRecord compares the agent's record with what its client knows was
// saved, and says how it differs ("" if it does not). Call it only when no
// request of the agent is running.
func (a *soakAgent) checkRecord(got []uint32) string {
	switch {
	case !a.messages && a.certain && !slices.Equal(got, a.known):
		return fmt.Sprintf("record is %d tokens, want the %d the last saved turn left (first difference at %d)", len(got), len(a.known), firstDiff(got, a.known))
	case !a.messages && !slices.Equal(got[:min(len(got), len(a.known))], a.known):
		return fmt.Sprintf("record does not start with the %d tokens saved (first difference at %d)", len(a.known), firstDiff(got, a.known))
	case a.messages && a.certain && (len(got) != a.knownLen || !slices.Equal(got[len(got)-len(a.knownTail):], a.knownTail)):
		return fmt.Sprintf("record is %d tokens, want %d ending with the last saved completion", len(got), a.knownLen)
	}
	return ""
}

// checkAfterRestart reads the agent's record once the restarted pool
// serves, before the agent's next turn: every turn saved before the
// restart must be there.
func (a *soakAgent) checkAfterRestart(sc schedulerv1.SchedulerServiceClient, st *soakStats) {
	if a.messages && a.knownLen == 0 || !a.messages && a.known == nil {
		return
	}
	var err error
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var r *schedulerv1.GetAgentResponse
		r, err = sc.GetAgent(ctx, &schedulerv1.GetAgentRequest{AgentId: a.id()})
		cancel()
		if status.Code(err) == codes.Unavailable {
			continue // the scheduler has not seen the pool come back yet
		}
		if err != nil {
			break
		}
		if msg := a.checkRecord(r.GetAgent().GetTokenIds()); msg != "" {
			st.fail("%s after the pool restart: %s", a.id(), msg)
			return
		}
		st.add(func(s *soakStats) { s.restartChecked++ })
		return
	}
	st.fail("%s: saved record unreadable after the pool restart: %v", a.id(), err)
}

// restart begins a new conversation on the same agent: its next turn sends
// a whole new context (a prompt without append, or a new conversation),
// which replaces the record. The old conversation's blocks become plain
// cache, so the agents' records stay within the pool however long the soak
// runs and no record is evicted (an evicted record would read as a lost one).
func (a *soakAgent) restart() {
	a.convs++
	a.known, a.knownLen, a.knownTail, a.conv, a.lastValid = nil, 0, nil, nil, false
}

var soakWords = strings.Fields("the agent reads a plan and writes code while the pool keeps every block it has seen " +
	"cache tokens turn batch lease commit prefix model context memory story river stone light")

func (a *soakAgent) text(n int) string {
	w := make([]string, n)
	for i := range w {
		w[i] = soakWords[a.rng.IntN(len(soakWords))]
	}
	return strings.Join(w, " ")
}

// soakTurn is one Generate call's outcome as the client saw it.
type soakTurn struct {
	usage *schedulerv1.Usage
	ids   []uint32
	text  string
	err   error
}

// runTurn sends req and reads the stream. fate: 0 normal, 1 cancel after a
// random delay, 2 close the connection after the first token.
func runTurn(ctx context.Context, c schedulerv1.SchedulerServiceClient, addr string, req *schedulerv1.GenerateRequest, fate int, delay time.Duration) soakTurn {
	ctx, cancel := context.WithTimeout(ctx, soakTurnLimit)
	defer cancel()
	var conn *grpc.ClientConn
	switch fate {
	case 1:
		t := time.AfterFunc(delay, cancel)
		defer t.Stop()
	case 2:
		var err error
		if conn, err = grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
			return soakTurn{err: err}
		}
		defer conn.Close()
		c = schedulerv1.NewSchedulerServiceClient(conn)
	}
	stream, err := c.Generate(ctx, req)
	if err != nil {
		return soakTurn{err: err}
	}
	var out soakTurn
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			if out.usage == nil {
				out.err = errors.New("stream ended without usage")
			}
			return out
		}
		if err != nil {
			out.err = err
			return out
		}
		out.text += msg.GetText()
		if msg.GetUsage() != nil {
			out.usage = msg.GetUsage()
			continue
		}
		out.ids = append(out.ids, msg.GetTokenId())
		if fate == 2 && len(out.ids) == 1 {
			conn.Close() // the client goes away mid-stream
		}
	}
}

func TestSoak(t *testing.T) {
	dur := soakDuration(t)
	schedBin, poolBin := binaries(t)
	m, err := model.Builtin("tiny")
	if err != nil {
		t.Fatal(err)
	}
	tok := m.Tokenizer
	encode := func(s string, bos bool) []uint32 {
		ids := tok.Encode(s, bos)
		out := make([]uint32, len(ids))
		for i, id := range ids {
			out[i] = uint32(id)
		}
		return out
	}

	poolData := t.TempDir()
	poolArgs := func(listen string) *exec.Cmd {
		return exec.Command(poolBin, "--log-format", "json", "--listen", listen, "--metrics-listen", "",
			"--data-dir", poolData, "--capacity-blocks", "8192", "--node-id", "soak-pool", "--shutdown-timeout", "5s")
	}
	pool := testproc.Start(t, poolArgs("127.0.0.1:0"))
	poolAddr := pool.Addr
	sched := testproc.Start(t, exec.Command(schedBin, "--log-format", "json", "--listen", "127.0.0.1:0", "--metrics-listen", "", "--http-listen", "",
		"--data-dir", t.TempDir(), "--model", "builtin:tiny", "--pool", poolAddr, "--lease-ttl", "3s", "--block-tokens", "16", "--max-batch", "64"))
	var poolMu sync.Mutex // guards pool (replaced by the restart)
	curPool := func() *testproc.Proc { poolMu.Lock(); defer poolMu.Unlock(); return pool }
	pc := blockpoolv1.NewBlockPoolServiceClient(dial(t, poolAddr))
	sc := schedulerv1.NewSchedulerServiceClient(dial(t, sched.Addr))
	logs := func() string {
		return "--- scheduler logs (tail) ---\n" + tail(sched.Logs(), 40) + "\n--- pool logs (tail) ---\n" + tail(curPool().Logs(), 40)
	}

	st := &soakStats{unsaved: map[string]int{}, errors: map[string]int{}, details: map[string]string{}}
	began := time.Now()
	ctx, stop := context.WithTimeout(context.Background(), dur)
	defer stop()

	// Reconfigure attempts: every couple of seconds a client pins a block
	// with a lease of its own (so a lease is certainly active) and asks for
	// another model. The contract: FAILED_PRECONDITION, nothing dropped.
	var reconfAttempts, reconfRefused atomic.Int64
	reconfDone := make(chan struct{})
	go func() {
		defer close(reconfDone)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Second):
			}
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			info, err := pc.GetPoolInfo(cctx, &blockpoolv1.GetPoolInfoRequest{})
			if err != nil || info.GetSpec() == nil {
				cancel()
				continue
			}
			l, err := pc.Lease(cctx, &blockpoolv1.LeaseRequest{Holder: "soak-admin", AgentId: "soak-pin", Count: 1, ModelTag: info.GetSpec().GetModelTag()})
			if err != nil {
				cancel()
				continue
			}
			other := proto.Clone(info.GetSpec()).(*blockpoolv1.CacheSpec)
			other.ModelTag = "another-model"
			reconfAttempts.Add(1)
			_, err = pc.Reconfigure(cctx, &blockpoolv1.ReconfigureRequest{Spec: other})
			switch status.Code(err) {
			case codes.FailedPrecondition:
				reconfRefused.Add(1)
			case codes.Unavailable:
			default:
				st.fail("Reconfigure to another model under an active lease: got %v, want FAILED_PRECONDITION", err)
			}
			_, _ = pc.Release(cctx, &blockpoolv1.ReleaseRequest{Holder: "soak-admin", LeaseId: l.GetLeaseId(), Epoch: l.GetEpoch()})
			cancel()
		}
	}()

	// restarted is set once the restarted pool serves: each agent then
	// checks its record before its next turn.
	var restarted atomic.Bool
	agents := make([]*soakAgent, soakAgents)
	var wg sync.WaitGroup
	for i := range agents {
		a := &soakAgent{idx: i, messages: i%2 == 1, rng: rand.New(rand.NewPCG(uint64(i), 13)), certain: true}
		agents[i] = a
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if restarted.Load() && !a.restartChecked {
					a.restartChecked = true
					a.checkAfterRestart(sc, st)
				}
				soakOne(ctx, a, sc, sched.Addr, st, encode)
			}
		}()
	}
	// The pool restart, from the test's goroutine: SIGTERM, then the same
	// binary on the same data directory and port, 40% into the run.
	var restartDown, restartAt time.Duration
	select {
	case <-ctx.Done():
	case <-time.After(dur * 4 / 10):
		down := time.Now()
		restartAt = down.Sub(began)
		p := curPool()
		p.Signal(syscall.SIGTERM)
		select {
		case <-p.Done():
		case <-time.After(30 * time.Second):
			st.fail("pool did not stop within 30s of SIGTERM")
			p.Kill()
		}
		np := testproc.Start(t, poolArgs(poolAddr))
		poolMu.Lock()
		pool = np
		poolMu.Unlock()
		restartDown = time.Since(down)
		restarted.Store(true)
	}
	wg.Wait()
	<-reconfDone
	loadTime := time.Since(began)

	// Settle: the scheduler idle and holding nothing, the pool with no
	// lease and its counts adding up.
	settle := time.Now()
	var stats *schedulerv1.GetStatsResponse
	var info *blockpoolv1.GetPoolInfoResponse
	for {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		stats, err = sc.GetStats(cctx, &schedulerv1.GetStatsRequest{})
		if err == nil {
			info, err = pc.GetPoolInfo(cctx, &blockpoolv1.GetPoolInfoRequest{})
		}
		cancel()
		if err == nil && stats.GetRunning() == 0 && stats.GetWaiting() == 0 && stats.GetBlocksLeased() == 0 &&
			info.GetLeasedBlocks() == 0 && info.GetActiveLeases() == 0 {
			break
		}
		if time.Since(settle) > 30*time.Second {
			t.Fatalf("leak: 30s after the load stopped: scheduler %v, pool %v (err %v)\n%s", stats, info, err, logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if info.GetFreeBlocks()+info.GetCachedBlocks() != info.GetCapacityBlocks() {
		t.Errorf("pool counts do not add up: %v", info)
	}
	for _, n := range stats.GetPoolNodes() {
		if !n.GetHealthy() {
			t.Errorf("scheduler sees pool node %s unhealthy after the soak", n.GetAddress())
		}
	}

	// Every saved turn is intact.
	checked := 0
	get := func(id string) ([]uint32, error) {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r, err := sc.GetAgent(cctx, &schedulerv1.GetAgentRequest{AgentId: id})
		return r.GetAgent().GetTokenIds(), err
	}
	convs := 0
	for _, a := range agents {
		convs += a.convs
		if a.messages && a.knownLen == 0 || !a.messages && a.known == nil {
			continue // nothing saved in this conversation yet
		}
		checked++
		got, err := get(a.id())
		if err != nil {
			st.fail("%s: saved record unreadable after the soak: %v", a.id(), err)
			continue
		}
		if msg := a.checkRecord(got); msg != "" {
			st.fail("%s after the soak: %s", a.id(), msg)
		}
	}

	// A warm re-run of the last turn equals the cold result, for a sample.
	// The cold run is another agent under a salt of its own, so that it
	// shares no block with anything (not even with the other cold runs).
	reruns := 0
	for _, a := range agents {
		if reruns == 8 {
			break
		}
		if !a.lastValid || !a.certain || len(a.lastOut) == 0 {
			continue
		}
		reruns++
		warm := &schedulerv1.GenerateRequest{AgentId: a.id(), MaxTokens: a.lastMax, PromptTokenIds: a.lastCtx, Messages: a.lastMsgs}
		cold := &schedulerv1.GenerateRequest{AgentId: "cold-" + a.id(), MaxTokens: a.lastMax, PromptTokenIds: a.lastCtx, Messages: a.lastMsgs, CacheSalt: "soak-cold-" + a.id()}
		w := runTurn(context.Background(), sc, "", warm, 0, 0)
		c := runTurn(context.Background(), sc, "", cold, 0, 0)
		switch {
		case w.err != nil || c.err != nil:
			st.fail("%s: re-run failed: warm %v, cold %v", a.id(), w.err, c.err)
		case w.usage.GetCachedTokens() == 0:
			st.fail("%s: the warm re-run reused nothing (%+v)", a.id(), w.usage)
		case c.usage.GetCachedTokens() != 0:
			st.fail("%s: the cold re-run reused %d tokens", a.id(), c.usage.GetCachedTokens())
		case !slices.Equal(w.ids, c.ids) || !slices.Equal(w.ids, a.lastOut):
			st.fail("%s: warm re-run %v, cold %v, the turn itself %v", a.id(), w.ids, c.ids, a.lastOut)
		}
	}

	// Both processes still serve, and stop cleanly.
	for name, p := range map[string]*testproc.Proc{"scheduler": sched, "pool": curPool()} {
		select {
		case <-p.Done():
			t.Errorf("%s exited during the soak: %v", name, p.Err())
		default:
		}
		if strings.Contains(p.Logs(), "panic") {
			t.Errorf("%s logged a panic", name)
		}
	}
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := sc.GetStats(cctx, &schedulerv1.GetStatsRequest{}); err != nil {
		t.Errorf("scheduler unhealthy after the soak: %v", err)
	}
	if info, err = pc.GetPoolInfo(cctx, &blockpoolv1.GetPoolInfoRequest{}); err != nil {
		t.Errorf("pool unhealthy after the soak: %v", err)
	}

	st.mu.Lock()
	defer st.mu.Unlock()
	t.Logf("soak: %v of load with %d agents (%d conversations; +%v to settle), pool restart after %v down, %d agents' records checked, %d warm/cold re-runs",
		loadTime.Round(time.Millisecond), soakAgents, convs+soakAgents, time.Since(settle).Round(time.Millisecond), restartDown.Round(time.Millisecond), checked, reruns)
	t.Logf("turns: %d ok (%d saved, unsaved by reason %s), %d saved turns verified against GetAgent right after, %d agents' records verified after the pool restart; errors by code %s; %d cancels and %d disconnects issued",
		st.turnsOK, st.saved, fmtCounts(st.unsaved), st.verified, st.restartChecked, fmtCounts(st.errors), st.cancels, st.disconnects)
	t.Logf("reconfigure attempts under a lease: %d, refused with FAILED_PRECONDITION: %d; pool at the end: %d free, %d cached, %d agents, epoch %d; scheduler: %d completed, %d failed",
		reconfAttempts.Load(), reconfRefused.Load(), info.GetFreeBlocks(), info.GetCachedBlocks(), info.GetAgents(), info.GetEpoch(),
		stats.GetRequestsCompleted(), stats.GetRequestsFailed())
	if !st.firstUnavail.IsZero() {
		t.Logf("UNAVAILABLE from %v to %v into the run (pool stopped at %v, serving again %v later)", st.firstUnavail.Sub(began).Round(time.Millisecond),
			st.lastUnavail.Sub(began).Round(time.Millisecond), restartAt.Round(time.Millisecond), restartDown.Round(time.Millisecond))
	}
	for reason, d := range st.details {
		t.Logf("unsaved %q, e.g.: %s", reason, d)
	}
	if st.turnsOK == 0 || st.saved == 0 {
		t.Errorf("no turn completed: the soak tested nothing\n%s", logs())
	}
	for _, f := range st.failures {
		t.Error(f)
	}
	if len(st.failures) > 0 {
		t.Logf("%s", logs())
	}
	sched.Stop(t, 30*time.Second)
	curPool().Stop(t, 30*time.Second)
}

// soakOne runs one turn of agent a and updates what its client knows.
func soakOne(ctx context.Context, a *soakAgent, sc schedulerv1.SchedulerServiceClient, addr string, st *soakStats, encode func(string, bool) []uint32) {
	fate, delay := 0, time.Duration(0)
	switch r := a.rng.IntN(100); {
	case r < 8:
		fate, delay = 1, time.Duration(a.rng.IntN(200))*time.Millisecond
	case r < 13:
		fate = 2
	}
	maxTok := uint32(4 + a.rng.IntN(21))
	req := &schedulerv1.GenerateRequest{AgentId: a.id(), MaxTokens: maxTok, Temperature: 0}
	var prompt []uint32 // append mode: the ids this turn adds before the completion
	var msgs []*schedulerv1.ChatMessage
	if a.messages {
		if len(a.conv) == 0 {
			a.conv = []*schedulerv1.ChatMessage{{Role: "system", Content: "You are agent " + a.id() + "."}}
		}
		msgs = append(slices.Clone(a.conv), &schedulerv1.ChatMessage{Role: "user", Content: a.text(3 + a.rng.IntN(12))})
		req.Messages = msgs
	} else {
		text := a.text(3 + a.rng.IntN(12))
		if a.known == nil {
			req.Prompt = text
			prompt = encode(text, true)
		} else {
			req.Prompt, req.Append = " "+text, true
			prompt = encode(" "+text, false)
		}
	}
	// A turn that has begun runs to its end even when the soak's time is
	// up, so that every agent ends knowing what it saved.
	tr := runTurn(context.Background(), sc, addr, req, fate, delay)
	if tr.err != nil {
		code := status.Code(tr.err)
		st.add(func(s *soakStats) {
			s.errors[code.String()]++
			if code == codes.Unavailable {
				if s.firstUnavail.IsZero() {
					s.firstUnavail = time.Now()
				}
				s.lastUnavail = time.Now()
			}
			switch fate {
			case 1:
				s.cancels++
			case 2:
				s.disconnects++
			}
		})
		switch {
		case code == codes.Unavailable, code == codes.Canceled:
		default:
			st.fail("%s: turn failed with %v", a.id(), tr.err)
		}
		// The turn may have been committed before the client learnt
		// anything: the record is now the last saved one or this turn.
		a.certain, a.lastValid = false, false
		if ctx.Err() == nil {
			time.Sleep(time.Duration(50+a.rng.IntN(100)) * time.Millisecond)
		}
		return
	}
	u := tr.usage
	wantLen := int(u.GetPromptTokens()) + len(tr.ids)
	st.add(func(s *soakStats) { s.turnsOK++ })
	// A long conversation ends here: the next turn begins another, so
	// that none runs into the model's context.
	defer func() {
		if wantLen > soakMaxContext {
			a.restart()
		}
	}()
	if a.messages {
		a.conv = append(msgs, &schedulerv1.ChatMessage{Role: "assistant", Content: tr.text})
	}
	if int(u.GetCompletionTokens()) != len(tr.ids) {
		st.fail("%s: usage says %d completion tokens, the stream had %d", a.id(), u.GetCompletionTokens(), len(tr.ids))
	}
	if !u.GetTurnSaved() {
		// Not saved: the record is what it was, and the client was told.
		st.add(func(s *soakStats) {
			s.unsaved[u.GetTurnUnsavedReason()]++
			if _, ok := s.details[u.GetTurnUnsavedReason()]; !ok {
				s.details[u.GetTurnUnsavedReason()] = u.GetTurnUnsavedDetail()
			}
		})
		if a.messages {
			a.lastValid = false // the conversation moved on past the record
		}
		return
	}
	st.add(func(s *soakStats) { s.saved++ })
	// The context the scheduler computed over must be what the client
	// knows: the saved record plus this prompt (append), or the prompt.
	if !a.messages && (a.certain || !req.GetAppend()) {
		want := len(prompt) + len(tr.ids)
		if req.GetAppend() {
			want += len(a.known)
		}
		if wantLen != want {
			st.fail("%s: the turn ran over %d context tokens, want %d (saved record %d + prompt %d)", a.id(), u.GetPromptTokens(),
				want-len(tr.ids), len(a.known), len(prompt))
		}
	}
	// Read the record the turn saved: nothing else writes this agent, and
	// any request of it the client gave up on finished before this turn
	// ran (one agent's requests run one after the other).
	gctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	rec, err := sc.GetAgent(gctx, &schedulerv1.GetAgentRequest{AgentId: a.id()})
	cancel()
	got := rec.GetAgent().GetTokenIds()
	switch {
	case status.Code(err) == codes.Unavailable:
		// The pool is restarting: the end checks what is certain.
	case err != nil:
		st.fail("%s: saved turn, then GetAgent: %v", a.id(), err)
	case len(got) != wantLen || !slices.Equal(got[len(got)-len(tr.ids):], tr.ids):
		st.fail("%s: saved turn left a record of %d tokens, want %d ending with the completion", a.id(), len(got), wantLen)
	case !a.messages && !slices.Equal(got[len(got)-len(tr.ids)-len(prompt):len(got)-len(tr.ids)], prompt):
		st.fail("%s: saved record does not hold the turn's prompt before its completion", a.id())
	case !a.messages && req.GetAppend() && !slices.Equal(got[:min(len(got), len(a.known))], a.known):
		st.fail("%s: saved turn's record does not start with the previous saved record (first difference at %d)", a.id(), firstDiff(got, a.known))
	default:
		st.add(func(s *soakStats) { s.verified++ })
	}
	if a.messages {
		a.knownLen, a.knownTail = wantLen, slices.Clone(tr.ids)
		a.lastCtx, a.lastMsgs = nil, msgs
	} else {
		switch {
		case !req.GetAppend():
			a.known = append(slices.Clone(prompt), tr.ids...)
		case a.certain:
			a.known = append(append(slices.Clone(a.known), prompt...), tr.ids...)
		case err == nil:
			// After an unknown outcome: the record read back (checked
			// above against the last certain one) is the new knowledge.
			a.known = slices.Clone(got)
		default:
			a.lastValid = false
			return // still uncertain: the end checks the prefix
		}
		a.lastCtx, a.lastMsgs = a.known[:len(a.known)-len(tr.ids)], nil
	}
	a.certain, a.lastValid, a.lastMax, a.lastOut = true, true, maxTok, slices.Clone(tr.ids)
}

func firstDiff(a, b []uint32) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func fmtCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("{")
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		if k == "" {
			fmt.Fprintf(&b, "(none): %d", m[k])
			continue
		}
		fmt.Fprintf(&b, "%s: %d", k, m[k])
	}
	b.WriteString("}")
	return b.String()
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
