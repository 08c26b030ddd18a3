package deploytest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/testenv/licensetest"
)

// TestSetupLicenseImportedByLedger: what setup.sh writes is what `ledger
// serve` reads. The ledger runs with exactly the env file's variables
// (plus test ports and the key ring), imports the install license into
// _instance, and after a renewal in the other form imports that one.
func TestSetupLicenseImportedByLedger(t *testing.T) {
	t.Parallel()
	bin := binaries(t)
	sh := defaultShell(t)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "state")
	envFile := filepath.Join(dir, "etc", "ledger.env")
	conf := writeFile(t, filepath.Join(dir, "install.conf"),
		[]byte(fmt.Sprintf("data_dir: %s\nenv_file: %s\nlicense:\n  file: vendor.key\n", dataDir, envFile)), 0o644)

	first := instanceLicense(t, licenseID1, issued, nil)
	writeFile(t, filepath.Join(dir, "vendor.key"), []byte(first.Key+"\n"), 0o600)
	mustOK(t, sh.run(t, nil, "--config", conf))
	got := runLedgerOnce(t, bin, envFile)
	if got["status"] != "valid" || got["license_id"] != licenseID1 {
		t.Fatalf("after install, _instance is %v", got)
	}

	renewal := instanceLicense(t, licenseID2, issued.Add(time.Minute), nil)
	jsonFile := writeFile(t, filepath.Join(dir, "renewal.json"), renewal.EncodeJSON(), 0o600)
	mustOK(t, sh.run(t, nil, "--config", conf, "--license", jsonFile))
	if exists(t, filepath.Join(dataDir, "license.key")) {
		t.Fatal("license.key left beside license.json")
	}
	got = runLedgerOnce(t, bin, envFile)
	if got["status"] != "valid" || got["license_id"] != licenseID2 {
		t.Fatalf("after renewal, _instance is %v", got)
	}
}

// runLedgerOnce starts `ledger serve` with the variables of envFile, reads
// _instance's status with the generated admin token, and stops it.
func runLedgerOnce(t *testing.T, bin, envFile string) map[string]any {
	t.Helper()
	env := baseEnv()
	dataDir := ""
	for _, kv := range envAssignments(t, string(readFile(t, envFile))) {
		env = append(env, kv[0]+"="+kv[1])
		if kv[0] == "DATA_DIR" {
			dataDir = kv[1]
		}
	}
	if dataDir == "" {
		t.Fatal("env file has no DATA_DIR")
	}
	env = append(env, "LEDGER_LISTEN=127.0.0.1:0", "LEDGER_NATS_LISTEN=off", "LOG_FORMAT=json",
		"LICENSE_PUBLIC_KEYS="+licensetest.RingEntry(testKid))

	cmd := exec.Command(filepath.Join(bin, "ledger"), "serve")
	cmd.Env = env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	var mu sync.Mutex
	addr := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			mu.Lock()
			logs.WriteString(sc.Text() + "\n")
			mu.Unlock()
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "API listening" {
				addr <- line.Addr
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	exited := make(chan error, 1)
	go func() { <-done; exited <- cmd.Wait() }()
	logText := func() string { mu.Lock(); defer mu.Unlock(); return logs.String() }
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}

	var a string
	select {
	case a = <-addr:
	case err := <-exited:
		t.Fatalf("ledger exited before listening: %v\n%s", err, logText())
	case <-time.After(2 * time.Minute):
		stop()
		t.Fatalf("ledger did not start listening\n%s", logText())
	}
	defer stop()

	token, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatalf("admin token: %v\n%s", err, logText())
	}
	req, _ := http.NewRequest("GET", "http://"+a+"/api/license?org=_instance", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET /api/license: %v\n%s", err, logText())
	}
	defer resp.Body.Close()
	var status map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&status); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/license: %d %v\n%s", resp.StatusCode, err, logText())
	}
	if strings.Contains(logText(), "install license not imported") {
		t.Fatalf("the ledger refused the install license:\n%s", logText())
	}
	return status
}
