package faulttest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/internal/testenv/licensetest"
	"github.com/licenseledger/ledger/internal/testenv/proctest"
)

// ledgerProc is a `ledger serve` process.
type ledgerProc struct {
	p     *proctest.Process
	api   string // http://host:port
	token string // operator token
	bin   string
}

// startLedger runs `ledger serve` against NATS_URL (and DATABASE_URL if
// given in env) and waits until /readyz answers 200. A ledger that exits
// before it is ready fails the test: no restart hides a start-up race.
func startLedger(t *testing.T, name string, env map[string]string) *ledgerProc {
	t.Helper()
	bin := binaries(t)["ledger"]
	l := &ledgerProc{token: randomHex(t, 20), bin: bin}
	addr := fmt.Sprintf("127.0.0.1:%d", proctest.FreePorts(t, 1)[0])
	l.api = "http://" + addr
	full := map[string]string{
		"LEDGER_LISTEN": addr, "DATA_DIR": t.TempDir(), "LEDGER_ADMIN_TOKEN": l.token,
		"LICENSE_PUBLIC_KEYS": licensetest.RingEntry("k1"), "LEDGER_RATE_LIMIT": "off",
		"LEDGER_DIGEST_INTERVAL": "0", "LOG_LEVEL": "info",
	}
	for k, v := range env {
		full[k] = v
	}
	l.p = proctest.Start(t, name, bin, []string{"serve"}, full)
	proctest.WaitFor(t, name+" to be ready", readyTimeout, []*proctest.Process{l.p}, func() error {
		return proctest.GetOK(l.api + "/readyz")
	})
	return l
}

var httpClient = proctest.HTTPClient

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// seedFile writes an nkey seed as an operator hands it to a process.
func seedFile(t testing.TB, seed []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "seed.nk")
	if err := os.WriteFile(path, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// logLines counts the lines of out containing every one of words.
func logLines(out string, words ...string) int {
	n := 0
	for _, line := range strings.Split(out, "\n") {
		all := true
		for _, w := range words {
			all = all && strings.Contains(line, w)
		}
		if all {
			n++
		}
	}
	return n
}

func itoa(n int) string { return fmt.Sprint(n) }
