package secfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func skipWindows(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no permission bits on Windows")
	}
}

func writeMode(t *testing.T, path, content string, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestReadFileModes(t *testing.T) {
	skipWindows(t)
	dir := t.TempDir()
	for _, m := range []fs.FileMode{0o600, 0o400, 0o700} {
		p := filepath.Join(dir, "ok")
		writeMode(t, p, "secret", m)
		if b, err := ReadFile(p, 100); err != nil || string(b) != "secret" {
			t.Errorf("mode %04o: %q %v", m, b, err)
		}
		os.Remove(p)
	}
	for _, m := range []fs.FileMode{0o644, 0o640, 0o604, 0o620, 0o602, 0o610, 0o440} {
		p := filepath.Join(dir, "seed file.nk")
		writeMode(t, p, "secret", m)
		_, err := ReadFile(p, 100)
		if !errors.Is(err, ErrExposed) {
			t.Fatalf("mode %04o: err %v, want ErrExposed", m, err)
		}
		if want := "run chmod 600 '" + p + "'"; !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), p+" is accessible by group or others") {
			t.Errorf("mode %04o: %q does not name the file and %q", m, err, want)
		}
		os.Remove(p)
	}
}

// A Kubernetes Secret volume: the file is a link to ..data/name, ..data a
// link to a timestamped directory. The target's mode is what counts.
func TestReadFileFollowsLinks(t *testing.T) {
	skipWindows(t)
	vol := t.TempDir()
	ts := filepath.Join(vol, "..2026_11_29_13_01_02.123")
	if err := os.Mkdir(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	writeMode(t, filepath.Join(ts, "ledger.nk"), "SUSEED", 0o400)
	writeMode(t, filepath.Join(ts, "tokens"), "x", 0o644)
	for _, l := range [][2]string{{filepath.Base(ts), "..data"}, {"..data/ledger.nk", "ledger.nk"}, {"..data/tokens", "tokens"}} {
		if err := os.Symlink(l[0], filepath.Join(vol, l[1])); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := ReadFile(filepath.Join(vol, "ledger.nk"), 100); err != nil || string(b) != "SUSEED" {
		t.Fatalf("0400 behind links: %q %v", b, err)
	}
	tokens := filepath.Join(vol, "tokens")
	if _, err := ReadFile(tokens, 100); !errors.Is(err, ErrExposed) || !strings.Contains(err.Error(), "chmod 600 "+tokens) {
		t.Fatalf("0644 behind links: %v", err)
	}
}

func TestReadFileRefusals(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadFile(dir, 100); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a directory: %v", err)
	}
	if _, err := ReadFile(filepath.Join(dir, "missing"), 100); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing file: %v", err)
	}
	big := filepath.Join(dir, "big")
	writeMode(t, big, "0123456789", 0o600)
	if _, err := ReadFile(big, 9); err == nil || !strings.Contains(err.Error(), "larger than 9 bytes") {
		t.Errorf("a file over the limit: %v", err)
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/data/nats/ledger.nk": "/data/nats/ledger.nk",
		"keys/vendor-2026.key": "keys/vendor-2026.key",
		"my keys/k.key":        "'my keys/k.key'",
		"it's":                 `'it'\''s'`,
		"":                     "''",
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWrites(t *testing.T) {
	skipWindows(t)
	dir := filepath.Join(t.TempDir(), "a", "b")
	if err := MkdirAll(dir); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, dir); m != DirMode {
		t.Fatalf("MkdirAll: %04o", m)
	}
	p := filepath.Join(dir, "f")
	writeMode(t, p, "old", 0o644)
	if err := WriteFile(p, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "new" || mode(t, p) != FileMode {
		t.Fatalf("WriteFile over a 0644 file: %q %04o", b, mode(t, p))
	}
	q := filepath.Join(dir, "g")
	writeMode(t, q, "old content", 0o666)
	f, err := Create(q)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("x")
	f.Close()
	if b, _ := os.ReadFile(q); string(b) != "x" || mode(t, q) != FileMode {
		t.Fatalf("Create over a 0666 file: %q %04o", b, mode(t, q))
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("temporary files left: %v", entries)
	}
	writeMode(t, q, "", 0o644)
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := RestrictFiles(dir); err != nil {
		t.Fatal(err)
	}
	if mode(t, q) != FileMode || mode(t, filepath.Join(dir, "sub")) != 0o755 {
		t.Fatalf("RestrictFiles: file %04o, subdirectory %04o", mode(t, q), mode(t, filepath.Join(dir, "sub")))
	}
}

func TestTighten(t *testing.T) {
	skipWindows(t)
	dir := filepath.Join(t.TempDir(), "nats")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if m, exposed, err := Exposed(dir); err != nil || !exposed || m != 0o755 {
		t.Fatalf("Exposed(0755) = %04o %v %v", m, exposed, err)
	}
	if was, err := MkdirPrivate(dir); err != nil || was != 0o755 || mode(t, dir) != DirMode {
		t.Fatalf("MkdirPrivate on 0755: was %04o, %v, now %04o", was, err, mode(t, dir))
	}
	if was, err := Tighten(dir); err != nil || was != 0 {
		t.Fatalf("Tighten on 0700: was %04o %v", was, err)
	}
	if _, exposed, err := Exposed(dir); err != nil || exposed {
		t.Fatalf("Exposed(0700) = %v %v", exposed, err)
	}
}
