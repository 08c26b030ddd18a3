//go:build !unix

package proxies

import "os/exec"

func ownProcessGroup(*exec.Cmd) {}

// Without process groups, stopping means killing the process itself.
func terminateGroup(cmd *exec.Cmd) { _ = cmd.Process.Kill() }

func killGroup(cmd *exec.Cmd) { _ = cmd.Process.Kill() }
