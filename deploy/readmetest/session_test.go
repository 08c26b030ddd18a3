package readmetest

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/testenv/proctest"
)

// buildCommand is the Quickstart's first command; the test runs it as
// proctest.Build, from the repository into the session's bin/.
const buildCommand = "go build -o bin/ ./cmd/..."

var (
	exportRe     = regexp.MustCompile(`^export ([A-Za-z_][A-Za-z0-9_]*)=(\S+)$`)
	assignRe     = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)=(\$\([^)]*\)|\S+)$`)
	envPrefixRe  = regexp.MustCompile(`^((?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*)(.*)$`)
	listenFlagRe = regexp.MustCompile(`--listen="([^"]+)"`)
)

// session runs commands one by one in dir, like a shell the reader types
// into: exported and assigned variables carry over, `… &` runs in the
// background until the test ends.
type session struct {
	t    *testing.T
	dir  string
	bash string
	env  map[string]string
	// own are the variables the test sets itself: a README line exporting
	// one must show the program's default, and gets the test's value.
	own        map[string]string
	defaults   map[string]string
	background []*proctest.Process
}

func (s *session) run(c command) result {
	t := s.t
	t.Helper()
	text := c.text
	switch {
	case text == buildCommand:
		s.build()
		return result{cmd: c}
	case strings.HasPrefix(text, "go "):
		t.Fatalf("%s: %q: the test runs only %q", c.where(), text, buildCommand)
	case exportRe.MatchString(text):
		m := exportRe.FindStringSubmatch(text)
		if v, ok := s.own[m[1]]; ok {
			if d := s.defaults[m[1]]; m[2] != d {
				t.Errorf("%s: exports %s=%s; the program's default is %s", c.where(), m[1], m[2], d)
			}
			s.env[m[1]] = v
		} else {
			s.env[m[1]] = m[2]
		}
		return result{cmd: c}
	case assignRe.MatchString(text):
		m := assignRe.FindStringSubmatch(text)
		s.env[m[1]] = s.foreground(c, m[1]+"="+m[2]+`; printf %s "$`+m[1]+`"`)
		return result{cmd: c}
	case strings.HasSuffix(text, "&"):
		m := envPrefixRe.FindStringSubmatch(strings.TrimSpace(strings.TrimSuffix(text, "&")))
		script := "cd '" + strings.ReplaceAll(s.dir, "'", `'\''`) + "' && " + m[1] + "exec " + m[2]
		p := proctest.Start(t, fmt.Sprintf("%s %s", c.where(), m[2]), s.bash, []string{"-c", script}, s.environ())
		s.background = append(s.background, p)
		return result{cmd: c}
	}
	return result{cmd: c, stdout: s.foreground(c, text)}
}

// environ is the environment of every command.
func (s *session) environ() map[string]string {
	env := map[string]string{}
	for k, v := range s.env {
		env[k] = v
	}
	return env
}

// foreground runs script with bash and returns its standard output; a
// non-zero exit fails the test.
func (s *session) foreground(c command, script string) string {
	t := s.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A background program that exits fails the command at once (a wait
	// loop for it would never end).
	for _, p := range s.background {
		go func() {
			select {
			case <-p.Exited():
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	cmd := exec.CommandContext(ctx, s.bash, "-c", "set -o pipefail\n"+script)
	cmd.Dir, cmd.Env, cmd.WaitDelay = s.dir, proctest.ChildEnv(s.environ()), 5*time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("%s: %s (%s)", c.where(), c.text, time.Since(start).Round(time.Millisecond))
	if err != nil {
		for _, p := range s.background {
			if aerr := p.Alive(); aerr != nil {
				t.Log(aerr)
			}
		}
		t.Fatalf("%s: %s: %v\nstdout:\n%s\nstderr:\n%s", c.where(), c.text, err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// build builds every program under cmd/ into the session's bin/, as
// buildCommand does, and reads the defaults the README's exports must show.
func (s *session) build() {
	t := s.t
	root := proctest.RepoRoot(t)
	dirs, err := filepath.Glob(filepath.Join(root, "cmd", "*", "main.go"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no programs under cmd/: %v", err)
	}
	var pkgs []string
	for _, d := range dirs {
		pkgs = append(pkgs, "./cmd/"+filepath.Base(filepath.Dir(d)))
	}
	bins := proctest.Build(t, filepath.Join(s.dir, "bin"), pkgs...)
	out, err := exec.Command(bins["ledger"], "serve", "--help").CombinedOutput()
	m := listenFlagRe.FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("ledger serve --help: %v, no --listen default in:\n%s", err, out)
	}
	s.defaults = map[string]string{"LEDGER_LISTEN": string(m[1])}
}

// stopBackground stops what runs in the background, as the reader does
// before starting it again.
func (s *session) stopBackground() {
	for _, p := range s.background {
		p.Stop()
		if code := p.ExitCode(); code != 0 {
			s.t.Errorf("%s: exit %d after SIGTERM:\n%s", p.Name, code, proctest.Tail(p.Output(), 4<<10))
		}
	}
	s.background = nil
}

// complete reports whether text is a whole shell command to bash.
func complete(bash string) func(string) bool {
	return func(text string) bool {
		return exec.Command(bash, "-n", "-c", text).Run() == nil
	}
}
