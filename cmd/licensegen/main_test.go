package main

import (
	"bytes"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/cli"
	"github.com/licenseledger/ledger/internal/testenv"
	"github.com/licenseledger/ledger/license"
)

var now = time.Date(2026, 11, 29, 13, 1, 2, 0, time.UTC)

// runCmd runs licensegen in-process and returns exit code, stdout, stderr.
func runCmd(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &cli.Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb, Now: func() time.Time { return now }}
	code := run(args, env)
	return code, out.String(), errb.String()
}

func keygen(t *testing.T, kid string) (dir string, ring *license.Ring) {
	t.Helper()
	dir = t.TempDir()
	code, out, errs := runCmd(t, "", "keygen", "--kid", kid, "--out", dir)
	if code != 0 {
		t.Fatalf("keygen: %d %s", code, errs)
	}
	ring, err := license.LoadRing(license.RingConfig{Env: strings.TrimSpace(out), NoBuiltin: true})
	if err != nil {
		t.Fatalf("keygen output %q is not a ring entry: %v", out, err)
	}
	return dir, ring
}

func TestKeygenFiles(t *testing.T) {
	dir, ring := keygen(t, "vendor-2026")
	key, err := os.Stat(filepath.Join(dir, "vendor-2026.key"))
	if err != nil || key.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", key, err)
	}
	pem, _ := os.ReadFile(filepath.Join(dir, "vendor-2026.key"))
	if !bytes.HasPrefix(pem, []byte("-----BEGIN PRIVATE KEY-----\n")) {
		t.Fatalf("key is not PKCS#8 PEM: %s", pem)
	}
	pub, _ := os.ReadFile(filepath.Join(dir, "vendor-2026.pub"))
	fileRing, err := license.LoadRing(license.RingConfig{File: filepath.Join(dir, "vendor-2026.pub"), NoBuiltin: true})
	if err != nil || fileRing.Fingerprint() != ring.Fingerprint() || !strings.HasPrefix(string(pub), "vendor-2026:") {
		t.Fatalf(".pub %q: %v", pub, err)
	}
	code, _, errs := runCmd(t, "", "keygen", "--kid", "vendor-2026", "--out", dir)
	if code != cli.ExitFailed || !strings.Contains(errs, "--force") {
		t.Fatalf("keygen over an existing key: %d %s", code, errs)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "vendor-2026.key")); !bytes.Equal(after, pem) {
		t.Fatal("a refused keygen changed the key")
	}
	if code, _, _ := runCmd(t, "", "keygen", "--kid", "bad kid", "--out", dir); code != cli.ExitUsage {
		t.Fatalf("bad kid: exit %d", code)
	}
}

func TestSignFromFlags(t *testing.T) {
	dir, ring := keygen(t, "k1")
	code, out, errs := runCmd(t, "", "sign", "--key", filepath.Join(dir, "k1.key"),
		"--org", "acme", "--customer", "Acme Corp", "--tier", "enterprise", "--products", "hub,chat",
		"--features", "chat_connector,sso", "--expires", "+365d", "--not-before", "+1h",
		"--users-limit", "50", "--grace-days", "0", "--install-id", "5b3c1d1e-7f55-4f4b-9b68-2a1f0d3c9e11")
	if code != 0 {
		t.Fatalf("sign: %d %s", code, errs)
	}
	l, err := ring.Verify([]byte(out), license.Expect{Org: "acme", InstallID: "5b3c1d1e-7f55-4f4b-9b68-2a1f0d3c9e11"})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	p := l.Payload
	if l.Kid != "k1" || p.Customer != "Acme Corp" || p.Tier != license.TierEnterprise ||
		strings.Join(p.Products, ",") != "hub,chat" || strings.Join(p.Features, ",") != "chat_connector,sso" ||
		p.UsersLimit != 50 || p.GraceDays == nil || *p.GraceDays != 0 {
		t.Fatalf("payload %+v", p)
	}
	if !p.IssuedAt.Equal(now) || !p.Expires.Equal(now.Add(365*24*time.Hour)) || !p.NotBefore.Equal(now.Add(time.Hour)) {
		t.Fatalf("times %v %v %v", p.IssuedAt, p.NotBefore, p.Expires)
	}
	if p.LicenseID == "" {
		t.Fatal("license_id not filled")
	}
	// Two signings get two license ids.
	_, out2, _ := runCmd(t, "", "sign", "--key", filepath.Join(dir, "k1.key"), "--org", "*",
		"--customer", "Acme", "--tier", "starter", "--expires", "2030-01-01T00:00:00Z", "--format", "json")
	l2, err := ring.Verify([]byte(out2), license.Expect{Org: license.InstanceOrg})
	if err != nil || l2.Payload.LicenseID == p.LicenseID || !strings.HasPrefix(out2, "{") {
		t.Fatalf("json form: %v %s", err, out2)
	}
}

func TestSignFromPayloadFile(t *testing.T) {
	dir, ring := keygen(t, "k1")
	keyPath := filepath.Join(dir, "k1.key")
	payload := `{"customer":"Acme","org_slug":"acme","tier":"starter","expires":"2030-01-01T00:00:00Z","x_note":"kept"}`
	code, out, errs := runCmd(t, payload, "sign", "--key", keyPath, "-")
	if code != 0 {
		t.Fatalf("sign -: %d %s", code, errs)
	}
	l, err := ring.Verify([]byte(out), license.Expect{})
	if err != nil || !l.Payload.IssuedAt.Equal(now) || l.Payload.LicenseID == "" {
		t.Fatalf("%v %+v", err, l)
	}
	if !bytes.Contains(l.PayloadJSON(), []byte(`"x_note":"kept"`)) {
		t.Fatalf("vendor bytes not kept: %s", l.PayloadJSON())
	}
	// A complete payload is signed byte for byte.
	full := `{"license_id":"0193a5b0-7e1a-7c3d-8f00-1234567890ab","issued_at":"2026-01-01T00:00:00Z",` + payload[1:]
	file := filepath.Join(t.TempDir(), "p.json")
	os.WriteFile(file, []byte(full), 0o644)
	_, out, _ = runCmd(t, "", "sign", "--key", keyPath, file)
	if l, _ := ring.Verify([]byte(out), license.Expect{}); l == nil || string(l.PayloadJSON()) != full {
		t.Fatalf("complete payload changed")
	}

	bad := map[string][]string{
		"malformed payload":  {"sign", "--key", keyPath, "-"},
		"payload and flags":  {"sign", "--key", keyPath, "--org", "acme", file},
		"missing flags":      {"sign", "--key", keyPath, "--org", "acme"},
		"bad expires":        {"sign", "--key", keyPath, "--org", "acme", "--customer", "A", "--tier", "starter", "--expires", "tomorrow"},
		"unknown tier":       {"sign", "--key", keyPath, "--org", "acme", "--customer", "A", "--tier", "gold", "--expires", "+1d"},
		"not a key":          {"sign", "--key", file, "--org", "acme", "--customer", "A", "--tier", "starter", "--expires", "+1d"},
		"expired before now": {"sign", "--key", keyPath, "--org", "acme", "--customer", "A", "--tier", "starter", "--expires", "2020-01-01T00:00:00Z"},
	}
	for name, args := range bad {
		code, out, errs := runCmd(t, `{"tier":"gold"}`, args...)
		if code == 0 || out != "" || errs == "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", name, code, out, errs)
		}
	}
}

func TestKidResolution(t *testing.T) {
	dir, _ := keygen(t, "vendor-a")
	keyPath := filepath.Join(dir, "vendor-a.key")
	args := []string{"sign", "--key", "", "--org", "acme", "--customer", "A", "--tier", "starter", "--expires", "+1d"}
	signWith := func(key string, extra ...string) (int, string, string) {
		a := append([]string{}, args...)
		a[2] = key
		return runCmd(t, "", append(a, extra...)...)
	}
	// From the .pub beside the key, even when the key file is renamed.
	renamed := filepath.Join(dir, "renamed.key")
	os.Link(keyPath, renamed)
	os.Link(filepath.Join(dir, "vendor-a.pub"), filepath.Join(dir, "renamed.pub"))
	if _, out, _ := signWith(renamed); !strings.HasPrefix(out, "hfl1.vendor-a.") {
		t.Fatalf("kid from .pub: %s", out)
	}
	// From the file name when there is no .pub.
	lone := filepath.Join(t.TempDir(), "lonekid.key")
	data, _ := os.ReadFile(keyPath)
	os.WriteFile(lone, data, 0o600)
	if _, out, _ := signWith(lone); !strings.HasPrefix(out, "hfl1.lonekid.") {
		t.Fatalf("kid from name: %s", out)
	}
	// --kid wins.
	if _, out, _ := signWith(keyPath, "--kid", "other"); !strings.HasPrefix(out, "hfl1.other.") {
		t.Fatalf("--kid: %s", out)
	}
	// A .pub that is not this key's is an error, not a silent wrong kid.
	dir2, _ := keygen(t, "vendor-b")
	os.WriteFile(filepath.Join(dir2, "vendor-a.key"), data, 0o600)
	os.Rename(filepath.Join(dir2, "vendor-b.pub"), filepath.Join(dir2, "vendor-a.pub"))
	if code, _, errs := signWith(filepath.Join(dir2, "vendor-a.key")); code == 0 || !strings.Contains(errs, "public half") {
		t.Fatalf("mismatched .pub: %d %s", code, errs)
	}
}

// licensegen signatures verify with openssl pkeyutl, and the openssl
// recipe in scripts/ produces licenses the ledger accepts.
func TestOpenSSLInterop(t *testing.T) {
	openssl := testenv.RequireTool(t, "openssl")
	testenv.RequireTool(t, "basenc")
	dir, ring := keygen(t, "k1")
	_, out, _ := runCmd(t, "", "sign", "--key", filepath.Join(dir, "k1.key"), "--org", "acme",
		"--customer", "A", "--tier", "starter", "--expires", "+30d")
	l, err := ring.Verify([]byte(out), license.Expect{})
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(tmp, name)
		os.WriteFile(p, b, 0o600)
		return p
	}
	pubPEM := filepath.Join(tmp, "pub.pem")
	sh(t, openssl, "pkey", "-in", filepath.Join(dir, "k1.key"), "-pubout", "-out", pubPEM)
	msg := write("msg", l.SignedBytes())
	sig := write("sig", l.Signature())
	if got := sh(t, openssl, "pkeyutl", "-verify", "-pubin", "-inkey", pubPEM, "-rawin", "-in", msg, "-sigfile", sig); !strings.Contains(got, "Signature Verified Successfully") {
		t.Fatalf("openssl: %s", got)
	}
	tampered := write("msg2", append(l.SignedBytes()[:len(l.SignedBytes())-1], 'A'))
	if err := exec.Command(openssl, "pkeyutl", "-verify", "-pubin", "-inkey", pubPEM, "-rawin", "-in", tampered, "-sigfile", sig).Run(); err == nil {
		t.Fatal("openssl verified a tampered message")
	}

	// The other way: OpenSSL signs, the ledger's ring (PEM entry) verifies.
	osslKey := filepath.Join(tmp, "vendor.pem")
	sh(t, openssl, "genpkey", "-algorithm", "ed25519", "-out", osslKey)
	osslPub := sh(t, openssl, "pkey", "-in", osslKey, "-pubout")
	ringFile := write("ring", []byte("# stock OpenSSL key\nossl\n"+osslPub))
	payload := write("payload.json", []byte(`{"license_id":"0193a5b0-7e1a-7c3d-8f00-1234567890ab","customer":"Acme","org_slug":"acme","tier":"starter","issued_at":"2026-11-01T00:00:00Z","expires":"2027-11-01T00:00:00Z"}`+"\n"))
	key := sh(t, "../../scripts/openssl-sign.sh", "ossl", osslKey, payload)
	osslRing, err := license.LoadRing(license.RingConfig{File: ringFile, NoBuiltin: true})
	if err != nil {
		t.Fatal(err)
	}
	got, err := osslRing.Verify([]byte(key), license.Expect{Org: "acme"})
	if err != nil || got.Payload.Customer != "Acme" {
		t.Fatalf("openssl-signed license: %v", err)
	}
	if _, err := ring.Verify([]byte(key), license.Expect{}); license.ReasonOf(err) != license.ReasonUnknownKey {
		t.Fatalf("openssl license against another ring: %v", err)
	}
	// Our tooling's public key also loads as a raw entry from openssl's DER.
	der := sh(t, openssl, "pkey", "-pubin", "-in", pubPEM, "-outform", "DER")
	raw := base64.StdEncoding.EncodeToString([]byte(der)[len(der)-32:])
	if r, err := license.LoadRing(license.RingConfig{Env: "k1:" + raw, NoBuiltin: true}); err != nil || r.Fingerprint() != ring.Fingerprint() {
		t.Fatalf("raw key from openssl DER: %v", err)
	}
}

func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return string(out)
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, out, errOut := runCmd(t, "", args...)
		if code != 0 || !strings.HasPrefix(out, "licensegen dev (commit ") || errOut != "" {
			t.Fatalf("licensegen %v: %d %q %q", args, code, out, errOut)
		}
	}
}
