package license_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/licenseledger/ledger/license"
)

func held(t *testing.T, mod func(map[string]any), grace int) *license.Held {
	t.Helper()
	p := basePayload()
	if mod != nil {
		mod(p)
	}
	return &license.Held{License: sign(t, "k1", p), GraceDays: grace}
}

func TestStatusPrecedence(t *testing.T) {
	expires := time.Date(2027, 11, 1, 0, 0, 0, 0, time.UTC)
	nb := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	withNB := func(p map[string]any) { p["not_before"] = nb.Format(time.RFC3339) }
	bad := held(t, withNB, 14)
	bad.Err = &license.Error{Reason: license.ReasonSignatureInvalid}
	cases := []struct {
		name    string
		h       *license.Held
		revoked bool
		at      time.Time
		status  license.Status
		reason  license.Reason
	}{
		{"none", nil, false, t0, license.StatusMissing, ""},
		{"valid", held(t, nil, 14), false, expires.Add(-time.Second), license.StatusValid, ""},
		{"grace starts at expires", held(t, nil, 14), false, expires, license.StatusGrace, ""},
		{"grace last second", held(t, nil, 14), false, expires.Add(14*24*time.Hour - time.Second), license.StatusGrace, ""},
		{"expired at grace end", held(t, nil, 14), false, expires.Add(14 * 24 * time.Hour), license.StatusExpired, ""},
		{"grace 0 expires at once", held(t, nil, 0), false, expires, license.StatusExpired, ""},
		{"not yet valid", held(t, withNB, 14), false, nb.Add(-5*time.Minute - time.Second), license.StatusInvalid, license.ReasonNotYetValid},
		{"skew allowance", held(t, withNB, 14), false, nb.Add(-5 * time.Minute), license.StatusValid, ""},
		{"revoked beats time", held(t, withNB, 14), true, nb.Add(-time.Hour), license.StatusInvalid, license.ReasonRevoked},
		{"revoked beats expired", held(t, nil, 0), true, expires.Add(time.Hour), license.StatusInvalid, license.ReasonRevoked},
		{"verification beats revoked", bad, true, nb.Add(-time.Hour), license.StatusInvalid, license.ReasonSignatureInvalid},
		{"issued in the future is fine", held(t, nil, 14), false, t0.Add(-48 * time.Hour), license.StatusValid, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, reason := c.h.Status(c.at, c.revoked)
			if st != c.status || reason != c.reason {
				t.Fatalf("got %s/%s, want %s/%s", st, reason, c.status, c.reason)
			}
		})
	}
}

func TestDaysRemainingIsAFloor(t *testing.T) {
	exp := time.Date(2027, 11, 1, 0, 0, 0, 0, time.UTC)
	cases := map[time.Duration]int{
		time.Second:                     -1,
		time.Nanosecond:                 -1,
		0:                               0,
		-time.Second:                    0,
		-24 * time.Hour:                 1,
		-24*time.Hour + time.Second:     0,
		24 * time.Hour:                  -1,
		24*time.Hour + time.Second:      -2,
		-365 * 24 * time.Hour:           365,
		-time.Nanosecond:                0,
		-24*time.Hour - time.Nanosecond: 1,
	}
	for off, want := range cases {
		if got := license.DaysRemaining(exp, exp.Add(off)); got != want {
			t.Errorf("t = expires%+v: %d, want %d", off, got, want)
		}
	}
	far := time.Date(9998, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := license.DaysRemaining(far, t0); got < 2_900_000 {
		t.Errorf("far expiry must not overflow: %d", got)
	}
}

func TestPendingBecomesCurrentOnTime(t *testing.T) {
	nb := time.Date(2027, 10, 25, 0, 0, 0, 0, time.UTC)
	cur := held(t, nil, 14)
	next := held(t, func(p map[string]any) {
		p["license_id"] = "0193a5b0-7e1a-7c3d-8f00-0000000000bb"
		p["issued_at"] = "2027-10-01T00:00:00Z"
		p["not_before"] = nb.Format(time.RFC3339)
		p["expires"] = "2028-11-01T00:00:00Z"
	}, 14)
	if !license.StartsLater(next.License.Payload, nb.Add(-5*time.Minute-time.Second)) ||
		license.StartsLater(next.License.Payload, nb.Add(-5*time.Minute)) {
		t.Fatal("StartsLater must switch at not_before - 5 min")
	}
	inForce, waiting := license.Applicable(cur, next, nb.Add(-6*time.Minute))
	if inForce != cur || waiting != next {
		t.Fatal("before not_before - 5 min the current license stays in force")
	}
	inForce, waiting = license.Applicable(cur, next, nb.Add(-5*time.Minute))
	if inForce != next || waiting != nil {
		t.Fatal("at not_before - 5 min the pending license is in force")
	}
	if inForce, waiting = license.Applicable(nil, next, nb); inForce != next || waiting != nil {
		t.Fatal("a pending license with no current one")
	}
	if inForce, _ = license.Applicable(nil, next, t0); inForce != nil {
		t.Fatal("an org whose only license is pending has none in force")
	}
	r := license.Describe("acme", cur, false, next, nb.Add(-time.Hour))
	if r.Pending == nil || r.Pending.LicenseID != "0193a5b0-7e1a-7c3d-8f00-0000000000bb" || r.Pending.NotBefore != "2027-10-25T00:00:00Z" {
		t.Fatalf("pending in report: %+v", r.Pending)
	}
}

func TestReportHasEveryKey(t *testing.T) {
	h := held(t, nil, 14)
	at := time.Date(2027, 11, 1, 0, 0, 1, 500, time.UTC)
	r := license.Describe("acme", h, false, nil, at)
	var m map[string]any
	if err := json.Unmarshal(mustJSON(t, r), &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"org": "acme", "status": "grace", "reason": nil, "resolved_from": nil,
		"license_id": "0193a5b0-7e1a-7c3d-8f00-1234567890ab", "customer": "Acme Corp",
		"tier": "enterprise", "products": []any{"hub_platform"},
		"features":  []any{"audit_export", "chat_connector"},
		"issued_at": "2026-11-01T00:00:00Z", "not_before": nil, "expires": "2027-11-01T00:00:00Z",
		"grace_ends": "2027-11-15T00:00:00Z", "days_remaining": -1.0, "users_limit": 50.0,
		"users_active": nil, "users_reported_at": nil, "enforcement": nil, "seq": nil, "pending": nil,
	}
	if len(m) != len(want) {
		t.Fatalf("keys: %v", m)
	}
	for k, v := range want {
		if got, _ := json.Marshal(m[k]); string(got) != string(mustJSON(t, v)) {
			t.Errorf("%s = %s, want %s", k, got, mustJSON(t, v))
		}
	}
	missing := license.Describe("globex", nil, false, nil, at)
	if missing.Status != license.StatusMissing || missing.Products != nil || missing.LicenseID != nil {
		t.Fatalf("missing: %+v", missing)
	}
	broken := &license.Held{License: &license.License{PayloadErr: errors.New("x")}, Err: &license.Error{Reason: license.ReasonMalformed}}
	b := license.Describe("", broken, false, nil, at)
	if b.Status != license.StatusInvalid || *b.Reason != license.ReasonMalformed || b.Org != nil {
		t.Fatalf("malformed: %+v", b)
	}
}
