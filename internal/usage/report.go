// Package usage computes the seat true-up report: per org and calendar
// month (UTC), the most users the org's platform reported, the users_limit
// in force, and the days on which the reported users exceeded the limit in
// force at that moment.
//
// It is computed from the events alone — the audit trail, which holds
// every message of the stream exactly as stored — by the fold every reader
// shares: the same report comes out of any ledger, at any time, and after
// a replay. Usage is recorded only when it changes, so a number holds from
// its report until the next one.
package usage

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/projection"
	"github.com/licenseledger/ledger/license"
)

// Query selects a report.
type Query struct {
	// From (inclusive) and To (exclusive) bound the period; each month
	// they touch gets a row, covering its part inside the period.
	From, To time.Time
	// Org selects one org ("" = every org with a usage report).
	Org string
	// Scope is the orgs the caller may see: nil = every org.
	Scope []string
}

// MaxMonths bounds a report's period.
const MaxMonths = 120

// Row is one org's month.
type Row struct {
	Month string `json:"month"` // YYYY-MM
	Org   string `json:"org"`
	// MaxUsers is the most active users in force at any moment of the
	// month's covered part; null when none was reported by then.
	MaxUsers *int `json:"max_users"`
	// UsersLimit is the users_limit of the license in force (valid or in
	// grace) at the end of the covered part, 0 = unlimited; null when no
	// license was in force then. LicenseID names that license.
	UsersLimit *int    `json:"users_limit"`
	LicenseID  *string `json:"license_id"`
	// DaysOver counts the UTC days of the covered part on which, at some
	// moment, the users in force exceeded a non-zero users_limit in force.
	DaysOver int `json:"days_over"`
	// MaxOverage is the largest excess of users over the limit in force at
	// the same moment (0 when never over).
	MaxOverage int `json:"max_overage"`
	// Reports counts the usage.reported events of the month (changes).
	Reports int `json:"reports"`
}

// CSVHeader is the header line of the CSV form.
const CSVHeader = "month,org,max_users,users_limit,license_id,days_over,max_overage,reports"

// CSV renders r as a line of the CSV form (no newline); null cells are
// empty.
func (r Row) CSV() string {
	cell := func(p *int) string {
		if p == nil {
			return ""
		}
		return fmt.Sprint(*p)
	}
	id := ""
	if r.LicenseID != nil {
		id = *r.LicenseID
	}
	return strings.Join([]string{r.Month, r.Org, cell(r.MaxUsers), cell(r.UsersLimit), id,
		fmt.Sprint(r.DaysOver), fmt.Sprint(r.MaxOverage), fmt.Sprint(r.Reports)}, ",")
}

// Check validates q's period.
func (q Query) Check() error {
	switch {
	case q.From.IsZero() || q.To.IsZero():
		return fmt.Errorf("the period needs from and to")
	case !q.From.Before(q.To):
		return fmt.Errorf("from (%s) must be before to (%s)", q.From.Format(time.RFC3339), q.To.Format(time.RFC3339))
	case len(months(q.From, q.To)) > MaxMonths:
		return fmt.Errorf("the period spans more than %d months", MaxMonths)
	}
	return nil
}

// snapshot is an org's state from at on (until the next one).
type snapshot struct {
	at time.Time
	st *license.OrgState
}

// history is one org's states over time, and its usage reports.
type history struct {
	states  []snapshot
	reports []time.Time
	used    bool // some usage.reported was folded
}

// Compute reads the trail up to q.To and returns the report's rows, by org
// then month. Stored keys are verified under trust, as every reader does:
// a forged license in the stream never counts as a limit in force.
func Compute(ctx context.Context, trail audit.Reader, trust projection.Trust, q Query) ([]Row, error) {
	if err := q.Check(); err != nil {
		return nil, err
	}
	q.From, q.To = q.From.UTC(), q.To.UTC()
	orgs := map[string]*history{}
	var inst history
	states := projection.States{}
	fold := func(r *audit.Record) error {
		if !strings.HasPrefix(r.Subject, events.OrgPrefix) || r.At.IsZero() {
			return nil // audit-only and invalid messages never change state
		}
		m := events.Decode(r.Subject, r.Seq, r.Raw)
		org := m.Org()
		if _, err := states.Apply(trust, m); err != nil || !events.ValidOrg(org) {
			return nil // skipped for state, as every reader skips it
		}
		h := &inst
		if org != license.InstanceOrg {
			if h = orgs[org]; h == nil {
				h = &history{}
				orgs[org] = h
			}
		}
		at := r.At.UTC()
		if n := len(h.states); n > 0 && at.Before(h.states[n-1].at) {
			at = h.states[n-1].at // clocks of several ledgers: never back in time
		}
		if at.Before(q.From) {
			// Before the period only the state in force at its start
			// counts: one snapshot per org, however long the trail.
			h.states = append(h.states[:0], snapshot{at, states[org]})
		} else {
			h.states = append(h.states, snapshot{at, states[org]})
		}
		if m.Type() == events.TypeUsageReported {
			h.used = true
			if !at.Before(q.From) {
				h.reports = append(h.reports, at)
			}
		}
		return nil
	}
	// Records strictly after To cannot change the period; the trail is in
	// seq order, which is the fold's order.
	if q.Org != "" {
		if err := scanMerged(ctx, trail, []string{q.Org, license.InstanceOrg}, q.To, fold); err != nil {
			return nil, err
		}
	} else if err := trail.Scan(ctx, audit.Query{Until: q.To}, fold); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(orgs))
	for org, h := range orgs {
		if h.used && (q.Org == "" || org == q.Org) && (q.Scope == nil || slices.Contains(q.Scope, org)) {
			names = append(names, org)
		}
	}
	sort.Strings(names)
	var rows []Row
	for _, org := range names {
		rows = append(rows, orgRows(org, orgs[org], &inst, q.From, q.To)...)
	}
	return rows, nil
}

// scanMerged scans the records of each org (up to until) and hands them to
// fn in seq order.
func scanMerged(ctx context.Context, trail audit.Reader, orgs []string, until time.Time, fn func(*audit.Record) error) error {
	var recs []audit.Record
	for _, org := range orgs {
		err := trail.Scan(ctx, audit.Query{Org: org, Until: until}, func(r *audit.Record) error {
			if strings.HasPrefix(r.Subject, events.OrgPrefix) {
				c := *r
				c.Raw = slices.Clone(r.Raw)
				recs = append(recs, c)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Seq < recs[j].Seq })
	for i := range recs {
		if err := fn(&recs[i]); err != nil {
			return err
		}
	}
	return nil
}

// ParseTime reads a period bound: YYYY-MM (the month's first instant),
// YYYY-MM-DD (the day's) or RFC 3339; UTC.
func ParseTime(v string) (time.Time, error) {
	for _, layout := range []string{"2006-01", time.DateOnly, time.RFC3339Nano} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q: want YYYY-MM, YYYY-MM-DD or an RFC 3339 time", v)
}

// at returns the state in force at t (nil before the first).
func (h *history) at(t time.Time) *license.OrgState {
	i := sort.Search(len(h.states), func(i int) bool { return h.states[i].at.After(t) })
	if i == 0 {
		return nil
	}
	return h.states[i-1].st
}

// segment is a stretch of time over which users and the limit hold.
type segment struct {
	from, until time.Time
	users       int
	hasUsers    bool
	limit       *int // nil: no license in force
	licenseID   *string
}

// orgRows computes org's rows for [from, to).
func orgRows(org string, h, inst *history, from, to time.Time) []Row {
	segs := segments(org, h, inst, from, to)
	moments := instants(org, h, inst, from, to)
	var rows []Row
	for _, m := range months(from, to) {
		start, end := later(m, from), earlier(m.AddDate(0, 1, 0), to)
		row := Row{Month: m.Format("2006-01"), Org: org}
		over := map[string]bool{}
		count := func(s segment, a, b time.Time) {
			if s.hasUsers && (row.MaxUsers == nil || s.users > *row.MaxUsers) {
				row.MaxUsers = ptr(s.users)
			}
			if s.hasUsers && s.limit != nil && *s.limit > 0 && s.users > *s.limit {
				row.MaxOverage = max(row.MaxOverage, s.users-*s.limit)
				for d := day(a); !d.After(b); d = d.AddDate(0, 0, 1) {
					over[d.Format(time.DateOnly)] = true
				}
			}
		}
		for _, s := range segs {
			if !s.from.Before(end) || !s.until.After(start) {
				continue
			}
			// [a, b]: the segment's part in the month, b its last instant.
			count(s, later(s.from, start), earlier(s.until, end).Add(-time.Nanosecond))
			row.UsersLimit, row.LicenseID = s.limit, s.licenseID // the last segment of the month wins
		}
		for _, s := range moments {
			if !s.from.Before(start) && s.from.Before(end) {
				count(s, s.from, s.from)
			}
		}
		row.DaysOver = len(over)
		for _, t := range h.reports {
			if !t.Before(start) && t.Before(end) {
				row.Reports++
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// instants are org's states at each of its own events in [from, to): a
// number reported and replaced at the same instant still was reported.
func instants(org string, h, inst *history, from, to time.Time) []segment {
	var out []segment
	for _, sn := range h.states {
		if sn.at.Before(from) || !sn.at.Before(to) {
			continue
		}
		out = append(out, stateAt(org, sn.st, inst.at(sn.at), sn.at, sn.at))
	}
	return out
}

// stateAt is the segment [t, until) of org's own and instance states.
func stateAt(org string, own, in *license.OrgState, t, until time.Time) segment {
	s := segment{from: t, until: until}
	s.users, s.hasUsers = own.Users()
	rep := license.ReportOf(org, own, in, t)
	if (rep.Status == license.StatusValid || rep.Status == license.StatusGrace) && rep.UsersLimit != nil {
		s.limit, s.licenseID = rep.UsersLimit, rep.LicenseID
	}
	return s
}

// segments splits [from, to) wherever org's users or limit may change: at
// its own events and _instance's, and at every time threshold of the
// licenses involved (a pending license's start, expiry, grace end).
func segments(org string, h, inst *history, from, to time.Time) []segment {
	points := []time.Time{from, to}
	add := func(t time.Time) {
		if t.After(from) && t.Before(to) {
			points = append(points, t)
		}
	}
	for _, hist := range []*history{h, inst} {
		for _, s := range hist.states {
			add(s.at)
			for _, slot := range []*license.Slot{s.st.Current, s.st.Pending} {
				if slot == nil {
					continue
				}
				if p := slot.Payload(); p != nil {
					if !p.NotBefore.IsZero() {
						add(p.NotBefore.Add(-license.Skew))
					}
					add(p.Expires)
					add(slot.Held.GraceEnds())
				}
			}
		}
	}
	for _, m := range months(from, to) {
		add(m)
	}
	slices.SortFunc(points, func(a, b time.Time) int { return a.Compare(b) })
	points = slices.CompactFunc(points, func(a, b time.Time) bool { return a.Equal(b) })
	segs := make([]segment, 0, len(points)-1)
	for i := 0; i+1 < len(points); i++ {
		t := points[i]
		segs = append(segs, stateAt(org, h.at(t), inst.at(t), t, points[i+1]))
	}
	return segs
}

// months returns the first instant (UTC) of every month [from, to) touches.
func months(from, to time.Time) []time.Time {
	var out []time.Time
	m := time.Date(from.Year(), from.Month(), 1, 0, 0, 0, 0, time.UTC)
	for ; m.Before(to) && len(out) <= MaxMonths; m = m.AddDate(0, 1, 0) {
		out = append(out, m)
	}
	return out
}

// day is t's UTC day.
func day(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func ptr[T any](v T) *T { return &v }
