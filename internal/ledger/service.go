// Package ledger is the command layer: it decides license commands against
// each org's folded state and appends the resulting events with per-org
// optimistic concurrency. It holds every org's state in memory, kept
// current by the stream consumer and, for commands and reads, by folding
// the org's subject up to its head.
package ledger

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/projection"
	"github.com/licenseledger/ledger/license"
)

// Store is the event store the service appends to and reads from
// (natsbus.Bus). Errors are events.ErrConflict, events.ErrUnavailable or
// others meaning unavailable.
type Store interface {
	// Head returns the last sequence on subject, 0 if none.
	Head(ctx context.Context, subject string) (uint64, error)
	// Next returns the first message on subject at or after seq, or nil.
	Next(ctx context.Context, subject string, seq uint64) (*events.Message, error)
	// ReadSubject calls fn for messages on subject in (after, upTo], in order.
	ReadSubject(ctx context.Context, subject string, after, upTo uint64, fn func(*events.Message) error) error
	// Append publishes env expecting subject's last sequence to be expected.
	Append(ctx context.Context, subject string, env *events.Envelope, expected uint64) (uint64, error)
	// Newest returns the stream's last message, or nil when it is empty.
	Newest(ctx context.Context) (*events.Message, error)
}

// Config configures a Service.
type Config struct {
	Store Store
	Keys  *license.Keys
	// DefaultGraceDays applies to licenses without grace_days: callers pass
	// LICENSE_GRACE_DAYS (7 unless set). New keeps it as given, 0 included.
	DefaultGraceDays int
	// RejectAuditPerMinute caps license.rejected events per org
	// (LEDGER_REJECT_AUDIT_RATE). Defaults to 10.
	RejectAuditPerMinute int
	// UsageReportsPerHour caps the usage changes an org may record an hour
	// (LEDGER_USAGE_RATE). Defaults to DefaultUsageReportsPerHour.
	UsageReportsPerHour int
	// ExpiryNoticeDays are the thresholds, in days ahead of expiry, of the
	// scheduler's license.expiring notices (LICENSE_EXPIRY_NOTICE_DAYS,
	// ParseExpiryNoticeDays). nil: DefaultExpiryNoticeDays; empty: none.
	ExpiryNoticeDays []int
	// Version is recorded in ledger.started.
	Version string
	// Now is the clock. Defaults to time.Now.
	Now     func() time.Time
	Logger  *slog.Logger
	Metrics *Metrics
}

// Service runs license commands. It is safe for concurrent use.
type Service struct {
	cfg       Config
	store     Store
	installID atomic.Value // string
	mu        sync.Mutex
	orgs      map[string]*orgEntry
	rejects   *rejectLimiter
	usage     *usageLimiter
	drift     driftRecord
	// deferring: the fold holds uploaded keys unverified (a start's
	// catch-up); every read verifies what it returns (settled).
	deferring atomic.Bool
}

// orgEntry is one org's cached state. cmd serializes this process's
// commands on the org (fewer conflicts); mu guards state.
type orgEntry struct {
	cmd   sync.Mutex
	mu    sync.Mutex
	state *license.OrgState
	// seeded: state came from a read-model row (see Seed).
	seeded bool
	// synced: state was once read up to the subject's head by this
	// process; the stream consumer keeps it current from there (see
	// command).
	synced bool
}

// orgOf names e's org.
func (s *Service) orgOf(e *orgEntry) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.state.Org
}

func (e *orgEntry) isSynced() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.synced && !e.seeded
}

// New returns a Service. Call Start before serving commands.
func New(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RejectAuditPerMinute <= 0 {
		cfg.RejectAuditPerMinute = 10
	}
	if cfg.UsageReportsPerHour <= 0 {
		cfg.UsageReportsPerHour = DefaultUsageReportsPerHour
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.ExpiryNoticeDays == nil {
		cfg.ExpiryNoticeDays = DefaultExpiryNoticeDays
	}
	s := &Service{cfg: cfg, store: cfg.Store, orgs: map[string]*orgEntry{}}
	s.installID.Store("")
	s.rejects = newRejectLimiter(cfg.RejectAuditPerMinute)
	s.usage = newUsageLimiter(cfg.UsageReportsPerHour)
	return s
}

// InstallID returns the install's id ("" before Start).
func (s *Service) InstallID() string { return s.installID.Load().(string) }

// trust is what the fold verifies keys against now (deferring them during
// a catch-up).
func (s *Service) trust() projection.Trust {
	return projection.Trust{Ring: s.cfg.Keys.Ring(), InstallID: s.InstallID(), Defer: s.deferring.Load()}
}

// verifying is what keys are verified against now.
func (s *Service) verifying() projection.Trust {
	return projection.Trust{Ring: s.cfg.Keys.Ring(), InstallID: s.InstallID()}
}

// DeferVerification makes the fold hold uploaded keys unverified (on) or
// verify them as they come (off). A start's catch-up folds every org with
// it on, then turns it off and runs VerifyDeferred: no state leaves the
// service unverified either way, since every read verifies what it
// returns first.
func (s *Service) DeferVerification(on bool) { s.deferring.Store(on) }

// VerifyDeferred verifies, on every core, the keys held unverified, and
// returns how many states it verified. Signatures are checked in batches
// (projection.VerifySlots).
func (s *Service) VerifyDeferred(ctx context.Context) int {
	var todo []*orgEntry
	s.mu.Lock()
	for _, e := range s.orgs {
		todo = append(todo, e)
	}
	s.mu.Unlock()
	var n atomic.Int64
	work := make(chan []*orgEntry, 4)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for batch := range work {
				n.Add(int64(s.verifyBatch(batch)))
			}
		}()
	}
	for start := 0; start < len(todo) && ctx.Err() == nil; start += license.BatchMax {
		work <- todo[start:min(start+license.BatchMax, len(todo))]
	}
	close(work)
	wg.Wait()
	return int(n.Load())
}

// UnverifiedOrgs counts the cached orgs whose license key is held
// unverified (a start's catch-up; VerifyDeferred or a read verifies it).
func (s *Service) UnverifiedOrgs() int {
	s.mu.Lock()
	entries := make([]*orgEntry, 0, len(s.orgs))
	for _, e := range s.orgs {
		entries = append(entries, e)
	}
	s.mu.Unlock()
	n := 0
	for _, e := range entries {
		e.mu.Lock()
		if e.state.Unverified() {
			n++
		}
		e.mu.Unlock()
	}
	return n
}

// verifyBatch verifies the unverified states of entries, their signatures
// together, and keeps each one whose entry did not move on meanwhile (a
// read verifies a state that did). It returns how many it kept.
func (s *Service) verifyBatch(entries []*orgEntry) int {
	type held struct {
		e        *orgEntry
		was, now *license.OrgState // the state read, and its verified copy
	}
	var states []held
	var orgs []string
	var slots []*license.Slot
	var into []**license.Slot // where each verified slot goes, in a copy
	for _, e := range entries {
		e.mu.Lock()
		st := e.state
		e.mu.Unlock()
		if !st.Unverified() {
			continue
		}
		c := st.Clone()
		states = append(states, held{e, st, c})
		for _, p := range []**license.Slot{&c.Current, &c.Pending} {
			if *p != nil && (*p).Err == license.ErrUnverified {
				orgs, slots, into = append(orgs, st.Org), append(slots, *p), append(into, p)
			}
		}
	}
	if len(slots) == 0 {
		return 0
	}
	trust := s.verifying()
	for i, v := range projection.VerifySlots(trust, orgs, slots) {
		*into[i] = v
	}
	kept := 0
	for _, h := range states {
		h.e.mu.Lock()
		// A key ring reloaded meanwhile: the state's first read verifies it
		// under the new one.
		if h.e.state == h.was && s.verifying().Verifies(trust) {
			h.e.state = projection.Compact(h.now)
			kept++
		}
		h.e.mu.Unlock()
	}
	return kept
}

// settled returns e's state with every key verified, verifying and
// keeping it now if the fold deferred it. The caller holds e.mu.
func (s *Service) settled(e *orgEntry) *license.OrgState {
	e.state = projection.Compact(projection.Settle(s.verifying(), e.state))
	return e.state
}

func (s *Service) entry(org string) *orgEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.orgs[org]
	if !ok {
		e = &orgEntry{state: license.NewOrgState(org)}
		s.orgs[org] = e
	}
	return e
}

// State returns org's cached state without touching the stream.
func (s *Service) State(org string) *license.OrgState {
	e := s.entry(org)
	e.mu.Lock()
	defer e.mu.Unlock()
	return s.settled(e)
}

// Observe folds a message from the stream consumer into the cache. Messages
// already folded (by a command's catch-up) are ignored.
func (s *Service) Observe(m *events.Message) {
	if !m.IsOrgSubject() || !events.ValidOrg(m.Org()) {
		return
	}
	s.apply(s.entry(m.Org()), m)
}

func (s *Service) apply(e *orgEntry, m *events.Message) *license.OrgState {
	e.mu.Lock()
	defer e.mu.Unlock()
	n, outcome, err := projection.Apply(s.trust(), e.state, m)
	if outcome == projection.Stale {
		return e.state
	}
	if err != nil {
		s.cfg.Metrics.FoldSkipped.WithLabelValues(outcome.String()).Inc()
		s.cfg.Logger.Warn("event skipped for state", "seq", m.Seq, "subject", m.Subject, "outcome", outcome.String(), "err", err)
	}
	e.state = projection.Compact(n)
	return e.state
}

// Reverify re-checks every cached license (after a key ring reload, or the
// install id adopted). The key text, which cached states do not keep once
// verified (projection.Compact), is read back from the stream; an org
// whose key cannot be read keeps its previous verification (logged).
// States held unverified are left for their first read or
// VerifyDeferred, which verify under the trust of that moment.
func (s *Service) Reverify(ctx context.Context) {
	s.mu.Lock()
	entries := make([]*orgEntry, 0, len(s.orgs))
	for _, e := range s.orgs {
		entries = append(entries, e)
	}
	s.mu.Unlock()
	trust := s.verifying()
	for i, e := range entries {
		err := s.reverify(ctx, e, trust)
		if errors.Is(err, events.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			// Every other org would wait for the stream as long: stop.
			// Withdrawn keys took effect all the same (ReverifyFrom).
			s.cfg.Logger.Error("the stream is out of reach: licenses not verified again keep their previous verification; reload the key ring again once NATS is back",
				"orgs_left", len(entries)-i, "err", cmp.Or(ctx.Err(), err))
			return
		}
		if err != nil {
			s.cfg.Logger.Warn("license not verified again: the previous verification stays in force", "org", s.orgOf(e), "err", err)
		}
	}
}

// reverifyTimeout bounds reading one org's keys back from the stream.
const reverifyTimeout = 5 * time.Second

// reverify verifies e's state again under trust. The stream is read
// without the entry's lock (events keep being folded); the result is kept
// if the state did not change meanwhile, else the work is done again, the
// last time under the lock.
func (s *Service) reverify(ctx context.Context, e *orgEntry, trust projection.Trust) error {
	ctx, cancel := context.WithTimeout(ctx, reverifyTimeout)
	defer cancel()
	for range 2 {
		e.mu.Lock()
		st := e.state
		e.mu.Unlock()
		if st.Unverified() { // verified under the trust of its first read
			return nil
		}
		n, err := projection.ReverifyFrom(ctx, s.store, trust, st)
		if err != nil {
			return err
		}
		e.mu.Lock()
		kept := e.state == st
		if kept {
			e.state = n
		}
		e.mu.Unlock()
		if kept {
			return nil
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.state.Unverified() {
		return nil
	}
	n, err := projection.ReverifyFrom(ctx, s.store, trust, e.state)
	if err != nil {
		return err
	}
	e.state = n
	return nil
}

// Reset drops every cached state (the stream was recreated).
func (s *Service) Reset() {
	s.mu.Lock()
	s.orgs = map[string]*orgEntry{}
	s.mu.Unlock()
	s.drift.mu.Lock()
	s.drift.scanned, s.drift.last = 0, ""
	s.drift.mu.Unlock()
}

// current returns org's state at least as new as its subject head.
func (s *Service) current(ctx context.Context, org string) (*orgEntry, *license.OrgState, error) {
	e := s.entry(org)
	subject := events.OrgSubject(org)
	head, err := s.store.Head(ctx, subject)
	if err != nil {
		return nil, nil, err
	}
	st := s.State(org)
	if st.Seq >= head {
		e.mu.Lock()
		e.synced = true
		e.mu.Unlock()
		return e, st, nil
	}
	s.cfg.Metrics.CatchUps.Inc()
	err = s.store.ReadSubject(ctx, subject, st.Seq, head, func(m *events.Message) error {
		s.apply(e, m)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.synced = true
	return e, s.settled(e), nil
}

// Status returns org's status payload, at least as new as the heads of the
// org's subject and of _instance's.
func (s *Service) Status(ctx context.Context, org string) (license.Report, error) {
	_, own, err := s.current(ctx, org)
	if err != nil {
		return license.Report{}, err
	}
	inst := own
	if org != license.InstanceOrg {
		if _, inst, err = s.current(ctx, license.InstanceOrg); err != nil {
			return license.Report{}, err
		}
	}
	return license.ReportOf(org, own, inst, s.cfg.Now()), nil
}

// Seed installs states read from a snapshot of the read model (rows at a
// checkpoint); the stream consumer continues from the checkpoint + 1.
// States already newer in the cache are kept. Rows do not hold everything
// the fold knows: _instance is never seeded (its enforcement mode is not a
// column; Refresh folds it from the stream), and an org whose expiry
// events the scheduler may have to append is folded again from its subject
// first (the rows do not say which were appended).
func (s *Service) Seed(states []*license.OrgState) {
	for _, st := range states {
		if st.Org == license.InstanceOrg {
			continue
		}
		e := s.entry(st.Org)
		e.mu.Lock()
		if st.Seq > e.state.Seq {
			e.state = projection.Compact(st)
			e.seeded = true
		}
		e.mu.Unlock()
	}
}

// Refresh brings org's cached state up to its subject head.
func (s *Service) Refresh(ctx context.Context, org string) error {
	_, _, err := s.current(ctx, org)
	return err
}

// refold replaces a seeded org's state by the fold of its whole subject.
func (s *Service) refold(ctx context.Context, org string) error {
	e := s.entry(org)
	e.mu.Lock()
	seeded := e.seeded
	e.mu.Unlock()
	if !seeded {
		return nil
	}
	subject := events.OrgSubject(org)
	head, err := s.store.Head(ctx, subject)
	if err != nil {
		return err
	}
	trust := s.trust()
	st := license.NewOrgState(org)
	err = s.store.ReadSubject(ctx, subject, 0, head, func(m *events.Message) error {
		st, _, _ = projection.Apply(trust, st, m)
		return nil
	})
	if err != nil {
		return err
	}
	e.mu.Lock()
	if st.Seq >= e.state.Seq {
		e.state, e.seeded = projection.Compact(st), false
	}
	e.mu.Unlock()
	return nil
}

// Trust returns what stored keys are verified against now.
func (s *Service) Trust() projection.Trust { return s.trust() }

// VerifyingTrust is what stored keys are verified against now, never
// deferred: for a reader that folds history on its own (reports).
func (s *Service) VerifyingTrust() projection.Trust { return s.verifying() }

// Keys returns the key ring the service verifies with.
func (s *Service) Keys() *license.Keys { return s.cfg.Keys }
