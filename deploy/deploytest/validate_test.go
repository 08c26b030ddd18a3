package deploytest

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/testenv/licensetest"
)

// TestSetupValidate drives --validate with the real `ledger license
// inspect`: a license the ledger would not import is refused before
// anything is written; the key ring comes from the environment, else from
// the env file (under --root).
func TestSetupValidate(t *testing.T) {
	t.Parallel()
	bin := binaries(t)
	withLedger := "PATH=" + bin + string(filepath.ListSeparator) + pathWithout("ledger")
	past := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name     string
		lic      func(t *testing.T) []byte
		env      []string
		envFile  string // the env file's text; default: trusts k1 through the key file
		code     int
		stdout   string
		stderr   string
		installs bool
	}{
		{name: "valid", lic: func(t *testing.T) []byte { return []byte(instanceLicense(t, licenseID1, issued, nil).Key) },
			stdout: "license checked: valid", installs: true},
		{name: "valid JSON form", lic: func(t *testing.T) []byte { return instanceLicense(t, licenseID1, issued, nil).EncodeJSON() },
			stdout: "license checked: valid", installs: true},
		{name: "in grace", lic: func(t *testing.T) []byte {
			return []byte(instanceLicense(t, licenseID1, issued.AddDate(-1, 0, -1), map[string]any{"grace_days": 30}).Key)
		}, stdout: "license checked: grace", installs: true},
		{name: "pending", lic: func(t *testing.T) []byte {
			nb := time.Now().AddDate(0, 0, 30).UTC().Format(time.RFC3339)
			return []byte(instanceLicense(t, licenseID1, issued, map[string]any{"not_before": nb}).Key)
		}, stdout: "pending", installs: true},
		{name: "for an org, not the instance", lic: func(t *testing.T) []byte {
			return []byte(instanceLicense(t, licenseID1, issued, map[string]any{"org_slug": "acme"}).Key)
		}, code: 1, stderr: "invalid, org_mismatch"},
		{name: "expired", lic: func(t *testing.T) []byte {
			return []byte(instanceLicense(t, licenseID1, past, map[string]any{"grace_days": 0}).Key)
		}, code: 1, stderr: "expired"},
		{name: "untrusted key", lic: func(t *testing.T) []byte { return []byte(licensetest.Sign(t, "k2", payload(issued)).Key) },
			code: 1, stderr: "invalid, unknown_key"},
		{name: "garbage", lic: func(t *testing.T) []byte { return []byte("hfl1.k1.not-a-license\n") },
			code: 1, stderr: "invalid, malformed"},
		{name: "key ring from the environment first", lic: func(t *testing.T) []byte {
			return []byte(licensetest.Sign(t, "k2", payload(issued)).Key)
		}, env: []string{"LICENSE_PUBLIC_KEYS=" + licensetest.RingEntry("k2")}, stdout: "license checked: valid", installs: true},
		{name: "inline keys in the env file", lic: func(t *testing.T) []byte { return []byte(instanceLicense(t, licenseID1, issued, nil).Key) },
			envFile: "LICENSE_PUBLIC_KEYS=\"" + licensetest.RingEntry(testKid) + "\"\n", stdout: "license checked: valid", installs: true},
		{name: "no key ring", lic: func(t *testing.T) []byte { return []byte(instanceLicense(t, licenseID1, issued, nil).Key) },
			envFile: "LOG_LEVEL=info\n", code: 1, stderr: "no trusted keys"},
		{name: "bad grace setting", lic: func(t *testing.T) []byte { return []byte(instanceLicense(t, licenseID1, issued, nil).Key) },
			env: []string{"LICENSE_GRACE_DAYS=999"}, code: 1, stderr: "ledger license inspect failed (exit 2)"},
		{name: "no ledger on PATH", lic: func(t *testing.T) []byte { return []byte("anything") },
			env: []string{"PATH=" + pathWithout("ledger")}, stderr: "no ledger binary on PATH", installs: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			root := filepath.Join(dir, "root")
			writeFile(t, filepath.Join(root, "etc/ledger/trusted.keys"), []byte(licensetest.RingEntry(testKid)+"\n"), 0o644)
			envText := c.envFile
			if envText == "" {
				envText = "LICENSE_PUBLIC_KEYS_FILE=/etc/ledger/trusted.keys\n"
			}
			writeFile(t, filepath.Join(root, unitEnvFile), []byte(envText), 0o640)
			licFile := writeFile(t, filepath.Join(dir, "license"), c.lic(t), 0o600)
			env := append([]string{withLedger}, c.env...)
			before := snapshot(t, root)
			r := defaultShell(t).run(t, env, "--validate", "--root", root, "--license", licFile)
			if r.code != c.code {
				t.Fatalf("exit %d, want %d:\n%s", r.code, c.code, r)
			}
			if !strings.Contains(r.stdout, c.stdout) || !strings.Contains(r.stderr, c.stderr) {
				t.Fatalf("want stdout with %q and stderr with %q:\n%s", c.stdout, c.stderr, r)
			}
			written := len(diffSnapshots(before, snapshot(t, root))) > 0
			if written != c.installs {
				t.Fatalf("installed: %v, want %v:\n%s", written, c.installs, r)
			}
		})
	}
}

// payload is an instance-wide payload issued at iss, for signing with
// other keys.
func payload(iss time.Time) map[string]any {
	return map[string]any{
		"license_id": licenseID2, "customer": "Acme Corp", "org_slug": "*", "tier": "starter",
		"issued_at": iss.UTC().Format(time.RFC3339), "expires": iss.AddDate(0, 0, 10).UTC().Format(time.RFC3339),
	}
}
