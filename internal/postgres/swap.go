package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Replacement describes a live audit trail that diverged from the stream
// and was kept aside by a swap.
type Replacement struct {
	// Table is the name the diverging live audit now has,
	// license_audit_replaced_<unix>.
	Table string `json:"table"`
	// FirstDivergentSeq is the first seq where the live audit differs
	// from the stream (a differing, missing or extra row).
	FirstDivergentSeq uint64 `json:"first_divergent_seq"`
	// Rows is the number of rows of the kept table.
	Rows int64 `json:"rows"`
}

// SwapOptions are the choices of Swap.
type SwapOptions struct {
	// AcceptDivergence lets a live audit that diverges from the stream be
	// replaced (kept as license_audit_replaced_<unix>); without it Swap
	// returns ErrDivergent and changes nothing.
	AcceptDivergence bool
	// Announce records the replacement on the stream before the swap
	// commits, and returns the event's sequence. Required with
	// AcceptDivergence: an audit trail is never replaced silently.
	Announce func(ctx context.Context, r Replacement) (uint64, error)
	// Now defaults to time.Now (the <unix> of the kept table's name).
	Now func() time.Time
}

// SwapResult says what Swap did.
type SwapResult struct {
	Build              BuildResult
	PreviousCheckpoint uint64 // the live checkpoint before
	Checkpoint         uint64 // the live checkpoint now
	AuditAppended      int64  // shadow audit rows appended to the live one
	OrgRowsWritten     int64  // live org_licenses rows inserted or changed
	OrgRowsDeleted     int64
	RevokedWritten     int64
	RevokedDeleted     int64
	Replaced           *Replacement
	AnnouncedSeq       uint64
}

// Swap rebuilds (or catches up) the shadow, then replaces the live read
// model with it in one transaction. The live tables are locked against
// writers (SHARE ROW EXCLUSIVE: readers go on and see the old rows until
// the commit, then the new ones), the shadow is brought to the stream
// head, org_licenses and revoked_licenses are made equal to the shadow's
// (only differing rows are written, so grants, triggers and indexes stay),
// and the live checkpoint moves to the shadow's with a new updated_at, so
// a running projector's next fenced update fails (ErrFenced) and it
// resumes from the new checkpoint.
//
// The live audit is never dropped. When it equals the shadow's up to its
// last row, the missing rows are appended. When it diverges, Swap returns
// ErrDivergent unless opts.AcceptDivergence: then opts.Announce records
// the replacement on the stream, the live table is renamed
// license_audit_replaced_<unix> (its indexes likewise; INSERT revoked from
// everyone but the owner; its triggers kept), and the shadow's takes its
// place with the same owner, grants, triggers and index names. The
// shadow schema is then dropped; otherwise it is kept for the next run.
func (r *Replayer) Swap(ctx context.Context, opts SwapOptions) (SwapResult, error) {
	var res SwapResult
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.AcceptDivergence && opts.Announce == nil {
		return res, errors.New("accepting a divergent audit needs a way to record it on the stream")
	}
	build, err := r.Build(ctx, CatchUp, 0)
	if err != nil {
		return res, err
	}
	res.Build = build
	// Look for a divergence before taking any lock: the rows checked here
	// need not be checked again under it.
	liveMax, err := r.liveAuditMax(ctx, r.pool)
	if err != nil {
		return res, err
	}
	divergent, err := r.firstDivergence(ctx, r.pool, 0, liveMax)
	if err != nil {
		return res, err
	}
	if divergent > 0 && !opts.AcceptDivergence {
		return res, fmt.Errorf("%w at seq %d", ErrDivergent, divergent)
	}
	checked := liveMax

	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return res, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	// The projector's order (checkpoint, audit, read model): no deadlock.
	if _, err := tx.Exec(ctx, fmt.Sprintf(`LOCK TABLE %s, %s, %s, %s IN SHARE ROW EXCLUSIVE MODE`,
		r.liveTable(tableCheckpoints), r.liveTable(tableAudit), r.liveTable(tableOrgLicenses), r.liveTable(tableRevoked))); err != nil {
		return res, fmt.Errorf("lock the live tables: %w", err)
	}
	if res.PreviousCheckpoint, _, err = r.checkpoints(ctx, tx); err != nil {
		return res, err
	}
	// Writers are stopped: bring the shadow to the stream head.
	more, err := r.Build(ctx, CatchUp, 0)
	if err != nil {
		return res, err
	}
	res.Build.Events += more.Events
	res.Build.Checkpoint = more.Checkpoint
	if liveMax, err = r.liveAuditMax(ctx, tx); err != nil {
		return res, err
	}
	if divergent == 0 {
		if divergent, err = r.firstDivergence(ctx, tx, checked, liveMax); err != nil {
			return res, err
		}
		if divergent > 0 && !opts.AcceptDivergence {
			return res, fmt.Errorf("%w at seq %d", ErrDivergent, divergent)
		}
	}
	if divergent > 0 {
		rep := Replacement{Table: fmt.Sprintf("%s_replaced_%d", tableAudit, opts.Now().Unix()), FirstDivergentSeq: divergent}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+r.liveTable(tableAudit)).Scan(&rep.Rows); err != nil {
			return res, err
		}
		if res.AnnouncedSeq, err = opts.Announce(ctx, rep); err != nil {
			return res, fmt.Errorf("record the replacement on the stream (nothing was changed; this needs credentials "+
				"that may publish on licenses.audit._instance, such as the ledger's): %w", err)
		}
		if err := r.replaceAudit(ctx, tx, rep.Table); err != nil {
			return res, fmt.Errorf("the event at seq %d records a replacement that did not happen: %w", res.AnnouncedSeq, err)
		}
		res.Replaced = &rep
	} else {
		tag, err := tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %s SELECT * FROM %s WHERE seq > $1 ORDER BY seq`,
			r.liveTable(tableAudit), r.shadowTable(tableAudit)), int64(liveMax))
		if err != nil {
			return res, fmt.Errorf("append the audit rows: %w", err)
		}
		res.AuditAppended = tag.RowsAffected()
	}
	if err := r.mergeReadModel(ctx, tx, &res); err != nil {
		return res, err
	}
	if res.Replaced != nil {
		if _, err := tx.Exec(ctx, `DROP SCHEMA `+quoteIdentifier(ShadowSchema)+` CASCADE`); err != nil {
			return res, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		if res.Replaced != nil {
			return res, fmt.Errorf("the event at seq %d records a replacement that did not happen: %w", res.AnnouncedSeq, err)
		}
		return res, err
	}
	return res, nil
}

// liveAuditMax is the live audit's last seq (0 when empty).
func (r *Replayer) liveAuditMax(ctx context.Context, q querier) (uint64, error) {
	var m int64
	err := q.QueryRow(ctx, `SELECT coalesce(max(seq), 0) FROM `+r.liveTable(tableAudit)).Scan(&m)
	return uint64(m), err
}

// firstDivergence returns the first seq in (after, upTo] where the live
// audit is not the shadow's (a row that differs, is missing or extra), or
// 0. With upTo the live audit's last seq, 0 means live is a prefix.
func (r *Replayer) firstDivergence(ctx context.Context, q querier, after, upTo uint64) (uint64, error) {
	if upTo <= after {
		return 0, nil
	}
	rows, err := r.auditDiffRows(ctx, q, after, upTo)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	// The rows come in seq order: the first one is the answer.
	if !rows.Next() {
		return 0, rows.Err()
	}
	var seq int64
	var missing, extra bool
	var cols []string
	if err := rows.Scan(&seq, &missing, &extra, &cols); err != nil {
		return 0, err
	}
	return uint64(seq), nil
}

// mergeReadModel makes live org_licenses, revoked_licenses and the
// checkpoint equal to the shadow's, writing only what differs.
func (r *Replayer) mergeReadModel(ctx context.Context, tx pgx.Tx, res *SwapResult) error {
	var sets []string
	for _, c := range orgColumns[1:] {
		sets = append(sets, fmt.Sprintf("%[1]s = excluded.%[1]s", c))
	}
	cols := strings.Join(orgColumns, ", ")
	steps := []struct {
		sql string
		n   *int64
	}{
		{fmt.Sprintf(`DELETE FROM %s l WHERE NOT EXISTS (SELECT 1 FROM %s s WHERE s.org_slug = l.org_slug)`,
			r.liveTable(tableOrgLicenses), r.shadowTable(tableOrgLicenses)), &res.OrgRowsDeleted},
		{fmt.Sprintf(`INSERT INTO %s AS t (%s) SELECT %s FROM %s ON CONFLICT (org_slug) DO UPDATE SET %s
			WHERE ROW(t.*) IS DISTINCT FROM ROW(excluded.*)`,
			r.liveTable(tableOrgLicenses), cols, cols, r.shadowTable(tableOrgLicenses), strings.Join(sets, ", ")), &res.OrgRowsWritten},
		{fmt.Sprintf(`DELETE FROM %s l WHERE NOT EXISTS (SELECT 1 FROM %s s
			WHERE s.org_slug = l.org_slug AND s.license_id = l.license_id)`,
			r.liveTable(tableRevoked), r.shadowTable(tableRevoked)), &res.RevokedDeleted},
		{fmt.Sprintf(`INSERT INTO %s AS t (org_slug, license_id, seq) SELECT org_slug, license_id, seq FROM %s
			ON CONFLICT (org_slug, license_id) DO UPDATE SET seq = excluded.seq WHERE t.seq IS DISTINCT FROM excluded.seq`,
			r.liveTable(tableRevoked), r.shadowTable(tableRevoked)), &res.RevokedWritten},
	}
	for _, s := range steps {
		tag, err := tx.Exec(ctx, s.sql)
		if err != nil {
			return fmt.Errorf("swap the read model: %w", err)
		}
		*s.n = tag.RowsAffected()
	}
	// A new updated_at even at the same sequence: the fence of a running
	// projector fails and it reloads.
	var seq int64
	err := tx.QueryRow(ctx, fmt.Sprintf(`INSERT INTO %s AS t (name, last_seq, stream_created, updated_at)
		SELECT name, last_seq, stream_created, clock_timestamp() FROM %s WHERE name = 'org_licenses'
		ON CONFLICT (name) DO UPDATE SET last_seq = excluded.last_seq, stream_created = excluded.stream_created,
			updated_at = CASE WHEN excluded.updated_at IS NOT DISTINCT FROM t.updated_at
				THEN excluded.updated_at + interval '1 microsecond' ELSE excluded.updated_at END
		RETURNING last_seq`, r.liveTable(tableCheckpoints), r.shadowTable(tableCheckpoints))).Scan(&seq)
	if err != nil {
		return fmt.Errorf("swap the checkpoint: %w", err)
	}
	res.Checkpoint = uint64(seq)
	return nil
}

// replaceAudit renames the live audit (and its indexes) to replaced and
// moves the shadow's into its place with the same owner, grants and index
// names (the shadow's triggers already call the live functions).
func (r *Replayer) replaceAudit(ctx context.Context, tx pgx.Tx, replaced string) error {
	live := r.liveTable(tableAudit)
	kept := pgx.Identifier{r.live, replaced}.Sanitize()
	oldIdx, err := indexes(ctx, tx, live)
	if err != nil {
		return err
	}
	var stmts []string
	for _, ix := range oldIdx {
		name := replaced + strings.TrimPrefix(ix.name, tableAudit)
		if len(name) > 63 {
			name = name[:63]
		}
		stmts = append(stmts, fmt.Sprintf(`ALTER INDEX %s RENAME TO %s`, pgx.Identifier{r.live, ix.name}.Sanitize(), quoteIdentifier(name)))
	}
	stmts = append(stmts,
		fmt.Sprintf(`ALTER TABLE %s RENAME TO %s`, live, quoteIdentifier(replaced)),
		fmt.Sprintf(`ALTER TABLE %s SET SCHEMA %s`, r.shadowTable(tableAudit), quoteIdentifier(r.live)))
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	newIdx, err := indexes(ctx, tx, live)
	if err != nil {
		return err
	}
	stmts = stmts[:0]
	for _, nx := range newIdx {
		for _, ox := range oldIdx {
			if ox.key == nx.key && ox.name != nx.name {
				stmts = append(stmts, fmt.Sprintf(`ALTER INDEX %s RENAME TO %s`, pgx.Identifier{r.live, nx.name}.Sanitize(), quoteIdentifier(ox.name)))
			}
		}
	}
	// Owner and grants as the replaced table had them; the kept table
	// takes no more rows.
	var owner string
	if err := tx.QueryRow(ctx, `SELECT quote_ident(pg_get_userbyid(relowner)) FROM pg_class WHERE oid = $1::regclass`, kept).Scan(&owner); err != nil {
		return err
	}
	stmts = append(stmts, fmt.Sprintf(`ALTER TABLE %s OWNER TO %s`, live, owner))
	rows, err := tx.Query(ctx, `SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
			a.privilege_type, a.grantee = c.relowner
		FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = $1::regclass`, kept)
	if err != nil {
		return err
	}
	for rows.Next() {
		var grantee, privilege string
		var isOwner bool
		if err := rows.Scan(&grantee, &privilege, &isOwner); err != nil {
			rows.Close()
			return err
		}
		stmts = append(stmts, fmt.Sprintf(`GRANT %s ON TABLE %s TO %s`, privilege, live, grantee))
		if privilege == "INSERT" && !isOwner {
			stmts = append(stmts, fmt.Sprintf(`REVOKE INSERT ON TABLE %s FROM %s`, kept, grantee))
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

type index struct{ name, key string }

// indexes lists table's indexes with a key that ignores their names.
func indexes(ctx context.Context, tx pgx.Tx, table string) ([]index, error) {
	rows, err := tx.Query(ctx, `SELECT c.relname, i.indisunique, pg_get_indexdef(i.indexrelid)
		FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = $1::regclass ORDER BY c.relname`, table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []index
	for rows.Next() {
		var ix index
		var unique bool
		var def string
		if err := rows.Scan(&ix.name, &unique, &def); err != nil {
			return nil, err
		}
		_, using, _ := strings.Cut(def, " USING ")
		ix.key = fmt.Sprintf("%v %s", unique, using)
		out = append(out, ix)
	}
	return out, rows.Err()
}
