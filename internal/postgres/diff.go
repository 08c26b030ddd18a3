package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/licenseledger/ledger/internal/audit"
)

// Difference is one way the live tables differ from the rebuilt ones.
type Difference struct {
	Table string // org_licenses, revoked_licenses, license_audit, projection_checkpoints
	Key   string // the org, "org license_id", or "seq N" / "seq N-M"
	What  string
}

func (d Difference) String() string { return d.Table + " " + d.Key + ": " + d.What }

// DiffResult is the comparison of the live tables with the shadow.
type DiffResult struct {
	// Differences lists the first MaxDifferences differences; Total counts
	// them all (a range of audit rows counts once).
	Differences []Difference
	Total       int
	// Checkpoint is the shadow's, LiveCheckpoint the live projector's, at
	// the comparison.
	Checkpoint, LiveCheckpoint uint64
	// Rows compared in the shadow.
	OrgRows, RevokedRows, AuditRows int64
	// Chain is the verification of the live audit trail.
	Chain audit.Result
}

// MaxDifferences bounds what a DiffResult lists.
const MaxDifferences = 1000

func (d *DiffResult) add(table, key, what string) {
	d.Total++
	if len(d.Differences) < MaxDifferences {
		d.Differences = append(d.Differences, Difference{Table: table, Key: key, What: what})
	}
}

// Print writes one line per difference and a summary line.
func (d *DiffResult) Print(w io.Writer) {
	for _, x := range d.Differences {
		fmt.Fprintln(w, x)
	}
	if more := d.Total - len(d.Differences); more > 0 {
		fmt.Fprintf(w, "… and %d more\n", more)
	}
	if d.Total == 0 {
		fmt.Fprintf(w, "no differences: org_licenses %d rows, revoked_licenses %d rows, license_audit %d rows at seq %d; live chain %s\n",
			d.OrgRows, d.RevokedRows, d.AuditRows, d.Checkpoint, d.Chain)
		return
	}
	fmt.Fprintf(w, "%d differences between the live tables (checkpoint %d) and the replay of the stream (seq %d)\n",
		d.Total, d.LiveCheckpoint, d.Checkpoint)
}

// AlignWait bounds how long Diff waits for a live projector behind the
// shadow before comparing anyway (it stops waiting sooner when the live
// checkpoint has not moved for 2 s).
var AlignWait = 10 * time.Second

// Diff compares the live tables with the shadow (as Build left it): every
// org_licenses row column by column (recorded_at is not a column there),
// revoked_licenses, and license_audit seq by seq (every column but
// recorded_at), then verifies the live audit chain. The live projector
// may run meanwhile: the comparison runs in one snapshot where both are at
// the same sequence — the shadow is caught up when live is ahead, and Diff
// waits up to AlignWait for a live projector that is behind.
func (r *Replayer) Diff(ctx context.Context, fromSeq uint64) (DiffResult, error) {
	var res DiffResult
	deadline := time.Now().Add(AlignWait)
	var lastLive uint64
	lastMove := time.Now()
	for {
		tx, err := r.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			return res, err
		}
		live, shadow, err := r.checkpoints(ctx, tx)
		if err == nil && live > shadow {
			tx.Rollback(ctx)
			if _, err := r.Build(ctx, CatchUp, fromSeq); err != nil {
				return res, err
			}
			continue
		}
		if live != lastLive {
			lastLive, lastMove = live, time.Now()
		}
		// Wait for a live projector that is catching up, not for a
		// stopped one.
		if err == nil && live < shadow && time.Now().Before(deadline) && time.Since(lastMove) < 2*time.Second {
			tx.Rollback(ctx)
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		if err == nil {
			res.LiveCheckpoint, res.Checkpoint = live, shadow
			err = r.compare(ctx, tx, &res)
		}
		tx.Rollback(ctx)
		if err != nil {
			return res, err
		}
		break
	}
	if res.LiveCheckpoint != res.Checkpoint {
		res.add(tableCheckpoints, "org_licenses", fmt.Sprintf("live at %d, the stream at %d", res.LiveCheckpoint, res.Checkpoint))
	}
	chain, err := audit.Verify(ctx, NewAuditReader(r.pool), audit.VerifyOptions{})
	if err != nil {
		return res, err
	}
	res.Chain = chain
	if !chain.OK {
		res.add(tableAudit, fmt.Sprintf("seq %d", chain.BadSeq), "live chain does not verify: "+chain.String())
	}
	return res, nil
}

// checkpoints reads the live and the shadow checkpoints.
func (r *Replayer) checkpoints(ctx context.Context, q querier) (live, shadow uint64, err error) {
	var l, s int64
	err = q.QueryRow(ctx, fmt.Sprintf(`SELECT coalesce((SELECT last_seq FROM %s WHERE name = 'org_licenses'), 0),
		coalesce((SELECT last_seq FROM %s WHERE name = 'org_licenses'), 0)`,
		r.liveTable(tableCheckpoints), r.shadowTable(tableCheckpoints))).Scan(&l, &s)
	return uint64(l), uint64(s), err
}

func (r *Replayer) liveTable(t string) string   { return pgx.Identifier{r.live, t}.Sanitize() }
func (r *Replayer) shadowTable(t string) string { return pgx.Identifier{ShadowSchema, t}.Sanitize() }

func (r *Replayer) compare(ctx context.Context, tx pgx.Tx, res *DiffResult) error {
	err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT (SELECT count(*) FROM %s), (SELECT count(*) FROM %s), (SELECT count(*) FROM %s)`,
		r.shadowTable(tableOrgLicenses), r.shadowTable(tableRevoked), r.shadowTable(tableAudit))).Scan(
		&res.OrgRows, &res.RevokedRows, &res.AuditRows)
	if err != nil {
		return err
	}
	if err := r.compareOrgRows(ctx, tx, res); err != nil {
		return fmt.Errorf("compare org_licenses: %w", err)
	}
	if err := r.compareRevoked(ctx, tx, res); err != nil {
		return fmt.Errorf("compare revoked_licenses: %w", err)
	}
	if err := r.compareAudit(ctx, tx, res); err != nil {
		return fmt.Errorf("compare license_audit: %w", err)
	}
	return nil
}

func (r *Replayer) compareOrgRows(ctx context.Context, tx pgx.Tx, res *DiffResult) error {
	rows, err := tx.Query(ctx, fmt.Sprintf(`SELECT coalesce(l.org_slug, s.org_slug), to_jsonb(l), to_jsonb(s)
		FROM %s l FULL JOIN %s s ON l.org_slug = s.org_slug
		WHERE l.org_slug IS NULL OR s.org_slug IS NULL OR ROW(l.*) IS DISTINCT FROM ROW(s.*)
		ORDER BY 1`, r.liveTable(tableOrgLicenses), r.shadowTable(tableOrgLicenses)))
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var org string
		var live, shadow []byte
		if err := rows.Scan(&org, &live, &shadow); err != nil {
			return err
		}
		switch {
		case live == nil:
			res.add(tableOrgLicenses, org, "missing in live")
		case shadow == nil:
			res.add(tableOrgLicenses, org, "extra in live (no event on the stream makes it)")
		default:
			var l, s map[string]json.RawMessage
			if err := json.Unmarshal(live, &l); err != nil {
				return err
			}
			if err := json.Unmarshal(shadow, &s); err != nil {
				return err
			}
			for _, col := range orgColumns {
				if !bytes.Equal(l[col], s[col]) {
					res.add(tableOrgLicenses, org, fmt.Sprintf("%s: live %s, replay %s", col, clip(l[col]), clip(s[col])))
				}
			}
		}
	}
	return rows.Err()
}

// clip shortens a JSON value for a diff line.
func clip(v json.RawMessage) string {
	const max = 80
	if len(v) <= max {
		return string(v)
	}
	return string(v[:max]) + "…"
}

func (r *Replayer) compareRevoked(ctx context.Context, tx pgx.Tx, res *DiffResult) error {
	rows, err := tx.Query(ctx, fmt.Sprintf(`SELECT coalesce(l.org_slug, s.org_slug), coalesce(l.license_id, s.license_id)::text,
			l.org_slug IS NULL, s.org_slug IS NULL, l.seq, s.seq
		FROM %s l FULL JOIN %s s ON l.org_slug = s.org_slug AND l.license_id = s.license_id
		WHERE l.org_slug IS NULL OR s.org_slug IS NULL OR l.seq IS DISTINCT FROM s.seq
		ORDER BY 1, 2`, r.liveTable(tableRevoked), r.shadowTable(tableRevoked)))
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var org, id string
		var missing, extra bool
		var ls, ss *int64
		if err := rows.Scan(&org, &id, &missing, &extra, &ls, &ss); err != nil {
			return err
		}
		key := org + " " + id
		switch {
		case missing:
			res.add(tableRevoked, key, "missing in live")
		case extra:
			res.add(tableRevoked, key, "extra in live (no event on the stream makes it)")
		default:
			res.add(tableRevoked, key, fmt.Sprintf("seq: live %s, replay %s", int64Text(ls), int64Text(ss)))
		}
	}
	return rows.Err()
}

func int64Text(p *int64) string {
	if p == nil {
		return "null"
	}
	return fmt.Sprint(*p)
}

// auditCompared are the license_audit columns compared (all but seq and
// recorded_at, which says when a row was written, not what happened).
var auditCompared = []string{"hash", "envelope_raw", "prev_hash", "event_id", "subject", "org_slug", "type",
	"actor_kind", "actor_id", "occurred_at", "envelope"}

func (r *Replayer) compareAudit(ctx context.Context, tx pgx.Tx, res *DiffResult) error {
	rows, err := r.auditDiffRows(ctx, tx, 0, 0)
	if err != nil {
		return err
	}
	defer rows.Close()
	// Consecutive rows missing (or extra) in live make one range.
	var runKind string
	var runFrom, runTo int64
	flush := func() {
		if runKind == "" {
			return
		}
		key := fmt.Sprintf("seq %d", runFrom)
		if runTo > runFrom {
			key = fmt.Sprintf("seq %d-%d", runFrom, runTo)
		}
		what := runKind
		if runTo > runFrom {
			what += fmt.Sprintf(" (%d rows)", runTo-runFrom+1)
		}
		res.add(tableAudit, key, what)
		runKind = ""
	}
	for rows.Next() {
		var seq int64
		var missing, extra bool
		var cols []string
		if err := rows.Scan(&seq, &missing, &extra, &cols); err != nil {
			return err
		}
		kind := ""
		switch {
		case missing:
			kind = "missing in live"
		case extra:
			kind = "extra in live (not on the stream)"
		}
		if kind != "" && kind == runKind && seq == runTo+1 {
			runTo = seq
			continue
		}
		flush()
		if kind != "" {
			runKind, runFrom, runTo = kind, seq, seq
			continue
		}
		res.add(tableAudit, fmt.Sprintf("seq %d", seq), strings.Join(cols, ", ")+" differ")
	}
	flush()
	return rows.Err()
}

// auditDiffRows returns, in seq order, the audit rows in (after, upTo]
// (upTo 0: no bound) that are missing in live, extra in live, or differ
// (with the columns that do).
func (r *Replayer) auditDiffRows(ctx context.Context, q querier, after, upTo uint64) (pgx.Rows, error) {
	if upTo == 0 {
		upTo = 1<<63 - 1
	}
	var cols, conds []string
	for _, c := range auditCompared {
		cols = append(cols, fmt.Sprintf("CASE WHEN l.%[1]s IS DISTINCT FROM s.%[1]s THEN '%[1]s' END", c))
		conds = append(conds, fmt.Sprintf("l.%[1]s IS DISTINCT FROM s.%[1]s", c))
	}
	return q.Query(ctx, fmt.Sprintf(`SELECT coalesce(l.seq, s.seq), l.seq IS NULL, s.seq IS NULL,
			array_remove(ARRAY[%s]::text[], NULL)
		FROM (SELECT * FROM %s WHERE seq > $1 AND seq <= $2) l
		FULL JOIN (SELECT * FROM %s WHERE seq > $1 AND seq <= $2) s ON l.seq = s.seq
		WHERE l.seq IS NULL OR s.seq IS NULL OR %s
		ORDER BY 1`, strings.Join(cols, ", "), r.liveTable(tableAudit), r.shadowTable(tableAudit), strings.Join(conds, " OR ")),
		int64(after), int64(upTo))
}
