// Package secfile reads and writes files that only their owner may
// access. Every file the product writes — seeds, private keys, tokens,
// backups, licenses, profiles — is 0600 in a directory created 0700, and
// every secret it reads (a seed, a private key, a token file) is refused
// when group or others may access it: the secret may already have leaked,
// and the fix (chmod 600 FILE) is the operator's to make knowingly.
//
// Symbolic links are followed: the mode that counts is the target's, as
// in a Kubernetes Secret volume, whose files are links into a ..data
// directory. Windows has no such permission bits: there every check passes.
package secfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// The modes of what the product writes.
const (
	FileMode fs.FileMode = 0o600
	DirMode  fs.FileMode = 0o700
)

// ErrExposed is wrapped by the error for a secret that group or others may
// read, write or execute.
var ErrExposed = errors.New("accessible by group or others")

// checked reports whether permission bits mean anything here.
var checked = runtime.GOOS != "windows"

// Check returns an error wrapping ErrExposed, naming path and the fix,
// when fi (the stat of the secret at path, links followed) gives group or
// others any access.
func Check(path string, fi fs.FileInfo) error {
	if perm := fi.Mode().Perm(); checked && perm&0o077 != 0 {
		return fmt.Errorf("%s is %w (mode %04o): run chmod 600 %s", path, ErrExposed, perm, Quote(path))
	}
	return nil
}

// Open opens the secret at path for reading. It refuses anything but a
// regular file, and a file group or others may access (see Check). The
// opened file is what is checked, so a file replaced after the check is
// not read unchecked.
func Open(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", path)
	}
	if err == nil {
		err = Check(path, fi)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// ReadFile reads the secret at path (see Open); a file larger than limit
// bytes is an error.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}

// Quote returns path as a shell word: as is when it holds only letters,
// digits and -_./+,:@%=, else in single quotes. Error messages print
// commands to copy.
func Quote(path string) string {
	safe := path != "" && strings.IndexFunc(path, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./+,:@%=", r))
	}) < 0
	if safe {
		return path
	}
	return "'" + strings.ReplaceAll(path, "'", `'\''`) + "'"
}

// MkdirAll creates dir, and any missing parent, with mode 0700. An
// existing directory is left as it is: see Tighten and Exposed.
func MkdirAll(dir string) error {
	return os.MkdirAll(dir, DirMode)
}

// Exposed returns the permission bits of the directory dir and whether
// group or others may access it: a directory the product uses but does
// not own (the user's) gets a warning, not a chmod.
func Exposed(dir string) (fs.FileMode, bool, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return 0, false, err
	}
	perm := fi.Mode().Perm()
	return perm, checked && perm&0o077 != 0, nil
}

// Tighten sets the directory dir, which the product owns (such as
// $DATA_DIR/nats), to 0700 when group or others may access it. It returns
// the mode dir had when it changed it, else 0.
func Tighten(dir string) (was fs.FileMode, err error) {
	perm, exposed, err := Exposed(dir)
	if err != nil || !exposed {
		return 0, err
	}
	if err := os.Chmod(dir, DirMode); err != nil {
		return 0, err
	}
	return perm, nil
}

// MkdirPrivate creates dir 0700 (with any missing parent), or tightens it
// when it exists (see Tighten).
func MkdirPrivate(dir string) (was fs.FileMode, err error) {
	if err := MkdirAll(dir); err != nil {
		return 0, err
	}
	return Tighten(dir)
}

// Create creates or truncates path for writing, mode 0600 whatever the
// umask and whatever mode an existing file had. Anything but a regular
// file (/dev/stdout, a pipe) is written as it is, its mode untouched.
func Create(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, FileMode)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && fi.Mode().IsRegular() {
		err = f.Chmod(FileMode)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// WriteFile replaces path with data, mode 0600: a temporary file in the
// same directory, synced, then renamed over path. Readers see the old
// content or the new, never a mix.
func WriteFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	// CreateTemp already uses 0600; Chmod guards against a change of that
	// default.
	err = f.Chmod(FileMode)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if err = errors.Join(err, f.Close()); err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// RestrictFiles sets every regular file directly in dir to 0600: for
// files another library created with its own mode.
func RestrictFiles(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Type().IsRegular() {
			if err := os.Chmod(filepath.Join(dir, e.Name()), FileMode); err != nil {
				return err
			}
		}
	}
	return nil
}
