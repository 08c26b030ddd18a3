package faulttest

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/testenv/pgtest"
	"github.com/licenseledger/ledger/internal/testenv/proctest"
)

// nats-server, a separate process with a JetStream file store, is killed
// with SIGKILL during concurrent uploads and started again on the same
// port and store: the ledger reconnects by itself and nothing it
// acknowledged is lost, duplicated or reordered.
func TestNATSServerKilledDuringUploads(t *testing.T) {
	b := binaries(t)
	n := proctest.StartNATS(t, b["nats-server"], natsbus.DefaultStream)
	n.CreateStream(t, 1)
	super := pgtest.NewDatabase(t)
	l := startLedger(t, "ledger", map[string]string{"NATS_URL": n.URL(), "NATS_NKEY": n.LedgerSeedFile,
		"DATABASE_URL": ledgerAppDSN(t, super)})
	began := time.Now()
	ld := startLoad(t, l, orgNames("kill", 6), 4)
	for range natsKills {
		ld.waitAcks(acksPerStep, stepTimeout, l.p)
		n.Kill()
		// Uploads meet a dead server for a moment.
		time.Sleep(time.Duration(200+rand.IntN(800)) * time.Millisecond)
		n.Start(t)
	}
	// The ledger reconnected by itself: uploads are acknowledged again.
	ld.waitAcks(acksPerStep, stepTimeout, l.p)
	ld.stopLoad()
	acks, statuses := ld.results()

	bus := openReader(t, n.URL(), n.ReaderSeedFile)
	checkEverything(t, bus, pgtest.NewPool(t, super), acks, l.p)
	if got := logLines(l.p.Output(), "nats reconnected"); got < natsKills {
		t.Errorf("the ledger logged %d reconnections for %d kills", got, natsKills)
	}
	report(t, began, acks, statuses, "nats-server killed "+itoa(natsKills)+" times")
}
