package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/cli"
	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/testenv/natstest"
	"github.com/licenseledger/ledger/internal/testenv/openapitest"
)

// runCmd runs the ledger CLI in-process with env set for the test.
func runCmd(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	var out, errb bytes.Buffer
	code = run(args, &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Now: time.Now})
	return code, out.String(), errb.String()
}

// createToken runs token create --no-wait and returns the printed token.
func createToken(t *testing.T, file string, args ...string) string {
	t.Helper()
	code, out, errOut := runCmd(t, nil, append([]string{"token", "create", "--no-wait", "--tokens-file", file}, args...)...)
	if code != 0 {
		t.Fatalf("token create %v: exit %d: %s", args, code, errOut)
	}
	return strings.TrimSuffix(out, "\n")
}

// createTokenOn runs token create against the ledger at server, which
// returns once that ledger accepts the token, and returns the token.
func createTokenOn(t *testing.T, server, file string, args ...string) string {
	t.Helper()
	code, out, errOut := runCmd(t, nil, append([]string{"token", "create", "--server", server, "--tokens-file", file}, args...)...)
	if code != 0 || !strings.Contains(errOut, "the ledger at "+server+" accepts it") {
		t.Fatalf("token create %v: exit %d: %s", args, code, errOut)
	}
	return strings.TrimSuffix(out, "\n")
}

var tokenPattern = regexp.MustCompile(`^[0-9a-f]{64}\n$`)

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestTokenCreateListRevoke(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "data", "tokens")
	nobody := closedPort(t)
	env := map[string]string{"DATA_DIR": filepath.Join(dir, "data"), "LEDGER_SERVER": nobody}

	// No ledger answers: create says so, and succeeds.
	code, out, errOut := runCmd(t, env, "token", "create", "--role", "org_admin", "--org", "acme,globex", "--org", "initech", "--name", "acme-admin")
	if code != 0 || !tokenPattern.MatchString(out) || !strings.Contains(errOut, "no ledger answers at "+nobody) {
		t.Fatalf("create: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	adminTok := strings.TrimSpace(out)
	if fi, err := os.Stat(file); err != nil || (runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600) {
		t.Fatalf("tokens file under $DATA_DIR: %v %v", fi, err)
	}
	b, _ := os.ReadFile(file)
	if string(b) != sha256Hex(adminTok)+" org_admin acme,globex,initech acme-admin\n" {
		t.Fatalf("tokens file:\n%s", b)
	}
	if strings.Contains(string(b), adminTok) {
		t.Fatal("the tokens file holds the token itself")
	}
	audTok := createToken(t, file, "--role", "auditor", "--name", "audit")
	opsTok := createToken(t, file, "--role", "operator", "--name", "ops@example.com")
	// LEDGER_TOKENS_FILE wins over DATA_DIR.
	other := filepath.Join(dir, "elsewhere", "tokens")
	if code, _, errOut := runCmd(t, map[string]string{"LEDGER_TOKENS_FILE": other}, "token", "create", "--no-wait", "--role", "auditor", "--org", "acme", "--name", "x"); code != 0 {
		t.Fatalf("create with LEDGER_TOKENS_FILE: %d %s", code, errOut)
	}
	if _, err := os.Stat(other); err != nil {
		t.Fatal(err)
	}
	os.Unsetenv("LEDGER_TOKENS_FILE")

	refused := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"duplicate name", []string{"--role", "auditor", "--name", "audit"}, 1, "already exists"},
		{"org_admin without org", []string{"--role", "org_admin", "--name", "y"}, 2, "needs --org"},
		{"org_admin of _instance", []string{"--role", "org_admin", "--org", "_instance", "--name", "y"}, 2, "never covers _instance"},
		{"org_admin of every org", []string{"--role", "org_admin", "--org", "*", "--name", "y"}, 2, `"*"`},
		{"operator with org", []string{"--role", "operator", "--org", "acme", "--name", "y"}, 2, "drop --org"},
		{"bad org", []string{"--role", "auditor", "--org", "Acme", "--name", "y"}, 2, `org "Acme"`},
		{"bad name", []string{"--role", "auditor", "--name", "a/b"}, 2, "name"},
		{"unknown role", []string{"--role", "root", "--name", "y"}, 2, "--role"},
		{"no name", []string{"--role", "auditor"}, 2, "--name"},
		{"no role", []string{"--name", "y"}, 2, "--role"},
		{"bad server", []string{"--role", "auditor", "--name", "y", "--server", "ftp://x"}, 2, "--server"},
		{"no wait", []string{"--role", "auditor", "--name", "y", "--wait", "0s"}, 2, "--wait"},
	}
	for _, c := range refused {
		code, out, errOut := runCmd(t, env, append([]string{"token", "create"}, c.args...)...)
		if code != c.code || out != "" || !strings.Contains(errOut, c.msg) {
			t.Errorf("%s: exit %d (want %d), stdout %q, stderr %q", c.name, code, c.code, out, errOut)
		}
	}
	if b2, _ := os.ReadFile(file); len(b2) == 0 || strings.Count(string(b2), "\n") != 3 {
		t.Fatalf("refused creates changed the file:\n%s", b2)
	}

	// list: a table, or JSON; never a token.
	code, out, _ = runCmd(t, env, "token", "list")
	if code != 0 {
		t.Fatalf("list: %d", code)
	}
	for _, tok := range []string{adminTok, audTok, opsTok} {
		if strings.Contains(out, tok) {
			t.Fatal("list printed a token")
		}
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := [][]string{
		{"NAME", "ROLE", "ORGS", "HASH"},
		{"acme-admin", "org_admin", "acme,globex,initech", sha256Hex(adminTok)[:12]},
		{"audit", "auditor", "*", sha256Hex(audTok)[:12]},
		{"ops@example.com", "operator", "*", sha256Hex(opsTok)[:12]},
	}
	if len(lines) != len(want) {
		t.Fatalf("list:\n%s", out)
	}
	for i, w := range want {
		if got := strings.Fields(lines[i]); strings.Join(got, " ") != strings.Join(w, " ") {
			t.Errorf("list line %d: %q, want %q", i, lines[i], w)
		}
	}
	code, out, _ = runCmd(t, env, "token", "list", "--output", "json")
	var rows []map[string]any
	if err := json.Unmarshal([]byte(out), &rows); code != 0 || err != nil || len(rows) != 3 {
		t.Fatalf("list json: %d %v\n%s", code, err, out)
	}
	if rows[0]["name"] != "acme-admin" || rows[0]["role"] != "org_admin" || rows[0]["hash_prefix"] != sha256Hex(adminTok)[:12] ||
		len(rows[0]["orgs"].([]any)) != 3 || rows[1]["orgs"].([]any)[0] != "*" {
		t.Fatalf("list json: %v", rows)
	}

	// revoke removes the line; an unknown name is exit 1.
	if code, out, errOut := runCmd(t, env, "token", "revoke", "audit"); code != 0 || out != "" || !strings.Contains(errOut, "revoked audit") {
		t.Fatalf("revoke: %d %q %q", code, out, errOut)
	}
	if b, _ := os.ReadFile(file); strings.Contains(string(b), " audit\n") || strings.Count(string(b), "\n") != 2 {
		t.Fatalf("after revoke:\n%s", b)
	}
	if code, _, errOut := runCmd(t, env, "token", "revoke", "audit"); code != 1 || !strings.Contains(errOut, "no token has this name: audit") {
		t.Fatalf("revoke unknown: %d %q", code, errOut)
	}
	if code, _, _ := runCmd(t, env, "token", "revoke"); code != 2 {
		t.Fatalf("revoke without a name: %d", code)
	}

	// A file readable by others, or malformed, is refused, not rewritten.
	if runtime.GOOS != "windows" {
		os.Chmod(file, 0o644)
		for _, args := range [][]string{{"token", "list"}, {"token", "revoke", "ops@example.com"}, {"token", "create", "--role", "auditor", "--name", "z"}} {
			if code, _, errOut := runCmd(t, env, args...); code != 1 || !strings.Contains(errOut, "chmod 600") {
				t.Errorf("%v on a 0644 file: %d %q", args, code, errOut)
			}
		}
		os.Chmod(file, 0o600)
	}
	f, _ := os.OpenFile(file, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("oops\n")
	f.Close()
	if code, _, errOut := runCmd(t, env, "token", "create", "--role", "auditor", "--name", "z"); code != 1 || !strings.Contains(errOut, file+":3:") {
		t.Errorf("create on a malformed file: %d %q", code, errOut)
	}
	// list shows what a ledger trusts and reports the rest (exit 1);
	// revoke still works, and keeps the broken line.
	code, out, errOut = runCmd(t, env, "token", "list")
	if code != 1 || !strings.Contains(out, "acme-admin") || !strings.Contains(out, "ops@example.com") ||
		!strings.Contains(errOut, file+":3: want <sha256 hex> <role> <orgs|*> <name>, got 1 field(s) (ignored: this line grants nothing)") {
		t.Errorf("list of a malformed file: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := runCmd(t, env, "token", "revoke", "ops@example.com"); code != 0 {
		t.Errorf("revoke in a malformed file: %d %q", code, errOut)
	}
	if b, _ := os.ReadFile(file); !strings.HasSuffix(string(b), "oops\n") || strings.Contains(string(b), "ops@example.com") {
		t.Errorf("after a revoke in a malformed file:\n%s", b)
	}

	// A missing file lists nothing.
	if code, out, errOut := runCmd(t, map[string]string{"DATA_DIR": filepath.Join(dir, "none")}, "token", "list"); code != 0 || strings.TrimSpace(out) != "NAME  ROLE  ORGS  HASH" || !strings.Contains(errOut, "no tokens file") {
		t.Errorf("list of a missing file: %d %q %q", code, out, errOut)
	}
}

func TestTokenHelpListsVariables(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"token", "create", "--help"}, []string{"--tokens-file", "$LEDGER_TOKENS_FILE", "--data-dir", "$DATA_DIR", "--role", "--org", "--name",
			"--server", "$LEDGER_SERVER", "--ca-file", "$LEDGER_CA_FILE", "--wait", "--no-wait"}},
		{[]string{"token", "list", "--help"}, []string{"$LEDGER_TOKENS_FILE", "$DATA_DIR", "--output"}},
		{[]string{"token", "revoke", "--help"}, []string{"$LEDGER_TOKENS_FILE", "$DATA_DIR", "<name>"}},
		{[]string{"serve", "--help"}, []string{"--tokens-file", "$LEDGER_TOKENS_FILE", "--rate-limit", "$LEDGER_RATE_LIMIT", "20/s:100"}},
	} {
		code, out, _ := runCmd(t, nil, c.args...)
		for _, w := range c.want {
			if code != 0 || !strings.Contains(out, w) {
				t.Errorf("%v: exit %d, %q missing:\n%s", c.args, code, w, out)
			}
		}
	}
}

// tokenLedger is a ledger serve whose logs the test can wait on.
type tokenLedger struct {
	url  string
	logs *lockedWriter
	buf  *bytes.Buffer
}

func (l *tokenLedger) logged(s string) bool {
	l.logs.mu.Lock()
	defer l.logs.mu.Unlock()
	return strings.Contains(l.buf.String(), s)
}

// serveTokens runs ledger serve (embedded NATS, in-process only) with mod
// applied, logging at info level, until the test ends.
func serveTokens(t *testing.T, dataDir string, mod func(*serveCmd)) *tokenLedger {
	t.Helper()
	ring, _ := vendorKey("k1")
	cmd := &serveCmd{Listen: "127.0.0.1:0", DataDir: dataDir, NATSListen: "off", NATSSync: "always",
		Replicas: 1, GraceDays: 7, RejectAudit: 10, UsageRate: 60, ShutdownWait: 5 * time.Second}
	cmd.PublicKeys, cmd.Stream = ring, "LICENSES"
	cmd.LogFormat, cmd.LogLevel = "text", "info"
	cmd.wrapAPI = openapitest.New(t).Wrap // checked against the OpenAPI document
	if mod != nil {
		mod(cmd)
	}
	l := &tokenLedger{buf: &bytes.Buffer{}}
	l.logs = &lockedWriter{w: l.buf}
	log, _ := cmd.Logger(l.logs)
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- cmd.serve(ctx, &cli.Env{Stdout: io.Discard, Stderr: io.Discard, Now: time.Now}, log, started)
	}()
	select {
	case addr := <-started:
		l.url = "http://" + addr
	case err := <-done:
		cancel()
		t.Fatalf("ledger exited: %v\n%s", err, l.buf.String())
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("ledger did not start")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ledger stopped with %v", err)
		}
	})
	return l
}

// api makes one request with tok and returns the status, the decoded JSON
// answer and the headers.
func (l *tokenLedger) api(t *testing.T, tok, method, path, body string) (int, map[string]any, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, l.url+path, strings.NewReader(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s %s: not JSON (%d): %s", method, path, resp.StatusCode, raw)
	}
	return resp.StatusCode, m, resp.Header
}

// checkTokensFile checks what /readyz (still 200) and the metrics say of
// the tokens file: the tokens_file field, ledger_tokens_file_errors by
// kind (others 0) and ledger_tokens_file_tokens.
func (l *tokenLedger) checkTokensFile(t *testing.T, field string, errs map[string]int, tokens int) {
	t.Helper()
	resp, err := http.Get(l.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var rd map[string]json.RawMessage
	json.NewDecoder(resp.Body).Decode(&rd)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(rd["tokens_file"]) != field {
		t.Errorf("/readyz: %d, tokens_file %s; want 200, %s", resp.StatusCode, rd["tokens_file"], field)
	}
	resp, err = http.Get(l.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, kind := range auth.ProblemKinds {
		want := fmt.Sprintf(`ledger_tokens_file_errors{kind=%q} %d`, kind, errs[kind])
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want) + `$`).Match(body) {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(string(body), "ledger_tokens_file"))
		}
	}
	if want := fmt.Sprintf("ledger_tokens_file_tokens %d", tokens); !regexp.MustCompile(`(?m)^` + want + `$`).Match(body) {
		t.Errorf("metrics lack %s:\n%s", want, grepLines(string(body), "ledger_tokens_file"))
	}
}

// waitFor polls cond until it holds, failing the test after 5 s, and
// returns how long it took.
func waitFor(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("%s: not within 5 s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func TestServeFollowsTokensFile(t *testing.T) {
	dir := t.TempDir()
	l := serveTokens(t, dir, nil)
	file := filepath.Join(dir, "tokens")
	if _, err := os.Stat(file); err == nil {
		t.Fatal("serve created the tokens file")
	}
	admin, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal("no admin token generated with no token at all:", err)
	}
	adminTok := strings.TrimSpace(string(admin))
	status := func(tok, method, path, body string) int {
		code, _, _ := l.api(t, tok, method, path, body)
		return code
	}

	// A tokens file created after start, by token create, is picked up;
	// create returns once the ledger accepts the token, so it works at once.
	orgTok := createTokenOn(t, l.url, file, "--role", "org_admin", "--org", "acme", "--name", "acme-admin")
	if c := status(orgTok, "GET", "/api/license?org=acme", ""); c != 200 {
		t.Fatalf("a token used as token create returns: %d", c)
	}
	audTok := createTokenOn(t, l.url, file, "--role", "auditor", "--name", "audit")
	if c := status(audTok, "GET", "/api/whoami", ""); c != 200 {
		t.Fatalf("an auditor token used as token create returns: %d", c)
	}

	// What each role may do on /api/license.
	key := signed(t, "k1", func(p map[string]any) { p["expires"] = future(365 * 24 * time.Hour) })
	globex := signed(t, "k1", func(p map[string]any) {
		p["expires"] = future(365 * 24 * time.Hour)
		p["org_slug"] = "globex"
	})
	for _, c := range []struct {
		name, tok, method, path, body string
		code                          int
		err                           string
	}{
		{"org_admin reads its org", orgTok, "GET", "/api/license?org=acme", "", 200, ""},
		{"org_admin uploads to its org", orgTok, "POST", "/api/license?org=acme", key, 200, ""},
		{"org_admin reads another org", orgTok, "GET", "/api/license?org=globex", "", 403, "forbidden"},
		{"org_admin uploads to another org", orgTok, "POST", "/api/license?org=globex", globex, 403, "forbidden"},
		{"org_admin by header, another org", orgTok, "GET", "/api/license", "", 403, "forbidden"},
		{"org_admin reads _instance", orgTok, "GET", "/api/license?org=_instance", "", 403, "forbidden"},
		{"org_admin forces", orgTok, "POST", "/api/license?org=acme&force=true", key, 403, "forbidden"},
		{"org_admin removes its own license", orgTok, "DELETE", "/api/license?org=acme", "", 403, "forbidden"},
		{"org_admin invalidates in its org", orgTok, "POST", "/api/license/invalidate?org=acme", `{"license_id":"0193a5b0-7e1a-7c3d-8f00-1234567890ab"}`, 403, "forbidden"},
		{"org_admin sets enforcement", orgTok, "PUT", "/api/enforcement", `{"mode":"off"}`, 403, "forbidden"},
		{"org_admin lists orgs", orgTok, "GET", "/api/orgs", "", 403, "forbidden"},
		{"org_admin uploads to _instance", orgTok, "POST", "/api/license?org=_instance", key, 403, "forbidden"},
		{"auditor removes", audTok, "DELETE", "/api/license?org=acme", "", 403, "forbidden"},
		{"auditor sets enforcement", audTok, "PUT", "/api/enforcement", `{"mode":"off"}`, 403, "forbidden"},
		{"auditor lists orgs", audTok, "GET", "/api/orgs", "", 403, "forbidden"},
		{"auditor reads a license", audTok, "GET", "/api/license?org=acme", "", 403, "forbidden"},
		{"auditor uploads", audTok, "POST", "/api/license?org=acme", key, 403, "forbidden"},
		{"unknown token", strings.Repeat("f", 64), "GET", "/api/license?org=acme", "", 401, "unauthorized"},
		{"admin token still works", adminTok, "GET", "/api/license?org=globex", "", 200, ""},
	} {
		req, _ := http.NewRequest(c.method, l.url+c.path, strings.NewReader(c.body))
		req.Header.Set("Authorization", "Bearer "+c.tok)
		if c.path == "/api/license" {
			req.Header.Set("X-Org-Slug", "globex")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		resp.Body.Close()
		if resp.StatusCode != c.code || (c.err != "" && m["error"] != c.err) {
			t.Errorf("%s: %d %v, want %d %s", c.name, resp.StatusCode, m, c.code, c.err)
		}
	}

	// A hand edit that removes a line and adds a broken one: the removed
	// token is refused within about a second, the valid lines stay in
	// force, and the broken line shows in the log (by number, without its
	// hash), the metrics and /readyz (still 200) until it is fixed.
	good, _ := os.ReadFile(file)
	opsTok := createTokenOn(t, l.url, file, "--role", "operator", "--name", "ops")
	var kept []string
	for _, line := range strings.SplitAfter(string(good), "\n") {
		if !strings.Contains(line, " audit\n") {
			kept = append(kept, line)
		}
	}
	b, _ := os.ReadFile(file)
	opsLine := strings.TrimPrefix(string(b), string(good))
	broken := sha256Hex("not-a-token-of-this-test")[:40] + " auditor * half-a-hash\n"
	edited := strings.Join(kept, "") + broken + opsLine
	if err := auth.WriteFileAtomic(file, []byte(edited)); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, "removed token refused", func() bool { return status(audTok, "GET", "/api/whoami", "") == 401 })
	t.Logf("hand edit → removed token refused in %v", took)
	for _, tok := range []string{orgTok, opsTok, adminTok} {
		if c := status(tok, "GET", "/api/whoami", ""); c != 200 {
			t.Fatalf("a valid token beside a broken line gets %d", c)
		}
	}
	waitFor(t, "broken line logged", func() bool { return l.logged("tokens file line ignored") })
	if !l.logged("line=2 kind=malformed") || l.logged(sha256Hex("not-a-token-of-this-test")[:12]) {
		t.Errorf("the log does not name line 2, or holds its hash:\n%s", l.buf.String())
	}
	l.checkTokensFile(t, `{"refused":null,"ignored":1,"lines":[{"line":2,"kind":"malformed"}]}`, map[string]int{"malformed": 1}, 2)

	// A file readable by others grants nothing: every file token 401, a
	// loud log naming the fix; the admin token still works. chmod 600
	// restores the file's tokens.
	if runtime.GOOS != "windows" {
		os.Chmod(file, 0o644)
		waitFor(t, "tokens of an insecure file refused", func() bool {
			return status(orgTok, "GET", "/api/whoami", "") == 401 && status(opsTok, "GET", "/api/whoami", "") == 401
		})
		if c := status(adminTok, "GET", "/api/whoami", ""); c != 200 {
			t.Fatalf("the admin token with an insecure tokens file: %d", c)
		}
		// The refusal takes effect before it is logged: wait for the line.
		waitFor(t, "the refusal logged with its fix", func() bool {
			return l.logged("tokens file refused") && l.logged("chmod 600 "+file)
		})
		l.checkTokensFile(t, `{"refused":"insecure","ignored":0,"lines":[]}`, map[string]int{"insecure": 1}, 0)
		os.Chmod(file, 0o600)
		waitFor(t, "tokens back after chmod 600", func() bool { return status(opsTok, "GET", "/api/whoami", "") == 200 })
	}
	if err := auth.WriteFileAtomic(file, good); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "fixed file in force", func() bool { return status(audTok, "GET", "/api/whoami", "") == 200 })
	l.checkTokensFile(t, "null", nil, 2)

	// Revoking makes the token 401 within about a second.
	if code, _, errOut := runCmd(t, nil, "token", "revoke", "--tokens-file", file, "acme-admin"); code != 0 {
		t.Fatalf("revoke: %d %s", code, errOut)
	}
	took = waitFor(t, "revoked token refused", func() bool { return status(orgTok, "GET", "/api/license?org=acme", "") == 401 })
	t.Logf("token revoke → refused in %v", took)
	if c := status(audTok, "GET", "/api/license?org=acme", ""); c != 403 {
		t.Fatalf("the auditor token was lost with the revoke: %d", c)
	}
	if c := status(adminTok, "GET", "/api/license?org=acme", ""); c != 200 {
		t.Fatalf("admin token after revoke: %d", c)
	}
}

// A tokens file with entries counts as a token: no admin token is
// generated; a file with only comments does not count.
func TestServeTokensFileAtStart(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tokens")
	opsTok := createToken(t, file, "--role", "operator", "--name", "ops")
	l := serveTokens(t, dir, nil)
	if _, err := os.Stat(filepath.Join(dir, "admin.token")); err == nil {
		t.Fatal("admin.token generated although the tokens file has a token")
	}
	if code, m, _ := l.api(t, opsTok, "GET", "/api/license?org=acme", ""); code != 200 {
		t.Fatalf("file token at start: %d %v", code, m)
	}

	dir2 := t.TempDir()
	os.WriteFile(filepath.Join(dir2, "tokens"), []byte("# no tokens yet\n"), 0o600)
	serveTokens(t, dir2, nil)
	if _, err := os.Stat(filepath.Join(dir2, "admin.token")); err != nil {
		t.Fatal("no admin token generated with a tokens file of comments only")
	}

	// --tokens-file elsewhere than $DATA_DIR.
	dir3, other := t.TempDir(), filepath.Join(t.TempDir(), "api-tokens")
	audTok := createToken(t, other, "--role", "auditor", "--name", "aud")
	l3 := serveTokens(t, dir3, func(c *serveCmd) { c.TokensFile = other })
	if code, _, _ := l3.api(t, audTok, "GET", "/api/license?org=acme", ""); code != 403 {
		t.Fatalf("auditor from --tokens-file: %d", code)
	}
}

// A tokens file with problems at start is read as it would be while
// running: the ledger starts, the broken lines and an unsafe file grant
// nothing, the rest works, and no admin token is generated in its place.
func TestServeStartsWithBrokenTokensFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tokens")
	opsTok := createToken(t, file, "--role", "operator", "--name", "ops")
	f, _ := os.OpenFile(file, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("not a token\n")
	f.Close()
	l := serveTokens(t, dir, nil)
	if code, _, _ := l.api(t, opsTok, "GET", "/api/whoami", ""); code != 200 {
		t.Fatalf("the valid line of a broken file at start: %d", code)
	}
	if !l.logged("line=2 kind=malformed") {
		t.Errorf("the broken line is not logged:\n%s", l.buf.String())
	}
	l.checkTokensFile(t, `{"refused":null,"ignored":1,"lines":[{"line":2,"kind":"malformed"}]}`, map[string]int{"malformed": 1}, 1)
	if _, err := os.Stat(filepath.Join(dir, "admin.token")); err == nil {
		t.Fatal("admin.token generated beside a tokens file with a token")
	}
	// A token added to a file this ledger does not read: create says the
	// ledger still refuses it when the wait ends (exit 1), the token stays.
	other := filepath.Join(t.TempDir(), "tokens")
	code, out, errOut := runCmd(t, nil, "token", "create", "--server", l.url, "--wait", "300ms", "--tokens-file", other, "--role", "auditor", "--name", "elsewhere")
	if code != 1 || !tokenPattern.MatchString(out) || !strings.Contains(errOut, "the ledger at "+l.url+" still refuses the new token after 300ms") {
		t.Errorf("create for another ledger's file: %d %q %q", code, out, errOut)
	}
	if runtime.GOOS == "windows" {
		return
	}
	dir2 := t.TempDir()
	file2 := filepath.Join(dir2, "tokens")
	opsTok2 := createToken(t, file2, "--role", "operator", "--name", "ops")
	os.Chmod(file2, 0o640)
	admin := auth.Generate()
	l2 := serveTokens(t, dir2, func(c *serveCmd) { c.AdminToken = admin })
	if code, _, _ := l2.api(t, opsTok2, "GET", "/api/whoami", ""); code != 401 {
		t.Fatalf("a token of a group-readable file at start: %d", code)
	}
	if code, _, _ := l2.api(t, admin, "GET", "/api/whoami", ""); code != 200 {
		t.Fatalf("LEDGER_ADMIN_TOKEN beside a refused file: %d", code)
	}
	if !l2.logged("tokens file refused") || !l2.logged("chmod 600 "+file2) {
		t.Errorf("the refusal is not logged with its fix:\n%s", l2.buf.String())
	}
	l2.checkTokensFile(t, `{"refused":"insecure","ignored":0,"lines":[]}`, map[string]int{"insecure": 1}, 0)
}

func TestServeRefusesBadTokensSettings(t *testing.T) {
	ring, _ := vendorKey("k1")
	try := func(dir string, mod func(*serveCmd)) (int, string) {
		cmd := &serveCmd{Listen: "127.0.0.1:0", DataDir: dir, NATSListen: "off", NATSSync: "always",
			Replicas: 1, GraceDays: 7, RejectAudit: 10, UsageRate: 60, ShutdownWait: time.Second}
		cmd.PublicKeys, cmd.Stream = ring, "LICENSES"
		mod(cmd)
		log, _ := cmd.Logger(io.Discard)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var errb bytes.Buffer
		err := cmd.serve(ctx, &cli.Env{Stdout: io.Discard, Stderr: io.Discard, Now: time.Now}, log, nil)
		return cli.ExitCode(&errb, "ledger", err), errb.String()
	}
	for _, bad := range []string{"fast", "0", "20/d", "20/s:0"} {
		if code, msg := try(t.TempDir(), func(c *serveCmd) { c.RateLimit = bad }); code != cli.ExitUsage || !strings.Contains(msg, "LEDGER_RATE_LIMIT") {
			t.Errorf("LEDGER_RATE_LIMIT=%s: %d %q", bad, code, msg)
		}
	}
}

func TestServeRateLimit(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tokens")
	a := createToken(t, file, "--role", "operator", "--name", "a")
	b := createToken(t, file, "--role", "operator", "--name", "b")
	l := serveTokens(t, dir, func(c *serveCmd) { c.RateLimit = "2/s:2" })
	for i := range 2 {
		if code, m, _ := l.api(t, a, "GET", "/api/license?org=acme", ""); code != 200 {
			t.Fatalf("request %d: %d %v", i+1, code, m)
		}
	}
	code, m, hdr := l.api(t, a, "GET", "/api/license?org=acme", "")
	if code != 429 || m["error"] != "rate_limited" || m["message"] == "" {
		t.Fatalf("third request: %d %v", code, m)
	}
	if secs, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || secs < 1 {
		t.Fatalf("Retry-After %q", hdr.Get("Retry-After"))
	}
	if code, m, _ := l.api(t, b, "GET", "/api/license?org=acme", ""); code != 200 {
		t.Fatalf("another token: %d %v", code, m)
	}
	// Unknown tokens are refused as such, whatever the rate.
	for range 3 {
		if code, _, _ := l.api(t, strings.Repeat("0", 64), "GET", "/api/license?org=acme", ""); code != 401 {
			t.Fatalf("unknown token: %d", code)
		}
	}
	resp, err := http.Get(l.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !regexp.MustCompile(`(?m)^ledger_rate_limited_total 1$`).Match(body) {
		t.Fatalf("metrics lack ledger_rate_limited_total 1:\n%s", grepLines(string(body), "rate_limited"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// Events record a file token's role and name as the actor.
func TestTokenNameIsTheActor(t *testing.T) {
	srv := natstest.Start(t)
	srv.CreateStream(t)
	dir := t.TempDir()
	seed := filepath.Join(dir, "ledger.nk")
	if err := os.WriteFile(seed, srv.LedgerSeed, 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	tok := createToken(t, filepath.Join(data, "tokens"), "--role", "org_admin", "--org", "acme", "--name", "jane@acme")
	l := serveTokens(t, data, func(c *serveCmd) {
		c.NATSListen, c.NATSURL, c.NATSNKey = "", srv.URL(), seed
	})
	key := signed(t, "k1", func(p map[string]any) { p["expires"] = future(time.Hour) })
	if code, m, _ := l.api(t, tok, "POST", "/api/license?org=acme", key); code != 200 || m["status"] != "valid" {
		t.Fatalf("upload: %d %v", code, m)
	}
	if _, err := os.Stat(filepath.Join(data, "admin.token")); err == nil {
		t.Fatal("an admin token was generated although NATS_URL is set")
	}
	ctx := context.Background()
	s, err := srv.JetStream(t, natsauth.RoleReader).Stream(ctx, "LICENSES")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.GetLastMsgForSubject(ctx, "licenses.org.acme")
	if err != nil {
		t.Fatal(err)
	}
	var env events.Envelope
	if err := json.Unmarshal(msg.Data, &env); err != nil {
		t.Fatal(err)
	}
	if env.Type != "license.uploaded" || env.Actor != (events.Actor{Kind: "org_admin", ID: "jane@acme"}) {
		t.Fatalf("event %s by %+v:\n%s", env.Type, env.Actor, msg.Data)
	}
}
