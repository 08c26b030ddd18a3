package natsbus_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/natsembed"
)

func startEmbedded(t *testing.T, dir string) *natsembed.Embedded {
	t.Helper()
	e, err := natsembed.Start(natsembed.Config{DataDir: dir, Listen: "127.0.0.1:0", SyncAlways: true, Stream: "LICENSES"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	return e
}

func connect(t *testing.T, e *natsembed.Embedded, seedFile string) *nats.Conn {
	t.Helper()
	nc, err := natsbus.Connect(natsbus.ConnConfig{URL: e.ClientURL, NKeyFile: seedFile, Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func TestEmbeddedServerRequiresAuthAndEnforcesRoles(t *testing.T) {
	dir := t.TempDir()
	e := startEmbedded(t, dir)
	for _, f := range []string{"ledger.nk", "reader.nk", "admin.nk"} {
		fi, err := os.Stat(filepath.Join(dir, "nats", f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, fi, err)
		}
	}
	if nc, err := nats.Connect(e.ClientURL, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("an unauthenticated client connected")
	} else if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("unauthenticated: %v", err)
	}

	ctx := context.Background()
	if _, err := e.Bootstrap(ctx, "LICENSES", 1); err != nil {
		t.Fatal(err)
	}
	ledgerBus, _, err := natsbus.Open(ctx, connect(t, e, e.LedgerSeedFile), "LICENSES", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	env, _ := events.New(events.TypeRemoved, "acme", time.Now(), events.Actor{Kind: "operator", ID: "t"}, 0, events.Removed{LicenseID: "x"})
	if _, err := ledgerBus.Append(ctx, events.OrgSubject("acme"), env, 0); err != nil {
		t.Fatal(err)
	}

	readerConn := connect(t, e, e.ReaderSeedFile)
	readerBus, info, err := natsbus.Open(ctx, readerConn, "LICENSES", 1, false)
	if err != nil || info.LastSeq != 1 {
		t.Fatalf("reader open: %v %+v", err, info)
	}
	if m, err := readerBus.Next(ctx, events.OrgSubject("acme"), 1); err != nil || m == nil || m.Envelope == nil {
		t.Fatalf("reader get: %v %v", m, err)
	}
	env2, _ := events.New(events.TypeRemoved, "acme", time.Now(), events.Actor{Kind: "operator", ID: "t"}, 1, events.Removed{LicenseID: "x"})
	actx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if _, err := readerBus.Append(actx, events.OrgSubject("acme"), env2, 1); err == nil {
		t.Fatal("the reader appended an event")
	}
	// A denied request gets no reply: each attempt ends at its deadline.
	denied := func() context.Context {
		c, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		t.Cleanup(cancel)
		return c
	}
	js, _ := jetstream.New(readerConn)
	cfg := natsbus.StreamConfig("LICENSES", 1)
	cfg.MaxAge = time.Hour
	if _, err := js.UpdateStream(denied(), cfg); err == nil {
		t.Fatal("the reader updated the stream")
	}
	if err := js.DeleteStream(denied(), "LICENSES"); err == nil {
		t.Fatal("the reader deleted the stream")
	}
	s, _ := js.Stream(ctx, "LICENSES")
	if err := s.Purge(denied()); err == nil {
		t.Fatal("the reader purged the stream")
	}
	if info, err := readerBus.Info(ctx); err != nil || info.LastSeq != 1 {
		t.Fatalf("stream after the reader's attempts: %+v %v", info, err)
	}
}

func TestEmbeddedPortTakenIsAClearError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = natsembed.Start(natsembed.Config{DataDir: t.TempDir(), Listen: l.Addr().String(), Stream: "LICENSES"})
	if err == nil || !strings.Contains(err.Error(), "--nats-listen") || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("taken port: %v", err)
	}
}

func TestEmbeddedInProcessOnly(t *testing.T) {
	dir := t.TempDir()
	e, err := natsembed.Start(natsembed.Config{DataDir: dir, Listen: "off", Stream: "LICENSES"})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	if e.ClientURL != "" {
		t.Fatalf("off still listens at %s", e.ClientURL)
	}
	if _, err := e.Bootstrap(context.Background(), "LICENSES", 1); err != nil {
		t.Fatal(err)
	}
	nc, err := natsbus.Connect(natsbus.ConnConfig{InProcess: e.Server, NKeyFile: e.LedgerSeedFile, Role: natsauth.RoleLedger})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, _, err := natsbus.Open(context.Background(), nc, "LICENSES", 1, false); err != nil {
		t.Fatal(err)
	}
	// A restart keeps the seeds (the reader's credentials stay valid).
	before, _ := os.ReadFile(filepath.Join(dir, "nats", "reader.nk"))
	e.Shutdown()
	e2, err := natsembed.Start(natsembed.Config{DataDir: dir, Listen: "off", Stream: "LICENSES"})
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Shutdown()
	after, _ := os.ReadFile(filepath.Join(dir, "nats", "reader.nk"))
	if string(before) != string(after) {
		t.Fatal("restart replaced the reader seed")
	}
}
