package readmetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/testenv"
	"github.com/licenseledger/ledger/internal/testenv/proctest"
)

// --- the README's marked blocks -------------------------------------------

// command is one logical shell line of a Quickstart block: continuation
// lines joined, as bash reads it.
type command struct {
	text string
	line int // where it starts in the README
}

// outputSpec is a documented output: every command containing match
// prints want.
type outputSpec struct {
	match string
	want  *object
	line  int
}

type quickstart struct {
	commands []command
	outputs  []outputSpec
}

var (
	markerRe = regexp.MustCompile(`^<!-- quickstart(?::[^>]*| output: (.+?)) -->$`)
	asAbove  = regexp.MustCompile(`^(.+?); as above with (.+) null$`)
)

// parseQuickstart reads the marked blocks of a README: `<!-- quickstart: … -->`
// before a sh block to run, `<!-- quickstart output: COMMAND -->` before the
// json block COMMAND prints, or `<!-- quickstart output: COMMAND; as above
// with K1, K2 null -->` for the previous documented output with those keys
// null.
func parseQuickstart(readme string) (*quickstart, error) {
	lines := strings.Split(readme, "\n")
	q := &quickstart{}
	// fence returns the body of the ``` block of kind that follows line i.
	fence := func(i int, kind string) ([]string, int, error) {
		if i+1 >= len(lines) || lines[i+1] != "```"+kind {
			return nil, 0, fmt.Errorf("README.md:%d: the marker is not followed by a ```%s block", i+1, kind)
		}
		for j := i + 2; j < len(lines); j++ {
			if lines[j] == "```" {
				return lines[i+2 : j], i + 3, nil
			}
		}
		return nil, 0, fmt.Errorf("README.md:%d: the ```%s block does not end", i+2, kind)
	}
	for i, l := range lines {
		m := markerRe.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		if m[1] == "" {
			body, first, err := fence(i, "sh")
			if err != nil {
				return nil, err
			}
			q.commands = append(q.commands, splitCommands(body, first)...)
			continue
		}
		spec := outputSpec{match: m[1], line: i + 1}
		if a := asAbove.FindStringSubmatch(m[1]); a != nil {
			if len(q.outputs) == 0 {
				return nil, fmt.Errorf("README.md:%d: %q: no output above", i+1, m[1])
			}
			prev := q.outputs[len(q.outputs)-1].want
			spec.match, spec.want = a[1], prev.clone()
			for _, k := range strings.Split(a[2], ",") {
				k = strings.TrimSpace(k)
				if _, ok := spec.want.vals[k]; !ok {
					return nil, fmt.Errorf("README.md:%d: the output above has no key %q", i+1, k)
				}
				spec.want.vals[k] = nil
			}
		} else {
			body, _, err := fence(i, "json")
			if err != nil {
				return nil, err
			}
			if spec.want, err = parseObject([]byte(strings.Join(body, "\n"))); err != nil {
				return nil, fmt.Errorf("README.md:%d: the documented output: %v", i+3, err)
			}
		}
		q.outputs = append(q.outputs, spec)
	}
	if len(q.commands) == 0 || len(q.outputs) == 0 {
		return nil, fmt.Errorf("the README marks %d commands and %d outputs for the Quickstart test", len(q.commands), len(q.outputs))
	}
	return q, nil
}

// splitCommands joins continuation lines and drops comments and blank
// lines; first is the README line of body[0].
func splitCommands(body []string, first int) []command {
	var cmds []command
	var cur strings.Builder
	start := 0
	for i, l := range body {
		if t := strings.TrimSpace(l); cur.Len() == 0 && (t == "" || strings.HasPrefix(t, "#")) {
			continue
		}
		if cur.Len() == 0 {
			start = first + i
		}
		if s, ok := strings.CutSuffix(l, `\`); ok {
			cur.WriteString(s)
			continue
		}
		cur.WriteString(l)
		cmds = append(cmds, command{text: strings.TrimSpace(cur.String()), line: start})
		cur.Reset()
	}
	return cmds
}

// object is a JSON object with its keys in order.
type object struct {
	keys []string
	vals map[string]any
}

func parseObject(data []byte) (*object, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object: %q", data)
	}
	o := &object{vals: map[string]any{}}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k := tok.(string)
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if _, dup := o.vals[k]; dup {
			return nil, fmt.Errorf("key %q twice", k)
		}
		o.keys, o.vals[k] = append(o.keys, k), v
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("data after the object: %q", data)
	}
	return o, nil
}

func (o *object) clone() *object {
	c := &object{keys: slices.Clone(o.keys), vals: map[string]any{}}
	for k, v := range o.vals {
		c.vals[k] = v
	}
	return c
}

// --- comparing what was printed with what is documented --------------------

var (
	uuidRe = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	timeRe = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)
)

// Keys whose values differ from run to run: the documented value shows the
// form, the printed one must have it. Every other value must be equal.
var timeKeys = []string{"issued_at", "not_before", "expires", "grace_ends"}

func str(v any) (string, bool) { s, ok := v.(string); return s, ok }

// compareObject lists how got differs from want. ran is when the commands
// ran: a printed issued_at must fall around it.
func compareObject(want, got *object, ran time.Time) []string {
	var p []string
	if !slices.Equal(want.keys, got.keys) {
		p = append(p, fmt.Sprintf("keys: documented %v, printed %v", want.keys, got.keys))
	}
	for _, k := range want.keys {
		w := want.vals[k]
		g, ok := got.vals[k]
		if !ok {
			continue
		}
		ws, wIsStr := str(w)
		gs, gIsStr := str(g)
		switch {
		case k == "license_id" && wIsStr:
			if !uuidRe.MatchString(ws) || !gIsStr || !uuidRe.MatchString(gs) {
				p = append(p, fmt.Sprintf("%q: documented %v, printed %v: want a lowercase UUID in both", k, w, g))
			}
		case slices.Contains(timeKeys, k) && wIsStr:
			if !timeRe.MatchString(ws) || !gIsStr || !timeRe.MatchString(gs) {
				p = append(p, fmt.Sprintf("%q: documented %v, printed %v: want an RFC 3339 UTC time in whole seconds in both", k, w, g))
			}
		case k == "days_remaining":
			wn, werr := strconv.Atoi(fmt.Sprint(w))
			gn, gerr := strconv.Atoi(fmt.Sprint(g))
			if werr != nil || gerr != nil || gn < wn-1 || gn > wn+1 {
				p = append(p, fmt.Sprintf("%q: documented %v, printed %v (±1 allowed)", k, w, g))
			}
		default:
			if !reflect.DeepEqual(w, g) {
				p = append(p, fmt.Sprintf("%q: documented %s, printed %s", k, compact(w), compact(g)))
			}
		}
	}
	// The documented times vary, but not how they relate: a license valid
	// for a year with the default grace.
	span := func(o *object, from, to string) (time.Duration, bool) {
		a, aok := str(o.vals[from])
		b, bok := str(o.vals[to])
		ta, err1 := time.Parse(time.RFC3339, a)
		tb, err2 := time.Parse(time.RFC3339, b)
		return tb.Sub(ta), aok && bok && err1 == nil && err2 == nil
	}
	for _, r := range [][2]string{{"issued_at", "expires"}, {"expires", "grace_ends"}} {
		dw, wok := span(want, r[0], r[1])
		dg, gok := span(got, r[0], r[1])
		if wok && (!gok || dw != dg) {
			p = append(p, fmt.Sprintf("%s − %s: documented %s, printed %s", r[1], r[0], dw, dg))
		}
	}
	if s, ok := str(got.vals["issued_at"]); ok && want.vals["issued_at"] != nil {
		if at, err := time.Parse(time.RFC3339, s); err != nil || at.Before(ran.Add(-time.Minute)) || at.After(time.Now().Add(time.Minute)) {
			p = append(p, fmt.Sprintf(`"issued_at": printed %s, not the time of the run (%s)`, s, ran.UTC().Format(time.RFC3339)))
		}
	}
	return p
}

func compact(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// result is what one command printed.
type result struct {
	cmd    command
	stdout string
}

// compareOutputs checks every documented output against the commands it
// names, in one run of the commands. A rerun of some commands (rerun) may
// leave some documented outputs without a command.
func compareOutputs(q *quickstart, results []result, ran time.Time, rerun bool) []string {
	var p []string
	for _, spec := range q.outputs {
		n := 0
		for _, r := range results {
			if !strings.Contains(r.cmd.text, spec.match) {
				continue
			}
			n++
			where := fmt.Sprintf("README.md:%d: the output of line %d (%s)", spec.line, r.cmd.line, r.cmd.text)
			got, err := parseObject([]byte(r.stdout))
			if err != nil {
				p = append(p, fmt.Sprintf("%s: %v", where, err))
				continue
			}
			for _, d := range compareObject(spec.want, got, ran) {
				p = append(p, where+": "+d)
			}
		}
		if n == 0 && !rerun {
			p = append(p, fmt.Sprintf("README.md:%d: no command of the Quickstart contains %q", spec.line, spec.match))
		}
	}
	return p
}

// --- running the commands ----------------------------------------------------

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
		t.Fatalf("README.md:%d: %q: the test runs only %q", c.line, text, buildCommand)
	case exportRe.MatchString(text):
		m := exportRe.FindStringSubmatch(text)
		if v, ok := s.own[m[1]]; ok {
			if d := s.defaults[m[1]]; m[2] != d {
				t.Errorf("README.md:%d: exports %s=%s; the program's default is %s", c.line, m[1], m[2], d)
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
		p := proctest.Start(t, fmt.Sprintf("README.md:%d %s", c.line, m[2]), s.bash, []string{"-c", script}, s.environ())
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
	t.Logf("README.md:%d: %s (%s)", c.line, c.text, time.Since(start).Round(time.Millisecond))
	if err != nil {
		for _, p := range s.background {
			if aerr := p.Alive(); aerr != nil {
				t.Log(aerr)
			}
		}
		t.Fatalf("README.md:%d: %s: %v\nstdout:\n%s\nstderr:\n%s", c.line, c.text, err, stdout.String(), stderr.String())
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

func TestQuickstart(t *testing.T) {
	bash := testenv.RequireTool(t, "bash")
	testenv.RequireTool(t, "curl")
	readme, err := os.ReadFile(filepath.Join(proctest.RepoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	q, err := parseQuickstart(string(readme))
	if err != nil {
		t.Fatal(err)
	}
	if q.commands[0].text != buildCommand {
		t.Fatalf("README.md:%d: the Quickstart starts with %q, want %q", q.commands[0].line, q.commands[0].text, buildCommand)
	}
	ports := proctest.FreePorts(t, 2)
	s := &session{
		t: t, dir: t.TempDir(), bash: bash,
		// The embedded NATS's default port may be taken here: the README
		// does not name it, ledger serve reads it from the environment.
		env: map[string]string{"LEDGER_NATS_LISTEN": fmt.Sprintf("127.0.0.1:%d", ports[1])},
		own: map[string]string{"LEDGER_LISTEN": fmt.Sprintf("127.0.0.1:%d", ports[0])},
	}
	ran := time.Now()
	var first []result
	restartFrom := -1
	for i, c := range q.commands {
		if restartFrom < 0 && strings.HasSuffix(c.text, "&") {
			restartFrom = i
		}
		first = append(first, s.run(c))
	}
	for _, d := range compareOutputs(q, first, ran, false) {
		t.Error(d)
	}

	// "Stop the ledger and start it again: everything is still there." The
	// same commands again print the same: the upload is an identical repeat
	// (200, no event), so even seq stays.
	if restartFrom < 0 {
		t.Fatal("the Quickstart runs nothing in the background")
	}
	s.stopBackground()
	var again []result
	for _, c := range q.commands[restartFrom:] {
		again = append(again, s.run(c))
	}
	for _, d := range compareOutputs(q, again, ran, true) {
		t.Error("after a restart: " + d)
	}

	t.Run("documented outputs that differ fail", func(t *testing.T) {
		checkComparisonsCanFail(t, string(readme), first, ran)
	})
}

// checkComparisonsCanFail breaks the README's documented outputs one way at
// a time and expects the comparison with the real run to say so.
func checkComparisonsCanFail(t *testing.T, readme string, results []result, ran time.Time) {
	cases := []struct{ old, new, want string }{
		{`"enforcement": "on"`, `"enforcement": "auto"`, `"enforcement": documented "auto", printed "on"`},
		{`"seq": 2`, `"seq": 3`, `"seq": documented 3, printed 2`},
		{`"days_remaining": 364`, `"days_remaining": 362`, `"days_remaining": documented 362`},
		{`"features": ["chat_connector", "sso"]`, `"features": ["sso"]`, `"features": documented ["sso"]`},
		{`"users_limit": 50`, `"users_limit": 0`, `"users_limit": documented 0, printed 50`},
		{`"resolved_from": "org"`, `"resolved_from": "instance"`, `"resolved_from": documented "instance", printed "org"`},
		{`"seq": 2,` + "\n" + `  "pending": null`, `"seq": 2`, "keys: documented"},
		{`"expires": "2027-11-29T14:19:45Z"`, `"expires": "2027-12-29T14:19:45Z"`, "expires − issued_at: documented"},
		{`"issued_at": "2026-11-29T14:19:45Z"`, `"issued_at": "yesterday"`, `"issued_at": documented yesterday`},
		{`"license_id": "01a227ad-19d4-7dba-a1c1-f53ccd12c136"`, `"license_id": "ACME-1"`, `"license_id": documented ACME-1`},
		{"as above with seq, resolved_from, enforcement null", "as above with seq, resolved_from null", `"enforcement": documented "on", printed null`},
		{"<!-- quickstart output: /api/license?org=acme -->", "<!-- quickstart output: /api/licence -->", `no command of the Quickstart contains "/api/licence"`},
	}
	for _, c := range cases {
		if !strings.Contains(readme, c.old) {
			t.Errorf("README.md no longer contains %q: update this case", c.old)
			continue
		}
		q, err := parseQuickstart(strings.Replace(readme, c.old, c.new, 1))
		if err != nil {
			t.Errorf("%q → %q: %v", c.old, c.new, err)
			continue
		}
		if got := strings.Join(compareOutputs(q, results, ran, false), "\n"); !strings.Contains(got, c.want) {
			t.Errorf("%q → %q: want %q, got:\n%s", c.old, c.new, c.want, got)
		}
	}
	for _, broken := range []struct{ old, new, want string }{
		{"<!-- quickstart output: /api/license?org=acme -->\n```json", "<!-- quickstart output: /api/license?org=acme -->\n\n```json", "not followed by a ```json block"},
		{"as above with seq, resolved_from, enforcement null", "as above with seq, version null", `no key "version"`},
	} {
		_, err := parseQuickstart(strings.Replace(readme, broken.old, broken.new, 1))
		if err == nil || !strings.Contains(err.Error(), broken.want) {
			t.Errorf("%q → %q: want an error %q, got %v", broken.old, broken.new, broken.want, err)
		}
	}
	if _, err := parseObject([]byte(`{"a":1,"a":2}`)); err == nil {
		t.Error("an object with a key twice parses")
	}
	if _, err := parseObject([]byte(`{"a":1} {}`)); err == nil || errors.Is(err, io.EOF) {
		t.Errorf("data after the object: %v", err)
	}
}
