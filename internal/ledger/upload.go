package ledger

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/license"
)

// maxAttempts is one try plus five retries after conflicts.
const maxAttempts = 6

// Upload is a license upload command.
type Upload struct {
	Org    string       // an org slug or _instance
	Body   []byte       // compact key or license.json, as received
	Actor  events.Actor // who
	Source string       // events.SourceAPI, SourceUI, SourceCLI, SourceInstall
	Force  bool         // accept an older issued_at (operators only; checked by the caller)

	noAudit bool // install-time import: failures are logged, never appended
}

// Result is what a successful command returns.
type Result struct {
	Report license.Report
	// Appended is false when the command changed nothing (idempotent repeat).
	Appended bool
	Seq      uint64
}

// Upload checks u against every rule of the contract, in order: size,
// parse, kid, signature, payload, org, install id, revoked, already past
// grace, identical to the current or pending license (200, no event), older
// than the current one (409 unless forced). A failure appends a
// license.rejected on the org's audit subject and nothing on its org
// subject. On success the license becomes current, or pending when its
// not_before − 5 min is still ahead.
func (s *Service) Upload(ctx context.Context, u Upload) (Result, error) {
	res, err := s.upload(ctx, u)
	s.count("upload", res, err)
	if err == nil && res.Appended {
		if lerr := s.latch(ctx); lerr != nil {
			s.cfg.Logger.Error("auto enforcement not latched; the next upload retries", "err", lerr)
		}
		mode := s.State(license.InstanceOrg).EnforcementMode()
		res.Report.Enforcement = &mode
	}
	return res, err
}

func (s *Service) upload(ctx context.Context, u Upload) (Result, error) {
	lic, err := s.cfg.Keys.Ring().Verify(u.Body, license.Expect{Org: u.Org, InstallID: s.InstallID()})
	if err != nil {
		return Result{}, s.reject(ctx, u, lic, fail(codeOf(err), err.Error()))
	}
	grace := license.EffectiveGrace(lic.Payload, s.cfg.DefaultGraceDays)
	return s.command(ctx, u.Org, func(st *license.OrgState, now time.Time) (*events.Envelope, error) {
		data, err := decideUpload(st, lic, grace, u, now)
		if err != nil || data == nil {
			return nil, err
		}
		return events.New(events.TypeUploaded, u.Org, now, u.Actor, st.Seq, data)
	}, func(err error) error { return s.reject(ctx, u, lic, err) })
}

// decideUpload applies the state-dependent rules. It returns nil data for
// an identical repeat.
func decideUpload(st *license.OrgState, lic *license.License, grace int, u Upload, now time.Time) (*events.Uploaded, error) {
	p := lic.Payload
	if st.IsRevoked(p.LicenseID) {
		return nil, fail(CodeRevoked, fmt.Sprintf("license %s was invalidated for %s", p.LicenseID, u.Org))
	}
	if !now.Before(p.Expires.Add(time.Duration(grace) * 24 * time.Hour)) {
		return nil, fail(CodeAlreadyExpired, fmt.Sprintf("the license expired on %s and its grace has ended", license.FormatTime(p.Expires)))
	}
	inForce, waiting := st.InForce(now)
	for _, held := range []*license.Slot{inForce, waiting} {
		if held != nil && held.Fingerprint == lic.Fingerprint {
			return nil, nil
		}
	}
	if inForce != nil && !u.Force && inForce.License.Payload != nil && p.IssuedAt.Before(inForce.License.Payload.IssuedAt) {
		return nil, fail(CodeOlderThanCurrent, fmt.Sprintf("the license was issued on %s, before the current one (%s); an operator can force it: ?force=true on the API, ledger upload --force",
			license.FormatTime(p.IssuedAt), license.FormatTime(inForce.License.Payload.IssuedAt)))
	}
	d := &events.Uploaded{LicenseID: p.LicenseID, Fingerprint: lic.Fingerprint, Key: lic.Key, Slot: events.SlotCurrent,
		GraceDaysEffective: grace, Source: u.Source}
	replaced := inForce
	if license.StartsLater(p, now) {
		d.Slot, replaced = events.SlotPending, waiting
	}
	if replaced != nil {
		id := replaced.LicenseID
		d.Replaces = &id
	}
	return d, nil
}

// reject audits a rule failure and returns it.
func (s *Service) reject(ctx context.Context, u Upload, lic *license.License, err error) error {
	var e *Error
	if !errors.As(err, &e) || u.noAudit {
		return err
	}
	rej := events.Rejected{Code: e.Code, Source: u.Source}
	if lic != nil {
		rej.Fingerprint = lic.Fingerprint
	}
	s.audit(ctx, u.Org, u.Actor, rej)
	return err
}

// decider builds the event of a command from the org's current state, or
// returns nil for a command that changes nothing, or an error.
type decider func(st *license.OrgState, now time.Time) (*events.Envelope, error)

// command runs decide against org's latest state and appends its event,
// retrying after conflicts with the reloaded state. onRuleErr (optional)
// sees rule failures (*Error) before they are returned.
//
// When this process has already brought org's state up to its subject head
// (the stream consumer keeps it there), the first attempt decides on that
// cached state without asking the stream for the head: the append's
// expected-sequence check proves it was current. A conflict there, a rule
// failure or a no-op is decided again on the state read up to the head,
// so nothing is refused or skipped on a stale cache.
func (s *Service) command(ctx context.Context, org string, decide decider, onRuleErr func(error) error) (Result, error) {
	e := s.entry(org)
	e.cmd.Lock()
	defer e.cmd.Unlock()
	cached := e.isSynced()
	for attempt := 0; attempt < maxAttempts; attempt++ {
		var st *license.OrgState
		if cached {
			st = s.State(org)
		} else {
			var err error
			if _, st, err = s.current(ctx, org); err != nil {
				return Result{}, err
			}
		}
		now := s.cfg.Now()
		env, err := decide(st, now)
		if cached && (err != nil || env == nil) {
			cached, attempt = false, attempt-1
			continue
		}
		if err != nil {
			if onRuleErr != nil {
				return Result{}, onRuleErr(err)
			}
			return Result{}, err
		}
		if env == nil {
			r, err := s.Status(ctx, org)
			return Result{Report: r, Seq: st.Seq}, err
		}
		seq, err := s.store.Append(ctx, events.OrgSubject(org), env, st.Seq)
		if isConflict(err) {
			// Another writer moved the subject on: retry on the state read
			// up to the head, at once after a cached attempt.
			s.cfg.Metrics.Conflicts.Inc()
			if cached {
				cached, attempt = false, attempt-1
			} else {
				jitter(attempt)
			}
			continue
		}
		if err != nil {
			return Result{}, err
		}
		s.cfg.Metrics.Appended.WithLabelValues(env.Type).Inc()
		// The envelope was built here and just accepted by the store: fold
		// it as it is rather than decoding its encoding again.
		own := s.apply(e, &events.Message{Seq: seq, Subject: events.OrgSubject(org), Envelope: env})
		r, err := s.reportAfter(ctx, org, own)
		return Result{Report: r, Appended: true, Seq: seq}, err
	}
	return Result{}, events.ErrConflict
}

// reportAfter is org's status payload right after its own append: own is
// the state with that event folded; the instance-wide state is the cached
// one when this process has read it up to its head before (the stream
// consumer keeps it current), else it is read up to its head now.
func (s *Service) reportAfter(ctx context.Context, org string, own *license.OrgState) (license.Report, error) {
	if own.Seq == 0 {
		return s.Status(ctx, org)
	}
	inst := own
	if org != license.InstanceOrg {
		if s.entry(license.InstanceOrg).isSynced() {
			inst = s.State(license.InstanceOrg)
		} else {
			var err error
			if _, inst, err = s.current(ctx, license.InstanceOrg); err != nil {
				return license.Report{}, err
			}
		}
	}
	return license.ReportOf(org, own, inst, s.cfg.Now()), nil
}

func isConflict(err error) bool { return errors.Is(err, events.ErrConflict) }

// jitter waits a little longer after each conflict, randomised so
// contending writers spread out.
func jitter(attempt int) {
	base := time.Duration(1<<min(attempt, 6)) * time.Millisecond
	time.Sleep(base + rand.N(base*4))
}

func (s *Service) count(command string, res Result, err error) {
	result := "ok"
	switch {
	case err != nil:
		result = CodeOf(err)
		if result == "" {
			result = "error"
		}
	case !res.Appended:
		result = "noop"
	}
	s.cfg.Metrics.Commands.WithLabelValues(command, result).Inc()
}
