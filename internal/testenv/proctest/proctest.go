// Package proctest runs this module's programs, and nats-server and the
// nats CLI at the versions go.mod pins, as real processes for tests: it
// builds them once per test binary, starts them with a clean environment,
// shows their output when a test fails, and stops (SIGTERM) or kills
// (SIGKILL) them.
package proctest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/testenv"
)

// StopTimeout bounds a graceful stop (SIGTERM) before the process is killed.
const StopTimeout = 10 * time.Second

// Packages a test may build by their short name.
const (
	NATSServer = "github.com/nats-io/nats-server/v2"
	Ledger     = "./cmd/ledger"
	Gatekeeper = "./cmd/gatekeeper"
)

// Binaries are built programs by the base name of their package path
// ("nats-server", "ledger", "gatekeeper", "nats").
type Binaries map[string]string

// Build builds pkgs (import paths, or paths relative to the module root)
// in one go build into dir and returns their paths.
func Build(t testing.TB, dir string, pkgs ...string) Binaries {
	t.Helper()
	// go test puts its own toolchain first on PATH.
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("proctest: the go command is needed to build %v: %v", pkgs, err)
	}
	start := time.Now()
	cmd := exec.Command(goTool, append([]string{"build", "-o", dir + string(os.PathSeparator)}, pkgs...)...)
	cmd.Dir = RepoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("proctest: go build: %v\n%s", err, out)
	}
	bins := Binaries{}
	for _, p := range pkgs {
		name := filepath.Base(strings.TrimSuffix(p, "/v2"))
		path := filepath.Join(dir, name)
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("proctest: go build did not produce %s: %v", path, err)
		}
		bins[name] = path
	}
	t.Logf("built %v in %s", pkgs, time.Since(start).Round(time.Millisecond))
	return bins
}

// Cache builds programs once per test binary, into a directory removed by
// Close (call it from TestMain after the tests ran).
type Cache struct {
	mu   sync.Mutex
	dir  string
	bins Binaries
}

// Get returns the programs, building all of pkgs the first time.
func (c *Cache) Get(t testing.TB, pkgs ...string) Binaries {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bins != nil {
		return c.bins
	}
	dir, err := os.MkdirTemp("", "ledger-proctest-")
	if err != nil {
		t.Fatal(err)
	}
	c.dir = dir
	c.bins = Build(t, dir, pkgs...)
	return c.bins
}

// Close removes the built programs.
func (c *Cache) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dir != "" {
		os.RemoveAll(c.dir)
	}
	c.dir, c.bins = "", nil
}

// RepoRoot is the directory holding go.mod, above the working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("proctest: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Process is a program started by a test, stopped when the test ends; its
// output is shown when the test fails.
type Process struct {
	Name   string
	Cmd    *exec.Cmd
	out    *testenv.Buffer
	exited chan struct{}
	err    error // set before exited is closed
}

// InheritedEnvSkipped are variables of the test's environment that would
// change what the processes do; each process gets only the ones it is given.
var InheritedEnvSkipped = []string{"NATS_", "LEDGER_", "GATEKEEPER_", "LICENSE_", "DATABASE_URL=", "DATA_DIR=", "LOG_"}

// Start runs bin with args and env (added to the test's environment
// without InheritedEnvSkipped).
func Start(t testing.TB, name, bin string, args []string, env map[string]string) *Process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = ChildEnv(env)
	p := &Process{Name: name, Cmd: cmd, out: &testenv.Buffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("--- output of %s (%v):\n%s", name, p.err, Tail(p.out.String(), 12<<10))
		}
	})
	return p
}

// Output is everything the process wrote so far.
func (p *Process) Output() string { return p.out.String() }

// Exited is closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Alive returns an error, with the output, if the process has exited.
func (p *Process) Alive() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited (%v):\n%s", p.Name, p.err, Tail(p.out.String(), 8<<10))
	default:
		return nil
	}
}

// ExitCode is the exit status once the process has exited, -1 before or
// when a signal ended it.
func (p *Process) ExitCode() int {
	select {
	case <-p.exited:
		return p.Cmd.ProcessState.ExitCode()
	default:
		return -1
	}
}

// Stop sends SIGTERM and waits, killing the process after StopTimeout.
func (p *Process) Stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(StopTimeout):
		_ = p.Cmd.Process.Kill()
		<-p.exited
	}
}

// Kill sends SIGKILL (no cleanup of any kind) and waits for the exit.
func (p *Process) Kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.Cmd.Process.Kill()
	<-p.exited
}

// ChildEnv is the test's environment without InheritedEnvSkipped, plus env.
func ChildEnv(env map[string]string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !hasAnyPrefix(kv, InheritedEnvSkipped) {
			out = append(out, kv)
		}
	}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// Tail is the last n bytes of s.
func Tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// WaitFor polls check every 50 ms until it returns nil, failing the test
// after timeout or as soon as one of procs exits.
func WaitFor(t testing.TB, what string, timeout time.Duration, procs []*Process, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, p := range procs {
			if err := p.Alive(); err != nil {
				t.Fatalf("waiting for %s: %v", what, err)
			}
		}
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// FreePorts returns n distinct loopback ports that were free a moment
// ago, below the kernel's ephemeral range (testenv.FixedPorts): a process
// started on one, or restarted on it, never meets an outgoing connection
// holding it.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports, err := testenv.FixedPorts(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}
