// Package testenv holds test helpers shared by every package's tests. Its
// subpackages start real dependencies: natstest (embedded NATS) and pgtest
// (PostgreSQL).
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// RequireTool returns the path of an external program the test drives. A
// missing tool skips the test on a developer machine and fails it when the
// CI variable is set: CI must never pass by skipping.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is required (CI is set): install it (.ci/run does)", name)
	}
	t.Skipf("%s not installed", name)
	return ""
}
