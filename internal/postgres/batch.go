package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/projection"
)

// batcher commits batches for an active projector, keeping the committed
// org states and chain head between batches.
type batcher struct {
	p       *Projector
	conn    *pgx.Conn
	seq     uint64
	chain   audit.Hash
	created time.Time
	states  map[string]*projection.OrgState
}

var auditColumns = []string{"seq", "event_id", "subject", "org_slug", "type", "actor_kind", "actor_id",
	"occurred_at", "recorded_at", "envelope", "envelope_raw", "prev_hash", "hash"}

// AuditRow is r as license_audit column values (the COPY order).
func AuditRow(r audit.Record) []any {
	var eventID, actorKind, actorID any
	var occurred any
	if r.EventID != "" {
		eventID, actorKind, actorID, occurred = r.EventID, r.ActorKind, r.ActorID, r.At
	}
	var envelope any
	if audit.JSONBStorable(r.Raw) {
		envelope = string(r.Raw)
	}
	return []any{int64(r.Seq), eventID, r.Subject, nullIfEmpty(r.Org), r.Type, actorKind, actorID,
		occurred, r.RecordedAt, envelope, r.Raw, r.PrevHash[:], r.Hash[:]}
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// commit projects msgs in one transaction with the fenced checkpoint.
func (b *batcher) commit(ctx context.Context, msgs []*events.Message) error {
	p := b.p
	trust := projection.Trust{Ring: p.cfg.Keys.Ring(), InstallID: p.cfg.InstallID()}
	tx, err := b.conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	next := map[string]*projection.OrgState{}
	var records, revoked [][]any
	chain, seq, now := b.chain, b.seq, time.Now().UTC()
	for _, m := range msgs {
		if m.Seq <= seq {
			continue // redelivered: already in this batch or committed
		}
		rec := audit.NewRecord(m, chain, now)
		chain, seq = rec.Hash, m.Seq
		records = append(records, AuditRow(rec))
		if !m.IsOrgSubject() || !events.ValidOrg(m.Org()) {
			continue
		}
		st, err := b.state(ctx, tx, next, m.Org(), trust)
		if err != nil {
			return err
		}
		n, outcome, ferr := projection.Apply(trust, st, m)
		switch outcome {
		case projection.TooNew:
			return fmt.Errorf("%w: seq %d: %v", ErrSchemaTooNew, m.Seq, ferr)
		case projection.Invalid:
			p.cfg.Logger.Warn("event skipped for state", "seq", m.Seq, "subject", m.Subject, "err", ferr)
		case projection.Applied:
			if m.Type() == events.TypeInvalidated {
				var d events.Invalidated
				m.Envelope.DecodeData(&d)
				revoked = append(revoked, []any{m.Org(), d.LicenseID, int64(m.Seq)})
			}
		}
		next[m.Org()] = n
	}
	if len(records) == 0 {
		return nil
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"license_audit"}, auditColumns, pgx.CopyFromRows(records)); err != nil {
		return fmt.Errorf("audit rows: %w", err)
	}
	batch := &pgx.Batch{}
	for _, r := range revoked {
		batch.Queue(`INSERT INTO revoked_licenses (org_slug, license_id, seq) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, r...)
	}
	for _, st := range next {
		batch.Queue(upsertRow, rowArgs(projection.RowOf(st))...)
	}
	batch.Queue(`UPDATE projection_checkpoints SET last_seq = $1, stream_created = $2, updated_at = now()
		WHERE name = $3 AND last_seq = $4`, int64(seq), b.created, p.cfg.Name, int64(b.seq))
	res := tx.SendBatch(ctx, batch)
	for range batch.Len() - 1 {
		if _, err := res.Exec(); err != nil {
			res.Close()
			return fmt.Errorf("read model rows: %w", err)
		}
	}
	tag, err := res.Exec()
	res.Close()
	if err != nil {
		return err
	}
	if tag.RowsAffected() != 1 {
		return ErrFenced
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	b.seq, b.chain = seq, chain
	for org, st := range next {
		b.states[org] = st
	}
	p.applied.Store(seq)
	p.batches.Inc()
	p.events.Add(float64(len(records)))
	return nil
}

// state returns org's state: this batch's, the committed cache's, or the
// row's (re-verified).
func (b *batcher) state(ctx context.Context, tx pgx.Tx, next map[string]*projection.OrgState, org string, trust projection.Trust) (*projection.OrgState, error) {
	if st, ok := next[org]; ok {
		return st, nil
	}
	if st, ok := b.states[org]; ok {
		return st, nil
	}
	return LoadState(ctx, tx, org, trust, PendingGraceFrom(b.p.cfg.Source))
}

// PendingGraceFrom finds the effective grace of a pending upload by reading
// the org's subject on the stream.
func PendingGraceFrom(src Source) PendingGrace {
	return func(ctx context.Context, org, fingerprint string, upTo uint64) (int, error) {
		grace, found := 0, false
		err := src.ReadSubject(ctx, events.OrgSubject(org), 0, upTo, func(m *events.Message) error {
			var d events.Uploaded
			if m.Type() == events.TypeUploaded && m.Envelope.DecodeData(&d) == nil && d.Fingerprint == fingerprint {
				grace, found = d.GraceDaysEffective, true
			}
			return nil
		})
		if err == nil && !found {
			err = fmt.Errorf("pending license %s of %s: no upload event on the stream", fingerprint, org)
		}
		return grace, err
	}
}

const upsertRow = `INSERT INTO org_licenses (org_slug, license_id, customer, tier, products, features, issued_at,
	not_before, expires_at, users_limit, grace_days, license_key, fingerprint, revoked, revoked_note,
	pending_license_id, pending_not_before, pending_license_key, updated_at, last_seq)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
ON CONFLICT (org_slug) DO UPDATE SET license_id = excluded.license_id, customer = excluded.customer,
	tier = excluded.tier, products = excluded.products, features = excluded.features,
	issued_at = excluded.issued_at, not_before = excluded.not_before, expires_at = excluded.expires_at,
	users_limit = excluded.users_limit, grace_days = excluded.grace_days, license_key = excluded.license_key,
	fingerprint = excluded.fingerprint, revoked = excluded.revoked, revoked_note = excluded.revoked_note,
	pending_license_id = excluded.pending_license_id, pending_not_before = excluded.pending_not_before,
	pending_license_key = excluded.pending_license_key, updated_at = excluded.updated_at,
	last_seq = excluded.last_seq
WHERE org_licenses.last_seq < excluded.last_seq`

func rowArgs(r projection.Row) []any {
	var updated any
	if !r.UpdatedAt.IsZero() {
		updated = r.UpdatedAt
	}
	return []any{r.OrgSlug, r.LicenseID, r.Customer, r.Tier, r.Products, r.Features, r.IssuedAt, r.NotBefore,
		r.ExpiresAt, r.UsersLimit, r.GraceDays, r.LicenseKey, r.Fingerprint, r.Revoked, r.RevokedNote,
		r.PendingLicenseID, r.PendingNotBefore, r.PendingLicenseKey, updated, int64(r.LastSeq)}
}
