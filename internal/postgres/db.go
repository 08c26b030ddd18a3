package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/licenseledger/ledger/internal/projection"
)

// DB is a pool of connections to the ledger's database as the commands
// hold it: they read the audit trail and the read model through it, check
// its privileges, run the projector on it and, after a reseed, point its
// checkpoints at the new stream. It is safe for concurrent use.
type DB struct{ pool *pgxpool.Pool }

// OpenDB is Open, returning a DB.
func OpenDB(ctx context.Context, dsn string) (*DB, error) {
	pool, err := Open(ctx, dsn)
	if err != nil {
		return nil, err
	}
	return &DB{pool: pool}, nil
}

// OpenDBLater is OpenDB for a server that may be down: it does not wait
// for it, and the pool connects on first use. Only a DSN that does not
// parse (ErrInvalidDSN) is an error.
func OpenDBLater(ctx context.Context, dsn string) (*DB, error) {
	pool, err := newPool(ctx, dsn)
	if err != nil {
		return nil, err
	}
	return &DB{pool: pool}, nil
}

// Close closes every connection of the pool.
func (db *DB) Close() { db.pool.Close() }

// AuditReader returns a reader of license_audit over db.
func (db *DB) AuditReader() *AuditReader { return NewAuditReader(db.pool) }

// CheckPrivileges is CheckPrivileges on db's login user.
func (db *DB) CheckPrivileges(ctx context.Context) error { return CheckPrivileges(ctx, db.pool) }

// ReadSnapshot is ReadSnapshot on db.
func (db *DB) ReadSnapshot(ctx context.Context, name string, trust projection.Trust, pending PendingGrace) (Snapshot, error) {
	return ReadSnapshot(ctx, db.pool, name, trust, pending)
}

// NewProjector returns a projector writing to db; cfg.Pool is ignored.
func (db *DB) NewProjector(cfg ProjectorConfig) *Projector {
	cfg.Pool = db.pool
	return NewProjector(cfg)
}

// AdoptStreamCheckpoints points the projection checkpoints at or before
// head at the stream created at created, a stream reseeded from the audit
// trail: the messages up to head are the ones they were taken on. It
// returns the number of checkpoints it moved; those already on that
// stream, and those past head, are left alone. It needs UPDATE on
// projection_checkpoints (the schema owner's connection).
func (db *DB) AdoptStreamCheckpoints(ctx context.Context, created time.Time, head uint64) (int64, error) {
	tag, err := db.pool.Exec(ctx, `UPDATE projection_checkpoints SET stream_created = $1, updated_at = now()
		WHERE last_seq <= $2 AND stream_created IS DISTINCT FROM $1`, created.UTC().Truncate(time.Microsecond), int64(head))
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}
