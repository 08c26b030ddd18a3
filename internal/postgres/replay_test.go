package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/ledger"
	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/postgres"
	"github.com/licenseledger/ledger/internal/projection"
	"github.com/licenseledger/ledger/internal/testenv"
	"github.com/licenseledger/ledger/internal/testenv/licensetest"
	"github.com/licenseledger/ledger/internal/testenv/natstest"
	"github.com/licenseledger/ledger/internal/testenv/pgtest"
	"github.com/licenseledger/ledger/license"
)

// projected is the scenario on a stream, projected into a fresh database
// by a running projector.
func projected(t *testing.T) (*env, *pgxpool.Pool, string) {
	t.Helper()
	e := newEnv(t)
	e.scenario(t)
	pool, dsn := migrated(t)
	startProjector(t, e, pool, nil)
	return e, pool, dsn
}

// openReplay opens a replayer on the owner's dsn over e's stream.
func openReplay(t *testing.T, e *env, dsn string, mod ...func(*postgres.ReplayConfig)) *postgres.Replayer {
	t.Helper()
	cfg := postgres.ReplayConfig{DSN: dsn, Source: e.readerSource(t), Keys: keys(t), InstallID: e.svc.InstallID(), BatchSize: 4}
	for _, m := range mod {
		m(&cfg)
	}
	r, err := postgres.OpenReplay(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// verify rebuilds the shadow and compares it with the live tables.
func verify(t *testing.T, r *postgres.Replayer, fromSeq uint64) postgres.DiffResult {
	t.Helper()
	ctx := context.Background()
	if _, err := r.Build(ctx, postgres.Rebuild, fromSeq); err != nil {
		t.Fatal(err)
	}
	d, err := r.Diff(ctx, fromSeq)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func diffText(d postgres.DiffResult) string {
	var b strings.Builder
	d.Print(&b)
	return b.String()
}

func mustExec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// rewriteAudit runs sql with the audit's append-only triggers off, as only the
// owner could.
func rewriteAudit(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	rewriteAuditIn(t, pool, "license_audit", sql, args...)
}

// rewriteAuditIn is rewriteAudit on table, a copy of license_audit with
// its triggers (the shadow's).
func rewriteAuditIn(t *testing.T, pool *pgxpool.Pool, table, sql string, args ...any) {
	t.Helper()
	mustExec(t, pool, "ALTER TABLE "+table+" DISABLE TRIGGER USER")
	mustExec(t, pool, sql, args...)
	mustExec(t, pool, "ALTER TABLE "+table+" ENABLE ALWAYS TRIGGER license_audit_no_update_delete")
	mustExec(t, pool, "ALTER TABLE "+table+" ENABLE ALWAYS TRIGGER license_audit_no_truncate")
}

func wantLines(t *testing.T, d postgres.DiffResult, lines ...string) {
	t.Helper()
	text := diffText(d)
	for _, l := range lines {
		if !strings.Contains(text, l) {
			t.Errorf("no %q in the differences:\n%s", l, text)
		}
	}
}

// A replay of an intact install finds nothing; a tampered row, a missing
// revocation, a missing audit row and a forged one are each reported.
func TestReplayVerifyFindsDifferences(t *testing.T) {
	e, pool, dsn := projected(t)
	r := openReplay(t, e, dsn)
	if d := verify(t, r, 0); d.Total != 0 || d.OrgRows != 5 || d.AuditRows == 0 || !d.Chain.OK {
		t.Fatalf("an intact install:\n%s", diffText(d))
	}
	_, head, _ := e.bus.Stream(context.Background())

	mustExec(t, pool, `UPDATE org_licenses SET customer = 'Someone Else', users_limit = 1000 WHERE org_slug = 'acme'`)
	mustExec(t, pool, `DELETE FROM revoked_licenses WHERE org_slug = 'globex'`)
	d := verify(t, r, 0)
	wantLines(t, d, `org_licenses acme: customer: live "Someone Else", replay "Customer acme"`,
		`org_licenses acme: users_limit: live 1000, replay 25`,
		`revoked_licenses globex 0193a5b0-7e1a-7c3d-8f00-00000000b001: missing in live`)
	if d.Total != 3 || !d.Chain.OK {
		t.Fatalf("%d differences:\n%s", d.Total, diffText(d))
	}

	rewriteAudit(t, pool, `DELETE FROM license_audit WHERE seq = 3`)
	rewriteAudit(t, pool, `INSERT INTO license_audit (seq, subject, type, envelope_raw, prev_hash, hash)
		SELECT seq + 1, subject, type, envelope_raw, hash, hash FROM license_audit WHERE seq = $1`, int64(head))
	d = verify(t, r, 0)
	wantLines(t, d, "license_audit seq 3: missing in live", fmt.Sprintf("license_audit seq %d: extra in live", head+1),
		"license_audit seq 3: live chain does not verify")
	if d.Chain.OK {
		t.Fatalf("the live chain verified without seq 3:\n%s", diffText(d))
	}
}

// startProjector runs a live projector until the test ends, logging to
// log (nil: nowhere), and returns once it has committed the stream head.
func startProjector(t *testing.T, e *env, pool *pgxpool.Pool, log *testenv.Buffer) *postgres.Projector {
	t.Helper()
	cfg := postgres.ProjectorConfig{Pool: pool, Source: e.readerSource(t), Keys: keys(t), InstallID: e.svc.InstallID, BatchSize: 4}
	if log != nil {
		cfg.Logger = slog.New(slog.NewTextHandler(log, nil))
	}
	p := postgres.NewProjector(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitApplied(t, e, p)
	return p
}

// waitApplied waits until p has committed the stream head.
func waitApplied(t *testing.T, e *env, p *postgres.Projector) {
	t.Helper()
	_, head, _ := e.bus.Stream(context.Background())
	deadline := time.Now().Add(20 * time.Second)
	for p.Applied() < head {
		if time.Now().After(deadline) {
			t.Fatalf("projector at %d of %d (stopped: %v)", p.Applied(), head, p.Stopped())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// has reports whether role holds privilege on table.
func has(t *testing.T, pool *pgxpool.Pool, role, table, privilege string) bool {
	t.Helper()
	var ok bool
	if err := pool.QueryRow(context.Background(), `SELECT has_table_privilege($1, $2, $3)`, role, table, privilege).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// checkGrantsAndTriggers checks the roles' rights and the audit's
// append-only triggers on the live tables.
func checkGrantsAndTriggers(t *testing.T, pool *pgxpool.Pool, dsn string) {
	t.Helper()
	for _, c := range []struct {
		role, table, privilege string
		want                   bool
	}{
		{"ledger_app", "license_audit", "SELECT", true}, {"ledger_app", "license_audit", "INSERT", true},
		{"ledger_app", "license_audit", "UPDATE", false}, {"ledger_app", "license_audit", "DELETE", false},
		{"ledger_app", "license_audit", "TRUNCATE", false},
		{"ledger_app", "org_licenses", "UPDATE", true}, {"ledger_app", "revoked_licenses", "INSERT", true},
		{"ledger_app", "projection_checkpoints", "UPDATE", true},
		{"ledger_auditor", "license_audit", "SELECT", true}, {"ledger_auditor", "license_audit", "INSERT", false},
		{"ledger_auditor", "org_licenses", "SELECT", true}, {"ledger_auditor", "org_licenses", "UPDATE", false},
	} {
		if got := has(t, pool, c.role, c.table, c.privilege); got != c.want {
			t.Errorf("%s %s on %s: %v, want %v", c.role, c.privilege, c.table, got, c.want)
		}
	}
	// A login user granted the app role passes the serving ledger's check.
	app, err := pgxpool.New(context.Background(), pgtest.LoginRole(t, dsn, "ledger_app"))
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	if err := postgres.CheckPrivileges(context.Background(), app); err != nil {
		t.Errorf("the app role after the swap: %v", err)
	}
	var n int
	pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_trigger WHERE tgrelid = 'license_audit'::regclass
		AND NOT tgisinternal AND tgenabled = 'A'`).Scan(&n)
	if n != 2 {
		t.Errorf("%d append-only triggers enabled always on license_audit, want 2", n)
	}
	if _, err := pool.Exec(context.Background(), `UPDATE license_audit SET type = 'x' WHERE seq = 1`); err == nil {
		t.Error("license_audit rows could be updated after the swap")
	}
}

// --swap repairs the read model while a projector runs: grants and
// triggers stay, the projector is fenced and resumes from the new
// checkpoint, missing audit rows are appended.
func TestReplaySwapRepairs(t *testing.T) {
	e := newEnv(t)
	e.scenario(t)
	pool, dsn := migrated(t)
	var log testenv.Buffer
	p := startProjector(t, e, pool, &log)
	r := openReplay(t, e, dsn)
	mustExec(t, pool, `UPDATE org_licenses SET customer = 'Someone Else' WHERE org_slug = 'acme'`)
	mustExec(t, pool, `DELETE FROM revoked_licenses WHERE org_slug = 'globex'`)
	mustExec(t, pool, `INSERT INTO org_licenses (org_slug, last_seq) VALUES ('forged', 1)`)
	res, err := r.Swap(context.Background(), postgres.SwapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.OrgRowsWritten != 1 || res.OrgRowsDeleted != 1 || res.RevokedWritten != 1 || res.AuditAppended != 0 ||
		res.Checkpoint != res.PreviousCheckpoint || res.Replaced != nil {
		t.Fatalf("swap: %+v", res)
	}
	if d := verify(t, r, 0); d.Total != 0 {
		t.Fatalf("after the swap:\n%s", diffText(d))
	}
	checkGrantsAndTriggers(t, pool, dsn)

	// The projector's next batch meets the new checkpoint: fenced, it
	// reloads and goes on.
	op := events.Actor{Kind: events.ActorOperator, ID: "op"}
	if _, err := e.svc.Invalidate(context.Background(), "acme", op, "0193a5b0-7e1a-7c3d-8f00-00000000a0fd", "after"); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, e, p)
	if !strings.Contains(log.String(), postgres.ErrFenced.Error()) {
		t.Fatalf("the projector was not fenced by the swap:\n%s", log.String())
	}
	if d := verify(t, r, 0); d.Total != 0 {
		t.Fatalf("after the projector resumed:\n%s", diffText(d))
	}

	// Live audit rows missing at the end (PostgreSQL restored from an
	// older backup, say) are appended by the swap.
	rewriteAudit(t, pool, `DELETE FROM license_audit WHERE seq > 10`)
	mustExec(t, pool, `UPDATE projection_checkpoints SET last_seq = 10`)
	_, head, _ := e.bus.Stream(context.Background())
	res, err = r.Swap(context.Background(), postgres.SwapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.AuditAppended != int64(head-10) || res.Checkpoint != head {
		t.Fatalf("swap after a truncated audit: %+v (head %d)", res, head)
	}
	if d := verify(t, r, 0); d.Total != 0 {
		t.Fatalf("after the second swap:\n%s", diffText(d))
	}
}

// announcer records replacements on the stream as ledger replay does.
func announcer(e *env) (func(context.Context, postgres.Replacement) (uint64, error), *atomic.Int32) {
	var calls atomic.Int32
	return func(ctx context.Context, rep postgres.Replacement) (uint64, error) {
		calls.Add(1)
		subject := events.AuditSubject(license.InstanceOrg)
		head, err := e.bus.Head(ctx, subject)
		if err != nil {
			return 0, err
		}
		env, err := events.New("ledger.audit_replaced", license.InstanceOrg, time.Now(), events.Actor{Kind: events.ActorOperator, ID: "ledger replay"}, head, rep)
		if err != nil {
			return 0, err
		}
		return e.bus.Append(ctx, subject, env, head)
	}, &calls
}

// A live audit that diverges from the stream is refused, then, accepted,
// kept aside under a new name while the stream's takes its place, with
// the acceptance on the stream.
func TestReplaySwapDivergentAudit(t *testing.T) {
	e := newEnv(t)
	e.scenario(t)
	pool, dsn := migrated(t)
	var log testenv.Buffer
	p := startProjector(t, e, pool, &log)
	r := openReplay(t, e, dsn)
	rewriteAudit(t, pool, `UPDATE license_audit SET envelope_raw = convert_to('{"forged":true}', 'UTF8') WHERE seq = 4`)
	var rows int64
	pool.QueryRow(context.Background(), `SELECT count(*) FROM license_audit`).Scan(&rows)
	announce, calls := announcer(e)
	_, err := r.Swap(context.Background(), postgres.SwapOptions{Announce: announce})
	if !errors.Is(err, postgres.ErrDivergent) || !strings.Contains(err.Error(), "seq 4") || calls.Load() != 0 {
		t.Fatalf("a divergent swap without acceptance: %v (%d announcements)", err, calls.Load())
	}
	var raw string
	pool.QueryRow(context.Background(), `SELECT convert_from(envelope_raw, 'UTF8') FROM license_audit WHERE seq = 4`).Scan(&raw)
	if raw != `{"forged":true}` {
		t.Fatalf("a refused swap changed the audit: %q", raw)
	}

	now := time.Unix(1_900_000_000, 0)
	res, err := r.Swap(context.Background(), postgres.SwapOptions{AcceptDivergence: true, Announce: announce,
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	want := postgres.Replacement{Table: "license_audit_replaced_1900000000", FirstDivergentSeq: 4, Rows: rows}
	if res.Replaced == nil || *res.Replaced != want || res.AnnouncedSeq == 0 {
		t.Fatalf("accepted swap: %+v %+v", res, res.Replaced)
	}
	var kept int64
	var keptRaw string
	pool.QueryRow(context.Background(), `SELECT count(*), max(convert_from(envelope_raw, 'UTF8')) FILTER (WHERE seq = 4)
		FROM license_audit_replaced_1900000000`).Scan(&kept, &keptRaw)
	if kept != rows || keptRaw != `{"forged":true}` {
		t.Fatalf("the kept table has %d rows (seq 4 %q), want %d", kept, keptRaw, rows)
	}
	if has(t, pool, "ledger_app", "license_audit_replaced_1900000000", "INSERT") {
		t.Error("the app role may still append to the kept table")
	}
	checkGrantsAndTriggers(t, pool, dsn)
	var idx []string
	prow, _ := pool.Query(context.Background(), `SELECT indexname FROM pg_indexes WHERE tablename = 'license_audit' ORDER BY 1`)
	for prow.Next() {
		var s string
		prow.Scan(&s)
		idx = append(idx, s)
	}
	if got := strings.Join(idx, ","); got != "license_audit_event_id_key,license_audit_occurred,license_audit_org_seq,license_audit_pkey,license_audit_type_seq" {
		t.Errorf("indexes of the new license_audit: %s", got)
	}
	// The projector, fenced, resumes and records the acceptance itself.
	waitApplied(t, e, p)
	var typ string
	pool.QueryRow(context.Background(), `SELECT type FROM license_audit WHERE seq = $1`, int64(res.AnnouncedSeq)).Scan(&typ)
	if typ != "ledger.audit_replaced" {
		t.Fatalf("seq %d in the live audit is %q", res.AnnouncedSeq, typ)
	}
	if d := verify(t, r, 0); d.Total != 0 {
		t.Fatalf("after the accepted swap:\n%s", diffText(d))
	}
}

// auditIndexes describes the indexes of schema's license_audit, without
// their names or schema, sorted: the primary key first.
func auditIndexes(t *testing.T, pool *pgxpool.Pool, schema string) []string {
	t.Helper()
	return tableIndexes(t, pool, schema+".license_audit")
}

// tableIndexes describes table's indexes as auditIndexes does.
func tableIndexes(t *testing.T, pool *pgxpool.Pool, table string) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT CASE WHEN i.indisprimary THEN 'primary' WHEN i.indisunique THEN 'unique' ELSE 'index' END
		|| ' ' || split_part(pg_get_indexdef(i.indexrelid), ' USING ', 2)
		FROM pg_index i WHERE i.indrelid = $1::regclass ORDER BY NOT i.indisprimary, 1`, table)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("indexes of %s: %v", table, err)
	}
	return out
}

// An interrupted build leaves a shadow the next one resumes.
func TestReplayInterruptedThenResumed(t *testing.T) {
	e, pool, dsn := projected(t)
	ctx, cancel := context.WithCancel(context.Background())
	r := openReplay(t, e, dsn, func(c *postgres.ReplayConfig) {
		c.Progress = func(done, total uint64) {
			if done > 0 {
				cancel()
			}
		}
	})
	if _, err := r.Build(ctx, postgres.Rebuild, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted build: %v", err)
	}
	r.Close()
	// The shadow audit's secondary indexes and the revocations' key are
	// built once, at the end.
	live := auditIndexes(t, pool, "public")
	if got := auditIndexes(t, pool, postgres.ShadowSchema); len(got) != 1 || got[0] != live[0] {
		t.Fatalf("indexes of an unfinished shadow audit: %q; want only the primary key %q", got, live[0])
	}
	liveRevoked := tableIndexes(t, pool, "public.revoked_licenses")
	if got := tableIndexes(t, pool, postgres.ShadowSchema+".revoked_licenses"); len(got) != 0 || len(liveRevoked) != 1 {
		t.Fatalf("indexes of an unfinished shadow's revocations: %q (live: %q)", got, liveRevoked)
	}
	// Two events with one event_id stop the build when the unique index is
	// built, naming the key; the shadow is not finished.
	shadowAudit := postgres.ShadowSchema + ".license_audit"
	var id1 string
	pool.QueryRow(context.Background(), `SELECT event_id::text FROM `+shadowAudit+` WHERE seq = 1`).Scan(&id1)
	rewriteAuditIn(t, pool, shadowAudit, `UPDATE `+shadowAudit+` SET event_id = (SELECT event_id FROM `+shadowAudit+` WHERE seq = 2) WHERE seq = 1`)
	r = openReplay(t, e, dsn)
	_, head, _ := e.bus.Stream(context.Background())
	b, err := r.Build(context.Background(), postgres.Rebuild, 0)
	if err == nil || !strings.Contains(err.Error(), "(event_id)=") || !b.Resumed || b.From == 0 || b.From >= head {
		t.Fatalf("a resumed build whose audit holds an event_id twice: %+v %v", b, err)
	}
	rewriteAuditIn(t, pool, shadowAudit, `UPDATE `+shadowAudit+` SET event_id = $1 WHERE seq = 1`, id1)
	b, err = r.Build(context.Background(), postgres.Rebuild, 0)
	if err != nil || !b.Resumed || b.Checkpoint != head {
		t.Fatalf("rerun: %+v %v", b, err)
	}
	if got := auditIndexes(t, pool, postgres.ShadowSchema); !slices.Equal(got, live) {
		t.Fatalf("indexes of the finished shadow audit:\n%s\nwant those of the live one:\n%s", strings.Join(got, "\n"), strings.Join(live, "\n"))
	}
	if got := tableIndexes(t, pool, postgres.ShadowSchema+".revoked_licenses"); !slices.Equal(got, liveRevoked) {
		t.Fatalf("indexes of the finished shadow's revocations: %q; want %q", got, liveRevoked)
	}
	d, err := r.Diff(context.Background(), 0)
	if err != nil || d.Total != 0 {
		t.Fatalf("after resuming: %v\n%s", err, diffText(d))
	}
	// A finished shadow is rebuilt by the next verification.
	if b, err := r.Build(context.Background(), postgres.Rebuild, 0); err != nil || b.Resumed || b.From != 0 {
		t.Fatalf("a verification after a finished one: %+v %v", b, err)
	}
}

// A build whose connection dies between two flushes of the read model
// leaves audit rows past the shadow's checkpoint: the next build folds
// from the checkpoint again, skips those rows (each is written once) and
// checks that the last one matches the stream.
func TestReplayResumesPastUnflushedAuditRows(t *testing.T) {
	e, pool, dsn := projected(t)
	_, head, _ := e.bus.Stream(context.Background())
	var batches atomic.Int32
	r := openReplay(t, e, dsn, func(c *postgres.ReplayConfig) {
		c.Progress = func(done, total uint64) {
			if done > 0 && done < total && batches.Add(1) == 2 {
				mustExec(t, pool, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
					WHERE application_name = 'ledger replay' AND datname = current_database()`)
			}
		}
	})
	if _, err := r.Build(context.Background(), postgres.Rebuild, 0); err == nil {
		t.Fatal("a build whose connection was terminated succeeded")
	}
	r.Close()
	var checkpoint, rows, top int64
	if err := pool.QueryRow(context.Background(), `SELECT (SELECT last_seq FROM `+postgres.ShadowSchema+`.projection_checkpoints WHERE name = 'org_licenses'),
		count(*), coalesce(max(seq), 0) FROM `+postgres.ShadowSchema+`.license_audit`).Scan(&checkpoint, &rows, &top); err != nil {
		t.Fatal(err)
	}
	if checkpoint != 0 || top <= checkpoint || top >= int64(head) || rows != top {
		t.Fatalf("after the terminated build: checkpoint %d, %d audit rows up to %d (head %d); want audit rows past the checkpoint", checkpoint, rows, top, head)
	}

	r = openReplay(t, e, dsn)
	b, err := r.Build(context.Background(), postgres.Rebuild, 0)
	if err != nil || !b.Resumed || b.From != 0 || b.Checkpoint != head {
		t.Fatalf("resumed build: %+v %v", b, err)
	}
	d, err := r.Diff(context.Background(), 0)
	if err != nil || d.Total != 0 {
		t.Fatalf("after resuming past unflushed audit rows: %v\n%s", err, diffText(d))
	}

	// A last audit row past the checkpoint that is not the stream's
	// message stops the build.
	mustExec(t, pool, `UPDATE `+postgres.ShadowSchema+`.projection_checkpoints SET last_seq = 0 WHERE name = 'org_licenses'`)
	mustExec(t, pool, `UPDATE `+postgres.ShadowSchema+`.replay_meta SET finished_at = NULL`)
	rewriteAuditIn(t, pool, postgres.ShadowSchema+".license_audit", `UPDATE `+postgres.ShadowSchema+`.license_audit SET hash = sha256(hash) WHERE seq = $1`, int64(head))
	b, err = r.Build(context.Background(), postgres.Rebuild, 0)
	if err == nil || !strings.Contains(err.Error(), "does not match the stream") {
		t.Fatalf("a build over a forged audit row past the checkpoint: %+v %v", b, err)
	}
}

// --from-seq takes the live audit rows before N (chain verified) for the
// start of the stream.
func TestReplayFromSeq(t *testing.T) {
	e, pool, dsn := projected(t)
	r := openReplay(t, e, dsn)
	if d := verify(t, r, 7); d.Total != 0 {
		t.Fatalf("from seq 7:\n%s", diffText(d))
	}
	_, head, _ := e.bus.Stream(context.Background())
	if _, err := r.Build(context.Background(), postgres.Rebuild, head+2); err == nil {
		t.Fatal("--from-seq past the head accepted")
	}
	rewriteAudit(t, pool, `UPDATE license_audit SET envelope_raw = convert_to('{}', 'UTF8') WHERE seq = 3`)
	if _, err := r.Build(context.Background(), postgres.Rebuild, 7); !errors.Is(err, postgres.ErrPrefixInvalid) || !strings.Contains(err.Error(), "seq 3") {
		t.Fatalf("a tampered prefix: %v", err)
	}
	// After the prefix, the stream is what counts.
	if d := verify(t, r, 3); d.Total == 0 {
		t.Fatal("a row after --from-seq that differs from the stream was not reported")
	}
}

// Readers of the live tables (gatekeepers with DATABASE_URL, auditors)
// never get an error nor miss a row while swaps rewrite every row and
// replace the audit.
func TestReplaySwapReadersSeeOldThenNew(t *testing.T) {
	e := newEnv(t)
	e.scenario(t)
	pool, dsn := migrated(t)
	var log testenv.Buffer
	startProjector(t, e, pool, &log)
	r := openReplay(t, e, dsn)
	reader, err := pgxpool.New(context.Background(), pgtest.LoginRole(t, dsn, "ledger_app"))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	stop := make(chan struct{})
	var polls atomic.Int64
	var bad atomic.Value
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				var orgs, acme, audit int
				err := reader.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM org_licenses),
					(SELECT count(*) FROM org_licenses WHERE org_slug = 'acme' AND license_key IS NOT NULL),
					(SELECT count(*) FROM license_audit)`).Scan(&orgs, &acme, &audit)
				switch {
				case err != nil:
					bad.Store(fmt.Sprintf("read: %v", err))
				case orgs != 5 || acme != 1 || audit == 0:
					bad.Store(fmt.Sprintf("read %d orgs (acme %d), %d audit rows", orgs, acme, audit))
				}
				polls.Add(1)
			}
		})
	}
	for polls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	atStart := polls.Load()
	for i := range 3 {
		mustExec(t, pool, `UPDATE org_licenses SET customer = $1, users_limit = $2`, fmt.Sprint("tampered ", i), i)
		if _, err := r.Swap(context.Background(), postgres.SwapOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	rewriteAudit(t, pool, `UPDATE license_audit SET envelope_raw = convert_to('{}', 'UTF8') WHERE seq = 2`)
	announce, _ := announcer(e)
	if _, err := r.Swap(context.Background(), postgres.SwapOptions{AcceptDivergence: true, Announce: announce}); err != nil {
		t.Fatal(err)
	}
	if polls.Load() == atStart {
		t.Fatal("no read ran during the swaps")
	}
	before := polls.Load()
	for polls.Load() < before+10 {
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if v := bad.Load(); v != nil {
		t.Fatal(v)
	}
	if d := verify(t, r, 0); d.Total != 0 {
		t.Fatalf("after the swaps:\n%s", diffText(d))
	}
}

// A stream whose first messages are gone cannot be rebuilt from seq 1:
// the error says where it starts and what to run.
func TestReplayStreamGap(t *testing.T) {
	ctx := context.Background()
	srv := natstest.Start(t)
	js := srv.JetStream(t, natsauth.RoleAdmin)
	cfg := natsbus.StreamConfig("LICENSES", 1)
	cfg.FirstSeq = 5
	if _, err := js.CreateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	env, _ := events.New(events.TypeRemoved, "acme", time.Now(), events.Actor{Kind: events.ActorOperator, ID: "op"}, 0,
		events.Removed{LicenseID: "0193a5b0-7e1a-7c3d-8f00-00000000a001"})
	raw, _ := env.Encode()
	if _, err := js.Publish(ctx, events.OrgSubject("acme"), raw); err != nil {
		t.Fatal(err)
	}
	reader, _, err := natsbus.Open(ctx, srv.Connect(t, natsauth.RoleReader), "LICENSES", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	_, dsn := migrated(t)
	r, err := postgres.OpenReplay(ctx, postgres.ReplayConfig{DSN: dsn, Source: reader, Keys: keys(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, err = r.Build(ctx, postgres.Rebuild, 0)
	if !errors.Is(err, postgres.ErrStreamGap) || !strings.Contains(err.Error(), "the stream has no message 1 (the next one is 5)") ||
		!strings.Contains(err.Error(), "--from-seq 5") {
		t.Fatalf("build over a stream starting at 5: %v", err)
	}
}

// A rebuild verifies each batch's uploads together: with forged keys
// mixed into a batch of valid ones, its read model is the one a fold
// verifying each key on its own makes, and reading it back finds the
// valid licenses valid and the forged ones invalid, for the same reason.
func TestReplayBatchOfUploadsWithForgedKeys(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	op := events.Actor{Kind: events.ActorOperator, ID: "op"}
	forge := func(org string, l *license.License) {
		env, _ := events.New(events.TypeUploaded, org, time.Now(), op, 0, events.Uploaded{LicenseID: l.Payload.LicenseID,
			Fingerprint: l.Fingerprint, Key: l.Key, Slot: events.SlotCurrent, GraceDaysEffective: 7, Source: events.SourceAPI})
		raw, _ := env.Encode()
		e.publish(t, events.OrgSubject(org), raw)
	}
	forged := map[string]license.Reason{}
	for i := range 100 {
		org := fmt.Sprintf("org-%03d", i)
		p := payload(org, fmt.Sprintf("0193a5b0-7e1a-7c3d-8f00-%012x", i), nil)
		switch i % 25 {
		case 3: // signed by another key under the trusted kid
			forge(org, licensetest.SignAs(t, "k9", "k1", p))
			forged[org] = license.ReasonSignatureInvalid
		case 11: // a kid nobody trusts
			forge(org, licensetest.Sign(t, "k9", p))
			forged[org] = license.ReasonUnknownKey
		default:
			if _, err := e.svc.Upload(ctx, ledger.Upload{Org: org, Body: []byte(licensetest.Sign(t, "k1", p).Key), Actor: op, Source: events.SourceAPI}); err != nil {
				t.Fatal(err)
			}
		}
	}
	_, dsn := migrated(t)
	r := openReplay(t, e, dsn, func(c *postgres.ReplayConfig) { c.BatchSize = 1000 })
	if _, err := r.Build(ctx, postgres.Rebuild, 0); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = postgres.ShadowSchema
	shadow, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer shadow.Close()
	memRows, _ := memoryModel(t, e)
	sameRows(t, memRows, pgRows(t, shadow))
	snap, err := postgres.ReadSnapshot(ctx, shadow, "org_licenses",
		projection.Trust{Ring: keys(t).Ring(), InstallID: e.svc.InstallID()}, postgres.PendingGraceFrom(e.readerSource(t)))
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, st := range snap.States {
		if !strings.HasPrefix(st.Org, "org-") {
			continue
		}
		seen++
		rep := license.ReportOf(st.Org, st, nil, time.Now())
		want, isForged := forged[st.Org]
		switch {
		case isForged && (rep.Status != license.StatusInvalid || rep.Reason == nil || *rep.Reason != want):
			t.Errorf("%s: %s %v, want invalid %s", st.Org, rep.Status, rep.Reason, want)
		case !isForged && rep.Status != license.StatusValid:
			t.Errorf("%s: %s %v, want valid", st.Org, rep.Status, rep.Reason)
		}
	}
	if seen != 100 || len(forged) != 8 {
		t.Fatalf("%d orgs read back, %d forged", seen, len(forged))
	}
}
