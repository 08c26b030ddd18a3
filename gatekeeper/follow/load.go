package follow

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/postgres"
	"github.com/licenseledger/ledger/internal/projection"
	"github.com/licenseledger/ledger/license"
)

// loadAll returns the state of every org with an event as of stream head
// h: the PostgreSQL snapshot when its checkpoint C belongs to this stream,
// with the stream's (C, h] folded on top when C < h (so a row is kept only
// where no later event touched its org: the trust rule), else the fold of
// the whole stream 1..h.
func (f *Follower) loadAll(ctx context.Context, created time.Time, h uint64, trust projection.Trust) (map[string]*license.OrgState, string, error) {
	states := map[string]*license.OrgState{}
	from, source := uint64(0), "stream"
	if f.pool != nil && h > 0 {
		snap, err := f.snapshot(ctx, created, h, trust)
		switch {
		case err != nil:
			f.log.Warn("read model unusable: folding the stream", "err", err)
		case snap != nil:
			// The read model has no enforcement column: _instance comes
			// from its subject, up to the checkpoint like the rows.
			inst, err := f.foldSubject(ctx, license.InstanceOrg, license.NewOrgState(license.InstanceOrg), snap.Checkpoint, trust)
			if err != nil {
				return nil, "", err
			}
			for _, st := range snap.States {
				if events.ValidOrg(st.Org) {
					states[st.Org] = st
				}
			}
			states[license.InstanceOrg] = inst
			from, source = snap.Checkpoint, "postgres"
			f.m.loads.WithLabelValues("postgres", "initial").Inc()
		}
	}
	if from < h {
		if err := f.fold(ctx, states, from, h, trust); err != nil {
			return nil, "", err
		}
		f.m.loads.WithLabelValues("stream", "initial").Inc()
		if source == "postgres" {
			source = "postgres+stream"
		}
	}
	return states, source, nil
}

// snapshot reads the read model at its checkpoint; nil when it cannot
// serve this stream (no checkpoint, another stream, ahead of the stream).
func (f *Follower) snapshot(ctx context.Context, created time.Time, h uint64, trust projection.Trust) (*postgres.Snapshot, error) {
	f.pgCalls.Add(1)
	snap, err := f.pool.Snapshot(ctx, f.cfg.Checkpoint, trust, f.pendingGrace)
	if err != nil {
		return nil, err
	}
	// PostgreSQL keeps microseconds; the stream's time has nanoseconds.
	created = created.UTC().Truncate(time.Microsecond)
	switch {
	case snap.Checkpoint == 0:
		return nil, nil
	case snap.StreamCreated == nil || !snap.StreamCreated.Equal(created):
		return nil, fmt.Errorf("checkpoint %d belongs to another stream (created %v, this one %s)", snap.Checkpoint, snap.StreamCreated, created.Format(time.RFC3339Nano))
	case snap.Checkpoint > h:
		// The projector moved on since h was read; the stream must have it.
		_, now, err := f.bus.Stream(ctx)
		if err != nil {
			return nil, err
		}
		if snap.Checkpoint > now {
			return nil, fmt.Errorf("checkpoint %d is past the stream head %d", snap.Checkpoint, now)
		}
	}
	return &snap, nil
}

// errFolded stops a bounded fold.
var errFolded = errors.New("folded")

// rawStream is a stream that can hand over messages undecoded
// (*natsbus.Bus), so that a load decodes them on every core.
type rawStream interface {
	ConsumeRaw(ctx context.Context, start uint64, heartbeat time.Duration, fn func(subject string, seq uint64, data []byte) error, onIdle func()) error
}

// fold applies the stream's messages in (from, to] to states: on every
// core when the stream hands them over undecoded, each org's messages on
// one core, in stream order.
func (f *Follower) fold(ctx context.Context, states map[string]*license.OrgState, from, to uint64, trust projection.Trust) error {
	if rs, ok := f.bus.(rawStream); ok && runtime.GOMAXPROCS(0) > 1 {
		return f.foldParallel(ctx, rs, states, from, to, trust)
	}
	return f.foldSerial(ctx, states, from, to, trust)
}

// rawMsg is a message as the stream handed it over.
type rawMsg struct {
	subject string
	seq     uint64
	data    []byte
}

// foldBatch is how many messages go to a worker at once.
const foldBatch = 256

// foldParallel is fold with the orgs split between one worker per core by
// a hash of their name: each worker decodes and folds its orgs' messages,
// which reach it in stream order.
func (f *Follower) foldParallel(ctx context.Context, rs rawStream, states map[string]*license.OrgState, from, to uint64, trust projection.Trust) error {
	n := runtime.GOMAXPROCS(0)
	seed := maphash.MakeSeed()
	parts := make([]projection.States, n)
	work := make([]chan []rawMsg, n)
	var wg sync.WaitGroup
	for k := range n {
		parts[k], work[k] = projection.States{}, make(chan []rawMsg, 4)
	}
	for org, st := range states { // seeded from the read model: the tail folds on top
		parts[maphash.String(seed, org)%uint64(n)][org] = st
	}
	for k := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for batch := range work[k] {
				for _, r := range batch {
					f.foldOne(parts[k], events.Decode(r.subject, r.seq, r.data), trust)
				}
			}
		}()
	}
	pending := make([][]rawMsg, n)
	err := rs.ConsumeRaw(ctx, from+1, f.cfg.Heartbeat, func(subject string, seq uint64, data []byte) error {
		if seq > to {
			return errFolded
		}
		if org, ok := strings.CutPrefix(subject, events.OrgPrefix); ok {
			k := maphash.String(seed, org) % uint64(n)
			pending[k] = append(pending[k], rawMsg{subject, seq, data})
			if len(pending[k]) == foldBatch {
				work[k] <- pending[k]
				pending[k] = make([]rawMsg, 0, foldBatch)
			}
		}
		if seq >= to {
			return errFolded
		}
		return nil
	}, nil)
	for k := range n {
		if len(pending[k]) > 0 {
			work[k] <- pending[k]
		}
		close(work[k])
	}
	wg.Wait()
	if !errors.Is(err, errFolded) {
		if err == nil {
			err = ctx.Err()
		}
		return fmt.Errorf("fold the stream up to %d: %w", to, err)
	}
	for _, part := range parts {
		for org, st := range part {
			states[org] = st
		}
	}
	return nil
}

// foldOne folds m into states, logging what it skipped.
func (f *Follower) foldOne(states projection.States, m *events.Message, trust projection.Trust) {
	if outcome, err := states.Apply(trust, m); err != nil && outcome != projection.Stale {
		f.log.Warn("event skipped for state", "seq", m.Seq, "subject", m.Subject, "outcome", outcome.String(), "err", err)
	}
}

// foldSerial is fold on one core.
func (f *Follower) foldSerial(ctx context.Context, states map[string]*license.OrgState, from, to uint64, trust projection.Trust) error {
	err := f.bus.Consume(ctx, from+1, f.cfg.Heartbeat, func(m *events.Message) error {
		if m.Seq > to {
			return errFolded
		}
		f.foldOne(states, m, trust)
		if m.Seq >= to {
			return errFolded
		}
		return nil
	}, nil)
	if errors.Is(err, errFolded) {
		return nil
	}
	if err == nil {
		err = ctx.Err()
	}
	return fmt.Errorf("fold the stream up to %d: %w", to, err)
}

// foldSubject folds org's subject from st up to sequence upTo.
func (f *Follower) foldSubject(ctx context.Context, org string, st *license.OrgState, upTo uint64, trust projection.Trust) (*license.OrgState, error) {
	err := f.bus.ReadSubject(ctx, events.OrgSubject(org), st.Seq, upTo, func(m *events.Message) error {
		st, _, _ = projection.Apply(trust, st, m)
		return nil
	})
	return st, err
}

// fromRows reports whether org's state may come from the read model:
// every org but _instance, whose enforcement mode has no column.
func fromRows(org string) bool { return org != license.InstanceOrg }

// toHead brings org to its subject's head. Before the initial load
// (initial), an uncached org is taken from its PostgreSQL row when the row
// is exactly at the subject's head (the trust rule); otherwise, and always
// after the load, the subject is folded from the cached sequence.
func (f *Follower) toHead(ctx context.Context, org string, initial bool) (*license.OrgState, error) {
	subject := events.OrgSubject(org)
	head, err := f.bus.Head(ctx, subject)
	if err != nil {
		if !initial {
			f.m.directFolds.WithLabelValues("error").Inc()
		}
		return nil, err
	}
	cur := f.cached(org)
	if cur != nil && cur.Seq >= head {
		return cur, nil
	}
	if head == 0 {
		return license.NewOrgState(org), nil
	}
	trust := f.trust()
	if cur == nil && initial && f.pool != nil && fromRows(org) {
		st, err := f.pgLoad(ctx, org, trust)
		switch {
		case err != nil:
			f.log.Warn("read model row unreadable: folding the subject", "org", org, "err", err)
		case st.Seq == head:
			f.m.loads.WithLabelValues("postgres", "org").Inc()
			return f.offer(org, st, trust), nil
		}
	}
	st := cur
	if st == nil {
		st = license.NewOrgState(org)
	}
	st, err = f.foldSubject(ctx, org, st, head, trust)
	if err != nil {
		if !initial {
			f.m.directFolds.WithLabelValues("error").Inc()
		}
		return nil, err
	}
	if initial {
		f.m.loads.WithLabelValues("stream", "org").Inc()
	} else {
		f.m.directFolds.WithLabelValues("ok").Inc()
	}
	return f.offer(org, st, trust), nil
}

// reloadFromPG reads org's row and keeps whichever of it and the cache is
// newer (the version guard: a row behind the cache is never used). An org
// with no row and no cache is empty and stays uncached. _instance is never
// reloaded from rows (they cannot hold its enforcement mode).
func (f *Follower) reloadFromPG(ctx context.Context, org string) (*license.OrgState, error) {
	if !fromRows(org) {
		return nil, errors.New("the read model does not hold _instance's enforcement mode")
	}
	st, err := f.shared(ctx, "pg:"+org, func(ctx context.Context) (*license.OrgState, error) {
		ctx, cancel := context.WithTimeout(ctx, f.cfg.PGTimeout)
		defer cancel()
		trust := f.trust()
		row, err := f.pgLoad(ctx, org, trust)
		if err != nil {
			if !errors.Is(err, errPendingGrace) {
				// PostgreSQL is failing: answer from the cache for a while
				// rather than wait for it on every request.
				f.pgDownUntil.Store(time.Now().Add(time.Second).UnixNano())
			}
			f.m.staleReloads.WithLabelValues("error").Inc()
			return nil, err
		}
		cur := f.cached(org)
		switch {
		case row.Seq > seqOf(cur):
			f.m.staleReloads.WithLabelValues("newer").Inc()
			f.m.loads.WithLabelValues("postgres", "org").Inc()
			return f.offer(org, row, trust), nil
		case cur != nil:
			f.m.staleReloads.WithLabelValues("kept").Inc()
			return cur, nil
		}
		f.m.staleReloads.WithLabelValues("kept").Inc()
		return row, nil // no row: no events as far as PostgreSQL knows
	})
	if err != nil {
		return nil, fmt.Errorf("%s from PostgreSQL: %w", org, err)
	}
	return st, nil
}

// pgLoad reads org's state from its row and revocations in one snapshot.
func (f *Follower) pgLoad(ctx context.Context, org string, trust projection.Trust) (*license.OrgState, error) {
	f.pgCalls.Add(1)
	return f.pool.State(ctx, org, trust, f.pendingGrace)
}

// pendingGrace finds the effective grace of a pending license a row holds
// (rows do not keep it): from the cached state when it holds the same
// pending license, else from the org's upload event on the stream.
func (f *Follower) pendingGrace(ctx context.Context, org, fingerprint string, upTo uint64) (int, error) {
	if st := f.cached(org); st != nil && st.Pending != nil && st.Pending.Fingerprint == fingerprint {
		return st.Pending.GraceDays, nil
	}
	g, err := postgres.PendingGraceFrom(f.bus)(ctx, org, fingerprint, upTo)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errPendingGrace, err)
	}
	return g, nil
}

// errPendingGrace marks a failure to find a pending license's grace on the
// stream (not a PostgreSQL failure).
var errPendingGrace = errors.New("pending license grace")

// offer installs st as org's state if it is newer than the cached one and
// returns the cached state after that. st was built under trust; if the
// ring or install id changed meanwhile it is verified again.
func (f *Follower) offer(org string, st *license.OrgState, trust projection.Trust) *license.OrgState {
	if st.Seq == 0 && org != license.InstanceOrg {
		return st // no events: never cached
	}
	m := f.orgs.Load()
	e := m.getOrCreate(org)
	e.mu.Lock()
	cur := e.st.Load()
	changed := cur == nil || st.Seq > cur.Seq
	if changed {
		if now := f.trust(); !st.Unverified() && !now.Verifies(trust) {
			ctx, cancel := context.WithTimeout(context.Background(), reverifyTimeout)
			n, err := f.reverified(ctx, st, now)
			cancel()
			if err != nil {
				f.log.Warn("license not verified under the reloaded key ring: the previous verification stays in force", "org", org, "err", err)
				n = projection.Compact(st)
			}
			st = n
		} else {
			st = projection.Compact(st)
		}
		f.store(m, e, st)
		cur = st
	}
	e.mu.Unlock()
	if changed {
		f.changed(org)
	}
	return cur
}

// install puts the initial load into the cache. On a first load the states
// are merged (orgs loaded on demand meanwhile keep the newer state); after
// a recreated stream they replace the cache.
func (f *Follower) install(states map[string]*license.OrgState, trust projection.Trust, replace bool) {
	if _, ok := states[license.InstanceOrg]; !ok {
		states[license.InstanceOrg] = license.NewOrgState(license.InstanceOrg)
	}
	if replace {
		m := newOrgMap()
		for org, st := range states {
			m.set(m.getOrCreate(org), projection.Compact(st))
		}
		f.orgs.Store(m)
		f.gen.Add(1)
		if !f.trust().Verifies(trust) {
			f.Reverify()
		}
		f.notify.broadcast()
		return
	}
	for org, st := range states {
		f.offer(org, st, trust)
	}
}

// apply folds a consumed message into the cache.
func (f *Follower) apply(m *events.Message, live bool) {
	if h := f.hookDeliver; h != nil {
		h(m)
	}
	if id := events.InstallIDOf(m); id != "" && f.InstallID() == "" {
		f.adoptInstallID(id)
	}
	if m.IsOrgSubject() && events.ValidOrg(m.Org()) {
		org := m.Org()
		cache := f.orgs.Load()
		e := cache.getOrCreate(org)
		e.mu.Lock()
		cur := e.st.Load()
		if cur == nil {
			cur = license.NewOrgState(org)
		}
		n, outcome, err := projection.Apply(f.trust(), cur, m)
		if outcome != projection.Stale {
			f.store(cache, e, projection.Compact(n))
		}
		e.mu.Unlock()
		if outcome != projection.Stale {
			f.m.events.WithLabelValues(outcome.String()).Inc()
			if err != nil {
				f.log.Warn("event skipped for state", "seq", m.Seq, "subject", m.Subject, "outcome", outcome.String(), "err", err)
			}
			if live && m.Envelope != nil {
				f.m.applyLag.Observe(max(time.Since(m.Envelope.At.Time), 0).Seconds())
			}
			f.changed(org)
		}
	}
	f.applied.Store(m.Seq)
	if ph := f.pendHead.Load(); ph != 0 && m.Seq >= ph {
		f.pendMu.Lock()
		if ph := f.pendHead.Load(); ph != 0 && m.Seq >= ph {
			f.confirm(f.pendAt)
			f.pendHead.Store(0)
		}
		f.pendMu.Unlock()
	}
}

// confirm records that everything on the stream at moment at was applied.
func (f *Follower) confirm(at int64) {
	for {
		cur := f.lastCurrent.Load()
		if at <= cur || f.lastCurrent.CompareAndSwap(cur, at) {
			break
		}
	}
	if time.Since(time.Unix(0, f.lastCurrent.Load())) <= f.cfg.MaxStaleness {
		f.setStale(false)
	}
}
