package clustertest

import (
	"os"
	"testing"

	"github.com/licenseledger/ledger/internal/testenv/pgtest"
)

func TestMain(m *testing.M) {
	code := pgtest.Run(m)
	bins.Close()
	os.Exit(code)
}
