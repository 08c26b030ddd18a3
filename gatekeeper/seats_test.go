package gatekeeper

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/license"
)

const seatRoutesFile = `
# routes that add a user
POST /api/users
PUT  /api/orgs/{org}/members/{id}   # invitations accepted
POST /api/license                   # allowlisted by default: never seat-checked
`

func mustSeatRoutes(t testing.TB) []string {
	t.Helper()
	routes, err := ParseSeatRoutes(strings.NewReader(seatRoutesFile))
	if err != nil {
		t.Fatal(err)
	}
	return routes
}

func (w *world) seatMode(mode string) {
	w.t.Helper()
	w.fold(license.InstanceOrg, events.TypeSeatEnforcementChanged, issued, events.SeatEnforcementChanged{Mode: mode})
}

func (w *world) users(org string, n int) {
	w.t.Helper()
	w.fold(org, events.TypeUsageReported, issued, events.UsageReported{Users: n})
}

// seatWorld: enforcement on; acme holds 50 seats (users_limit 50).
func seatWorld(t testing.TB, mode string) *world {
	w := newWorld(t)
	w.enforcement(events.EnforceOn)
	if mode != "" {
		w.seatMode(mode)
	}
	w.upload("acme", "k1", basePayload("acme"), events.SlotCurrent)
	return w
}

// warningOf is the X-License-Warning a client gets after d.
func warningOf(d Decision) string {
	h := http.Header{}
	SetClientHeaders(h, d)
	if len(h[HeaderWarning]) > 1 {
		return "MORE THAN ONE VALUE"
	}
	return h.Get(HeaderWarning)
}

func TestSeatModes(t *testing.T) {
	for _, tc := range []struct {
		mode                  string
		users                 int // -1: never reported
		method, path          string
		allowed               bool
		code, warning         string
		mcount, outcome       string // the seat check counted ("" none)
		wantUpstreamUsersHdrs bool
	}{
		{"", 51, "POST", "/api/users", true, "", "", "", "", true},
		{license.SeatsOff, 51, "POST", "/api/users", true, "", "", "", "", true},
		{license.SeatsSoft, 10, "POST", "/api/users", true, "", "", "soft", "under", true},
		{license.SeatsSoft, 50, "POST", "/api/users", true, "", "users_limit; active=50; limit=50", "soft", "warned", true},
		{license.SeatsSoft, 51, "POST", "/api/users", true, "", "users_limit; active=51; limit=50", "soft", "warned", true},
		{license.SeatsSoft, 51, "GET", "/api/users", true, "", "", "", "", true}, // another method: not a seat route
		{license.SeatsSoft, 51, "GET", "/app", true, "", "", "", "", true},
		{license.SeatsHard, 49, "POST", "/api/users", true, "", "", "hard", "under", true},
		{license.SeatsHard, 50, "POST", "/api/users", false, CodeUsersLimitReached, "", "hard", "denied", false},
		{license.SeatsHard, 51, "POST", "/API/Users", false, CodeUsersLimitReached, "", "hard", "denied", false},  // without regard to case
		{license.SeatsHard, 51, "POST", "/api/users/", false, CodeUsersLimitReached, "", "hard", "denied", false}, // nor of a trailing slash
		{license.SeatsHard, 51, "PUT", "/api/orgs/acme/members/7", false, CodeUsersLimitReached, "", "hard", "denied", false},
		{license.SeatsHard, 51, "DELETE", "/api/users/7", true, "", "", "", "", true}, // removing users works
		{license.SeatsHard, 51, "GET", "/app", true, "", "", "", "", true},
		{license.SeatsHard, 51, "POST", "/api/license", true, "", "", "", "", true}, // allowlisted
		{license.SeatsHard, -1, "POST", "/api/users", true, "", "", "", "", true},   // unreported
		{license.SeatsSoft, -1, "POST", "/api/users", true, "", "", "", "", true},
	} {
		name := tc.mode + "/" + tc.method + " " + tc.path
		w := seatWorld(t, tc.mode)
		if tc.users >= 0 {
			w.users("acme", tc.users)
		}
		g := newGate(t, w, newClock(t1), Config{SeatRoutes: mustSeatRoutes(t)})
		d := g.Decide(req(t, tc.method, tc.path, "acme", local))
		status := 200
		if !tc.allowed {
			status = 403
		}
		expect(t, name, d, tc.allowed, status, tc.code)
		if got := warningOf(d); got != tc.warning {
			t.Errorf("%s: warning %q, want %q", name, got, tc.warning)
		}
		if tc.code == CodeUsersLimitReached && (!strings.Contains(d.Message, "50 seats") || !strings.Contains(d.Message, "removing users")) {
			t.Errorf("%s: message %q", name, d.Message)
		}
		if tc.allowed && d.Upstream().Get(HeaderUsersLimit) != "50" {
			t.Errorf("%s: upstream headers %v", name, d.Upstream())
		}
		st := g.Stats()
		for _, mode := range []string{license.SeatsSoft, license.SeatsHard} {
			for outcome, n := range st.Seats[mode] {
				want := uint64(0)
				if mode == tc.mcount && outcome == tc.outcome {
					want = 1
				}
				if n != want {
					t.Errorf("%s: seat checks %s/%s = %d, want %d", name, mode, outcome, n, want)
				}
			}
		}
		if !tc.allowed && st.Denied[CodeUsersLimitReached] != 1 {
			t.Errorf("%s: denial not counted: %v", name, st.Denied)
		}
	}
}

func TestSeatsUnlimited(t *testing.T) {
	w := seatWorld(t, license.SeatsHard)
	w.upload("zero", "k1", mod(basePayload("zero"), "users_limit", 0), events.SlotCurrent)
	w.upload("absent", "k1", mod(basePayload("absent"), "users_limit", nil), events.SlotCurrent)
	w.users("zero", 100000)
	w.users("absent", 100000)
	g := newGate(t, w, newClock(t1), Config{SeatRoutes: mustSeatRoutes(t)})
	for _, org := range []string{"zero", "absent"} {
		d := g.Decide(req(t, "POST", "/api/users", org, local))
		expect(t, org, d, true, 200, "")
		if warningOf(d) != "" {
			t.Errorf("%s: warning %q", org, warningOf(d))
		}
	}
	if st := g.Stats(); st.Seats["hard"]["under"]+st.Seats["hard"]["warned"]+st.Seats["hard"]["denied"] != 0 {
		t.Errorf("an unlimited license was seat-checked: %v", st.Seats)
	}
}

// Hard mode without enforcement (the install's mode off, or
// LICENSE_ENFORCE=0) warns and allows, as soft does.
func TestSeatsHardUnenforced(t *testing.T) {
	for _, tc := range []struct {
		name    string
		install string
		enforce *bool
	}{
		{"install off", events.EnforceOff, nil},
		{"override off", events.EnforceOn, boolp(false)},
	} {
		w := newWorld(t)
		w.enforcement(tc.install)
		w.seatMode(license.SeatsHard)
		w.upload("acme", "k1", basePayload("acme"), events.SlotCurrent)
		w.users("acme", 51)
		g := newGate(t, w, newClock(t1), Config{SeatRoutes: mustSeatRoutes(t), Enforce: tc.enforce})
		d := g.Decide(req(t, "POST", "/api/users", "acme", local))
		expect(t, tc.name, d, true, 200, "")
		if !d.Unenforced || warningOf(d) != "users_limit; active=51; limit=50" {
			t.Errorf("%s: unenforced %v warning %q", tc.name, d.Unenforced, warningOf(d))
		}
		if n := g.Stats().Seats["hard"]["warned"]; n != 1 {
			t.Errorf("%s: hard/warned %d", tc.name, n)
		}
		// With enforcement on, the same org is refused.
		g = newGate(t, w, newClock(t1), Config{SeatRoutes: mustSeatRoutes(t), Enforce: boolp(true)})
		expect(t, tc.name+", enforced", g.Decide(req(t, "POST", "/api/users", "acme", local)), false, 403, CodeUsersLimitReached)
	}
}

// In grace the two warnings travel as one value, grace first.
func TestSeatsWarningWithGrace(t *testing.T) {
	w := seatWorld(t, license.SeatsSoft)
	w.users("acme", 60)
	c := newClock(tGrace)
	g := newGate(t, w, c, Config{SeatRoutes: mustSeatRoutes(t)})
	d := g.Decide(req(t, "POST", "/api/users", "acme", local))
	want := "grace; ends=" + graceEnd.Format("2006-01-02T15:04:05Z07:00") + ", users_limit; active=60; limit=50"
	if got := warningOf(d); got != want {
		t.Fatalf("warning %q, want %q", got, want)
	}
	// Another route keeps the grace warning alone.
	if got := warningOf(g.Decide(req(t, "GET", "/app", "acme", local))); !strings.HasPrefix(got, "grace; ends=") || strings.Contains(got, "users_limit") {
		t.Fatalf("non-seat route warning %q", got)
	}
	// Once the grace is over, the license is expired: no limit in force,
	// expired is the denial.
	c.set(tExpired)
	expect(t, "expired", g.Decide(req(t, "POST", "/api/users", "acme", local)), false, 403, CodeLicenseExpired)
	// Hard in grace refuses.
	w.seatMode(license.SeatsHard)
	c.set(tGrace)
	expect(t, "hard in grace", g.Decide(req(t, "POST", "/api/users", "acme", local)), false, 403, CodeUsersLimitReached)
}

// A new usage report, a license raising the limit, or a change of seat
// mode changes the decision at the next request.
func TestSeatDecisionFollowsTheStates(t *testing.T) {
	w := seatWorld(t, license.SeatsHard)
	w.users("acme", 50)
	g := newGate(t, w, newClock(t1), Config{SeatRoutes: mustSeatRoutes(t)})
	seat := func() Decision { return g.Decide(req(t, "POST", "/api/users", "acme", local)) }
	expect(t, "at the limit", seat(), false, 403, CodeUsersLimitReached)
	expect(t, "at the limit, again (cached)", seat(), false, 403, CodeUsersLimitReached)
	w.users("acme", 49)
	expect(t, "a user removed", seat(), true, 200, "")
	w.users("acme", 50)
	expect(t, "a user added", seat(), false, 403, CodeUsersLimitReached)
	w.upload("acme", "k1", mod(basePayload("acme"), "license_id", idB, "users_limit", 100), events.SlotCurrent)
	d := seat()
	expect(t, "a license with 100 seats", d, true, 200, "")
	if d.Upstream().Get(HeaderUsersLimit) != "100" {
		t.Fatalf("upstream %v", d.Upstream())
	}
	w.users("acme", 120)
	expect(t, "over 100", seat(), false, 403, CodeUsersLimitReached)
	w.seatMode(license.SeatsSoft)
	d = seat()
	expect(t, "soft", d, true, 200, "")
	if warningOf(d) != "users_limit; active=120; limit=100" {
		t.Fatalf("warning %q", warningOf(d))
	}
	w.seatMode(license.SeatsOff)
	if d := seat(); !d.Allowed || warningOf(d) != "" {
		t.Fatalf("off: %+v %q", d, warningOf(d))
	}
}

func TestSeatsThroughMiddleware(t *testing.T) {
	w := seatWorld(t, license.SeatsSoft)
	w.users("acme", 51)
	g := newGate(t, w, newClock(t1), Config{SeatRoutes: mustSeatRoutes(t)})
	h := g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(HeaderWarning) != "" {
			t.Errorf("the warning went upstream: %v", r.Header)
		}
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req(t, "POST", "/api/users", "acme", local))
	if rec.Code != 200 || rec.Header().Get(HeaderWarning) != "users_limit; active=51; limit=50" {
		t.Fatalf("soft: %d %v", rec.Code, rec.Header())
	}
	w.seatMode(license.SeatsHard)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req(t, "POST", "/api/users", "acme", local))
	if rec.Code != 403 || rec.Header().Get(HeaderError) != CodeUsersLimitReached || !strings.Contains(rec.Body.String(), `"error":"users_limit_reached"`) {
		t.Fatalf("hard: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req(t, "DELETE", "/api/users/3", "acme", local))
	if rec.Code != 200 || rec.Header().Get(HeaderWarning) != "" {
		t.Fatalf("removing a user: %d %v", rec.Code, rec.Header())
	}
	// The browser's page says it in words.
	r := req(t, "POST", "/api/users", "acme", local)
	r.Header.Set("Accept", "text/html")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	if rec.Code != 403 || !strings.Contains(rec.Body.String(), "All seats in use") || !strings.Contains(rec.Body.String(), "50 seats") {
		t.Fatalf("page: %d %s", rec.Code, rec.Body)
	}
}

func TestSeatMetrics(t *testing.T) {
	w := seatWorld(t, license.SeatsHard)
	w.users("acme", 51)
	g := newGate(t, w, newClock(t1), Config{SeatRoutes: mustSeatRoutes(t)})
	g.Decide(req(t, "POST", "/api/users", "acme", local))
	g.Decide(req(t, "POST", "/api/users", "acme", local))
	m, err := gatherOne(g)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"gatekeeper_seat_checks_total{mode=hard,outcome=denied}":                   2,
		"gatekeeper_seat_checks_total{mode=hard,outcome=under}":                    0,
		"gatekeeper_seat_checks_total{mode=hard,outcome=warned}":                   0,
		"gatekeeper_seat_checks_total{mode=soft,outcome=under}":                    0,
		"gatekeeper_seat_checks_total{mode=soft,outcome=warned}":                   0,
		"gatekeeper_decisions_total{code=users_limit_reached,result=denied}":       2,
		"gatekeeper_decisions_total{code=feature_not_licensed,result=denied}":      0,
		"gatekeeper_decisions_total{code=,result=allowed}":                         0,
		"gatekeeper_decisions_total{code=license_state_unavailable,result=denied}": 0,
	}
	for k, v := range want {
		if got, ok := m[k]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	if _, ok := m["gatekeeper_seat_checks_total{mode=soft,outcome=denied}"]; ok {
		t.Error("soft/denied is exported: soft never denies")
	}
}

// A seat route decision allocates nothing once cached, over the limit or
// not.
func TestSeatDecisionAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, mode := range []string{license.SeatsSoft, license.SeatsHard} {
		w := seatWorld(t, mode)
		w.users("acme", 51)
		g := newGate(t, w, newClock(t1), Config{SeatRoutes: mustSeatRoutes(t)})
		r := req(t, "POST", "/api/users", "acme", local)
		g.Decide(r)
		if n := testing.AllocsPerRun(200, func() { g.Decide(r) }); n != 0 {
			t.Errorf("%s: %v allocations per seat route decision", mode, n)
		}
	}
}

func TestParseSeatRoutes(t *testing.T) {
	routes := mustSeatRoutes(t)
	if want := []string{"POST /api/users", "PUT /api/orgs/{org}/members/{id}", "POST /api/license"}; strings.Join(routes, "|") != strings.Join(want, "|") {
		t.Fatalf("routes %q", routes)
	}
	for _, tc := range []struct{ file, want string }{
		{"POST /api/users sso\n", `seat routes line 1: want "[METHOD ]PATTERN" (a seat route has no feature list), got 3 fields`},
		{"\n# c\npost /api/users\n", `seat routes line 3: pattern "post /api/users": method "post": methods are matched exactly, write it in upper case`},
		{"POST /api/{x}/{x}\n", `seat routes line 1: pattern "POST /api/{x}/{x}": `},
		{"POST /api/{x\n", `seat routes line 1: pattern "POST /api/{x"`},
		{"POST /api/users\n\nPOST /API/Users\n", `seat routes line 3: pattern "POST /API/Users" conflicts with line 1 ("POST /api/users")`},
		{"/a/{x}/b\n/a/c/{y}\n", `seat routes line 2: pattern "/a/c/{y}" conflicts with line 1 ("/a/{x}/b")`},
		{strings.Repeat("x", maxFeatureLine+1), "seat routes line 1: longer than"},
	} {
		_, err := ParseSeatRoutes(strings.NewReader(tc.file))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.file, err, tc.want)
		}
	}
	if r, err := ParseSeatRoutes(strings.NewReader("# none\n\n")); err != nil || len(r) != 0 {
		t.Errorf("empty file: %v %v", r, err)
	}
	// Config.SeatRoutes built in code are checked by New.
	if _, err := New(newWorld(t), Config{SeatRoutes: []string{"POST /x", "POST /X"}}); err == nil || !strings.Contains(err.Error(), "seat routes entry 2") {
		t.Errorf("New with conflicting seat routes: %v", err)
	}
	// A seat route and a feature rule may share a pattern.
	if _, err := New(newWorld(t), Config{SeatRoutes: []string{"POST /api/chat/{room}/bots"}, Features: mustFeatures(t)}); err != nil {
		t.Errorf("seat route on a feature rule's pattern: %v", err)
	}
}

// A seat route that also needs a feature: the feature is checked first.
func TestSeatRouteWithFeatureRule(t *testing.T) {
	w := seatWorld(t, license.SeatsHard)
	w.upload("nofeat", "k1", mod(basePayload("nofeat"), "features", []string{}), events.SlotCurrent)
	w.users("nofeat", 51)
	w.users("acme", 51)
	g := newGate(t, w, newClock(t1), Config{SeatRoutes: []string{"POST /api/chat/{room}/bots"}, Features: mustFeatures(t)})
	expect(t, "feature lacking", g.Decide(req(t, "POST", "/api/chat/x/bots", "nofeat", local)), false, 403, CodeFeatureNotLicensed)
	w.upload("acme", "k1", mod(basePayload("acme"), "license_id", idB, "features", []string{"chat_connector", "bots"}), events.SlotCurrent)
	expect(t, "feature held, seats full", g.Decide(req(t, "POST", "/api/chat/x/bots", "acme", local)), false, 403, CodeUsersLimitReached)
}
