package manifesttest

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/internal/testenv"
)

// promtool checks the shipped alert rules and runs their unit tests
// (deploy/prometheus/alerts_test.yml: input series, the alerts expected
// at each time). With CI set, a missing promtool fails (.ci/run installs
// the Debian package prometheus).
func TestAlertRulesPromtool(t *testing.T) {
	promtool := testenv.RequireTool(t, "promtool")
	dir := filepath.Join(repoRoot(t), "deploy", "prometheus")
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
