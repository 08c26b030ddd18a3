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
)

// PollInterval is how often a running server looks at the tokens file, so
// a change is in force within a second.
const PollInterval = 500 * time.Millisecond

// racyWindow: a file modified this recently may change again without its
// size or modification time changing (coarse file-system clocks), so its
// content is re-read until it is older.
const racyWindow = 2 * time.Second

// Watcher keeps a Tokens holder equal to a fixed set (the admin tokens)
// plus the entries of a tokens file, re-reading the file when it changes.
// A missing file has no entries (removing it revokes its tokens). A file
// that becomes invalid — malformed, or accessible by group or others —
// leaves the previous set in force and is logged once per change.
type Watcher struct {
	path   string
	admin  *Set
	tokens *Tokens
	log    *slog.Logger

	mu      sync.Mutex
	info    os.FileInfo // at the last read; nil when absent
	racy    bool        // info was too recent to trust an unchanged stat
	state   string      // what the last poll saw: "absent", an error, or mode and content hash
	entries int         // entries of the file in force
}

// NewWatcher reads the tokens file at path and returns a watcher whose
// Tokens hold admin and the file's entries. A missing file is no entries;
// an invalid one is an error.
func NewWatcher(path string, admin *Set, log *slog.Logger) (*Watcher, error) {
	w := &Watcher{path: path, admin: admin, log: log}
	entries, err := w.read()
	if err != nil {
		return nil, err
	}
	w.entries = len(entries)
	w.tokens = NewTokens(Union(admin, NewSet(entries)))
	return w, nil
}

// Tokens returns the live holder.
func (w *Watcher) Tokens() *Tokens { return w.tokens }

// Path returns the tokens file's path.
func (w *Watcher) Path() string { return w.path }

// Entries returns how many of the file's tokens are in force.
func (w *Watcher) Entries() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.entries
}

// Run polls the file every interval until ctx ends.
func (w *Watcher) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.Poll()
		}
	}
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
	prev := w.state
	entries, err := w.read()
	if w.state == prev {
		return
	}
	switch {
	case err != nil:
		w.log.Error("tokens file is invalid; the previous tokens stay in force", "path", w.path, "err", err)
	case w.state == "absent":
		w.entries = 0
		w.tokens.Store(w.admin)
		w.log.Warn("tokens file removed; its tokens no longer authenticate", "path", w.path)
	default:
		w.entries = len(entries)
		w.tokens.Store(Union(w.admin, NewSet(entries)))
		w.log.Info("tokens file reloaded", "path", w.path, "tokens", len(entries))
	}
}

// read reads and parses the file, recording what it saw in w.state,
// w.info and w.racy. A missing file is no entries and no error.
func (w *Watcher) read() ([]Entry, error) {
	data, fi, err := readTokensFile(w.path)
	w.info, w.racy = fi, fi != nil && time.Since(fi.ModTime()) < racyWindow
	if errors.Is(err, fs.ErrNotExist) {
		w.state = "absent"
		return nil, nil
	}
	if err != nil {
		w.state = "error: " + err.Error()
		return nil, err
	}
	w.state = fmt.Sprintf("%v %x", fi.Mode(), sha256.Sum256(data))
	entries, err := ParseTokens(w.path, data)
	if err != nil {
		return nil, err
	}
	return entries, nil
}

// sameStat reports whether two stats of the file show no change.
func sameStat(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.Mode() == b.Mode() && a.ModTime().Equal(b.ModTime())
}
