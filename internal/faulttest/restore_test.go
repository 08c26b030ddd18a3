package faulttest

import (
	"context"
	"fmt"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/licenseledger/ledger/internal/testenv/natstest"
	"github.com/licenseledger/ledger/internal/testenv/pgtest"
)

// PostgreSQL restored from an older backup while the ledger runs: a
// pg_dump at T1, more uploads, then the database dropped and replaced by
// the dump. The projector resumes from the restored checkpoint and
// projects again what the dump did not have: the chain continues, audit
// verify passes, and the rows equal the fold of the stream.
func TestPostgresRestoredFromOlderBackup(t *testing.T) {
	bin, err := pgtest.ServerBinDir()
	if err != nil {
		t.Skip(err)
	}
	srv := natstest.Start(t, natstest.WithSyncAlways())
	publishBulk(t, srv, bulkEvents)
	super := pgtest.NewDatabase(t)
	l := startLedger(t, "ledger", map[string]string{"NATS_URL": srv.URL(), "NATS_NKEY": seedFile(t, srv.LedgerSeed),
		"DATABASE_URL": ledgerAppDSN(t, super)})
	pool := pgtest.NewPool(t, super)
	bus := openReader(t, srv.URL(), seedFile(t, srv.ReaderSeed))
	began := time.Now()
	ld := startLoad(t, l, orgNames("restore", 6), 3)
	var rewound []string
	for i := range restores {
		ld.waitAcks(acksPerStep, stepTimeout, l.p)
		_, head, _ := bus.Stream(context.Background())
		waitProjected(t, pool, head, l.p)
		dump := filepath.Join(t.TempDir(), fmt.Sprintf("ledger-%d.dump", i))
		run(t, filepath.Join(bin, "pg_dump"), "--format=custom", "--file="+dump, "--dbname="+super)
		ld.waitAcks(acksPerStep, stepTimeout, l.p)
		_, head, _ = bus.Stream(context.Background())
		waitProjected(t, pool, head, l.p)
		before := count(t, pool, `SELECT last_seq FROM projection_checkpoints WHERE name = 'org_licenses'`)
		restoreDatabase(t, bin, super, dump)
		pool.Reset() // its sessions were closed with the dropped database
		after := count(t, pool, `SELECT last_seq FROM projection_checkpoints WHERE name = 'org_licenses'`)
		if after >= before {
			// Not an older backup: the scenario would prove nothing.
			after2 := count(t, pool, `SELECT count(*) FROM license_audit`)
			t.Fatalf("the restored checkpoint %d is not older than %d (audit rows %d)", after, before, after2)
		}
		rewound = append(rewound, fmt.Sprintf("%d→%d", before, after))
	}
	ld.waitAcks(acksPerStep, stepTimeout, l.p)
	ld.stopLoad()
	acks, statuses := ld.results()
	checkEverything(t, bus, pool, acks, l.p)
	l.p.Stop() // nothing may write while the checks are shown to fail
	checksCatchDefects(t, bus, pool, acks)
	report(t, began, acks, statuses, fmt.Sprintf("%d bulk events; database restored from an older dump %d times (checkpoint %s)",
		bulkEvents, restores, strings.Join(rewound, ", ")))
}

// restoreDatabase replaces dsn's database by the dump, as an operator
// would: restore into a new database, drop the live one (closing its
// sessions), rename the new one. Clients never see a half-restored schema.
func restoreDatabase(t *testing.T, bin, dsn, dump string) {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	staging := name + "_restore"
	maint := *u
	maint.Path = "/postgres"
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, maint.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	sql := func(q string) {
		t.Helper()
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	sql("CREATE DATABASE " + pgx.Identifier{staging}.Sanitize())
	target := *u
	target.Path = "/" + staging
	run(t, filepath.Join(bin, "pg_restore"), "--exit-on-error", "--dbname="+target.String(), dump)
	sql("DROP DATABASE " + pgx.Identifier{name}.Sanitize() + " WITH (FORCE)")
	sql("ALTER DATABASE " + pgx.Identifier{staging}.Sanitize() + " RENAME TO " + pgx.Identifier{name}.Sanitize())
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", filepath.Base(name), args, err, out)
	}
}
