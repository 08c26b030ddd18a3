package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/internal/cli"
	"github.com/licenseledger/ledger/internal/testenv"
)

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// gitInit makes dir a git work tree with the given .gitignore ("" for none).
func gitInit(t *testing.T, git, gitignore string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command(git, "init", "-q", dir).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v %s", err, out)
	}
	if gitignore != "" {
		if err := os.WriteFile(filepath.Join(dir, ".gitignore"), []byte(gitignore), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// keygenIn runs keygen --out dir and returns its standard error; the key
// pair is written whatever the warnings (exit 0).
func keygenIn(t *testing.T, kid, dir string) string {
	t.Helper()
	code, out, errs := runCmd(t, "", "keygen", "--kid", kid, "--out", dir)
	if code != 0 || !strings.HasPrefix(out, kid+":") {
		t.Fatalf("keygen --out %s: exit %d, %q, %s", dir, code, out, errs)
	}
	if m := mode(t, filepath.Join(dir, kid+".key")); m != 0o600 {
		t.Fatalf("%s.key is mode %04o", kid, m)
	}
	return errs
}

// A private key written into a git work tree that does not ignore it is a
// `git add .` away from being committed: keygen warns. Not parallel: it
// sets PATH.
func TestKeygenWarnsInsideGitWorkTree(t *testing.T) {
	git := testenv.RequireTool(t, "git")

	repo := gitInit(t, git, "")
	errs := keygenIn(t, "vendor-2026", filepath.Join(repo, "keys"))
	for _, want := range []string{"licensegen: warning: " + filepath.Join(repo, "keys", "vendor-2026.key") + " is inside the git work tree " + repo + ", which does not ignore it",
		"echo '/keys/' >> " + filepath.Join(repo, ".gitignore")} {
		if !strings.Contains(errs, want) {
			t.Errorf("keys in a work tree that does not ignore them: stderr lacks %q:\n%s", want, errs)
		}
	}
	// Ignored by the repository: no warning. Outside any: none.
	ignoring := gitInit(t, git, "/keys/\n")
	if errs := keygenIn(t, "vendor-2026", filepath.Join(ignoring, "keys")); strings.Contains(errs, "warning") {
		t.Errorf("keys in an ignored directory: %s", errs)
	}
	if errs := keygenIn(t, "vendor-2026", filepath.Join(t.TempDir(), "keys")); strings.Contains(errs, "warning") {
		t.Errorf("keys outside any work tree: %s", errs)
	}

	// Without git, any work tree above the key is reported, a linked one
	// (.git is a file) too.
	t.Setenv("PATH", t.TempDir())
	if _, err := exec.LookPath("git"); err == nil {
		t.Fatal("git still on PATH")
	}
	linked := t.TempDir()
	if err := os.WriteFile(filepath.Join(linked, ".git"), []byte("gitdir: /elsewhere\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, root := range []string{ignoring, linked} {
		errs := keygenIn(t, "k2", filepath.Join(root, "keys"))
		if !strings.Contains(errs, "is inside the git work tree "+root+", and git is not installed to tell whether it ignores the key") {
			t.Errorf("without git, keys under %s: %s", root, errs)
		}
	}
	if errs := keygenIn(t, "k2", filepath.Join(t.TempDir(), "keys")); strings.Contains(errs, "warning") {
		t.Errorf("without git, keys outside any work tree: %s", errs)
	}
}

// keygen creates its directory 0700; one that exists open to others gets
// a warning (it is the user's: not changed).
func TestKeygenWarnsOnOpenDirectory(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	if errs := keygenIn(t, "k1", dir); !strings.Contains(errs, "licensegen: warning: "+dir+" is mode 0755") || !strings.Contains(errs, "chmod 700 "+dir) {
		t.Errorf("keys in a 0755 directory: %s", errs)
	}
	if m := mode(t, dir); m != 0o755 {
		t.Errorf("keygen changed the user's directory to %04o", m)
	}
	fresh := filepath.Join(t.TempDir(), "new", "keys")
	if errs := keygenIn(t, "k1", fresh); strings.Contains(errs, "warning") || mode(t, fresh) != 0o700 {
		t.Errorf("a new directory: mode %04o, %s", mode(t, fresh), errs)
	}
}

// A private key others may read is refused, with the file and the fix
// named; through a link, the target's mode counts. Licenses written with
// --output are 0600.
func TestSignKeyAndOutputModes(t *testing.T) {
	dir, _ := keygen(t, "k1")
	key := filepath.Join(dir, "k1.key")
	link := filepath.Join(t.TempDir(), "current.key")
	if err := os.Symlink(key, link); err != nil {
		t.Fatal(err)
	}
	args := func(k string) []string {
		return []string{"sign", "--key", k, "--kid", "k1", "--org", "acme", "--customer", "A", "--tier", "starter", "--expires", "+30d"}
	}
	for _, m := range []os.FileMode{0o644, 0o640, 0o604} {
		os.Chmod(key, m)
		for _, k := range []string{key, link} {
			code, out, errs := runCmd(t, "", args(k)...)
			if code != cli.ExitUsage || out != "" || !strings.Contains(errs, k+" is accessible by group or others") || !strings.Contains(errs, "run chmod 600 "+k) {
				t.Errorf("key mode %04o via %s: exit %d, %q, %s", m, k, code, out, errs)
			}
		}
	}
	os.Chmod(key, 0o400)
	out := filepath.Join(t.TempDir(), "acme.key")
	if err := os.WriteFile(out, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(out, 0o644)
	if code, _, errs := runCmd(t, "", append(args(link), "--output", out)...); code != 0 {
		t.Fatalf("sign with a 0400 key: exit %d, %s", code, errs)
	}
	if b, _ := os.ReadFile(out); !strings.HasPrefix(string(b), "hfl1.") || mode(t, out) != 0o600 {
		t.Errorf("--output over a 0644 file: mode %04o, %q", mode(t, out), b)
	}
}

// The README's Quickstart writes the vendor key pair into keys/ of this
// checkout: the repository ignores it, so keygen does not warn there.
func TestQuickstartKeysIgnored(t *testing.T) {
	git := testenv.RequireTool(t, "git")
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if err := exec.Command(git, "-C", root, "rev-parse", "--is-inside-work-tree").Run(); err != nil {
		t.Skip("not a git work tree (a source archive)")
	}
	if why := keyExposure(filepath.Join(root, "keys", "vendor-2026.key")); why != "" {
		t.Errorf("the Quickstart's key: %s", why)
	}
}
