package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/projection"
	"github.com/licenseledger/ledger/license"
)

// batcher commits batches of stream messages on one connection, keeping
// the committed org states and the chain head between batches. The live
// projector and replay share it; replay's connection resolves the table
// names to the shadow schema (search_path).
//
// A batch is one transaction: first the fenced checkpoint update, from
// the sequence before the batch to its last one (0 rows updated:
// ErrFenced, nothing committed); then the audit rows, copied (COPY)
// straight into license_audit; then the org rows, reduced to each org's
// last state in the batch, and the new revocations, copied into temporary
// tables and merged with one set-based INSERT … ON CONFLICT each. Rows
// are encoded in COPY's binary format as the batch is folded, so a write
// only streams bytes; the next batch is folded while one is written.
type batcher struct {
	conn    *pgx.Conn
	name    string // checkpoint row
	trust   func() projection.Trust
	log     *slog.Logger
	created time.Time

	seq   uint64
	chain audit.Hash
	// tree is the Merkle tree's right edge at seq: each audit row gets
	// its tree_hashes from it, unless skipTree (ProjectorConfig.SkipTree).
	tree     *audit.Tree
	skipTree bool
	// states holds every org with a row (the snapshot at the checkpoint,
	// then each batch's), so an org missing from it has no event yet.
	states map[string]*license.OrgState
	// fence is the checkpoint's updated_at as last read or written: the
	// fenced update also wants it unchanged, so a swap (ledger replay)
	// that rewrites the checkpoint at the same sequence fences too.
	fence     *time.Time
	tempReady bool

	// deferRows (replay's shadow build) writes the audit rows batch by
	// batch but the org rows and revocations only now and then (flush):
	// an org's row is then written once for all its events since, not
	// once per batch. The checkpoint moves with each flush only, so it
	// always names a consistent read model; audit rows may run ahead of
	// it, and a resumed build skips those (auditSeq).
	deferRows  bool
	checkpoint uint64              // the checkpoint the next flush moves from
	dirty      map[string]struct{} // orgs folded since the last flush
	deferred   copyBuf             // revocations folded since the last flush
	// deferredBytes is len(deferred.buf), for the loop that decides flushes
	// while the state fold runs on.
	deferredBytes atomic.Int64
	lastFlush     time.Time
	// auditSeq is the last audit row already in the table (a resumed
	// shadow build); auditHash its stored hash, which the fold must meet.
	auditSeq  uint64
	auditHash audit.Hash
	// auditWritten, if set (a build with deferred rows), is called once the
	// audit rows up to the last message wanted are committed: the final
	// batch writes them before its read model, and the shadow's deferred
	// indexes are built beside that write.
	auditWritten func()
}

// Flush bounds of a deferred read model.
const (
	flushEvery = time.Minute // at most this much work is folded again after a crash
	// maxDeferredRevoke bounds the bytes of revocations held for the next
	// flush (about 47 a revocation). The folded states hold every revocation
	// too, in maps, at more than twice that: the bound is there for a
	// stream of revocations alone, not to flush a rebuild early, since a
	// flush that is not the first merges every row it writes.
	maxDeferredRevoke = 128 << 20
)

var auditColumns = []string{"seq", "event_id", "subject", "org_slug", "type", "actor_kind", "actor_id",
	"occurred_at", "recorded_at", "envelope", "envelope_raw", "prev_hash", "hash", "tree_hashes"}

// AuditColumns are license_audit's columns in AuditRow order.
func AuditColumns() []string { return append([]string(nil), auditColumns...) }

// orgColumns are org_licenses' columns in rowArgs order.
var orgColumns = []string{"org_slug", "license_id", "customer", "tier", "products", "features", "issued_at",
	"not_before", "expires_at", "users_limit", "grace_days", "license_key", "fingerprint", "revoked", "revoked_note",
	"pending_license_id", "pending_not_before", "pending_license_key", "updated_at", "last_seq",
	"users_active", "users_reported_at"}

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
	var tree any
	if r.Tree != nil {
		tree = r.Tree
	}
	return []any{int64(r.Seq), eventID, r.Subject, nullIfEmpty(r.Org), r.Type, actorKind, actorID,
		occurred, r.RecordedAt, envelope, r.Raw, r.PrevHash[:], r.Hash[:], tree}
}

// appendAuditRow appends r as license_audit column values (auditColumns
// order), as AuditRow gives them. valid says r's message decoded as an
// envelope: its bytes are then known to be UTF-8 JSON.
func appendAuditRow(c *copyBuf, r audit.Record, valid bool) {
	c.row(len(auditColumns))
	c.int8(int64(r.Seq))
	if r.EventID != "" {
		c.uuid(r.EventID)
	} else {
		c.null()
	}
	c.text(r.Subject)
	if r.Org != "" {
		c.text(r.Org)
	} else {
		c.null()
	}
	c.text(r.Type)
	if r.EventID != "" {
		c.text(r.ActorKind)
		c.text(r.ActorID)
		c.timestamptz(r.At)
	} else {
		c.null()
		c.null()
		c.null()
	}
	c.timestamptz(r.RecordedAt)
	if valid && !bytes.Contains(r.Raw, jsonNUL) || !valid && audit.JSONBStorable(r.Raw) {
		c.jsonb(r.Raw)
	} else {
		c.null()
	}
	c.bytes(r.Raw)
	c.bytes(r.PrevHash[:])
	c.bytes(r.Hash[:])
	c.bytes(r.Tree)
}

// jsonNUL is the escape jsonb refuses (see audit.JSONBStorable).
var jsonNUL = []byte(`\u0000`)

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Temporary tables a batch merges from; emptied at every commit.
const (
	tempOrgRows = "ledger_batch_org_licenses"
	tempRevoked = "ledger_batch_revoked_licenses"
)

// prepare creates the connection's temporary tables, once.
func (b *batcher) prepare(ctx context.Context) error {
	if b.tempReady {
		return nil
	}
	for _, s := range []string{
		`CREATE TEMP TABLE IF NOT EXISTS ` + tempOrgRows + ` (LIKE org_licenses INCLUDING DEFAULTS) ON COMMIT DELETE ROWS`,
		`CREATE TEMP TABLE IF NOT EXISTS ` + tempRevoked + ` (LIKE revoked_licenses) ON COMMIT DELETE ROWS`,
	} {
		if _, err := b.conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("batch tables: %w", err)
		}
	}
	b.tempReady = true
	return nil
}

// batchResult is what a committed batch did.
type batchResult struct {
	seq     uint64 // the new checkpoint
	records int    // audit rows written
}

// prepared is a folded batch, ready to be written: its rows already in
// COPY's binary form.
type prepared struct {
	from, seq uint64 // the checkpoint it moves from and to (with rows)
	// rows: p carries the read model up to seq and moves the checkpoint;
	// otherwise (deferred rows) it only appends audit rows.
	rows    bool
	audit   copyBuf
	orgRows copyBuf
	revoked copyBuf
}

// fold folds msgs (in stream order; those at or below the batcher's
// sequence are skipped) into rows, and advances the batcher's sequence,
// chain and states as if the batch were committed: batches are written
// in order, and a failed write ends the batcher. It returns nil when no
// message was new. Orgs are folded in parallel, each org's messages in
// order, after the batch's uploads are verified together (signature
// verification dominates). With deferred rows, run uses
// foldDeferred instead.
func (b *batcher) fold(msgs []*events.Message) (*prepared, error) {
	p, w, err := b.foldAudit(msgs)
	if err != nil || p == nil {
		return nil, err
	}
	if err := b.foldStates(p, w); err != nil {
		p.release()
		return nil, err
	}
	return p, nil
}

func (b *batcher) newPrepared() *prepared {
	p := &prepared{from: b.seq, seq: b.seq, rows: !b.deferRows}
	if b.deferRows {
		p.from = b.checkpoint
	}
	return p
}

// stateWork is a batch's share of the state fold: its messages by org,
// and its uploads (verified together before the fold).
type stateWork struct {
	orgs    []string
	byOrg   map[string][]*events.Message
	uploads []*events.Message
}

// foldAudit is fold's serial part: the chain and the audit rows of msgs,
// and their messages grouped by org for foldStates. It advances the
// batcher's sequence and chain; nil: no message was new.
func (b *batcher) foldAudit(msgs []*events.Message) (*prepared, stateWork, error) {
	p := b.newPrepared()
	w := stateWork{byOrg: map[string][]*events.Message{}}
	chain, seq, now := b.chain, b.seq, time.Now().UTC()
	// Room for every row up front: the raw bytes twice (jsonb and bytea)
	// and the other columns.
	size := 0
	for _, m := range msgs {
		size += 2*len(m.Raw) + len(m.Subject) + auditRowOverhead
	}
	p.audit.grow(size)
	var leaves []audit.Hash
	if !b.skipTree {
		leaves = leafHashes(msgs)
	}
	for i, m := range msgs {
		if m.Seq <= seq {
			continue // redelivered: already in this batch or committed
		}
		rec := audit.NewRecord(m, chain, now)
		if !b.skipTree {
			rec.Tree = b.tree.AppendHash(leaves[i])
		}
		chain, seq = rec.Hash, m.Seq
		switch {
		case seq > b.auditSeq:
			appendAuditRow(&p.audit, rec, m.Envelope != nil)
		case seq == b.auditSeq && chain != b.auditHash:
			p.release()
			return nil, w, fmt.Errorf("the shadow's audit row at %d does not match the stream's message: "+
				"drop the shadow (DROP SCHEMA %s CASCADE) and run the replay again", seq, ShadowSchema)
		}
		if !m.IsOrgSubject() || !events.ValidOrg(m.Org()) {
			continue
		}
		if _, ok := w.byOrg[m.Org()]; !ok {
			w.orgs = append(w.orgs, m.Org())
		}
		w.byOrg[m.Org()] = append(w.byOrg[m.Org()], m)
		if m.Type() == events.TypeUploaded {
			w.uploads = append(w.uploads, m)
		}
	}
	if seq == b.seq {
		p.release()
		return nil, w, nil
	}
	p.seq = seq
	b.seq, b.chain = seq, chain
	return p, w, nil
}

// leafHashes returns the Merkle tree leaf hash of each message, hashed on
// every core: unlike the chain, leaves do not depend on each other.
func leafHashes(msgs []*events.Message) []audit.Hash {
	out := make([]audit.Hash, len(msgs))
	workers := min(runtime.GOMAXPROCS(0), len(msgs)/256+1)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(msgs); i += workers {
				out[i] = audit.LeafHash(msgs[i].Raw)
			}
		})
	}
	wg.Wait()
	return out
}

// foldStates is fold's parallel part: it folds w into the states, and
// their rows and new revocations into p (or, with deferred rows, into the
// deferred read model; p may then be nil).
func (b *batcher) foldStates(p *prepared, w stateWork) error {
	orgs := w.orgs
	folds := make([]orgFold, len(orgs))
	trust := b.trust()
	// The batch's uploads first, their signatures checked together on
	// every core (about half the work of checking them one by one); the
	// fold then settles each upload from that.
	if true {
		trust.Checked = projection.CheckUploads(trust, w.uploads, runtime.GOMAXPROCS(0))
	}
	work := make(chan int, len(orgs))
	for i := range orgs {
		work <- i
	}
	close(work)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(orgs)) {
		wg.Go(func() {
			for i := range work {
				st, ok := b.states[orgs[i]]
				if !ok {
					st = license.NewOrgState(orgs[i])
				}
				folds[i] = foldOrg(trust, st, w.byOrg[orgs[i]])
			}
		})
	}
	wg.Wait()
	for _, f := range folds {
		for _, s := range f.skipped {
			b.log.Warn("event skipped for state", "seq", s.seq, "subject", s.subject, "err", s.err)
		}
		if f.tooNew != nil {
			return f.tooNew
		}
	}
	for i, f := range folds {
		var revoked *copyBuf
		if b.deferRows {
			revoked = &b.deferred
			if b.dirty == nil {
				b.dirty = map[string]struct{}{}
			}
			b.dirty[orgs[i]] = struct{}{}
		} else {
			revoked = &p.revoked
			appendOrgRow(&p.orgRows, projection.RowOf(f.state))
		}
		if len(f.revoked) > 0 {
			revoked.grow(len(f.revoked) * (len(orgs[i]) + 42))
		}
		for _, r := range f.revoked {
			revoked.row(3)
			revoked.text(orgs[i])
			revoked.uuid(r.licenseID)
			revoked.int8(int64(r.seq))
		}
		b.states[orgs[i]] = f.state
	}
	b.deferredBytes.Store(int64(len(b.deferred.buf)))
	return nil
}

// flushDue says whether the deferred read model is due for a flush.
func (b *batcher) flushDue() bool {
	if b.lastFlush.IsZero() {
		b.lastFlush = time.Now()
	}
	return b.deferredBytes.Load() >= maxDeferredRevoke || time.Since(b.lastFlush) >= flushEvery
}

// flushInto moves the deferred read model into p, which then moves the
// checkpoint to its sequence: the rows of every org folded since the last
// flush, and their revocations. The state fold must be caught up.
func (b *batcher) flushInto(p *prepared) {
	p.orgRows.grow(len(b.dirty) * 1024)
	for org := range b.dirty {
		appendOrgRow(&p.orgRows, projection.RowOf(b.states[org]))
	}
	p.revoked, b.deferred = b.deferred, copyBuf{}
	b.deferredBytes.Store(0)
	p.rows, p.from = true, b.checkpoint
	b.dirty, b.checkpoint, b.lastFlush = nil, p.seq, time.Now()
}

// auditRowOverhead is an audit row's bytes in COPY form besides its raw
// envelope (twice) and subject: counts, lengths, ids, times, hashes.
const auditRowOverhead = 2 + 14*4 + 8 + 16 + 64 + 8 + 8 + 1 + 64 + 64 + 2*audit.HashSize

// release hands p's buffers back once p is written (or given up).
func (p *prepared) release() {
	if p == nil {
		return
	}
	p.audit.release()
	p.orgRows.release()
	p.revoked.release()
}

// orgFold is one org's share of a batch.
type orgFold struct {
	state   *license.OrgState
	revoked []revocation // new revocations
	skipped []skippedEvent
	tooNew  error
}

type revocation struct {
	licenseID string
	seq       uint64
}

// revokes reports whether f already revokes id; seen indexes f.revoked
// once it is long (most orgs revoke one id in a batch, if any).
func (f *orgFold) revokes(id string, seen *map[string]bool) bool {
	if len(f.revoked) < 16 {
		for _, r := range f.revoked {
			if r.licenseID == id {
				return true
			}
		}
		return false
	}
	if *seen == nil {
		*seen = make(map[string]bool, 2*len(f.revoked))
		for _, r := range f.revoked {
			(*seen)[r.licenseID] = true
		}
	}
	if (*seen)[id] {
		return true
	}
	(*seen)[id] = true // it is appended next
	return false
}

type skippedEvent struct {
	seq     uint64
	subject string
	err     error
}

// foldOrg folds one org's messages of a batch, in order, into st. The
// revocations it returns are the license ids st (the committed state,
// which holds every revocation revoked_licenses has for the org) does
// not know yet, each with its first revoking sequence.
func foldOrg(trust projection.Trust, st *license.OrgState, msgs []*events.Message) orgFold {
	f := orgFold{state: st}
	var seen map[string]bool // made once an org revokes many ids in a batch
	for _, m := range msgs {
		n, outcome, err := projection.Apply(trust, f.state, m)
		switch outcome {
		case projection.TooNew:
			f.tooNew = fmt.Errorf("%w: seq %d: %v", ErrSchemaTooNew, m.Seq, err)
			return f
		case projection.Invalid:
			f.skipped = append(f.skipped, skippedEvent{m.Seq, m.Subject, err})
		case projection.Applied:
			// An invalidation's license id, as the fold read it.
			if id, r, ok := n.Revoked.Newest(); ok && r.Seq == m.Seq && m.Type() == events.TypeInvalidated {
				// The first revocation of a license id is the one kept.
				if _, committed := st.Revoked.Get(id); !committed && !f.revokes(id, &seen) {
					f.revoked = append(f.revoked, revocation{id, m.Seq})
				}
			}
		}
		f.state = n
	}
	return f
}

// write commits p in one transaction with the fenced checkpoint. It
// returns ErrFenced when the checkpoint moved under the batcher.
//
// New revocations are copied straight into revoked_licenses: the
// committed states know every revocation the table holds. Should the
// table hold one anyway (a row written behind the projector's back), the
// batch is written again merging them (INSERT … ON CONFLICT DO NOTHING),
// so the first revocation stays.
func (b *batcher) write(ctx context.Context, p *prepared) error {
	err := b.writeTx(ctx, p, true)
	if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == uniqueViolation && pe.TableName == "revoked_licenses" {
		b.log.Warn("revoked_licenses holds a revocation the projector did not fold; merging this batch's revocations instead",
			"seq", p.seq, "constraint", pe.ConstraintName)
		err = b.writeTx(ctx, p, false)
	}
	return err
}

// writeAuditFirst commits p's audit rows on their own (as a deferred
// batch does: the checkpoint does not move, a resumed build skips them),
// takes them off p and calls auditWritten.
func (b *batcher) writeAuditFirst(ctx context.Context, p *prepared) error {
	if err := writeAudit(ctx, b.conn.PgConn(), p); err != nil {
		return err
	}
	p.audit.release()
	p.audit = copyBuf{}
	b.auditWritten()
	return nil
}

// writeAudit copies p's audit rows on conn.
func writeAudit(ctx context.Context, conn *pgconn.PgConn, p *prepared) error {
	if _, err := p.audit.copyTo(ctx, conn, tableAudit, auditColumns); err != nil {
		return fmt.Errorf("audit rows: %w", err)
	}
	return nil
}

// uniqueViolation is PostgreSQL's SQLSTATE for a duplicate key.
const uniqueViolation = "23505"

func (b *batcher) writeTx(ctx context.Context, p *prepared, directRevocations bool) error {
	if !p.rows {
		// Deferred rows: the audit rows only, which the next flush's
		// checkpoint covers (a resumed build skips them).
		return writeAudit(ctx, b.conn.PgConn(), p)
	}
	if err := b.prepare(ctx); err != nil {
		return err
	}
	tx, err := b.conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	// The fence first: a writer that meets a swap (ledger replay) in
	// progress waits for it here, then finds the checkpoint moved.
	var fence *time.Time
	treeSize := "$1"
	if b.skipTree {
		treeSize = "tree_size"
	}
	err = tx.QueryRow(ctx, `UPDATE projection_checkpoints SET last_seq = $1, tree_size = `+treeSize+`, stream_created = $2, updated_at = now()
		WHERE name = $3 AND last_seq = $4 AND updated_at IS NOT DISTINCT FROM $5 RETURNING updated_at`,
		int64(p.seq), b.created, b.name, int64(p.from), b.fence).Scan(&fence)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrFenced
	}
	if err != nil {
		return err
	}
	if err := writeAudit(ctx, tx.Conn().PgConn(), p); err != nil {
		return err
	}
	batch := &pgx.Batch{}
	switch {
	case p.orgRows.rows == 0:
	case b.deferRows && p.from == 0:
		// A build's first flush: org_licenses is empty, as rows are only
		// ever written with the checkpoint that covers them.
		if _, err := p.orgRows.copyTo(ctx, tx.Conn().PgConn(), tableOrgLicenses, orgColumns); err != nil {
			return fmt.Errorf("read model rows: %w", err)
		}
	default:
		if _, err := p.orgRows.copyTo(ctx, tx.Conn().PgConn(), tempOrgRows, orgColumns); err != nil {
			return fmt.Errorf("read model rows: %w", err)
		}
		batch.Queue(mergeOrgRows)
	}
	if p.revoked.rows > 0 {
		into := tempRevoked
		if directRevocations {
			into = tableRevoked
		}
		if _, err := p.revoked.copyTo(ctx, tx.Conn().PgConn(), into, []string{"org_slug", "license_id", "seq"}); err != nil {
			return fmt.Errorf("revocations: %w", err)
		}
		if !directRevocations {
			batch.Queue(`INSERT INTO revoked_licenses (org_slug, license_id, seq)
			SELECT org_slug, license_id, seq FROM ` + tempRevoked + ` ON CONFLICT DO NOTHING`)
		}
	}
	if batch.Len() > 0 {
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return fmt.Errorf("read model rows: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	b.fence = fence
	return nil
}

// run folds the messages of in and writes them in batches until ctx ends
// (its error), srcErr delivers the source's end, a write fails, or last(seq)
// says the message at seq was the last one wanted (nil, once it is
// committed). A batch is written when it holds maxBatch messages or wait
// after its first one; the next batch is folded while the previous one
// is written. committed is called after each commit, in order.
func (b *batcher) run(ctx context.Context, in <-chan *events.Message, srcErr <-chan error, maxBatch int,
	wait time.Duration, last func(uint64) bool, committed func(batchResult)) error {
	var (
		inflight chan error // the write in progress, nil when none
		writing  batchResult
		pending  []*events.Message
		done     bool
	)
	collect := func(err error) error {
		inflight = nil
		if err == nil {
			committed(writing)
		}
		return err
	}
	drain := func() error {
		if inflight == nil {
			return nil
		}
		return collect(<-inflight)
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	// A rebuild that is interrupted finishes the write in flight and
	// flushes what it deferred, so the next one resumes from there. Its
	// state fold (signature verification) runs beside the audit rows'
	// writes, a few batches behind at most.
	wctx := ctx
	var sf *stateFolder
	if b.deferRows {
		var cancel context.CancelFunc
		wctx, cancel = withGrace(ctx, flushGrace)
		defer cancel()
		sf = b.startStateFolder()
		defer sf.stop()
	}
	for {
		select {
		case m := <-in:
			if len(pending) == 0 {
				timer.Reset(wait)
			}
			pending = append(pending, m)
			done = last != nil && last(m.Seq)
			if len(pending) < maxBatch && !done {
				continue
			}
		case <-timer.C:
		case err := <-inflight:
			if err := collect(err); err != nil {
				return err
			}
			continue
		case err := <-sf.failed():
			drain()
			return err
		case err := <-srcErr:
			if derr := drain(); derr != nil {
				return derr
			}
			b.flushDeferred(ctx, sf)
			return err
		case <-ctx.Done():
			if drain() == nil {
				b.flushDeferred(ctx, sf)
			}
			return ctx.Err()
		}
		if len(pending) > 0 {
			var p *prepared
			var err error
			if sf != nil {
				p, err = b.foldDeferred(sf, pending, done)
			} else {
				p, err = b.fold(pending)
			}
			pending = pending[:0]
			if err != nil {
				drain()
				return err
			}
			if err := drain(); err != nil {
				return err
			}
			if p != nil {
				inflight, writing = make(chan error, 1), batchResult{seq: p.seq, records: p.audit.rows}
				final := done && b.deferRows && b.auditWritten != nil
				go func(ch chan error) {
					var err error
					if final {
						err = b.writeAuditFirst(wctx, p)
					}
					if err == nil {
						err = b.write(wctx, p)
					}
					p.release()
					ch <- err
				}(inflight)
			}
		}
		if done {
			return drain()
		}
	}
}

// foldDeferred is fold with deferred rows: the audit rows at once, the
// states on sf; a flush (final, or due) waits for sf to catch up.
func (b *batcher) foldDeferred(sf *stateFolder, msgs []*events.Message, final bool) (*prepared, error) {
	p, w, err := b.foldAudit(msgs)
	if err != nil {
		return nil, err
	}
	if p != nil {
		if err := sf.fold(w); err != nil {
			p.release()
			return nil, err
		}
	}
	if !final && (p == nil || !b.flushDue()) {
		return p, nil
	}
	if err := sf.wait(); err != nil {
		p.release()
		return nil, err
	}
	if p == nil && len(b.dirty) > 0 {
		p = b.newPrepared()
	}
	if p != nil {
		b.flushInto(p)
	}
	return p, nil
}

// stateFolder runs foldStates for a batcher with deferred rows on its own
// goroutine, in batch order. The batcher's states, dirty set and deferred
// revocations are its own until wait returns.
type stateFolder struct {
	jobs   chan stateJob
	err    chan error // the first failure, once
	exited chan struct{}
}

type stateJob struct {
	w    stateWork
	done chan error // a wait: answered once every earlier job is folded
}

// stateFolderQueue bounds the batches folded into states behind the audit
// rows (their messages stay in memory until then).
const stateFolderQueue = 2

func (b *batcher) startStateFolder() *stateFolder {
	sf := &stateFolder{jobs: make(chan stateJob, stateFolderQueue), err: make(chan error, 1), exited: make(chan struct{})}
	go func() {
		defer close(sf.exited)
		var failed error
		for j := range sf.jobs {
			switch {
			case j.done != nil:
				j.done <- failed
			case failed == nil:
				if failed = b.foldStates(nil, j.w); failed != nil {
					sf.err <- failed
				}
			}
		}
	}()
	return sf
}

// fold queues w, waiting while the folder is stateFolderQueue batches
// behind; it returns an earlier failure instead.
func (sf *stateFolder) fold(w stateWork) error {
	select {
	case sf.jobs <- stateJob{w: w}:
		return nil
	case err := <-sf.err:
		sf.err <- err
		return err
	}
}

// wait returns once every queued batch is folded, with the first failure.
func (sf *stateFolder) wait() error {
	done := make(chan error, 1)
	sf.jobs <- stateJob{done: done}
	return <-done
}

// failed delivers the folder's failure (never, for a nil folder).
func (sf *stateFolder) failed() <-chan error {
	if sf == nil {
		return nil
	}
	return sf.err
}

func (sf *stateFolder) stop() {
	close(sf.jobs)
	<-sf.exited
}

// flushDeferred writes the deferred read model on the way out of run
// (interrupted, or the source failed), so that a resumed build folds
// little again; a failure only costs that refolding.
func (b *batcher) flushDeferred(ctx context.Context, sf *stateFolder) {
	if sf == nil || sf.wait() != nil || len(b.dirty) == 0 {
		return
	}
	p := b.newPrepared()
	b.flushInto(p)
	defer p.release()
	ctx, cancel := withGrace(ctx, flushGrace)
	defer cancel()
	if err := b.write(ctx, p); err != nil {
		b.log.Warn("the rebuilt read model since the last checkpoint was not written; a resumed build folds it again",
			"checkpoint", p.from, "err", err)
	}
}

// flushGrace is how long an interrupted rebuild may take to save its work.
const flushGrace = 30 * time.Second

// withGrace returns a context that ends grace after ctx does.
func withGrace(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	g, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var mu sync.Mutex
	var timer *time.Timer
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		timer = time.AfterFunc(grace, cancel)
		mu.Unlock()
	})
	return g, func() {
		stop()
		mu.Lock()
		if timer != nil {
			timer.Stop()
		}
		mu.Unlock()
		cancel()
	}
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

// mergeOrgRows upserts the batch's org rows, never going back in sequence.
const mergeOrgRows = `INSERT INTO org_licenses (org_slug, license_id, customer, tier, products, features, issued_at,
	not_before, expires_at, users_limit, grace_days, license_key, fingerprint, revoked, revoked_note,
	pending_license_id, pending_not_before, pending_license_key, updated_at, last_seq, users_active, users_reported_at)
SELECT org_slug, license_id, customer, tier, products, features, issued_at,
	not_before, expires_at, users_limit, grace_days, license_key, fingerprint, revoked, revoked_note,
	pending_license_id, pending_not_before, pending_license_key, updated_at, last_seq, users_active, users_reported_at FROM ` + tempOrgRows + `
ON CONFLICT (org_slug) DO UPDATE SET license_id = excluded.license_id, customer = excluded.customer,
	tier = excluded.tier, products = excluded.products, features = excluded.features,
	issued_at = excluded.issued_at, not_before = excluded.not_before, expires_at = excluded.expires_at,
	users_limit = excluded.users_limit, grace_days = excluded.grace_days, license_key = excluded.license_key,
	fingerprint = excluded.fingerprint, revoked = excluded.revoked, revoked_note = excluded.revoked_note,
	pending_license_id = excluded.pending_license_id, pending_not_before = excluded.pending_not_before,
	pending_license_key = excluded.pending_license_key, updated_at = excluded.updated_at,
	last_seq = excluded.last_seq, users_active = excluded.users_active, users_reported_at = excluded.users_reported_at
WHERE org_licenses.last_seq < excluded.last_seq`

// appendOrgRow appends r as org_licenses column values (orgColumns order).
func appendOrgRow(c *copyBuf, r projection.Row) {
	c.row(len(orgColumns))
	c.text(r.OrgSlug)
	c.uuidOrNull(r.LicenseID)
	c.textOrNull(r.Customer)
	c.textOrNull(r.Tier)
	c.textArray(r.Products)
	c.textArray(r.Features)
	c.timestamptzOrNull(r.IssuedAt)
	c.timestamptzOrNull(r.NotBefore)
	c.timestamptzOrNull(r.ExpiresAt)
	c.int4OrNull(r.UsersLimit)
	c.int4OrNull(r.GraceDays)
	c.textOrNull(r.LicenseKey)
	c.textOrNull(r.Fingerprint)
	c.bool(r.Revoked)
	c.textOrNull(r.RevokedNote)
	c.uuidOrNull(r.PendingLicenseID)
	c.timestamptzOrNull(r.PendingNotBefore)
	c.textOrNull(r.PendingLicenseKey)
	if r.UpdatedAt.IsZero() {
		c.null()
	} else {
		c.timestamptz(r.UpdatedAt)
	}
	c.int8(int64(r.LastSeq))
	c.int4OrNull(r.UsersActive)
	c.timestamptzOrNull(r.UsersReportedAt)
}
