//go:build unix

package proxies

import (
	"os/exec"
	"syscall"
)

// ownProcessGroup starts the proxy in a process group of its own, so that
// stopping it also reaches any process it forked.
func ownProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

func terminateGroup(cmd *exec.Cmd) { signalGroup(cmd, syscall.SIGTERM) }

func killGroup(cmd *exec.Cmd) { signalGroup(cmd, syscall.SIGKILL) }

func signalGroup(cmd *exec.Cmd, sig syscall.Signal) {
	// With Setpgid the group id is the leader's pid; a negative pid
	// addresses the whole group.
	_ = syscall.Kill(-cmd.Process.Pid, sig)
}
