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
	return NewWatcher(path, admin, slog.New(slog.NewTextHandler(logs, nil))), logs
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

	// A hand edit that removes a line and adds a broken one: the removed
	// token is refused at once, the valid lines stay, and the broken line
	// is logged once, by number, and kept in Status until fixed.
	eb, _ := NewEntry(tokB, RoleOperator, []string{"*"}, "ops")
	if err := WriteFileAtomic(path, []byte("# hand edit\n"+eb.Line()+"\nnot a token line\n")); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		w.Poll()
	}
	if works(w, tokA) || !works(w, tokB) || !works(w, admin) || w.Entries() != 1 {
		t.Fatal("a broken line: want the valid lines only")
	}
	if n := strings.Count(logs.String(), "tokens file line ignored"); n != 1 {
		t.Fatalf("%d line logs, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "line=3 kind=malformed") {
		t.Fatalf("the log does not name the line:\n%s", logs.String())
	}
	st := w.Status()
	if st.OK() || st.Refused != "" || len(st.Broken) != 1 || st.Broken[0].Line != 3 || st.Errors()[ProblemMalformed] != 1 || st.Errors()[ProblemInsecure] != 0 {
		t.Fatalf("status %+v %v", st, st.Errors())
	}
	// Another broken change is logged again; a line that names the token
	// of another line breaks both.
	ec, _ := NewEntry(tokC, RoleAuditor, []string{"*"}, "aud")
	same, _ := NewEntry(tokC, RoleOperator, []string{"*"}, "aud2")
	WriteFileAtomic(path, []byte(eb.Line()+"\n"+ec.Line()+"\n"+same.Line()+"\n"))
	w.Poll()
	w.Poll()
	if !works(w, tokB) || works(w, tokC) || w.Status().Errors()[ProblemDuplicate] != 2 {
		t.Fatalf("duplicate token: %+v", w.Status())
	}
	if n := strings.Count(logs.String(), "tokens file line ignored"); n != 3 {
		t.Fatalf("%d line logs, want 3", n)
	}
	for _, h := range []string{hashHex(tokA), hashHex(tokB), hashHex(tokC)} {
		if strings.Contains(logs.String(), h[:12]) {
			t.Fatalf("the log holds a hash:\n%s", logs.String())
		}
	}

	// Fixed: every line in force, nothing to report.
	WriteFileAtomic(path, []byte(eb.Line()+"\n"+ec.Line()+"\n"))
	w.Poll()
	if !works(w, tokB) || !works(w, tokC) || works(w, tokA) || !works(w, admin) || !w.Status().OK() {
		t.Fatal("fixed file not in force")
	}

	if runtime.GOOS != "windows" {
		// A file readable by others grants nothing at all, loudly; the
		// admin tokens still work; fixing the mode restores the file's.
		os.Chmod(path, 0o644)
		w.Poll()
		if works(w, tokB) || works(w, tokC) || !works(w, admin) || w.Entries() != 0 {
			t.Fatal("insecure mode: want the admin tokens only")
		}
		if st := w.Status(); st.Refused != ProblemInsecure || st.Errors()[ProblemInsecure] != 1 {
			t.Fatalf("insecure mode: status %+v", st)
		}
		if !strings.Contains(logs.String(), "tokens file refused") || !strings.Contains(logs.String(), "chmod 600 "+path) {
			t.Fatalf("insecure mode: the log does not name the fix:\n%s", logs.String())
		}
		os.Chmod(path, 0o600)
		reloads := strings.Count(logs.String(), "tokens file reloaded")
		w.Poll()
		if !works(w, tokB) || !works(w, tokC) || !w.Status().OK() || strings.Count(logs.String(), "tokens file reloaded") != reloads+1 {
			t.Fatal("mode fixed: want a reload")
		}
	}

	// Removing the file revokes its tokens, not the admin token.
	os.Remove(path)
	w.Poll()
	if works(w, tokB) || !works(w, admin) || w.Entries() != 0 || !w.Status().OK() {
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

// A broken file at start is read as it is later: its valid lines in
// force, the broken ones logged.
func TestNewWatcherBrokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	ea, _ := NewEntry(tokA, RoleOperator, []string{"*"}, "ops")
	os.WriteFile(path, []byte("# ok\nnope\n"+ea.Line()+"\n"), 0o600)
	w, logs := newTestWatcher(t, path, nil)
	if !works(w, tokA) || w.Entries() != 1 || len(w.Status().Broken) != 1 || !strings.Contains(logs.String(), "line=2") {
		t.Fatalf("status %+v\n%s", w.Status(), logs.String())
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

// A file given to another user grants nothing, even when nothing else of
// its stat moved; given back, its tokens work again.
func TestWatcherSeesChown(t *testing.T) {
	if runtime.GOOS == "windows" || os.Geteuid() != 0 {
		t.Skip("needs root to give a file away")
	}
	path := filepath.Join(t.TempDir(), "tokens")
	ea, _ := NewEntry(tokA, RoleOperator, []string{"*"}, "ops")
	os.WriteFile(path, []byte(ea.Line()+"\n"), 0o600)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(path, old, old) // past the racy window: only the stat is looked at
	w, logs := newTestWatcher(t, path, nil)
	w.Poll()
	if !works(w, tokA) {
		t.Fatal("initial file not in force")
	}
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	w.Poll()
	if works(w, tokA) || w.Status().Refused != ProblemInsecure || !strings.Contains(logs.String(), "belongs to uid 65534") {
		t.Fatalf("a file of uid 65534: %+v\n%s", w.Status(), logs.String())
	}
	os.Chown(path, 0, 0)
	w.Poll()
	if !works(w, tokA) || !w.Status().OK() {
		t.Fatalf("given back: %+v", w.Status())
	}
}
