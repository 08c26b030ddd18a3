package clustertest

import (
	"testing"

	"github.com/licenseledger/ledger/internal/testenv/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }
