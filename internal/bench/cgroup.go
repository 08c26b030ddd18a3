package bench

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// A memCgroup is a memory cgroup the bench starts a process in, limited as
// a container runtime limits a container (Kubernetes'
// resources.limits.memory): the kernel reclaims, then kills the process
// when it goes over, and the process finds the limit from
// /proc/self/cgroup (ledger serve, gatekeeper and the bench replica set
// their Go memory limit to 90% of it). cgroup v2 (the unified hierarchy at
// /sys/fs/cgroup) and v1 (the memory controller's own hierarchy) are both
// handled; creating one needs write access to the hierarchy (root).
type memCgroup struct {
	dir   string
	v2    bool
	limit int64
}

// cgroupSeq names the cgroups of one bench process apart.
var cgroupSeq atomic.Int64

// cgroupRoots are where a memory cgroup may be created, v2 first.
var cgroupRoots = []struct {
	dir string
	v2  bool
}{
	{"/sys/fs/cgroup", true},
	{"/sys/fs/cgroup/unified", true},
	{"/sys/fs/cgroup/memory", false},
}

// newMemCgroup creates a memory cgroup limited to limit bytes, without
// swap. The error says why none could be created.
func newMemCgroup(limit int64) (*memCgroup, error) {
	var why []error
	for _, root := range cgroupRoots {
		if !hasMemoryController(root.dir, root.v2) {
			continue
		}
		c := &memCgroup{dir: filepath.Join(root.dir, fmt.Sprintf("ledger-bench-%d-%d", os.Getpid(), cgroupSeq.Add(1))), v2: root.v2, limit: limit}
		if err := os.Mkdir(c.dir, 0o755); err != nil {
			why = append(why, err)
			continue
		}
		if err := c.setLimit(); err != nil {
			os.Remove(c.dir)
			why = append(why, err)
			continue
		}
		return c, nil
	}
	if len(why) == 0 {
		return nil, errors.New("no cgroup hierarchy with the memory controller is mounted")
	}
	return nil, fmt.Errorf("no memory cgroup could be created: %w", errors.Join(why...))
}

// hasMemoryController reports whether dir is a cgroup hierarchy where a
// child may be limited in memory.
func hasMemoryController(dir string, v2 bool) bool {
	if !v2 {
		_, err := os.Stat(filepath.Join(dir, "memory.limit_in_bytes"))
		return err == nil
	}
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	return err == nil && strings.Contains(" "+strings.TrimSpace(string(b))+" ", " memory ")
}

func (c *memCgroup) setLimit() error {
	limit := strconv.FormatInt(c.limit, 10)
	if c.v2 {
		if err := os.WriteFile(filepath.Join(c.dir, "memory.max"), []byte(limit), 0o644); err != nil {
			return err
		}
		os.WriteFile(filepath.Join(c.dir, "memory.swap.max"), []byte("0"), 0o644) // absent without swap accounting
		return nil
	}
	if err := os.WriteFile(filepath.Join(c.dir, "memory.limit_in_bytes"), []byte(limit), 0o644); err != nil {
		return err
	}
	os.WriteFile(filepath.Join(c.dir, "memory.memsw.limit_in_bytes"), []byte(limit), 0o644) // absent without swap accounting
	return nil
}

// wrap returns the command that runs exe with args inside the cgroup: a
// shell that moves itself in, then execs exe (same pid, so /proc/PID
// reads exe's memory).
func (c *memCgroup) wrap(exe string, args []string) (string, []string) {
	return "/bin/sh", append([]string{"-c", `echo $$ > "$0" && exec "$@"`, filepath.Join(c.dir, "cgroup.procs"), exe}, args...)
}

// usage is the cgroup's memory now and at its peak (what the limit is
// held against), and how many times the kernel's OOM killer ran in it.
type cgroupUsage struct {
	Now, Peak int64
	OOMKills  int64
}

func (c *memCgroup) usage() (cgroupUsage, error) {
	var u cgroupUsage
	var err error
	if c.v2 {
		if u.Now, err = readInt(filepath.Join(c.dir, "memory.current")); err != nil {
			return u, err
		}
		u.Peak, _ = readInt(filepath.Join(c.dir, "memory.peak")) // Linux ≥ 5.19
		u.OOMKills, err = readKeyed(filepath.Join(c.dir, "memory.events"), "oom_kill")
		return u, err
	}
	if u.Now, err = readInt(filepath.Join(c.dir, "memory.usage_in_bytes")); err != nil {
		return u, err
	}
	if u.Peak, err = readInt(filepath.Join(c.dir, "memory.max_usage_in_bytes")); err != nil {
		return u, err
	}
	if u.OOMKills, err = readKeyed(filepath.Join(c.dir, "memory.oom_control"), "oom_kill"); err != nil {
		// Before Linux 4.13: the limit was hit (failcnt) is what is known.
		u.OOMKills, err = readInt(filepath.Join(c.dir, "memory.failcnt"))
	}
	return u, err
}

// remove deletes the cgroup once its processes have exited.
func (c *memCgroup) remove() error {
	var err error
	for range 50 {
		if err = os.Remove(c.dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("remove cgroup %s: %w", c.dir, err)
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// readKeyed reads the value of key from a "key value" per line file.
func readKeyed(path, key string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), " "); ok && k == key {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s: no %s", path, key)
}
