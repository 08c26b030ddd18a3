package ledger

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/license"
)

// MaxNoteLength bounds an invalidation note, in bytes.
const MaxNoteLength = 1024

// Remove takes org's own license away (license.removed): the org falls back
// to the instance-wide license, or none. Removing when the org has no
// license of its own is a success with no event.
func (s *Service) Remove(ctx context.Context, org string, actor events.Actor) (Result, error) {
	res, err := s.command(ctx, org, func(st *license.OrgState, now time.Time) (*events.Envelope, error) {
		if st.Current == nil && st.Pending == nil {
			return nil, nil
		}
		held := st.Current
		if inForce, _ := st.InForce(now); inForce != nil {
			held = inForce
		}
		if held == nil {
			held = st.Pending
		}
		return events.New(events.TypeRemoved, org, now, actor, st.Seq, events.Removed{LicenseID: held.LicenseID})
	}, nil)
	s.count("remove", res, err)
	return res, err
}

// Invalidate revokes licenseID for org forever (license.invalidated). An id
// already revoked is a success with no event; an id the org never held is
// revoked pre-emptively.
func (s *Service) Invalidate(ctx context.Context, org string, actor events.Actor, licenseID, note string) (Result, error) {
	u, err := uuid.Parse(licenseID)
	if err != nil || len(licenseID) != 36 {
		return Result{}, fail(CodeBadRequest, "license_id must be a UUID")
	}
	if len(note) > MaxNoteLength || !utf8.ValidString(note) {
		return Result{}, fail(CodeBadRequest, fmt.Sprintf("note must be UTF-8 text of at most %d bytes", MaxNoteLength))
	}
	id := u.String()
	res, err := s.command(ctx, org, func(st *license.OrgState, now time.Time) (*events.Envelope, error) {
		if st.IsRevoked(id) {
			return nil, nil
		}
		return events.New(events.TypeInvalidated, org, now, actor, st.Seq, events.Invalidated{LicenseID: id, Note: note})
	}, nil)
	s.count("invalidate", res, err)
	return res, err
}

// SetEnforcement records the install-wide enforcement mode on _instance
// (enforcement.changed). Setting the mode already in force is a success
// with no event. Setting auto while the install holds a license latches at
// once (see latch).
func (s *Service) SetEnforcement(ctx context.Context, actor events.Actor, mode string) (string, error) {
	if mode != license.EnforceOn && mode != license.EnforceOff && mode != license.EnforceAuto {
		return "", fail(CodeBadRequest, "mode must be on, off or auto")
	}
	if err := s.setMode(ctx, "enforcement", (*license.OrgState).EnforcementMode, mode, func(now time.Time, prev uint64) (*events.Envelope, error) {
		return events.New(events.TypeEnforcementChanged, license.InstanceOrg, now, actor, prev, events.EnforcementChanged{Mode: mode})
	}); err != nil {
		return "", err
	}
	if mode == license.EnforceAuto {
		if err := s.latch(ctx); err != nil {
			return "", err
		}
	}
	return s.State(license.InstanceOrg).EnforcementMode(), nil
}

// setMode appends _instance's event setting an install-wide mode, unless
// current already says mode.
func (s *Service) setMode(ctx context.Context, command string, current func(*license.OrgState) string, mode string,
	event func(now time.Time, prevSeq uint64) (*events.Envelope, error)) error {
	res, err := s.command(ctx, license.InstanceOrg, func(st *license.OrgState, now time.Time) (*events.Envelope, error) {
		if current(st) == mode {
			return nil, nil
		}
		return event(now, st.Seq)
	}, nil)
	s.count(command, res, err)
	return err
}

// latch turns auto enforcement on once the install holds a license: the
// ledger appends enforcement.changed "on" as the system, so every reader
// sees the latch as ordinary install state, and removing licenses never
// turns enforcement off again — only an explicit, audited off does.
func (s *Service) latch(ctx context.Context) error {
	if s.State(license.InstanceOrg).EnforcementMode() != license.EnforceAuto || !s.holdsLicense() {
		return nil
	}
	system := events.Actor{Kind: events.ActorSystem, ID: "enforcement-auto"}
	res, err := s.command(ctx, license.InstanceOrg, func(st *license.OrgState, now time.Time) (*events.Envelope, error) {
		if st.EnforcementMode() != license.EnforceAuto {
			return nil, nil
		}
		return events.New(events.TypeEnforcementChanged, license.InstanceOrg, now, system, st.Seq, events.EnforcementChanged{Mode: license.EnforceOn})
	}, nil)
	s.count("enforcement_latch", res, err)
	return err
}

// holdsLicense reports whether any org (or the instance) has a verified
// license in force now.
func (s *Service) holdsLicense() bool {
	now := s.cfg.Now()
	for _, st := range s.states() {
		if inForce, _ := st.InForce(now); inForce != nil && inForce.Err == nil {
			return true
		}
	}
	return false
}

// states returns every cached org state with at least one event.
func (s *Service) states() []*license.OrgState {
	s.mu.Lock()
	entries := make([]*orgEntry, 0, len(s.orgs))
	for _, e := range s.orgs {
		entries = append(entries, e)
	}
	s.mu.Unlock()
	out := make([]*license.OrgState, 0, len(entries))
	for _, e := range entries {
		e.mu.Lock()
		if e.state.Seq > 0 {
			out = append(out, s.settled(e))
		}
		e.mu.Unlock()
	}
	return out
}

// Page is one page of the org listing.
type Page struct {
	Orgs []license.Report `json:"orgs"`
	// NextCursor continues the listing; nil on the last page.
	NextCursor *string `json:"next_cursor"`
}

// ListOrgs returns the status of every org with an event, _instance
// included, in org-name order, after the org named by cursor ("" = from
// the start), at most limit.
func (s *Service) ListOrgs(after string, limit int) Page {
	sts := s.states()
	sort.Slice(sts, func(i, j int) bool { return sts[i].Org < sts[j].Org })
	i := sort.Search(len(sts), func(i int) bool { return strings.Compare(sts[i].Org, after) > 0 })
	inst := s.State(license.InstanceOrg)
	now := s.cfg.Now()
	page := Page{Orgs: []license.Report{}}
	for ; i < len(sts) && len(page.Orgs) < limit; i++ {
		page.Orgs = append(page.Orgs, license.ReportOf(sts[i].Org, sts[i], inst, now))
	}
	if i < len(sts) && len(page.Orgs) > 0 {
		last := sts[i-1].Org
		page.NextCursor = &last
	}
	return page
}
