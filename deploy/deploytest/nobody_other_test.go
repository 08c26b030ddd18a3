//go:build !unix

package deploytest

import "os/exec"

func asUser(uid, gid uint32) func(*exec.Cmd) { return nil }
