package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/licenseledger/ledger/internal/audit"
)

// AuditReader reads the license_audit table: an audit.Reader for the API,
// the audit commands and the digest log. It needs only SELECT on the
// table (the auditor role suffices) and is safe for concurrent use.
type AuditReader struct {
	pool *pgxpool.Pool
	// pageSize is the number of rows a query fetches. Scan walks the table
	// by seq a page at a time, so it holds no transaction (nor a snapshot
	// that would keep vacuum from the other tables) while its caller
	// writes records out, and never more than a page in memory.
	pageSize int
}

// NewAuditReader returns a reader over pool.
func NewAuditReader(pool *pgxpool.Pool) *AuditReader {
	return &AuditReader{pool: pool, pageSize: 1000}
}

// auditSelect reads NULL text columns (those of invalid messages) as "".
const auditSelect = `SELECT seq, coalesce(event_id::text, ''), subject, coalesce(org_slug, ''), type,
	coalesce(actor_kind, ''), coalesce(actor_id, ''), occurred_at, recorded_at, envelope::text,
	envelope_raw, prev_hash, hash, ` + treeHashesColumn + ` FROM license_audit`

// treeHashesColumn is a record's tree_hashes: its column, or, for a record
// written before the tree existed, the row the ledger added for it in
// license_audit_tree.
const treeHashesColumn = `coalesce(tree_hashes, (SELECT t.tree_hashes FROM license_audit_tree t WHERE t.seq = license_audit.seq))`

// Scan implements audit.Reader. Records carry the envelope column
// (EnvelopeKept), so that audit.Verify checks it too.
func (a *AuditReader) Scan(ctx context.Context, q audit.Query, fn func(*audit.Record) error) error {
	page := make([]audit.Record, 0, a.pageSize)
	pos, sent := q.After, 0 // the last seq read: the next page starts past it
	if q.Desc {
		pos = q.Before
	}
	for {
		want := a.pageSize
		if q.Limit > 0 {
			want = min(want, q.Limit-sent)
		}
		var err error
		if page, err = a.page(ctx, page[:0], &q, pos, want); err != nil {
			return err
		}
		for i := range page {
			if err := fn(&page[i]); err != nil {
				return err
			}
		}
		sent += len(page)
		if len(page) < want || (q.Limit > 0 && sent >= q.Limit) {
			return nil
		}
		pos = page[len(page)-1].Seq
	}
}

// page appends to buf up to n records matching q past pos: with seq >
// pos, or with q.Desc seq < pos (0: from the newest), newest first.
func (a *AuditReader) page(ctx context.Context, buf []audit.Record, q *audit.Query, pos uint64, n int) ([]audit.Record, error) {
	var args []any
	var where []string
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	after, before, order := pos, q.Before, "seq"
	if q.Desc {
		after, before, order = q.After, pos, "seq DESC"
	}
	add("seq > $%d", int64(after))
	if before != 0 {
		add("seq < $%d", int64(before))
	}
	if q.Org != "" {
		add("org_slug = $%d", q.Org)
	}
	if q.Type != "" {
		add("type = $%d", q.Type)
	}
	if !q.Since.IsZero() {
		add("occurred_at >= $%d", q.Since)
	}
	if !q.Until.IsZero() {
		add("occurred_at < $%d", q.Until)
	}
	if q.Scope != nil {
		add("org_slug = ANY($%d)", q.Scope)
	}
	args = append(args, n)
	sql := fmt.Sprintf("%s WHERE %s ORDER BY %s LIMIT $%d", auditSelect, strings.Join(where, " AND "), order, len(args))
	rows, err := a.pool.Query(ctx, sql, args...)
	if err != nil {
		return buf, fmt.Errorf("audit: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanAuditRow(rows)
		if err != nil {
			return buf, err
		}
		buf = append(buf, r)
	}
	if err := rows.Err(); err != nil {
		return buf, fmt.Errorf("audit: %w", err)
	}
	return buf, nil
}

func scanAuditRow(row pgx.Row) (audit.Record, error) {
	var (
		r          audit.Record
		seq        int64
		occurred   *time.Time
		envelope   *string
		prev, hash []byte
	)
	if err := row.Scan(&seq, &r.EventID, &r.Subject, &r.Org, &r.Type, &r.ActorKind, &r.ActorID, &occurred,
		&r.RecordedAt, &envelope, &r.Raw, &prev, &hash, &r.Tree); err != nil {
		return r, fmt.Errorf("audit: %w", err)
	}
	r.Seq = uint64(seq)
	if occurred != nil {
		r.At = occurred.UTC()
	}
	r.RecordedAt = r.RecordedAt.UTC()
	r.EnvelopeKept = true
	if envelope != nil {
		r.Envelope = []byte(*envelope)
	}
	if r.Raw == nil {
		r.Raw = []byte{}
	}
	// A hash that is not 32 bytes was written behind the ledger's back:
	// Verify names it rather than compare a truncated or padded copy.
	copy(r.PrevHash[:], prev)
	copy(r.Hash[:], hash)
	switch {
	case len(prev) != len(r.PrevHash):
		r.Unreadable = audit.ColPrevHash
	case len(hash) != len(r.Hash):
		r.Unreadable = audit.ColHash
	}
	return r, nil
}

// TreeRows implements audit.TreeRows.
func (a *AuditReader) TreeRows(ctx context.Context, seqs []uint64) (map[uint64][]byte, error) {
	return readTreeRows(ctx, a.pool, seqs)
}

// TreeSize returns the number of records from seq 1 with tree hashes (the
// projector's tree_size, at most its checkpoint) and the root hash of
// their tree.
func (a *AuditReader) TreeSize(ctx context.Context) (uint64, audit.Hash, error) {
	var size int64
	err := a.pool.QueryRow(ctx, `SELECT coalesce(max(least(tree_size, last_seq)), 0) FROM projection_checkpoints`).Scan(&size)
	if errors.Is(err, pgx.ErrNoRows) {
		size, err = 0, nil
	}
	if err != nil {
		return 0, audit.Hash{}, fmt.Errorf("audit tree: %w", err)
	}
	root, err := audit.RootAt(ctx, a, uint64(size))
	return uint64(size), root, err
}

// Head implements audit.Reader: the last row's seq and hash.
func (a *AuditReader) Head(ctx context.Context) (uint64, audit.Hash, error) {
	var seq int64
	var hash []byte
	err := a.pool.QueryRow(ctx, `SELECT seq, hash FROM license_audit ORDER BY seq DESC LIMIT 1`).Scan(&seq, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, audit.Zero, nil
	}
	if err != nil {
		return 0, audit.Zero, fmt.Errorf("audit head: %w", err)
	}
	var h audit.Hash
	if len(hash) != len(h) {
		return 0, audit.Zero, fmt.Errorf("audit head: the hash of seq %d is %d bytes, not %d", seq, len(hash), len(h))
	}
	copy(h[:], hash)
	return uint64(seq), h, nil
}
