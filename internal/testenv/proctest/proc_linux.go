//go:build linux

package proctest

import (
	"os/exec"
	"syscall"
)

// dieWithParent kills the process if the test binary dies first (a panic
// or a timeout), so no server outlives the test.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
