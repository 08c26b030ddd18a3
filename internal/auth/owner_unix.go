//go:build unix

package auth

import (
	"fmt"
	"os"
	"syscall"
)

// checkOwner refuses a tokens file that belongs to another user than the
// one reading it: whoever owns it may rewrite it, or make it readable.
func checkOwner(path string, info os.FileInfo) error {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if uid := os.Geteuid(); int64(st.Uid) != int64(uid) {
		return fmt.Errorf("%w: %s belongs to uid %d, not to uid %d which reads it; the ledger's user must own it (chown) and edit it (run ledger token as that user)",
			ErrInsecureFile, path, st.Uid, uid)
	}
	return nil
}

// ownerOf returns the uid owning the file, -1 when unknown.
func ownerOf(info os.FileInfo) int64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return int64(st.Uid)
	}
	return -1
}
