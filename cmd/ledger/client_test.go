package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/cli"
	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/natsembed"
	"github.com/licenseledger/ledger/license"
)

// cliRun runs ledger in-process. It touches no process environment, so
// tests using it may run in parallel.
func cliRun(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &cli.Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb, Now: time.Now})
	return code, out.String(), errb.String()
}

// client runs a client command against l with its URL and token.
func (p *ledgerProc) client(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	return cliRun(t, stdin, append(args, "--server", p.url, "--token", p.token)...)
}

func jsonObject(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("stdout is not a JSON object: %v\n%q", err, s)
	}
	return m
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// closedPort is a loopback URL nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// streamMessages reads every message on subject from the stream a stopped
// ledger left in dataDir.
func streamMessages(t *testing.T, dataDir, subject string) []*events.Message {
	t.Helper()
	emb, err := natsembed.Start(natsembed.Config{DataDir: dataDir, Listen: "off", SyncAlways: true, Stream: "LICENSES"})
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Shutdown()
	nc, err := natsbus.Connect(natsbus.ConnConfig{NKeyFile: emb.ReaderSeedFile, InProcess: emb.Server, Name: "client-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bus, info, err := natsbus.Open(ctx, nc, "LICENSES", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []*events.Message
	if err := bus.ReadSubject(ctx, subject, 0, info.LastSeq, func(m *events.Message) error {
		msgs = append(msgs, m)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return msgs
}

const clientLicenseID = "0193a5b0-7e1a-7c3d-8f00-1234567890ab"

// The license commands against a real ledger: status, upload (both forms,
// file and stdin), the table output, a rejected upload, invalidate, a
// revoked re-upload, remove; then the stream shows source "cli".
func TestClientLicenseLifecycle(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	l := startLedger(t, data, nil)
	files := t.TempDir()
	key := signed(t, "k1", func(p map[string]any) { p["expires"] = future(365 * 24 * time.Hour) })
	keyFile := writeFile(t, files, "acme.key", key)

	code, out, errs := l.client(t, "", "status", "--org", "acme")
	if m := jsonObject(t, out); code != cli.ExitOK || m["status"] != "missing" || m["resolved_from"] != "none" {
		t.Fatalf("status before upload: exit %d, %v, %s", code, m, errs)
	}

	code, out, errs = l.client(t, "", "status", "--install")
	if m := jsonObject(t, out); code != cli.ExitOK || len(fmt.Sprint(m["install_id"])) != 36 || len(fmt.Sprint(m["keyring_fingerprint"])) != 64 || m["enforcement"] != "auto" {
		t.Fatalf("status --install: exit %d, %v, %s", code, m, errs)
	}
	if code, _, _ := l.client(t, "", "status", "--install", "--org", "acme"); code != cli.ExitUsage {
		t.Fatalf("--install with --org: exit %d", code)
	}
	if code, _, _ := l.client(t, "", "status"); code != cli.ExitUsage {
		t.Fatalf("status without --org: exit %d", code)
	}

	code, out, errs = l.client(t, "", "upload", "--org", "acme", keyFile)
	up := jsonObject(t, out)
	if code != cli.ExitOK || up["status"] != "valid" || up["license_id"] != clientLicenseID || up["resolved_from"] != "org" || errs != "" {
		t.Fatalf("upload: exit %d, %v, stderr %q", code, up, errs)
	}
	if !strings.HasPrefix(out, "{\n  \"org\": \"acme\",\n  \"status\": \"valid\",\n") || !strings.HasSuffix(out, "\n}\n") || len(up) != 20 {
		t.Fatalf("upload output is not the pretty-printed status payload:\n%s", out)
	}

	code, out, _ = l.client(t, "", "status", "--org", "acme")
	if st := jsonObject(t, out); code != cli.ExitOK || st["status"] != "valid" || st["seq"] != up["seq"] || st["expires"] != up["expires"] {
		t.Fatalf("status: exit %d, %v", code, st)
	}

	code, out, errs = l.client(t, "", "status", "--org", "acme", "--output", "table")
	if code != cli.ExitOK {
		t.Fatalf("status table: exit %d, %s", code, errs)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(statusKeys) {
		t.Fatalf("table has %d lines, want %d:\n%s", len(lines), len(statusKeys), out)
	}
	// Keys in the fixed order, values aligned after the longest key
	// ("users_reported_at") and two spaces.
	for i, k := range []string{"org", "status", "reason", "resolved_from", "license_id", "customer", "tier", "products",
		"features", "issued_at", "not_before", "expires", "grace_ends", "days_remaining", "users_limit", "users_active",
		"users_reported_at", "enforcement", "seq", "pending"} {
		if len(lines[i]) <= 19 || strings.TrimRight(lines[i][:19], " ") != k || lines[i][19] == ' ' {
			t.Fatalf("line %d is not %q then a value at column 19:\n%s", i, k, out)
		}
	}
	for _, want := range []string{`status\s+valid`, `reason\s+-`, `customer\s+Acme Corp`, `products\s+-`, `features\s+sso`,
		`not_before\s+-`, `users_limit\s+0`, `pending\s+-`, fmt.Sprintf(`seq\s+%v`, up["seq"]), `expires\s+` + regexp.QuoteMeta(up["expires"].(string))} {
		if !regexp.MustCompile(`(?m)^` + want + `$`).MatchString(out) {
			t.Errorf("table lacks a line %q:\n%s", want, out)
		}
	}

	// The JSON form from standard input, for another org.
	globex := signed(t, "k1", func(p map[string]any) {
		p["expires"] = future(30 * 24 * time.Hour)
		p["org_slug"] = "globex"
		p["license_id"] = "0193a5b0-7e1a-7c3d-8f00-0000000000c1"
		p["features"] = []string{"sso", "chat_connector"}
	})
	dec, err := license.Decode([]byte(globex))
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs = l.client(t, string(dec.EncodeJSON()), "upload", "--org", "globex", "-", "-o", "table")
	if code != cli.ExitOK || !regexp.MustCompile(`(?m)^features\s+chat_connector,sso$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^status\s+valid$`).MatchString(out) {
		t.Fatalf("upload of license.json from stdin: exit %d\n%s%s", code, out, errs)
	}

	// A tampered signature: 4xx, the code on stderr, nothing on stdout.
	parts := strings.Split(key, ".")
	tampered := writeFile(t, files, "tampered.key", strings.Join(parts[:3], ".")+"."+strings.Repeat("A", 86))
	code, out, errs = l.client(t, "", "upload", "--org", "acme", tampered)
	if code != cli.ExitRejected || out != "" || !strings.HasPrefix(errs, "license_signature_invalid: ") {
		t.Fatalf("tampered upload: exit %d, stdout %q, stderr %q", code, out, errs)
	}

	code, out, errs = l.client(t, "", "invalidate", "--org", "acme", "--license-id", clientLicenseID, "--note", "chargeback")
	if m := jsonObject(t, out); code != cli.ExitOK || m["status"] != "invalid" || m["reason"] != "revoked" {
		t.Fatalf("invalidate: exit %d, %v, %s", code, m, errs)
	}
	code, out, _ = l.client(t, "", "status", "--org", "acme")
	if m := jsonObject(t, out); code != cli.ExitOK || m["status"] != "invalid" || m["reason"] != "revoked" {
		t.Fatalf("status of a revoked license must still exit 0: exit %d, %v", code, m)
	}
	code, out, errs = l.client(t, "", "upload", "--org", "acme", keyFile)
	if code != cli.ExitRejected || out != "" || !strings.HasPrefix(errs, "license_revoked: ") {
		t.Fatalf("re-upload of a revoked license: exit %d, stdout %q, stderr %q", code, out, errs)
	}

	code, out, errs = l.client(t, "", "remove", "--org", "acme")
	if m := jsonObject(t, out); code != cli.ExitOK || m["status"] != "missing" || m["license_id"] != nil {
		t.Fatalf("remove: exit %d, %v, %s", code, m, errs)
	}
	code, out, _ = l.client(t, "", "status", "--org", "acme")
	if m := jsonObject(t, out); code != cli.ExitOK || m["status"] != "missing" {
		t.Fatalf("status after remove: exit %d, %v", code, m)
	}

	// The ledger recorded the CLI as the source, of uploads and of rejections.
	l.stop()
	var sources []string
	var types []string
	for _, org := range []string{"acme", "globex"} {
		for _, m := range streamMessages(t, data, events.OrgSubject(org)) {
			types = append(types, org+" "+m.Type())
			if m.Type() == events.TypeUploaded {
				var u events.Uploaded
				if err := m.Envelope.DecodeData(&u); err != nil {
					t.Fatal(err)
				}
				sources = append(sources, org+" "+u.Source)
			}
		}
	}
	wantTypes := "acme license.uploaded, acme license.invalidated, acme license.removed, globex license.uploaded"
	if strings.Join(types, ", ") != wantTypes || strings.Join(sources, ", ") != "acme cli, globex cli" {
		t.Fatalf("events: %v, sources %v", types, sources)
	}
	var rejected []string
	for _, m := range streamMessages(t, data, events.AuditSubject("acme")) {
		var r events.Rejected
		if m.Envelope != nil && m.Envelope.DecodeData(&r) == nil {
			rejected = append(rejected, r.Code+"/"+r.Source)
		}
	}
	if strings.Join(rejected, ", ") != "license_signature_invalid/cli, license_revoked/cli" {
		t.Fatalf("rejections on the audit subject: %v", rejected)
	}
}

func TestClientEnforcement(t *testing.T) {
	t.Parallel()
	l := startLedger(t, t.TempDir(), nil)
	code, out, errs := l.client(t, "", "enforcement", "set", "on")
	if code != cli.ExitOK || out != "{\n  \"mode\": \"on\"\n}\n" {
		t.Fatalf("enforcement set on: exit %d, %q, %s", code, out, errs)
	}
	code, out, errs = l.client(t, "", "enforcement", "set", "off", "--output", "table")
	if code != cli.ExitOK || out != "mode  off\n" {
		t.Fatalf("enforcement set off as a table: exit %d, %q, %s", code, out, errs)
	}
	code, out, _ = l.client(t, "", "status", "--org", "acme")
	if m := jsonObject(t, out); code != cli.ExitOK || m["enforcement"] != "off" {
		t.Fatalf("status after enforcement off: %v", m)
	}
	code, out, errs = l.client(t, "", "enforcement", "set", "sometimes")
	if code != cli.ExitUsage || out != "" || !strings.Contains(errs, `"on","off","auto"`) {
		t.Fatalf("unknown mode: exit %d, %q, %q", code, out, errs)
	}
}

// Usage errors exit 2 before any request: the server is a closed port,
// so a request would have exited 4.
func TestClientUsageErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tok := strings.Repeat("t", 40)
	big := writeFile(t, dir, "big.key", strings.Repeat(" ", license.MaxInputSize+1))
	cases := map[string]struct {
		args []string
		want string
	}{
		"missing --org":        {[]string{"status"}, "--org is required"},
		"bad org":              {[]string{"status", "--org", "Acme"}, `--org "Acme" is neither`},
		"reserved name":        {[]string{"remove", "--org", "_other"}, `--org "_other" is neither`},
		"upload without file":  {[]string{"upload", "--org", "acme"}, `expected "<file>"`},
		"unreadable file":      {[]string{"upload", "--org", "acme", filepath.Join(dir, "nope.key")}, "no such file"},
		"directory as file":    {[]string{"upload", "--org", "acme", dir}, "is a directory"},
		"file too large":       {[]string{"upload", "--org", "acme", big}, "larger than 65536 bytes"},
		"missing --license-id": {[]string{"invalidate", "--org", "acme"}, "missing flags: --license-id"},
		"bad license id":       {[]string{"invalidate", "--org", "acme", "--license-id", "0193a5b0"}, "is not a UUID"},
		"unknown mode":         {[]string{"enforcement", "set", "maybe"}, `must be one of "on","off","auto"`},
		"no mode":              {[]string{"enforcement", "set"}, `expected "<mode>"`},
		"bad output":           {[]string{"status", "--org", "acme", "--output", "yaml"}, `--output must be one of "json","table"`},
		"bad server":           {[]string{"status", "--org", "acme", "--server", "ftp://example.com"}, "want http(s)://"},
		"server with query":    {[]string{"status", "--org", "acme", "--server", "http://127.0.0.1:1/?x=1"}, "want http(s)://"},
		"zero timeout":         {[]string{"status", "--org", "acme", "--timeout", "0s"}, "--timeout must be positive"},
		"bad ca file":          {[]string{"status", "--org", "acme", "--ca-file", big}, "holds no PEM certificate"},
		"token with a space":   {[]string{"status", "--org", "acme", "--token", "abc def"}, "holds a space"},
		"no token anywhere":    {[]string{"status", "--org", "acme", "--data-dir", dir}, "admin.token: no such file"},
	}
	server := closedPort(t)
	for name, c := range cases {
		args := c.args
		if !slices.Contains(args, "--server") {
			args = append(args, "--server", server)
		}
		if !strings.HasPrefix(name, "token") && !strings.HasPrefix(name, "no token") {
			args = append(args, "--token", tok)
		}
		code, out, errs := cliRun(t, "", args...)
		if code != cli.ExitUsage || out != "" || !strings.Contains(errs, c.want) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 2 and %q", name, code, out, errs, c.want)
		}
	}
	// Stdin larger than the limit is refused the same way.
	code, _, errs := cliRun(t, strings.Repeat("x", license.MaxInputSize+1), "upload", "--org", "acme", "-", "--server", server, "--token", tok)
	if code != cli.ExitUsage || !strings.Contains(errs, "larger than 65536 bytes") {
		t.Errorf("large stdin: exit %d, %s", code, errs)
	}
}

func TestClientServerErrors(t *testing.T) {
	t.Parallel()
	l := startLedger(t, t.TempDir(), nil)
	tok := l.token
	bad := *l
	bad.token = "x" + tok[1:]
	code, out, errs := bad.client(t, "", "status", "--org", "acme", "-o", "table")
	if code != cli.ExitRejected || out != "" || !strings.HasPrefix(errs, "unauthorized: ") {
		t.Fatalf("bad token: exit %d, stdout %q, stderr %q", code, out, errs)
	}

	// The size limit is on bytes: exactly 65,536 (a key padded with
	// whitespace) goes through.
	key := signed(t, "k1", func(p map[string]any) { p["expires"] = future(24 * time.Hour) })
	padded := key + strings.Repeat("\n", license.MaxInputSize-len(key))
	code, out, errs = l.client(t, padded, "upload", "--org", "acme", "-")
	if m := jsonObject(t, out); code != cli.ExitOK || m["status"] != "valid" {
		t.Fatalf("upload of exactly %d bytes: exit %d, %v, %s", license.MaxInputSize, code, m, errs)
	}

	// A token sent in clear to another host is worth a warning.
	code, _, errs = cliRun(t, "", "status", "--org", "acme", "--server", "http://192.0.2.1:9", "--token", tok, "--timeout", "100ms")
	if code != cli.ExitUnavailable || !strings.Contains(errs, "warning: the token goes to 192.0.2.1:9 over plain HTTP") {
		t.Fatalf("plain HTTP to a remote host: exit %d, stderr %q", code, errs)
	}

	code, out, errs = cliRun(t, "", "status", "--org", "acme", "--server", closedPort(t), "--token", tok)
	if code != cli.ExitUnavailable || out != "" || !strings.Contains(errs, "cannot reach the ledger") {
		t.Fatalf("closed port: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

// The token comes from --token or LEDGER_TOKEN, else $DATA_DIR/admin.token
// (--data-dir or DATA_DIR), trimmed. Not parallel: it sets variables.
func TestClientTokenSources(t *testing.T) {
	data := t.TempDir()
	l := startLedger(t, data, nil)
	t.Setenv("LEDGER_TOKEN", "")
	t.Setenv("LEDGER_SERVER", "")

	code, _, errs := cliRun(t, "", "status", "--org", "acme", "--server", l.url, "--data-dir", data)
	if code != cli.ExitOK {
		t.Fatalf("token from --data-dir: exit %d, %s", code, errs)
	}
	other := t.TempDir()
	writeFile(t, other, "admin.token", "\n  "+l.token+" \r\n\n")
	t.Setenv("DATA_DIR", other)
	t.Setenv("LEDGER_SERVER", l.url)
	code, out, errs := cliRun(t, "", "status", "--org", "acme")
	if m := jsonObject(t, out); code != cli.ExitOK || m["status"] != "missing" {
		t.Fatalf("LEDGER_SERVER and a padded token from DATA_DIR: exit %d, %v, %s", code, m, errs)
	}
	// A token file group or others may read is refused, the fix named.
	tokenFile := filepath.Join(other, "admin.token")
	os.Chmod(tokenFile, 0o644)
	code, _, errs = cliRun(t, "", "status", "--org", "acme")
	if code != cli.ExitUsage || !strings.Contains(errs, tokenFile+" is accessible by group or others (mode 0644): run chmod 600 "+tokenFile) {
		t.Fatalf("admin.token 0644: exit %d, %s", code, errs)
	}
	os.Chmod(tokenFile, 0o600)
	// LEDGER_TOKEN wins over the file.
	t.Setenv("LEDGER_TOKEN", strings.Repeat("z", 43))
	code, _, errs = cliRun(t, "", "status", "--org", "acme")
	if code != cli.ExitRejected || !strings.HasPrefix(errs, "unauthorized: ") {
		t.Fatalf("LEDGER_TOKEN: exit %d, %s", code, errs)
	}
	t.Setenv("LEDGER_TOKEN", "")
	code, _, errs = cliRun(t, "", "status", "--org", "acme", "--data-dir", t.TempDir())
	if code != cli.ExitUsage || !strings.Contains(errs, "admin.token") {
		t.Fatalf("no token file: exit %d, %s", code, errs)
	}
}

// fakeLedger is an HTTPS server whose answer depends on the path prefix
// (--server https://host/<prefix>); it records the requests.
type fakeLedger struct {
	*httptest.Server
	caFile string
	mu     sync.Mutex
	seen   []*http.Request
	bodies []string
}

func startFakeLedger(t *testing.T) *fakeLedger {
	f := &fakeLedger{}
	f.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.seen = append(f.seen, r)
		f.bodies = append(f.bodies, string(body))
		f.mu.Unlock()
		prefix, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		switch prefix {
		case "ok":
			w.Write([]byte(`{"org":"acme","status":"valid"}`))
		case "hostile":
			w.Write([]byte(`{"org":"acme","status":"invalid","reason":"signature_invalid","customer":"Evil\u001b[2J\tCorp",` +
				`"products":null,"pending":{"license_id":"0193a5b0-7e1a-7c3d-8f00-0000000000aa","not_before":"2027-01-01T00:00:00Z"},"extra":true}`))
		case "unavailable":
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(503)
			w.Write([]byte(`{"error":"event_store_unavailable","message":"the event store is unavailable; nothing was changed, retry"}`))
		case "gateway":
			w.WriteHeader(502)
			w.Write([]byte("<html>bad gateway</html>"))
		case "html":
			w.WriteHeader(404)
			w.Write([]byte("<html>no such page</html>"))
		case "redirect":
			http.Redirect(w, r, "https://elsewhere.example/", http.StatusFound)
		case "text":
			w.Write([]byte("hello"))
		case "slow":
			select {
			case <-r.Context().Done():
			case <-time.After(time.Minute):
			}
		}
	}))
	f.Config.ErrorLog = log.New(io.Discard, "", 0) // the untrusted-certificate case makes the server log
	f.StartTLS()
	t.Cleanup(f.Close)
	f.caFile = writeFile(t, t.TempDir(), "ca.pem",
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.Certificate().Raw})))
	return f
}

// HTTPS with --ca-file, the headers and body sent, and the exit codes of
// answers a real ledger gives rarely (5xx, non-JSON, redirects, slowness).
func TestClientHTTPSAndAnswers(t *testing.T) {
	t.Parallel()
	f := startFakeLedger(t)
	tok := strings.Repeat("k", 40)
	runAt := func(prefix, stdin string, args ...string) (int, string, string) {
		return cliRun(t, stdin, append(args, "--server", f.URL+"/"+prefix, "--token", tok, "--ca-file", f.caFile)...)
	}

	code, out, errs := runAt("ok", "hfl1.some.key", "upload", "--org", "acme", "--force", "-")
	if code != cli.ExitOK || out != "{\n  \"org\": \"acme\",\n  \"status\": \"valid\"\n}\n" {
		t.Fatalf("upload over HTTPS: exit %d, %q, %s", code, out, errs)
	}
	code, _, _ = runAt("ok", "", "invalidate", "--org", "_instance", "--license-id", clientLicenseID)
	if code != cli.ExitOK {
		t.Fatalf("invalidate: exit %d", code)
	}
	f.mu.Lock()
	if len(f.seen) != 2 {
		t.Fatalf("%d requests", len(f.seen))
	}
	for i, want := range []struct{ method, uri, body, ctype string }{
		{"POST", "/ok/api/license?force=true&org=acme", "hfl1.some.key", "text/plain"},
		{"POST", "/ok/api/license/invalidate?org=_instance", `{"license_id":"` + clientLicenseID + `","note":""}`, "application/json"},
	} {
		r := f.seen[i]
		if r.Method != want.method || r.URL.RequestURI() != want.uri || f.bodies[i] != want.body ||
			r.Header.Get("Content-Type") != want.ctype || r.Header.Get("Authorization") != "Bearer "+tok ||
			r.Header.Get("X-Ledger-Client") != "cli" {
			t.Errorf("request %d: %s %s %q %v", i, r.Method, r.URL.RequestURI(), f.bodies[i], r.Header)
		}
	}
	f.mu.Unlock()

	// Without --ca-file the certificate is not trusted: unavailable.
	code, out, errs = cliRun(t, "", "status", "--org", "acme", "--server", f.URL, "--token", tok)
	if code != cli.ExitUnavailable || out != "" || !strings.Contains(errs, "certificate") {
		t.Fatalf("untrusted certificate: exit %d, %q, %s", code, out, errs)
	}

	// Table output escapes control characters and tabs, shows objects as
	// key=value and keys beyond the status payload at the end.
	code, out, errs = runAt("hostile", "", "status", "--org", "acme", "-o", "table")
	lines := strings.Split(out, "\n")
	if code != cli.ExitOK || len(lines) != 22 || !strings.Contains(out, "customer           Evil\\x1b[2J\\tCorp\n") ||
		!strings.Contains(out, "pending            license_id=0193a5b0-7e1a-7c3d-8f00-0000000000aa not_before=2027-01-01T00:00:00Z\n") ||
		!strings.HasPrefix(lines[0], "org ") || lines[20] != "extra              true" || strings.Contains(out, "\x1b") {
		t.Fatalf("hostile table: exit %d, %s\n%s", code, errs, out)
	}

	for _, c := range []struct {
		prefix string
		code   int
		stderr string
	}{
		{"unavailable", cli.ExitUnavailable, "event_store_unavailable: the event store is unavailable; nothing was changed, retry (retry after 2s)"},
		{"gateway", cli.ExitUnavailable, "502 Bad Gateway: <html>bad gateway</html>"},
		{"html", cli.ExitRejected, "404 Not Found: <html>no such page</html>"},
		{"redirect", cli.ExitUnavailable, "redirects to https://elsewhere.example/"},
		{"text", cli.ExitUnavailable, "not JSON"},
		{"slow", cli.ExitUnavailable, "no answer from"},
	} {
		// Only the slow answer needs a short timeout; the others get a
		// generous one so that a loaded machine cannot turn them into
		// "no answer".
		timeout := "30s"
		if c.prefix == "slow" {
			timeout = "300ms"
		}
		code, out, errs := runAt(c.prefix, "", "remove", "--org", "acme", "--timeout", timeout)
		if code != c.code || out != "" || !strings.Contains(errs, c.stderr) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", c.prefix, code, out, errs)
		}
	}
}

func TestClientHelpListsVariables(t *testing.T) {
	t.Parallel()
	for _, cmd := range [][]string{{"status"}, {"upload"}, {"remove"}, {"invalidate"}, {"enforcement", "set"}} {
		code, out, _ := cliRun(t, "", append(cmd, "--help")...)
		for _, want := range []string{"$LEDGER_SERVER", "$LEDGER_TOKEN", "$DATA_DIR", "$LEDGER_CA_FILE", "$LEDGER_TIMEOUT", "--output", "Exit codes"} {
			if code != 0 || !strings.Contains(out, want) {
				t.Errorf("%v --help: exit %d, lacks %q:\n%s", cmd, code, want, out)
			}
		}
	}
	if _, out, _ := cliRun(t, "", "status", "--help"); !strings.Contains(out, "still a successful read") {
		t.Errorf("status --help must say that a license that is not valid exits 0:\n%s", out)
	}
}
