package main

import (
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/testenv/metricstest"
)

// raw makes an API request with tok and returns the status, the headers
// and the body.
func (p *ledgerProc) raw(tok, method, path, body string) (int, http.Header, string) {
	p.t.Helper()
	req, _ := http.NewRequest(method, p.url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// Usage from outside: reports through the API, the CLI and a reporter
// token; unchanged reports append nothing; changes past LEDGER_USAGE_RATE
// are refused and append nothing; every malformed body is refused and
// appends nothing; a reporter can do nothing but report its orgs; the seat
// enforcement mode is an audited event; the true-up answers JSON and CSV.
func TestServeUsageReportsAndSeatEnforcement(t *testing.T) {
	dir := t.TempDir()
	l := startLedgerWith(t, dir, func(c *serveCmd) { c.UsageRate = 6 }) // a burst of 1, then one per 10 min
	key := signed(t, "k1", func(p map[string]any) {
		p["users_limit"], p["expires"] = 50, time.Now().Add(365*24*time.Hour).UTC().Format(time.RFC3339)
	})
	if code, st := l.call("POST", "/api/license?org=acme", key); code != 200 {
		t.Fatalf("upload: %d %v", code, st)
	}
	_, st := l.call("GET", "/api/license?org=acme", "")
	if v, ok := st["users_active"]; !ok || v != nil || st["users_reported_at"] != nil {
		t.Fatalf("before any report: users_active %v, users_reported_at %v", st["users_active"], st["users_reported_at"])
	}
	usageEvents := func() int { return len(auditRecords(t, l, "type=usage.reported")) }

	code, st := l.call("PUT", "/api/usage?org=acme", `{"users": 42}`)
	if code != 200 || st["users_active"] != 42.0 || st["users_limit"] != 50.0 || st["users_reported_at"] == nil {
		t.Fatalf("report 42: %d %v", code, st)
	}
	seq := st["seq"]
	for range 3 {
		if code, again := l.call("PUT", "/api/usage", `{"users":42}`, "X-Org-Slug", "acme"); code != 200 || again["seq"] != seq {
			t.Fatalf("an unchanged report appended: %d %v (seq was %v)", code, again, seq)
		}
	}
	if n := usageEvents(); n != 1 {
		t.Fatalf("%d usage.reported events after four reports of 42, want 1", n)
	}

	// A change past the rate: 429 with when to report again, nothing kept.
	code, hdr, body := l.raw(l.token, "PUT", "/api/usage?org=acme", `{"users": 43}`)
	if secs, _ := strconv.Atoi(hdr.Get("Retry-After")); code != 429 || !strings.Contains(body, `"rate_limited"`) || secs < 60 {
		t.Fatalf("a change past LEDGER_USAGE_RATE: %d Retry-After %q %s", code, hdr.Get("Retry-After"), body)
	}
	if _, st := l.call("GET", "/api/license?org=acme", ""); st["users_active"] != 42.0 || usageEvents() != 1 {
		t.Fatalf("a refused report changed something: %v", st)
	}

	// Bad bodies and orgs: refused, nothing appended.
	for _, c := range []struct{ path, body, code string }{
		{"/api/usage?org=globex", `{"users": "5"}`, "body_invalid"},
		{"/api/usage?org=globex", `{"Users": 5}`, "body_invalid"},
		{"/api/usage?org=globex", `{"users": 5, "users": 6}`, "body_invalid"},
		{"/api/usage?org=globex", `{"users": 5, "note": "x"}`, "body_invalid"},
		{"/api/usage?org=globex", `{"users": 5} {}`, "body_invalid"},
		{"/api/usage?org=globex", `{"users": 1.5}`, "body_invalid"},
		{"/api/usage?org=globex", `{}`, "body_invalid"},
		{"/api/usage?org=globex", `{"users": null}`, "body_invalid"},
		{"/api/usage?org=globex", `[5]`, "body_invalid"},
		{"/api/usage?org=globex", `{"users": -1}`, "bad_request"},
		{"/api/usage?org=globex", `{"users": 2147483648}`, "bad_request"},
		{"/api/usage", `{"users": 5}`, "org_required"},
		{"/api/usage?org=Globex", `{"users": 5}`, "org_invalid"},
		{"/api/usage?org=_instance", `{"users": 5}`, "org_invalid"},
	} {
		code, _, body := l.raw(l.token, "PUT", c.path, c.body)
		if code != 400 || !strings.Contains(body, `"error":"`+c.code+`"`) {
			t.Errorf("PUT %s %s: %d %s, want 400 %s", c.path, c.body, code, body, c.code)
		}
	}
	if n := usageEvents(); n != 1 {
		t.Fatalf("refused reports appended: %d usage.reported events", n)
	}

	// A reporter token: reports its org's usage and nothing else.
	tokens := filepath.Join(dir, "tokens")
	code, out, errOut := runCmd(t, nil, "token", "create", "--role", "reporter", "--org", "initech", "--name", "seat-counter",
		"--tokens-file", tokens, "--server", l.url)
	if code != 0 {
		t.Fatalf("token create --role reporter: %d %s %s", code, out, errOut)
	}
	reporter := strings.TrimSpace(out)
	code, _, body = l.raw(reporter, "PUT", "/api/usage?org=initech", `{"users": 7}`)
	if code != 200 || !strings.Contains(body, `"users_active":7`) {
		t.Fatalf("reporter reports initech: %d %s", code, body)
	}
	recs := auditRecords(t, l, "type=usage.reported&org=initech")
	if len(recs) != 1 || recs[0]["actor"].(map[string]any)["kind"] != "reporter" || recs[0]["actor"].(map[string]any)["id"] != "seat-counter" {
		t.Fatalf("the reporter's event: %v", recs)
	}
	for _, c := range []struct{ method, path, body string }{
		{"PUT", "/api/usage?org=acme", `{"users": 1}`},
		{"PUT", "/api/usage?org=_instance", `{"users": 1}`},
		{"GET", "/api/license?org=initech", ""},
		{"POST", "/api/license?org=initech", key},
		{"GET", "/api/orgs", ""},
		{"GET", "/api/audit?org=initech", ""},
		{"GET", "/api/audit/checkpoint", ""},
		{"GET", "/api/install", ""},
		{"GET", "/api/usage/report?org=initech", ""},
		{"PUT", "/api/seat-enforcement", `{"mode": "off"}`},
		{"PUT", "/api/enforcement", `{"mode": "off"}`},
	} {
		if code, _, body := l.raw(reporter, c.method, c.path, c.body); code != 403 || !strings.Contains(body, `"forbidden"`) {
			t.Errorf("reporter %s %s: %d %s, want 403 forbidden", c.method, c.path, code, body)
		}
	}
	if code, _, body := l.raw(reporter, "GET", "/api/whoami", ""); code != 200 || !strings.Contains(body, `"role":"reporter"`) {
		t.Errorf("reporter whoami: %d %s", code, body)
	}
	if code, _, errOut := runCmd(t, nil, "token", "create", "--no-wait", "--role", "reporter", "--org", "_instance", "--name", "x",
		"--tokens-file", tokens); code != 2 || !strings.Contains(errOut, "never covers _instance") {
		t.Errorf("a reporter of _instance: exit %d %s", code, errOut)
	}

	// Seat enforcement: an audited install setting, operators only.
	if code, m := l.call("PUT", "/api/seat-enforcement", `{"mode": "hard"}`); code != 200 || m["mode"] != "hard" {
		t.Fatalf("seat enforcement hard: %d %v", code, m)
	}
	if code, m := l.call("PUT", "/api/seat-enforcement", `{"mode": "hard"}`); code != 200 || m["mode"] != "hard" {
		t.Fatalf("seat enforcement hard again: %d %v", code, m)
	}
	for _, b := range []string{`{"mode": "on"}`, `{"mode": "HARD"}`, `{"mode": 1}`, `{}`} {
		if code, _, body := l.raw(l.token, "PUT", "/api/seat-enforcement", b); code != 400 {
			t.Errorf("seat enforcement %s: %d %s", b, code, body)
		}
	}
	changes := auditRecords(t, l, "type=seat_enforcement.changed")
	if len(changes) != 1 || changes[0]["org"] != "_instance" || changes[0]["actor"].(map[string]any)["kind"] != "operator" ||
		!strings.Contains(changes[0]["envelope"].(string), `"mode":"hard"`) {
		t.Fatalf("seat_enforcement.changed events: %v", changes)
	}
	if _, inst := l.call("GET", "/api/install", ""); inst["seat_enforcement"] != "hard" {
		t.Fatalf("install: %v", inst)
	}

	// The CLI.
	code, out, errOut = l.client(t, "", "usage", "set", "--org", "globex", "--users", "5")
	if m := jsonObject(t, out); code != 0 || m["users_active"] != 5.0 || m["org"] != "globex" {
		t.Fatalf("usage set: %d %s %s", code, out, errOut)
	}
	if code, out, _ := l.client(t, "", "seats", "enforcement", "set", "soft"); code != 0 || jsonObject(t, out)["mode"] != "soft" {
		t.Fatalf("seats enforcement set soft: %d %s", code, out)
	}
	if code, _, errOut := l.client(t, "", "usage", "set", "--org", "acme", "--users", "44"); code != 3 || !strings.HasPrefix(errOut, "rate_limited: ") {
		t.Errorf("usage set past the rate: exit %d %q", code, errOut)
	}
	for _, args := range [][]string{
		{"usage", "set", "--org", "_instance", "--users", "1"},
		{"usage", "set", "--org", "acme", "--users", "-1"},
		{"usage", "report", "--from", "2026-13"},
		{"usage", "report", "--format", "xml"},
	} {
		if code, _, _ := l.client(t, "", args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	month := time.Now().UTC().Format("2006-01")
	code, out, errOut = l.client(t, "", "usage", "report", "--format", "csv")
	want := "month,org,max_users,users_limit,license_id,days_over,max_overage,reports\r\n" +
		month + ",acme,42,50,0193a5b0-7e1a-7c3d-8f00-1234567890ab,0,0,1\r\n" +
		month + ",globex,5,,,0,0,1\r\n" +
		month + ",initech,7,,,0,0,1\r\n"
	if code != 0 || out != want {
		t.Fatalf("usage report --format csv: exit %d %s\n%q\nwant\n%q", code, errOut, out, want)
	}
	if code, out, errOut = l.client(t, "", "usage", "report", "-o", "csv"); code != 0 || out != want {
		t.Fatalf("usage report -o csv: exit %d %s\n%q\nwant\n%q", code, errOut, out, want)
	}
	code, out, errOut = l.client(t, "", "usage", "report", "-o", "table")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 4 || !strings.HasPrefix(lines[0], "MONTH ") || !strings.HasPrefix(lines[2], month+"  globex   5          -  ") {
		t.Fatalf("usage report -o table: exit %d %s\n%s", code, errOut, out)
	}
	code, out, _ = l.client(t, "", "usage", "report", "--org", "acme")
	if m := jsonObject(t, out); code != 0 || len(m["rows"].([]any)) != 1 || m["rows"].([]any)[0].(map[string]any)["max_users"] != 42.0 {
		t.Fatalf("usage report --org acme: %d %s", code, out)
	}
	// The chain and the tree cover the usage events like any other.
	if code, v := l.call("GET", "/api/audit/verify", ""); code != 200 || v["ok"] != true {
		t.Fatalf("audit verify: %d %v", code, v)
	}
	code, _, body = l.raw(l.token, "GET", "/metrics", "")
	metricstest.Check(t, []byte(body)) // promtool's lint, and units in names
	if code != 200 || !strings.Contains(body, "ledger_usage_reports_limited_total 2") {
		i := strings.Index(body, "ledger_usage_reports_limited_total")
		t.Errorf("metrics lack ledger_usage_reports_limited_total 2: %d %s", code, body[max(i, 0):min(len(body), max(i, 0)+300)])
	}
}
