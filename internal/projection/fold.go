// Package projection holds the fold every reader of the stream shares: one
// pure function from (org state, event) to org state, and the status of an
// org computed from its state and the instance-wide state at a given time.
//
// The fold never trusts an event: every uploaded key is re-verified against
// the reader's own key ring and install id, so a forged event can at worst
// make an org invalid, never valid.
package projection

import (
	"fmt"
	"maps"
	"time"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/license"
)

// Trust is what a reader verifies stored keys against.
type Trust struct {
	Ring      *license.Ring
	InstallID string // "" until the install id is known
	// Defer holds uploaded keys unverified (license.ErrUnverified, the key
	// kept) instead of verifying them: a reader loading many orgs at once
	// verifies them afterwards, in parallel, and before any decision on
	// one (Reverify).
	Defer bool
	// Checked, if set, holds uploads verified ahead of the fold under the
	// same ring and install id (CheckUploads): an upload it holds is
	// settled from it, deferring or not, instead of being verified again.
	Checked *Checked
}

// Verifies reports whether t verifies under the same ring and install id
// as u (whether either defers or not).
func (t Trust) Verifies(u Trust) bool { return t.Ring == u.Ring && t.InstallID == u.InstallID }

// Outcome says what Apply did with a message.
type Outcome int

// Outcomes of Apply.
const (
	Applied Outcome = iota // folded
	Ignored                // a valid event with no effect on state (unknown type, audit-only)
	Stale                  // at or below the state's sequence: already folded
	Invalid                // not a valid envelope, or prev_seq mismatch: skipped for state
	TooNew                 // schema newer than this build reads: skipped for state
)

func (o Outcome) String() string {
	return [...]string{"applied", "ignored", "stale", "invalid", "too_new"}[o]
}

// Apply folds m, a message of s.Org's org subject, into s and returns the
// new state (s itself when nothing changed but the sequence may have).
// Messages at or below s.Seq are Stale and change nothing. Every other
// message advances Seq, so the state's sequence always matches the subject
// head it has seen.
func Apply(trust Trust, s *license.OrgState, m *events.Message) (*license.OrgState, Outcome, error) {
	if m.Seq <= s.Seq {
		return s, Stale, nil
	}
	if !m.IsOrgSubject() || m.Org() != s.Org {
		return s, Stale, fmt.Errorf("message on %s folded into %s", m.Subject, s.Org)
	}
	n := s.Clone()
	n.Seq = m.Seq
	env := m.Envelope
	switch {
	case env == nil:
		return n, Invalid, m.Err
	case env.Schema > events.Schema:
		return n, TooNew, fmt.Errorf("schema %d is newer than %d: upgrade this reader", env.Schema, events.Schema)
	case env.PrevSeq != s.Seq:
		return n, Invalid, fmt.Errorf("prev_seq %d, the subject's previous event is %d", env.PrevSeq, s.Seq)
	}
	n.UpdatedAt = env.At.Time
	promote(n, env.At.Time)
	var err error
	switch env.Type {
	case events.TypeUploaded:
		err = applyUpload(n, trust, m)
	case events.TypeInvalidated:
		var d events.Invalidated
		if err = env.DecodeData(&d); err == nil && d.LicenseID == "" {
			err = fmt.Errorf("no license_id")
		}
		if err == nil {
			n.Revoked = n.Revoked.With(d.LicenseID, license.Revocation{Seq: m.Seq, Note: d.Note})
		}
	case events.TypeRemoved:
		n.Current, n.Pending = nil, nil
	case events.TypeEnforcementChanged:
		var d events.EnforcementChanged
		if err = env.DecodeData(&d); err == nil {
			if d.Mode != events.EnforceOn && d.Mode != events.EnforceOff && d.Mode != events.EnforceAuto {
				err = fmt.Errorf("enforcement mode %q", d.Mode)
			}
			n.Enforcement = d.Mode
		}
	case events.TypeSeatEnforcementChanged:
		var d events.SeatEnforcementChanged
		if err = env.DecodeData(&d); err == nil {
			if d.Mode != license.SeatsOff && d.Mode != license.SeatsSoft && d.Mode != license.SeatsHard {
				err = fmt.Errorf("seat enforcement mode %q", d.Mode)
			}
			n.SeatEnforcement = d.Mode
		}
	case events.TypeUsageReported:
		var d events.UsageReported
		if err = env.DecodeData(&d); err == nil && (d.Users < 0 || d.Users > events.MaxUsers) {
			err = fmt.Errorf("users %d: want 0..%d", d.Users, events.MaxUsers)
		}
		if err == nil {
			n.UsersActive, n.UsersReportedAt = d.Users, env.At.Time
		}
	case events.TypeGraceStarted, events.TypeExpired:
		// No effect on status (it is time-based); recorded so the expiry
		// scheduler appends each event once.
		var d events.Due
		if err = env.DecodeData(&d); err == nil {
			if env.Type == events.TypeGraceStarted {
				n.GraceStarted = withID(n.GraceStarted, d.LicenseID)
			} else {
				n.Expired = withID(n.Expired, d.LicenseID)
			}
		}
	case events.TypeExpiring:
		// No effect on status; recorded so the scheduler appends each
		// notice once.
		var d events.Expiring
		if err = env.DecodeData(&d); err == nil && (d.LicenseID == "" || d.Days < 1) {
			err = fmt.Errorf("license_id %q, days %d", d.LicenseID, d.Days)
		}
		if err == nil {
			n.Notices = withID(n.Notices, license.NoticeKey(d.LicenseID, d.Days))
		}
	default: // unknown types: ignored
		return n, Ignored, nil
	}
	if err != nil {
		s2 := s.Clone()
		s2.Seq = m.Seq
		return s2, Invalid, fmt.Errorf("%s data: %w", env.Type, err)
	}
	return n, Applied, nil
}

// withID returns a copy of set with id added.
func withID(set map[string]bool, id string) map[string]bool {
	c := maps.Clone(set)
	if c == nil {
		c = map[string]bool{}
	}
	c[id] = true
	return c
}

// promote makes a pending license current once its start has passed at
// time at (the event's time, so every reader agrees).
func promote(s *license.OrgState, at time.Time) {
	if s.Pending != nil && !license.StartsLater(s.Pending.Payload(), at) {
		s.Current, s.Pending = s.Pending, nil
	}
}

func applyUpload(s *license.OrgState, trust Trust, m *events.Message) error {
	var d events.Uploaded
	if err := m.Envelope.DecodeData(&d); err != nil {
		return err
	}
	if d.Slot != events.SlotCurrent && d.Slot != events.SlotPending {
		return fmt.Errorf("slot %q", d.Slot)
	}
	slot := &license.Slot{LicenseID: d.LicenseID, Fingerprint: d.Fingerprint, Key: d.Key, Seq: m.Seq, At: m.Envelope.At.Time}
	if k := trust.Checked.outcome(trust, m.Seq, d.Key, s.Org); k != nil {
		settle(slot, k.l, k.err, d.GraceDaysEffective)
	} else {
		verify(slot, trust, s.Org, d.GraceDaysEffective)
	}
	if d.Slot == events.SlotCurrent {
		s.Current = slot
	} else {
		s.Pending = slot
	}
	return nil
}

// NewSlot builds a slot from stored upload data (a read-model row), with
// its key verified under trust for org.
func NewSlot(trust Trust, org string, up events.Uploaded) *license.Slot {
	s := &license.Slot{LicenseID: up.LicenseID, Fingerprint: up.Fingerprint, Key: up.Key}
	verify(s, trust, org, up.GraceDaysEffective)
	return s
}

// verify (re-)checks s's stored key against trust and the upload's
// claims (its fingerprint, license id and effective grace).
func verify(s *license.Slot, trust Trust, org string, grace int) {
	if trust.Defer {
		s.Held = license.Held{Err: license.ErrUnverified, GraceDays: grace}
		return
	}
	l, err := trust.Ring.Verify([]byte(s.Key), license.Expect{Org: org, InstallID: trust.InstallID})
	settle(s, l, err, grace)
}

// settle holds in s the outcome (l, err) of verifying its key, with the
// upload's claims checked against the key: its fingerprint, license id and
// effective grace.
func settle(s *license.Slot, l *license.License, err error, grace int) {
	if l == nil {
		l = &license.License{PayloadErr: err}
	}
	if err == nil && (l.Fingerprint != s.Fingerprint || l.Payload.LicenseID != s.LicenseID) {
		err = &license.Error{Reason: license.ReasonMalformed, Detail: "the event's fingerprint or license_id does not match its key"}
	}
	if g := grace; err == nil &&
		(g < 0 || g > license.MaxGraceDays || g != license.EffectiveGrace(l.Payload, g)) {
		err = &license.Error{Reason: license.ReasonMalformed, Detail: "the event's grace_days_effective does not match its key"}
	}
	if l.Key == s.Key {
		s.Key = l.Key // one copy of the key text, not two
	}
	s.Held = license.Held{License: l, Err: err, GraceDays: grace}
}

// VerifySlot returns s verified under trust for org, with the grace its
// upload recorded (a slot held unverified, its key read back).
func VerifySlot(trust Trust, org string, s *license.Slot) *license.Slot {
	c := *s
	verify(&c, trust, org, s.GraceDays)
	return &c
}

// Settle returns s with the slots a deferred fold held unverified verified
// under trust (s itself when there are none); slots already verified are
// left as they are.
func Settle(trust Trust, s *license.OrgState) *license.OrgState {
	if !s.Unverified() {
		return s
	}
	n := s.Clone()
	for _, p := range []**license.Slot{&n.Current, &n.Pending} {
		if *p != nil && (*p).Err == license.ErrUnverified {
			*p = VerifySlot(trust, s.Org, *p)
		}
	}
	return n
}

// VerifySlots is VerifySlot for many slots at once, orgs[i] naming
// slots[i]'s org: the same results, the signatures checked together
// (license.Ring.VerifyBatch).
func VerifySlots(trust Trust, orgs []string, slots []*license.Slot) []*license.Slot {
	keys, expects := make([][]byte, len(slots)), make([]license.Expect, len(slots))
	for i, s := range slots {
		keys[i], expects[i] = []byte(s.Key), license.Expect{Org: orgs[i], InstallID: trust.InstallID}
	}
	ls, errs := trust.Ring.VerifyBatch(keys, expects)
	out := make([]*license.Slot, len(slots))
	for i, s := range slots {
		c := *s
		settle(&c, ls[i], errs[i], s.GraceDays)
		out[i] = &c
	}
	return out
}

// Reverify returns s with its slots verified again under trust (after a key
// ring reload or once the install id is known).
func Reverify(trust Trust, s *license.OrgState) *license.OrgState {
	n := s.Clone()
	for _, p := range []**license.Slot{&n.Current, &n.Pending} {
		if *p != nil {
			c := **p
			verify(&c, trust, s.Org, c.GraceDays)
			*p = &c
		}
	}
	return n
}

// States is a stream folded by org: what a reader that keeps every org in
// memory holds. The zero value is not usable; make one with make.
type States map[string]*license.OrgState

// Apply folds m into the state of the org its subject names. A message on
// any other subject, or naming an invalid org, changes nothing (Ignored).
func (s States) Apply(trust Trust, m *events.Message) (Outcome, error) {
	if !m.IsOrgSubject() || !events.ValidOrg(m.Org()) {
		return Ignored, nil
	}
	st := s[m.Org()]
	if st == nil {
		st = license.NewOrgState(m.Org())
	}
	n, outcome, err := Apply(trust, st, m)
	s[m.Org()] = n
	return outcome, err
}

// Rows returns every org's read-model row.
func (s States) Rows() map[string]Row {
	rows := make(map[string]Row, len(s))
	for org, st := range s {
		rows[org] = RowOf(st)
	}
	return rows
}
