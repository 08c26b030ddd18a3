package clustertest

import (
	"bytes"
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

// stopTimeout bounds a graceful stop (SIGTERM) before the process is killed.
const stopTimeout = 10 * time.Second

// binaries are the programs a deployment runs, built from this module.
type binaries struct {
	natsServer, ledger, gatekeeper string
}

// buildBinaries builds nats-server (the version go.mod pins), ledger and
// gatekeeper into a temporary directory, in one go build.
func buildBinaries(t *testing.T) binaries {
	t.Helper()
	dir := t.TempDir()
	// go test puts its own toolchain first on PATH.
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the binaries: %v", err)
	}
	start := time.Now()
	cmd := exec.Command(goTool, "build", "-o", dir+string(os.PathSeparator),
		"github.com/nats-io/nats-server/v2", "./cmd/ledger", "./cmd/gatekeeper")
	cmd.Dir = repoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("built nats-server, ledger and gatekeeper in %s", time.Since(start).Round(time.Millisecond))
	b := binaries{natsServer: filepath.Join(dir, "nats-server"), ledger: filepath.Join(dir, "ledger"),
		gatekeeper: filepath.Join(dir, "gatekeeper")}
	for _, p := range []string{b.natsServer, b.ledger, b.gatekeeper} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("go build did not produce %s: %v", p, err)
		}
	}
	return b
}

// process is a program started by a test, stopped when the test ends; its
// output is shown when the test fails.
type process struct {
	name   string
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{}
	err    error // set before exited is closed
}

// inheritedEnvSkipped are variables of the test's environment that would
// change what the processes do; each process gets only the ones it is given.
var inheritedEnvSkipped = []string{"NATS_", "LEDGER_", "GATEKEEPER_", "LICENSE_", "DATABASE_URL=", "DATA_DIR=", "LOG_"}

func startProcess(t *testing.T, name, bin string, args []string, env map[string]string) *process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = childEnv(env)
	p := &process{name: name, cmd: cmd, out: &syncBuffer{}, exited: make(chan struct{})}
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
		p.stop()
		if t.Failed() {
			t.Logf("--- output of %s (%v):\n%s", name, p.err, tail(p.out.String(), 12<<10))
		}
	})
	return p
}

// alive returns an error, with the output, if the process has exited.
func (p *process) alive() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited (%v):\n%s", p.name, p.err, tail(p.out.String(), 8<<10))
	default:
		return nil
	}
}

// stop sends SIGTERM and waits, killing the process after stopTimeout.
func (p *process) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// childEnv is the test's environment without inheritedEnvSkipped, plus env.
func childEnv(env map[string]string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !hasAnyPrefix(kv, inheritedEnvSkipped) {
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

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// service is a ledger or gatekeeper run the way its shipped systemd unit
// runs it (Restart=on-failure, RestartPreventExitStatus=2): a process that
// exits with status 4 (unavailable: NATS, the stream) before it is ready is
// started again, at most maxRestarts times, and the test log says so.
type service struct {
	name, bin string
	args      []string
	env       map[string]string
	readyURL  string
	diag      func() string // more context for a timeout, may be nil
	p         *process
	restarts  int
}

const maxRestarts = 2

func (s *service) start(t *testing.T) {
	t.Helper()
	s.p = startProcess(t, s.name, s.bin, s.args, s.env)
}

// waitReady waits until readyURL answers 200, restarting as above; others
// must stay up meanwhile.
func (s *service) waitReady(t *testing.T, others []*process) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	for {
		for _, p := range others {
			if err := p.alive(); err != nil {
				t.Fatalf("waiting for %s to be ready: %v", s.name, err)
			}
		}
		err := getOK(s.readyURL)
		if err == nil {
			return
		}
		if exitErr := s.p.alive(); exitErr != nil {
			if s.p.cmd.ProcessState.ExitCode() != 4 || s.restarts == maxRestarts {
				t.Fatalf("waiting for %s to be ready: %v", s.name, exitErr)
			}
			s.restarts++
			t.Logf("RESTART %s exited with status 4 before it was ready; started again as its unit would (%d/%d): %v",
				s.name, s.restarts, maxRestarts, exitErr)
			s.start(t)
			continue
		}
		if time.Now().After(deadline) {
			if s.diag != nil {
				err = fmt.Errorf("%w; %s", err, s.diag())
			}
			t.Fatalf("timed out after %s waiting for %s to be ready: %v", startTimeout, s.name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitFor polls check every 50 ms until it returns nil, failing the test
// after timeout or as soon as one of procs exits.
func waitFor(t *testing.T, what string, timeout time.Duration, procs []*process, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, p := range procs {
			if err := p.alive(); err != nil {
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
