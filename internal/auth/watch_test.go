package auth

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/testenv"
)

func newTestWatcher(t *testing.T, path string, admin *Set) (*Watcher, *testenv.Buffer) {
	t.Helper()
	logs := &testenv.Buffer{}
	w, err := NewWatcher(path, admin, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return w, logs
}

func works(w *Watcher, tok string) bool {
	_, ok := w.Tokens().Authenticate(tok)
	return ok
}

func TestWatcherFollowsTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	admin := strings.Repeat("z", 40)
	w, logs := newTestWatcher(t, path, mustAdmin(t, admin))
	if !works(w, admin) || works(w, tokA) || w.Entries() != 0 {
		t.Fatal("missing file: want the admin token only")
	}

	// A file created after start is picked up.
	ea, _ := NewEntry(tokA, RoleOrgAdmin, []string{"acme"}, "acme-admin")
	if err := AddToken(path, ea); err != nil {
		t.Fatal(err)
	}
	w.Poll()
	if !works(w, admin) || !works(w, tokA) || w.Entries() != 1 {
		t.Fatal("created file not in force")
	}
	p, _ := w.Tokens().Authenticate(tokA)
	if a := p.Actor(); a.Kind != "org_admin" || a.ID != "acme-admin" {
		t.Fatalf("actor %+v", a)
	}
	w.Poll()
	if n := strings.Count(logs.String(), "tokens file reloaded"); n != 1 {
		t.Fatalf("%d reload logs, want 1", n)
	}

	// An invalid rewrite keeps the previous set and is logged once.
	eb, _ := NewEntry(tokB, RoleOperator, []string{"*"}, "ops")
	if err := WriteFileAtomic(path, []byte(eb.Line()+"\nnot a token line\n")); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		w.Poll()
	}
	if !works(w, tokA) || works(w, tokB) {
		t.Fatal("an invalid file replaced the set")
	}
	if n := strings.Count(logs.String(), "tokens file is invalid"); n != 1 {
		t.Fatalf("%d error logs, want 1", n)
	}
	if n := strings.Count(logs.String(), path+":2:"); n != 1 {
		t.Fatalf("the error does not name the line:\n%s", logs.String())
	}
	// Another invalid change is logged again.
	WriteFileAtomic(path, []byte(eb.Line()+"\nstill not a token line\n"))
	w.Poll()
	w.Poll()
	if n := strings.Count(logs.String(), "tokens file is invalid"); n != 2 {
		t.Fatalf("%d error logs, want 2", n)
	}

	// Fixed: the new content is in force, the old token is gone.
	WriteFileAtomic(path, []byte(eb.Line()+"\n"))
	w.Poll()
	if !works(w, tokB) || works(w, tokA) || !works(w, admin) {
		t.Fatal("fixed file not in force")
	}

	if runtime.GOOS != "windows" {
		// A file readable by others is invalid too; fixing the mode reloads.
		os.Chmod(path, 0o644)
		w.Poll()
		if !works(w, tokB) || strings.Count(logs.String(), "tokens file is invalid") != 3 {
			t.Fatal("insecure mode: want the previous set and one more error")
		}
		os.Chmod(path, 0o600)
		reloads := strings.Count(logs.String(), "tokens file reloaded")
		w.Poll()
		if !works(w, tokB) || strings.Count(logs.String(), "tokens file reloaded") != reloads+1 {
			t.Fatal("mode fixed: want a reload")
		}
	}

	// Removing the file revokes its tokens, not the admin token.
	os.Remove(path)
	w.Poll()
	if works(w, tokB) || !works(w, admin) || w.Entries() != 0 {
		t.Fatal("removed file: want the admin token only")
	}
}

// An in-place rewrite that keeps the size, inode and modification time
// (a coarse file-system clock) is still seen while the file is recent.
func TestWatcherSeesSameStatRewrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	ea, _ := NewEntry(tokA, RoleOperator, []string{"*"}, "n1")
	eb, _ := NewEntry(tokB, RoleOperator, []string{"*"}, "n2")
	os.WriteFile(path, []byte(ea.Line()+"\n"), 0o600)
	w, _ := newTestWatcher(t, path, nil)
	if !works(w, tokA) {
		t.Fatal("initial file not in force")
	}
	before, _ := os.Stat(path)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte(eb.Line()+"\n"), 0)
	f.Close()
	os.Chtimes(path, before.ModTime(), before.ModTime())
	if after, _ := os.Stat(path); !sameStat(before, after) {
		t.Fatal("the rewrite changed the stat; the case is not exercised")
	}
	w.Poll()
	if works(w, tokA) || !works(w, tokB) {
		t.Fatal("same-stat rewrite not seen")
	}
}

func TestNewWatcherRefusesInvalidFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(path, []byte("# ok\nnope\n"), 0o600)
	_, err := NewWatcher(path, nil, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), path+":2:") {
		t.Fatalf("got %v", err)
	}
}

func TestWatcherRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	w, _ := newTestWatcher(t, path, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		w.Run(ctx, 10*time.Millisecond)
		close(done)
	}()
	e, _ := NewEntry(tokA, RoleAuditor, []string{"*"}, "aud")
	if err := AddToken(path, e); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !works(w, tokA) {
		if time.Now().After(deadline) {
			t.Fatal("Run did not apply the file within 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop with its context")
	}
}
