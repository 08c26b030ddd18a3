package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/licenseledger/ledger/internal/tick"
)

// PollInterval is how often a running server looks at the tokens file, so
// a change is in force within a second.
const PollInterval = 500 * time.Millisecond

// racyWindow: a file modified this recently may change again without its
// size or modification time changing (coarse file-system clocks), so its
// content is re-read until it is older.
const racyWindow = 2 * time.Second

// maxLoggedLines bounds the broken lines logged per change of the file.
const maxLoggedLines = 20

// FileStatus is what the last read of the tokens file found.
type FileStatus struct {
	// Tokens is how many of the file's tokens are in force.
	Tokens int
	// Refused is why none of the file's tokens is trusted
	// (ProblemInsecure, ProblemUnreadable); "" when the file was read or
	// is absent.
	Refused string
	// Broken are the lines left out, in file order.
	Broken []*LineError
}

// OK reports whether every line of the file is in force.
func (s FileStatus) OK() bool { return s.Refused == "" && len(s.Broken) == 0 }

// Errors counts the problems by kind, every kind of ProblemKinds present:
// the broken lines of each kind, and 1 for the kind that refused the file.
func (s FileStatus) Errors() map[string]int {
	n := make(map[string]int, len(ProblemKinds))
	for _, k := range ProblemKinds {
		n[k] = 0
	}
	if s.Refused != "" {
		n[s.Refused] = 1
	}
	for _, le := range s.Broken {
		n[le.Kind]++
	}
	return n
}

// Watcher keeps a Tokens holder equal to a fixed set (the admin tokens)
// plus the entries of a tokens file, re-reading the file when it changes.
// It fails closed: the set always follows the file as it is now, never a
// previous version. A missing file has no entries (removing it revokes its
// tokens); a broken line grants nothing while the file's valid lines stay
// in force; an unsafe or unreadable file grants nothing at all. Problems
// are logged once per change, without any hash, and kept in Status until
// fixed.
type Watcher struct {
	path   string
	admin  *Set
	tokens *Tokens
	log    *slog.Logger

	mu     sync.Mutex
	info   os.FileInfo // at the last read; nil when absent
	racy   bool        // info was too recent to trust an unchanged stat
	state  string      // what the last poll saw: "absent", an error, or mode and content hash
	status FileStatus
}

// NewWatcher reads the tokens file at path, logging its problems, and
// returns a watcher whose Tokens hold admin and the file's valid entries.
func NewWatcher(path string, admin *Set, log *slog.Logger) *Watcher {
	w := &Watcher{path: path, admin: admin, log: log, tokens: NewTokens(admin)}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.apply(w.read())
	return w
}

// Tokens returns the live holder.
func (w *Watcher) Tokens() *Tokens { return w.tokens }

// Path returns the tokens file's path.
func (w *Watcher) Path() string { return w.path }

// Entries returns how many of the file's tokens are in force.
func (w *Watcher) Entries() int { return w.Status().Tokens }

// Status returns what the last read of the file found. It is safe for
// concurrent use.
func (w *Watcher) Status() FileStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.status
}

// Run polls the file every interval until ctx ends.
func (w *Watcher) Run(ctx context.Context, interval time.Duration) {
	tick.Every(ctx, interval, w.Poll)
}

// Poll looks at the file once and applies a change. It reads the content
// only when the file's identity, size, mode or modification time moved (or
// it was modified too recently to tell), and swaps the set only when the
// content or mode really changed.
func (w *Watcher) Poll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if fi, err := os.Stat(w.path); err == nil && w.info != nil && !w.racy && sameStat(fi, w.info) {
		return
	}
	r := w.read()
	if r.state != w.state {
		w.apply(r)
		return
	}
	w.info, w.racy = r.info, r.racy()
}

// reading is one read of the file.
type reading struct {
	state   string
	info    os.FileInfo
	entries []Entry
	status  FileStatus
	err     error // why the file is refused
}

// racy reports whether the file was modified too recently for an
// unchanged stat to prove an unchanged content.
func (r reading) racy() bool { return r.info != nil && time.Since(r.info.ModTime()) < racyWindow }

// read reads and parses the file. A missing file is no entries and no
// problem.
func (w *Watcher) read() reading {
	data, fi, err := readTokensFile(w.path)
	r := reading{info: fi}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		r.state = "absent"
	case err != nil:
		r.state, r.err = "error: "+err.Error(), err
		r.status.Refused = ProblemOf(err)
	default:
		r.state = fmt.Sprintf("%v %x", fi.Mode(), sha256.Sum256(data))
		p := ParseLines(w.path, data)
		r.entries = p.Entries
		r.status = FileStatus{Tokens: len(p.Entries), Broken: p.Broken}
	}
	return r
}

// apply puts a reading in force and logs what changed; w.mu is held.
func (w *Watcher) apply(r reading) {
	initial := w.state == ""
	w.tokens.Store(Union(w.admin, NewSet(r.entries)))
	w.info, w.racy = r.info, r.racy()
	w.state, w.status = r.state, r.status

	switch {
	case r.err != nil:
		w.log.Error("tokens file refused: none of its tokens is trusted until it is fixed", "path", w.path, "kind", r.status.Refused, "err", r.err)
		return
	case r.state == "absent":
		if !initial {
			w.log.Warn("tokens file removed; its tokens no longer authenticate", "path", w.path)
		}
		return
	}
	for i, le := range r.status.Broken {
		if i == maxLoggedLines {
			w.log.Error("tokens file: more lines ignored", "path", w.path, "count", len(r.status.Broken)-i)
			break
		}
		w.log.Error("tokens file line ignored: it grants nothing until it is fixed", "path", w.path, "line", le.Line, "kind", le.Kind, "err", le.Err)
	}
	if !initial {
		w.log.Info("tokens file reloaded", "path", w.path, "tokens", r.status.Tokens, "ignored_lines", len(r.status.Broken))
	}
}

// sameStat reports whether two stats of the file show no change: the same
// file, size, mode, modification time and owner.
func sameStat(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.Mode() == b.Mode() && a.ModTime().Equal(b.ModTime()) &&
		ownerOf(a) == ownerOf(b)
}
