package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/semantic-kv/semantic/pkg/testproc"
	"github.com/semantic-kv/semantic/services/scheduler/auth"
)

// The CLI is tested as users run it: the built binary against a real
// scheduler process (embedded pool, builtin:tiny, API keys required).
var (
	setupOnce sync.Once
	setupErr  error
	binDir    string
	cliBin    string
	sched     *testproc.Proc
	userKey   string
	adminKey  string
	poolBin   string
)

func setup(t *testing.T) {
	t.Helper()
	setupOnce.Do(func() {
		setupErr = startServer()
	})
	if setupErr != nil {
		t.Fatal(setupErr)
	}
}

// startServer builds the binaries and starts the scheduler shared by the
// tests (TestMain kills it).
func startServer() error {
	dir, err := os.MkdirTemp("", "semantic-cli-")
	if err != nil {
		return err
	}
	binDir = dir
	var schedBin string
	for _, b := range []struct {
		dst *string
		pkg string
	}{{&cliBin, "./services/scheduler/cmd/semantic"}, {&schedBin, "./services/scheduler"}, {&poolBin, "./services/blockpool"}} {
		if *b.dst, err = testproc.BuildBinary(dir, b.pkg); err != nil {
			return err
		}
	}
	f := &auth.File{}
	for _, k := range []struct {
		dst          *string
		name, tenant string
		role         auth.Role
	}{{&userKey, "cli", "acme", auth.RoleUser}, {&adminKey, "ops", "ops", auth.RoleAdmin}} {
		if *k.dst, err = auth.NewKey(); err != nil {
			return err
		}
		f.Keys = append(f.Keys, auth.Key{Name: k.name, Tenant: k.tenant, Role: k.role, SHA256: auth.HashKey(*k.dst)})
	}
	keys := filepath.Join(dir, "keys.json")
	if err := f.Write(keys); err != nil {
		return err
	}
	sched, err = testproc.Launch(exec.Command(schedBin, "--model", "builtin:tiny", "--data-dir", filepath.Join(dir, "data"),
		"--listen", "127.0.0.1:0", "--http-listen", "", "--metrics-listen", "", "--log-format", "json", "--auth-keys", keys))
	return err
}

// cli runs the binary with the scheduler's address and key in its
// environment, stdin from in; it returns stdout, stderr and the exit code.
func cli(t *testing.T, key, in string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(cliBin, args...)
	cmd.Env = append(os.Environ(), "SEMANTIC_ADDR="+sched.Addr, "SEMANTIC_API_KEY="+key, "NO_COLOR=1")
	cmd.Stdin = strings.NewReader(in)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func TestGenerateAndAgents(t *testing.T) {
	setup(t)
	out, stderr, code := cli(t, userKey, "", "generate", "--agent", "cli-a", "--max-tokens", "4", "--json", "Once upon a time")
	if code != 0 {
		t.Fatalf("generate: exit %d: %s", code, stderr)
	}
	var res struct {
		Text     string   `json:"text"`
		TokenIDs []uint32 `json:"token_ids"`
		Usage    struct {
			PromptTokens int  `json:"promptTokens"`
			TurnSaved    bool `json:"turnSaved"`
		} `json:"usage"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.TokenIDs) != 4 || res.Usage.PromptTokens == 0 || !res.Usage.TurnSaved {
		t.Fatalf("generate --json: %v\n%s", err, out)
	}
	// Text from stdin, appended to the stored context.
	if _, stderr, code := cli(t, userKey, " and then", "generate", "--agent", "cli-a", "--append", "--max-tokens", "2"); code != 0 {
		t.Fatalf("generate from stdin: exit %d: %s", code, stderr)
	}
	out, _, code = cli(t, userKey, "", "agents", "ls")
	if code != 0 || !strings.Contains(out, "cli-a") || !strings.Contains(out, "acme") {
		t.Fatalf("agents ls: exit %d\n%s", code, out)
	}
	out, _, code = cli(t, userKey, "", "agents", "show", "cli-a", "--json")
	var shown struct {
		AgentID string `json:"agentId"`
		Tenant  string `json:"tenant"`
	}
	// protojson varies its whitespace on purpose: decode, never compare bytes.
	if err := json.Unmarshal([]byte(out), &shown); code != 0 || err != nil || shown.AgentID != "cli-a" || shown.Tenant != "acme" {
		t.Fatalf("agents show: exit %d, %v\n%s", code, err, out)
	}
	// An admin reads another tenant's agent; a user may not.
	if _, stderr, code := cli(t, adminKey, "", "agents", "show", "cli-a", "--tenant", "acme"); code != 0 {
		t.Fatalf("admin agents show --tenant: exit %d: %s", code, stderr)
	}
	if _, _, code := cli(t, userKey, "", "agents", "show", "cli-a", "--tenant", "ops"); code != exitAuth {
		t.Fatalf("user agents show --tenant ops: exit %d, want %d", code, exitAuth)
	}
	if _, _, code := cli(t, userKey, "", "agents", "rm", "cli-a"); code != 0 {
		t.Fatalf("agents rm: exit %d", code)
	}
	if _, _, code := cli(t, userKey, "", "agents", "show", "cli-a"); code != exitNotFound {
		t.Fatalf("agents show after rm: exit %d, want %d", code, exitNotFound)
	}
	out, _, code = cli(t, userKey, "", "stats")
	if code != 0 || !strings.Contains(out, "decode") || !strings.Contains(out, "healthy") {
		t.Fatalf("stats: exit %d\n%s", code, out)
	}
}

func TestExitCodes(t *testing.T) {
	setup(t)
	for _, c := range []struct {
		key  string
		args []string
		want int
	}{
		{"", []string{"generate", "--agent", "x", "hi"}, exitAuth},
		{"sk-sem-wrong", []string{"stats"}, exitAuth},
		{userKey, []string{"generate", "hi"}, exitUsage},
		{userKey, []string{"nonsense"}, exitUsage},
		{userKey, []string{}, exitUsage},
		{userKey, []string{"agents"}, exitUsage},
		{userKey, []string{"generate", "--agent", "x", "--max-tokens", "0", "hi"}, exitFail},
		{userKey, []string{"stats", "--addr", "127.0.0.1:1"}, exitRetry},
		{userKey, []string{"--help"}, exitOK},
		{userKey, []string{"generate", "--help"}, exitOK},
	} {
		if _, stderr, code := cli(t, c.key, "", c.args...); code != c.want {
			t.Errorf("semantic %s: exit %d, want %d\n%s", strings.Join(c.args, " "), code, c.want, stderr)
		}
	}
}

func TestPoolInfo(t *testing.T) {
	setup(t)
	pool := testproc.Start(t, exec.Command(poolBin, "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--metrics-listen", "", "--log-format", "json"))
	out, stderr, code := cli(t, "", "", "pool", "info", "--addr", pool.Addr)
	if code != 0 || !strings.Contains(out, `"capacityBlocks"`) {
		t.Fatalf("pool info: exit %d\n%s%s", code, out, stderr)
	}
}

// semantic chat through a pseudo-terminal, as a person uses it: two turns
// (the second reuses the first from the cache), Ctrl-C cancels a long reply
// without ending the program, Ctrl-D leaves.
func TestChatInATerminal(t *testing.T) {
	setup(t)
	cmd := exec.Command(cliBin, "chat", "--agent", "cli-chat", "--max-tokens", "6", "--temperature", "0")
	cmd.Env = append(os.Environ(), "SEMANTIC_ADDR="+sched.Addr, "SEMANTIC_API_KEY="+userKey, "TERM=xterm")
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 200})
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(tty)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var seen strings.Builder
	waitFor := func(substr string) string {
		t.Helper()
		deadline := time.After(time.Minute)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("chat ended before %q:\n%s", substr, seen.String())
				}
				seen.WriteString(l + "\n")
				if strings.Contains(l, substr) {
					return l
				}
			case <-deadline:
				t.Fatalf("no %q within a minute:\n%s", substr, seen.String())
			}
		}
	}
	waitFor("chatting as agent")
	io.WriteString(tty, "Hello there\n")
	first := waitFor("prompt tokens cached")
	if !strings.Contains(first, "[0/") || !strings.Contains(first, "\x1b[") {
		t.Errorf("first turn's status line: %q (want 0 cached, in colour on a terminal)", first)
	}
	io.WriteString(tty, "And again\n")
	second := waitFor("prompt tokens cached")
	if strings.Contains(second, "[0/") {
		t.Errorf("second turn's status line: %q (want the first turn cached)", second)
	}
	// Ctrl-C (SIGINT to the terminal's foreground process) must not end
	// the program: at the prompt it reminds how to leave; during a reply it
	// cancels the reply.
	io.WriteString(tty, "\x03")
	waitFor("to leave")
	io.WriteString(tty, strings.Repeat("tell me more ", 3)+"\n")
	io.WriteString(tty, "\x03")
	io.WriteString(tty, "/bye\n")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("chat exited with %v after /bye (a Ctrl-C must not end it):\n%s", err, seen.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("chat did not end after /bye:\n%s", seen.String())
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if sched != nil {
		sched.Kill()
	}
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}
