package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/licenseledger/ledger/gatekeeper"
	"github.com/licenseledger/ledger/gatekeeper/follow"
)

// memoryOrgs is how many licensed orgs the gatekeeper holds.
func (r *runner) memoryOrgs() int {
	if r.cfg.Quick {
		return 10_000
	}
	return 100_000
}

// memoryFigure: the gatekeeper's heap per cached licensed org (a replica
// that loaded every org and decided one request for each, minus the same
// process once that replica is gone), and the ledger's RSS idle on the
// embedded default.
func (r *runner) memoryFigure(ctx context.Context) error {
	n := r.memoryOrgs()
	v, ne, err := r.filledStream(ctx, "memory", n, n)
	if err != nil {
		return err
	}
	defer ne.close()
	held, err := r.heldHeap(ctx, ne, v, n)
	if err != nil {
		return err
	}
	perOrg := held / float64(n)
	r.add(fmt.Sprintf("gatekeeper heap per cached org (%d orgs)", n), fmtBytes(perOrg), "total "+fmtBytes(held), -1,
		"≤ 1 KiB", ptr(perOrg <= 1024))
	if r.cfg.Executable == "" {
		return nil
	}
	rss, err := r.ledgerIdleRSS(ctx)
	if err != nil {
		return fmt.Errorf("ledger idle RSS: %w", err)
	}
	r.add("ledger RSS idle, embedded default", fmtBytes(float64(rss)), "", -1, "", nil)
	return nil
}

// heldHeap loads a replica with n orgs, decides once per org, and returns
// the live heap that goes away with the replica.
func (r *runner) heldHeap(ctx context.Context, ne *natsEnv, v *vendor, n int) (float64, error) {
	bus, closeBus, err := ne.readerBus(ctx, "gatekeeper")
	if err != nil {
		return 0, err
	}
	defer closeBus()
	f, err := follow.New(follow.Config{Stream: bus, Keys: v.keys, Logger: r.log})
	if err != nil {
		return 0, err
	}
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { f.Run(fctx); close(done) }()
	stop := func() { cancel(); <-done }
	r.progress("memory: loading a replica")
	if err := f.Wait(ctx); err != nil {
		stop()
		return 0, err
	}
	if h := f.Health(); h.OrgsCached < n {
		stop()
		return 0, fmt.Errorf("replica holds %d orgs, want %d", h.OrgsCached, n)
	}
	g, err := gatekeeper.New(f, gatekeeper.Config{})
	if err != nil {
		stop()
		return 0, err
	}
	req, err := inboundRequest("/api/projects/42")
	if err != nil {
		stop()
		return 0, err
	}
	req.RemoteAddr = "127.0.0.1:53412"
	for i := range n {
		req.Header.Set("X-Org-Slug", "org-"+strconv.Itoa(i))
		if d := g.Decide(req); !d.Allowed {
			stop()
			return 0, fmt.Errorf("org-%d denied: %s", i, d.Code)
		}
	}
	// The embedded server keeps the message blocks the replica's fold read
	// cached until they go unread for cacheExpiry: let that pass, so that
	// the figure holds the replica only, whether or not the cache happens
	// to expire between the two readings.
	select {
	case <-time.After(cacheExpiry):
	case <-ctx.Done():
		stop()
		return 0, ctx.Err()
	}
	with := liveHeap()
	runtime.KeepAlive(g)
	stop()
	f, g = nil, nil
	without := liveHeap()
	if with <= without {
		return 0, errors.New("the replica's heap could not be told apart")
	}
	return float64(with - without), nil
}

// cacheExpiry is a little over how long nats-server's file store keeps
// unread message blocks in memory (10 s).
const cacheExpiry = 11 * time.Second

// liveHeap is the heap in use after a full collection.
func liveHeap() uint64 {
	var ms runtime.MemStats
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// ledgerIdleRSS starts `ledger serve` on the embedded default (fresh data
// directory, loopback ports chosen by the system), waits until the API
// listens and a second more, and reads its resident set size.
func (r *runner) ledgerIdleRSS(ctx context.Context) (int64, error) {
	dir, err := os.MkdirTemp("", "ledger-bench-serve-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	cmd := exec.CommandContext(ctx, r.cfg.Executable, "serve", "--data-dir", dir, "--listen", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "LOG_FORMAT=text"}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		signalled := false
		for sc.Scan() {
			if !signalled && strings.Contains(sc.Text(), "API listening") {
				close(listening)
				signalled = true
			}
		}
	}()
	select {
	case <-listening:
	case <-time.After(60 * time.Second):
		return 0, errors.New("ledger serve did not start listening within 60 s")
	}
	time.Sleep(2 * time.Second)
	m, err := readMemStatus(cmd.Process.Pid)
	return m.RSS, err
}
