package faulttest

import (
	"os"
	"testing"

	"github.com/licenseledger/ledger/internal/testenv/pgtest"
	"github.com/licenseledger/ledger/internal/testenv/proctest"
)

// bins are nats-server, ledger and gatekeeper, built once for all tests.
var bins proctest.Cache

func TestMain(m *testing.M) {
	code := pgtest.Run(m)
	bins.Close()
	os.Exit(code)
}

func binaries(t testing.TB) proctest.Binaries {
	t.Helper()
	return bins.Get(t, proctest.NATSServer, proctest.Ledger, proctest.Gatekeeper)
}
