// Package deploytest checks the files in deploy/ that are not Go: the
// single-node systemd units, their environment templates and
// deploy/setup.sh, which it drives as an operator would.
package deploytest

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/testenv/licensetest"
	"github.com/licenseledger/ledger/license"
)

// deployDir is deploy/, seen from this package's directory.
var deployDir = func() string {
	d, err := filepath.Abs("..")
	if err != nil {
		panic(err)
	}
	return d
}()

var (
	setupScript = filepath.Join(deployDir, "setup.sh")
	moduleRoot  = filepath.Dir(deployDir)
)

// shell is a POSIX shell to run setup.sh with.
type shell struct {
	name string
	argv []string // the shell command, before the script
}

// shells lists the distinct shells installed among sh, dash, bash and
// busybox sh; setup.sh must behave the same in every one.
func shells(t *testing.T) []shell {
	t.Helper()
	var out []shell
	seen := map[string]bool{}
	for _, c := range []shell{{"sh", []string{"sh"}}, {"dash", []string{"dash"}}, {"bash", []string{"bash", "--posix"}}, {"busybox", []string{"busybox", "sh"}}} {
		p, err := exec.LookPath(c.argv[0])
		if err != nil {
			continue
		}
		real, err := filepath.EvalSymlinks(p)
		if err != nil || seen[real] {
			continue
		}
		seen[real] = true
		c.argv[0] = p
		out = append(out, c)
	}
	if len(out) == 0 {
		t.Fatal("no POSIX shell found")
	}
	return out
}

func defaultShell(t *testing.T) shell { return shells(t)[0] }

// result is one run of setup.sh.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// run runs setup.sh with args and the environment env (added to a cleaned
// copy of the test's: no SETUP_ROOT and no key ring unless given).
func (sh shell) run(t *testing.T, env []string, args ...string) result {
	t.Helper()
	return sh.runScript(t, setupScript, env, nil, args...)
}

func (sh shell) runScript(t *testing.T, script string, env []string, prepare func(*exec.Cmd), args ...string) result {
	t.Helper()
	argv := append(append(append([]string{}, sh.argv[1:]...), script), args...)
	cmd := exec.Command(sh.argv[0], argv...)
	cmd.Env = append(baseEnv(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if prepare != nil {
		prepare(cmd)
	}
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("run %s: %v", script, err)
	}
	return r
}

// baseEnv is the test's environment without what would change setup.sh's
// behaviour.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case name == "SETUP_ROOT", name == "DATA_DIR", name == "DATABASE_URL",
			strings.HasPrefix(name, "LICENSE_"), strings.HasPrefix(name, "LEDGER_"), strings.HasPrefix(name, "NATS_"):
			continue
		}
		env = append(env, kv)
	}
	return env
}

func mustOK(t *testing.T, r result) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("setup.sh failed:\n%s", r)
	}
}

// --- licenses ---------------------------------------------------------------

const testKid = "k1"

// instanceLicense signs an instance-wide license valid from issued for a
// year, plus changes to its payload.
func instanceLicense(t *testing.T, id string, issued time.Time, changes map[string]any) *license.License {
	t.Helper()
	p := map[string]any{
		"license_id": id,
		"customer":   "Acme Corp",
		"org_slug":   "*",
		"tier":       "enterprise",
		"features":   []string{"sso"},
		"issued_at":  issued.UTC().Format(time.RFC3339),
		"expires":    issued.AddDate(1, 0, 0).UTC().Format(time.RFC3339),
	}
	for k, v := range changes {
		if v == nil {
			delete(p, k)
		} else {
			p[k] = v
		}
	}
	return licensetest.Sign(t, testKid, p)
}

func writeFile(t *testing.T, path string, data []byte, mode fs.FileMode) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func exists(t *testing.T, path string) bool {
	t.Helper()
	_, err := os.Lstat(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// snapshot records every file and directory under dir: type, mode, size,
// modification time and content. Two equal snapshots mean nothing was
// written.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		s := fmt.Sprintf("%v %d %d", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s += " " + string(b)
		}
		out[p] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffSnapshots(before, after map[string]string) []string {
	var d []string
	for p, a := range after {
		if b, ok := before[p]; !ok {
			d = append(d, "created "+p)
		} else if a != b {
			d = append(d, fmt.Sprintf("changed %s: %q -> %q", p, b, a))
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			d = append(d, "removed "+p)
		}
	}
	return d
}

// --- env files ----------------------------------------------------------------

// envAssignments returns the VARIABLE=value lines of a systemd environment
// file, in order (comments and blank lines left out).
func envAssignments(t *testing.T, text string) [][2]string {
	t.Helper()
	var out [][2]string
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) == "" {
			t.Fatalf("line %d of env file is not VARIABLE=value: %q", i+1, line)
		}
		out = append(out, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
	}
	return out
}

func envValues(t *testing.T, text, name string) []string {
	t.Helper()
	var vals []string
	for _, kv := range envAssignments(t, text) {
		if kv[0] == name {
			vals = append(vals, kv[1])
		}
	}
	return vals
}

// --- binaries -------------------------------------------------------------------

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// TestMain removes the binaries built for the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binaries builds cmd/ledger and cmd/gatekeeper once for the whole package
// (with -race when the tests run with it, so that the build shares the
// compiled packages of `go test -race ./...`) and returns their directory.
func binaries(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			//lint:ignore SA1019 only when go is not on PATH: the toolchain that built the test
			goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		if binDir, binErr = os.MkdirTemp("", "deploytest-bin-"); binErr != nil {
			return
		}
		args := []string{"build", "-o", binDir + string(filepath.Separator)}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, "./cmd/ledger", "./cmd/gatekeeper")
		cmd := exec.Command(goTool, args...)
		cmd.Dir = moduleRoot
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
			return
		}
		fmt.Fprintf(os.Stderr, "deploytest: built ledger and gatekeeper in %s\n", time.Since(start).Round(time.Millisecond))
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

// pathWithout is $PATH without the directories holding an executable
// called name.
func pathWithout(name string) string {
	var keep []string
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		if fi, err := os.Stat(filepath.Join(d, name)); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			continue
		}
		keep = append(keep, d)
	}
	return strings.Join(keep, string(filepath.ListSeparator))
}
