package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/licenseledger/ledger/internal/postgres"
)

// errNoExecutable marks a figure that starts the ledger binary when bench
// was not given it (Config.Executable).
var errNoExecutable = errors.New("no ledger executable to start")

// startOrgs is how many licensed orgs the start and restart figures
// hold.
func (r *runner) startOrgs() int {
	switch {
	case r.cfg.Orgs > 0:
		return r.cfg.Orgs
	case r.cfg.Full:
		return 1_000_000
	case r.cfg.Quick:
		return 5_000
	}
	return 100_000
}

// steadyAfter is how long after ready a process's memory counts as steady.
func (r *runner) steadyAfter() time.Duration {
	if r.cfg.Quick {
		return time.Second
	}
	return 5 * time.Second
}

// steadyDecisions is how many decisions a replica makes before its steady
// reading, each for an org drawn at random.
const steadyDecisions = 500

// startTargets are the design's targets for a replica holding n orgs:
// those at 100,000 orgs up to there, those at 1,000,000 beyond.
func startTargets(n int) (ready time.Duration, rss int64, at string) {
	if n > 100_000 {
		return 10 * time.Second, 1536 << 20, "at 1M"
	}
	return time.Second, 150 << 20, "at 100k"
}

// perOrgTarget is the design's resident memory per org (150 MiB at
// 100,000 orgs, 1.5 GiB at 1,000,000).
const perOrgTarget = 1.5 * 1024

// replicaRun is what one replica process measured.
type replicaRun struct {
	ready           time.Duration // process created → ready line read
	orgs            int           // cached orgs at ready
	atReady, steady memStatus
	afterGC         memStatus // after the replica's own GC returned its free pages (GET /heap)
	heap            replicaHeap
	load            loadLog
	memLimit        int64         // the Go memory limit it set from its container's (0: none)
	verified        time.Duration // ready → every license verified (orgs_unverified 0)
}

// replicaOpts are how a replica process is started.
type replicaOpts struct {
	dsn     string     // the PostgreSQL read model to load from ("": the stream alone)
	variant string     // names its profiles (Config.ProfilePrefix)
	cgroup  *memCgroup // started inside it, if set
	env     []string   // more environment
}

// startFigure: a fresh gatekeeper replica process (this binary as
// bench-replica: follower, gate, /authz) started on a stream holding one
// license upload per org, from the stream alone and from the PostgreSQL
// read model: time from creating the process to its ready line, and its
// resident memory read from /proc once ready and steady (after
// steadyDecisions decisions and steadyAfter). The reference is the same
// replica on the same stream before any org was added.
func (r *runner) startFigure(ctx context.Context) error {
	if r.cfg.Executable == "" {
		return errNoExecutable
	}
	n := r.startOrgs()
	v, ne, _, err := enforcingInstall(ctx)
	if err != nil {
		return err
	}
	defer ne.close()
	r.progress("start: a replica on the stream before any org (reference)")
	empty, err := r.replicaProcess(ctx, ne, v, 0, replicaOpts{variant: "empty"})
	if err != nil {
		return fmt.Errorf("replica on an empty stream: %w", err)
	}
	r.progress("start: appending %d licensed orgs", n)
	if err := fillStream(ctx, ne, v, n, n); err != nil {
		return err
	}
	r.progress("start: a replica from the stream")
	run, err := r.replicaProcess(ctx, ne, v, n, replicaOpts{variant: "stream"})
	if err != nil {
		return fmt.Errorf("replica from the stream: %w", err)
	}
	r.addStart(n, "from the stream", run, empty)
	if err := r.limitedStart(ctx, ne, v, n, run); err != nil {
		return err
	}

	pg, err := r.pgServer(ctx)
	if err != nil {
		return err
	}
	dsn, drop, err := pg.CreateDatabase()
	if err != nil {
		return err
	}
	defer drop()
	if err := r.fillReadModel(ctx, ne, v, dsn); err != nil {
		return err
	}
	r.progress("start: a replica from the PostgreSQL read model")
	run, err = r.replicaProcess(ctx, ne, v, n, replicaOpts{dsn: dsn, variant: "postgres"})
	if err != nil {
		return fmt.Errorf("replica from PostgreSQL: %w", err)
	}
	if run.load.From != "postgres" {
		return fmt.Errorf("the replica loaded from %q, not from the read model", run.load.From)
	}
	r.addStart(n, "from PostgreSQL", run, empty)
	return nil
}

// fillReadModel migrates the database at dsn and projects the whole
// stream into it (the ledger's projector, to the head).
func (r *runner) fillReadModel(ctx context.Context, ne *natsEnv, v *vendor, dsn string) error {
	if err := postgres.Migrate(ctx, dsn, postgres.MigrateUp, postgres.Roles{}, io.Discard); err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()
	bus, closeBus, err := ne.readerBus(ctx, "projector")
	if err != nil {
		return err
	}
	defer closeBus()
	_, head, err := bus.Stream(ctx)
	if err != nil {
		return err
	}
	r.progress("start: projecting %d events into the read model", head)
	took, err := projectAll(ctx, postgres.ProjectorConfig{Pool: pool, Source: bus, Keys: v.keys, InstallID: func() string { return "" }, Logger: r.log}, head)
	if err != nil {
		return err
	}
	r.progress("start: read model at %d in %s", head, took.Round(time.Millisecond))
	return nil
}

// addStart reports a replica start beside the empty-stream reference.
func (r *runner) addStart(n int, variant string, run, empty replicaRun) {
	readyTarget, rssTarget, at := startTargets(n)
	what := fmt.Sprintf("%s orgs, %s", fmtCount(n), variant)
	r.add("replica start → ready, "+what, fmtDur(run.ready),
		fmt.Sprintf("empty stream %s; the follower's own load %s (from %s)", fmtDur(empty.ready), fmtDur(run.load.Took), run.load.From),
		float64(run.ready)/float64(empty.ready), fmt.Sprintf("≤ %s (%s)", fmtDur(readyTarget), at), ptr(run.ready <= readyTarget))
	r.rows[len(r.rows)-1].Note = r.replicaKind()
	r.add("replica RSS once ready, "+what, fmtBytes(float64(run.atReady.RSS)),
		fmt.Sprintf("empty stream %s; peak (VmHWM) %s", fmtBytes(float64(empty.atReady.RSS)), fmtBytes(float64(run.atReady.HWM))),
		float64(run.atReady.RSS)/float64(empty.atReady.RSS), fmt.Sprintf("≤ %s (%s)", fmtBytes(float64(rssTarget)), at), ptr(run.atReady.RSS <= rssTarget))
	afterGC, heapKind := fmt.Sprintf("; after GC and FreeOSMemory %s", fmtBytes(float64(run.afterGC.RSS))), "its heap after GC"
	if r.cfg.Gatekeeper != "" {
		afterGC, heapKind = "", "its heap (go_memstats_heap_alloc_bytes)"
	}
	r.add(fmt.Sprintf("replica RSS steady (%s after every license was verified, %d decisions), %s", fmtDur(r.steadyAfter()), steadyDecisions, what), fmtBytes(float64(run.steady.RSS)),
		fmt.Sprintf("empty stream %s; peak (VmHWM) %s%s; every license verified %s after ready", fmtBytes(float64(empty.steady.RSS)), fmtBytes(float64(run.steady.HWM)), afterGC, fmtDur(run.verified)),
		float64(run.steady.RSS)/float64(empty.steady.RSS), fmt.Sprintf("≤ %s (%s)", fmtBytes(float64(rssTarget)), at), ptr(run.steady.RSS <= rssTarget))
	perOrg := float64(run.steady.RSS-empty.steady.RSS) / float64(n)
	heapPerOrg := float64(int64(run.heap.HeapAlloc)-int64(empty.heap.HeapAlloc)) / float64(n)
	r.add("replica RSS per org (steady minus empty), "+what, fmtBytes(perOrg),
		fmt.Sprintf("%s per org %s (heap %s, empty %s)", heapKind, fmtBytes(heapPerOrg), fmtBytes(float64(run.heap.HeapAlloc)), fmtBytes(float64(empty.heap.HeapAlloc))),
		perOrg/heapPerOrg, "≤ 1.50 KiB", ptr(perOrg <= perOrgTarget))
}

// replicaProcess starts a bench replica on ne's stream (and the read
// model at dsn, if any), waits for its ready line, reads its memory,
// makes steadyDecisions decisions through its /authz, reads its memory
// again steadyAfter after ready, and stops it. variant names its
// profiles (Config.ProfilePrefix).
func (r *runner) replicaProcess(ctx context.Context, ne *natsEnv, v *vendor, n int, o replicaOpts) (replicaRun, error) {
	if r.cfg.Gatekeeper != "" {
		return r.gatekeeperProcess(ctx, ne, v, n, o)
	}
	args := []string{"bench-replica", "--nats-url", ne.url, "--public-keys", v.env}
	if o.dsn != "" {
		args = append(args, "--database-url", o.dsn)
	}
	if pre := r.cfg.ProfilePrefix; pre != "" {
		args = append(args, "--cpuprofile", pre+".replica-"+o.variant+".cpu.pprof", "--heapprofile", pre+".replica-"+o.variant+".heap.pprof")
	}
	exe := r.cfg.Executable
	if o.cgroup != nil {
		exe, args = o.cgroup.wrap(exe, args)
	}
	p, err := startProc(exe, args, append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}, o.env...))
	if err != nil {
		return replicaRun{}, err
	}
	defer p.stop(30 * time.Second)
	rest, readyAt, err := p.line(ctx, lineReady, 30*time.Minute)
	if err != nil {
		return replicaRun{}, err
	}
	run := replicaRun{ready: readyAt.Sub(p.started)}
	if run.atReady, err = p.memory(); err != nil {
		return run, err
	}
	rl, err := parseReady(rest)
	if err != nil {
		return run, err
	}
	run.orgs = rl.Orgs
	base := "http://" + rl.Addr
	return r.measureReady(ctx, p, run, readyAt, n, base+"/authz", base+"/readyz", func(run *replicaRun) error {
		if err := getJSON(ctx, base+"/heap", &run.heap); err != nil {
			return err
		}
		var err error
		run.afterGC, err = p.memory()
		return err
	})
}

// measureReady takes a replica process p, ready at readyAt holding
// run.orgs orgs, to steady and stops it: steadyDecisions decisions through
// authz, its memory once readyz says every key was verified and
// steadyAfter passed (awaitSteady), its heap (heap), and what its log
// says of its load and memory limit.
func (r *runner) measureReady(ctx context.Context, p *proc, run replicaRun, readyAt time.Time, n int, authz, readyz string,
	heap func(*replicaRun) error) (replicaRun, error) {
	if run.orgs < n {
		return run, fmt.Errorf("ready with %d orgs, want %d", run.orgs, n)
	}
	if n > 0 {
		if err := decideRandom(ctx, authz, n, steadyDecisions); err != nil {
			return run, err
		}
	}
	var err error
	if run.verified, err = r.awaitSteady(ctx, readyz, readyAt); err != nil {
		return run, err
	}
	if run.steady, err = p.memory(); err != nil {
		return run, err
	}
	if err := heap(&run); err != nil {
		return run, err
	}
	if err := p.stop(30 * time.Second); err != nil {
		return run, fmt.Errorf("stop: %w", err)
	}
	run.load, _ = parseLoadLog(p.stderr.String())
	run.memLimit = parseMemLimitLog(p.stderr.String())
	r.progress("start: %d orgs ready in %s (follower %s from %s), RSS %s → %s, every key verified %s after ready", run.orgs, fmtDur(run.ready),
		fmtDur(run.load.Took), run.load.From, fmtBytes(float64(run.atReady.RSS)), fmtBytes(float64(run.steady.RSS)), fmtDur(run.verified))
	return run, nil
}

// decideRandom asks /authz at url count times, each for a licensed org
// org-K drawn among n, as nginx would; each must be allowed.
func decideRandom(ctx context.Context, url string, n, count int) error {
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	for range count {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		org := "org-" + strconv.Itoa(rand.IntN(n))
		req.Header = http.Header{"X-Org-Slug": {org}, "X-Original-Method": {"GET"}, "X-Original-Uri": {"/api/projects/42"}}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/authz for %s: %s (%s)", org, resp.Status, resp.Header.Get("X-License-Error"))
		}
	}
	return nil
}

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// fmtCount writes n with thousands separators.
func fmtCount(n int) string {
	s := strconv.Itoa(n)
	if n < 0 {
		return "-" + fmtCount(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// replicaKind says which program the start figure measured.
func (r *runner) replicaKind() string {
	if r.cfg.Gatekeeper != "" {
		return "the gatekeeper binary"
	}
	return "ledger bench-replica (the gatekeeper's packages in the ledger binary: about 16 MiB more at rest than the gatekeeper)"
}

// awaitSteady waits until a replica ready at readyAt is steady:
// steadyAfter after its background verification ended (/readyz
// orgs_unverified 0; it hands its memory back then, a collection that
// takes seconds at a million orgs). It returns how long after ready every
// license was verified.
func (r *runner) awaitSteady(ctx context.Context, readyz string, readyAt time.Time) (time.Duration, error) {
	var verified time.Duration
	for {
		var h struct {
			Unverified *int `json:"orgs_unverified"`
		}
		if err := getJSON(ctx, readyz, &h); err != nil {
			return 0, err
		}
		if h.Unverified == nil {
			return 0, fmt.Errorf("%s: no orgs_unverified", readyz)
		}
		if *h.Unverified == 0 {
			verified = time.Since(readyAt)
			break
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	until := readyAt.Add(verified + r.steadyAfter())
	select {
	case <-time.After(time.Until(until)):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return verified, nil
}
