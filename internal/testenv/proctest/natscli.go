package proctest

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// NATSCLI is the nats command line tool at the version of go.mod's tool
// line; Build names it "nats".
const NATSCLI = "github.com/nats-io/natscli/nats"

// NATSCLITimeout bounds one run of the nats CLI.
const NATSCLITimeout = 2 * time.Minute

// RunNATSCLI runs the nats CLI bin (built by Build from NATSCLI) with args
// and returns what it wrote to stdout and stderr. The CLI sees no NATS_
// variable of the test's environment and an empty home directory, so no
// saved context of the machine's user selects a server or credentials: it
// uses exactly the flags given. A run that exits non-zero returns its exit
// status as the error; one that outlives NATSCLITimeout is killed.
func RunNATSCLI(t testing.TB, bin string, args ...string) (string, error) {
	t.Helper()
	home := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), NATSCLITimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = ChildEnv(map[string]string{
		"HOME": home, "XDG_CONFIG_HOME": filepath.Join(home, ".config"), "XDG_DATA_HOME": filepath.Join(home, ".local", "share"),
	})
	dieWithParent(cmd)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("nats %s: %s (%v)", strings.Join(args, " "), time.Since(start).Round(time.Millisecond), err)
	if ctx.Err() != nil {
		err = fmt.Errorf("killed after %s: %w", NATSCLITimeout, errors.Join(err, ctx.Err()))
	}
	return string(out), err
}
