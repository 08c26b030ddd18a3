package ledger_test

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/ledger"
)

const day = 24 * time.Hour

// noticeFixture is two ledgers on one stream and a clock, racing the
// scheduler at each step.
type noticeFixture struct {
	t     *testing.T
	f     *fixture
	svcs  []*ledger.Service
	start time.Time
}

func newNoticeFixture(t *testing.T, f *fixture, days []int) *noticeFixture {
	start := time.Now().UTC().Truncate(time.Second)
	f.clock.Store(&start)
	n := &noticeFixture{t: t, f: f, start: start}
	for range 2 {
		svc := ledger.New(ledger.Config{Store: f.store, Keys: keysFor(t), DefaultGraceDays: 7, Now: f.now, Version: "test", ExpiryNoticeDays: days})
		if err := svc.Start(context.Background(), events.LedgerStarted{}); err != nil {
			t.Fatal(err)
		}
		n.svcs = append(n.svcs, svc)
	}
	return n
}

// at sets the clock to at and runs both ledgers' scheduler concurrently,
// three times each.
func (n *noticeFixture) at(at time.Time) {
	n.f.clock.Store(&at)
	var wg sync.WaitGroup
	for range 3 {
		for _, s := range n.svcs {
			wg.Add(1)
			go func() { defer wg.Done(); s.ScheduleDue(context.Background()) }()
		}
	}
	wg.Wait()
}

// upload uploads a license for org expiring at expires (and starting at
// notBefore unless zero), issued at issued, with id.
func (n *noticeFixture) upload(org, id, issued string, notBefore, expires time.Time) {
	n.t.Helper()
	key := sign(n.t, "k1", func(p map[string]any) {
		p["org_slug"], p["license_id"], p["issued_at"] = org, id, issued
		p["expires"] = expires.Format(time.RFC3339)
		if !notBefore.IsZero() {
			p["not_before"] = notBefore.Format(time.RFC3339)
		}
	})
	if _, err := upload(n.t, n.svcs[0], org, key); err != nil {
		n.t.Fatalf("upload %s to %s: %v", id, org, err)
	}
}

// notices returns org's license.expiring notices as "license_id/days",
// checking each one's id, actor, expiry and due time.
func (n *noticeFixture) notices(org string) []string {
	n.t.Helper()
	var out []string
	for _, m := range subjectTypes(n.t, n.f, events.OrgSubject(org)) {
		if m.Type() != events.TypeExpiring {
			continue
		}
		var d events.Expiring
		if err := m.Envelope.DecodeData(&d); err != nil {
			n.t.Fatal(err)
		}
		if m.Envelope.ID != ledger.NoticeEventID(d.LicenseID, d.Days) || m.Envelope.Actor.Kind != events.ActorSystem ||
			!d.DueAt.Equal(d.Expires.Add(-time.Duration(d.Days)*day)) || m.Envelope.At.Before(d.DueAt.Time) {
			n.t.Fatalf("notice %+v: id %s, actor %v, at %v", d, m.Envelope.ID, m.Envelope.Actor, m.Envelope.At)
		}
		out = append(out, d.LicenseID[len(d.LicenseID)-2:]+"/"+strconv.Itoa(d.Days))
	}
	return out
}

func (n *noticeFixture) want(org string, want ...string) {
	n.t.Helper()
	if got := n.notices(org); !slices.Equal(got, want) {
		n.t.Fatalf("%s: notices %v, want %v", org, got, want)
	}
}

// The scheduler appends license.expiring once per license and threshold,
// with two ledgers racing every tick: a downtime that skips thresholds
// yields the nearest one only; a renewal (current, or pending and
// covering the expiry) stops them; a pending license that leaves a gap
// does not.
func TestExpiryNotices(t *testing.T) { onEachStore(t, testExpiryNotices) }

func testExpiryNotices(t *testing.T, f *fixture) {
	n := newNoticeFixture(t, f, nil) // the default thresholds: 30, 14, 7, 1
	s := n.start
	id := func(x string) string { return "0193a5b0-7e1a-7c3d-8f00-0000000000" + x }
	exp := s.Add(40 * day)
	n.upload("acme", id("a1"), "2026-11-01T00:00:00Z", time.Time{}, exp)
	// gap: renewed by a pending license that starts a day after expiry.
	n.upload("gap", id("b1"), "2026-11-01T00:00:00Z", time.Time{}, exp)
	n.upload("gap", id("b2"), "2026-11-02T00:00:00Z", exp.Add(day), exp.Add(400*day))
	// pending: renewed by a pending license that starts before expiry.
	n.upload("pending", id("d1"), "2026-11-01T00:00:00Z", time.Time{}, exp)
	// current: renewed by a license replacing the current one, 20 days on.
	n.upload("current", id("c1"), "2026-11-01T00:00:00Z", time.Time{}, exp)
	// late: uploaded with 10 days left, its 30 and 14 days already reached.
	n.upload("late", id("e1"), "2026-11-01T00:00:00Z", time.Time{}, s.Add(10*day))

	n.at(s)
	n.want("acme")
	n.want("late", "e1/14") // the nearest threshold reached, not 30 too
	n.at(exp.Add(-30*day - time.Second))
	n.want("acme")
	n.want("late", "e1/14", "e1/1") // a downtime past 7 days: the nearest only
	n.at(exp.Add(-30 * day))
	n.want("acme", "a1/30")
	n.want("gap", "b1/30")
	n.want("pending", "d1/30")
	n.want("current", "c1/30")

	n.upload("pending", id("d2"), "2026-11-02T00:00:00Z", exp.Add(-2*day), exp.Add(365*day))
	n.at(exp.Add(-20 * day))
	n.upload("current", id("c2"), "2026-11-02T00:00:00Z", time.Time{}, exp.Add(365*day))
	n.at(exp.Add(-14*day + time.Hour))
	n.want("acme", "a1/30", "a1/14")
	n.want("gap", "b1/30", "b1/14")
	n.want("pending", "d1/30")
	n.want("current", "c1/30")
	n.want("late", "e1/14", "e1/1") // expired since: nothing more

	// Downtime across 7 and 1 days: one notice, the nearest.
	n.at(exp.Add(-12 * time.Hour))
	n.want("acme", "a1/30", "a1/14", "a1/1")
	n.want("gap", "b1/30", "b1/14", "b1/1")
	n.at(exp.Add(-time.Hour))  // no threshold left
	n.at(exp.Add(time.Second)) // expired: grace_started, no notice
	n.want("acme", "a1/30", "a1/14", "a1/1")
	if got := types(subjectTypes(t, f, events.OrgSubject("acme"))); !slices.Contains(got, events.TypeGraceStarted) {
		t.Fatalf("acme: %v", got)
	}
	// The renewals in force are a year off: nothing more.
	n.want("pending", "d1/30")
	n.want("current", "c1/30")
	n.want("gap", "b1/30", "b1/14", "b1/1")
}

// LICENSE_EXPIRY_NOTICE_DAYS=off: no notices; custom thresholds are used.
func TestExpiryNoticesConfigured(t *testing.T) {
	f := newFixture()
	off := newNoticeFixture(t, f, []int{})
	exp := off.start.Add(2 * day)
	off.upload("acme", "0193a5b0-7e1a-7c3d-8f00-0000000000a1", "2026-11-01T00:00:00Z", time.Time{}, exp)
	off.at(exp.Add(-time.Hour))
	off.want("acme")

	g := newFixture()
	n := newNoticeFixture(t, g, []int{3, 60})
	n.upload("acme", "0193a5b0-7e1a-7c3d-8f00-0000000000a1", "2026-11-01T00:00:00Z", time.Time{}, exp)
	n.at(exp.Add(-47 * time.Hour))
	n.want("acme", "a1/3")
}

func TestParseExpiryNoticeDays(t *testing.T) {
	for in, want := range map[string][]int{
		"30,14,7,1": {30, 14, 7, 1}, "1, 7 ,30": {30, 7, 1}, "365": {365}, "off": {}, "": {},
	} {
		got, err := ledger.ParseExpiryNoticeDays(in)
		if err != nil || !slices.Equal(got, want) || got == nil {
			t.Errorf("%q: %v %v, want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"0", "-1", "366", "7,7", "30,,7", "7d", "x", "1.5"} {
		if got, err := ledger.ParseExpiryNoticeDays(in); err == nil {
			t.Errorf("%q: %v, want an error", in, got)
		}
	}
}
