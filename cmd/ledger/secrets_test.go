package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/internal/cli"
	"github.com/licenseledger/ledger/internal/natsauth"
)

// exposedSeed writes a user seed at path with mode 0644.
func exposedSeed(t *testing.T, path string) {
	t.Helper()
	id, err := natsauth.GenerateIdentity(natsauth.RoleLedger)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(id.Seed, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o644)
}

// A seed, credentials or token file that group or others may read stops
// the command before it uses it: exit 2 (configuration, which no restart
// fixes), the file and `chmod 600 FILE` named.
func TestExposedSecretsRefused(t *testing.T) {
	t.Setenv("NATS_URL", "")
	t.Setenv("LEDGER_ADMIN_TOKEN", "")
	data := t.TempDir()
	seed := filepath.Join(data, "nats", "ledger.nk")
	exposedSeed(t, seed)
	code, _, errOut := cliRun(t, "", "serve", "--data-dir", data, "--listen", "127.0.0.1:0", "--nats-listen", "off")
	if code != cli.ExitUsage || !strings.Contains(errOut, seed+" is accessible by group or others (mode 0644): run chmod 600 "+seed) {
		t.Fatalf("serve with a 0644 seed: exit %d\n%s", code, errOut)
	}
	if b, _ := os.ReadFile(seed); len(b) == 0 {
		t.Fatal("the refused seed was changed")
	}
	// The operator token of a single node.
	tokenData := t.TempDir()
	token := filepath.Join(tokenData, "admin.token")
	if err := os.WriteFile(token, []byte(strings.Repeat("a", 64)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chmod(token, 0o644)
	code, _, errOut = cliRun(t, "", "serve", "--data-dir", tokenData, "--listen", "127.0.0.1:0", "--nats-listen", "off")
	if code != cli.ExitUsage || !strings.Contains(errOut, token+" is accessible by group or others (mode 0644): run chmod 600 "+token) {
		t.Fatalf("serve with a 0644 admin.token: exit %d\n%s", code, errOut)
	}

	// The maintenance commands, with NATS_NKEY or NATS_CREDS: refused
	// before they connect (nothing listens at the URL).
	creds := filepath.Join(t.TempDir(), "ledger.creds")
	exposedSeed(t, creds)
	for _, args := range [][]string{
		{"backup", t.TempDir(), "--nats-url", "nats://127.0.0.1:1", "--nats-nkey", seed},
		{"backup", t.TempDir(), "--nats-url", "nats://127.0.0.1:1", "--nats-creds", creds},
		{"replay", "--verify", "--nats-url", "nats://127.0.0.1:1", "--nats-nkey", seed, "--database-url", "postgres://nobody@127.0.0.1:1/none?connect_timeout=1"},
	} {
		file := args[len(args)-1]
		if args[0] == "replay" {
			file = seed
		}
		code, _, errOut := cliRun(t, "", args...)
		if code != cli.ExitUsage || !strings.Contains(errOut, "run chmod 600 "+file) {
			t.Errorf("%v: exit %d\n%s", args, code, errOut)
		}
	}
}
