package natsembed_test

import (
	"context"
	"errors"
	"testing"

	"github.com/licenseledger/ledger/internal/natsembed"
)

// One process at a time on a store: the offline server and a ledger's
// embedded one exclude each other, and either releases the store when it
// stops.
func TestOfflineAndEmbeddedShareNoStore(t *testing.T) {
	dir := t.TempDir()
	e, err := natsembed.Start(natsembed.Config{DataDir: dir, Listen: "off", Stream: "LICENSES"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := natsembed.StartOffline(dir); !errors.Is(err, natsembed.ErrStoreInUse) {
		t.Fatalf("offline next to a running ledger: %v", err)
	}
	if _, err := natsembed.Start(natsembed.Config{DataDir: dir, Listen: "off", Stream: "LICENSES"}); !errors.Is(err, natsembed.ErrStoreInUse) {
		t.Fatalf("a second ledger on one store: %v", err)
	}
	e.Shutdown()

	off, err := natsembed.StartOffline(dir)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := off.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	// No credentials needed in-process: the stream can be created.
	if _, _, err := conn.Open(context.Background(), "LICENSES", 1, true); err != nil {
		t.Fatal(err)
	}
	if _, err := natsembed.Start(natsembed.Config{DataDir: dir, Listen: "off", Stream: "LICENSES"}); !errors.Is(err, natsembed.ErrStoreInUse) {
		t.Fatalf("a ledger next to the offline server: %v", err)
	}
	conn.Close()
	if err := off.Close(); err != nil {
		t.Fatal(err)
	}
	e, err = natsembed.Start(natsembed.Config{DataDir: dir, Listen: "off", Stream: "LICENSES"})
	if err != nil {
		t.Fatalf("after the offline server: %v", err)
	}
	e.Shutdown()
}
