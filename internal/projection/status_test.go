package projection_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/projection"
	"github.com/licenseledger/ledger/license"
)

const day = 24 * time.Hour

var reportKeys = []string{"org", "status", "reason", "resolved_from", "license_id", "customer", "tier", "products",
	"features", "issued_at", "not_before", "expires", "grace_ends", "days_remaining", "users_limit", "users_active",
	"users_reported_at", "enforcement",
	"seq", "pending"}

// reportJSON renders r as the API does and checks that every key is there.
func reportJSON(t *testing.T, r license.Report) map[string]json.RawMessage {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if len(m) != len(reportKeys) {
		t.Fatalf("report has %d keys, want %d: %s", len(m), len(reportKeys), b)
	}
	for _, k := range reportKeys {
		if _, ok := m[k]; !ok {
			t.Fatalf("report lacks %q: %s", k, b)
		}
	}
	return m
}

func checkJSON(t *testing.T, m map[string]json.RawMessage, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if string(m[k]) != v {
			t.Errorf("%s = %s, want %s", k, m[k], v)
		}
	}
}

// acmeWithPending holds A (current) and B (pending from nb) at seq 2.
func acmeWithPending(t *testing.T, tr projection.Trust) *license.OrgState {
	t.Helper()
	s := step(t, tr, license.NewOrgState("acme"), 1, events.TypeUploaded, t1,
		uploadOf(sign(t, "k1", basePayload()), events.SlotCurrent), projection.Applied)
	return step(t, tr, s, 2, events.TypeUploaded, t1, uploadOf(sign(t, "k1", pendingPayload()), events.SlotPending), projection.Applied)
}

func TestReportHasEveryKey(t *testing.T) {
	tr := trustOf(t, "k1")
	s := acmeWithPending(t, tr)
	m := reportJSON(t, license.ReportOf("acme", s, nil, t1))
	checkJSON(t, m, map[string]string{
		"org": `"acme"`, "status": `"valid"`, "reason": `null`, "resolved_from": `"org"`,
		"license_id": `"` + idA + `"`, "customer": `"Acme Corp"`, "tier": `"enterprise"`,
		"products": `["hub_platform"]`, "features": `["audit_export","chat_connector"]`,
		"issued_at": `"2026-11-01T00:00:00Z"`, "not_before": `null`, "expires": `"2027-11-01T00:00:00Z"`,
		"grace_ends": `"2027-11-15T00:00:00Z"`, "days_remaining": `336`, "users_limit": `50`,
		"users_active": `null`, "users_reported_at": `null`, "enforcement": `"auto"`, "seq": `2`, "pending": `{"license_id":"` + idB + `","not_before":"2027-10-25T00:00:00Z"}`,
	})

	m = reportJSON(t, license.ReportOf("globex", nil, nil, t1))
	want := map[string]string{"org": `"globex"`, "status": `"missing"`, "resolved_from": `"none"`,
		"enforcement": `"auto"`, "seq": `0`}
	for _, k := range reportKeys {
		if _, ok := want[k]; !ok {
			want[k] = "null"
		}
	}
	checkJSON(t, m, want)

	inst := instanceState(t, tr)
	m = reportJSON(t, license.ReportOf("globex", nil, inst, t1))
	checkJSON(t, m, map[string]string{"org": `"globex"`, "status": `"valid"`, "resolved_from": `"instance"`,
		"license_id": `"` + idInstance + `"`, "customer": `"Hosting Co"`, "tier": `"professional"`,
		"grace_ends": `"2028-06-08T00:00:00Z"`, "seq": `0`, "pending": `null`})

	// An invalid license still shows what it claims, with the reason.
	forgedState := step(t, tr, license.NewOrgState("acme"), 1, events.TypeUploaded, t1,
		uploadOf(sign(t, "k9", basePayload()), events.SlotCurrent), projection.Applied)
	m = reportJSON(t, license.ReportOf("acme", forgedState, nil, t1))
	checkJSON(t, m, map[string]string{"status": `"invalid"`, "reason": `"unknown_key"`, "resolved_from": `"org"`,
		"license_id": `"` + idA + `"`, "seq": `1`})
}

func TestOwnLicenseBeatsTheInstanceLicenseInEveryState(t *testing.T) {
	tr := trustOf(t, "k1")
	inst := instanceState(t, tr)
	a := sign(t, "k1", basePayload())
	up := func(l *license.License) *license.OrgState {
		return step(t, tr, license.NewOrgState("acme"), 1, events.TypeUploaded, t1, uploadOf(l, events.SlotCurrent), projection.Applied)
	}
	valid := up(a)
	revoked := step(t, tr, valid, 2, events.TypeInvalidated, t1, events.Invalidated{LicenseID: idA}, projection.Applied)
	// A current slot holding a license that starts later (only a forged or
	// hand-made event puts one there).
	early := up(sign(t, "k1", pendingPayload()))
	malformedState := step(t, tr, license.NewOrgState("acme"), 1, events.TypeUploaded, t1,
		events.Uploaded{LicenseID: idA, Key: "garbage", Slot: events.SlotCurrent, GraceDaysEffective: 14}, projection.Applied)

	cases := []struct {
		name   string
		own    *license.OrgState
		at     time.Time
		status license.Status
		reason string
		id     string
	}{
		{"valid", valid, t1, license.StatusValid, "<null>", idA},
		{"grace", valid, expires.Add(day), license.StatusGrace, "<null>", idA},
		{"expired", valid, expires.Add(15 * day), license.StatusExpired, "<null>", idA},
		{"revoked", revoked, t1, license.StatusInvalid, "revoked", idA},
		{"unknown key", up(sign(t, "k9", basePayload())), t1, license.StatusInvalid, "unknown_key", idA},
		{"signature invalid", up(signAs(t, "k3", "k1", basePayload())), t1, license.StatusInvalid, "signature_invalid", idA},
		{"org mismatch", up(sign(t, "k1", mod(basePayload(), "org_slug", "globex"))), t1, license.StatusInvalid, "org_mismatch", idA},
		{"not yet valid", early, t1, license.StatusInvalid, "not_yet_valid", idB},
		{"malformed", malformedState, t1, license.StatusInvalid, "malformed", "<null>"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if r := license.ReportOf("acme", nil, inst, c.at); r.Status != license.StatusValid {
				t.Fatalf("test setup: the instance license is %s at %v", r.Status, c.at)
			}
			r := license.ReportOf("acme", c.own, inst, c.at)
			if r.Status != c.status || reasonStr(r.Reason) != c.reason || str(r.ResolvedFrom) != "org" || str(r.LicenseID) != c.id {
				t.Fatalf("%s %s from %s id %s, want %s %s from org id %s",
					r.Status, reasonStr(r.Reason), str(r.ResolvedFrom), str(r.LicenseID), c.status, c.reason, c.id)
			}
			if *r.Seq != c.own.Seq {
				t.Fatalf("seq %d, want %d", *r.Seq, c.own.Seq)
			}
		})
	}
}

func TestInstanceLicenseAppliesToOrgsWithoutOneInForce(t *testing.T) {
	tr := trustOf(t, "k1")
	inst := instanceState(t, tr)
	check := func(name string, r license.Report, status license.Status, from, id string, seq uint64) {
		t.Helper()
		if r.Status != status || str(r.ResolvedFrom) != from || str(r.LicenseID) != id || r.Seq == nil || *r.Seq != seq || str(r.Org) != "acme" {
			t.Fatalf("%s: %s from %s id %s seq %v org %s, want %s from %s id %s seq %d",
				name, r.Status, str(r.ResolvedFrom), str(r.LicenseID), r.Seq, str(r.Org), status, from, id, seq)
		}
	}

	check("no events", license.ReportOf("acme", nil, inst, t1), license.StatusValid, "instance", idInstance, 0)
	check("empty state", license.ReportOf("acme", license.NewOrgState("acme"), inst, t1), license.StatusValid, "instance", idInstance, 0)

	// Events but no license: only an invalidation and an ignored event.
	s := step(t, tr, license.NewOrgState("acme"), 4, events.TypeInvalidated, t1, events.Invalidated{LicenseID: idC}, projection.Applied)
	s = step(t, tr, s, 8, "license.transferred", t1, map[string]any{}, projection.Ignored)
	check("no license of its own", license.ReportOf("acme", s, inst, t1), license.StatusValid, "instance", idInstance, 8)

	// Removed: the instance license applies again.
	own := step(t, tr, s, 9, events.TypeUploaded, t1, uploadOf(sign(t, "k1", basePayload()), events.SlotCurrent), projection.Applied)
	check("own license", license.ReportOf("acme", own, inst, t1), license.StatusValid, "org", idA, 9)
	removed := step(t, tr, own, 10, events.TypeRemoved, t1, events.Removed{LicenseID: idA}, projection.Applied)
	check("removed", license.ReportOf("acme", removed, inst, t1), license.StatusValid, "instance", idInstance, 10)

	// Only a pending license: the instance license applies until it starts,
	// and the pending one is shown.
	pend := step(t, tr, license.NewOrgState("acme"), 3, events.TypeUploaded, t1,
		uploadOf(sign(t, "k1", pendingPayload()), events.SlotPending), projection.Applied)
	before := license.ReportOf("acme", pend, inst, nb.Add(-license.Skew-time.Second))
	check("only pending", before, license.StatusValid, "instance", idInstance, 3)
	if before.Pending == nil || before.Pending.LicenseID != idB || before.Pending.NotBefore != "2027-10-25T00:00:00Z" {
		t.Fatalf("pending %+v", before.Pending)
	}
	after := license.ReportOf("acme", pend, inst, nb.Add(-license.Skew))
	check("pending started", after, license.StatusValid, "org", idB, 3)
	if after.Pending != nil {
		t.Fatalf("pending after it started: %+v", after.Pending)
	}
	// With nothing instance-wide, an org whose only license is pending is missing.
	if r := license.ReportOf("acme", pend, nil, t1); r.Status != license.StatusMissing || str(r.ResolvedFrom) != "none" || r.Pending == nil {
		t.Fatalf("only pending, no instance license: %s from %s pending %+v", r.Status, str(r.ResolvedFrom), r.Pending)
	}

	// The instance license's own state decides its revocation and expiry.
	instRevoked := step(t, tr, inst, 2, events.TypeInvalidated, t1, events.Invalidated{LicenseID: idInstance}, projection.Applied)
	r := license.ReportOf("acme", nil, instRevoked, t1)
	if r.Status != license.StatusInvalid || reasonStr(r.Reason) != "revoked" || str(r.ResolvedFrom) != "instance" {
		t.Fatalf("revoked instance license: %s %s from %s", r.Status, reasonStr(r.Reason), str(r.ResolvedFrom))
	}
	instExpiry := time.Date(2028, 6, 1, 0, 0, 0, 0, time.UTC)
	check("instance grace", license.ReportOf("acme", nil, inst, instExpiry), license.StatusGrace, "instance", idInstance, 0)
	check("instance expired", license.ReportOf("acme", nil, inst, instExpiry.Add(7*day)), license.StatusExpired, "instance", idInstance, 0)
}

func TestMissing(t *testing.T) {
	tr := trustOf(t, "k1")
	emptyInst := license.NewOrgState(license.InstanceOrg)
	// An instance license that has not started yet is not in force.
	pendingInst := step(t, tr, emptyInst, 1, events.TypeUploaded, t1,
		uploadOf(sign(t, "k1", mod(pendingPayload(), "license_id", idInstance, "org_slug", "*")), events.SlotPending), projection.Applied)
	for name, c := range map[string]struct{ own, inst *license.OrgState }{
		"nothing":                  {nil, nil},
		"empty states":             {license.NewOrgState("acme"), emptyInst},
		"instance license pending": {nil, pendingInst},
	} {
		r := license.ReportOf("acme", c.own, c.inst, t1)
		if r.Status != license.StatusMissing || str(r.ResolvedFrom) != "none" || r.Reason != nil || r.LicenseID != nil ||
			r.Pending != nil || str(r.Org) != "acme" || *r.Seq != 0 || str(r.Enforcement) != "auto" {
			t.Fatalf("%s: %+v", name, r)
		}
	}
}

func TestInstanceReportsItself(t *testing.T) {
	tr := trustOf(t, "k1")
	inst := instanceState(t, tr)
	inst = step(t, tr, inst, 6, events.TypeEnforcementChanged, t1, events.EnforcementChanged{Mode: license.EnforceOn}, projection.Applied)
	r := license.ReportOf(license.InstanceOrg, inst, inst, t1)
	if r.Status != license.StatusValid || str(r.ResolvedFrom) != "instance" || str(r.Org) != "_instance" ||
		str(r.LicenseID) != idInstance || *r.Seq != 6 || str(r.Enforcement) != "on" {
		t.Fatalf("_instance: %s from %s org %s id %s seq %d enforcement %s",
			r.Status, str(r.ResolvedFrom), str(r.Org), str(r.LicenseID), *r.Seq, str(r.Enforcement))
	}
	exp := license.ReportOf(license.InstanceOrg, inst, inst, time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC))
	if exp.Status != license.StatusExpired || str(exp.ResolvedFrom) != "instance" {
		t.Fatalf("_instance expired: %s from %s", exp.Status, str(exp.ResolvedFrom))
	}
	empty := license.NewOrgState(license.InstanceOrg)
	r = license.ReportOf(license.InstanceOrg, empty, empty, t1)
	if r.Status != license.StatusMissing || str(r.ResolvedFrom) != "none" {
		t.Fatalf("_instance without a license: %s from %s", r.Status, str(r.ResolvedFrom))
	}
}

func TestRevokedLicenseInForce(t *testing.T) {
	tr := trustOf(t, "k1")
	s := acmeWithPending(t, tr)
	s = step(t, tr, s, 3, events.TypeInvalidated, t1, events.Invalidated{LicenseID: idB, Note: "pre-emptive"}, projection.Applied)
	// B is revoked while pending: A decides until B starts, then B is invalid.
	if r := license.ReportOf("acme", s, nil, t1); r.Status != license.StatusValid || str(r.LicenseID) != idA || r.Pending == nil {
		t.Fatalf("before B starts: %s %s", r.Status, str(r.LicenseID))
	}
	r := license.ReportOf("acme", s, nil, nb)
	if r.Status != license.StatusInvalid || reasonStr(r.Reason) != "revoked" || str(r.LicenseID) != idB {
		t.Fatalf("B in force: %s %s %s", r.Status, reasonStr(r.Reason), str(r.LicenseID))
	}
	// Revocation beats expiry.
	r = license.ReportOf("acme", s, nil, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	if r.Status != license.StatusInvalid || reasonStr(r.Reason) != "revoked" {
		t.Fatalf("revoked and expired: %s %s", r.Status, reasonStr(r.Reason))
	}
}

func TestSeqIsTheOrgSubjectsHead(t *testing.T) {
	tr := trustOf(t, "k1")
	inst := instanceState(t, tr)
	s := step(t, tr, license.NewOrgState("acme"), 3, events.TypeUploaded, t1,
		uploadOf(sign(t, "k1", basePayload()), events.SlotCurrent), projection.Applied)
	s = step(t, tr, s, 11, events.TypeGraceStarted, t1, events.Due{LicenseID: idA}, projection.Applied)
	s = step(t, tr, s, 12, events.TypeUploaded, t1, map[string]any{"slot": "x"}, projection.Invalid)
	bad, _, _ := projection.Apply(tr, s, events.Decode(events.OrgSubject("acme"), 40, []byte("junk")))
	for _, st := range []*license.OrgState{s, bad} {
		if r := license.ReportOf("acme", st, inst, t1); *r.Seq != st.Seq {
			t.Fatalf("seq %d, state at %d", *r.Seq, st.Seq)
		}
	}
	if bad.Seq != 40 || s.Seq != 12 {
		t.Fatalf("states at %d and %d", s.Seq, bad.Seq)
	}
	// Resolved from the instance, seq is still the org's.
	removed := step(t, tr, bad, 41, events.TypeRemoved, t1, events.Removed{}, projection.Applied)
	r := license.ReportOf("acme", removed, inst, t1)
	if str(r.ResolvedFrom) != "instance" || *r.Seq != 41 {
		t.Fatalf("from %s seq %d, want instance 41", str(r.ResolvedFrom), *r.Seq)
	}
}

func TestEnforcementInReport(t *testing.T) {
	tr := trustOf(t, "k1")
	own := acmeWithPending(t, tr)
	if r := license.ReportOf("acme", own, nil, t1); str(r.Enforcement) != "auto" {
		t.Fatalf("no instance state: %s", str(r.Enforcement))
	}
	inst := instanceState(t, tr)
	if r := license.ReportOf("acme", own, inst, t1); str(r.Enforcement) != "auto" {
		t.Fatalf("never set: %s", str(r.Enforcement))
	}
	for i, mode := range []string{"off", "on", "auto"} {
		inst = step(t, tr, inst, uint64(10+i), events.TypeEnforcementChanged, t1, events.EnforcementChanged{Mode: mode}, projection.Applied)
		for _, org := range []string{"acme", "globex"} {
			var o *license.OrgState
			if org == "acme" {
				o = own
			}
			if r := license.ReportOf(org, o, inst, t1); str(r.Enforcement) != mode {
				t.Fatalf("%s after %s: %s", org, mode, str(r.Enforcement))
			}
		}
	}
}

func TestPendingIsShownInWholeSeconds(t *testing.T) {
	tr := trustOf(t, "k1")
	s := step(t, tr, license.NewOrgState("acme"), 1, events.TypeUploaded, t1,
		uploadOf(sign(t, "k1", basePayload()), events.SlotCurrent), projection.Applied)
	l := sign(t, "k1", mod(pendingPayload(), "not_before", "2027-10-25T02:00:00.75+02:00"))
	s = step(t, tr, s, 2, events.TypeUploaded, t1, uploadOf(l, events.SlotPending), projection.Applied)
	r := license.ReportOf("acme", s, nil, t1)
	if r.Pending == nil || r.Pending.LicenseID != idB || r.Pending.NotBefore != "2027-10-25T00:00:00Z" {
		t.Fatalf("pending %+v", r.Pending)
	}
	// A pending slot that fails verification is still shown as pending.
	f := step(t, tr, s, 3, events.TypeUploaded, t1, uploadOf(sign(t, "k9", pendingPayload()), events.SlotPending), projection.Applied)
	if r := license.ReportOf("acme", f, nil, t1); r.Status != license.StatusValid || r.Pending == nil || r.Pending.LicenseID != idB {
		t.Fatalf("unverified pending: %s %+v", r.Status, r.Pending)
	}
}

func TestExpiryByTimeAlone(t *testing.T) {
	tr := trustOf(t, "k1")
	s := acmeWithPending(t, tr)
	graceEnd := expires.Add(14 * day)
	// A is replaced by B at nb − 5 min, by time: use a state with A only.
	only := step(t, tr, license.NewOrgState("acme"), 1, events.TypeUploaded, t1,
		uploadOf(sign(t, "k1", basePayload()), events.SlotCurrent), projection.Applied)
	cases := []struct {
		at     time.Time
		status license.Status
		days   int
	}{
		{expires.Add(-day - time.Second), license.StatusValid, 1},
		{expires.Add(-time.Second), license.StatusValid, 0},
		{expires, license.StatusGrace, 0},
		{expires.Add(time.Second), license.StatusGrace, -1},
		{graceEnd.Add(-time.Second), license.StatusGrace, -14},
		{graceEnd, license.StatusExpired, -14},
		{graceEnd.Add(365 * day), license.StatusExpired, -379},
	}
	for _, c := range cases {
		r := license.ReportOf("acme", only, nil, c.at)
		if r.Status != c.status || r.DaysRemaining == nil || *r.DaysRemaining != c.days ||
			str(r.GraceEnds) != "2027-11-15T00:00:00Z" || *r.Seq != 1 {
			t.Errorf("at %v: %s days %v grace ends %s, want %s %d", c.at, r.Status, r.DaysRemaining, str(r.GraceEnds), c.status, c.days)
		}
	}

	// The pending license takes over by time, with no event.
	start := nb.Add(-license.Skew)
	if r := license.ReportOf("acme", s, nil, start.Add(-time.Second)); str(r.LicenseID) != idA || r.Pending == nil {
		t.Fatalf("before B starts: %s pending %+v", str(r.LicenseID), r.Pending)
	}
	r := license.ReportOf("acme", s, nil, start)
	if str(r.LicenseID) != idB || r.Pending != nil || r.Status != license.StatusValid || str(r.NotBefore) != "2027-10-25T00:00:00Z" {
		t.Fatalf("at B's start: %s %s pending %+v", str(r.LicenseID), r.Status, r.Pending)
	}
	if r := license.ReportOf("acme", s, nil, expires.Add(day)); r.Status != license.StatusValid || str(r.LicenseID) != idB {
		t.Fatalf("after A's expiry B decides: %s %s", r.Status, str(r.LicenseID))
	}

	// With no grace, the license is expired at expires.
	noGrace := step(t, tr, license.NewOrgState("acme"), 1, events.TypeUploaded, t1,
		uploadOf(sign(t, "k1", mod(basePayload(), "grace_days", 0)), events.SlotCurrent), projection.Applied)
	if r := license.ReportOf("acme", noGrace, nil, expires.Add(-time.Second)); r.Status != license.StatusValid {
		t.Fatalf("grace 0 before expires: %s", r.Status)
	}
	r = license.ReportOf("acme", noGrace, nil, expires)
	if r.Status != license.StatusExpired || str(r.GraceEnds) != "2027-11-01T00:00:00Z" {
		t.Fatalf("grace 0 at expires: %s, grace ends %s", r.Status, str(r.GraceEnds))
	}
}

func TestInForceAndIsRevokedOnNilState(t *testing.T) {
	var s *license.OrgState
	if f, w := s.InForce(t1); f != nil || w != nil {
		t.Fatal("nil state has a license")
	}
	if s.IsRevoked(idA) || s.EnforcementMode() != license.EnforceAuto {
		t.Fatal("nil state")
	}
}
