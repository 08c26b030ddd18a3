package main

import (
	"strings"
	"testing"
	"time"
)

func future(d time.Duration) string { return time.Now().Add(d).UTC().Format(time.RFC3339) }

// Every rule of the upload contract over HTTP, in the contract's order.
func TestUploadRulesOverHTTP(t *testing.T) {
	l := startLedger(t, t.TempDir(), nil)
	year := func(p map[string]any) { p["expires"] = future(365 * 24 * time.Hour) }
	current := signed(t, "k1", func(p map[string]any) {
		year(p)
		p["issued_at"] = "2026-11-10T00:00:00Z"
	})
	if code, m := l.call("POST", "/api/license?org=acme", current); code != 200 || m["status"] != "valid" {
		t.Fatalf("current: %d %v", code, m)
	}
	key := signed(t, "k1", year)
	parts := strings.Split(key, ".")
	cases := []struct {
		name, body, query string
		status            int
		code              string
	}{
		{"too large", key + strings.Repeat(" ", 65537-len(key)), "", 413, "payload_too_large"},
		{"malformed", "hfl1.nope", "", 400, "license_malformed"},
		{"json malformed", `{"format":"hfl1"}`, "", 400, "license_malformed"},
		{"unknown kid", signed(t, "k2", year), "", 422, "license_unknown_key"},
		{"bad signature", parts[0] + "." + parts[1] + "." + parts[2] + "." + strings.Repeat("A", 86), "", 422, "license_signature_invalid"},
		{"org mismatch", signed(t, "k1", func(p map[string]any) { year(p); p["org_slug"] = "globex" }), "", 422, "license_org_mismatch"},
		{"install mismatch", signed(t, "k1", func(p map[string]any) { year(p); p["install_id"] = "00000000-0000-4000-8000-000000000009" }), "", 422, "license_install_mismatch"},
		{"already past grace", signed(t, "k1", func(p map[string]any) {
			p["issued_at"] = "2026-01-01T00:00:00Z"
			p["expires"] = future(-8 * 24 * time.Hour)
		}), "", 422, "license_already_expired"},
		{"older than current", signed(t, "k1", func(p map[string]any) {
			year(p)
			p["license_id"] = "0193a5b0-7e1a-7c3d-8f00-00000000000b"
			p["issued_at"] = "2026-11-01T00:00:00Z"
		}), "", 409, "license_older_than_current"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, m := l.call("POST", "/api/license?org=acme"+c.query, c.body)
			if code != c.status || m["error"] != c.code || m["message"] == "" {
				t.Fatalf("%d %v, want %d %s", code, m, c.status, c.code)
			}
		})
	}
	// Nothing changed.
	if _, m := l.call("GET", "/api/license?org=acme", ""); m["seq"] != 2.0 || m["issued_at"] != "2026-11-10T00:00:00Z" {
		t.Fatalf("rejections changed the org: %v", m)
	}
	// A license still in grace is accepted (and shows grace).
	inGrace := signed(t, "k1", func(p map[string]any) {
		p["license_id"] = "0193a5b0-7e1a-7c3d-8f00-00000000000c"
		p["issued_at"] = "2026-11-20T00:00:00Z"
		p["expires"] = future(-23 * time.Hour)
	})
	if code, m := l.call("POST", "/api/license?org=acme", inGrace); code != 200 || m["status"] != "grace" || m["days_remaining"] != -1.0 {
		t.Fatalf("in grace: %d %v", code, m)
	}
	// An operator may force an older license.
	older := cases[len(cases)-1].body
	if code, m := l.call("POST", "/api/license?org=acme&force=true", older); code != 200 || m["license_id"] != "0193a5b0-7e1a-7c3d-8f00-00000000000b" {
		t.Fatalf("forced: %d %v", code, m)
	}
}

func TestPendingRenewal(t *testing.T) {
	l := startLedger(t, t.TempDir(), nil)
	cur := signed(t, "k1", func(p map[string]any) { p["expires"] = future(30 * 24 * time.Hour) })
	l.call("POST", "/api/license?org=acme", cur)
	nb := time.Now().Add(5*time.Minute + 3*time.Second).UTC().Truncate(time.Second)
	renewal := signed(t, "k1", func(p map[string]any) {
		p["license_id"] = "0193a5b0-7e1a-7c3d-8f00-0000000000aa"
		p["issued_at"] = "2026-11-20T00:00:00Z"
		p["not_before"] = nb.Format(time.RFC3339)
		p["expires"] = future(400 * 24 * time.Hour)
		p["tier"] = "enterprise"
	})
	code, m := l.call("POST", "/api/license?org=acme", renewal)
	pending, _ := m["pending"].(map[string]any)
	if code != 200 || m["tier"] != "professional" || pending == nil || pending["license_id"] != "0193a5b0-7e1a-7c3d-8f00-0000000000aa" ||
		pending["not_before"] != nb.Format(time.RFC3339) {
		t.Fatalf("renewal: %d %v", code, m)
	}
	seq := m["seq"]
	// not_before − 5 min passes: the renewal is current with no new event.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, m = l.call("GET", "/api/license?org=acme", "")
		if m["tier"] == "enterprise" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("renewal never became current: %v", m)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if m["pending"] != nil || m["seq"] != seq || m["license_id"] != "0193a5b0-7e1a-7c3d-8f00-0000000000aa" {
		t.Fatalf("after activation: %v", m)
	}
}

func TestAPIAuthAndOrgSelection(t *testing.T) {
	l := startLedger(t, t.TempDir(), nil)
	tok := l.token
	l.token = "x" + tok[1:]
	if code, m := l.call("GET", "/api/license?org=acme", ""); code != 401 || m["error"] != "unauthorized" {
		t.Fatalf("bad token: %d %v", code, m)
	}
	l.token = ""
	if code, _ := l.call("GET", "/api/license?org=acme", ""); code != 401 {
		t.Fatalf("no token: %d", code)
	}
	l.token = tok
	for _, c := range []struct {
		query, header, code string
	}{
		{"?org=acme", "globex", "org_ambiguous"},
		{"", "", "org_required"},
		{"?org=Acme", "", "org_invalid"},
		{"?org=_other", "", "org_invalid"},
		{"?org=a..b", "", "org_invalid"},
	} {
		hdr := []string{}
		if c.header != "" {
			hdr = []string{"X-Org-Slug", c.header}
		}
		if code, m := l.call("GET", "/api/license"+c.query, "", hdr...); code != 400 || m["error"] != c.code {
			t.Errorf("%s %s: %d %v", c.query, c.header, code, m)
		}
	}
	if code, m := l.call("GET", "/api/license?org=acme", "", "X-Org-Slug", "acme"); code != 200 || m["org"] != "acme" {
		t.Errorf("same org twice: %d %v", code, m)
	}
	if code, m := l.call("PATCH", "/api/license?org=acme", ""); code != 405 || m["error"] != "method_not_allowed" {
		t.Errorf("PATCH: %d %v", code, m)
	}
	if code, m := l.call("GET", "/api/nothing", ""); code != 404 || m["error"] != "not_found" {
		t.Errorf("unknown path: %d %v", code, m)
	}
	if code, m := l.call("GET", "/readyz", ""); code != 200 || m["nats"] != "ok" || m["store"] != "memory" {
		t.Errorf("readyz: %d %v", code, m)
	}
}
