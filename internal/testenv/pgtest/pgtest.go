// Package pgtest gives tests their own PostgreSQL databases.
//
// The server is found once per test binary, in this order:
//
//  1. LEDGER_TEST_DATABASE_URL, which must work when set;
//  2. a server on 127.0.0.1:5432 accepting user postgres, or the current OS
//     user, without a password;
//  3. a throwaway cluster created with the installed initdb and pg_ctl.
//
// Each database is named ledger_test_<package>_<random> and dropped when it
// is no longer needed. Packages using pgtest must declare
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// so that the package database is dropped and a throwaway cluster stopped
// when the tests finish. Without it the package database is left behind on
// an external server; a throwaway cluster is still removed when the test
// process exits, by a watchdog process, but only after the fact.
package pgtest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// EnvDatabaseURL names the variable that points tests at a specific server.
// Its user needs the CREATEDB privilege.
const EnvDatabaseURL = "LEDGER_TEST_DATABASE_URL"

// adminTimeout bounds CREATE/DROP DATABASE and server discovery steps.
const adminTimeout = 30 * time.Second

// state is shared by all tests of the binary.
var state struct {
	mu         sync.Mutex
	discovered bool
	srv        *server
	err        error
	shared     *database
	mainUsed   bool
	warned     bool
}

// DSN returns the connection string of the package's database: created on
// first use and shared by every test of the binary, so tests that need
// isolation should use NewDatabase or their own schema or tables.
func DSN(t testing.TB) string {
	t.Helper()
	srv := serverFor(t)
	state.mu.Lock()
	defer state.mu.Unlock()
	warnWithoutMain(t)
	if state.shared == nil {
		db, err := srv.createDatabase()
		if err != nil {
			t.Fatal(err)
		}
		state.shared = db
	}
	return state.shared.dsn
}

// warnWithoutMain reports once that the shared database will leak. Call
// with state.mu held.
func warnWithoutMain(t testing.TB) {
	if state.mainUsed || state.warned {
		return
	}
	state.warned = true
	t.Logf("pgtest: TestMain does not call pgtest.Main, so the package database outlives the tests")
}

// NewDatabase creates a database for the calling test alone and drops it
// when the test ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	srv := serverFor(t)
	db, err := srv.createDatabase()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.dropDatabase(db.name); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return db.dsn
}

// NewPool opens a pool on dsn, closed when the test ends.
func NewPool(t testing.TB, dsn string) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatalf("pgtest: open pool: %v", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		t.Fatalf("pgtest: ping: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// Main runs the tests of a package, then drops the package database and
// stops the throwaway cluster if one was started. Use it from TestMain.
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run is Main without the exit: it returns the exit code, for a TestMain
// that has more to clean up.
func Run(m *testing.M) int {
	state.mu.Lock()
	state.mainUsed = true
	state.mu.Unlock()
	code := m.Run()
	if err := shutdown(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: cleanup: %v\n", err)
	}
	return code
}

func shutdown() error {
	state.mu.Lock()
	defer state.mu.Unlock()
	srv, shared := state.srv, state.shared
	state.shared = nil
	switch {
	case srv == nil:
		return nil
	case srv.cluster != nil:
		// Stopping the cluster deletes its databases with it.
		return srv.cluster.stop()
	case shared != nil:
		return srv.dropDatabase(shared.name)
	}
	return nil
}

// serverFor discovers the server once per binary; a failure is remembered so
// every test reports the same explanation quickly.
func serverFor(t testing.TB) *server {
	t.Helper()
	state.mu.Lock()
	defer state.mu.Unlock()
	if !state.discovered {
		state.discovered = true
		state.srv, state.err = discover(os.Getenv(EnvDatabaseURL))
	}
	if state.err != nil {
		t.Fatal(state.err)
	}
	return state.srv
}
