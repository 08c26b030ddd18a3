// Package metricstest checks a process's Prometheus exposition the way
// an operator's tooling will read it: promtool's lint, and the project's
// own rule that a measure carries its unit in its name.
package metricstest

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/internal/testenv"
)

// unitSuffixes are the suffixes a metric whose name says it measures
// something (a lag, an age, a duration, a time) must end with.
var unitSuffixes = []string{"_seconds", "_events", "_bytes", "_total", "_ratio"}

// measureWords name quantities that need a unit.
var measureWords = []string{"lag", "age", "duration", "staleness", "latency", "timestamp", "time", "delay"}

// Check runs promtool check metrics on exposition (a /metrics body) and
// reports every metric of the project's (ledger_, gatekeeper_, license_)
// that measures something without its unit in its name. Deprecated names
// kept for a release say so in their help ("Deprecated:") and are exempt.
func Check(t testing.TB, exposition []byte) {
	t.Helper()
	promtool := testenv.RequireTool(t, "promtool")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(exposition)
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	for _, name := range Unitless(exposition) {
		t.Errorf("metric %s measures something without its unit in its name (want one of %s)", name, strings.Join(unitSuffixes, ", "))
	}
}

// Unitless returns the project's metric names in exposition that contain a
// measure word but end in no unit suffix, deprecated ones excepted.
func Unitless(exposition []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(exposition))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), " ", 4)
		if len(f) < 4 || f[0] != "#" || f[1] != "HELP" || strings.HasPrefix(f[3], "Deprecated:") {
			continue
		}
		name := f[2]
		if !strings.HasPrefix(name, "ledger_") && !strings.HasPrefix(name, "gatekeeper_") && !strings.HasPrefix(name, "license_") {
			continue
		}
		if measures(name) && !hasUnit(name) {
			out = append(out, name)
		}
	}
	return out
}

func measures(name string) bool {
	for _, part := range strings.Split(name, "_") {
		for _, w := range measureWords {
			if part == w {
				return true
			}
		}
	}
	return false
}

func hasUnit(name string) bool {
	for _, s := range unitSuffixes {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}
