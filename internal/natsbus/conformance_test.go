package natsbus_test

import (
	"testing"

	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/streamtest"
	"github.com/licenseledger/ledger/internal/testenv/natstest"
)

// The bus passes the stream's conformance suite on an embedded JetStream
// server, each subtest on a server and stream of its own, reached as the
// ledger.
func TestConformanceR1(t *testing.T) {
	streamtest.Run(t, func(t *testing.T) streamtest.Store {
		srv := natstest.Start(t)
		srv.CreateStream(t)
		return openBus(t, srv.Connect(t, natsauth.RoleLedger))
	})
}

// And on a three-node cluster's replicated stream: the suite holds what
// every replica count does.
func TestConformanceR3(t *testing.T) {
	streamtest.Run(t, func(t *testing.T) streamtest.Store {
		c := natstest.StartCluster(t, 3)
		c.CreateStream(t, 3)
		return openBus(t, c.Connect(t, natsauth.RoleLedger))
	})
}
