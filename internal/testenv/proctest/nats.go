package proctest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/natsembed"
)

// NATS is a nats-server process with a JetStream file store (fsync on
// every write) and the ledger, reader and admin nkey users of package
// natsauth, which can be killed and started again on the same port with
// the same store. It holds no stream until CreateStream.
type NATS struct {
	// LedgerSeedFile, ReaderSeedFile and AdminSeedFile are the users'
	// seeds (NATS_NKEY).
	LedgerSeedFile, ReaderSeedFile, AdminSeedFile string
	Ledger, Reader, Admin                         natsauth.Identity
	stream                                        string

	bin, conf string
	port      int
	p         *Process
	starts    int
}

// StartNATS runs bin (a nats-server built by Build) for stream, stopped
// when the test ends.
func StartNATS(t testing.TB, bin, stream string) *NATS {
	t.Helper()
	dir := t.TempDir()
	ledger, err := natsauth.GenerateIdentity(natsauth.RoleLedger)
	if err != nil {
		t.Fatal(err)
	}
	reader, err := natsauth.GenerateIdentity(natsauth.RoleReader)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := natsauth.GenerateIdentity(natsauth.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	users, err := natsembed.ServerUsers(stream, ledger, reader, admin)
	if err != nil {
		t.Fatal(err)
	}
	n := &NATS{Ledger: ledger, Reader: reader, Admin: admin, stream: stream, bin: bin, port: FreePorts(t, 1)[0],
		LedgerSeedFile: filepath.Join(dir, "ledger.nk"), ReaderSeedFile: filepath.Join(dir, "reader.nk"),
		AdminSeedFile: filepath.Join(dir, "admin.nk"), conf: filepath.Join(dir, "nats.conf")}
	for path, seed := range map[string][]byte{n.LedgerSeedFile: ledger.Seed, n.ReaderSeedFile: reader.Seed, n.AdminSeedFile: admin.Seed} {
		if err := os.WriteFile(path, seed, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	conf, err := natsConfig(n.port, filepath.Join(dir, "store"), users)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.conf, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	n.Start(t)
	return n
}

// natsConfig renders the server configuration as JSON, which the
// nats-server configuration format accepts.
func natsConfig(port int, storeDir string, users []*server.NkeyUser) ([]byte, error) {
	type subjects struct {
		Allow []string `json:"allow,omitempty"`
		Deny  []string `json:"deny,omitempty"`
	}
	type user struct {
		Nkey        string `json:"nkey"`
		Permissions struct {
			Publish   subjects `json:"publish"`
			Subscribe subjects `json:"subscribe"`
		} `json:"permissions"`
	}
	var us []user
	for _, u := range users {
		var out user
		out.Nkey = u.Nkey
		if p := u.Permissions; p != nil {
			if p.Publish != nil {
				out.Permissions.Publish = subjects{p.Publish.Allow, p.Publish.Deny}
			}
			if p.Subscribe != nil {
				out.Permissions.Subscribe = subjects{p.Subscribe.Allow, p.Subscribe.Deny}
			}
		}
		us = append(us, out)
	}
	// Not HTML-escaped: the configuration parser knows no \u escapes.
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	err := enc.Encode(map[string]any{
		"server_name":   "proctest",
		"listen":        fmt.Sprintf("127.0.0.1:%d", port),
		"jetstream":     map[string]any{"store_dir": storeDir, "sync_interval": "always"},
		"authorization": map[string]any{"users": us},
	})
	return b.Bytes(), err
}

// CreateStream creates the stream with the contract's configuration as
// the stream administrator does (ledger stream apply).
func (n *NATS) CreateStream(t testing.TB, replicas int) {
	t.Helper()
	nc, err := natsbus.Connect(natsbus.ConnConfig{URL: n.URL(), NKeyFile: n.AdminSeedFile, Role: natsauth.RoleAdmin, Name: "proctest-admin"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := natsbus.NewConn(nc).ApplyStream(ctx, n.stream, replicas, false); err != nil {
		t.Fatalf("proctest: create stream %s: %v", n.stream, err)
	}
}

// URL is the client URL; it stays the same across restarts.
func (n *NATS) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

// Process is the running server process (the last one started).
func (n *NATS) Process() *Process { return n.p }

// Start starts the server (again, after Kill) and waits until it accepts
// connections on its port.
func (n *NATS) Start(t testing.TB) {
	t.Helper()
	n.starts++
	n.p = Start(t, fmt.Sprintf("nats-server#%d", n.starts), n.bin, []string{"-c", n.conf}, nil)
	WaitFor(t, "nats-server to listen", 30*time.Second, []*Process{n.p}, func() error {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", n.port), time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// Kill ends the server with SIGKILL: no flush, no goodbye to clients.
func (n *NATS) Kill() { n.p.Kill() }
