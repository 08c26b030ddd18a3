package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/cli"
	"github.com/licenseledger/ledger/internal/httpapi"
	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/testenv/licensetest"
	"github.com/licenseledger/ledger/internal/testenv/natstest"
	"github.com/licenseledger/ledger/internal/testenv/openapitest"
)

// ledgerProc is a ledger serve running in-process on a random port.
type ledgerProc struct {
	t      *testing.T
	url    string
	token  string
	cancel context.CancelFunc
	done   chan error
	cmd    *serveCmd
	logs   *lockedWriter // what it logged (at cmd.LogLevel)
}

// logText is what the ledger logged so far.
func (p *ledgerProc) logText() string {
	p.logs.mu.Lock()
	defer p.logs.mu.Unlock()
	return p.logs.w.(*bytes.Buffer).String()
}

func startLedger(t *testing.T, dataDir string, env map[string]string) *ledgerProc {
	t.Helper()
	return startLedgerWith(t, dataDir, func(cmd *serveCmd) {
		if v, ok := env["LICENSE_GRACE_DAYS"]; ok {
			fmt.Sscan(v, &cmd.GraceDays)
		}
	})
}

// startLedgerWith runs ledger serve with defaults adjusted by mod.
func startLedgerWith(t *testing.T, dataDir string, mod func(*serveCmd)) *ledgerProc {
	t.Helper()
	ring, _ := vendorKey("k1")
	cmd := &serveCmd{Listen: "127.0.0.1:0", DataDir: dataDir, NATSListen: "off", NATSSync: "always",
		Replicas: 1, GraceDays: 7, RejectAudit: 10, UsageRate: 60, ShutdownWait: 5 * time.Second}
	// No license.expiring notices unless a test asks for them (noticeDays
	// nil: the default thresholds): the tests' licenses often expire within
	// days, and a notice moves the org's seq on.
	cmd.ExpiryNoticeDays, cmd.noticeDays = "off", []int{}
	cmd.PublicKeys = ring
	cmd.Stream = "LICENSES"
	cmd.LogFormat, cmd.LogLevel = "text", "warn"
	// Every request and answer is checked against the OpenAPI document;
	// the validator stops reporting after p.stop (registered later, run
	// first) drained the server.
	cmd.wrapAPI = openapitest.New(t).Wrap
	mod(cmd)
	logs := &lockedWriter{w: &bytes.Buffer{}}
	log, _ := cmd.Logger(logs)
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan string, 1)
	p := &ledgerProc{t: t, cancel: cancel, done: make(chan error, 1), cmd: cmd, logs: logs}
	go func() {
		p.done <- cmd.serve(ctx, &cli.Env{Stdout: io.Discard, Stderr: io.Discard, Now: time.Now}, log, started)
	}()
	select {
	case addr := <-started:
		p.url = "http://" + addr
	case err := <-p.done:
		t.Fatalf("ledger exited: %v\n%s", err, p.logText())
	case <-time.After(30 * time.Second):
		t.Fatal("ledger did not start")
	}
	tok, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	p.token = strings.TrimSpace(string(tok))
	t.Cleanup(p.stop)
	return p
}

func (p *ledgerProc) stop() {
	if p.cancel == nil {
		return
	}
	p.cancel()
	p.cancel = nil
	if err := <-p.done; err != nil {
		p.t.Errorf("ledger stopped with %v", err)
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// call makes an API request and decodes the JSON answer.
func (p *ledgerProc) call(method, path, body string, hdr ...string) (int, map[string]any) {
	p.t.Helper()
	req, _ := http.NewRequest(method, p.url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+p.token)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &m); err != nil {
		p.t.Fatalf("%s %s: not JSON (%d): %s", method, path, resp.StatusCode, raw)
	}
	return resp.StatusCode, m
}

func TestServeUploadStatusRestart(t *testing.T) {
	dir := t.TempDir()
	l := startLedger(t, dir, nil)
	code, st := l.call("GET", "/api/license?org=acme", "")
	if code != 200 || st["status"] != "missing" || st["seq"] != 0.0 || st["resolved_from"] != "none" {
		t.Fatalf("before upload: %d %v", code, st)
	}
	key := signed(t, "k1", func(p map[string]any) { p["expires"] = time.Now().Add(365 * 24 * time.Hour).UTC().Format(time.RFC3339) })
	code, up := l.call("POST", "/api/license?org=acme", key)
	if code != 200 || up["status"] != "valid" || up["seq"] == 0.0 || up["resolved_from"] != "org" {
		t.Fatalf("upload: %d %v", code, up)
	}
	_, got := l.call("GET", "/api/license", "", "X-Org-Slug", "acme")
	if got["status"] != "valid" || got["seq"] != up["seq"] || got["license_id"] != "0193a5b0-7e1a-7c3d-8f00-1234567890ab" {
		t.Fatalf("GET after upload: %v", got)
	}
	// Same key again: 200, no event.
	_, again := l.call("POST", "/api/license?org=acme", key)
	if again["seq"] != up["seq"] {
		t.Fatalf("identical upload appended an event: %v", again)
	}
	trail := auditRecords(t, l, "")
	l.stop()

	l2 := startLedger(t, dir, nil)
	_, after := l2.call("GET", "/api/license?org=acme", "")
	if after["status"] != "valid" || after["seq"] != up["seq"] {
		t.Fatalf("after restart: %v", after)
	}
	// The trail rebuilt at start, its bytes read back from the stream,
	// lists the same records: envelopes, hashes and every column.
	rebuilt := auditRecords(t, l2, "")
	if len(trail) < 2 || len(rebuilt) < len(trail) {
		t.Fatalf("%d audit records before the restart, %d after", len(trail), len(rebuilt))
	}
	for i, r := range trail {
		if a, b := fmt.Sprint(r), fmt.Sprint(rebuilt[i]); a != b || r["envelope"] == nil {
			t.Fatalf("record %d after the restart:\n%s\nbefore:\n%s", i, b, a)
		}
	}
	code, res := l2.call("GET", "/api/audit/verify", "")
	if rows, _ := res["rows_checked"].(float64); code != 200 || res["ok"] != true || rows < float64(len(rebuilt)) {
		t.Fatalf("verify after the restart: %d %v", code, res)
	}
	// The restart verifies every key in the background: /readyz counts
	// those left until none is.
	waitFor(t, "every key verified after the restart", func() bool {
		code, rd := l2.call("GET", "/readyz", "")
		n, ok := rd["orgs_unverified"].(float64)
		return code == 200 && ok && n == 0
	})
}

// With NATS_URL the ledger uses the external server with the given
// credentials, generates no admin token, and takes LEDGER_ADMIN_TOKEN. It
// does not create the stream: ledger stream apply does, as the stream
// administrator, and until then the ledger says so.
func TestServeExternalNATS(t *testing.T) {
	srv := natstest.Start(t)
	dir := t.TempDir()
	seed := filepath.Join(dir, "ledger.nk")
	adminSeed := filepath.Join(dir, "admin.nk")
	for path, s := range map[string][]byte{seed: srv.LedgerSeed, adminSeed: srv.AdminSeed} {
		if err := os.WriteFile(path, s, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ring, _ := vendorKey("k1")
	token := strings.Repeat("t", 40)
	cmd := &serveCmd{Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "data"), NATSSync: "always",
		Replicas: 1, GraceDays: 7, RejectAudit: 10, UsageRate: 60, ShutdownWait: time.Second, AdminToken: token}
	cmd.PublicKeys, cmd.Stream, cmd.NATSURL, cmd.NATSNKey = ring, "LICENSES", srv.URL(), seed
	cmd.LogFormat, cmd.LogLevel = "json", "warn"
	log, _ := cmd.Logger(io.Discard)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env := &cli.Env{Stdout: io.Discard, Stderr: io.Discard, Now: time.Now}
	err := cmd.serve(ctx, env, log, nil)
	if err == nil || !strings.Contains(err.Error(), "stream not found") || !strings.Contains(err.Error(), "ledger stream apply") {
		t.Fatalf("serve without the stream: %v", err)
	}
	code, out, errOut := cliRun(t, "", "stream", "apply", "--nats-url", srv.URL(), "--nats-nkey", adminSeed, "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "stream LICENSES: created with the contract's configuration (1 replica(s))") {
		t.Fatalf("stream apply: %d %q %q", code, out, errOut)
	}
	started := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- cmd.serve(ctx, env, log, started)
	}()
	var p *ledgerProc
	select {
	case addr := <-started:
		p = &ledgerProc{t: t, url: "http://" + addr, token: token}
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	if code, m := p.call("POST", "/api/license?org=acme", signed(t, "k1", func(m map[string]any) { m["expires"] = future(time.Hour) })); code != 200 || m["status"] != "valid" {
		t.Fatalf("upload: %d %v", code, m)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "admin.token")); err == nil {
		t.Fatal("an admin token was generated although NATS_URL is set")
	}
	// The event is on the external stream, readable by the reader role.
	js := srv.JetStream(t, natsauth.RoleReader)
	s, err := js.Stream(ctx, "LICENSES")
	if err != nil {
		t.Fatal(err)
	}
	if m, err := s.GetLastMsgForSubject(ctx, "licenses.org.acme"); err != nil || !strings.Contains(string(m.Data), `"license.uploaded"`) {
		t.Fatalf("stream: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Rejections the rate limit dropped are counted on the stream when the
// ledger shuts down, not lost with the process.
func TestServeFlushesSuppressedRejectionsAtShutdown(t *testing.T) {
	dir := t.TempDir()
	l := startLedger(t, dir, nil)
	for range 13 {
		if code, m := l.call("POST", "/api/license?org=acme", "garbage"); code != 400 {
			t.Fatalf("garbage upload: %d %v", code, m)
		}
	}
	l.stop()
	l = startLedger(t, dir, nil)
	var rejected int
	var suppressed []int
	for _, r := range auditRecords(t, l, "org=acme") {
		switch r["type"] {
		case "license.rejected":
			rejected++
		case "license.rejected_suppressed":
			var env struct {
				Data struct{ Count int } `json:"data"`
			}
			if err := json.Unmarshal([]byte(r["envelope"].(string)), &env); err != nil {
				t.Fatal(err)
			}
			suppressed = append(suppressed, env.Data.Count)
		}
	}
	if rejected != 10 || len(suppressed) != 1 || suppressed[0] != 3 {
		t.Fatalf("after a restart: %d license.rejected, suppressed counts %v; want 10 and [3]", rejected, suppressed)
	}
}

// The ledger exports its key ring's fingerprint under the name every
// process shares (and its older ledger_keyring_info).
func TestServeExportsKeyringFingerprint(t *testing.T) {
	l := startLedger(t, t.TempDir(), nil)
	resp, err := http.Get(l.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fp := licensetest.Ring(t, "k1").Fingerprint()
	for _, name := range []string{"license_keyring_info", "ledger_keyring_info"} {
		if want := name + `{fingerprint="` + fp + `"} 1`; !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want) + `$`).Match(body) {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(string(body), "keyring"))
		}
	}
}

// ledger serve answers its OpenAPI document, as embedded, and /healthz to
// a caller without a token.
func TestServeOpenAPIDocument(t *testing.T) {
	l := startLedger(t, t.TempDir(), nil)
	for path, want := range map[string][]byte{"/api/openapi.json": httpapi.OpenAPI, "/healthz": []byte("{\"status\":\"ok\"}\n")} {
		resp, err := http.Get(l.url + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || !bytes.Equal(body, want) {
			t.Errorf("GET %s: %d %s, %d bytes", path, resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
		}
	}
}
