package license

import (
	"errors"
	"strconv"
	"time"
)

// ErrUnverified is the Err of a slot whose key a reader holds but has not
// verified yet (a replica that defers verification at start). A reader
// verifies such a slot before any decision uses it; its status, if asked,
// is invalid (malformed).
var ErrUnverified = errors.New("license key not verified yet")

// Enforcement modes, the install-wide setting recorded on _instance.
const (
	EnforceOn   = "on"
	EnforceOff  = "off"
	EnforceAuto = "auto"
)

// Seat enforcement modes, the install-wide setting recorded on _instance:
// how gatekeepers treat seat-consuming routes of an org whose reported
// users reach its license's users_limit.
const (
	SeatsOff  = "off"  // not enforced (the default)
	SeatsSoft = "soft" // served, with a warning
	SeatsHard = "hard" // refused (users_limit_reached)
)

// OrgState is an org's licenses as the stream left them: the current and
// pending slots, the revoked license ids and, on _instance, the
// install-wide enforcement mode. Values are immutable once published: a
// new event yields a new OrgState, so readers share them without locks,
// and a pointer identifies a version.
type OrgState struct {
	Org string
	// Seq is the stream sequence of the last message folded from the org's
	// subject (valid or not); 0 before any.
	Seq     uint64
	Current *Slot
	Pending *Slot
	// Revoked holds the license ids revoked on the org's subject.
	Revoked Revocations
	// Enforcement is the install-wide mode set on _instance ("" = never set).
	Enforcement string
	// SeatEnforcement is the install-wide seat mode set on _instance ("" =
	// never set: off).
	SeatEnforcement string
	// UsersActive is the org's active users as last reported
	// (usage.reported); meaningful only when UsersReportedAt is set.
	UsersActive int
	// UsersReportedAt is the time of the report that set UsersActive; zero
	// before any.
	UsersReportedAt time.Time
	// GraceStarted and Expired are the license ids whose grace_started and
	// expired events have been folded (the scheduler appends each once).
	GraceStarted map[string]bool
	Expired      map[string]bool
	// Notices are the license.expiring notices folded, by NoticeKey (the
	// scheduler appends each once).
	Notices map[string]bool
	// UpdatedAt is the last folded event's time.
	UpdatedAt time.Time
}

// Slot is a license held in an org's current or pending slot: what its
// upload recorded and its verification by this reader.
type Slot struct {
	// Held is the stored key verified against this reader's key ring, with
	// the effective grace the upload recorded.
	Held
	LicenseID   string // the id the upload names
	Fingerprint string // the upload's fingerprint of Key
	// Key is the stored license key; "" in a reader's compact form, which
	// drops it once verified (the upload event at Seq still holds it).
	Key string
	Seq uint64    // stream sequence of the upload (0: loaded from a read-model row)
	At  time.Time // the upload event's time
}

// Unverified reports whether s holds a license whose key it has not
// verified yet (ErrUnverified): no decision may be made on s.
func (s *OrgState) Unverified() bool {
	return s != nil && (s.Current != nil && s.Current.Err == ErrUnverified || s.Pending != nil && s.Pending.Err == ErrUnverified)
}

// NewOrgState returns the state of an org with no events.
func NewOrgState(org string) *OrgState { return &OrgState{Org: org} }

// Clone returns a shallow copy of s (maps and slots shared: replace them,
// never change them in place).
func (s *OrgState) Clone() *OrgState {
	c := *s
	return &c
}

// InForce resolves s's slots at t: the license in force (nil if none) and
// the one still waiting (nil if none).
func (s *OrgState) InForce(t time.Time) (inForce, waiting *Slot) {
	if s == nil {
		return nil, nil
	}
	if s.Pending == nil || StartsLater(s.Pending.Payload(), t) {
		return s.Current, s.Pending
	}
	return s.Pending, nil
}

// NoticeKey names the license.expiring notice of license id at days in
// OrgState.Notices.
func NoticeKey(id string, days int) string { return id + ":" + strconv.Itoa(days) }

// Effective returns the license an org's expiry is judged by at t: the
// license in force, or the waiting one when it renews it — it starts before
// the one in force expires (so there is no gap) and expires later. It is
// nil when neither is a verified license that is not revoked (an invalid
// or revoked license in force has no expiry to look ahead to).
func (s *OrgState) Effective(t time.Time) *Slot {
	inForce, waiting := s.InForce(t)
	if !s.usable(inForce) {
		return nil
	}
	if s.usable(waiting) {
		cur, next := inForce.Payload(), waiting.Payload()
		if !next.NotBefore.Add(-Skew).After(cur.Expires) && next.Expires.After(cur.Expires) {
			return waiting
		}
	}
	return inForce
}

// usable reports whether slot holds a verified license that is not revoked.
func (s *OrgState) usable(slot *Slot) bool {
	return slot != nil && slot.Err == nil && slot.Payload() != nil && !s.IsRevoked(slot.LicenseID)
}

// IsRevoked reports whether license id is revoked for s's org.
func (s *OrgState) IsRevoked(id string) bool {
	if s == nil {
		return false
	}
	_, ok := s.Revoked.Get(id)
	return ok
}

// EnforcementMode is the install-wide mode recorded on _instance.
func (s *OrgState) EnforcementMode() string {
	if s == nil || s.Enforcement == "" {
		return EnforceAuto
	}
	return s.Enforcement
}

// SeatMode is the install-wide seat enforcement mode recorded on
// _instance.
func (s *OrgState) SeatMode() string {
	if s == nil || s.SeatEnforcement == "" {
		return SeatsOff
	}
	return s.SeatEnforcement
}

// Users returns the org's reported active users, and false before any
// report.
func (s *OrgState) Users() (int, bool) {
	if s == nil || s.UsersReportedAt.IsZero() {
		return 0, false
	}
	return s.UsersActive, true
}

func held(s *Slot) *Held {
	if s == nil {
		return nil
	}
	return &s.Held
}

// ReportOf is the status payload of org at t. own is the org's state (nil:
// no events); instance is _instance's. An org's own license decides in
// every state; the instance-wide license applies only to orgs with none of
// their own in force.
func ReportOf(org string, own, instance *OrgState, t time.Time) Report {
	inForce, waiting := own.InForce(t)
	from, state := FromOrg, own
	if org == InstanceOrg {
		from = FromInstance
	}
	if inForce == nil && org != InstanceOrg {
		if instForce, _ := instance.InForce(t); instForce != nil {
			inForce, from, state = instForce, FromInstance, instance
		}
	}
	if inForce == nil {
		from = FromNone
	}
	revoked := inForce != nil && state.IsRevoked(inForce.LicenseID)
	r := Describe(org, held(inForce), revoked, held(waiting), t)
	r.ResolvedFrom = &from
	var seq uint64
	if own != nil {
		seq = own.Seq
	}
	r.Seq = &seq
	mode := instance.EnforcementMode()
	r.Enforcement = &mode
	if n, ok := own.Users(); ok {
		r.UsersActive, r.UsersReportedAt = &n, timePtr(own.UsersReportedAt)
	}
	return r
}

// NewSlot verifies key against ring for org (and installID, "" for none)
// and returns it as a slot held with graceDays of grace after expiry: what
// a reader makes of an uploaded key, for a Source that does not fold the
// stream (tests, fixed states). A key that does not verify is held with
// its error, as the fold holds it.
func NewSlot(ring *Ring, org, installID, key string, graceDays int) *Slot {
	l, err := ring.Verify([]byte(key), Expect{Org: org, InstallID: installID})
	if l == nil {
		l = &License{PayloadErr: err}
	}
	s := &Slot{Held: Held{License: l, Err: err, GraceDays: graceDays}, Fingerprint: Fingerprint(key), Key: key}
	if l.Payload != nil {
		s.LicenseID, s.Fingerprint = l.Payload.LicenseID, l.Fingerprint
	}
	return s
}
