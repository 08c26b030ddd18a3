//go:build unix

package pgtest

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// runAs is the account the server binaries run as when tests run as root.
type runAs struct {
	name     string
	uid, gid uint32
}

// unprivilegedUser returns nil when the process is not root. As root it
// picks the postgres account, which server packages create, or nobody.
func unprivilegedUser() (*runAs, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		if u, err := lookup(name); err == nil {
			return u, nil
		}
	}
	return nil, fmt.Errorf("running as root, and initdb refuses to run as root; " +
		"no unprivileged 'postgres' or 'nobody' user exists to run it as (create one, e.g. useradd postgres)")
}

func lookup(name string) (*runAs, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, err
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil || uid == 0 {
		return nil, fmt.Errorf("user %s is not usable", name)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	return &runAs{name: name, uid: uint32(uid), gid: uint32(gid)}, nil
}

// procAttr switches the child to the user, dropping root's supplementary
// groups, and optionally into a process group of its own.
func (u *runAs) procAttr(newGroup bool) *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Setpgid: newGroup}
	if u != nil {
		attr.Credential = &syscall.Credential{Uid: u.uid, Gid: u.gid}
	}
	return attr
}

func (u *runAs) chown(path string) error {
	if u == nil {
		return nil
	}
	return os.Chown(path, int(u.uid), int(u.gid))
}

func (u *runAs) describe() string {
	if u == nil {
		return ""
	}
	return " (as user " + u.name + ")"
}
