package main

import (
	"strings"
	"testing"
	"time"
)

// The usual mistakes of a new operator get answers that name the fix: a
// request without a token, an older license, an install that trusts no
// vendor key, a license signed by a key the ring lacks.
func TestAPIErrorsNameTheFix(t *testing.T) {
	l := startLedger(t, t.TempDir(), nil)
	want := func(what string, code int, body string, wantCode int, says ...string) {
		t.Helper()
		if code != wantCode {
			t.Errorf("%s: %d %s, want %d", what, code, body, wantCode)
		}
		for _, s := range says {
			if !strings.Contains(body, s) {
				t.Errorf("%s: %s does not say %q", what, body, s)
			}
		}
	}
	code, _, body := l.raw("", "GET", "/api/license?org=acme", "")
	want("no token", code, body, 401, "Authorization: Bearer", "admin.token", "ledger token create")

	newer := signed(t, "k1", func(p map[string]any) {
		p["issued_at"], p["expires"] = "2026-11-20T00:00:00Z", time.Now().AddDate(1, 0, 0).UTC().Format(time.RFC3339)
	})
	older := signed(t, "k1", func(p map[string]any) {
		p["license_id"], p["issued_at"] = "0193a5b0-7e1a-7c3d-8f00-0000000000ee", "2026-11-01T00:00:00Z"
		p["expires"] = time.Now().AddDate(1, 0, 0).UTC().Format(time.RFC3339)
	})
	if code, st := l.call("POST", "/api/license?org=acme", newer); code != 200 {
		t.Fatalf("upload: %d %v", code, st)
	}
	code, _, body = l.raw(l.token, "POST", "/api/license?org=acme", older)
	want("an older license", code, body, 409, "license_older_than_current", "?force=true", "ledger upload --force")
	code, _, errOut := l.client(t, older, "upload", "--org", "acme", "-")
	want("ledger upload of an older license", code, errOut, 3, "--force")

	stranger := signed(t, "k9", nil)
	code, _, body = l.raw(l.token, "POST", "/api/license?org=acme", stranger)
	want("an unknown kid", code, body, 422, "license_unknown_key", `no trusted key has kid \"k9\"`, "(the ring trusts k1)", "LICENSE_PUBLIC_KEYS")

	// A ledger started without any vendor key says so on every upload.
	bare := startLedgerWith(t, t.TempDir(), func(c *serveCmd) { c.PublicKeys = "" })
	code, _, body = bare.raw(bare.token, "POST", "/api/license?org=acme", newer)
	want("an install trusting no key", code, body, 422, "license_unknown_key", "trusts no vendor key at all", "LICENSE_PUBLIC_KEYS or LICENSE_PUBLIC_KEYS_FILE")
}
