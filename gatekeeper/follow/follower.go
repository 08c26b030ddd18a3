// Package follow keeps a gate's license state current from the stream: a
// Follower holds every licensed org's state in memory and is the
// gatekeeper.Source that cmd/gatekeeper, and any Go program gating its own
// handlers in-process, decides with. Open the stream with
// natsstream.Open, build a Follower with New, run it with Run, and pass it
// to gatekeeper.New.
//
// At start a Follower reads the stream head H, loads the state of every
// org that has an event up to H (from the PostgreSQL read model when its
// checkpoint covers H, else by folding the stream), then applies every
// later event in stream order. Each event replaces its org's state
// through the shared fold, so every uploaded key is verified again
// against this process's key ring and install id: no decision is made on
// a signature this process has not verified.
//
// Cached orgs are answered without I/O; an org with no events is answered
// with an empty state, also without I/O and without a cache entry, so
// memory is bounded by the orgs that have events. A consistency token
// (minSeq) waits briefly for the consumer and then folds the org's subject
// directly. When the follower cannot confirm it is current with the stream
// for longer than MaxStaleness it reloads from PostgreSQL per request
// (never going backwards), or, without PostgreSQL, keeps answering cached
// orgs and reports uncached ones as unavailable.
package follow

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/licenseledger/ledger/gatekeeper"
	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/postgres"
	"github.com/licenseledger/ledger/internal/projection"
	"github.com/licenseledger/ledger/internal/tail"
	"github.com/licenseledger/ledger/license"
)

// Defaults of Config.
const (
	DefaultMinSeqWait   = 50 * time.Millisecond
	DefaultMaxStaleness = 30 * time.Second
	DefaultCheckpoint   = "org_licenses"
	// maxCheckInterval is the longest gap between two freshness checks.
	maxCheckInterval = time.Second
	// staleTick is how often the stale flag State reads is recomputed.
	staleTick = 50 * time.Millisecond
)

// Stream is the license stream as a follower reads it: natsstream.Open
// returns one for a NATS connection.
type Stream interface {
	// Stream returns the stream's created time and head.
	Stream(ctx context.Context) (created time.Time, head uint64, err error)
	// Head returns the last sequence on subject, 0 if none.
	Head(ctx context.Context, subject string) (uint64, error)
	// Next returns the first message on subject at or after seq, or nil.
	Next(ctx context.Context, subject string, seq uint64) (*events.Message, error)
	// ReadSubject calls fn for messages on subject in (after, upTo], in order.
	ReadSubject(ctx context.Context, subject string, after, upTo uint64, fn func(*events.Message) error) error
	// Consume delivers every message from start on, in order, with an
	// ordered consumer.
	Consume(ctx context.Context, start uint64, heartbeat time.Duration, fn func(*events.Message) error, onIdle func()) error
}

// Config configures a Follower.
type Config struct {
	// Stream is the license stream, opened with the reader role
	// (natsstream.Open). Required.
	Stream Stream
	// DatabaseURL is the PostgreSQL read model (optional, a URL or
	// keyword/value string): a faster start, and reloads when stale. New
	// checks it and connects; a server that cannot be reached yet is
	// logged and used once it answers.
	DatabaseURL string
	// Keys is the key ring every stored key is verified against. Required.
	Keys *license.Keys
	// MinSeqWait is how long a request carrying a consistency token waits
	// for the consumer before folding the org's subject directly.
	// Default 50 ms.
	MinSeqWait time.Duration
	// MaxStaleness is how long the follower may go without confirming it
	// is current with the stream head before it stops trusting its cache
	// for uncached orgs (and reloads from PostgreSQL). Default 30 s. The
	// NATS connection's PingInterval should be at most a third of it (see
	// PingInterval and ConnOptions).
	MaxStaleness time.Duration
	// CheckInterval is how often the stream head is compared with what was
	// applied. Default: the smaller of 1 s and MaxStaleness / 3.
	CheckInterval time.Duration
	// Heartbeat is the ordered consumer's pull heartbeat. Default 1 s.
	Heartbeat time.Duration
	// PGTimeout bounds one PostgreSQL load of one org after start (the
	// initial snapshot is bounded by Run's context only). Default 1 s.
	PGTimeout time.Duration
	// Checkpoint is the projector's checkpoint row. Default "org_licenses".
	Checkpoint string
	// OnChange, if set, is called with an org's name after its cached state
	// was replaced (an event, a direct fold, a reload, a key ring change,
	// the initial load). Calls come from one goroutine that Run starts,
	// never from the one applying events, so a slow callback delays only
	// later calls; changes to an org not yet reported are reported once.
	// The callback reads the new state itself (CachedState or State).
	OnChange func(org string)
	Logger   *slog.Logger
	// Registry receives the follower's metrics (nil: none).
	Registry prometheus.Registerer
}

// Follower follows the stream into an in-memory cache of every org's state
// and implements gatekeeper.Source. Create it with New, run it with Run.
// It is safe for concurrent use.
type Follower struct {
	cfg  Config
	bus  Stream
	pool readModel // nil without DatabaseURL
	log  *slog.Logger
	m    *metrics

	orgs      atomic.Pointer[orgMap]
	gen       atomic.Uint64 // bumped after every change CachedState can see (Generation)
	installID atomic.Pointer[string]
	created   atomic.Pointer[time.Time] // stream created time of the installed state

	loaded       atomic.Bool   // ready: the initial load and what was appended during it applied
	readyAt      atomic.Uint64 // after a load: ready once this sequence is applied (0: none pending)
	readyConfirm atomic.Int64  // ... and then current as of this moment (unix nanos)
	loadInfo     loadInfo      // the last load (written before readyAt, read after it)
	loadedCh     chan struct{}
	loadedOnce   sync.Once
	running      atomic.Bool

	applied     atomic.Uint64 // last stream sequence delivered by the consumer
	tail        *tail.Tail    // the stream loop: sessions, head checks, restarts
	lastCurrent atomic.Int64  // unix nanos: last moment confirmed current
	stale       atomic.Bool   // Staleness() > MaxStaleness, recomputed every staleTick

	pendMu      sync.Mutex
	pendHead    atomic.Uint64 // a check saw this head (0: none outstanding) ...
	pendAt      int64         // ... at this moment (guarded by pendMu)
	pgDownUntil atomic.Int64  // unix nanos: skip per-request PostgreSQL reloads until then

	deferred chan struct{} // Start → verifyDeferred: a load left keys unverified
	sf       singleflight.Group
	notify   notifier
	changes  changeQueue

	keyringMu   sync.Mutex
	keyringSaid string // the KeyringProblem last logged

	// Test hooks.
	hookDeliver    func(*events.Message) // before a consumed message is handled
	hookBeforeLoad func()                // before a load of every org
	hookChanged    func(org string)      // synchronously after a state replacement
	hookVerify     func()                // before deferred keys are verified in the background
	pgCalls        atomic.Int64          // PostgreSQL reads issued
}

// readModel is the PostgreSQL read model as a follower reads it
// (*postgres.StateReader).
type readModel interface {
	Snapshot(ctx context.Context, checkpoint string, trust projection.Trust, pending postgres.PendingGrace) (postgres.Snapshot, error)
	State(ctx context.Context, org string, trust projection.Trust, pending postgres.PendingGrace) (*license.OrgState, error)
	Close()
}

// pgConnectTimeout bounds New's first connection to the read model.
const pgConnectTimeout = 5 * time.Second

// New returns a follower; Run starts it. With DatabaseURL it connects to
// the read model (for at most 5 s): a malformed URL or a refusal (a wrong
// password, an unknown database) is an error, a server out of reach is
// logged and retried on use. Run closes the connection when it returns.
func New(cfg Config) (*Follower, error) {
	if cfg.Stream == nil {
		return nil, errors.New("follow: no stream")
	}
	if cfg.Keys == nil {
		return nil, errors.New("follow: no key ring")
	}
	if cfg.MinSeqWait <= 0 {
		cfg.MinSeqWait = DefaultMinSeqWait
	}
	if cfg.MaxStaleness <= 0 {
		cfg.MaxStaleness = DefaultMaxStaleness
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = min(maxCheckInterval, cfg.MaxStaleness/3)
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = time.Second
	}
	if cfg.PGTimeout <= 0 {
		cfg.PGTimeout = time.Second
	}
	if cfg.Checkpoint == "" {
		cfg.Checkpoint = DefaultCheckpoint
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Follower{cfg: cfg, bus: cfg.Stream, log: cfg.Logger, loadedCh: make(chan struct{}), deferred: make(chan struct{}, 1)}
	if cfg.DatabaseURL != "" {
		ctx, cancel := context.WithTimeout(context.Background(), pgConnectTimeout)
		r, err := postgres.OpenStateReader(ctx, cfg.DatabaseURL)
		cancel()
		switch {
		case errors.Is(err, postgres.ErrUnavailable):
			f.log.Warn("PostgreSQL unreachable at start: loading from the stream", "err", err)
		case err != nil:
			return nil, fmt.Errorf("DATABASE_URL: %w", err)
		}
		f.pool = r
	}
	empty := ""
	f.installID.Store(&empty)
	f.orgs.Store(newOrgMap())
	f.lastCurrent.Store(time.Now().UnixNano())
	f.tail = tail.New(tail.Config{Stream: cfg.Stream, Reader: reader{f}, Heartbeat: cfg.Heartbeat,
		CheckInterval: cfg.CheckInterval, Checked: f.checked, Logger: cfg.Logger})
	f.m = newMetrics(f, cfg.Registry)
	if c, ok := cfg.Stream.(interface{ PingInterval() time.Duration }); ok {
		if pi := c.PingInterval(); pi > PingInterval(cfg.MaxStaleness) {
			f.log.Warn("the NATS ping interval is longer than a third of the max staleness: a dead connection is noticed late",
				"ping_interval", pi, "max_staleness", cfg.MaxStaleness)
		}
	}
	return f, nil
}

var _ gatekeeper.GenerationSource = (*Follower)(nil)

// Generation changes after every change an answer of CachedState may
// reflect: a state replaced, the cache loaded or replaced, staleness
// flipping (gatekeeper.GenerationSource).
func (f *Follower) Generation() uint64 { return f.gen.Load() }

// setStale records staleness, bumping the generation when it flips.
func (f *Follower) setStale(v bool) {
	if f.stale.Swap(v) != v {
		f.gen.Add(1)
	}
}

// CachedState answers from memory only, with no I/O, blocking or
// allocation (gatekeeper.CachedSource). ok is false before the initial
// load, for an org with no cache entry (an org with no events included:
// State answers those, still without I/O), when minSeq is above the
// cached sequence, and while the follower is stale.
func (f *Follower) CachedState(org string, minSeq uint64) (own, instance *license.OrgState, ok bool) {
	if !f.loaded.Load() || f.stale.Load() {
		return nil, nil, false
	}
	m := f.orgs.Load()
	instance = m.inst.st.Load()
	if org == license.InstanceOrg {
		own = instance
	} else if e := m.get(org); e != nil {
		own = e.st.Load()
	}
	if own == nil || instance == nil || own.Seq < minSeq || own.Unverified() || instance.Unverified() {
		return nil, nil, false
	}
	return own, instance, true
}

// State returns org's own state and the instance-wide state (see
// gatekeeper.Source). Cached orgs, and orgs with no events once loaded, are
// answered without I/O. With minSeq above the cached sequence it waits up
// to MinSeqWait for the consumer, then folds the org's subject from the
// stream (or, if the stream cannot be read, uses a PostgreSQL row at least
// as new as minSeq). Errors wrap gatekeeper.ErrUnavailable.
func (f *Follower) State(ctx context.Context, org string, minSeq uint64) (own, instance *license.OrgState, err error) {
	if own, instance, ok := f.CachedState(org, minSeq); ok {
		return own, instance, nil
	}
	own, err = f.stateOf(ctx, org, minSeq)
	if err != nil {
		return nil, nil, err
	}
	own = f.verified(org, own)
	if org == license.InstanceOrg {
		return own, own, nil
	}
	instance, err = f.stateOf(ctx, license.InstanceOrg, 0)
	if err != nil {
		return nil, nil, err
	}
	return own, f.verified(license.InstanceOrg, instance), nil
}

// verified returns st with every key verified: st itself when it holds
// none unverified, else st with its unverified slots verified now, with
// the keys it holds until then (no I/O, within any decision deadline), put
// in the cache in its place unless the cache moved on meanwhile. No state
// with an unverified key leaves the follower.
func (f *Follower) verified(org string, st *license.OrgState) *license.OrgState {
	if !st.Unverified() {
		return st
	}
	n := projection.Compact(projection.Settle(f.trust(), st))
	f.m.verifications.WithLabelValues("request").Inc()
	m := f.orgs.Load()
	e := m.get(org)
	if e == nil {
		return n
	}
	e.mu.Lock()
	if cur := e.st.Load(); cur != st {
		e.mu.Unlock()
		if cur != nil && !cur.Unverified() && cur.Seq >= st.Seq {
			return cur // verified meanwhile (or moved on)
		}
		return n
	}
	f.store(m, e, n)
	e.mu.Unlock()
	f.changed(org)
	return n
}

func (f *Follower) stateOf(ctx context.Context, org string, minSeq uint64) (*license.OrgState, error) {
	loaded := f.loaded.Load()
	if loaded {
		// A cached org, no newer token, not stale (for _instance when the
		// org itself needed more).
		if st := f.cached(org); st != nil && minSeq <= st.Seq && !f.stale.Load() {
			return st, nil
		}
	}
	if !events.ValidOrg(org) {
		// No subject can hold events for it.
		if minSeq > 0 {
			return nil, unavailable("org %q has no subject: min seq %d cannot be met", org, minSeq)
		}
		return license.NewOrgState(org), nil
	}
	if !loaded {
		// Before the initial load: bring this org to its subject head (the
		// trust rule decides between its PostgreSQL row and the stream).
		return f.reachSeq(ctx, org, minSeq, true)
	}
	st := f.cached(org)
	if minSeq > seqOf(st) {
		return f.awaitSeq(ctx, org, minSeq)
	}
	if f.stale.Load() {
		return f.staleState(ctx, org, st)
	}
	if st == nil {
		return license.NewOrgState(org), nil
	}
	return st, nil
}

// awaitSeq waits up to MinSeqWait for the consumer to bring org to minSeq,
// then folds the org's subject directly.
func (f *Follower) awaitSeq(ctx context.Context, org string, minSeq uint64) (*license.OrgState, error) {
	timer := time.NewTimer(f.cfg.MinSeqWait)
	defer timer.Stop()
	for {
		ch := f.notify.wait()
		if st := f.cached(org); seqOf(st) >= minSeq {
			f.m.minSeqWaits.WithLabelValues("delivered").Inc()
			return st, nil
		}
		select {
		case <-ch:
			continue
		case <-ctx.Done():
			return nil, unavailable("waiting for seq %d of %s: %v", minSeq, org, ctx.Err())
		case <-timer.C:
		}
		break
	}
	f.m.minSeqWaits.WithLabelValues("timeout").Inc()
	return f.reachSeq(ctx, org, minSeq, false)
}

// reachSeq brings org to its subject head from the stream until its state
// is at least minSeq. A fold already running for the org is shared; one
// that started before the token existed may stop short, hence the retries.
// A PostgreSQL row at least as new as minSeq (and as the cache) also
// answers: first when the follower is stale (the stream is probably out of
// reach), else when the stream cannot be read.
func (f *Follower) reachSeq(ctx context.Context, org string, minSeq uint64, initial bool) (*license.OrgState, error) {
	rowFirst := minSeq > 0 && f.pool != nil && fromRows(org) && f.stale.Load()
	if rowFirst {
		if st, err := f.reloadFromPG(ctx, org); err == nil && st.Seq >= minSeq {
			return st, nil
		}
	}
	var st *license.OrgState
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			select { // a direct get served by a lagging replica: give it a moment
			case <-ctx.Done():
				return nil, unavailable("%s: %v", org, ctx.Err())
			case <-time.After(time.Duration(attempt) * 5 * time.Millisecond):
			}
		}
		st, err = f.shared(ctx, "head:"+org, func(ctx context.Context) (*license.OrgState, error) {
			return f.toHead(ctx, org, initial)
		})
		if err != nil {
			break
		}
		if st.Seq >= minSeq {
			return st, nil
		}
	}
	if err == nil {
		return nil, unavailable("%s is at seq %d on the stream, below the requested %d", org, st.Seq, minSeq)
	}
	if !rowFirst && minSeq > 0 && f.pool != nil && fromRows(org) && ctx.Err() == nil {
		if st, perr := f.reloadFromPG(ctx, org); perr == nil && st.Seq >= minSeq {
			return st, nil
		}
	}
	return nil, unavailable("%s: %v", org, err)
}

// staleState answers org when the follower is stale: reloaded from
// PostgreSQL with the version guard, else the cached state (fail static),
// else unavailable.
func (f *Follower) staleState(ctx context.Context, org string, cached *license.OrgState) (*license.OrgState, error) {
	switch {
	case f.pool == nil || !fromRows(org):
	case time.Now().UnixNano() < f.pgDownUntil.Load():
		f.m.staleReloads.WithLabelValues("skipped").Inc()
	default:
		if st, err := f.reloadFromPG(ctx, org); err == nil {
			return st, nil
		}
	}
	if cached != nil {
		return cached, nil
	}
	return nil, unavailable("%s is not cached and the stream has not been confirmed current for %s", org, f.Staleness().Round(time.Millisecond))
}

// shared runs fn once per key at a time. fn gets a context detached from
// the callers' (bounded by PGTimeout or the stream's own limits); each
// caller waits at most until its own context ends.
func (f *Follower) shared(ctx context.Context, key string, fn func(context.Context) (*license.OrgState, error)) (*license.OrgState, error) {
	ch := f.sf.DoChan(key, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(f.cfg.PGTimeout, 2*time.Second))
		defer cancel()
		return fn(fctx)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*license.OrgState), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// cached returns org's cached state, nil if it has no entry.
func (f *Follower) cached(org string) *license.OrgState {
	if e := f.orgs.Load().get(org); e != nil {
		return e.st.Load()
	}
	return nil
}

func seqOf(st *license.OrgState) uint64 {
	if st == nil {
		return 0
	}
	return st.Seq
}

func unavailable(format string, args ...any) error {
	return fmt.Errorf("%w: %s", gatekeeper.ErrUnavailable, fmt.Sprintf(format, args...))
}

// trust is what stored keys are verified against now.
func (f *Follower) trust() projection.Trust {
	return projection.Trust{Ring: f.cfg.Keys.Ring(), InstallID: *f.installID.Load()}
}

// verifyDeferred verifies, on every core and in batches, the keys a load
// of every org left unverified, each time Start signals one, until ctx
// ends. A request for an org not verified yet verifies it first
// (verified), with the key it holds: no I/O.
func (f *Follower) verifyDeferred(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.deferred:
		}
		if h := f.hookVerify; h != nil {
			h()
		}
		began := time.Now()
		m := f.orgs.Load()
		jobs := make(chan verifyJob, 1024)
		var wg sync.WaitGroup
		for range runtime.GOMAXPROCS(0) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				batch := make([]verifyJob, 0, license.BatchMax)
				for j := range jobs {
					batch = append(batch[:0], j)
				more:
					for len(batch) < license.BatchMax {
						select {
						case j, ok := <-jobs:
							if !ok {
								break more
							}
							batch = append(batch, j)
						default:
							break more
						}
					}
					f.verifyEntries(m, batch)
				}
			}()
		}
		m.each(func(org string, e *entry) {
			st := e.st.Load()
			for _, s := range [2]*license.Slot{st.Current, st.Pending} {
				if st.Unverified() && s != nil && s.Err == license.ErrUnverified {
					jobs <- verifyJob{org: org, e: e, seq: s.Seq}
				}
			}
		})
		close(jobs)
		wg.Wait()
		if ctx.Err() == nil {
			f.checkKeyring()
			// The load and this pass leave most of the heap free (decoded
			// events, the keys): hand it back to the system now, since a
			// replica that only decides allocates too little for the
			// collector to run again soon.
			debug.FreeOSMemory()
			f.log.Info("every license verified", "orgs", m.len(), "took", time.Since(began).Round(time.Millisecond))
		}
	}
}

// verifyJob is one unverified slot to verify: org's slot uploaded at seq.
type verifyJob struct {
	org string
	e   *entry
	seq uint64
}

// unverifiedAt returns st's unverified slot uploaded at seq, nil if none.
func unverifiedAt(st *license.OrgState, seq uint64) *license.Slot {
	if st == nil {
		return nil
	}
	for _, s := range [2]*license.Slot{st.Current, st.Pending} {
		if s != nil && s.Err == license.ErrUnverified && s.Seq == seq {
			return s
		}
	}
	return nil
}

// verifyEntries verifies the slots the jobs name that are still
// unverified, their signatures together (projection.VerifySlots), and
// reports each replaced state (changed: CachedState answers it now).
func (f *Follower) verifyEntries(m *orgMap, jobs []verifyJob) {
	var todo []verifyJob
	var orgs []string
	var slots []*license.Slot
	for _, j := range jobs {
		s := unverifiedAt(j.e.st.Load(), j.seq)
		if s == nil {
			continue
		}
		todo, orgs, slots = append(todo, j), append(orgs, j.org), append(slots, s)
	}
	if len(todo) == 0 {
		return
	}
	trust := f.trust()
	verified := projection.VerifySlots(trust, orgs, slots)
	for i, j := range todo {
		j.e.mu.Lock()
		st := j.e.st.Load()
		// A key ring reloaded meanwhile (Reverify) has the last word.
		if s := unverifiedAt(st, j.seq); s != nil && s.Fingerprint == slots[i].Fingerprint && f.trust().Verifies(trust) {
			n := st.Clone()
			if n.Current == s {
				n.Current = verified[i]
			} else {
				n.Pending = verified[i]
			}
			f.store(m, j.e, projection.Compact(n))
			f.m.verifications.WithLabelValues("background").Inc()
			j.e.mu.Unlock()
			f.changed(j.org) // CachedState answers it now: generation, waiters, OnChange
			continue
		}
		j.e.mu.Unlock()
	}
}

// UnverifiedOrgs counts the cached orgs whose license is not verified yet.
func (f *Follower) UnverifiedOrgs() int { return int(f.orgs.Load().unverified.Load()) }

// InstallID is the install id adopted from the stream ("" until known).
func (f *Follower) InstallID() string { return *f.installID.Load() }

// Ready reports whether the initial load is done.
func (f *Follower) Ready() bool { return f.loaded.Load() }

// Wait blocks until the initial load is done or ctx ends.
func (f *Follower) Wait(ctx context.Context) error {
	select {
	case <-f.loadedCh:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Staleness is how long ago the follower last confirmed that it had
// applied everything on the stream (measured from the start of the check
// that confirmed it). Before the initial load it counts from New.
func (f *Follower) Staleness() time.Duration {
	return time.Since(time.Unix(0, f.lastCurrent.Load()))
}

// Stale reports whether Staleness exceeds MaxStaleness (as of the last
// recomputation, at most 50 ms ago).
func (f *Follower) Stale() bool { return f.stale.Load() }

// Health is a snapshot for /readyz.
type Health struct {
	// Loaded: the initial state is loaded (the replica may serve).
	Loaded bool `json:"loaded"`
	// Staleness since the last confirmation that every event on the
	// stream was applied; Stale when above MaxStaleness.
	Staleness        time.Duration `json:"-"`
	StalenessSeconds float64       `json:"staleness_seconds"`
	Stale            bool          `json:"stale"`
	// AppliedSeq is the last stream sequence applied; StreamHead the head
	// at the last successful check.
	AppliedSeq uint64 `json:"applied_seq"`
	StreamHead uint64 `json:"stream_head"`
	// NATS: the last stream check succeeded.
	NATS bool `json:"nats"`
	// OrgsCached counts cached orgs (every org with an event, _instance).
	OrgsCached int `json:"orgs_cached"`
	// OrgsUnverified counts cached orgs whose license is not verified yet
	// (after a load, verified in the background, and before any decision
	// on the org).
	OrgsUnverified int `json:"orgs_unverified"`
	// Keyring says, once loaded, when the key ring trusts none of the keys
	// the cached licenses are signed with (KeyringProblem); nil otherwise.
	Keyring *string `json:"keyring"`
}

// Health returns the follower's state for /readyz (which should be 200
// once Loaded, whatever the staleness).
func (f *Follower) Health() Health {
	s := f.Staleness()
	h := Health{Loaded: f.loaded.Load(), Staleness: s, StalenessSeconds: s.Seconds(), Stale: s > f.cfg.MaxStaleness,
		AppliedSeq: f.applied.Load(), StreamHead: f.tail.Head(), NATS: f.tail.Reachable(), OrgsCached: f.orgs.Load().len(),
		OrgsUnverified: f.UnverifiedOrgs()}
	if p := f.KeyringProblem(); p != "" {
		h.Keyring = &p
	}
	return h
}

// Reverify re-checks every cached license against the current key ring
// (call it after the ring is reloaded: keys.ReloadOnSIGHUP's onChange).
// Every changed org gets a new state pointer. The key text, which the
// cache does not keep, is read back from the stream; an org whose key
// cannot be read keeps its previous verification (logged).
func (f *Follower) Reverify() {
	m := f.orgs.Load()
	skipped, unreachable := 0, error(nil)
	m.each(func(org string, e *entry) {
		if unreachable != nil {
			skipped++
			return
		}
		err := f.reverifyOrg(m, org, e)
		switch {
		case errors.Is(err, events.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded):
			// Every other org would wait for the stream as long: stop.
			// Withdrawn keys took effect all the same (ReverifyFrom).
			unreachable = err
		case err != nil:
			f.log.Warn("license not verified again: the previous verification stays in force", "org", org, "err", err)
		}
		f.changed(org)
	})
	if unreachable != nil {
		f.log.Error("the stream is out of reach: licenses not verified again keep their previous verification; reload the key ring again once NATS is back",
			"orgs_left", skipped, "err", unreachable)
	}
	f.checkKeyring()
}

// reverifyOrg verifies e's state again. The stream is read without the
// entry's lock (events keep being applied); the result is installed if the
// state did not change meanwhile, else the work is done again, the last
// time under the lock.
func (f *Follower) reverifyOrg(m *orgMap, org string, e *entry) error {
	ctx, cancel := context.WithTimeout(context.Background(), reverifyTimeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		last := attempt == 2
		if last {
			e.mu.Lock()
		}
		st := e.st.Load()
		if st == nil {
			if last {
				e.mu.Unlock()
			}
			return nil
		}
		n, err := f.reverified(ctx, st, f.trust())
		if !last {
			e.mu.Lock()
		}
		if err == nil && e.st.Load() == st {
			f.store(m, e, n)
			f.gen.Add(1)
		}
		cur := e.st.Load()
		e.mu.Unlock()
		if err != nil {
			return err
		}
		if cur == n {
			return nil
		}
	}
}

// reverifyTimeout bounds reading one org's keys back from the stream.
const reverifyTimeout = 5 * time.Second

// changed wakes min-seq waiters and queues org for OnChange.
func (f *Follower) changed(org string) {
	f.gen.Add(1)
	f.notify.broadcast()
	if h := f.hookChanged; h != nil {
		h(org)
	}
	if f.cfg.OnChange != nil {
		f.changes.add(org)
	}
}

// changeQueue collects orgs whose state changed until OnChange is called
// for them.
type changeQueue struct {
	mu     sync.Mutex
	orgs   map[string]struct{} // kept and cleared, not made again per change
	taken  []string
	signal chan struct{} // capacity 1: "something queued"
	once   sync.Once
}

func (q *changeQueue) init() { q.once.Do(func() { q.signal = make(chan struct{}, 1) }) }

func (q *changeQueue) add(org string) {
	q.init()
	q.mu.Lock()
	if q.orgs == nil {
		q.orgs = map[string]struct{}{}
	}
	q.orgs[org] = struct{}{}
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// take returns the queued orgs and empties the queue. The slice is
// reused by the next take: only deliverChanges calls it.
func (q *changeQueue) take() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.taken = q.taken[:0]
	for org := range q.orgs {
		q.taken = append(q.taken, org)
	}
	clear(q.orgs)
	return q.taken
}

// deliverChanges calls OnChange for queued orgs until ctx ends.
func (f *Follower) deliverChanges(ctx context.Context) {
	f.changes.init()
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.changes.signal:
			for _, org := range f.changes.take() {
				f.cfg.OnChange(org)
			}
		}
	}
}

// adoptInstallID sets the install id once it is known and re-verifies
// what was verified without it.
func (f *Follower) adoptInstallID(id string) {
	if id == "" || id == f.InstallID() {
		return
	}
	f.installID.Store(&id)
	f.log.Info("install id adopted from the stream", "install_id", id)
	f.Reverify()
}

// entry is one org's cached state. Readers load st without locking;
// writers hold mu so that each replacement is computed from the latest.
type entry struct {
	mu   sync.Mutex
	st   atomic.Pointer[license.OrgState]
	memo gatekeeper.Memo // the Gate's decision entry for the org
}

var _ gatekeeper.MemoSource = (*Follower)(nil)

// Memo returns the memo kept with org's cache entry, nil when org has none
// (gatekeeper.MemoSource).
func (f *Follower) Memo(org string) *gatekeeper.Memo {
	if e := f.orgs.Load().get(org); e != nil {
		return &e.memo
	}
	return nil
}

// orgMap is the cache: read-mostly, entries created only for orgs that
// have events. Plain maps behind read-write locks, sharded so that readers
// on different cores rarely share a lock: a replica holds every licensed
// org, and a map entry costs a fraction of a sync.Map's.
type orgMap struct {
	inst   *entry // _instance, always present (every State reads it)
	seed   maphash.Seed
	shards [orgShards]orgShard
	n      atomic.Int64
	use    keyUse // the vendor keys the states' licenses use
	// unverified counts the states holding a key not verified yet.
	unverified atomic.Int64
}

const orgShards = 16 // a power of two

type orgShard struct {
	mu sync.RWMutex
	m  map[string]*entry
	_  [40]byte // a cache line each
}

func newOrgMap() *orgMap { return &orgMap{inst: &entry{}, seed: maphash.MakeSeed()} }

func (o *orgMap) shard(org string) *orgShard {
	return &o.shards[maphash.String(o.seed, org)&(orgShards-1)]
}

func (o *orgMap) get(org string) *entry {
	if org == license.InstanceOrg {
		return o.inst
	}
	s := o.shard(org)
	s.mu.RLock()
	e := s.m[org]
	s.mu.RUnlock()
	return e
}

func (o *orgMap) getOrCreate(org string) *entry {
	if org == license.InstanceOrg {
		return o.inst
	}
	if e := o.get(org); e != nil {
		return e
	}
	s := o.shard(org)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.m[org]; e != nil {
		return e
	}
	if s.m == nil {
		s.m = map[string]*entry{}
	}
	e := &entry{}
	s.m[strings.Clone(org)] = e
	o.n.Add(1)
	return e
}

// len counts cached orgs, _instance included once it has a state.
func (o *orgMap) len() int {
	n := int(o.n.Load())
	if o.inst.st.Load() != nil {
		n++
	}
	return n
}

// each calls fn for every org (outside the map's locks).
func (o *orgMap) each(fn func(string, *entry)) {
	fn(license.InstanceOrg, o.inst)
	for i := range o.shards {
		s := &o.shards[i]
		s.mu.RLock()
		orgs := make([]string, 0, len(s.m))
		ents := make([]*entry, 0, len(s.m))
		for org, e := range s.m {
			orgs, ents = append(orgs, org), append(ents, e)
		}
		s.mu.RUnlock()
		for j, org := range orgs {
			fn(org, ents[j])
		}
	}
}

// notifier wakes every waiter on each change; it allocates only while
// someone waits.
type notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

func (n *notifier) wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

func (n *notifier) broadcast() {
	n.mu.Lock()
	if n.ch != nil {
		close(n.ch)
		n.ch = nil
	}
	n.mu.Unlock()
}
