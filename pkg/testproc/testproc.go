// Package testproc runs the project's server binaries as real processes in
// tests: it builds them, starts them in their own process group, waits for
// the JSON "serving" log line that pkg/app prints, and keeps their logs for
// failure messages. Tests of every module use it, so that "a server in a
// test" means the same thing everywhere.
package testproc

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Proc is a running server process.
type Proc struct {
	Cmd *exec.Cmd
	// Addr is the gRPC address from the "serving" log line; MetricsAddr the
	// /metrics address and HTTPAddr the HTTP API's address ("http api
	// listening"), if the process logged them before serving.
	Addr, MetricsAddr, HTTPAddr string

	mu   sync.Mutex
	logs strings.Builder
	done chan struct{}
	err  error // the exit error, set before done closes
}

// StartTimeout bounds how long Start waits for the "serving" line.
const StartTimeout = 3 * time.Minute

// Start runs cmd, which must log JSON (--log-format json) to stderr, and
// returns once it serves. The process is killed when the test ends.
func Start(t testing.TB, cmd *exec.Cmd) *Proc {
	t.Helper()
	p, err := Launch(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	return p
}

// Launch is Start for code without a testing.TB (a TestMain): it returns an
// error instead of failing a test, and the caller kills the process (Kill).
func Launch(cmd *exec.Cmd) (*Proc, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Proc{Cmd: cmd, done: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		served := false
		for sc.Scan() {
			p.mu.Lock()
			p.logs.Write(sc.Bytes())
			p.logs.WriteByte('\n')
			var rec map[string]any
			if !served && json.Unmarshal(sc.Bytes(), &rec) == nil {
				switch rec["msg"] {
				case "metrics endpoint listening":
					p.MetricsAddr, _ = rec["addr"].(string)
				case "http api listening":
					p.HTTPAddr, _ = rec["addr"].(string)
				case "serving":
					p.Addr, _ = rec["addr"].(string)
					served = true
					close(ready)
				}
			}
			p.mu.Unlock()
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	select {
	case <-ready:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("%s exited before serving:\n%s", cmd.Path, p.Logs())
	case <-time.After(StartTimeout):
		p.Kill()
		return nil, fmt.Errorf("%s did not start:\n%s", cmd.Path, p.Logs())
	}
}

// Logs returns everything the process has logged so far.
func (p *Proc) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the process's exit error; call it after Done is closed.
func (p *Proc) Err() error { return p.err }

// Signal sends sig to the process's whole group (make and its child too),
// unless the process has exited (its id may belong to another one by then).
func (p *Proc) Signal(sig syscall.Signal) {
	select {
	case <-p.done:
	default:
		_ = syscall.Kill(-p.Cmd.Process.Pid, sig)
	}
}

// Kill sends SIGKILL and waits for the exit.
func (p *Proc) Kill() {
	p.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM and fails the test if the process has not exited
// within timeout.
func (p *Proc) Stop(t testing.TB, timeout time.Duration) {
	t.Helper()
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("%s did not stop %v after SIGTERM:\n%s", p.Cmd.Path, timeout, p.Logs())
	}
}

// RepoRoot is the directory holding go.work, found upwards from the test's
// working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := FindRepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// FindRepoRoot is RepoRoot without a testing.TB.
func FindRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.work not found above the test directory")
		}
		dir = parent
	}
}

// Build compiles the main package pkg (a path relative to the repository
// root, like "./services/blockpool") as a static binary into dir.
func Build(t testing.TB, dir, pkg string) string {
	t.Helper()
	bin, err := BuildBinary(dir, pkg)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// BuildBinary is Build without a testing.TB.
func BuildBinary(dir, pkg string) (string, error) {
	root, err := FindRepoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin, nil
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers: a test's log
// sink for loggers that goroutines write to.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String is everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
