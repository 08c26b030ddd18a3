package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// containerLimit is the memory limit a replica holding n orgs is started
// under for the limited start: the design's resident targets (150 MiB at
// 100,000 orgs, 1.5 GiB at 1,000,000, linear between and beyond), and
// below 100,000 orgs 64 MiB (the Go runtime, the NATS client and the
// listeners) plus the per-org share that reaches 150 MiB at 100,000.
func containerLimit(n int) int64 {
	const base, at100k, at1M = 64 << 20, 150 << 20, 1536 << 20
	if n >= 100_000 {
		return at100k + int64(n-100_000)*(at1M-at100k)/900_000
	}
	return base + int64(n)*(at100k-base)/100_000
}

// limitedStart: the replica from the stream again, inside a memory cgroup
// limited to containerLimit(n), as a Kubernetes memory limit would hold
// it: time to ready, the cgroup's peak (what the kernel holds against the
// limit), and the OOM killer's count, beside the same start without a
// limit. Where no cgroup can be created (no write access to a hierarchy
// with the memory controller), the limit is given the way the replica
// would have derived it, as GOMEMLIMIT (90%), and the row says so.
func (r *runner) limitedStart(ctx context.Context, ne *natsEnv, v *vendor, n int, free replicaRun) error {
	limit := containerLimit(n)
	readyTarget, _, at := startTargets(n)
	what := fmt.Sprintf("%s orgs, from the stream, under a %s container memory limit", fmtCount(n), fmtBytes(float64(limit)))
	o := replicaOpts{variant: "limit"}
	cg, cgErr := newMemCgroup(limit)
	note := "a memory cgroup (" + cgroupKind(cg) + "), as a container runtime sets one"
	if cgErr != nil {
		o.env = []string{"GOMEMLIMIT=" + strconv.FormatInt(limit*9/10, 10)}
		note = fmt.Sprintf("GOMEMLIMIT=%s, as the replica sets it from a container's limit: %v", fmtBytes(float64(limit*9/10)), cgErr)
	} else {
		o.cgroup = cg
		defer cg.remove()
	}
	r.progress("start: a replica from the stream under a %s memory limit (%s)", fmtBytes(float64(limit)), note)
	run, err := r.replicaProcess(ctx, ne, v, n, o)
	var u cgroupUsage
	if cg != nil {
		var uerr error
		if u, uerr = cg.usage(); uerr != nil {
			return fmt.Errorf("cgroup usage: %w", uerr)
		}
	}
	if err != nil {
		if u.OOMKills > 0 {
			r.add("replica under a memory limit, "+what, "killed by the OOM killer", fmt.Sprintf("cgroup peak %s", fmtBytes(float64(u.Peak))),
				0, "ready, never killed", ptr(false))
			return nil
		}
		return fmt.Errorf("replica under a %s memory limit: %w", fmtBytes(float64(limit)), err)
	}
	r.add("replica start → ready, "+what, fmtDur(run.ready), "no limit "+fmtDur(free.ready),
		float64(run.ready)/float64(free.ready), fmt.Sprintf("≤ %s (%s)", fmtDur(readyTarget), at), ptr(run.ready <= readyTarget))
	peak, ref := run.steady.HWM, "its peak (VmHWM)"
	if cg != nil {
		peak, ref = u.Peak, "the cgroup's peak"
	}
	// The kernel rounds a cgroup's limit to pages: within 1%.
	followed := run.memLimit > 0 && abs(run.memLimit-limit*9/10) <= limit/100
	held := followed && u.OOMKills == 0 && peak <= limit
	r.add("replica memory under a limit, "+what, fmtBytes(float64(peak))+" "+ref,
		fmt.Sprintf("RSS ready %s, steady %s; Go memory limit set to %s; OOM kills %d; no limit: peak (VmHWM) %s", fmtBytes(float64(run.atReady.RSS)),
			fmtBytes(float64(run.steady.RSS)), fmtBytes(float64(run.memLimit)), u.OOMKills, fmtBytes(float64(free.steady.HWM))),
		float64(peak)/float64(limit), "≤ the limit, limit followed, never killed", ptr(held))
	r.rows[len(r.rows)-1].Note = note
	return nil
}

// cgroupKind names a cgroup's hierarchy for a note.
func cgroupKind(c *memCgroup) string {
	switch {
	case c == nil:
		return "none"
	case c.v2:
		return "cgroup v2"
	}
	return "cgroup v1"
}

// parseMemLimitLog finds the Go memory limit a process logged setting
// (cli.SetMemoryLimit's "memory limit" line, JSON); 0 if none.
func parseMemLimitLog(log string) int64 {
	for _, line := range strings.Split(log, "\n") {
		var rec struct {
			Msg   string `json:"msg"`
			Bytes int64  `json:"gomemlimit_bytes"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "memory limit" {
			return rec.Bytes
		}
	}
	return 0
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}
