package clustertest

import (
	"fmt"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/testenv/proctest"
)

// binaries are the programs a deployment runs, built from this module,
// and the nats CLI an operator runs against it.
type binaries struct {
	natsServer, ledger, gatekeeper, natsCLI string
}

// bins holds the programs, built once for all tests of the package.
var bins proctest.Cache

// buildBinaries builds nats-server and the nats CLI (the versions go.mod
// pins), ledger and gatekeeper, in one go build the first time.
func buildBinaries(t *testing.T) binaries {
	t.Helper()
	b := bins.Get(t, proctest.NATSServer, proctest.Ledger, proctest.Gatekeeper, proctest.NATSCLI)
	return binaries{natsServer: b["nats-server"], ledger: b["ledger"], gatekeeper: b["gatekeeper"], natsCLI: b["nats"]}
}

// process is a program started by a test (proctest.Process).
type process = proctest.Process

func startProcess(t *testing.T, name, bin string, args []string, env map[string]string) *process {
	t.Helper()
	return proctest.Start(t, name, bin, args, env)
}

func childEnv(env map[string]string) []string { return proctest.ChildEnv(env) }

func waitFor(t *testing.T, what string, timeout time.Duration, procs []*process, check func() error) {
	t.Helper()
	proctest.WaitFor(t, what, timeout, procs, check)
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
			if err := p.Alive(); err != nil {
				t.Fatalf("waiting for %s to be ready: %v", s.name, err)
			}
		}
		err := proctest.GetOK(s.readyURL)
		if err == nil {
			return
		}
		if exitErr := s.p.Alive(); exitErr != nil {
			if s.p.ExitCode() != 4 || s.restarts == maxRestarts {
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
