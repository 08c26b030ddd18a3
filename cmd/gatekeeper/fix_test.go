package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/gatekeeper/natsstream"
	"github.com/licenseledger/ledger/internal/cli"
	"github.com/licenseledger/ledger/internal/testenv"
	"github.com/licenseledger/ledger/internal/testenv/licensetest"
	"github.com/licenseledger/ledger/internal/testenv/natstest"
)

// A gatekeeper started where no ledger's data directory is, or before the
// ledger, says what to do in terms of what the operator set or left to its
// defaults: not a variable they never set, not "no servers available".
func TestConnectionMistakesNameTheFix(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	t.Setenv("LICENSE_PUBLIC_KEYS", licensetest.RingEntry("k1"))
	gk := func(args ...string) (int, string) {
		t.Helper()
		var out, errb bytes.Buffer
		code := run(append([]string{"--upstream", "http://127.0.0.1:9", "--listen", "127.0.0.1:0", "--authz-listen", "off"}, args...),
			&cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Now: time.Now})
		return code, errb.String()
	}
	// No data directory here: the default credentials are missing.
	code, errs := gk()
	for _, w := range []string{"no reader credentials at data/nats/reader.nk", "--data-dir", "DATA_DIR", "NATS_NKEY"} {
		if code != cli.ExitUnavailable || !strings.Contains(errs, w) {
			t.Errorf("exit %d: %q does not say %q", code, errs, w)
		}
	}
	// The credentials are there, the ledger is not: say to start it.
	seed := filepath.Join(dir, "data", "nats", "reader.nk")
	if err := os.MkdirAll(filepath.Dir(seed), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(seed, natstest.Start(t).ReaderSeed, 0o600); err != nil {
		t.Fatal(err)
	}
	ports, err := testenv.FixedPorts(1)
	if err != nil {
		t.Fatal(err)
	}
	nowhere := fmt.Sprintf("nats://127.0.0.1:%d", ports[0])
	code, errs = gk("--nats-url", nowhere)
	if code != cli.ExitUnavailable || !strings.Contains(errs, "no NATS server answers at NATS_URL "+nowhere) {
		t.Errorf("an explicit NATS_URL with nothing there: exit %d %q", code, errs)
	}
	// --nats-listen off without NATS_URL: nothing to reach, said at once.
	code, errs = gk("--nats-listen", "off")
	if code != cli.ExitUsage || !strings.Contains(errs, "--nats-listen off") || !strings.Contains(errs, "set NATS_URL") {
		t.Errorf("--nats-listen off: exit %d %q", code, errs)
	}
	// The default URL (the embedded NATS of a ledger on this machine):
	// say to start the ledger.
	_, err = natsstream.Connect(natsstream.Dial{URL: nowhere, NKeyFile: seed})
	c := &gatekeeperCmd{DataDir: "./data"}
	c.defaults()
	c.NATSURL = nowhere
	for _, w := range []string{"nothing answers at " + nowhere, "start the ledger first (ledger serve", "NATS_URL"} {
		if got := c.explainConnect(err).Error(); !strings.Contains(got, w) {
			t.Errorf("%q does not say %q", got, w)
		}
	}
}
