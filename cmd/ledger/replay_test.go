package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/ledger"
	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/postgres"
	"github.com/licenseledger/ledger/internal/testenv/natstest"
	"github.com/licenseledger/ledger/internal/testenv/pgtest"
	"github.com/licenseledger/ledger/license"
)

// replayEnv is an install with PostgreSQL: a stream with a few events,
// projected by a running projector into a migrated database.
type replayEnv struct {
	srv        *natstest.Server
	bus        *natsbus.Bus
	svc        *ledger.Service
	dsn        string
	pool       *pgxpool.Pool
	ledgerSeed string
	readerSeed string
	ring       string
	projector  *postgres.Projector
}

func newReplayEnv(t *testing.T) *replayEnv {
	t.Helper()
	ctx := context.Background()
	e := &replayEnv{srv: natstest.Start(t)}
	e.srv.CreateStream(t)
	var err error
	if e.bus, _, err = natsbus.Open(ctx, e.srv.Connect(t, natsauth.RoleLedger), "LICENSES", 1, false); err != nil {
		t.Fatal(err)
	}
	e.ring, _ = vendorKey("k1")
	keys, err := license.NewKeys(license.RingConfig{Env: e.ring, NoBuiltin: true})
	if err != nil {
		t.Fatal(err)
	}
	e.svc = ledger.New(ledger.Config{Store: e.bus, Keys: keys, DefaultGraceDays: 7, Now: time.Now})
	if err := e.svc.Start(ctx, events.LedgerStarted{}); err != nil {
		t.Fatal(err)
	}
	op := events.Actor{Kind: events.ActorOperator, ID: "op"}
	for _, org := range []string{"acme", "globex", "initech"} {
		key := signed(t, "k1", func(p map[string]any) {
			p["org_slug"], p["customer"], p["expires"] = org, "Customer "+org, future(90*24*time.Hour)
			p["license_id"] = "0193a5b0-7e1a-7c3d-8f00-0000000000" + map[string]string{"acme": "a1", "globex": "b1", "initech": "c1"}[org]
		})
		if _, err := e.svc.Upload(ctx, ledger.Upload{Org: org, Body: []byte(key), Actor: op, Source: events.SourceCLI}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.svc.Invalidate(ctx, "globex", op, "0193a5b0-7e1a-7c3d-8f00-0000000000b1", "chargeback"); err != nil {
		t.Fatal(err)
	}
	e.dsn, e.pool, e.projector = startProjector(t, e.srv, keys, e.svc.InstallID)
	e.waitProjected(t)
	dir := t.TempDir()
	e.ledgerSeed, e.readerSeed = filepath.Join(dir, "ledger.nk"), filepath.Join(dir, "reader.nk")
	os.WriteFile(e.ledgerSeed, e.srv.LedgerSeed, 0o600)
	os.WriteFile(e.readerSeed, e.srv.ReaderSeed, 0o600)
	return e
}

// startProjector migrates a new database and runs a projector from srv's
// stream into it until the test ends.
func startProjector(t *testing.T, srv *natstest.Server, keys *license.Keys, installID func() string) (string, *pgxpool.Pool, *postgres.Projector) {
	t.Helper()
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	if err := postgres.Migrate(ctx, dsn, "up", postgres.Roles{}, io.Discard); err != nil {
		t.Fatal(err)
	}
	pool := pgtest.NewPool(t, dsn)
	reader, _, err := natsbus.Open(ctx, srv.Connect(t, natsauth.RoleReader), "LICENSES", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	p := postgres.NewProjector(postgres.ProjectorConfig{Pool: pool, Source: reader, Keys: keys, InstallID: installID})
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(pctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return dsn, pool, p
}

func (e *replayEnv) waitProjected(t *testing.T) { waitProjected(t, e.bus, e.projector) }

// waitProjected waits until p has applied the stream up to its head.
func waitProjected(t *testing.T, bus *natsbus.Bus, p *postgres.Projector) {
	t.Helper()
	_, head, _ := bus.Stream(context.Background())
	deadline := time.Now().Add(20 * time.Second)
	for p.Applied() < head {
		if time.Now().After(deadline) {
			t.Fatalf("projector at %d of %d", p.Applied(), head)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// replay runs ledger replay against e with the ledger's credentials.
func (e *replayEnv) replay(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	base := []string{"replay", "--database-url", e.dsn, "--nats-url", e.srv.URL(), "--nats-nkey", e.ledgerSeed,
		"--public-keys", e.ring, "--progress", "log"}
	return cliRun(t, "", append(base, args...)...)
}

func (e *replayEnv) sql(t *testing.T, sql string, args ...any) {
	t.Helper()
	if _, err := e.pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func TestReplayCommand(t *testing.T) {
	e := newReplayEnv(t)
	code, out, errOut := e.replay(t, "--verify")
	if code != 0 || !strings.HasPrefix(out, "no differences: org_licenses 4 rows, revoked_licenses 1 rows") {
		t.Fatalf("verify an intact install: %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, `msg="shadow built"`) || !strings.Contains(errOut, "events_per_s=") {
		t.Fatalf("no build log line: %s", errOut)
	}

	// A tampered row: exit 1 with the difference; --swap repairs it.
	e.sql(t, `UPDATE org_licenses SET tier = 'enterprise' WHERE org_slug = 'acme'`)
	code, out, _ = e.replay(t, "--verify")
	if code != 1 || !strings.Contains(out, `org_licenses acme: tier: live "enterprise", replay "professional"`) ||
		!strings.Contains(out, "1 differences between the live tables") {
		t.Fatalf("verify a tampered row: %d\n%s", code, out)
	}
	code, out, errOut = e.replay(t, "--swap")
	if code != 0 || !strings.Contains(out, "org_licenses: 1 rows written, 0 deleted") || !strings.Contains(out, "license_audit: 0 rows appended") {
		t.Fatalf("swap: %d\n%s\n%s", code, out, errOut)
	}
	if code, out, _ := e.replay(t, "--verify"); code != 0 {
		t.Fatalf("verify after the swap: %d\n%s", code, out)
	}

	// --from-seq: the live rows before it are trusted (chain verified).
	if code, out, errOut := e.replay(t, "--verify", "--from-seq", "4"); code != 0 {
		t.Fatalf("--from-seq 4: %d\n%s\n%s", code, out, errOut)
	}

	// A forged audit row: reported, a swap refused, then accepted.
	e.sql(t, "ALTER TABLE license_audit DISABLE TRIGGER USER")
	e.sql(t, `UPDATE license_audit SET actor_id = 'someone else' WHERE seq = 3`)
	e.sql(t, "ALTER TABLE license_audit ENABLE ALWAYS TRIGGER license_audit_no_update_delete")
	e.sql(t, "ALTER TABLE license_audit ENABLE ALWAYS TRIGGER license_audit_no_truncate")
	code, out, _ = e.replay(t, "--verify")
	if code != 1 || !strings.Contains(out, "license_audit seq 3: actor_id differ") || !strings.Contains(out, "license_audit seq 3: live chain does not verify: mismatch at seq 3 (actor_id)") {
		t.Fatalf("verify a forged audit row: %d\n%s", code, out)
	}
	// Before --from-seq the chain holds (envelope_raw is intact); the
	// column derived from it still differs from its replay.
	if code, out, _ := e.replay(t, "--verify", "--from-seq", "4"); code != 1 || !strings.Contains(out, "license_audit seq 3: actor_id differ") {
		t.Fatalf("--from-seq over a forged derived column: %d %s", code, out)
	}
	code, out, errOut = e.replay(t, "--swap")
	if code != 1 || !strings.Contains(errOut, "diverges from the stream at seq 3") || !strings.Contains(errOut, "--accept-divergence") {
		t.Fatalf("a divergent swap: %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = e.replay(t, "--swap", "--accept-divergence")
	if code != 0 || !strings.Contains(out, "license_audit: diverged at seq 3; the live table (") {
		t.Fatalf("an accepted divergent swap: %d\n%s\n%s", code, out, errOut)
	}
	// The acceptance is on the stream, and, once projected, in the audit.
	m, err := e.bus.Newest(context.Background())
	if err != nil || m.Subject != "licenses.audit._instance" || m.Type() != TypeAuditReplaced ||
		!strings.Contains(string(m.Raw), `"first_divergent_seq":3`) || !strings.Contains(string(m.Raw), `"table":"license_audit_replaced_`) {
		t.Fatalf("the newest event: %v %+v", err, m)
	}
	e.waitProjected(t)
	if code, out, _ := e.replay(t, "--verify"); code != 0 {
		t.Fatalf("verify after the accepted swap: %d\n%s", code, out)
	}
	var replaced int
	e.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_tables WHERE tablename LIKE 'license\_audit\_replaced\_%'`).Scan(&replaced)
	if replaced != 1 {
		t.Fatalf("%d replaced tables", replaced)
	}

	// With reader credentials the acceptance cannot be recorded (the
	// server refuses the publish): refused at once, a settings error.
	e.sql(t, "ALTER TABLE license_audit DISABLE TRIGGER USER")
	e.sql(t, `UPDATE license_audit SET actor_id = 'again' WHERE seq = 2`)
	e.sql(t, "ALTER TABLE license_audit ENABLE ALWAYS TRIGGER license_audit_no_update_delete")
	e.sql(t, "ALTER TABLE license_audit ENABLE ALWAYS TRIGGER license_audit_no_truncate")
	code, _, errOut = cliRun(t, "", "replay", "--swap", "--accept-divergence", "--database-url", e.dsn, "--nats-url", e.srv.URL(),
		"--nats-nkey", e.readerSeed, "--public-keys", e.ring, "--announce-timeout", "3s")
	if code != 2 || !strings.Contains(errOut, "nothing was changed; this needs credentials that may publish") {
		t.Fatalf("accepting with reader credentials: %d %s", code, errOut)
	}
}

func TestReplayCommandUsageAndUnavailable(t *testing.T) {
	e := newReplayEnv(t)
	for _, args := range [][]string{
		{"replay", "--database-url", e.dsn},
		{"replay", "--verify", "--swap", "--database-url", e.dsn},
		{"replay", "--swap", "--from-seq", "3", "--database-url", e.dsn},
		{"replay", "--verify", "--accept-divergence", "--database-url", e.dsn},
		{"replay", "--verify", "--nats-url", e.srv.URL()},
		{"replay", "--verify", "--from-seq", "x", "--database-url", e.dsn},
	} {
		t.Setenv("LEDGER_MIGRATE_DATABASE_URL", "")
		if code, _, errOut := cliRun(t, "", args...); code != 2 || errOut == "" {
			t.Errorf("%v: exit %d %q", args, code, errOut)
		}
	}
	noPG := "postgres://nobody@" + strings.TrimPrefix(closedPort(t), "http://") + "/x?connect_timeout=2"
	if code, _, errOut := cliRun(t, "", "replay", "--verify", "--database-url", noPG, "--nats-url", e.srv.URL(),
		"--nats-nkey", e.ledgerSeed, "--public-keys", e.ring); code != 4 {
		t.Errorf("PostgreSQL unreachable: exit %d %s", code, errOut)
	}
	if code, _, errOut := cliRun(t, "", "replay", "--verify", "--database-url", e.dsn, "--nats-url",
		"nats://"+strings.TrimPrefix(closedPort(t), "http://"), "--nats-nkey", e.ledgerSeed, "--public-keys", e.ring); code != 4 {
		t.Errorf("the stream unreachable: exit %d %s", code, errOut)
	}
	if code, out, _ := cliRun(t, "", "replay", "--help"); code != 0 || !strings.Contains(out, "--from-seq N (with --verify)") ||
		!strings.Contains(out, "LEDGER_MIGRATE_DATABASE_URL") {
		t.Errorf("--help: %d\n%s", code, out)
	}
}
