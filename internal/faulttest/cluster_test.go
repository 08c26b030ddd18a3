package faulttest

import (
	"fmt"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/testenv/natstest"
	"github.com/licenseledger/ledger/internal/testenv/pgtest"
)

// A 3-node JetStream cluster, stream replicas 3: the stream leader is shut
// down during uploads, and brought back. The ledger (started the moment the
// stream was created) rides through the elections by itself;
// nothing acknowledged is lost.
func TestStreamLeaderStoppedDuringUploads(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	c.CreateStream(t, 3)
	super := pgtest.NewDatabase(t)
	l := startLedger(t, "ledger", map[string]string{"NATS_URL": c.URLs(), "NATS_NKEY": seedFile(t, c.LedgerSeed),
		"LICENSE_STREAM_REPLICAS": "3", "DATABASE_URL": ledgerAppDSN(t, super)})
	began := time.Now()
	ld := startLoad(t, l, orgNames("r3", 6), 4)
	stopped := map[string]bool{}
	for range leaderStops {
		ld.waitAcks(acksPerStep, stepTimeout, l.p)
		leader := c.WaitStreamLeader(t, natsbus.DefaultStream)
		i := c.IndexOf(leader)
		stopped[leader.Name()] = true
		c.StopServer(i)
		// The two others elect a leader; uploads are acknowledged again.
		ld.waitAcks(acksPerStep, stepTimeout, l.p)
		c.RestartServer(t, i)
	}
	ld.waitAcks(acksPerStep, stepTimeout, l.p)
	ld.stopLoad()
	acks, statuses := ld.results()

	bus := openReader(t, c.URLs(), seedFile(t, c.ReaderSeed))
	checkEverything(t, bus, pgtest.NewPool(t, super), acks, l.p)
	report(t, began, acks, statuses, fmt.Sprintf("stream leader stopped %d times (%d distinct nodes)", leaderStops, len(stopped)))
}
