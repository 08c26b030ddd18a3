//go:build unix

package auth

import (
	"fmt"
	"os"
	"syscall"
)

// lockTokensFile takes an exclusive advisory lock on path's companion
// lock file (path + ".lock"), waiting for other editors. The lock file is
// kept: removing it would let two editors lock different files.
func lockTokensFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
