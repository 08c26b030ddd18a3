package examplestest

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/testenv/licensetest"
	"github.com/licenseledger/ledger/internal/testenv/proctest"
)

// TestGatedAppFollowsTheStream runs examples/gatedapp — a program of
// another module gating its own handler with a follower — against a
// ledger on the embedded default: an org with a license is served, one
// without is denied, and invalidating the license denies it within
// moments, without a restart.
func TestGatedAppFollowsTheStream(t *testing.T) {
	dir := t.TempDir()
	bins := proctest.Build(t, dir, "./cmd/ledger")
	app := buildExample(t, dir, "gatedapp")

	ports := proctest.FreePorts(t, 3)
	api, natsAddr, appAddr := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1]), fmt.Sprintf("127.0.0.1:%d", ports[2])
	data := filepath.Join(dir, "data")
	keysFile := filepath.Join(dir, "vendor.pub")
	entry := strings.Replace(licensetest.RingEntry("vendor-2026"), ":", " ", 1)
	if err := os.WriteFile(keysFile, []byte(entry+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ledger := proctest.Start(t, "ledger", bins["ledger"], []string{"serve"}, map[string]string{
		"LEDGER_LISTEN": api, "LEDGER_NATS_LISTEN": natsAddr, "DATA_DIR": data, "LICENSE_PUBLIC_KEYS_FILE": keysFile})
	proctest.WaitFor(t, "the ledger", 60*time.Second, []*proctest.Process{ledger}, func() error {
		return proctest.GetOK("http://" + api + "/readyz")
	})
	token, err := os.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	op := strings.TrimSpace(string(token))

	l := licensetest.Sign(t, "vendor-2026", map[string]any{"license_id": "0193a5b0-7e1a-7c3d-8f00-1234567890ab",
		"customer": "Acme Corp", "org_slug": "acme", "tier": "enterprise", "issued_at": time.Now().Add(-time.Hour).UTC().Format(time.RFC3339),
		"expires": time.Now().AddDate(1, 0, 0).UTC().Format(time.RFC3339), "users_limit": 50})
	call(t, op, "POST", "http://"+api+"/api/license?org=acme", l.Key, http.StatusOK)

	gated := proctest.Start(t, "gatedapp", app, []string{"--listen", appAddr, "--nats-url", "nats://" + natsAddr,
		"--nats-nkey", filepath.Join(data, "nats", "reader.nk"), "--public-keys-file", keysFile}, nil)
	get := func(org string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+appAddr+"/projects", nil)
		req.Header.Set("X-Org-Slug", org)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, strings.TrimSpace(string(b))
	}
	proctest.WaitFor(t, "gatedapp", 30*time.Second, []*proctest.Process{gated, ledger}, func() error {
		if code, _ := get("acme"); code == 0 {
			return fmt.Errorf("not listening yet")
		}
		return nil
	})
	if code, body := get("acme"); code != http.StatusOK || body != `hello acme: license valid, tier "enterprise"` {
		t.Fatalf("acme: %d %q", code, body)
	}
	if code, body := get("globex"); code != http.StatusForbidden || !strings.Contains(body, `"error":"license_missing"`) {
		t.Fatalf("globex: %d %q", code, body)
	}

	// Enforcement on and the license invalidated: the app's follower sees
	// both events and denies acme, with no restart and no poll.
	call(t, op, "PUT", "http://"+api+"/api/enforcement", `{"mode":"on"}`, http.StatusOK)
	call(t, op, "POST", "http://"+api+"/api/license/invalidate?org=acme", `{"license_id":"0193a5b0-7e1a-7c3d-8f00-1234567890ab","note":"chargeback"}`, http.StatusOK)
	proctest.WaitFor(t, "acme denied", 5*time.Second, []*proctest.Process{gated}, func() error {
		if code, body := get("acme"); code != http.StatusForbidden || !strings.Contains(body, `"reason":"revoked"`) {
			return fmt.Errorf("acme: %d %q", code, body)
		}
		return nil
	})
}

// buildExample builds examples/NAME with the go command running the tests,
// inside the examples module.
func buildExample(t *testing.T, dir, name string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the examples: %v", err)
	}
	out := filepath.Join(dir, name)
	cmd := exec.Command(goTool, "build", "-o", out, "./"+name)
	cmd.Dir = filepath.Join(proctest.RepoRoot(t), "examples")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./%s in examples/: %v\n%s", name, err, b)
	}
	return out
}

// call makes an API request as the operator and checks its status.
func call(t *testing.T, token, method, url, body string, want int) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		t.Fatalf("%s %s: %d %s", method, url, res.StatusCode, b)
	}
}
