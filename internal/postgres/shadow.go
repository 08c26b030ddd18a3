package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ShadowSchema is where ledger replay rebuilds the read model and the
// audit trail while the live tables serve.
const ShadowSchema = "ledger_shadow"

// shadowTables are the tables a shadow holds, like the live ones.
var shadowTables = []string{tableOrgLicenses, tableRevoked, tableAudit, tableCheckpoints}

// shadowMeta says what a shadow was built from: a shadow is resumed or
// caught up only when all of it still holds.
type shadowMeta struct {
	KeyringFingerprint string
	InstallID          string
	StreamCreated      time.Time
	FromSeq            uint64
	StartedAt          time.Time
	FinishedAt         *time.Time // the build reached the stream head once
}

// createShadow (re)creates the shadow schema empty: the live tables'
// structure (columns, defaults, constraints, indexes), the live audit's
// append-only triggers (calling the live trigger functions, with the same
// enabled state), and the meta row. Nobody but the owner has rights on it.
func createShadow(ctx context.Context, pool *pgxpool.Pool, live string, meta shadowMeta) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	shadow := quoteIdentifier(ShadowSchema)
	stmts := []string{
		`DROP SCHEMA IF EXISTS ` + shadow + ` CASCADE`,
		`CREATE SCHEMA ` + shadow,
	}
	for _, t := range shadowTables {
		stmts = append(stmts, fmt.Sprintf(`CREATE TABLE %s (LIKE %s INCLUDING ALL)`,
			pgx.Identifier{ShadowSchema, t}.Sanitize(), pgx.Identifier{live, t}.Sanitize()))
	}
	stmts = append(stmts, `CREATE TABLE `+shadow+`.replay_meta (
		id int PRIMARY KEY CHECK (id = 1), keyring_fingerprint text NOT NULL, install_id text NOT NULL,
		stream_created timestamptz NOT NULL, from_seq bigint NOT NULL, started_at timestamptz NOT NULL,
		finished_at timestamptz)`)
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return fmt.Errorf("shadow schema: %s: %w", s, err)
		}
	}
	if err := copyTriggers(ctx, tx, pgx.Identifier{live, tableAudit}, pgx.Identifier{ShadowSchema, tableAudit}); err != nil {
		return err
	}
	if err := deferIndexes(ctx, tx); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO `+shadow+`.replay_meta VALUES (1, $1, $2, $3, $4, $5, NULL)`,
		meta.KeyringFingerprint, meta.InstallID, meta.StreamCreated, int64(meta.FromSeq), meta.StartedAt); err != nil {
		return fmt.Errorf("shadow schema: %w", err)
	}
	return tx.Commit(ctx)
}

// replayDeferred holds the statements that create the shadow's deferred
// indexes once the build has written every audit row: index builds (any
// order, in parallel) and then the statements that attach unique and
// primary key constraints to their indexes.
const replayDeferred = "replay_deferred"

// deferIndexes drops the shadow's secondary indexes and unique
// constraints of license_audit (all but the primary key on seq, which
// resuming and the chain check read) and revoked_licenses' primary key,
// keeping the statements that create them again in replay_deferred. A
// rebuild loads the rows first and builds each index once at the end,
// sorted, as pg_restore does, instead of maintaining them row by row. A
// unique violation (two events with one event_id) is then reported when
// the index is built, before the build counts as finished. Nothing else
// writes the shadow, and revocations are written only with the checkpoint
// that covers them, so no duplicate key can enter meanwhile.
func deferIndexes(ctx context.Context, tx pgx.Tx) error {
	// Qualify every name in the definitions.
	if _, err := tx.Exec(ctx, `SET LOCAL search_path = pg_catalog`); err != nil {
		return err
	}
	var drops []string
	var later []deferredStmt
	for _, t := range []struct {
		table       string
		keepPrimary bool
	}{{tableAudit, true}, {tableRevoked, false}} {
		d, l, err := indexesToDefer(ctx, tx, pgx.Identifier{ShadowSchema, t.table}.Sanitize(), t.keepPrimary)
		if err != nil {
			return err
		}
		drops, later = append(drops, d...), append(later, l...)
	}
	stmts := append([]string{`CREATE TABLE ` + pgx.Identifier{ShadowSchema, replayDeferred}.Sanitize() +
		` (ord int PRIMARY KEY, stmt text NOT NULL, attach bool NOT NULL)`}, drops...)
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return fmt.Errorf("shadow schema: %s: %w", s, err)
		}
	}
	for i, d := range later {
		if _, err := tx.Exec(ctx, `INSERT INTO `+pgx.Identifier{ShadowSchema, replayDeferred}.Sanitize()+` VALUES ($1, $2, $3)`, i, d.stmt, d.attach); err != nil {
			return fmt.Errorf("shadow schema: %w", err)
		}
	}
	_, err := tx.Exec(ctx, `SET LOCAL search_path TO DEFAULT`)
	return err
}

// deferredStmt is a statement of replay_deferred: an index build, or the
// attachment of a constraint to its built index.
type deferredStmt struct {
	stmt   string
	attach bool
}

// indexesToDefer returns the statements that drop table's indexes (but
// its primary key, with keepPrimary) and those that create them again.
func indexesToDefer(ctx context.Context, tx pgx.Tx, table string, keepPrimary bool) (drops []string, later []deferredStmt, err error) {
	rows, err := tx.Query(ctx, `SELECT c.relname, con.conname, pg_get_indexdef(i.indexrelid), pg_get_constraintdef(con.oid)
		FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
		LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
		WHERE i.indrelid = $1::regclass AND NOT (i.indisprimary AND $2) ORDER BY c.relname`, table, keepPrimary)
	if err != nil {
		return nil, nil, fmt.Errorf("indexes of %s: %w", table, err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, indexDef string
		var constraint, constraintDef *string
		if err := rows.Scan(&name, &constraint, &indexDef, &constraintDef); err != nil {
			return nil, nil, err
		}
		switch {
		case constraint == nil || constraintDef == nil:
			drops = append(drops, `DROP INDEX `+pgx.Identifier{ShadowSchema, name}.Sanitize())
			later = append(later, deferredStmt{indexDef, false})
		case *constraint == name && (strings.HasPrefix(*constraintDef, "UNIQUE ") || strings.HasPrefix(*constraintDef, "PRIMARY KEY ")):
			// Built like any index, then attached as the constraint.
			kind, _, _ := strings.Cut(*constraintDef, " (")
			drops = append(drops, `ALTER TABLE `+table+` DROP CONSTRAINT `+quoteIdentifier(*constraint))
			later = append(later, deferredStmt{indexDef, false},
				deferredStmt{`ALTER TABLE ` + table + ` ADD CONSTRAINT ` + quoteIdentifier(*constraint) + ` ` + kind + ` USING INDEX ` + quoteIdentifier(name), true})
		default:
			drops = append(drops, `ALTER TABLE `+table+` DROP CONSTRAINT `+quoteIdentifier(*constraint))
			later = append(later, deferredStmt{`ALTER TABLE ` + table + ` ADD CONSTRAINT ` + quoteIdentifier(*constraint) + ` ` + *constraintDef, true})
		}
	}
	return drops, later, rows.Err()
}

// indexWorkers is how many deferred indexes are built at once.
const indexWorkers = 2

// buildDeferredIndexes builds the shadow's deferred indexes, each in
// its own transaction that also takes it off replay_deferred, on
// indexWorkers connections at once. It runs once every audit row is
// written, beside the build's final write of the read model: the audit's
// indexes come first; revoked_licenses' key, listed last, waits for that
// write's commit (or the write for it). finishShadow runs it again for
// what is left.
func buildDeferredIndexes(ctx context.Context, pool *pgxpool.Pool) error {
	deferred := pgx.Identifier{ShadowSchema, replayDeferred}.Sanitize()
	if exists, err := tableExists(ctx, pool, deferred); err != nil || !exists {
		return err
	}
	errs := make(chan error, indexWorkers)
	for range indexWorkers {
		go func() {
			errs <- func() error {
				for {
					built, err := buildOneIndex(ctx, pool, deferred)
					if err != nil || !built {
						return err
					}
				}
			}()
		}()
	}
	var first error
	for range indexWorkers {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// buildOneIndex builds one deferred index no other worker is building;
// false: none was left.
func buildOneIndex(ctx context.Context, pool *pgxpool.Pool, deferred string) (bool, error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var ord int
	var stmt string
	err = tx.QueryRow(ctx, `SELECT ord, stmt FROM `+deferred+` WHERE NOT attach ORDER BY ord LIMIT 1 FOR UPDATE SKIP LOCKED`).Scan(&ord, &stmt)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := execDeferred(ctx, tx, stmt); err != nil {
		return false, err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM `+deferred+` WHERE ord = $1`, ord); err != nil {
		return false, err
	}
	return true, tx.Commit(ctx)
}

// execDeferred runs a deferred index statement with room to sort in
// memory; a failure names the statement and, for a duplicate key, the key.
func execDeferred(ctx context.Context, tx pgx.Tx, stmt string) error {
	if _, err := tx.Exec(ctx, `SET LOCAL maintenance_work_mem = '256MB'`); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, stmt); err != nil {
		if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Detail != "" {
			err = fmt.Errorf("%w (%s)", err, pe.Detail)
		}
		return fmt.Errorf("the shadow's index: %s: %w", stmt, err)
	}
	return nil
}

// finishShadow builds what remains of the deferred indexes (all of them
// when the build wrote no audit row), then attaches the constraints to
// their indexes and marks the build finished in one transaction: a shadow
// is never finished without its indexes.
func finishShadow(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	start := time.Now()
	if err := buildDeferredIndexes(ctx, pool); err != nil {
		return err
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	deferred := pgx.Identifier{ShadowSchema, replayDeferred}.Sanitize()
	exists, err := tableExists(ctx, tx, deferred)
	if err != nil {
		return err
	}
	if exists {
		rows, err := tx.Query(ctx, `SELECT stmt FROM `+deferred+` ORDER BY ord`)
		if err != nil {
			return err
		}
		stmts, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		for _, s := range stmts {
			if err := execDeferred(ctx, tx, s); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM `+deferred); err != nil {
			return err
		}
		if len(stmts) > 0 {
			log.Info("finished the shadow's deferred indexes", "elapsed", time.Since(start).Round(time.Millisecond))
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE `+pgx.Identifier{ShadowSchema, "replay_meta"}.Sanitize()+` SET finished_at = now() WHERE id = 1`); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// tableExists says whether the (qualified) table exists.
func tableExists(ctx context.Context, q querier, table string) (bool, error) {
	var exists bool
	err := q.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&exists)
	return exists, err
}

// copyTriggers creates on to the user triggers of from, with the same
// definitions and enabled state.
func copyTriggers(ctx context.Context, tx pgx.Tx, from, to pgx.Identifier) error {
	// Qualify every name in the definitions.
	if _, err := tx.Exec(ctx, `SET LOCAL search_path = pg_catalog`); err != nil {
		return err
	}
	rows, err := tx.Query(ctx, `SELECT t.tgname, pg_get_triggerdef(t.oid), t.tgenabled::text FROM pg_trigger t
		WHERE t.tgrelid = $1::regclass AND NOT t.tgisinternal ORDER BY t.tgname`, from.Sanitize())
	if err != nil {
		return fmt.Errorf("triggers of %s: %w", from.Sanitize(), err)
	}
	type trigger struct{ name, def, enabled string }
	var triggers []trigger
	for rows.Next() {
		var t trigger
		if err := rows.Scan(&t.name, &t.def, &t.enabled); err != nil {
			rows.Close()
			return err
		}
		triggers = append(triggers, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	// pg_get_triggerdef quotes names only where needed.
	var fromName string
	if err := tx.QueryRow(ctx, `SELECT format('%I.%I', $1::text, $2::text)`, from[0], from[1]).Scan(&fromName); err != nil {
		return err
	}
	on := " ON " + fromName + " "
	for _, t := range triggers {
		if strings.Count(t.def, on) != 1 {
			return fmt.Errorf("trigger %s: unexpected definition %q", t.name, t.def)
		}
		stmts := []string{strings.Replace(t.def, on, " ON "+to.Sanitize()+" ", 1)}
		switch t.enabled {
		case "A":
			stmts = append(stmts, "ALTER TABLE "+to.Sanitize()+" ENABLE ALWAYS TRIGGER "+quoteIdentifier(t.name))
		case "R":
			stmts = append(stmts, "ALTER TABLE "+to.Sanitize()+" ENABLE REPLICA TRIGGER "+quoteIdentifier(t.name))
		case "D":
			stmts = append(stmts, "ALTER TABLE "+to.Sanitize()+" DISABLE TRIGGER "+quoteIdentifier(t.name))
		}
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				return fmt.Errorf("trigger %s: %w", t.name, err)
			}
		}
	}
	_, err = tx.Exec(ctx, `SET LOCAL search_path TO DEFAULT`)
	return err
}

// readShadowMeta returns the shadow's meta row, or nil when there is no
// (usable) shadow.
func readShadowMeta(ctx context.Context, q querier) (*shadowMeta, error) {
	for _, t := range append([]string{"replay_meta"}, shadowTables...) {
		exists, err := tableExists(ctx, q, pgx.Identifier{ShadowSchema, t}.Sanitize())
		if err != nil || !exists {
			return nil, err
		}
	}
	var m shadowMeta
	var from int64
	err := q.QueryRow(ctx, `SELECT keyring_fingerprint, install_id, stream_created, from_seq, started_at, finished_at
		FROM `+quoteIdentifier(ShadowSchema)+`.replay_meta WHERE id = 1`).Scan(
		&m.KeyringFingerprint, &m.InstallID, &m.StreamCreated, &from, &m.StartedAt, &m.FinishedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	m.FromSeq = uint64(from)
	return &m, nil
}

// liveSchema returns the schema of the live tables (as the owner's search
// path resolves license_audit).
func liveSchema(ctx context.Context, q querier) (string, error) {
	var schema *string
	err := q.QueryRow(ctx, `SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.oid = to_regclass($1)`, tableAudit).Scan(&schema)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && schema == nil) {
		return "", fmt.Errorf("%w: table %s not found: run ledger migrate up", ErrNotMigrated, tableAudit)
	}
	if err != nil {
		return "", err
	}
	if *schema == ShadowSchema {
		return "", fmt.Errorf("the owner's search_path finds %s in %s: the live tables must be elsewhere", tableAudit, ShadowSchema)
	}
	return *schema, nil
}
