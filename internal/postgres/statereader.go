package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/licenseledger/ledger/internal/projection"
	"github.com/licenseledger/ledger/license"
)

// StateReader reads org states from the read model for a process that
// keeps them in memory (a gatekeeper replica): the whole snapshot at a
// checkpoint for a fast start, one org at a time afterwards.
type StateReader struct {
	pool *pgxpool.Pool
}

// OpenStateReader connects to dsn (with Open's defaults). A dsn that does
// not parse wraps ErrInvalidDSN and returns no reader. A server that cannot
// be reached now wraps ErrUnavailable and still returns the reader: its
// pool connects when first used (the caller falls back to the stream
// meanwhile).
func OpenStateReader(ctx context.Context, dsn string) (*StateReader, error) {
	pool, err := newPool(ctx, dsn)
	if err != nil {
		return nil, err
	}
	r := &StateReader{pool: pool}
	if err := pool.Ping(ctx); err != nil {
		if err = classifyConnectError(err); !errors.Is(err, ErrUnavailable) {
			pool.Close()
			return nil, err
		}
		return r, err
	}
	return r, nil
}

// Close closes the pool.
func (r *StateReader) Close() { r.pool.Close() }

// Snapshot reads every org's state at the checkpoint row name (ReadSnapshot).
func (r *StateReader) Snapshot(ctx context.Context, name string, trust projection.Trust, pending PendingGrace) (Snapshot, error) {
	return ReadSnapshot(ctx, r.pool, name, trust, pending)
}

// State reads org's state from its row and revocations in one snapshot
// (LoadState).
func (r *StateReader) State(ctx context.Context, org string, trust projection.Trust, pending PendingGrace) (*license.OrgState, error) {
	tx, err := r.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	return LoadState(ctx, tx, org, trust, pending)
}
