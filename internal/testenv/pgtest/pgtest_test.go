package pgtest

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

func TestMain(m *testing.M) { Main(m) }

func currentDatabase(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	var name string
	if err := pool.QueryRow(t.Context(), "SELECT current_database()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestDSNWorks(t *testing.T) {
	dsn := DSN(t)
	if DSN(t) != dsn {
		t.Fatal("DSN changed between calls")
	}
	pool := NewPool(t, dsn)
	ctx := t.Context()
	var one int
	if err := pool.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 = %d, %v", one, err)
	}
	if _, err := pool.Exec(ctx, "CREATE TABLE dsn_works (id int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "INSERT INTO dsn_works VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if name := currentDatabase(t, pool); !strings.HasPrefix(name, "ledger_test_pgtest_") {
		t.Fatalf("database %q does not follow ledger_test_<pkg>_<random>", name)
	}
}

func TestNewDatabaseIsolatedAndDropped(t *testing.T) {
	var names []string
	var leftOpen *pgx.Conn
	t.Run("isolated", func(t *testing.T) {
		dsnA := NewDatabase(t)
		a, b := NewPool(t, dsnA), NewPool(t, NewDatabase(t))
		names = []string{currentDatabase(t, a), currentDatabase(t, b)}
		if names[0] == names[1] {
			t.Fatalf("both databases are %s", names[0])
		}
		if _, err := a.Exec(t.Context(), "CREATE TABLE only_in_a (id int)"); err != nil {
			t.Fatal(err)
		}
		var exists bool
		err := b.QueryRow(t.Context(), "SELECT to_regclass('only_in_a') IS NOT NULL").Scan(&exists)
		if err != nil || exists {
			t.Fatalf("table of database A visible in B: %v %v", exists, err)
		}
		// A session that outlives the test must not block the drop.
		if leftOpen, err = pgx.Connect(t.Context(), dsnA); err != nil {
			t.Fatal(err)
		}
	})
	defer leftOpen.Close(context.Background())
	admin := NewPool(t, DSN(t))
	for _, name := range names {
		var n int
		err := admin.QueryRow(t.Context(), "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n)
		if err != nil || n != 0 {
			t.Errorf("database %s still exists (%d, %v)", name, n, err)
		}
	}
}

func TestStartThrowaway(t *testing.T) {
	requireServerBinaries(t)
	var dsn string
	t.Run("running", func(t *testing.T) {
		dsn = StartThrowaway(t)
		if strings.Contains(dsn, ":5432/") {
			t.Fatalf("throwaway cluster on the default port: %s", dsn)
		}
		pool := NewPool(t, dsn)
		if _, err := pool.Exec(t.Context(), "CREATE TABLE t (id int)"); err != nil {
			t.Fatal(err)
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), localPingTimeout)
	defer cancel()
	if conn, err := pgx.Connect(ctx, dsn); err == nil {
		conn.Close(ctx)
		t.Fatal("throwaway cluster still accepts connections after its test ended")
	}
}

// A throwaway cluster stopped and started again keeps its port and data;
// while stopped it refuses connections.
func TestThrowawayStopStart(t *testing.T) {
	requireServerBinaries(t)
	tw := StartThrowawayCluster(t)
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, tw.DSN())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (id int); INSERT INTO kept VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	tw.Stop(t)
	if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("a session survived the stop")
	}
	conn.Close(ctx)
	pctx, cancel := context.WithTimeout(ctx, localPingTimeout)
	if c, err := pgx.Connect(pctx, tw.DSN()); err == nil {
		c.Close(pctx)
		t.Fatal("a stopped cluster accepts connections")
	}
	cancel()
	tw.Start(t)
	conn, err = pgx.Connect(ctx, tw.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var id int
	if err := conn.QueryRow(ctx, "SELECT id FROM kept").Scan(&id); err != nil || id != 7 {
		t.Fatalf("after restart: %d %v", id, err)
	}
	if _, err := os.Stat(tw.BinDir() + "/pg_dump"); err != nil {
		t.Fatalf("pg_dump beside the server: %v", err)
	}
}

func requireServerBinaries(t *testing.T) {
	t.Helper()
	if _, err := ServerBinDir(); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("no PostgreSQL server binaries: %v", err)
		}
		t.Fatalf("CI is set but the PostgreSQL server binaries are missing: %v", err)
	}
}

// closedAddr returns a loopback address nobody listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestDiscoverFallsBackToThrowaway(t *testing.T) {
	requireServerBinaries(t)
	saved := localServer
	localServer = closedAddr(t)
	defer func() { localServer = saved }()

	srv, err := discover("")
	if err != nil {
		t.Fatal(err)
	}
	if srv.cluster == nil {
		t.Fatalf("discovery used %s, not a throwaway cluster", srv.adminDSN)
	}
	defer srv.cluster.stop()
	db, err := srv.createDatabase()
	if err != nil {
		t.Fatal(err)
	}
	if currentDatabase(t, NewPool(t, db.dsn)) != db.name {
		t.Fatal("connected to the wrong database")
	}
}

func TestEnvURLMustWork(t *testing.T) {
	// The variable wins even when it is broken: there is no fallback.
	addr := closedAddr(t)
	_, err := discover("postgres://postgres@" + addr + "/postgres?sslmode=disable&connect_timeout=1")
	if err == nil || !strings.Contains(err.Error(), EnvDatabaseURL) {
		t.Fatalf("err = %v, want an error naming %s", err, EnvDatabaseURL)
	}
}

func TestNoServerErrorExplains(t *testing.T) {
	err := noServerError([]string{"127.0.0.1:5432 as user postgres: refused", "throwaway cluster: " + ErrNoServerBinaries.Error()})
	for _, want := range []string{"apt-get install postgresql", EnvDatabaseURL, "5432", "initdb"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %q:\n%v", want, err)
		}
	}
}

func TestDatabaseName(t *testing.T) {
	cases := map[string]string{
		"pgtest":                 "ledger_test_pgtest_",
		"Ledger-Store.v2":        "ledger_test_ledger_store_v2_",
		"":                       "ledger_test_pkg_",
		strings.Repeat("x", 100): "ledger_test_xxxx",
	}
	for pkg, prefix := range cases {
		name, err := databaseName(pkg)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(name, prefix) || len(name) > maxIdentifier || unsafeChars.MatchString(name) {
			t.Errorf("databaseName(%q) = %q", pkg, name)
		}
	}
	a, _ := databaseName("p")
	b, _ := databaseName("p")
	if a == b {
		t.Error("names are not random")
	}
}
