package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ErrNoServerBinaries means initdb and pg_ctl could not be found.
var ErrNoServerBinaries = errors.New("initdb and pg_ctl not found on PATH or in /usr/lib/postgresql/*/bin")

// startAttempts covers the rare case of another process taking the free
// port between choosing it and the server binding it.
const startAttempts = 3

// cluster is a PostgreSQL instance created by pgtest in a temporary
// directory, owned by an unprivileged user when tests run as root because
// initdb and postgres refuse to run as root.
type cluster struct {
	bin      string
	dir      string // holds data/, sock/ and postgres.log
	user     *runAs // nil when already unprivileged
	port     int
	started  bool
	watchdog *os.File // closing it, or exiting, makes the watchdog clean up

	stopOnce sync.Once
	stopErr  error
}

// StartThrowaway starts a new PostgreSQL cluster for the calling test, even
// when another server is available, and returns the DSN of its postgres
// database (user postgres, trust authentication). The cluster is stopped
// and deleted when the test ends.
func StartThrowaway(t testing.TB) string {
	t.Helper()
	return StartThrowawayCluster(t).DSN()
}

// Throwaway is a PostgreSQL cluster of the calling test alone, which the
// test may stop and start again (a database outage) on the same port with
// the same data.
type Throwaway struct {
	c *cluster
}

// StartThrowawayCluster is StartThrowaway returning the cluster, so the
// test can stop and restart the server.
func StartThrowawayCluster(t testing.TB) *Throwaway {
	t.Helper()
	c, err := startCluster()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := c.stop(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return &Throwaway{c: c}
}

// DSN is the postgres database as user postgres (trust authentication).
func (tw *Throwaway) DSN() string { return tw.c.dsn() }

// BinDir is the directory of the server's programs (pg_dump, pg_restore
// and psql of the same version live there).
func (tw *Throwaway) BinDir() string { return tw.c.bin }

// Stop shuts the server down ("fast" mode: every session is terminated at
// once, clients see their connections drop) and keeps its data for Start.
// Not "immediate": the cluster runs with synchronous_commit off, so a
// crash could lose commits already acknowledged, which a production
// server would not.
func (tw *Throwaway) Stop(t testing.TB) {
	t.Helper()
	if err := tw.c.run("pg_ctl", "-D", tw.c.dataDir(), "-m", "fast", "-w", "stop"); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	tw.c.started = false
}

// Start starts a stopped server again on the same port with its data.
func (tw *Throwaway) Start(t testing.TB) {
	t.Helper()
	if err := tw.c.pgCtlStart(); err != nil {
		t.Fatalf("pgtest: restart: %v", err)
	}
	tw.c.started = true
}

func startCluster() (*cluster, error) {
	bin, err := ServerBinDir()
	if err != nil {
		return nil, err
	}
	user, err := unprivilegedUser()
	if err != nil {
		return nil, err
	}
	c := &cluster{bin: bin, user: user}
	if err := c.prepareDir(); err != nil {
		return nil, err
	}
	if err := c.startWatchdog(); err != nil {
		os.RemoveAll(c.dir)
		return nil, err
	}
	if err := c.initdb(); err != nil {
		return nil, errors.Join(err, c.stop())
	}
	if err := c.startServer(); err != nil {
		return nil, errors.Join(err, c.stop())
	}
	return c, nil
}

func (c *cluster) dsn() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

func (c *cluster) dataDir() string { return filepath.Join(c.dir, "data") }

// prepareDir creates the directory outside t.TempDir: the test's temporary
// directories are private to the current user, so a different server user
// could not reach them.
func (c *cluster) prepareDir() error {
	dir, err := os.MkdirTemp("", "ledger-pgtest-")
	if err != nil {
		return fmt.Errorf("create cluster directory: %w", err)
	}
	c.dir = dir
	sock := filepath.Join(dir, "sock")
	err = os.Mkdir(sock, 0o700)
	if err == nil {
		err = errors.Join(c.user.chown(dir), c.user.chown(sock))
	}
	if err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("prepare cluster directory: %w", err)
	}
	return nil
}

func (c *cluster) initdb() error {
	return c.run("initdb", "-D", c.dataDir(), "--no-sync", "-A", "trust", "-U", "postgres",
		"-E", "UTF8", "--locale=C")
}

func (c *cluster) startServer() error {
	var err error
	for range startAttempts {
		if c.port, err = freePort(); err != nil {
			return err
		}
		if err = c.pgCtlStart(); err == nil {
			c.started = true
			return nil
		}
	}
	return err
}

// pgCtlStart starts the server on loopback only, with durability switched
// off since the data is thrown away. The log file also keeps postgres from
// inheriting our output pipe, which would block waiting for pg_ctl.
func (c *cluster) pgCtlStart() error {
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off "+
		"-c synchronous_commit=off -c full_page_writes=off", c.port, filepath.Join(c.dir, "sock"))
	logFile := filepath.Join(c.dir, "postgres.log")
	err := c.run("pg_ctl", "-D", c.dataDir(), "-l", logFile, "-w", "-t", "60", "-o", opts, "start")
	if err != nil {
		return fmt.Errorf("%w\nserver log:\n%s", err, tail(logFile))
	}
	return nil
}

// stop shuts the server down without a checkpoint and deletes its files.
func (c *cluster) stop() error {
	c.stopOnce.Do(func() {
		if c.started {
			c.stopErr = c.run("pg_ctl", "-D", c.dataDir(), "-m", "immediate", "-w", "stop")
		}
		c.stopErr = errors.Join(c.stopErr, os.RemoveAll(c.dir))
		// Nothing is left for the watchdog to do; let it exit.
		c.watchdog.Close()
	})
	return c.stopErr
}

func (c *cluster) run(name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := c.command(ctx, name, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s%s: %w\n%s", name, c.user.describe(), err, out)
	}
	return nil
}

func (c *cluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, name), args...)
	cmd.Dir = c.dir
	cmd.SysProcAttr = c.user.procAttr(false)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// startWatchdog runs a shell that blocks reading a pipe whose only writer is
// this process. When the process exits for any reason, including a panic,
// a test timeout or SIGKILL, the pipe closes and the shell stops the server
// and deletes the directory. It runs in its own process group so a Ctrl-C
// aimed at go test does not kill it before it has cleaned up.
func (c *cluster) startWatchdog() error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	script := `read line; "$@" >/dev/null 2>&1; rm -rf "$PGTEST_DIR"`
	cmd := exec.Command("/bin/sh", "-c", script, "pgtest-watchdog",
		filepath.Join(c.bin, "pg_ctl"), "-D", c.dataDir(), "-m", "immediate", "-w", "stop")
	cmd.Env = append(os.Environ(), "PGTEST_DIR="+c.dir)
	cmd.Dir = c.dir
	cmd.Stdin = r
	cmd.SysProcAttr = c.user.procAttr(true)
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("start cleanup watchdog: %w", err)
	}
	c.watchdog = w
	go cmd.Wait() // reap it; it lives as long as the cluster
	return nil
}

// ServerBinDir returns the directory holding initdb and pg_ctl: the one of
// initdb on PATH (after resolving symlinks), else the newest
// /usr/lib/postgresql/<version>/bin.
func ServerBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil && hasServerBinaries(filepath.Dir(real)) {
			return filepath.Dir(real), nil
		}
		if hasServerBinaries(filepath.Dir(p)) {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if hasServerBinaries(d) {
			return d, nil
		}
	}
	return "", ErrNoServerBinaries
}

func hasServerBinaries(dir string) bool {
	return isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "pg_ctl"))
}

func isExecutable(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.Mode().IsRegular() && info.Mode().Perm()&0o111 != 0
}

// version turns /usr/lib/postgresql/9.6/bin into 9006 and .../15/bin into
// 15000, so that 15 sorts above 9.6.
func version(binDir string) int {
	major, minor, _ := strings.Cut(filepath.Base(filepath.Dir(binDir)), ".")
	ma, _ := strconv.Atoi(major)
	mi, _ := strconv.Atoi(minor)
	return ma*1000 + mi
}

// freePort picks a loopback port; it is released before postgres binds it,
// which startServer tolerates by retrying.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the end of the server log for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	const max = 4000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}
