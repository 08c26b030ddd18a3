package gatekeeper

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/license"
)

func TestDaysRemainingFlipsAtTheDayBoundary(t *testing.T) {
	w := decisionWorld(t)
	w.upload(license.InstanceOrg, "k1", mod(basePayload("*"), "license_id", idI), events.SlotCurrent)
	boundary := expires.Add(-10 * 24 * time.Hour)
	c := newClock(boundary.Add(-time.Hour))
	g := newGate(t, w, c, Config{})
	for _, org := range []string{"acme", "nobody"} { // its own license; the instance one
		days := func() string {
			t.Helper()
			d := g.Decide(req(t, "GET", "/app", org, local))
			if !d.Allowed {
				t.Fatalf("%s: %+v", org, d)
			}
			return d.Upstream().Get(HeaderDaysRemaining)
		}
		c.set(boundary.Add(-time.Hour))
		if got := days(); got != "10" {
			t.Fatalf("%s an hour before: %q", org, got)
		}
		c.set(boundary)
		if got := days(); got != "10" {
			t.Fatalf("%s at the boundary: %q", org, got)
		}
		c.add(time.Nanosecond)
		if got := days(); got != "9" {
			t.Fatalf("%s a nanosecond past: %q", org, got)
		}
		c.set(boundary.Add(24 * time.Hour))
		if got := days(); got != "9" {
			t.Fatalf("%s a day later: %q", org, got)
		}
		c.set(boundary.Add(-time.Nanosecond)) // the clock stepped back
		if got := days(); got != "10" {
			t.Fatalf("%s back before: %q", org, got)
		}
		// At expiry: grace, 0, then -1 one second later.
		c.set(expires)
		if d := g.Decide(req(t, "GET", "/app", org, local)); d.LicenseStatus != license.StatusGrace || d.Upstream().Get(HeaderDaysRemaining) != "0" {
			t.Fatalf("%s at expiry: %+v %v", org, d, d.Upstream())
		}
		c.add(time.Second)
		if got := days(); got != "-1" {
			t.Fatalf("%s a second after expiry: %q", org, got)
		}
	}
}

func TestViewIsReusedWithinItsWindow(t *testing.T) {
	w := decisionWorld(t)
	c := newClock(t1)
	g := newGate(t, w, c, Config{})
	g.Decide(req(t, "GET", "/app", "acme", local))
	own, inst := w.get("acme")
	e := g.cache.get("acme", own, inst)
	v := e.view.Load()
	for range 100 {
		c.add(time.Minute)
		g.Decide(req(t, "GET", "/app", "acme", local))
	}
	if e.view.Load() != v {
		t.Fatal("view rebuilt within its day")
	}
	if g.cache.get("acme", own, inst) != e {
		t.Fatal("entry rebuilt for the same state pointers")
	}
	c.add(24 * time.Hour)
	g.Decide(req(t, "GET", "/app", "acme", local))
	if e.view.Load() == v {
		t.Fatal("view kept past its day")
	}
}

func TestDayWindow(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		exp := time.Unix(rng.Int64N(1<<35), rng.Int64N(1e9)).UTC()
		at := exp.Add(time.Duration(rng.Int64N(int64(800*24*time.Hour))) - 400*24*time.Hour)
		if rng.IntN(10) == 0 {
			at = time.Unix(at.Unix(), int64(exp.Nanosecond())) // same fraction: the edge cases
		}
		d := license.DaysRemaining(exp, at)
		from, until := dayWindow(exp, at)
		if at.Before(from) || !at.Before(until) {
			t.Fatalf("exp %v at %v: window [%v, %v)", exp, at, from, until)
		}
		for _, c := range []struct {
			t    time.Time
			want int
		}{{from, d}, {until.Add(-time.Nanosecond), d}, {from.Add(-time.Nanosecond), d + 1}, {until, d - 1}} {
			if got := license.DaysRemaining(exp, c.t); got != c.want {
				t.Fatalf("exp %v at %v (days %d): DaysRemaining at %v is %d, want %d", exp, at, d, c.t, got, c.want)
			}
		}
	}
}

// TestCachedDecisionsAgreeWithReport moves the clock back and forth across
// every threshold of licenses with pending successors, instance fallback,
// zero grace and a not_before, and checks every cached decision against a
// fresh projection.Report at the same instant.
func TestCachedDecisionsAgreeWithReport(t *testing.T) {
	w := newWorld(t)
	w.enforcement(license.EnforceOn)
	nbB := time.Date(2027, 10, 25, 0, 0, 0, 0, time.UTC)
	// acme: current A, pending B (starts at nbB − 5 min).
	w.upload("acme", "k1", basePayload("acme"), events.SlotCurrent)
	w.upload("acme", "k1", mod(basePayload("acme"), "license_id", idB, "tier", "starter", "features", []string{"sso"},
		"issued_at", "2027-10-01T00:00:00Z", "not_before", nbB.Format(time.RFC3339), "expires", "2028-11-01T00:00:00Z"), events.SlotPending)
	// zero: no grace at all, expiry at an odd instant.
	w.upload("zero", "k1", mod(basePayload("zero"), "grace_days", 0, "expires", "2027-06-15T13:14:15.5Z"), events.SlotCurrent)
	// instance: a license with not_before, and a pending one after it.
	nbI := time.Date(2026, 12, 24, 18, 0, 0, 0, time.UTC)
	w.upload(license.InstanceOrg, "k1", mod(basePayload("*"), "license_id", idI, "grace_days", 3, "not_before", nbI.Format(time.RFC3339),
		"expires", "2027-08-01T00:00:00Z"), events.SlotCurrent)
	w.upload(license.InstanceOrg, "k1", mod(basePayload("*"), "license_id", idB, "tier", "professional",
		"not_before", "2027-07-30T00:00:00Z", "expires", "2029-01-01T00:00:00Z"), events.SlotPending)
	w.upload("later", "k1", mod(basePayload("later"), "not_before", "2027-02-02T02:02:02Z"), events.SlotPending)

	var marks []time.Time
	for _, s := range []string{"2026-12-24T17:55:00Z", "2027-02-02T01:57:02Z", "2027-06-15T13:14:15.5Z", "2027-07-29T23:55:00Z",
		"2027-08-01T00:00:00Z", "2027-08-04T00:00:00Z", "2027-10-24T23:55:00Z", "2027-11-01T00:00:00Z", "2027-11-15T00:00:00Z",
		"2028-11-01T00:00:00Z", "2028-11-15T00:00:00Z", "2029-01-01T00:00:00Z", "2029-01-15T00:00:00Z"} {
		m, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		marks = append(marks, m)
	}
	c := newClock(t1)
	g := newGate(t, w, c, Config{})
	rng := rand.New(rand.NewPCG(3, 4))
	at := t1
	for i := range 6000 {
		switch rng.IntN(4) {
		case 0: // right at, just before or just after a threshold
			at = marks[rng.IntN(len(marks))].Add(time.Duration(rng.IntN(3)-1) * time.Nanosecond)
		case 1:
			at = at.Add(time.Duration(rng.Int64N(int64(48 * time.Hour))))
		case 2:
			at = at.Add(-time.Duration(rng.Int64N(int64(48 * time.Hour))))
		default:
			at = t1.Add(time.Duration(rng.Int64N(int64(3 * 365 * 24 * time.Hour))))
		}
		c.set(at)
		for _, org := range []string{"acme", "zero", "later", "nobody"} {
			d := g.Decide(req(t, "GET", "/app", org, local))
			own, inst := w.get(org)
			rep := license.ReportOf(org, own, inst, at)
			want := map[string]string{HeaderOrg: org, HeaderStatus: string(rep.Status)}
			if rep.Status == license.StatusValid || rep.Status == license.StatusGrace || rep.Status == license.StatusExpired {
				want[HeaderTier] = string(*rep.Tier)
				want[HeaderFeatures] = strings.Join(rep.Features, ",")
				want[HeaderUsersLimit] = strconv.Itoa(*rep.UsersLimit)
				want[HeaderDaysRemaining] = strconv.Itoa(*rep.DaysRemaining)
			}
			if rep.Status == license.StatusGrace {
				want[HeaderWarning] = "grace; ends=" + *rep.GraceEnds
			}
			got := map[string]string{}
			if d.Allowed {
				for k := range d.Upstream() {
					got[k] = d.Upstream().Get(k)
				}
			} else {
				got[HeaderOrg], got[HeaderStatus] = d.Org, string(d.LicenseStatus)
				for k := range want {
					if k != HeaderOrg && k != HeaderStatus {
						delete(want, k)
					}
				}
			}
			allowed := rep.Status == license.StatusValid || rep.Status == license.StatusGrace
			if fmt.Sprint(got) != fmt.Sprint(want) || d.Allowed != allowed {
				t.Fatalf("step %d, %s at %s: decision %+v headers %v, report says %v (allowed %v)",
					i, org, at.Format(time.RFC3339Nano), d, got, want, allowed)
			}
		}
	}
}

func TestConcurrentDecisions(t *testing.T) {
	w := decisionWorld(t)
	c := newClock(t1)
	g := newGate(t, w, c, Config{Features: mustFeatures(t)})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			orgs := []string{"acme", "nofeat", "nobody", "revoked", "late"}
			paths := []string{"/app", "/api/chat/x", "/api/license", "/api/projects/1/export"}
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				d := g.DecideFor(t.Context(), "GET", paths[n%len(paths)], "", http1(orgs[(n+i)%len(orgs)]), local)
				if d.Status == 0 {
					t.Error("no status")
					return
				}
			}
		}()
	}
	for i := range 50 {
		c.add(13 * time.Hour)
		if i%10 == 0 {
			w.upload("late", "k1", mod(basePayload("late"), "license_id", fmt.Sprintf("0193a5b0-7e1a-7c3d-8f00-%012d", i)), events.SlotCurrent)
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	// The last upload is what "late" is decided on.
	d := g.DecideFor(t.Context(), "GET", "/app", "", http1("late"), local)
	expect(t, "late, after the race", d, true, 200, "")
}

func TestEntryKeptWhenTheInstanceHasNoEvents(t *testing.T) {
	w := newWorld(t) // no event on _instance: the world allocates its state per call
	w.upload("acme", "k1", basePayload("acme"), events.SlotCurrent)
	g := newGate(t, w, newClock(t1), Config{})
	g.Decide(req(t, "GET", "/app", "acme", local))
	own, inst1 := w.get("acme")
	_, inst2 := w.get("acme")
	if inst1 == inst2 {
		t.Fatal("the world should allocate an empty instance state per call")
	}
	if g.cache.get("acme", own, inst1) != g.cache.get("acme", own, inst2) {
		t.Fatal("entry rebuilt for another empty instance state")
	}
}
