package postgres

import (
	"cmp"
	"context"
	"errors"
	"runtime"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/projection"
	"github.com/licenseledger/ledger/license"
)

// querier is what reads need: a pool, a connection or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// rowColumns are org_licenses' columns in Row order.
const rowColumns = `org_slug, license_id::text, customer, tier, products, features, issued_at, not_before,
	expires_at, users_limit, grace_days, license_key, fingerprint, revoked, revoked_note,
	pending_license_id::text, pending_not_before, pending_license_key, updated_at, last_seq, users_active, users_reported_at`

func scanRow(r pgx.Row) (projection.Row, error) {
	var row projection.Row
	var updated *time.Time
	var last int64
	err := r.Scan(&row.OrgSlug, &row.LicenseID, &row.Customer, &row.Tier, &row.Products, &row.Features,
		&row.IssuedAt, &row.NotBefore, &row.ExpiresAt, &row.UsersLimit, &row.GraceDays, &row.LicenseKey,
		&row.Fingerprint, &row.Revoked, &row.RevokedNote, &row.PendingLicenseID, &row.PendingNotBefore,
		&row.PendingLicenseKey, &updated, &last, &row.UsersActive, &row.UsersReportedAt)
	if updated != nil {
		row.UpdatedAt = updated.UTC()
	}
	row.LastSeq = uint64(last)
	for _, t := range []**time.Time{&row.IssuedAt, &row.NotBefore, &row.ExpiresAt, &row.PendingNotBefore, &row.UsersReportedAt} {
		if *t != nil {
			u := (*t).UTC()
			*t = &u
		}
	}
	return row, err
}

// ReadRow returns org's row, or false when it has none.
func ReadRow(ctx context.Context, q querier, org string) (projection.Row, bool, error) {
	row, err := scanRow(q.QueryRow(ctx, `SELECT `+rowColumns+` FROM org_licenses WHERE org_slug = $1`, org))
	if errors.Is(err, pgx.ErrNoRows) {
		return projection.Row{}, false, nil
	}
	return row, err == nil, err
}

// ReadRows calls fn for every row, in org order.
func ReadRows(ctx context.Context, q querier, fn func(projection.Row) error) error {
	rows, err := q.Query(ctx, `SELECT `+rowColumns+` FROM org_licenses ORDER BY org_slug`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		row, err := scanRow(rows)
		if err != nil {
			return err
		}
		if err := fn(row); err != nil {
			return err
		}
	}
	return rows.Err()
}

// revokedOf returns org's revoked license ids with the revoking sequence.
func revokedOf(ctx context.Context, q querier, org string) (map[string]uint64, error) {
	rows, err := q.Query(ctx, `SELECT license_id::text, seq FROM revoked_licenses WHERE org_slug = $1`, org)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]uint64{}
	for rows.Next() {
		var id string
		var seq int64
		if err := rows.Scan(&id, &seq); err != nil {
			return nil, err
		}
		out[id] = uint64(seq)
	}
	return out, rows.Err()
}

// PendingGrace finds the effective grace recorded when org's pending
// license (by fingerprint) was uploaded; the row does not keep it.
type PendingGrace func(ctx context.Context, org, fingerprint string, upTo uint64) (int, error)

// LoadState rebuilds org's folded state from its row and revocations, with
// every stored key re-verified under trust. A missing row is an org with
// no events.
func LoadState(ctx context.Context, q querier, org string, trust projection.Trust, pending PendingGrace) (*license.OrgState, error) {
	row, ok, err := ReadRow(ctx, q, org)
	if err != nil || !ok {
		return license.NewOrgState(org), err
	}
	revoked, err := revokedOf(ctx, q, org)
	if err != nil {
		return nil, err
	}
	return stateFromRow(ctx, row, revoked, trust, pending)
}

func stateFromRow(ctx context.Context, row projection.Row, revoked map[string]uint64, trust projection.Trust, pending PendingGrace) (*license.OrgState, error) {
	org := row.OrgSlug
	s := &license.OrgState{Org: org, Seq: row.LastSeq, UpdatedAt: row.UpdatedAt}
	if row.UsersActive != nil && row.UsersReportedAt != nil {
		s.UsersActive, s.UsersReportedAt = *row.UsersActive, *row.UsersReportedAt
	}
	if len(revoked) > 0 {
		set := make(map[string]license.Revocation, len(revoked))
		for id, seq := range revoked {
			set[id] = license.Revocation{Seq: seq}
		}
		if row.Revoked && row.LicenseID != nil && row.RevokedNote != nil {
			if r, ok := set[*row.LicenseID]; ok {
				r.Note = *row.RevokedNote
				set[*row.LicenseID] = r
			}
		}
		s.Revoked = license.NewRevocations(set)
	}
	if row.LicenseKey != nil {
		up := events.Uploaded{Key: *row.LicenseKey, Slot: events.SlotCurrent}
		up.LicenseID, up.Fingerprint, up.GraceDaysEffective = orEmpty(row.LicenseID), orEmpty(row.Fingerprint), derefInt(row.GraceDays)
		s.Current = projection.NewSlot(trust, org, up)
	}
	if row.PendingLicenseKey != nil {
		up := events.Uploaded{Key: *row.PendingLicenseKey, Slot: events.SlotPending, LicenseID: orEmpty(row.PendingLicenseID),
			Fingerprint: license.Fingerprint(*row.PendingLicenseKey)}
		var err error
		up.GraceDaysEffective, err = pendingGrace(ctx, up, org, row.LastSeq, pending)
		if err != nil {
			return nil, err
		}
		s.Pending = projection.NewSlot(trust, org, up)
	}
	return s, nil
}

// Snapshot is the read model as of a checkpoint.
type Snapshot struct {
	Checkpoint    uint64
	StreamCreated *time.Time
	States        []*license.OrgState
}

// ReadSnapshot reads every row and the checkpoint in one consistent
// transaction: the states are exactly the fold of the stream up to
// Checkpoint, so a reader continues from Checkpoint + 1.
func ReadSnapshot(ctx context.Context, pool *pgxpool.Pool, name string, trust projection.Trust, pending PendingGrace) (Snapshot, error) {
	var snap Snapshot
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return snap, err
	}
	defer tx.Rollback(ctx)
	var seq int64
	err = tx.QueryRow(ctx, `SELECT last_seq, stream_created FROM projection_checkpoints WHERE name = $1`, name).Scan(&seq, &snap.StreamCreated)
	if errors.Is(err, pgx.ErrNoRows) {
		return snap, nil
	}
	if err != nil {
		return snap, err
	}
	snap.Checkpoint = uint64(seq)
	revoked := map[string]map[string]uint64{}
	rows, err := tx.Query(ctx, `SELECT org_slug, license_id::text, seq FROM revoked_licenses`)
	if err != nil {
		return snap, err
	}
	for rows.Next() {
		var org, id string
		var s int64
		if err := rows.Scan(&org, &id, &s); err != nil {
			rows.Close()
			return snap, err
		}
		if revoked[org] == nil {
			revoked[org] = map[string]uint64{}
		}
		revoked[org][id] = uint64(s)
	}
	rows.Close()
	// Rows become states on every core as they are read (a replica loads
	// a million of them at start), never all held as rows at once.
	workers := runtime.GOMAXPROCS(0)
	batches := make(chan []projection.Row, 2*workers)
	var mu sync.Mutex
	var convErr error
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				states := make([]*license.OrgState, 0, len(b))
				for _, r := range b {
					st, err := stateFromRow(ctx, r, revoked[r.OrgSlug], trust, pending)
					if err != nil {
						mu.Lock()
						convErr = cmp.Or(convErr, err)
						mu.Unlock()
						break
					}
					states = append(states, st)
				}
				mu.Lock()
				snap.States = append(snap.States, states...)
				mu.Unlock()
			}
		}()
	}
	batch := make([]projection.Row, 0, snapshotBatch)
	err = ReadRows(ctx, tx, func(r projection.Row) error {
		if batch = append(batch, r); len(batch) == snapshotBatch {
			batches <- batch
			batch = make([]projection.Row, 0, snapshotBatch)
		}
		return nil
	})
	if len(batch) > 0 {
		batches <- batch
	}
	close(batches)
	wg.Wait()
	if err = cmp.Or(err, convErr); err != nil {
		return Snapshot{}, err
	}
	return snap, nil
}

// snapshotBatch is how many rows ReadSnapshot hands a core at once.
const snapshotBatch = 1024

func pendingGrace(ctx context.Context, up events.Uploaded, org string, upTo uint64, pending PendingGrace) (int, error) {
	if l, err := license.Decode([]byte(up.Key)); err == nil && l.Payload != nil && l.Payload.GraceDays != nil {
		return *l.Payload.GraceDays, nil
	}
	if pending == nil {
		return license.DefaultGraceDays, nil
	}
	return pending(ctx, org, up.Fingerprint, upTo)
}

func orEmpty(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func derefInt(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}
