package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/internal/bench"
)

// ledger bench prints each figure beside its reference, and exits 0 even
// when a target is missed.
func TestBenchQuickJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("measures for a few seconds")
	}
	code, out, errOut := runCmd(t, nil, "bench", "--quick", "--json", "--only", "decision", "--only", "propagation")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rows []bench.Row
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("output is not JSON rows: %v\n%s", err, out)
	}
	find := func(prefix string) bench.Row {
		for _, r := range rows {
			if strings.HasPrefix(r.Figure, prefix) {
				return r
			}
		}
		t.Fatalf("no %q row in %+v", prefix, rows)
		return bench.Row{}
	}
	for _, name := range []string{"decision, cached entry (ns/op)", "propagation p99, 8 replicas", "propagation p50, 8 replicas",
		"propagation p99, 64 replicas", "propagation p50, 64 replicas"} {
		r := find(name)
		if r.Value == "" || r.Reference == "" || r.Ratio == nil {
			t.Errorf("%s: value %q beside reference %q, ratio %v", name, r.Value, r.Reference, r.Ratio)
		}
	}
	for _, name := range []string{"decision, cached entry (ns/op)", "decision, cached entry (allocs/op)", "propagation p99, 8 replicas", "propagation p99, 64 replicas"} {
		if r := find(name); r.Result != "pass" && r.Result != "miss" || r.Target == "" {
			t.Errorf("%s: target %q, result %q", name, r.Target, r.Result)
		}
	}
	if !strings.Contains(errOut, "bench: decision: measuring") {
		t.Errorf("no progress on stderr: %q", errOut)
	}
}

func TestBenchUsageAndUnmeasurable(t *testing.T) {
	if code, _, errOut := runCmd(t, nil, "bench", "--only", "everything"); code != 2 || !strings.Contains(errOut, "everything") {
		t.Errorf("unknown figure: exit %d, %q", code, errOut)
	}
	// PostgreSQL pointed at nothing: the replay cannot be measured. The
	// CPU profile is written all the same, 0600 even over a 0644 file.
	profile := filepath.Join(t.TempDir(), "cpu.pprof")
	if err := os.WriteFile(profile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(profile, 0o644)
	code, out, errOut := runCmd(t, map[string]string{"LEDGER_TEST_DATABASE_URL": "postgres://nobody@127.0.0.1:1/none?connect_timeout=1"},
		"bench", "--quick", "--only", "replay", "--cpuprofile", profile)
	if code != 4 || !strings.Contains(errOut, "replay") {
		t.Errorf("unmeasurable replay: exit %d, stderr %q", code, errOut)
	}
	if fi, err := os.Stat(profile); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() == 0 {
		t.Errorf("--cpuprofile %s: %v %v, want a profile of mode 0600", profile, fi, err)
	}
	if !strings.HasPrefix(out, "figure") {
		t.Errorf("the table is printed even so: %q", out)
	}
}

// The replica bench starts as a process of its own is this binary's
// hidden command: absent from --help, and it needs its stream and keys.
func TestBenchReplicaHidden(t *testing.T) {
	code, out, _ := runCmd(t, nil, "--help")
	if code != 0 || strings.Contains(out, "bench-replica") || !strings.Contains(out, "bench") {
		t.Errorf("--help: exit %d, lists bench-replica or omits bench: %s", code, out)
	}
	for _, k := range []string{"NATS_URL", "LICENSE_PUBLIC_KEYS"} {
		t.Setenv(k, "") // restored after the test
		os.Unsetenv(k)
	}
	code, _, errOut := runCmd(t, nil, "bench-replica")
	if code != 2 || !strings.Contains(errOut, "--nats-url") {
		t.Errorf("bench-replica without its settings: exit %d, %q", code, errOut)
	}
	// The figures that start it are known to --only; without PostgreSQL
	// nothing else of them is needed to refuse an unknown one.
	if code, _, errOut := runCmd(t, nil, "bench", "--only", "start,restart,startup"); code != 2 || !strings.Contains(errOut, "startup") {
		t.Errorf("--only start,restart,startup: exit %d, %q", code, errOut)
	}
}
