package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/events"
)

func TestAdminEndpointsOverHTTP(t *testing.T) {
	l := startLedger(t, t.TempDir(), nil)
	for _, org := range []string{"acme", "globex", "initech"} {
		key := signed(t, "k1", func(p map[string]any) { p["org_slug"] = org; p["expires"] = future(time.Hour) })
		if code, m := l.call("POST", "/api/license?org="+org, key); code != 200 {
			t.Fatalf("upload %s: %d %v", org, code, m)
		}
	}
	// Listing: every org with an event, _instance included, paged.
	var orgs []string
	cursor := ""
	for i := 0; i < 10; i++ {
		code, page := l.call("GET", "/api/orgs?limit=2"+cursor, "")
		if code != 200 {
			t.Fatalf("orgs: %d %v", code, page)
		}
		for _, o := range page["orgs"].([]any) {
			rep := o.(map[string]any)
			if len(rep) != 20 {
				t.Fatalf("listing entry is not a status payload: %v", rep)
			}
			orgs = append(orgs, rep["org"].(string))
		}
		next, ok := page["next_cursor"].(string)
		if !ok {
			if page["next_cursor"] != nil {
				t.Fatalf("next_cursor %v", page["next_cursor"])
			}
			break
		}
		cursor = "&cursor=" + next
	}
	if fmt.Sprint(orgs) != "[_instance acme globex initech]" {
		t.Fatalf("orgs %v", orgs)
	}
	for _, q := range []string{"limit=0", "limit=1001", "limit=x", "cursor=!!!"} {
		if code, m := l.call("GET", "/api/orgs?"+q, ""); code != 400 {
			t.Errorf("%s: %d %v", q, code, m)
		}
	}
	// Enforcement.
	if code, m := l.call("PUT", "/api/enforcement", `{"mode":"off"}`); code != 200 || m["mode"] != "off" {
		t.Fatalf("enforcement: %d %v", code, m)
	}
	if code, m := l.call("PUT", "/api/enforcement", `{"mode":"maybe"}`); code != 400 || m["error"] != "bad_request" {
		t.Fatalf("bad mode: %d %v", code, m)
	}
	if _, m := l.call("GET", "/api/license?org=acme", ""); m["enforcement"] != "off" {
		t.Fatalf("status enforcement %v", m["enforcement"])
	}
	// Invalidate, then remove.
	code, m := l.call("POST", "/api/license/invalidate?org=acme", `{"license_id":"0193a5b0-7e1a-7c3d-8f00-1234567890ab","note":"refund"}`)
	if code != 200 || m["status"] != "invalid" || m["reason"] != "revoked" {
		t.Fatalf("invalidate: %d %v", code, m)
	}
	if code, m := l.call("POST", "/api/license/invalidate?org=acme", `{"license_id":"nope"}`); code != 400 {
		t.Fatalf("bad id: %d %v", code, m)
	}
	if code, m := l.call("POST", "/api/license/invalidate?org=acme", `{"license_id":"0193a5b0-7e1a-7c3d-8f00-1234567890ab","extra":1}`); code != 400 || m["error"] != "body_invalid" {
		t.Fatalf("unknown field: %d %v", code, m)
	}
	if code, m := l.call("DELETE", "/api/license?org=globex", ""); code != 200 || m["status"] != "missing" {
		t.Fatalf("remove: %d %v", code, m)
	}
	if code, m := l.call("DELETE", "/api/license?org=globex", ""); code != 200 || m["status"] != "missing" {
		t.Fatalf("second remove: %d %v", code, m)
	}
}

// Every JSON body of the API is read as strictly as a license: a
// duplicate key, a key in another case, an unknown key, trailing data, a
// value of the wrong type or not an object at all is 400 body_invalid
// naming the problem, and nothing reaches the stream.
func TestJSONBodiesAreStrict(t *testing.T) {
	dir := t.TempDir()
	l := startLedger(t, dir, nil)
	key := signed(t, "k1", func(p map[string]any) { p["expires"] = future(time.Hour) })
	if code, m := l.call("POST", "/api/license?org=acme", key); code != 200 || m["status"] != "valid" {
		t.Fatalf("upload: %d %v", code, m)
	}
	if code, m := l.call("PUT", "/api/enforcement", `{"mode":"on"}`); code != 200 || m["mode"] != "on" {
		t.Fatalf("enforcement on: %d %v", code, m)
	}
	const id = `"0193a5b0-7e1a-7c3d-8f00-1234567890ab"`
	bad := []struct{ body, msg string }{
		{`{"mode":"on","mode":"off"}`, `duplicate key \"mode\"`},
		{`{"MODE":"off"}`, `key \"MODE\" must be spelled \"mode\"`},
		{`{"Mode":"off"}`, `key \"Mode\" must be spelled \"mode\"`},
		{`{"mode":"off","force":true}`, `unknown key \"force\"`},
		{`{"mode":"off"} {"mode":"on"}`, "data after the JSON object"},
		{`{"mode":"off"}x`, "data after the JSON object"},
		{`{"mode":1}`, `key \"mode\" must be a JSON string (got number)`},
		{`["off"]`, "not a JSON object"},
		{``, "unexpected end of input"},
		{"{\"mode\":\"o\xffn\"}", "not valid UTF-8"},
		{`{"mode":"off","x":{"a":1,"a":2}}`, `duplicate key \"a\"`},
	}
	for _, c := range bad {
		code, m := l.call("PUT", "/api/enforcement", c.body)
		if msg, _ := m["message"].(string); code != 400 || m["error"] != "body_invalid" || !strings.Contains(fmt.Sprintf("%q", msg), c.msg) {
			t.Errorf("PUT /api/enforcement %q: %d %v; want 400 body_invalid naming %s", c.body, code, m, c.msg)
		}
	}
	for _, c := range []struct{ body, msg string }{
		{`{"license_id":` + id + `,"license_id":"0193a5b0-7e1a-7c3d-8f00-000000000000"}`, `duplicate key \"license_id\"`},
		{`{"License_ID":` + id + `}`, `key \"License_ID\" must be spelled \"license_id\"`},
		{`{"license_id":` + id + `,"NOTE":"x"}`, `key \"NOTE\" must be spelled \"note\"`},
		{`{"license_id":` + id + `,"reason":"x"}`, `unknown key \"reason\"`},
		{`{"license_id":` + id + `}]`, "data after the JSON object"},
		{`{"license_id":` + id + `,"note":["x"]}`, `key \"note\" must be a JSON string (got array)`},
	} {
		code, m := l.call("POST", "/api/license/invalidate?org=acme", c.body)
		if msg, _ := m["message"].(string); code != 400 || m["error"] != "body_invalid" || !strings.Contains(fmt.Sprintf("%q", msg), c.msg) {
			t.Errorf("POST /api/license/invalidate %q: %d %v; want 400 body_invalid naming %s", c.body, code, m, c.msg)
		}
	}
	if code, m := l.call("PUT", "/api/enforcement", `{"mode":"`+strings.Repeat("x", 17<<10)+`"}`); code != 413 || m["error"] != "payload_too_large" {
		t.Errorf("a 17 KiB body: %d %v", code, m)
	}
	// Nothing changed: acme's license stands, enforcement is still on, and
	// the stream ends with the last accepted change.
	if code, m := l.call("GET", "/api/license?org=acme", ""); code != 200 || m["status"] != "valid" || m["enforcement"] != "on" {
		t.Fatalf("after the refused bodies: %d %v", code, m)
	}
	l.stop()
	msgs := streamMessages(t, dir, "licenses.>")
	if last := msgs[len(msgs)-1]; last.Type() != events.TypeEnforcementChanged || !strings.Contains(string(last.Raw), `"mode":"on"`) {
		t.Fatalf("the stream ends with %s: %s", last.Type(), last.Raw)
	}
}

// The install-time license through real restarts: imported once, renewed
// by replacing the file, a bad file appends nothing.
func TestServeInstallLicenseAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "install.key")
	instance := func(id, issued string) string {
		return signed(t, "k1", func(p map[string]any) {
			p["org_slug"], p["license_id"], p["issued_at"] = "*", id, issued
			p["expires"] = future(24 * time.Hour)
		})
	}
	start := func() *ledgerProc {
		return startLedgerWith(t, dir, func(c *serveCmd) { c.LicenseFile = file })
	}
	os.WriteFile(file, []byte(instance("0193a5b0-7e1a-7c3d-8f00-0000000000a1", "2026-11-01T00:00:00Z")), 0o600)
	l := start()
	_, first := l.call("GET", "/api/license?org=_instance", "")
	if first["license_id"] != "0193a5b0-7e1a-7c3d-8f00-0000000000a1" || first["resolved_from"] != "instance" {
		t.Fatalf("import: %v", first)
	}
	// An org without a license of its own resolves through it.
	if _, m := l.call("GET", "/api/license?org=acme", ""); m["status"] != "valid" || m["resolved_from"] != "instance" {
		t.Fatalf("org through instance: %v", m)
	}
	l.stop()
	l = start()
	if _, again := l.call("GET", "/api/license?org=_instance", ""); again["seq"] != first["seq"] {
		t.Fatalf("a restart imported again: seq %v then %v", first["seq"], again["seq"])
	}
	l.stop()
	os.WriteFile(file, []byte(instance("0193a5b0-7e1a-7c3d-8f00-0000000000a2", "2026-11-15T00:00:00Z")), 0o600)
	l = start()
	_, renewed := l.call("GET", "/api/license?org=_instance", "")
	if renewed["license_id"] != "0193a5b0-7e1a-7c3d-8f00-0000000000a2" {
		t.Fatalf("renewed file not imported: %v", renewed)
	}
	l.stop()
	os.WriteFile(file, []byte("hfl1.garbage"), 0o600)
	l = start()
	if _, m := l.call("GET", "/api/license?org=_instance", ""); m["seq"] != renewed["seq"] || m["license_id"] != renewed["license_id"] {
		t.Fatalf("a bad file changed _instance: %v", m)
	}
}
