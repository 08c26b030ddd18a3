package gatekeeper

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/license"
)

const featuresFile = `
# routes that need licensed features
GET /api/projects/{id}/export   audit_export
/api/chat/                      chat_connector
POST /api/chat/{room}/bots      chat_connector,bots   # most specific wins
/api/sso/{rest...}              sso
`

func mustFeatures(t testing.TB) []FeatureRule {
	t.Helper()
	rules, err := ParseFeatures(strings.NewReader(featuresFile))
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

// decisionWorld: enforcement on; orgs in every state.
func decisionWorld(t testing.TB) *world {
	w := newWorld(t)
	w.enforcement(events.EnforceOn)
	w.upload("acme", "k1", basePayload("acme"), events.SlotCurrent)
	w.upload("nofeat", "k1", mod(basePayload("nofeat"), "features", []string{}, "tier", "starter", "users_limit", nil), events.SlotCurrent)
	w.upload("revoked", "k1", basePayload("revoked"), events.SlotCurrent)
	w.fold("revoked", events.TypeInvalidated, issued, events.Invalidated{LicenseID: idA, Note: "chargeback"})
	w.upload("forged", "k2", basePayload("forged"), events.SlotCurrent) // k2 is not trusted
	w.upload("removed", "k1", basePayload("removed"), events.SlotCurrent)
	w.fold("removed", events.TypeRemoved, issued, events.Removed{LicenseID: idA})
	return w
}

func TestDecisionTable(t *testing.T) {
	w := decisionWorld(t)
	c := newClock(t1)
	g := newGate(t, w, c, Config{Features: mustFeatures(t)})
	cases := []struct {
		name, org, method, path string
		at                      time.Time
		allowed                 bool
		status                  int
		code                    string
		lic                     license.Status
		reason                  license.Reason
	}{
		{"valid", "acme", "GET", "/app", t1, true, 200, "", license.StatusValid, ""},
		{"grace", "acme", "GET", "/app", tGrace, true, 200, "", license.StatusGrace, ""},
		{"last instant of grace", "acme", "GET", "/app", graceEnd.Add(-time.Nanosecond), true, 200, "", license.StatusGrace, ""},
		{"expired at grace end", "acme", "GET", "/app", graceEnd, false, 403, CodeLicenseExpired, license.StatusExpired, ""},
		{"expired", "acme", "GET", "/app", tExpired, false, 403, CodeLicenseExpired, license.StatusExpired, ""},
		{"missing (no events)", "nobody", "GET", "/app", t1, false, 403, CodeLicenseMissing, license.StatusMissing, ""},
		{"missing (removed)", "removed", "GET", "/app", t1, false, 403, CodeLicenseMissing, license.StatusMissing, ""},
		{"invalid: revoked", "revoked", "GET", "/app", t1, false, 403, CodeLicenseInvalid, license.StatusInvalid, license.ReasonRevoked},
		{"invalid: unknown key", "forged", "GET", "/app", t1, false, 403, CodeLicenseInvalid, license.StatusInvalid, license.ReasonUnknownKey},
		{"feature held", "acme", "GET", "/api/projects/7/export", t1, true, 200, "", license.StatusValid, ""},
		{"feature held in grace", "acme", "GET", "/api/chat/general", tGrace, true, 200, "", license.StatusGrace, ""},
		{"feature lacking", "nofeat", "GET", "/api/projects/7/export", t1, false, 403, CodeFeatureNotLicensed, license.StatusValid, ""},
		{"feature lacking, a trailing slash", "nofeat", "GET", "/api/projects/7/export/", t1, false, 403, CodeFeatureNotLicensed, license.StatusValid, ""},
		{"no rule for the method", "nofeat", "POST", "/api/projects/7/export", t1, true, 200, "", license.StatusValid, ""},
		{"generic rule", "nofeat", "GET", "/api/chat/general", t1, false, 403, CodeFeatureNotLicensed, license.StatusValid, ""},
		{"most specific rule wins", "acme", "POST", "/api/chat/general/bots", t1, false, 403, CodeFeatureNotLicensed, license.StatusValid, ""},
		{"generic rule for another method", "acme", "GET", "/api/chat/general/bots", t1, true, 200, "", license.StatusValid, ""},
		{"redirect target's rule", "nofeat", "GET", "/api/chat", t1, false, 403, CodeFeatureNotLicensed, license.StatusValid, ""},
		{"multi wildcard rule", "nofeat", "GET", "/api/sso/saml/acs", t1, false, 403, CodeFeatureNotLicensed, license.StatusValid, ""},
		{"expired beats features", "acme", "GET", "/api/projects/7/export", tExpired, false, 403, CodeLicenseExpired, license.StatusExpired, ""},
	}
	for _, tc := range cases {
		c.set(tc.at)
		d := g.Decide(req(t, tc.method, tc.path, tc.org, local))
		expect(t, tc.name, d, tc.allowed, tc.status, tc.code)
		if d.LicenseStatus != tc.lic || d.Reason != tc.reason || d.Org != tc.org {
			t.Errorf("%s: status %q reason %q org %q, want %q %q %q", tc.name, d.LicenseStatus, d.Reason, d.Org, tc.lic, tc.reason, tc.org)
		}
		if d.Allowlisted || d.Unenforced {
			t.Errorf("%s: allowlisted %v unenforced %v", tc.name, d.Allowlisted, d.Unenforced)
		}
	}
	// Every code of the table was produced, and counted.
	st := g.Stats()
	for _, code := range []string{CodeLicenseExpired, CodeLicenseMissing, CodeLicenseInvalid, CodeFeatureNotLicensed} {
		if st.Denied[code] == 0 {
			t.Errorf("stats: no %s counted: %+v", code, st)
		}
	}
	if st.Allowed != 7 {
		t.Errorf("stats: %d allowed, want 7", st.Allowed)
	}
}

func TestFeatureDenialNamesTheMissingFeatures(t *testing.T) {
	w := decisionWorld(t)
	g := newGate(t, w, newClock(t1), Config{Features: mustFeatures(t)})
	d := g.Decide(req(t, "POST", "/api/chat/general/bots", "nofeat", local))
	if d.Code != CodeFeatureNotLicensed || !strings.Contains(d.Message, "bots") || !strings.Contains(d.Message, "chat_connector") {
		t.Fatalf("decision %+v", d)
	}
	d = g.Decide(req(t, "POST", "/api/chat/general/bots", "acme", local))
	if d.Code != CodeFeatureNotLicensed || !strings.Contains(d.Message, "bots") || strings.Contains(d.Message, "chat_connector") {
		t.Fatalf("decision %+v", d)
	}
}

func TestEnforcementModes(t *testing.T) {
	for _, tc := range []struct {
		mode     string // "" = never set (auto)
		override *bool
		enforced bool
	}{
		{"", nil, false},
		{events.EnforceAuto, nil, false},
		{events.EnforceOff, nil, false},
		{events.EnforceOn, nil, true},
		{"", boolp(true), true},
		{events.EnforceAuto, boolp(true), true},
		{events.EnforceOff, boolp(true), true},
		{events.EnforceOn, boolp(false), false},
		{events.EnforceOff, boolp(false), false},
	} {
		name := fmt.Sprintf("mode %q override %v", tc.mode, tc.override)
		if tc.override != nil {
			name = fmt.Sprintf("mode %q override %v", tc.mode, *tc.override)
		}
		w := newWorld(t)
		if tc.mode != "" {
			w.enforcement(tc.mode)
		}
		w.upload("acme", "k1", basePayload("acme"), events.SlotCurrent)
		c := newClock(tExpired)
		g := newGate(t, w, c, Config{Enforce: tc.override, Features: mustFeatures(t)})
		for _, org := range []string{"acme", "nobody"} {
			d := g.Decide(req(t, "GET", "/app", org, local))
			if tc.enforced {
				if d.Allowed || d.Unenforced {
					t.Errorf("%s, %s: %+v, want a denial", name, org, d)
				}
				continue
			}
			expect(t, name+", "+org, d, true, 200, "")
			if !d.Unenforced {
				t.Errorf("%s, %s: not counted as unenforced", name, org)
			}
			// The state is known: the headers go upstream.
			if got := d.Upstream().Get(HeaderOrg); got != org {
				t.Errorf("%s, %s: X-License-Org %q", name, org, got)
			}
		}
		if !tc.enforced && g.Stats().Unenforced != 2 {
			t.Errorf("%s: stats %+v", name, g.Stats())
		}
	}
}

func TestInstanceLicense(t *testing.T) {
	w := newWorld(t)
	w.enforcement(events.EnforceOn)
	w.upload(license.InstanceOrg, "k1", mod(basePayload("*"), "license_id", idI, "tier", "professional",
		"features", []string{"sso"}, "expires", "2028-11-01T00:00:00Z"), events.SlotCurrent)
	w.upload("acme", "k1", basePayload("acme"), events.SlotCurrent) // its own, expires 2027
	w.upload("gone", "k1", basePayload("gone"), events.SlotCurrent) // removed: falls back
	w.fold("gone", events.TypeRemoved, issued, events.Removed{LicenseID: idA})
	w.upload("bad", "k1", basePayload("bad"), events.SlotCurrent) // revoked: its own decides
	w.fold("bad", events.TypeInvalidated, issued, events.Invalidated{LicenseID: idA})
	// "later" has only a pending license: the instance one applies until it starts.
	nb := time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)
	w.upload("later", "k1", mod(basePayload("later"), "license_id", idB, "tier", "starter", "not_before", nb.Format(time.RFC3339)), events.SlotPending)

	c := newClock(t1)
	g := newGate(t, w, c, Config{})
	check := func(at time.Time, org string, allowed bool, code, tier string) {
		t.Helper()
		c.set(at)
		d := g.Decide(req(t, "GET", "/app", org, local))
		expect(t, fmt.Sprintf("%s at %s", org, at.Format(time.RFC3339Nano)), d, allowed, map[bool]int{true: 200, false: 403}[allowed], code)
		if got := d.Upstream().Get(HeaderTier); allowed && got != tier {
			t.Errorf("%s at %v: tier %q, want %q", org, at, got, tier)
		}
	}
	check(t1, "acme", true, "", "enterprise")     // own
	check(t1, "nobody", true, "", "professional") // instance
	check(t1, "gone", true, "", "professional")
	check(t1, "bad", false, CodeLicenseInvalid, "")
	check(tExpired, "acme", false, CodeLicenseExpired, "") // own expired: the instance license does not apply
	check(tExpired, "nobody", true, "", "professional")
	check(nb.Add(-license.Skew-time.Nanosecond), "later", true, "", "professional")
	check(nb.Add(-license.Skew), "later", true, "", "starter") // switched, by time alone
}

func TestAllowlist(t *testing.T) {
	w := decisionWorld(t)
	w.upload("old", "k1", basePayload("old"), events.SlotCurrent)
	c := newClock(tExpired)
	ui, err := AllowUI("/ui/")
	if err != nil {
		t.Fatal(err)
	}
	g := newGate(t, w, c, Config{Allow: []string{"GET /billing/{rest...}", "GET,HEAD /status", ui}, Features: mustFeatures(t)})
	for _, tc := range []struct {
		method, path, org string
		allowlisted       bool
		status            license.Status
	}{
		{"GET", "/api/license", "old", true, license.StatusExpired},
		{"HEAD", "/api/license", "old", false, ""}, // GET does not imply HEAD
		{"POST", "/api/license", "old", true, license.StatusExpired},
		{"DELETE", "/api/license", "old", false, ""},
		{"GET", "/API/license", "old", false, ""}, // exact: no spelling gains an exemption
		{"GET", "/api/License", "old", false, ""},
		{"get", "/api/license", "old", false, ""},
		{"GET", "/api/license/", "old", false, ""},
		{"GET", "/ui/renew", "revoked", true, license.StatusInvalid},
		{"HEAD", "/ui/renew", "revoked", true, license.StatusInvalid},
		{"GET", "/ui/", "nobody", true, license.StatusMissing},
		{"POST", "/ui/admin/delete-all", "nobody", false, ""}, // the UI entry is GET and HEAD only
		{"GET", "/UI/x", "nobody", false, ""},
		{"GET", "/ui", "nobody", false, ""}, // /ui/{rest...} does not match /ui
		{"GET", "/login", "old", false, ""}, // no longer a default
		{"POST", "/api/login", "old", false, ""},
		{"GET", "/health", "old", true, license.StatusExpired},
		{"GET", "/healthz", "old", true, license.StatusExpired},
		{"HEAD", "/healthz", "old", true, license.StatusExpired},
		{"POST", "/healthz", "old", false, ""},
		{"GET", "/readyz", "old", true, license.StatusExpired},
		{"GET", "/Readyz", "old", false, ""},
		{"GET", "/status", "old", true, license.StatusExpired},
		{"GET", "/billing/invoices/3", "old", true, license.StatusExpired},
		{"POST", "/billing/invoices/3", "old", false, ""},
		{"GET", "/api/licenses", "old", false, ""},
	} {
		name := tc.method + " " + tc.path + " as " + tc.org
		d := g.Decide(req(t, tc.method, tc.path, tc.org, local))
		if !tc.allowlisted {
			if d.Allowed || d.Allowlisted {
				t.Errorf("%s: %+v, want a denial", name, d)
			}
			continue
		}
		expect(t, name, d, true, 200, "")
		if !d.Allowlisted || d.LicenseStatus != tc.status {
			t.Errorf("%s: allowlisted %v status %q, want %q", name, d.Allowlisted, d.LicenseStatus, tc.status)
		}
		up := d.Upstream()
		if up.Get(HeaderOrg) != tc.org || up.Get(HeaderStatus) != string(tc.status) {
			t.Errorf("%s: upstream headers %v", name, up)
		}
	}
	if g.Stats().Allowlisted != 11 {
		t.Errorf("stats %+v", g.Stats())
	}
	want := []string{"GET,HEAD /health", "GET,HEAD /healthz", "GET,HEAD /readyz", "GET /api/license", "POST /api/license",
		"GET /billing/{rest...}", "GET,HEAD /status", "GET,HEAD /ui/{rest...}"}
	if got := g.Allowlist(); !slices.Equal(got, want) {
		t.Errorf("Allowlist() = %q, want %q", got, want)
	}

	// Without the defaults only the configured entries pass.
	g = newGate(t, w, c, Config{NoDefaultAllow: true, Allow: []string{"GET /status"}})
	if d := g.Decide(req(t, "GET", "/healthz", "old", local)); d.Allowed {
		t.Errorf("default entry passes with NoDefaultAllow: %+v", d)
	}
	if d := g.Decide(req(t, "GET", "/status", "old", local)); !d.Allowlisted {
		t.Errorf("configured entry: %+v", d)
	}
	if got := g.Allowlist(); !slices.Equal(got, []string{"GET /status"}) {
		t.Errorf("Allowlist() = %q", got)
	}
	for _, bad := range []string{"ui", "/ui", "/u i/", "/ui/../", "/ui;/", "/{x}/"} {
		if _, err := AllowUI(bad); err == nil {
			t.Errorf("AllowUI(%q) accepted", bad)
		}
	}
}

// Feature rules hold whatever the case of the path or method: a
// case-insensitive upstream serves /Premium/x as /premium/x.
func TestFeatureRulesIgnoreCase(t *testing.T) {
	w := decisionWorld(t)
	rules, err := ParseFeatures(strings.NewReader("/premium/{rest...} sso\nGET /Reports/{id} reports\n"))
	if err != nil {
		t.Fatal(err)
	}
	g := newGate(t, w, newClock(t1), Config{Features: rules})
	for _, tc := range []struct{ method, path, code string }{
		{"GET", "/premium/x", CodeFeatureNotLicensed},
		{"GET", "/Premium/x", CodeFeatureNotLicensed},
		{"GET", "/PREMIUM/X", CodeFeatureNotLicensed},
		{"GET", "/%50remium/x", CodeFeatureNotLicensed},
		{"GET", "/%70remium/x", CodeFeatureNotLicensed},
		{"GET", "/premium", CodeFeatureNotLicensed}, // served as /premium/ by a redirecting upstream
		{"GET", "/reports/1", CodeFeatureNotLicensed},
		{"GET", "/REPORTS/1", CodeFeatureNotLicensed},
		{"get", "/reports/1", CodeFeatureNotLicensed}, // methods fold too
		{"HEAD", "/Reports/1", CodeFeatureNotLicensed},
		{"POST", "/reports/1", ""},
		{"GET", "/premiumx", ""},
		{"GET", "/other", ""},
	} {
		d := g.Decide(wire(t, tc.method, tc.path, map[string]string{"X-Org-Slug": "nofeat"}, local))
		if d.Code != tc.code || d.Allowed != (tc.code == "") {
			t.Errorf("%s %s: %+v, want %q", tc.method, tc.path, d, tc.code)
		}
		d2 := g.DecideFor(t.Context(), tc.method, tc.path, "", http.Header{"X-Org-Slug": {"nofeat"}}, local)
		if d2.Code != d.Code {
			t.Errorf("%s %s: DecideFor %q, Decide %q", tc.method, tc.path, d2.Code, d.Code)
		}
	}
}

func TestAllowlistWithoutState(t *testing.T) {
	w := decisionWorld(t)
	w.set(func(w *world) { w.err = fmt.Errorf("%w: test", ErrUnavailable) })
	g := newGate(t, w, newClock(t1), Config{})
	d := g.Decide(req(t, "GET", "/api/license", "acme", local))
	expect(t, "allowlisted, state unavailable", d, true, 200, "")
	if len(d.Upstream()) != 0 || d.LicenseStatus != "" {
		t.Fatalf("headers without a state: %v", d.Upstream())
	}
}

func TestUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(w *world)
	}{
		{"error", func(w *world) { w.err = fmt.Errorf("%w: no stream", ErrUnavailable) }},
		{"other error", func(w *world) { w.err = errors.New("boom") }},
		{"deadline", func(w *world) { w.block = true }},
		{"answer after the deadline", func(w *world) { w.slow = 60 * time.Millisecond }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := decisionWorld(t)
			w.set(tc.set)
			g := newGate(t, w, newClock(t1), Config{DecisionTimeout: 20 * time.Millisecond})
			start := time.Now()
			d := g.Decide(req(t, "GET", "/app", "acme", local))
			if el := time.Since(start); el > 2*time.Second {
				t.Errorf("took %v", el)
			}
			expect(t, "proxy", d, false, 503, CodeStateUnavailable)
			expect(t, "authz", d.ForAuthz(), false, 403, CodeStateUnavailable)
			if d.Org != "acme" || len(d.Upstream()) != 0 {
				t.Errorf("decision %+v", d)
			}

			rec := httptest.NewRecorder()
			g.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("upstream called") })).
				ServeHTTP(rec, req(t, "GET", "/app", "acme", local))
			if rec.Code != 503 || rec.Header().Get(HeaderError) != CodeStateUnavailable {
				t.Errorf("middleware: %d %v", rec.Code, rec.Header())
			}
			// LICENSE_ENFORCE=0 needs no state.
			g0 := newGate(t, w, newClock(t1), Config{DecisionTimeout: 20 * time.Millisecond, Enforce: boolp(false)})
			d = g0.Decide(req(t, "GET", "/app", "acme", local))
			if !d.Allowed || !d.Unenforced || len(d.Upstream()) != 0 {
				t.Errorf("override off: %+v", d)
			}
		})
	}
}

func TestDeadlineStartsFromTheRequestContext(t *testing.T) {
	w := decisionWorld(t)
	w.set(func(w *world) { w.block = true })
	g := newGate(t, w, newClock(t1), Config{DecisionTimeout: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	d := g.DecideFor(ctx, "GET", "/app", "", http.Header{"X-Org-Slug": {"acme"}}, local)
	expect(t, "cancelled request", d, false, 503, CodeStateUnavailable)
}

func TestSlowPathWithoutFastSource(t *testing.T) {
	w := decisionWorld(t)
	g := newGate(t, stateOnly{w}, newClock(t1), Config{})
	d := g.Decide(req(t, "GET", "/app", "acme", local))
	expect(t, "State only", d, true, 200, "")
	if w.stateCalls.Load() != 1 || w.cachedCalls.Load() != 0 {
		t.Fatalf("State %d CachedState %d", w.stateCalls.Load(), w.cachedCalls.Load())
	}
}

func TestMinSeq(t *testing.T) {
	w := decisionWorld(t)
	g := newGate(t, w, newClock(t1), Config{})
	r := req(t, "GET", "/app", "acme", local)
	r.Header.Set(minSeqHeader, "999")
	d := g.Decide(r)
	if w.lastMinSeq.Load() != 999 || w.stateCalls.Load() != 1 {
		t.Fatalf("min seq %d, State calls %d", w.lastMinSeq.Load(), w.stateCalls.Load())
	}
	expect(t, "min seq", d, true, 200, "") // the world answers State regardless
	for _, bad := range []string{"", "x", "-1", "99999999999999999999", "1 2"} {
		r.Header.Set(minSeqHeader, bad)
		if minSeqOf(r.Header) != 0 {
			t.Errorf("min seq %q read as %d", bad, minSeqOf(r.Header))
		}
	}
}

func TestStatePointerChangeRebuilds(t *testing.T) {
	w := newWorld(t)
	w.enforcement(events.EnforceOn)
	g := newGate(t, w, newClock(t1), Config{})
	expect(t, "before upload", g.Decide(req(t, "GET", "/app", "acme", local)), false, 403, CodeLicenseMissing)
	w.upload("acme", "k1", basePayload("acme"), events.SlotCurrent)
	expect(t, "after upload", g.Decide(req(t, "GET", "/app", "acme", local)), true, 200, "")
	w.fold("acme", events.TypeInvalidated, issued, events.Invalidated{LicenseID: idA})
	d := g.Decide(req(t, "GET", "/app", "acme", local))
	expect(t, "after invalidation", d, false, 403, CodeLicenseInvalid)
	if d.Reason != license.ReasonRevoked {
		t.Fatalf("reason %q", d.Reason)
	}
	// An instance event reaches orgs resolved through it.
	expect(t, "nobody, instance missing", g.Decide(req(t, "GET", "/app", "nobody", local)), false, 403, CodeLicenseMissing)
	w.upload(license.InstanceOrg, "k1", mod(basePayload("*"), "license_id", idI), events.SlotCurrent)
	expect(t, "nobody, instance licensed", g.Decide(req(t, "GET", "/app", "nobody", local)), true, 200, "")
	w.enforcement(events.EnforceOff)
	expect(t, "acme, enforcement off", g.Decide(req(t, "GET", "/app", "acme", local)), true, 200, "")
}

func TestUnknownOrgsDoNotGrowTheCache(t *testing.T) {
	w := decisionWorld(t)
	g := newGate(t, w, newClock(t1), Config{})
	for i := range 5000 {
		g.Decide(req(t, "GET", "/app", fmt.Sprintf("org-%d", i), local))
	}
	n := 0
	g.cache.orgs.Range(func(any, any) bool { n++; return true })
	if n != 0 {
		t.Fatalf("%d orgs without events cached in the map", n)
	}
	// Orgs with events are cached, and an eventless org's entry is reused
	// although the Source allocates its state per call.
	g.Decide(req(t, "GET", "/app", "acme", local))
	g.Decide(req(t, "GET", "/app", "nobody", local))
	own1, inst := w.get("nobody")
	e1 := g.cache.get("nobody", own1, inst)
	own2, _ := w.get("nobody")
	if own1 == own2 {
		t.Fatal("the test world should allocate empty states per call")
	}
	if e2 := g.cache.get("nobody", own2, inst); e1 != e2 {
		t.Fatal("an eventless org's entry was rebuilt for a new empty state pointer")
	}
}

func TestDenialBody(t *testing.T) {
	w := decisionWorld(t)
	g := newGate(t, w, newClock(t1), Config{})
	for _, tc := range []struct {
		org, code    string
		wantOrg, rsn any
	}{
		{"revoked", CodeLicenseInvalid, "revoked", "revoked"},
		{"nobody", CodeLicenseMissing, "nobody", nil},
		{"Acme", CodeOrgInvalid, nil, nil},
	} {
		rec := httptest.NewRecorder()
		g.Middleware(http.NotFoundHandler()).ServeHTTP(rec, req(t, "GET", "/app", tc.org, local))
		var body map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		if rec.Code != 403 || rec.Header().Get(HeaderError) != tc.code || rec.Header().Get("Content-Type") != "application/json" ||
			len(body) != 4 || body["error"] != tc.code || body["org"] != tc.wantOrg || body["reason"] != tc.rsn || body["message"] == "" {
			t.Errorf("%s: %d %v %s", tc.org, rec.Code, rec.Header(), rec.Body)
		}
		for _, k := range []string{"org", "reason"} {
			if _, ok := body[k]; !ok {
				t.Errorf("%s: no %q key (null expected)", tc.org, k)
			}
		}
	}
}

func TestMiddlewareHeaders(t *testing.T) {
	w := decisionWorld(t)
	c := newClock(t1)
	g := newGate(t, w, c, Config{})
	var got http.Header
	h := g.Middleware(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		rw.WriteHeader(204)
	}))
	forge := func(r *http.Request) *http.Request {
		r.Header.Set("X-License-Org", "victim")
		r.Header.Set("X-License-Status", "valid")
		r.Header["x-license-tier"] = []string{"enterprise"} // a raw, non-canonical key
		r.Header["X_License_Features"] = []string{"everything"}
		r.Header.Set("X-License-Warning", "none")
		r.Header.Set("X-License-Whatever", "1")
		r.Header.Set("X-License-Min-Seq", "3")
		r.Header.Set("X-Other", "kept")
		return r
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, forge(req(t, "GET", "/app", "acme", local)))
	want := http.Header{
		"X-Org-Slug":               {"acme"},
		"X-Other":                  {"kept"},
		"X-License-Org":            {"acme"},
		"X-License-Status":         {"valid"},
		"X-License-Tier":           {"enterprise"},
		"X-License-Features":       {"audit_export,chat_connector,sso"},
		"X-License-Users-Limit":    {"50"},
		"X-License-Days-Remaining": {"336"},
	}
	if rec.Code != 204 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("upstream saw\n%v\nwant\n%v", got, want)
	}
	if rec.Header().Get(HeaderWarning) != "" {
		t.Fatalf("warning outside grace: %v", rec.Header())
	}

	// Grace: the client response carries the warning.
	c.set(tGrace)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, forge(req(t, "GET", "/app", "acme", local)))
	if w := rec.Header().Get(HeaderWarning); w != "grace; ends=2027-11-15T00:00:00Z" {
		t.Fatalf("warning %q", w)
	}
	if got.Get(HeaderStatus) != "grace" || got.Get(HeaderDaysRemaining) != "-3" || got.Get(HeaderWarning) != "" {
		t.Fatalf("upstream in grace: %v", got)
	}

	// A denial: nothing forged reaches anyone, the body says why.
	c.set(tExpired)
	got = nil
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, forge(req(t, "GET", "/app", "acme", local)))
	if got != nil || rec.Code != 403 || rec.Header().Get(HeaderError) != CodeLicenseExpired {
		t.Fatalf("denied: upstream %v, %d %v", got, rec.Code, rec.Header())
	}

	// A license without features or users limit: empty features, limit 0.
	c.set(t1)
	h.ServeHTTP(httptest.NewRecorder(), req(t, "GET", "/app", "nofeat", local))
	if v, ok := got[HeaderFeatures]; !ok || len(v) != 1 || v[0] != "" || got.Get(HeaderUsersLimit) != "0" || got.Get(HeaderTier) != "starter" {
		t.Fatalf("no features: %v", got)
	}
	// Missing and enforcement off: only org and status.
	g2 := newGate(t, w, c, Config{Enforce: boolp(false)})
	g2.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = r.Header.Clone() })).
		ServeHTTP(httptest.NewRecorder(), forge(req(t, "GET", "/app", "nobody", local)))
	if len(got) != 4 || got.Get(HeaderOrg) != "nobody" || got.Get(HeaderStatus) != "missing" {
		t.Fatalf("missing, unenforced: %v", got)
	}
	// Invalid and enforcement off: only org and status (its payload is not trusted).
	g2.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = r.Header.Clone() })).
		ServeHTTP(httptest.NewRecorder(), forge(req(t, "GET", "/app", "forged", local)))
	if len(got) != 4 || got.Get(HeaderOrg) != "forged" || got.Get(HeaderStatus) != "invalid" {
		t.Fatalf("invalid, unenforced: %v", got)
	}
}

func TestSetUpstreamHeadersSharesNothingWritable(t *testing.T) {
	w := decisionWorld(t)
	g := newGate(t, w, newClock(t1), Config{})
	d := g.Decide(req(t, "GET", "/app", "acme", local))
	h := http.Header{}
	SetUpstreamHeaders(h, d)
	h.Set(HeaderOrg, "mallory") // Set replaces the slice, not its element
	h.Add(HeaderTier, "x")      // Add appends to a full slice: a copy
	d2 := g.Decide(req(t, "GET", "/app", "acme", local))
	if up := d2.Upstream(); up.Get(HeaderOrg) != "acme" || len(up[HeaderTier]) != 1 {
		t.Fatalf("cache corrupted: %v", up)
	}
	// A denial removes them.
	SetUpstreamHeaders(h, Decision{Code: CodeLicenseMissing})
	if len(h) != 0 {
		t.Fatalf("after a denial: %v", h)
	}
}

func TestCollector(t *testing.T) {
	w := decisionWorld(t)
	g := newGate(t, w, newClock(t1), Config{Enforce: boolp(true)})
	g.Decide(req(t, "GET", "/app", "acme", local))
	g.Decide(req(t, "GET", "/app/../x", "acme", local))
	mfs, err := gatherOne(g)
	if err != nil {
		t.Fatal(err)
	}
	if mfs["gatekeeper_decisions_total{code=,result=allowed}"] != 1 ||
		mfs["gatekeeper_decisions_total{code=path_invalid,result=denied}"] != 1 ||
		mfs["gatekeeper_decisions_total{code=license_missing,result=denied}"] != 0 ||
		mfs["gatekeeper_enforcement_override{}"] != 1 {
		t.Fatalf("metrics %v", mfs)
	}
}
