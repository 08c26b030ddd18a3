package ledger

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/tick"
	"github.com/licenseledger/ledger/license"
)

// dueNamespace makes scheduler event ids deterministic: every replica
// computes the same id for the same license and type, so JetStream's
// de-duplication and the per-subject sequence check let one append win.
var dueNamespace = uuid.MustParse("6f1c3a52-3d0e-4c59-9d0a-5b8f1e2d7a41")

// DueEventID is the id of the scheduler's event of type typ for licenseID.
func DueEventID(licenseID, typ string) string {
	return uuid.NewSHA1(dueNamespace, []byte(licenseID+":"+typ)).String()
}

// NoticeEventID is the id of the scheduler's license.expiring notice for
// licenseID at the threshold of days days.
func NoticeEventID(licenseID string, days int) string {
	return DueEventID(licenseID, events.TypeExpiring+":"+strconv.Itoa(days))
}

// DefaultExpiryNoticeDays are the thresholds of LICENSE_EXPIRY_NOTICE_DAYS
// when it is not set: license.expiring notices 30, 14, 7 and 1 days ahead.
var DefaultExpiryNoticeDays = []int{30, 14, 7, 1}

// MaxExpiryNoticeDays bounds a threshold of LICENSE_EXPIRY_NOTICE_DAYS.
const MaxExpiryNoticeDays = 365

// ParseExpiryNoticeDays reads LICENSE_EXPIRY_NOTICE_DAYS: comma-separated
// days ahead of expiry, each 1..MaxExpiryNoticeDays and given once, or
// "off" (or "") for no notices. The result is in descending order, never
// nil.
func ParseExpiryNoticeDays(v string) ([]int, error) {
	v = strings.TrimSpace(v)
	out := []int{}
	if v == "" || v == "off" {
		return out, nil
	}
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > MaxExpiryNoticeDays {
			return nil, fmt.Errorf("%q is not a number of days 1..%d", f, MaxExpiryNoticeDays)
		}
		if slices.Contains(out, n) {
			return nil, fmt.Errorf("%d is given twice", n)
		}
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b int) int { return b - a })
	return out, nil
}

// dueEvent is a scheduler event an org's state still lacks.
type dueEvent struct {
	typ       string
	licenseID string
	dueAt     time.Time
	// days and expires: a license.expiring notice's threshold and expiry.
	days    int
	expires time.Time
}

// dueFor lists the events due at now for the license in force in st: the
// license.expiring notice of the nearest threshold of notices (days ahead)
// reached before the org's licensing ends (license.OrgState.Effective: a
// pending renewal that covers the expiry moves it), a grace_started at
// expires and an expired at expires + grace (both, in that order, when
// grace is 0). Invalid and revoked licenses are skipped.
func dueFor(st *license.OrgState, now time.Time, notices []int) []dueEvent {
	held, _ := st.InForce(now)
	if held == nil || held.Err != nil || held.License.Payload == nil || st.IsRevoked(held.LicenseID) {
		return nil
	}
	id := held.LicenseID
	expires := held.License.Payload.Expires
	var out []dueEvent
	if n, ok := noticeFor(st, now, notices); ok {
		out = append(out, n)
	}
	if !now.Before(expires) && !st.GraceStarted[id] {
		out = append(out, dueEvent{typ: events.TypeGraceStarted, licenseID: id, dueAt: expires})
	}
	if end := held.GraceEnds(); !now.Before(end) && !st.Expired[id] {
		out = append(out, dueEvent{typ: events.TypeExpired, licenseID: id, dueAt: end})
	}
	return out
}

// noticeFor returns the license.expiring notice st still lacks at now:
// the one of the smallest threshold already reached before the effective
// license's expiry. Thresholds passed while no ledger ran are not sent
// late when a nearer one is due too: a downtime yields one notice, the
// nearest.
func noticeFor(st *license.OrgState, now time.Time, notices []int) (dueEvent, bool) {
	eff := st.Effective(now)
	if eff == nil || !now.Before(eff.Payload().Expires) {
		return dueEvent{}, false
	}
	expires := eff.Payload().Expires
	days := 0
	for _, d := range notices {
		if !now.Before(expires.Add(-time.Duration(d)*24*time.Hour)) && (days == 0 || d < days) {
			days = d
		}
	}
	if days == 0 || st.Notices[license.NoticeKey(eff.LicenseID, days)] {
		return dueEvent{}, false
	}
	return dueEvent{typ: events.TypeExpiring, licenseID: eff.LicenseID,
		dueAt: expires.Add(-time.Duration(days) * 24 * time.Hour), days: days, expires: expires}, true
}

// RunScheduler appends license.expiring notices, grace_started and expired
// events when they fall due, checking every interval (default 1 s) until
// ctx ends. Any number of ledgers may run it: each event is appended once.
// After downtime it appends the late events once, each with its due time
// in due_at (of the notices, only the nearest threshold's).
func (s *Service) RunScheduler(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = time.Second
	}
	s.ScheduleDue(ctx)
	tick.Every(ctx, interval, func() { s.ScheduleDue(ctx) })
}

// ScheduleDue appends every event due now, once.
func (s *Service) ScheduleDue(ctx context.Context) {
	now := s.cfg.Now()
	for _, st := range s.states() {
		if len(dueFor(st, now, s.cfg.ExpiryNoticeDays)) == 0 {
			continue
		}
		if err := s.appendDue(ctx, st.Org); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("expiry event not appended; retrying at the next tick", "org", st.Org, "err", err)
		}
	}
}

// appendDue appends org's due events in order, each decided against the
// org's latest state, so a replica that lost the race appends nothing.
func (s *Service) appendDue(ctx context.Context, org string) error {
	if err := s.refold(ctx, org); err != nil {
		return err
	}
	system := events.Actor{Kind: events.ActorSystem, ID: "scheduler"}
	for {
		res, err := s.command(ctx, org, func(st *license.OrgState, now time.Time) (*events.Envelope, error) {
			due := dueFor(st, now, s.cfg.ExpiryNoticeDays)
			if len(due) == 0 {
				return nil, nil
			}
			d := due[0]
			if d.typ == events.TypeExpiring {
				return events.NewWithID(NoticeEventID(d.licenseID, d.days), d.typ, org, now, system, st.Seq,
					events.Expiring{LicenseID: d.licenseID, Days: d.days, Expires: events.Time{Time: d.expires}, DueAt: events.Time{Time: d.dueAt}})
			}
			return events.NewWithID(DueEventID(d.licenseID, d.typ), d.typ, org, now, system, st.Seq,
				events.Due{LicenseID: d.licenseID, DueAt: events.Time{Time: d.dueAt}})
		}, nil)
		s.count("schedule", res, err)
		if err != nil || !res.Appended {
			return err
		}
	}
}
