//go:build unix

package deploytest

import (
	"os/exec"
	"syscall"
)

// asUser makes cmd run as uid:gid (the caller must be root).
func asUser(uid, gid uint32) func(*exec.Cmd) {
	return func(cmd *exec.Cmd) {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	}
}
