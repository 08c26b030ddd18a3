package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/cli"
	"github.com/licenseledger/ledger/internal/testenv/licensetest"
	"github.com/licenseledger/ledger/license"
)

var now = time.Date(2026, 11, 29, 13, 0, 0, 0, time.UTC)

func runLedger(t *testing.T, stdin string, env map[string]string, args ...string) (int, map[string]any, string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	var out, errb bytes.Buffer
	code := run(args, &cli.Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb, Now: func() time.Time { return now }})
	var m map[string]any
	if out.Len() > 0 {
		if err := json.Unmarshal(out.Bytes(), &m); err != nil {
			t.Fatalf("stdout is not JSON: %v\n%s", err, out.String())
		}
	}
	return code, m, errb.String()
}

func vendorKey(kid string) (string, ed25519.PrivateKey) {
	_, priv := licensetest.Key(kid)
	return licensetest.RingEntry(kid), priv
}

func signed(t *testing.T, kid string, mod func(map[string]any)) string {
	t.Helper()
	p := map[string]any{
		"license_id": "0193a5b0-7e1a-7c3d-8f00-1234567890ab", "customer": "Acme Corp", "org_slug": "acme",
		"tier": "professional", "features": []string{"sso"}, "issued_at": "2026-11-01T00:00:00Z",
		"expires": "2027-11-01T00:00:00Z",
	}
	if mod != nil {
		mod(p)
	}
	b, _ := json.Marshal(p)
	_, priv := vendorKey(kid)
	l, err := license.Sign(priv, kid, b)
	if err != nil {
		t.Fatal(err)
	}
	return l.Key
}

func TestLicenseVerifyStatusesAndExitCodes(t *testing.T) {
	ring, _ := vendorKey("k1")
	env := map[string]string{"LICENSE_PUBLIC_KEYS": ring}
	key := signed(t, "k1", nil)
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o644)
		return p
	}
	jsonForm := func(k string) string {
		l, _ := license.Decode([]byte(k))
		return string(l.EncodeJSON())
	}
	cases := []struct {
		name         string
		args         []string
		stdin        string
		verifyCode   int
		status       string
		reason       any
		daysRemained any
	}{
		{"valid compact", []string{file("a.key", key)}, "", 0, "valid", nil, 336.0},
		{"valid json from stdin", []string{"-"}, jsonForm(key), 0, "valid", nil, 336.0},
		{"grace", []string{"--at", "2027-11-02T00:00:00Z", file("b.key", key)}, "", 0, "grace", nil, -1.0},
		{"expired", []string{"--at", "2027-11-08T00:00:00Z", file("c.key", key)}, "", 1, "expired", nil, -7.0},
		{"license grace wins", []string{"--at", "2027-11-08T00:00:00Z", file("d.key", signed(t, "k1", func(p map[string]any) { p["grace_days"] = 30 }))}, "", 0, "grace", nil, -7.0},
		{"not yet valid", []string{file("e.key", signed(t, "k1", func(p map[string]any) { p["not_before"] = "2026-12-01T00:00:00Z" }))}, "", 1, "invalid", "not_yet_valid", 336.0},
		{"unknown kid", []string{file("f.key", signed(t, "k2", nil))}, "", 1, "invalid", "unknown_key", 336.0},
		{"tampered signature", []string{file("g.key", key[:len(key)-3]+"AAA")}, "", 1, "invalid", "signature_invalid", 336.0},
		{"malformed", []string{"-"}, "not a license", 1, "invalid", "malformed", nil},
		{"org mismatch", []string{"--org", "globex", file("h.key", key)}, "", 1, "invalid", "org_mismatch", 336.0},
		{"install mismatch", []string{"--install-id", "00000000-0000-4000-8000-000000000001", file("i.key", signed(t, "k1", func(p map[string]any) { p["install_id"] = "00000000-0000-4000-8000-000000000002" }))}, "", 1, "invalid", "install_mismatch", 336.0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, cmd := range []string{"verify", "inspect"} {
				code, out, errs := runLedger(t, c.stdin, env, append([]string{"license", cmd}, c.args...)...)
				want := c.verifyCode
				if cmd == "inspect" {
					want = 0
				}
				if code != want {
					t.Fatalf("%s exit %d, want %d (%s)", cmd, code, want, errs)
				}
				if out["status"] != c.status || out["reason"] != c.reason || out["days_remaining"] != c.daysRemained {
					t.Fatalf("%s: %v", cmd, out)
				}
				if out["seq"] != nil || out["resolved_from"] != nil || len(out) != 20 {
					t.Fatalf("offline payload must have all 20 keys with seq and resolved_from null: %v", out)
				}
			}
		})
	}
}

func TestLicenseCommandUsageErrors(t *testing.T) {
	ring, _ := vendorKey("k1")
	cases := map[string][]string{
		"no file":      {"license", "verify"},
		"missing file": {"license", "verify", "/nonexistent/license.key"},
		"bad org":      {"license", "verify", "--org", "Acme", "-"},
		"bad at":       {"license", "verify", "--at", "yesterday", "-"},
		"unknown cmd":  {"license", "frobnicate"},
	}
	for name, args := range cases {
		code, out, errs := runLedger(t, "", map[string]string{"LICENSE_PUBLIC_KEYS": ring}, args...)
		if code != cli.ExitUsage || out != nil || errs == "" {
			t.Errorf("%s: exit %d, out %v, stderr %q", name, code, out, errs)
		}
	}
	// A broken key ring is a usage error, not a silently empty ring.
	code, _, errs := runLedger(t, "", map[string]string{"LICENSE_PUBLIC_KEYS": "k1:nope"}, "license", "verify", "-")
	if code != cli.ExitUsage || !strings.Contains(errs, "LICENSE_PUBLIC_KEYS") {
		t.Errorf("broken ring: %d %s", code, errs)
	}
	var out bytes.Buffer
	if code := run([]string{"license", "verify", "--help"}, &cli.Env{Stdout: &out, Stderr: &out}); code != 0 ||
		!strings.Contains(out.String(), "$LICENSE_PUBLIC_KEYS_FILE") {
		t.Errorf("--help exit %d, must list flags with their variables:\n%s", code, out.String())
	}
}
