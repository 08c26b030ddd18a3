package license_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/licenseledger/ledger/license"
)

func pubB64(kid string, enc *base64.Encoding) string {
	pub, _ := testKey(kid)
	return enc.EncodeToString(pub)
}

func pubPEM(t *testing.T, kid string) string {
	pub, _ := testKey(kid)
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func writeFile(t *testing.T, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // umask must not hide the mode
		t.Fatal(err)
	}
	return p
}

func TestRingSources(t *testing.T) {
	env := " k1:" + pubB64("k1", base64.StdEncoding) + " , k2:" + pubB64("k2", base64.RawStdEncoding) +
		",k3:" + pubB64("k3", base64.RawURLEncoding) + ","
	file := "# vendor keys\n" +
		"k4 " + pubB64("k4", base64.URLEncoding) + "   # rotated in 2026\n\n" +
		"k5:" + pubB64("k5", base64.StdEncoding) + "\n" +
		"k6\n" + pubPEM(t, "k6") +
		"k1 " + pubB64("k1", base64.StdEncoding) + "\n" // same key again is fine
	r, err := license.LoadRing(license.RingConfig{Env: env, File: writeFile(t, "keys", file, 0o644), NoBuiltin: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.Kids(), ","); got != "k1,k2,k3,k4,k5,k6" {
		t.Fatalf("kids %s", got)
	}
	for _, kid := range r.Kids() {
		l := sign(t, kid, basePayload())
		if _, err := r.Verify([]byte(l.Key), license.Expect{}); err != nil {
			t.Errorf("%s: %v", kid, err)
		}
	}
	// The fingerprint depends on content only, not on order or encoding.
	r2, err := license.LoadRing(license.RingConfig{NoBuiltin: true, Env: "k6:" + pubB64("k6", base64.RawURLEncoding) +
		",k5:" + pubB64("k5", base64.StdEncoding) + ",k4:" + pubB64("k4", base64.StdEncoding) +
		",k3:" + pubB64("k3", base64.StdEncoding) + ",k2:" + pubB64("k2", base64.StdEncoding) +
		",k1:" + pubB64("k1", base64.StdEncoding)})
	if err != nil {
		t.Fatal(err)
	}
	if r.Fingerprint() != r2.Fingerprint() || len(r.Fingerprint()) != 64 {
		t.Fatalf("fingerprints %s %s", r.Fingerprint(), r2.Fingerprint())
	}
	if r.Fingerprint() == testRing(t, "k1").Fingerprint() {
		t.Fatal("different rings share a fingerprint")
	}
}

func TestRingErrors(t *testing.T) {
	k1 := pubB64("k1", base64.StdEncoding)
	cases := map[string]struct {
		cfg  license.RingConfig
		want string
	}{
		"duplicate kid in env":     {license.RingConfig{Env: "k1:" + k1 + ",k1:" + pubB64("k2", base64.StdEncoding)}, "two different keys"},
		"duplicate kid across":     {license.RingConfig{Env: "k1:" + k1, File: writeFile(t, "f", "k1 "+pubB64("k2", base64.StdEncoding)+"\n", 0o600)}, "two different keys"},
		"group-writable file":      {license.RingConfig{File: writeFile(t, "f", "k1 "+k1+"\n", 0o664)}, "writable by group or others"},
		"world-writable file":      {license.RingConfig{File: writeFile(t, "f", "k1 "+k1+"\n", 0o602)}, "writable by group or others"},
		"missing file":             {license.RingConfig{File: "/nonexistent/keys"}, "no such file"},
		"short key":                {license.RingConfig{Env: "k1:" + base64.StdEncoding.EncodeToString([]byte("short"))}, "32"},
		"not base64":               {license.RingConfig{Env: "k1:@@@"}, "not base64"},
		"no colon":                 {license.RingConfig{Env: k1}, "not kid:base64"},
		"bad kid":                  {license.RingConfig{Env: "k 1:" + k1}, "must match"},
		"kid without key":          {license.RingConfig{File: writeFile(t, "f", "k1\n", 0o600)}, "has no key"},
		"kid then kid":             {license.RingConfig{File: writeFile(t, "f", "k1\nk2 "+k1+"\n", 0o600)}, "has no key"},
		"pem without kid":          {license.RingConfig{File: writeFile(t, "f", pubPEM(t, "k1"), 0o600)}, "must follow a line"},
		"three fields":             {license.RingConfig{File: writeFile(t, "f", "k1 "+k1+" extra\n", 0o600)}, "expected"},
		"rsa-like pem is rejected": {license.RingConfig{File: writeFile(t, "f", "k1\n-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", 0o600)}, "k1"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			c.cfg.NoBuiltin = true
			_, err := license.LoadRing(c.cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want it to mention %q", err, c.want)
			}
		})
	}
}

func TestBuiltinKeys(t *testing.T) {
	old := license.BuiltinKeys
	t.Cleanup(func() { license.BuiltinKeys = old })
	license.BuiltinKeys = "vendor1:" + pubB64("vendor1", base64.StdEncoding)
	r, err := license.LoadRing(license.RingConfig{Env: "k1:" + pubB64("k1", base64.StdEncoding)})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(r.Kids(), ",") != "k1,vendor1" {
		t.Fatalf("kids %v", r.Kids())
	}
	if _, err := license.LoadRing(license.RingConfig{Env: "vendor1:" + pubB64("k1", base64.StdEncoding)}); err == nil {
		t.Fatal("an env key must not silently replace a built-in key")
	}
	r, _ = license.LoadRing(license.RingConfig{NoBuiltin: true})
	if r.Len() != 0 {
		t.Fatal("NoBuiltin")
	}
}

func TestReloadOnSIGHUP(t *testing.T) {
	path := writeFile(t, "keys", "k1 "+pubB64("k1", base64.StdEncoding)+"\n", 0o600)
	keys, err := license.NewKeys(license.RingConfig{File: path, NoBuiltin: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changed := make(chan *license.Ring, 4)
	keys.ReloadOnSIGHUP(ctx, slog.New(slog.DiscardHandler), func(r *license.Ring) { changed <- r })
	l2 := sign(t, "k2", basePayload())
	if _, err := keys.Ring().Verify([]byte(l2.Key), license.Expect{}); license.ReasonOf(err) != license.ReasonUnknownKey {
		t.Fatalf("before rotation: %v", err)
	}

	// Rotation: add k2 and reload.
	rotated := "k1 " + pubB64("k1", base64.StdEncoding) + "\nk2 " + pubB64("k2", base64.StdEncoding) + "\n"
	if err := os.WriteFile(path, []byte(rotated), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-changed:
		if r.Len() != 2 {
			t.Fatalf("ring after reload: %v", r.Kids())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no reload after SIGHUP")
	}
	if _, err := keys.Ring().Verify([]byte(l2.Key), license.Expect{}); err != nil {
		t.Fatalf("after rotation: %v", err)
	}

	// A broken file keeps the ring in force.
	before := keys.Ring().Fingerprint()
	if err := os.WriteFile(path, []byte("k1 garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Reload(); err == nil {
		t.Fatal("reload of a broken file must fail")
	}
	if keys.Ring().Fingerprint() != before {
		t.Fatal("a failed reload replaced the ring")
	}
}
