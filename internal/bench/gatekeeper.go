package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// gatekeeperProcess is replicaProcess with the gatekeeper binary itself
// (Config.Gatekeeper) as the replica: /authz and the admin listener on
// free loopback ports, JSON logs, ready when /readyz answers 200. The
// binary has no /heap: the heap it reports is go_memstats_heap_alloc_bytes
// from its /metrics at the steady reading (not after a collection).
func (r *runner) gatekeeperProcess(ctx context.Context, ne *natsEnv, v *vendor, n int, o replicaOpts) (replicaRun, error) {
	authz, err := freePort()
	if err != nil {
		return replicaRun{}, err
	}
	admin, err := freePort()
	if err != nil {
		return replicaRun{}, err
	}
	dir, err := os.MkdirTemp("", "ledger-bench-gatekeeper-")
	if err != nil {
		return replicaRun{}, err
	}
	defer os.RemoveAll(dir)
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "DATA_DIR=" + dir, "LOG_FORMAT=json",
		// The bench's server has no authorization: any user is let in.
		"NATS_URL=" + ne.url, "NATS_USER=bench", "LICENSE_PUBLIC_KEYS=" + v.env,
		"GATEKEEPER_LISTEN=off", "GATEKEEPER_AUTHZ_LISTEN=127.0.0.1:" + strconv.Itoa(authz),
		"GATEKEEPER_ADMIN_LISTEN=127.0.0.1:" + strconv.Itoa(admin)}
	if o.dsn != "" {
		env = append(env, "DATABASE_URL="+o.dsn)
	}
	exe, args := r.cfg.Gatekeeper, []string(nil)
	if o.cgroup != nil {
		exe, args = o.cgroup.wrap(exe, args)
	}
	p, err := startProc(exe, args, append(env, o.env...))
	if err != nil {
		return replicaRun{}, err
	}
	defer p.stop(30 * time.Second)
	adminBase := "http://127.0.0.1:" + strconv.Itoa(admin)
	readyAt, err := pollOK(ctx, p, adminBase+"/readyz", 5*time.Millisecond, 30*time.Minute)
	if err != nil {
		return replicaRun{}, err
	}
	run := replicaRun{ready: readyAt.Sub(p.started)}
	if run.atReady, err = p.memory(); err != nil {
		return run, err
	}
	var health struct {
		Orgs int `json:"orgs_cached"`
	}
	if err := getJSON(ctx, adminBase+"/readyz", &health); err != nil {
		return run, err
	}
	run.orgs = health.Orgs
	return r.measureReady(ctx, p, run, readyAt, n, "http://127.0.0.1:"+strconv.Itoa(authz)+"/authz", adminBase+"/readyz",
		func(run *replicaRun) error {
			run.afterGC = run.steady
			var err error
			run.heap.HeapAlloc, err = metricValue(ctx, adminBase+"/metrics", "go_memstats_heap_alloc_bytes")
			return err
		})
}

// metricValue reads one unlabelled sample from a Prometheus text page.
func metricValue(ctx context.Context, url, name string) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				return 0, fmt.Errorf("%s: %w", name, err)
			}
			return uint64(f), nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s: no %s", url, name)
}
