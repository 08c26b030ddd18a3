package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/licenseledger/ledger/internal/audit"
)

// readTreeRows reads the tree_hashes of the records seqs (audit.TreeRows):
// by primary key, the column or the row kept aside for a record written
// before the tree existed.
func readTreeRows(ctx context.Context, q querier, seqs []uint64) (map[uint64][]byte, error) {
	return readTreeRowsFrom(ctx, q, seqs, treeHashesColumn)
}

func readTreeRowsFrom(ctx context.Context, q querier, seqs []uint64, column string) (map[uint64][]byte, error) {
	keys := make([]int64, len(seqs))
	for i, s := range seqs {
		keys[i] = int64(s)
	}
	rows, err := q.Query(ctx, `SELECT seq, `+column+` FROM license_audit WHERE seq = ANY($1)`, keys)
	if err != nil {
		return nil, fmt.Errorf("audit tree: %w", err)
	}
	defer rows.Close()
	out := make(map[uint64][]byte, len(seqs))
	for rows.Next() {
		var seq int64
		var h []byte
		if err := rows.Scan(&seq, &h); err != nil {
			return nil, fmt.Errorf("audit tree: %w", err)
		}
		if h == nil {
			return nil, fmt.Errorf("audit tree: record %d has no tree hashes yet (the projector computes those of records "+
				"written before the tree when it starts)", seq)
		}
		out[uint64(seq)] = h
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit tree: %w", err)
	}
	return out, nil
}

type connTreeRows struct{ conn *pgx.Conn }

func (c connTreeRows) TreeRows(ctx context.Context, seqs []uint64) (map[uint64][]byte, error) {
	return readTreeRows(ctx, c.conn, seqs)
}

// shadowTreeRows reads a replay shadow's tree hashes: every shadow record
// has its column (the shadow holds no license_audit_tree).
type shadowTreeRows struct{ conn *pgx.Conn }

func (c shadowTreeRows) TreeRows(ctx context.Context, seqs []uint64) (map[uint64][]byte, error) {
	return readTreeRowsFrom(ctx, c.conn, seqs, "tree_hashes")
}

// treeBackfillBatch is how many records' tree hashes one transaction of
// the backfill writes.
const treeBackfillBatch = 20000

// loadTree returns the Merkle tree over the records up to seq (the
// checkpoint of projection name), first computing and keeping in
// license_audit_tree the tree hashes of the records written without them
// (by a release before the tree, or by one running beside this one during
// an upgrade): those past the checkpoint's tree_size.
func loadTree(ctx context.Context, conn *pgx.Conn, name string, seq uint64, log *slog.Logger) (*audit.Tree, error) {
	var size int64
	if err := conn.QueryRow(ctx, `SELECT tree_size FROM projection_checkpoints WHERE name = $1`, name).Scan(&size); err != nil {
		return nil, fmt.Errorf("audit tree: %w", err)
	}
	from := min(uint64(size), seq)
	tree, err := audit.LoadTree(ctx, connTreeRows{conn}, from)
	if err != nil {
		return nil, fmt.Errorf("audit tree at %d: %w", from, err)
	}
	if from == seq {
		return tree, nil
	}
	start := time.Now()
	log.Info("audit tree: computing the tree hashes of records written without them", "from_seq", from+1, "to_seq", seq)
	for from < seq {
		to := min(seq, from+treeBackfillBatch)
		if err := backfillTree(ctx, conn, name, tree, from, to); err != nil {
			return nil, err
		}
		from = to
	}
	log.Info("audit tree: tree hashes computed", "records", seq-uint64(size), "took", time.Since(start).Round(time.Millisecond))
	return tree, nil
}

// backfillTree appends records (from, to] to tree and, in one
// transaction, keeps the tree hashes of those without any and moves
// tree_size to to. A record's stored tree hashes must be those its bytes
// and the records before it make.
func backfillTree(ctx context.Context, conn *pgx.Conn, name string, tree *audit.Tree, from, to uint64) error {
	rows, err := conn.Query(ctx, `SELECT seq, envelope_raw, `+treeHashesColumn+` FROM license_audit
		WHERE seq > $1 AND seq <= $2 ORDER BY seq`, int64(from), int64(to))
	if err != nil {
		return fmt.Errorf("audit tree: %w", err)
	}
	var missing [][]any
	next := from + 1
	for rows.Next() {
		var seq int64
		var raw, stored []byte
		if err := rows.Scan(&seq, &raw, &stored); err != nil {
			rows.Close()
			return fmt.Errorf("audit tree: %w", err)
		}
		if uint64(seq) != next {
			rows.Close()
			return fmt.Errorf("audit tree: license_audit has no record %d", next)
		}
		next++
		h := tree.Append(raw)
		switch {
		case stored == nil:
			missing = append(missing, []any{seq, h})
		case !bytes.Equal(stored, h):
			rows.Close()
			return fmt.Errorf("audit tree: record %d's tree hashes are not those of the records up to it: run `ledger audit verify`", seq)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit tree: %w", err)
	}
	if next != to+1 {
		return fmt.Errorf("audit tree: license_audit has no record %d", next)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("audit tree: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if len(missing) > 0 {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{tableAuditTree}, []string{"seq", "tree_hashes"}, pgx.CopyFromRows(missing)); err != nil {
			return fmt.Errorf("audit tree: keep tree hashes: %w", treeError(err))
		}
	}
	tag, err := tx.Exec(ctx, `UPDATE projection_checkpoints SET tree_size = $1 WHERE name = $2 AND tree_size <= $3`, int64(to), name, int64(from))
	if err != nil {
		return fmt.Errorf("audit tree: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("%w: the checkpoint's tree_size moved during the backfill", ErrFenced)
	}
	return tx.Commit(ctx)
}

func treeError(err error) error {
	if pgErr, ok := err.(*pgconn.PgError); ok && pgErr.Code == "42501" {
		return fmt.Errorf("%w (the app role needs INSERT on %s: run `ledger migrate up`)", err, tableAuditTree)
	}
	return err
}

// Checkpoints is audit_checkpoints: every checkpoint the install signed.
type Checkpoints struct{ pool *pgxpool.Pool }

// Checkpoints returns the checkpoints kept in db.
func (db *DB) Checkpoints() *Checkpoints { return &Checkpoints{pool: db.pool} }

// Add implements audit.Checkpoints.
func (c *Checkpoints) Add(ctx context.Context, cp audit.Checkpoint) error {
	_, err := c.pool.Exec(ctx, `INSERT INTO audit_checkpoints (tree_size, root_hash, note, signed_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (tree_size, root_hash) DO NOTHING`, int64(cp.Size), cp.Root[:], string(cp.Note), cp.SignedAt)
	if err != nil {
		return fmt.Errorf("audit checkpoint: %w", err)
	}
	return nil
}

// Latest implements audit.Checkpoints.
func (c *Checkpoints) Latest(ctx context.Context) (audit.Checkpoint, error) {
	return c.one(ctx, `SELECT tree_size, root_hash, note, signed_at FROM audit_checkpoints ORDER BY signed_at DESC, tree_size DESC LIMIT 1`)
}

// BySize implements audit.Checkpoints.
func (c *Checkpoints) BySize(ctx context.Context, size uint64) (audit.Checkpoint, error) {
	return c.one(ctx, `SELECT tree_size, root_hash, note, signed_at FROM audit_checkpoints WHERE tree_size = $1
		ORDER BY signed_at DESC LIMIT 1`, int64(size))
}

func (c *Checkpoints) one(ctx context.Context, sql string, args ...any) (audit.Checkpoint, error) {
	var cp audit.Checkpoint
	var size int64
	var root []byte
	var msg string
	err := c.pool.QueryRow(ctx, sql, args...).Scan(&size, &root, &msg, &cp.SignedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return cp, audit.ErrNoCheckpoint
	}
	if err != nil {
		return cp, fmt.Errorf("audit checkpoint: %w", err)
	}
	if len(root) != audit.HashSize {
		return cp, fmt.Errorf("audit checkpoint of size %d: a root hash of %d bytes", size, len(root))
	}
	cp.Size, cp.Root, cp.Note = uint64(size), audit.Hash(root), []byte(msg)
	return cp, nil
}

// Checkpoints returns the checkpoints kept beside the trail a reads.
func (a *AuditReader) Checkpoints() *Checkpoints { return &Checkpoints{pool: a.pool} }
