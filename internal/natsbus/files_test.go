package natsbus_test

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/natsembed"
	"github.com/licenseledger/ledger/internal/testenv"
)

func perm(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// $DATA_DIR/nats is the product's own: a directory group or others may
// enter is set to 0700, and the log says so.
func TestEmbeddedTightensStoreDirectory(t *testing.T) {
	data := t.TempDir()
	dir := filepath.Join(data, "nats")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	var logs testenv.Buffer
	e, err := natsembed.Start(natsembed.Config{DataDir: data, Listen: "off", Stream: "LICENSES",
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	e.Shutdown()
	if p := perm(t, dir); p != 0o700 {
		t.Fatalf("%s is %04o after a start, want 0700", dir, p)
	}
	if !strings.Contains(logs.String(), "set to 0700") || !strings.Contains(logs.String(), "was=0755") {
		t.Errorf("no warning that the directory was tightened:\n%s", logs.String())
	}
	for _, f := range []string{e.LedgerSeedFile, e.ReaderSeedFile} {
		if p := perm(t, f); p != 0o600 {
			t.Errorf("%s is %04o, want 0600", f, p)
		}
	}
	// The offline server (backup, restore, reseed) tightens it too.
	os.Chmod(dir, 0o750)
	off, err := natsembed.StartOffline(data)
	if err != nil {
		t.Fatal(err)
	}
	off.Close()
	if p := perm(t, dir); p != 0o700 {
		t.Fatalf("%s is %04o after an offline start, want 0700", dir, p)
	}
}

// NATS_NKEY and NATS_CREDS files that group or others may read are
// refused before any connection, with the file and the fix named; links
// are followed to the file they name.
func TestCredentialFilesRefusedWhenExposed(t *testing.T) {
	dir := t.TempDir()
	id, err := natsauth.GenerateIdentity(natsauth.RoleReader)
	if err != nil {
		t.Fatal(err)
	}
	seed := filepath.Join(dir, "reader.nk")
	creds := filepath.Join(dir, "reader.creds")
	for _, f := range []string{seed, creds} {
		if err := os.WriteFile(f, append(id.Seed, '\n'), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chmod(f, 0o644)
	}
	link := filepath.Join(dir, "link.nk")
	if err := os.Symlink("reader.nk", link); err != nil {
		t.Fatal(err)
	}
	closed := "nats://127.0.0.1:1" // nothing listens: a config that passes fails to connect
	for _, c := range []struct {
		cfg  natsbus.ConnConfig
		want string
	}{
		{natsbus.ConnConfig{URL: closed, NKeyFile: seed}, "NATS_NKEY: natsauth: seed " + seed + " is accessible by group or others (mode 0644): run chmod 600 " + seed},
		{natsbus.ConnConfig{URL: closed, NKeyFile: link}, "run chmod 600 " + link},
		{natsbus.ConnConfig{URL: closed, CredsFile: creds}, "NATS_CREDS: " + creds + " is accessible by group or others (mode 0644): run chmod 600 " + creds},
	} {
		nc, err := natsbus.Connect(c.cfg)
		if err == nil {
			nc.Close()
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err %v, want %q", c.cfg, err, c.want)
		}
	}
	for _, f := range []string{seed, creds} {
		os.Chmod(f, 0o400)
	}
	for _, cfg := range []natsbus.ConnConfig{{URL: closed, NKeyFile: link}, {URL: closed, CredsFile: creds}} {
		nc, err := natsbus.Connect(cfg)
		if err == nil {
			nc.Close()
		}
		if err == nil || strings.Contains(err.Error(), "accessible") || !strings.Contains(err.Error(), "connect to NATS") {
			t.Errorf("%+v with mode 0400: %v, want a connection error", cfg, err)
		}
	}
}
