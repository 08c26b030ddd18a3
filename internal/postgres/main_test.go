package postgres_test

import (
	"testing"

	"github.com/licenseledger/ledger/internal/testenv/pgtest"
)

// TestMain drops the package's test databases, and stops a throwaway
// PostgreSQL cluster if one was started, when the tests finish.
func TestMain(m *testing.M) { pgtest.Main(m) }
