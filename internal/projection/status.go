package projection

import (
	"time"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/license"
)

// InForce resolves s's slots at t: the license in force (nil if none) and
// the one still waiting (nil if none).
func (s *OrgState) InForce(t time.Time) (inForce, waiting *Slot) {
	if s == nil {
		return nil, nil
	}
	if s.Pending == nil || license.StartsLater(s.Pending.payload(), t) {
		return s.Current, s.Pending
	}
	return s.Pending, nil
}

// IsRevoked reports whether license id is revoked for s's org.
func (s *OrgState) IsRevoked(id string) bool {
	if s == nil {
		return false
	}
	_, ok := s.Revoked[id]
	return ok
}

// EnforcementMode is the install-wide mode recorded on _instance.
func (s *OrgState) EnforcementMode() string {
	if s == nil || s.Enforcement == "" {
		return events.EnforceAuto
	}
	return s.Enforcement
}

func held(s *Slot) *license.Held {
	if s == nil {
		return nil
	}
	return &s.Held
}

// Report is the status payload of org at t. own is the org's state (nil:
// no events); instance is _instance's. An org's own license decides in
// every state; the instance-wide license applies only to orgs with none of
// their own in force.
func Report(org string, own, instance *OrgState, t time.Time) license.Report {
	inForce, waiting := own.InForce(t)
	from, state := license.FromOrg, own
	if org == license.InstanceOrg {
		from = license.FromInstance
	}
	if inForce == nil && org != license.InstanceOrg {
		if instForce, _ := instance.InForce(t); instForce != nil {
			inForce, from, state = instForce, license.FromInstance, instance
		}
	}
	if inForce == nil {
		from = license.FromNone
	}
	revoked := inForce != nil && state.IsRevoked(inForce.LicenseID())
	r := license.Describe(org, held(inForce), revoked, held(waiting), t)
	r.ResolvedFrom = &from
	var seq uint64
	if own != nil {
		seq = own.Seq
	}
	r.Seq = &seq
	mode := instance.EnforcementMode()
	r.Enforcement = &mode
	return r
}
