package ledger

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/licenseledger/ledger/license"
)

// OrgStatuses are the statuses ledger_orgs counts, each exported (0
// included) so that alert rules never meet a missing series.
var OrgStatuses = []license.Status{license.StatusValid, license.StatusGrace, license.StatusExpired,
	license.StatusInvalid, license.StatusMissing}

// ExpiringWithin are the windows of ledger_orgs_expiring, by label.
var ExpiringWithin = []struct {
	Label string
	Days  int
}{{"7d", 7}, {"30d", 30}}

// OrgCounts are the orgs' licenses at a time, counted for the metrics:
// no org is named.
type OrgCounts struct {
	// Status counts the orgs by status, as GET /api/orgs lists them:
	// every org with an event, and _instance when it holds a license.
	// Orgs whose keys are not verified yet (UnverifiedOrgs) are not
	// counted.
	Status map[license.Status]int
	// Expiring counts the valid orgs whose licensing ends within
	// ExpiringWithin[i].Days: their license's expiry, or a pending
	// renewal's that covers it (license.OrgState.Effective).
	Expiring []int
	// Soonest is the soonest such expiry still ahead; zero when none.
	Soonest time.Time
	// Enforced: the install-wide enforcement mode is on (gatekeepers
	// refuse orgs whose license is not valid or in grace).
	Enforced bool
}

// CountOrgs counts the orgs held in memory at t, without verifying keys or
// reading the stream: cheap enough for every scrape.
func (s *Service) CountOrgs(t time.Time) OrgCounts {
	c := OrgCounts{Status: make(map[license.Status]int, len(OrgStatuses)), Expiring: make([]int, len(ExpiringWithin))}
	inst := s.State(license.InstanceOrg)
	c.Enforced = inst.EnforcementMode() == license.EnforceOn
	s.mu.Lock()
	entries := make([]*orgEntry, 0, len(s.orgs))
	for _, e := range s.orgs {
		entries = append(entries, e)
	}
	s.mu.Unlock()
	for _, e := range entries {
		e.mu.Lock()
		own := e.state
		e.mu.Unlock()
		if own.Seq == 0 || own.Unverified() {
			continue
		}
		if own.Org == license.InstanceOrg {
			own = inst
		}
		state := own
		inForce, _ := own.InForce(t)
		if inForce == nil && own.Org != license.InstanceOrg {
			if instForce, _ := inst.InForce(t); instForce != nil {
				inForce, state = instForce, inst
			}
		}
		var held *license.Held
		if inForce != nil {
			held = &inForce.Held
		}
		st, _ := held.Status(t, inForce != nil && state.IsRevoked(inForce.LicenseID))
		if st == license.StatusMissing && own.Org == license.InstanceOrg {
			continue // no install-wide license: _instance is no org
		}
		c.Status[st]++
		if st != license.StatusValid {
			continue
		}
		eff := state.Effective(t)
		if eff == nil {
			continue
		}
		expires := eff.Payload().Expires
		if !t.Before(expires) {
			continue
		}
		if c.Soonest.IsZero() || expires.Before(c.Soonest) {
			c.Soonest = expires
		}
		for i, w := range ExpiringWithin {
			if !expires.After(t.Add(time.Duration(w.Days) * 24 * time.Hour)) {
				c.Expiring[i]++
			}
		}
	}
	return c
}

// orgsCollector exports CountOrgs at every scrape.
type orgsCollector struct {
	s                                 *Service
	orgs, expiring, soonest, enforced *prometheus.Desc
}

// OrgsCollector exports the orgs' licenses, counted at each scrape
// (CountOrgs): ledger_orgs{status}, ledger_orgs_expiring{within},
// ledger_license_soonest_expiry_timestamp_seconds (absent when no license
// is ahead of its expiry) and ledger_enforcement_on. No per-org label.
func (s *Service) OrgsCollector() prometheus.Collector {
	return &orgsCollector{s: s,
		orgs: prometheus.NewDesc("ledger_orgs",
			"Orgs by license status now (valid, grace, expired, invalid, missing): every org with an event, and _instance when it holds a license; orgs not verified yet (ledger_orgs_unverified) are not counted.",
			[]string{"status"}, nil),
		expiring: prometheus.NewDesc("ledger_orgs_expiring",
			"Valid orgs whose license expires within 7 or 30 days (a pending renewal that covers the expiry counts instead).",
			[]string{"within"}, nil),
		soonest: prometheus.NewDesc("ledger_license_soonest_expiry_timestamp_seconds",
			"The soonest expiry of a license in force and not yet expired (or of the pending renewal that covers it), as a Unix time; absent when there is none.",
			nil, nil),
		enforced: prometheus.NewDesc("ledger_enforcement_on",
			"1 when the install-wide enforcement mode is on (gatekeepers refuse orgs without a valid license or one in grace), else 0.",
			nil, nil),
	}
}

func (c *orgsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.orgs
	ch <- c.expiring
	ch <- c.soonest
	ch <- c.enforced
}

func (c *orgsCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.s.CountOrgs(c.s.cfg.Now())
	for _, st := range OrgStatuses {
		ch <- prometheus.MustNewConstMetric(c.orgs, prometheus.GaugeValue, float64(n.Status[st]), string(st))
	}
	for i, w := range ExpiringWithin {
		ch <- prometheus.MustNewConstMetric(c.expiring, prometheus.GaugeValue, float64(n.Expiring[i]), w.Label)
	}
	if !n.Soonest.IsZero() {
		ch <- prometheus.MustNewConstMetric(c.soonest, prometheus.GaugeValue, float64(n.Soonest.Unix()))
	}
	on := 0.0
	if n.Enforced {
		on = 1
	}
	ch <- prometheus.MustNewConstMetric(c.enforced, prometheus.GaugeValue, on)
}
