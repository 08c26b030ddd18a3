package projection_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/projection"
	"github.com/licenseledger/ledger/internal/testenv/licensetest"
	"github.com/licenseledger/ledger/license"
)

func testRing(t testing.TB, kids ...string) *license.Ring { return licensetest.Ring(t, kids...) }

const (
	installID  = "5b3c1d1e-7f55-4f4b-9b68-2a1f0d3c9e11"
	otherID    = "00000000-0000-4000-8000-000000000001"
	idA        = "0193a5b0-7e1a-7c3d-8f00-1234567890ab"
	idB        = "0193a5b0-7e1a-7c3d-8f00-0000000000bb"
	idC        = "0193a5b0-7e1a-7c3d-8f00-0000000000cc"
	idInstance = "0193a5b0-7e1a-7c3d-8f00-00000000001a"
)

var (
	// The base license expires at expires, 14 days of grace.
	expires = time.Date(2027, 11, 1, 0, 0, 0, 0, time.UTC)
	// t1 is a moment well inside the base license's validity.
	t1 = time.Date(2026, 11, 29, 13, 1, 2, 123456000, time.UTC)
	// nb is the not_before of the pending license B.
	nb = time.Date(2027, 10, 25, 0, 0, 0, 0, time.UTC)

	actor = events.Actor{Kind: events.ActorOperator, ID: "deploy-bot"}
)

// basePayload is a valid payload for acme, as a map for tests to bend.
func basePayload() map[string]any {
	return map[string]any{
		"license_id":  idA,
		"customer":    "Acme Corp",
		"org_slug":    "acme",
		"tier":        "enterprise",
		"products":    []string{"hub_platform"},
		"features":    []string{"chat_connector", "audit_export"},
		"issued_at":   "2026-11-01T00:00:00Z",
		"expires":     "2027-11-01T00:00:00Z",
		"users_limit": 50,
		"grace_days":  14,
	}
}

// pendingPayload is license B: it starts at nb and follows the base one.
func pendingPayload() map[string]any {
	p := basePayload()
	p["license_id"] = idB
	p["issued_at"] = "2027-10-01T00:00:00Z"
	p["not_before"] = nb.Format(time.RFC3339)
	p["expires"] = "2028-11-01T00:00:00Z"
	return p
}

func signAs(t testing.TB, keyName, kid string, p map[string]any) *license.License {
	t.Helper()
	return licensetest.SignAs(t, keyName, kid, p)
}

func sign(t testing.TB, kid string, p map[string]any) *license.License { return signAs(t, kid, kid, p) }

func signRaw(kid string, payload []byte) string { return licensetest.SignRaw(kid, payload) }

func mod(p map[string]any, kv ...any) map[string]any {
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(p, kv[i].(string))
		} else {
			p[kv[i].(string)] = kv[i+1]
		}
	}
	return p
}

// uploadOf is the data a ledger appends for l in slot.
func uploadOf(l *license.License, slot string) events.Uploaded {
	return events.Uploaded{LicenseID: l.Payload.LicenseID, Fingerprint: l.Fingerprint, Key: l.Key, Slot: slot,
		GraceDaysEffective: license.EffectiveGrace(l.Payload, license.DefaultGraceDays), Source: events.SourceAPI}
}

func trustOf(t testing.TB, kids ...string) projection.Trust {
	return projection.Trust{Ring: testRing(t, kids...), InstallID: installID}
}

// message encodes an event the way a ledger publishes it and decodes it the
// way a reader receives it on org's subject at seq.
func message(t testing.TB, org string, seq, prev uint64, typ string, at time.Time, data any) *events.Message {
	t.Helper()
	e, err := events.New(typ, org, at, actor, prev, data)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	m := events.Decode(events.OrgSubject(org), seq, raw)
	if m.Envelope == nil {
		t.Fatalf("test event %s does not decode: %v", typ, m.Err)
	}
	return m
}

// step folds the next event on s's subject (stream sequence seq, prev_seq
// chained to s) and checks the outcome.
func step(t testing.TB, tr projection.Trust, s *license.OrgState, seq uint64, typ string, at time.Time, data any, want projection.Outcome) *license.OrgState {
	t.Helper()
	n, out, err := projection.Apply(tr, s, message(t, s.Org, seq, s.Seq, typ, at, data))
	if out != want {
		t.Fatalf("%s at seq %d: outcome %v (%v), want %v", typ, seq, out, err, want)
	}
	if (want == projection.Applied || want == projection.Ignored) && err != nil {
		t.Fatalf("%s at seq %d: %v with error %v", typ, seq, out, err)
	}
	if (want == projection.Invalid || want == projection.TooNew) && err == nil {
		t.Fatalf("%s at seq %d: %v without an error", typ, seq, out)
	}
	if n.Seq != seq || n.Org != s.Org {
		t.Fatalf("%s at seq %d: state %s at seq %d", typ, seq, n.Org, n.Seq)
	}
	return n
}

func reasonOf(s *license.Slot) license.Reason {
	if s == nil {
		return "<no slot>"
	}
	return license.ReasonOf(s.Held.Err)
}

func slotID(s *license.Slot) string {
	if s == nil {
		return ""
	}
	return s.LicenseID
}

func str(p *string) string {
	if p == nil {
		return "<null>"
	}
	return *p
}

func reasonStr(p *license.Reason) string {
	if p == nil {
		return "<null>"
	}
	return string(*p)
}

func TestNewOrgState(t *testing.T) {
	s := license.NewOrgState("acme")
	if s.Org != "acme" || s.Seq != 0 || s.Current != nil || s.Pending != nil || s.Revoked.Len() != 0 ||
		s.Enforcement != "" || !s.UpdatedAt.IsZero() {
		t.Fatalf("new state %+v", s)
	}
	if s.EnforcementMode() != license.EnforceAuto || s.IsRevoked(idA) {
		t.Fatal("new state: enforcement auto, nothing revoked")
	}
}

func TestOutcomeNames(t *testing.T) {
	want := map[projection.Outcome]string{projection.Applied: "applied", projection.Ignored: "ignored",
		projection.Stale: "stale", projection.Invalid: "invalid", projection.TooNew: "too_new"}
	for o, name := range want {
		if o.String() != name {
			t.Errorf("%d.String() = %q, want %q", o, o.String(), name)
		}
	}
}

func TestUploadToCurrent(t *testing.T) {
	tr := trustOf(t, "k1")
	a := sign(t, "k1", basePayload())
	s0 := license.NewOrgState("acme")
	s1 := step(t, tr, s0, 3, events.TypeUploaded, t1, uploadOf(a, events.SlotCurrent), projection.Applied)

	c := s1.Current
	if c == nil || s1.Pending != nil {
		t.Fatalf("current %+v pending %+v", s1.Current, s1.Pending)
	}
	if c.Held.Err != nil || c.License == nil || c.License.Fingerprint != a.Fingerprint || c.GraceDays != 14 {
		t.Fatalf("held %+v", c.Held)
	}
	if c.LicenseID != idA || c.Seq != 3 || !c.At.Equal(t1) || c.Key != a.Key || c.Fingerprint != a.Fingerprint {
		t.Fatalf("slot %s seq %d at %v key %q fingerprint %s", c.LicenseID, c.Seq, c.At, c.Key, c.Fingerprint)
	}
	if !s1.UpdatedAt.Equal(t1) {
		t.Fatalf("updated at %v, want %v", s1.UpdatedAt, t1)
	}
	if s0.Seq != 0 || s0.Current != nil || !s0.UpdatedAt.IsZero() {
		t.Fatalf("the previous state changed: %+v", s0)
	}
	r := license.ReportOf("acme", s1, nil, t1)
	if r.Status != license.StatusValid || r.Reason != nil || str(r.LicenseID) != idA || str(r.ResolvedFrom) != "org" {
		t.Fatalf("report %s %s %s %s", r.Status, reasonStr(r.Reason), str(r.LicenseID), str(r.ResolvedFrom))
	}

	// A later upload to current replaces it; the replaced id (event data
	// for the audit) changes nothing else.
	c2 := sign(t, "k1", mod(basePayload(), "license_id", idC, "issued_at", "2026-12-01T00:00:00Z", "grace_days", 30))
	up := uploadOf(c2, events.SlotCurrent)
	old := idA
	up.Replaces = &old
	s2 := step(t, tr, s1, 9, events.TypeUploaded, t1.Add(time.Hour), up, projection.Applied)
	if slotID(s2.Current) != idC || s2.Current.GraceDays != 30 || s2.Current.Seq != 9 || s2.Pending != nil {
		t.Fatalf("after the second upload: %+v", s2.Current)
	}
	if s2.IsRevoked(idA) || s2.Revoked.Len() != 0 {
		t.Fatal("replacing a license does not revoke it")
	}
	if slotID(s1.Current) != idA {
		t.Fatal("the previous state's current slot changed")
	}
}

func TestReplacesIsOnlyCarried(t *testing.T) {
	tr := trustOf(t, "k1")
	s := step(t, tr, license.NewOrgState("acme"), 1, events.TypeUploaded, t1,
		uploadOf(sign(t, "k1", basePayload()), events.SlotCurrent), projection.Applied)
	b := sign(t, "k1", pendingPayload())
	up := uploadOf(b, events.SlotPending)
	unrelated := idC // names a license that was never held
	up.Replaces = &unrelated
	s2 := step(t, tr, s, 2, events.TypeUploaded, t1.Add(time.Minute), up, projection.Applied)
	if slotID(s2.Current) != idA || slotID(s2.Pending) != idB {
		t.Fatalf("slots %q %q", slotID(s2.Current), slotID(s2.Pending))
	}
	if s2.Revoked.Len() != 0 || s2.IsRevoked(idC) {
		t.Fatalf("revoked %v", s2.Revoked.Map())
	}
	r := license.ReportOf("acme", s2, nil, t1.Add(time.Hour))
	if r.Status != license.StatusValid || str(r.LicenseID) != idA || r.Pending == nil || r.Pending.LicenseID != idB {
		t.Fatalf("report %+v", r)
	}
}

func TestPendingIsPromotedByALaterEventsTime(t *testing.T) {
	tr := trustOf(t, "k1")
	a := sign(t, "k1", basePayload())
	b := sign(t, "k1", pendingPayload())
	start := nb.Add(-license.Skew)

	s1 := step(t, tr, license.NewOrgState("acme"), 1, events.TypeUploaded, t1, uploadOf(a, events.SlotCurrent), projection.Applied)
	s2 := step(t, tr, s1, 2, events.TypeUploaded, t1.Add(time.Hour), uploadOf(b, events.SlotPending), projection.Applied)
	if slotID(s2.Current) != idA || slotID(s2.Pending) != idB || s2.Pending.Held.Err != nil {
		t.Fatalf("after the pending upload: current %q pending %q (%v)", slotID(s2.Current), slotID(s2.Pending), reasonOf(s2.Pending))
	}

	// One second before not_before − 5 min, an event leaves it pending.
	s3 := step(t, tr, s2, 3, events.TypeInvalidated, start.Add(-time.Second), events.Invalidated{LicenseID: idC}, projection.Applied)
	if slotID(s3.Current) != idA || slotID(s3.Pending) != idB {
		t.Fatalf("promoted too early: current %q pending %q", slotID(s3.Current), slotID(s3.Pending))
	}
	// At not_before − 5 min, the next event finds it current.
	s4 := step(t, tr, s3, 4, events.TypeInvalidated, start, events.Invalidated{LicenseID: idC, Note: "again"}, projection.Applied)
	if slotID(s4.Current) != idB || s4.Pending != nil {
		t.Fatalf("not promoted at not_before − 5 min: current %q pending %q", slotID(s4.Current), slotID(s4.Pending))
	}
	if s4.Current.Seq != 2 || s4.Current.Held.Err != nil {
		t.Fatalf("promoted slot keeps its upload: seq %d err %v", s4.Current.Seq, s4.Current.Held.Err)
	}
	if slotID(s3.Current) != idA || slotID(s3.Pending) != idB {
		t.Fatal("promotion changed the previous state")
	}

	// A newer pending upload replaces the pending one.
	c := sign(t, "k1", mod(pendingPayload(), "license_id", idC, "not_before", "2027-10-28T00:00:00Z"))
	s5 := step(t, tr, s2, 3, events.TypeUploaded, t1.Add(2*time.Hour), uploadOf(c, events.SlotPending), projection.Applied)
	if slotID(s5.Current) != idA || slotID(s5.Pending) != idC {
		t.Fatalf("second pending: current %q pending %q", slotID(s5.Current), slotID(s5.Pending))
	}
}

func TestInvalidatedRevokesWithoutTouchingThePreviousState(t *testing.T) {
	tr := trustOf(t, "k1")
	s1 := step(t, tr, license.NewOrgState("acme"), 1, events.TypeUploaded, t1,
		uploadOf(sign(t, "k1", basePayload()), events.SlotCurrent), projection.Applied)
	s2 := step(t, tr, s1, 5, events.TypeInvalidated, t1.Add(time.Hour), events.Invalidated{LicenseID: idA, Note: "chargeback"}, projection.Applied)

	if !s2.IsRevoked(idA) || s2.Revoked.Map()[idA].Seq != 5 || s2.Revoked.Map()[idA].Note != "chargeback" {
		t.Fatalf("revoked %v", s2.Revoked.Map())
	}
	if slotID(s2.Current) != idA || !s2.UpdatedAt.Equal(t1.Add(time.Hour)) {
		t.Fatal("invalidation keeps the slot and sets updated_at")
	}
	if s1.IsRevoked(idA) || s1.Revoked.Len() != 0 || s1.Seq != 1 {
		t.Fatalf("the previous state changed: %+v", s1)
	}

	// A second revocation copies the maps again.
	s3 := step(t, tr, s2, 6, events.TypeInvalidated, t1.Add(2*time.Hour), events.Invalidated{LicenseID: idB, Note: "pre-emptive"}, projection.Applied)
	if s3.Revoked.Len() != 2 || !s3.IsRevoked(idB) || s3.Revoked.Map()[idB].Note != "pre-emptive" {
		t.Fatalf("after two: %v", s3.Revoked.Map())
	}
	if s2.Revoked.Len() != 1 || s2.IsRevoked(idB) {
		t.Fatalf("the second revocation changed the first state: %v", s2.Revoked.Map())
	}

	at := t1.Add(3 * time.Hour)
	if r := license.ReportOf("acme", s1, nil, at); r.Status != license.StatusValid {
		t.Fatalf("before revocation: %s", r.Status)
	}
	r := license.ReportOf("acme", s3, nil, at)
	if r.Status != license.StatusInvalid || reasonStr(r.Reason) != "revoked" || str(r.LicenseID) != idA {
		t.Fatalf("after revocation: %s %s", r.Status, reasonStr(r.Reason))
	}
}

func TestRemovedClearsBothSlotsButKeepsRevocations(t *testing.T) {
	tr := trustOf(t, "k1")
	s := step(t, tr, license.NewOrgState("acme"), 1, events.TypeUploaded, t1,
		uploadOf(sign(t, "k1", basePayload()), events.SlotCurrent), projection.Applied)
	s = step(t, tr, s, 2, events.TypeUploaded, t1, uploadOf(sign(t, "k1", pendingPayload()), events.SlotPending), projection.Applied)
	s = step(t, tr, s, 3, events.TypeInvalidated, t1, events.Invalidated{LicenseID: idC, Note: "n"}, projection.Applied)
	removed := step(t, tr, s, 4, events.TypeRemoved, t1.Add(time.Hour), events.Removed{LicenseID: idA}, projection.Applied)

	if removed.Current != nil || removed.Pending != nil {
		t.Fatalf("slots after removal: %q %q", slotID(removed.Current), slotID(removed.Pending))
	}
	if !removed.IsRevoked(idC) || removed.Revoked.Map()[idC].Note != "n" {
		t.Fatal("removal forgot a revocation")
	}
	if slotID(s.Current) != idA || slotID(s.Pending) != idB {
		t.Fatal("removal changed the previous state")
	}
	r := license.ReportOf("acme", removed, nil, t1.Add(2*time.Hour))
	if r.Status != license.StatusMissing || str(r.ResolvedFrom) != "none" || r.Pending != nil || *r.Seq != 4 {
		t.Fatalf("report after removal: %+v", r)
	}
	// Uploading again after a removal works, and a revoked id stays revoked.
	again := step(t, tr, removed, 5, events.TypeUploaded, t1.Add(3*time.Hour),
		uploadOf(sign(t, "k1", mod(basePayload(), "license_id", idC)), events.SlotCurrent), projection.Applied)
	if r := license.ReportOf("acme", again, nil, t1.Add(3*time.Hour)); r.Status != license.StatusInvalid || reasonStr(r.Reason) != "revoked" {
		t.Fatalf("revoked id uploaded after a removal: %s %s", r.Status, reasonStr(r.Reason))
	}
}

func TestDueEventsAreRecordedAndUnknownTypesIgnored(t *testing.T) {
	tr := trustOf(t, "k1")
	s := step(t, tr, license.NewOrgState("acme"), 1, events.TypeUploaded, t1,
		uploadOf(sign(t, "k1", basePayload()), events.SlotCurrent), projection.Applied)
	s = step(t, tr, s, 2, events.TypeInvalidated, t1, events.Invalidated{LicenseID: idC}, projection.Applied)
	cases := []struct {
		typ  string
		data any
		want projection.Outcome
	}{
		{events.TypeGraceStarted, events.Due{LicenseID: idA, DueAt: events.Time{Time: expires}}, projection.Applied},
		{events.TypeExpired, events.Due{LicenseID: idA, DueAt: events.Time{Time: expires.Add(14 * 24 * time.Hour)}}, projection.Applied},
		{"license.transferred", map[string]any{"to": "globex"}, projection.Ignored},
		{"org.renamed", map[string]any{}, projection.Ignored},
	}
	seq := s.Seq
	for _, c := range cases {
		seq += 3 // other subjects' events in between
		n := step(t, tr, s, seq, c.typ, t1.Add(time.Minute), c.data, c.want)
		if n.Current != s.Current || n.Pending != s.Pending || n.Revoked.Len() != 1 || n.Enforcement != s.Enforcement {
			t.Fatalf("%s changed the license state", c.typ)
		}
		s = n
	}
	if !s.GraceStarted[idA] || !s.Expired[idA] || s.GraceStarted[idC] {
		t.Fatalf("due events not recorded: %v %v", s.GraceStarted, s.Expired)
	}
	// The chain continues from the ignored events.
	s = step(t, tr, s, seq+1, events.TypeRemoved, t1.Add(time.Hour), events.Removed{LicenseID: idA}, projection.Applied)
	if s.Current != nil {
		t.Fatal("removal after ignored events")
	}
}

func TestStaleMessagesChangeNothing(t *testing.T) {
	tr := trustOf(t, "k1")
	a := sign(t, "k1", basePayload())
	s := step(t, tr, license.NewOrgState("acme"), 5, events.TypeUploaded, t1, uploadOf(a, events.SlotCurrent), projection.Applied)
	for _, seq := range []uint64{5, 4, 1} {
		m := message(t, "acme", seq, 0, events.TypeRemoved, t1.Add(time.Hour), events.Removed{LicenseID: idA})
		n, out, err := projection.Apply(tr, s, m)
		if out != projection.Stale || n != s || err != nil {
			t.Fatalf("seq %d: %v %v, same state %v", seq, out, err, n == s)
		}
	}
	if s.Seq != 5 || slotID(s.Current) != idA {
		t.Fatalf("state changed: %+v", s)
	}
	// A message of another subject is never folded into this org.
	for _, subject := range []string{events.OrgSubject("globex"), events.AuditSubject("acme")} {
		m := &events.Message{Seq: 9, Subject: subject}
		n, out, err := projection.Apply(tr, s, m)
		if out != projection.Stale || n != s || err == nil {
			t.Fatalf("%s: %v %v", subject, out, err)
		}
	}
}

func TestPrevSeqMismatchIsInvalid(t *testing.T) {
	tr := trustOf(t, "k1")
	a := sign(t, "k1", basePayload())
	s := step(t, tr, license.NewOrgState("acme"), 4, events.TypeUploaded, t1, uploadOf(a, events.SlotCurrent), projection.Applied)
	b := sign(t, "k1", mod(basePayload(), "license_id", idC))
	for _, prev := range []uint64{0, 3, 5, 6} {
		m := message(t, "acme", 6, prev, events.TypeUploaded, t1.Add(time.Hour), uploadOf(b, events.SlotCurrent))
		n, out, err := projection.Apply(tr, s, m)
		if out != projection.Invalid || err == nil {
			t.Fatalf("prev_seq %d after 4: %v %v", prev, out, err)
		}
		if n.Seq != 6 || slotID(n.Current) != idA || n.Pending != nil || !n.UpdatedAt.Equal(s.UpdatedAt) {
			t.Fatalf("prev_seq %d: seq %d current %q updated %v", prev, n.Seq, slotID(n.Current), n.UpdatedAt)
		}
		if s.Seq != 4 {
			t.Fatal("the previous state changed")
		}
	}
	// Gaps in the stream sequence are normal: prev_seq is what counts.
	n := step(t, tr, s, 90, events.TypeUploaded, t1.Add(time.Hour), uploadOf(b, events.SlotCurrent), projection.Applied)
	if slotID(n.Current) != idC {
		t.Fatal("upload after a gap")
	}
	// After a mismatch the chain continues from the mismatched message.
	m := message(t, "acme", 6, 0, events.TypeRemoved, t1.Add(time.Hour), events.Removed{})
	bad, _, _ := projection.Apply(tr, s, m)
	step(t, tr, bad, 7, events.TypeUploaded, t1.Add(time.Hour), uploadOf(b, events.SlotCurrent), projection.Applied)
}

func TestInvalidEnvelopeIsInvalidAndAdvancesSeq(t *testing.T) {
	tr := trustOf(t, "k1")
	s := step(t, tr, license.NewOrgState("acme"), 1, events.TypeUploaded, t1,
		uploadOf(sign(t, "k1", basePayload()), events.SlotCurrent), projection.Applied)
	for _, raw := range []string{"not json", `{"type":"license.removed"}`, "\xff\xfe"} {
		m := events.Decode(events.OrgSubject("acme"), 3, []byte(raw))
		if m.Envelope != nil {
			t.Fatalf("test setup: %q decodes", raw)
		}
		n, out, err := projection.Apply(tr, s, m)
		if out != projection.Invalid || err == nil || !errors.Is(err, m.Err) {
			t.Fatalf("%q: %v %v", raw, out, err)
		}
		if n.Seq != 3 || slotID(n.Current) != idA || !n.UpdatedAt.Equal(s.UpdatedAt) {
			t.Fatalf("%q: seq %d current %q", raw, n.Seq, slotID(n.Current))
		}
		// The next event chains after the invalid message.
		step(t, tr, n, 4, events.TypeRemoved, t1.Add(time.Hour), events.Removed{}, projection.Applied)
	}
}

func TestNewerSchemaIsTooNew(t *testing.T) {
	tr := trustOf(t, "k1")
	s := step(t, tr, license.NewOrgState("acme"), 1, events.TypeUploaded, t1,
		uploadOf(sign(t, "k1", basePayload()), events.SlotCurrent), projection.Applied)
	e, err := events.New(events.TypeRemoved, "acme", t1.Add(time.Hour), actor, 1, events.Removed{LicenseID: idA})
	if err != nil {
		t.Fatal(err)
	}
	e.Schema = events.Schema + 1
	raw, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	m := events.Decode(events.OrgSubject("acme"), 2, raw)
	if m.Envelope == nil {
		t.Fatalf("schema 2 envelope: %v", m.Err)
	}
	n, out, err := projection.Apply(tr, s, m)
	if out != projection.TooNew || err == nil {
		t.Fatalf("schema 2: %v %v", out, err)
	}
	if n.Seq != 2 || slotID(n.Current) != idA {
		t.Fatalf("schema 2 changed the state: seq %d current %q", n.Seq, slotID(n.Current))
	}
}

func TestEnforcementChanged(t *testing.T) {
	tr := trustOf(t, "k1")
	s := license.NewOrgState(license.InstanceOrg)
	for i, mode := range []string{license.EnforceOff, license.EnforceOn, license.EnforceAuto, license.EnforceOff} {
		s = step(t, tr, s, uint64(i+1), events.TypeEnforcementChanged, t1, events.EnforcementChanged{Mode: mode}, projection.Applied)
		if s.Enforcement != mode || s.EnforcementMode() != mode {
			t.Fatalf("mode %q: state %q", mode, s.Enforcement)
		}
	}
	for i, data := range []any{
		events.EnforcementChanged{Mode: "maybe"},
		events.EnforcementChanged{Mode: ""},
		events.EnforcementChanged{Mode: "ON"},
		map[string]any{"mode": 1},
	} {
		seq := uint64(10 + i)
		n := step(t, tr, s, seq, events.TypeEnforcementChanged, t1, data, projection.Invalid)
		if n.Enforcement != license.EnforceOff || !n.UpdatedAt.Equal(s.UpdatedAt) {
			t.Fatalf("%v: enforcement %q", data, n.Enforcement)
		}
		s = n
	}
	r := license.ReportOf("acme", nil, s, t1)
	if str(r.Enforcement) != "off" {
		t.Fatalf("report enforcement %q", str(r.Enforcement))
	}
}

func TestUploadWithBadDataIsInvalid(t *testing.T) {
	tr := trustOf(t, "k1")
	a := sign(t, "k1", basePayload())
	s := step(t, tr, license.NewOrgState("acme"), 1, events.TypeUploaded, t1, uploadOf(a, events.SlotCurrent), projection.Applied)
	c := sign(t, "k1", mod(basePayload(), "license_id", idC))
	badSlot := func(slot string) events.Uploaded { u := uploadOf(c, events.SlotCurrent); u.Slot = slot; return u }
	cases := map[string]any{
		"slot next":           badSlot("next"),
		"empty slot":          badSlot(""),
		"slot in capitals":    badSlot("CURRENT"),
		"slot not a string":   map[string]any{"license_id": idC, "fingerprint": c.Fingerprint, "key": c.Key, "slot": 1},
		"key not a string":    map[string]any{"license_id": idC, "fingerprint": c.Fingerprint, "key": 5, "slot": "current"},
		"grace not a number":  map[string]any{"license_id": idC, "fingerprint": c.Fingerprint, "key": c.Key, "slot": "current", "grace_days_effective": "14"},
		"replaces not string": map[string]any{"license_id": idC, "fingerprint": c.Fingerprint, "key": c.Key, "slot": "current", "replaces": 7},
	}
	seq := uint64(1)
	for name, data := range cases {
		seq++
		n := step(t, tr, s, seq, events.TypeUploaded, t1.Add(time.Hour), data, projection.Invalid)
		if slotID(n.Current) != idA || n.Current != s.Current || n.Pending != nil || !n.UpdatedAt.Equal(s.UpdatedAt) {
			t.Fatalf("%s changed the slots: %q %q", name, slotID(n.Current), slotID(n.Pending))
		}
		s = n
	}
	// The same for the other data-carrying types.
	n := step(t, tr, s, seq+1, events.TypeInvalidated, t1, map[string]any{"license_id": 1}, projection.Invalid)
	if n.Revoked.Len() != 0 {
		t.Fatalf("bad invalidation revoked %v", n.Revoked.Map())
	}
}

// forged is an upload whose stored key must not be trusted.
type forged struct {
	name   string
	data   events.Uploaded
	reason license.Reason
}

func forgedUploads(t *testing.T) []forged {
	good := sign(t, "k1", basePayload())
	withData := func(l *license.License, f func(*events.Uploaded)) events.Uploaded {
		u := uploadOf(l, events.SlotCurrent)
		if f != nil {
			f(&u)
		}
		return u
	}
	rawKey := func(key string) events.Uploaded {
		return events.Uploaded{LicenseID: idA, Fingerprint: license.Fingerprint(key), Key: key, Slot: events.SlotCurrent,
			GraceDaysEffective: 14, Source: events.SourceAPI}
	}
	// The payload of another license under good's signature.
	parts := strings.Split(good.Key, ".")
	richer := sign(t, "k1", mod(basePayload(), "users_limit", 100000))
	tampered := "hfl1.k1." + strings.Split(richer.Key, ".")[2] + "." + parts[3]
	return []forged{
		{"signed by a key not in the ring", withData(sign(t, "k9", basePayload()), nil), license.ReasonUnknownKey},
		{"signed by the wrong key under a trusted kid", withData(signAs(t, "k3", "k1", basePayload()), nil), license.ReasonSignatureInvalid},
		{"signature moved to another trusted kid", rawKey("hfl1.k2." + parts[2] + "." + parts[3]), license.ReasonSignatureInvalid},
		{"payload swapped under a signature", rawKey(tampered), license.ReasonSignatureInvalid},
		{"fingerprint not the key's", withData(good, func(u *events.Uploaded) { u.Fingerprint = richer.Fingerprint }), license.ReasonMalformed},
		{"empty fingerprint", withData(good, func(u *events.Uploaded) { u.Fingerprint = "" }), license.ReasonMalformed},
		{"license_id not the key's", withData(good, func(u *events.Uploaded) { u.LicenseID = idC }), license.ReasonMalformed},
		{"license_id in capitals", withData(good, func(u *events.Uploaded) { u.LicenseID = strings.ToUpper(idA) }), license.ReasonMalformed},
		{"grace not the payload's", withData(good, func(u *events.Uploaded) { u.GraceDaysEffective = 3650 }), license.ReasonMalformed},
		{"grace longer than the payload's", withData(good, func(u *events.Uploaded) { u.GraceDaysEffective = 15 }), license.ReasonMalformed},
		{"grace beyond any ledger's", withData(sign(t, "k1", mod(basePayload(), "grace_days", nil)), func(u *events.Uploaded) { u.GraceDaysEffective = 366 }), license.ReasonMalformed},
		{"negative grace", withData(sign(t, "k1", mod(basePayload(), "grace_days", nil)), func(u *events.Uploaded) { u.GraceDaysEffective = -1 }), license.ReasonMalformed},
		{"a license for another org", withData(sign(t, "k1", mod(basePayload(), "org_slug", "globex")), nil), license.ReasonOrgMismatch},
		{"an instance-wide license", withData(sign(t, "k1", mod(basePayload(), "org_slug", "*")), nil), license.ReasonOrgMismatch},
		{"bound to another install", withData(sign(t, "k1", mod(basePayload(), "install_id", otherID)), nil), license.ReasonInstallMismatch},
		{"not a key", rawKey("hello"), license.ReasonMalformed},
		{"empty key", rawKey(""), license.ReasonMalformed},
		{"a trusted signature over a bad payload", rawKey(signRaw("k1", []byte(`{"license_id":"`+idA+`","org_slug":"acme"}`))), license.ReasonMalformed},
	}
}

func TestForgedUploadsAreNeverValid(t *testing.T) {
	tr := trustOf(t, "k1", "k2")
	inst := instanceState(t, tr)
	for _, f := range forgedUploads(t) {
		t.Run(f.name, func(t *testing.T) {
			s := step(t, tr, license.NewOrgState("acme"), 1, events.TypeUploaded, t1, f.data, projection.Applied)
			if reasonOf(s.Current) != f.reason {
				t.Fatalf("slot reason %q (%v), want %q", reasonOf(s.Current), s.Current.Held.Err, f.reason)
			}
			if s.Current.License == nil {
				t.Fatal("slot without a license")
			}
			for _, at := range []time.Time{t1, t1.Add(time.Hour), expires.Add(-time.Second), expires.Add(time.Hour), expires.Add(30 * 24 * time.Hour)} {
				for _, instance := range []*license.OrgState{nil, inst} {
					r := license.ReportOf("acme", s, instance, at)
					if r.Status != license.StatusInvalid || reasonStr(r.Reason) != string(f.reason) || str(r.ResolvedFrom) != "org" {
						t.Fatalf("at %v (instance %v): %s %s from %s, want invalid %s from org",
							at, instance != nil, r.Status, reasonStr(r.Reason), str(r.ResolvedFrom), f.reason)
					}
				}
			}
			// Forged into the pending slot, it is invalid once in force.
			p := f.data
			p.Slot = events.SlotPending
			s2 := step(t, tr, s, 2, events.TypeUploaded, t1, p, projection.Applied)
			if reasonOf(s2.Pending) != f.reason {
				t.Fatalf("pending slot reason %q, want %q", reasonOf(s2.Pending), f.reason)
			}
			if r := license.ReportOf("acme", s2, inst, nb.Add(time.Hour)); r.Status == license.StatusValid {
				t.Fatalf("forged pending license in force is valid")
			}
		})
	}
}

// The grace recorded by the uploading ledger is honoured when the payload
// sets none, within the range every ledger accepts.
func TestRecordedGraceIsHonouredWhenThePayloadHasNone(t *testing.T) {
	tr := trustOf(t, "k1")
	l := sign(t, "k1", mod(basePayload(), "grace_days", nil))
	for _, g := range []int{0, 7, 30, license.MaxGraceDays} {
		u := uploadOf(l, events.SlotCurrent)
		u.GraceDaysEffective = g
		s := step(t, tr, license.NewOrgState("acme"), 1, events.TypeUploaded, t1, u, projection.Applied)
		if s.Current.Held.Err != nil || s.Current.GraceDays != g {
			t.Fatalf("grace %d: %v, %d", g, s.Current.Held.Err, s.Current.GraceDays)
		}
		r := license.ReportOf("acme", s, nil, expires)
		want := license.StatusGrace
		if g == 0 {
			want = license.StatusExpired
		}
		if r.Status != want || str(r.GraceEnds) != expires.Add(time.Duration(g)*24*time.Hour).Format(time.RFC3339) {
			t.Fatalf("grace %d at expires: %s, grace ends %s", g, r.Status, str(r.GraceEnds))
		}
	}
	// A payload grace of 0 recorded as 0 is honoured too.
	z := sign(t, "k1", mod(basePayload(), "grace_days", 0))
	s := step(t, tr, license.NewOrgState("acme"), 1, events.TypeUploaded, t1, uploadOf(z, events.SlotCurrent), projection.Applied)
	if s.Current.Held.Err != nil || s.Current.GraceDays != 0 {
		t.Fatalf("payload grace 0: %v", s.Current.Held.Err)
	}
}

func TestInstallIDIsCheckedOnceKnown(t *testing.T) {
	bound := sign(t, "k1", mod(basePayload(), "install_id", installID))
	other := sign(t, "k1", mod(basePayload(), "install_id", otherID))
	unknown := projection.Trust{Ring: testRing(t, "k1")}
	for _, l := range []*license.License{bound, other} {
		s := step(t, unknown, license.NewOrgState("acme"), 1, events.TypeUploaded, t1, uploadOf(l, events.SlotCurrent), projection.Applied)
		if s.Current.Held.Err != nil {
			t.Fatalf("install id unknown: %v", s.Current.Held.Err)
		}
	}
	known := trustOf(t, "k1")
	s := step(t, known, license.NewOrgState("acme"), 1, events.TypeUploaded, t1, uploadOf(bound, events.SlotCurrent), projection.Applied)
	if s.Current.Held.Err != nil {
		t.Fatalf("bound to this install: %v", s.Current.Held.Err)
	}
	s = step(t, unknown, license.NewOrgState("acme"), 1, events.TypeUploaded, t1, uploadOf(other, events.SlotCurrent), projection.Applied)
	if r := projection.Reverify(known, s); reasonOf(r.Current) != license.ReasonInstallMismatch {
		t.Fatalf("reverified once the install id is known: %q", reasonOf(r.Current))
	}
}

func TestReverifyFollowsTheRing(t *testing.T) {
	only1 := trustOf(t, "k1")
	both := trustOf(t, "k1", "k2")
	cur := sign(t, "k2", basePayload())
	pend := sign(t, "k2", pendingPayload())

	s := step(t, only1, license.NewOrgState("acme"), 1, events.TypeUploaded, t1, uploadOf(cur, events.SlotCurrent), projection.Applied)
	s = step(t, only1, s, 2, events.TypeUploaded, t1, uploadOf(pend, events.SlotPending), projection.Applied)
	s = step(t, only1, s, 3, events.TypeInvalidated, t1, events.Invalidated{LicenseID: idC}, projection.Applied)
	if reasonOf(s.Current) != license.ReasonUnknownKey || reasonOf(s.Pending) != license.ReasonUnknownKey {
		t.Fatalf("before the key is trusted: %q %q", reasonOf(s.Current), reasonOf(s.Pending))
	}
	if r := license.ReportOf("acme", s, nil, t1); r.Status != license.StatusInvalid || reasonStr(r.Reason) != "unknown_key" {
		t.Fatalf("report before: %s %s", r.Status, reasonStr(r.Reason))
	}

	trusted := projection.Reverify(both, s)
	if reasonOf(trusted.Current) != "" || reasonOf(trusted.Pending) != "" {
		t.Fatalf("after trusting k2: %q %q", reasonOf(trusted.Current), reasonOf(trusted.Pending))
	}
	if trusted.Seq != 3 || !trusted.IsRevoked(idC) || trusted.Current.Seq != 1 || trusted.Pending.Seq != 2 ||
		trusted.Current.Key != s.Current.Key || trusted.Current.Fingerprint != s.Current.Fingerprint ||
		trusted.Current.LicenseID != s.Current.LicenseID || trusted.Current.GraceDays != s.Current.GraceDays {
		t.Fatalf("reverify changed more than verification: %+v", trusted)
	}
	if r := license.ReportOf("acme", trusted, nil, t1); r.Status != license.StatusValid || r.Reason != nil {
		t.Fatalf("report after: %s %s", r.Status, reasonStr(r.Reason))
	}
	if reasonOf(s.Current) != license.ReasonUnknownKey || reasonOf(s.Pending) != license.ReasonUnknownKey {
		t.Fatal("reverify changed the previous state")
	}

	untrusted := projection.Reverify(only1, trusted)
	if reasonOf(untrusted.Current) != license.ReasonUnknownKey || reasonOf(untrusted.Pending) != license.ReasonUnknownKey {
		t.Fatalf("after dropping k2: %q %q", reasonOf(untrusted.Current), reasonOf(untrusted.Pending))
	}
	if reasonOf(trusted.Current) != "" {
		t.Fatal("reverify changed the previous state")
	}
	// A state with no slots has nothing to verify.
	if r := projection.Reverify(both, license.NewOrgState("acme")); r.Current != nil || r.Pending != nil {
		t.Fatal("reverify of an empty state")
	}
}

// instanceState holds a valid instance-wide license.
func instanceState(t testing.TB, tr projection.Trust) *license.OrgState {
	t.Helper()
	l := sign(t, "k1", mod(basePayload(), "license_id", idInstance, "org_slug", "*", "customer", "Hosting Co",
		"tier", "professional", "expires", "2028-06-01T00:00:00Z", "grace_days", 7))
	s := license.NewOrgState(license.InstanceOrg)
	n, out, err := projection.Apply(tr, s, message(t, license.InstanceOrg, 1, 0, events.TypeUploaded, t1, uploadOf(l, events.SlotCurrent)))
	if out != projection.Applied || err != nil || n.Current.Held.Err != nil {
		t.Fatalf("instance license: %v %v %v", out, err, n.Current.Held.Err)
	}
	return n
}

// States folds each message into its own org; other subjects and invalid
// org names change nothing, and Rows gives each org's row.
func TestStatesFoldsByOrg(t *testing.T) {
	tr := trustOf(t, "k1")
	s := projection.States{}
	up := message(t, "acme", 1, 0, events.TypeUploaded, t1, uploadOf(sign(t, "k1", basePayload()), events.SlotCurrent))
	if o, err := s.Apply(tr, up); o != projection.Applied || err != nil {
		t.Fatalf("upload: %v %v", o, err)
	}
	inv := message(t, "globex", 2, 0, events.TypeInvalidated, t1, events.Invalidated{LicenseID: idC})
	if o, err := s.Apply(tr, inv); o != projection.Applied || err != nil {
		t.Fatalf("invalidation: %v %v", o, err)
	}
	instance := events.Decode(events.AuditSubject("_instance"), 3, up.Raw)
	bad := events.Decode(events.OrgSubject("Not_A_Slug"), 4, up.Raw)
	for _, m := range []*events.Message{instance, bad} {
		if o, err := s.Apply(tr, m); o != projection.Ignored || err != nil {
			t.Fatalf("%s: %v %v, want ignored", m.Subject, o, err)
		}
	}
	if o, _ := s.Apply(tr, up); o != projection.Stale {
		t.Fatalf("the upload again: %v, want stale", o)
	}
	rows := s.Rows()
	if len(rows) != 2 || str(rows["acme"].LicenseID) != idA || rows["acme"].LastSeq != 1 ||
		rows["globex"].LicenseID != nil || rows["globex"].LastSeq != 2 {
		t.Fatalf("rows: %+v", rows)
	}
}

// Settle verifies only what a deferred fold left unverified: a slot
// already verified is kept as it is (it may hold no key text any more).
func TestSettleVerifiesOnlyTheDeferredSlots(t *testing.T) {
	tr := trustOf(t, "k1")
	deferred := tr
	deferred.Defer = true
	s := step(t, tr, license.NewOrgState("acme"), 1, events.TypeUploaded, t1,
		uploadOf(sign(t, "k1", basePayload()), events.SlotCurrent), projection.Applied)
	s = step(t, deferred, s, 2, events.TypeUploaded, t1.Add(time.Minute),
		uploadOf(sign(t, "k1", pendingPayload()), events.SlotPending), projection.Applied)
	if !s.Unverified() || s.Current.Err != nil || s.Pending.Err != license.ErrUnverified {
		t.Fatalf("before: current %v, pending %v", s.Current.Err, s.Pending.Err)
	}
	verifiedCurrent := s.Current
	n := projection.Settle(tr, s)
	if n.Unverified() || n.Pending.Err != nil || n.Pending.License == nil || n.Current != verifiedCurrent {
		t.Fatalf("after: unverified %v, pending %v, current kept %v", n.Unverified(), n.Pending.Err, n.Current == verifiedCurrent)
	}
	if !s.Unverified() {
		t.Fatal("Settle changed the state it was given")
	}
	if projection.Settle(tr, n) != n {
		t.Fatal("a settled state was copied again")
	}
}

// Uploads verified together ahead of the fold (CheckUploads) fold exactly
// as uploads verified one by one: a batch of valid keys with forged ones
// mixed in keeps every valid key valid and every forged one refused with
// the same reason and error. The batch outcome is used even by a fold that
// defers verification, and only under the ring it was made with.
func TestCheckedUploadsFoldAsVerifiedOneByOne(t *testing.T) {
	tr := trustOf(t, "k1", "k2")
	type upload struct {
		org  string
		data events.Uploaded
	}
	var ups []upload
	forged := forgedUploads(t)
	for i := range 150 {
		org := fmt.Sprintf("org-%03d", i)
		id := fmt.Sprintf("0193a5b0-7e1a-7c3d-8f00-%012x", i)
		ups = append(ups, upload{org, uploadOf(sign(t, "k1", mod(basePayload(), "org_slug", org, "license_id", id)), events.SlotCurrent)})
		if i%20 == 7 && len(forged) > 0 { // some chunks hold forged keys, some none
			ups = append(ups, upload{"acme", forged[0].data})
			forged = forged[1:]
		}
	}
	for _, f := range forged {
		ups = append(ups, upload{"acme", f.data})
	}
	msgs := make([]*events.Message, len(ups))
	for i, u := range ups {
		msgs[i] = message(t, u.org, uint64(i+1), 0, events.TypeUploaded, t1, u.data)
	}
	checked := tr
	checked.Defer = true
	checked.Checked = projection.CheckUploads(tr, msgs, 3)
	other := trustOf(t, "k1", "k2") // another ring: the batch outcome is not its own
	other.Defer, other.Checked = true, checked.Checked
	refused := 0
	for i, m := range msgs {
		want, _, _ := projection.Apply(tr, license.NewOrgState(ups[i].org), m)
		got, out, err := projection.Apply(checked, license.NewOrgState(ups[i].org), m)
		if out != projection.Applied || err != nil {
			t.Fatalf("upload %d: %v %v", i, out, err)
		}
		w, g := want.Current, got.Current
		if fmt.Sprint(g.Err) != fmt.Sprint(w.Err) || reasonOf(g) != reasonOf(w) || g.GraceDays != w.GraceDays ||
			g.Key != w.Key || (g.License == nil) != (w.License == nil) || g.Payload() == nil != (w.Payload() == nil) ||
			g.Payload() != nil && g.Payload().LicenseID != w.Payload().LicenseID {
			t.Fatalf("upload %d of %s: checked together %q (%v), one by one %q (%v)", i, ups[i].org, reasonOf(g), g.Err, reasonOf(w), w.Err)
		}
		if w.Err != nil {
			refused++
		}
		if s, _, _ := projection.Apply(other, license.NewOrgState(ups[i].org), m); s.Current.Err != license.ErrUnverified {
			t.Fatalf("upload %d: a batch checked under another ring was used: %v", i, s.Current.Err)
		}
	}
	if refused != len(forgedUploads(t)) {
		t.Fatalf("%d uploads refused, want the %d forged ones", refused, len(forgedUploads(t)))
	}
}
