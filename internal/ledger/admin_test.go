package ledger_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/ledger"
	"github.com/licenseledger/ledger/license"
)

// subjectTypes lists the event types on subject, in order.
func subjectTypes(t *testing.T, f *fixture, subject string) []*events.Message {
	t.Helper()
	ctx := context.Background()
	head, err := f.store.Head(ctx, subject)
	if err != nil {
		t.Fatal(err)
	}
	var out []*events.Message
	f.store.ReadSubject(ctx, subject, 0, head, func(m *events.Message) error {
		out = append(out, m)
		return nil
	})
	return out
}

func types(ms []*events.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Type())
	}
	return out
}

func newLedger(t *testing.T) (*fixture, *ledger.Service) {
	f := newFixture()
	return f, f.service(t)
}

func upload(t *testing.T, svc *ledger.Service, org, key string) (ledger.Result, error) {
	t.Helper()
	return svc.Upload(context.Background(), ledger.Upload{Org: org, Body: []byte(key), Actor: operator, Source: events.SourceAPI})
}

func codeOf(err error) string { return ledger.CodeOf(err) }

func TestRevokeAndRemove(t *testing.T) {
	f, svc := newLedger(t)
	ctx := context.Background()
	key := sign(t, "k1", nil)
	if _, err := upload(t, svc, "acme", key); err != nil {
		t.Fatal(err)
	}
	res, err := svc.Invalidate(ctx, "acme", operator, "0193A5B0-7E1A-7C3D-8F00-1234567890AB", "chargeback")
	if err != nil || !res.Appended || res.Report.Status != license.StatusInvalid || *res.Report.Reason != license.ReasonRevoked {
		t.Fatalf("invalidate: %v %+v", err, res.Report)
	}
	// Re-revoking: success, no event.
	again, err := svc.Invalidate(ctx, "acme", operator, "0193a5b0-7e1a-7c3d-8f00-1234567890ab", "again")
	if err != nil || again.Appended {
		t.Fatalf("re-revoke: %v appended=%v", err, again.Appended)
	}
	// The same license can never be uploaded again.
	if _, err := upload(t, svc, "acme", key); codeOf(err) != ledger.CodeRevoked {
		t.Fatalf("re-upload of a revoked license: %v", err)
	}
	// Pre-emptive revocation of an id never held appends the event.
	pre, err := svc.Invalidate(ctx, "globex", operator, "0193a5b0-7e1a-7c3d-8f00-00000000beef", "")
	if err != nil || !pre.Appended {
		t.Fatalf("pre-emptive: %v %v", err, pre.Appended)
	}
	if _, err := svc.Invalidate(ctx, "acme", operator, "not-a-uuid", ""); codeOf(err) != ledger.CodeBadRequest {
		t.Fatalf("bad id: %v", err)
	}
	// Remove: event, then idempotent.
	rm, err := svc.Remove(ctx, "acme", operator)
	if err != nil || !rm.Appended || rm.Report.Status != license.StatusMissing {
		t.Fatalf("remove: %v %+v", err, rm.Report)
	}
	if rm2, err := svc.Remove(ctx, "acme", operator); err != nil || rm2.Appended {
		t.Fatalf("second remove: %v %v", err, rm2.Appended)
	}
	got := types(subjectTypes(t, f, events.OrgSubject("acme")))
	want := []string{events.TypeUploaded, events.TypeInvalidated, events.TypeRemoved}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("acme subject %v, want %v", got, want)
	}
}

func TestEnforcementAutoLatches(t *testing.T) {
	f, svc := newLedger(t)
	ctx := context.Background()
	if r, _ := svc.Status(ctx, "acme"); *r.Enforcement != "auto" {
		t.Fatalf("fresh install: %s", *r.Enforcement)
	}
	res, err := upload(t, svc, "acme", sign(t, "k1", nil))
	if err != nil || *res.Report.Enforcement != "on" {
		t.Fatalf("first license must latch auto to on: %v %v", err, res.Report.Enforcement)
	}
	inst := subjectTypes(t, f, events.OrgSubject(license.InstanceOrg))
	if len(inst) != 1 || inst[0].Type() != events.TypeEnforcementChanged || inst[0].Envelope.Actor.Kind != events.ActorSystem {
		t.Fatalf("_instance subject: %v", types(inst))
	}
	// Removing licenses never turns it back off.
	svc.Remove(ctx, "acme", operator)
	if r, _ := svc.Status(ctx, "acme"); *r.Enforcement != "on" {
		t.Fatalf("after removal: %s", *r.Enforcement)
	}
	// Only an explicit off does; setting it again is a no-op.
	if mode, err := svc.SetEnforcement(ctx, operator, "off"); err != nil || mode != "off" {
		t.Fatalf("off: %v %s", err, mode)
	}
	if _, err := svc.SetEnforcement(ctx, operator, "off"); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.SetEnforcement(ctx, operator, "sideways"); codeOf(err) != ledger.CodeBadRequest {
		t.Fatalf("bad mode: %v", err)
	}
	// auto with no license in force stays auto.
	if mode, _ := svc.SetEnforcement(ctx, operator, "auto"); mode != "auto" {
		t.Fatalf("auto without a license: %s", mode)
	}
	modes := []string{}
	for _, m := range subjectTypes(t, f, events.OrgSubject(license.InstanceOrg)) {
		var d events.EnforcementChanged
		m.Envelope.DecodeData(&d)
		modes = append(modes, d.Mode+"/"+m.Envelope.Actor.Kind)
	}
	if len(modes) != 3 || modes[0] != "on/system" || modes[1] != "off/operator" || modes[2] != "auto/operator" {
		t.Fatalf("enforcement events %v", modes)
	}
}

// Two replicas append each grace_started/expired exactly once, in order,
// with deterministic ids and the due time.
func TestSchedulerOnceAcrossReplicas(t *testing.T) { onEachStore(t, testSchedulerOnceAcrossReplicas) }

func testSchedulerOnceAcrossReplicas(t *testing.T, f *fixture) {
	a, b := f.service(t), f.service(t)
	expires := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	key := sign(t, "k1", func(p map[string]any) {
		p["expires"] = expires.Format(time.RFC3339)
		p["grace_days"] = 0
	})
	if _, err := upload(t, a, "acme", key); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	before := len(subjectTypes(t, f, events.OrgSubject("acme")))
	for _, s := range []*ledger.Service{a, b} {
		s.ScheduleDue(ctx) // nothing due yet but the notice a day ahead (notice_test.go)
	}
	if got := types(subjectTypes(t, f, events.OrgSubject("acme"))[before:]); len(got) != 1 || got[0] != events.TypeExpiring {
		t.Fatalf("events appended before they were due: %v", got)
	}
	before++
	// Downtime: the clock is now a day past expiry.
	late := expires.Add(24 * time.Hour)
	f.clock.Store(&late)
	var wg sync.WaitGroup
	for range 4 {
		for _, s := range []*ledger.Service{a, b} {
			wg.Add(1)
			go func() { defer wg.Done(); s.ScheduleDue(ctx) }()
		}
	}
	wg.Wait()
	ms := subjectTypes(t, f, events.OrgSubject("acme"))[before:]
	if got := types(ms); len(got) != 2 || got[0] != events.TypeGraceStarted || got[1] != events.TypeExpired {
		t.Fatalf("due events %v", got)
	}
	for _, m := range ms {
		var d events.Due
		m.Envelope.DecodeData(&d)
		if m.Envelope.ID != ledger.DueEventID(d.LicenseID, m.Type()) || !d.DueAt.Equal(expires) || m.Envelope.Actor.Kind != events.ActorSystem {
			t.Fatalf("%s: id %s due %v", m.Type(), m.Envelope.ID, d.DueAt)
		}
	}
	if r, _ := b.Status(ctx, "acme"); r.Status != license.StatusExpired {
		t.Fatalf("status %s", r.Status)
	}
}

func TestInstallImport(t *testing.T) {
	f, svc := newLedger(t)
	ctx := context.Background()
	dir := t.TempDir()
	inst := func(mod func(map[string]any)) string {
		return sign(t, "k1", func(p map[string]any) {
			p["org_slug"] = "*"
			if mod != nil {
				mod(p)
			}
		})
	}
	file := filepath.Join(dir, "license.key")
	os.WriteFile(file, []byte(inst(nil)+"\n"), 0o600)
	src := ledger.InstallSource{DataDir: dir}
	for range 3 { // restarts never append twice
		if err := svc.ImportInstallLicense(ctx, src); err != nil {
			t.Fatal(err)
		}
	}
	uploads := func() []*events.Message {
		var out []*events.Message
		for _, m := range subjectTypes(t, f, events.OrgSubject(license.InstanceOrg)) {
			if m.Type() == events.TypeUploaded {
				out = append(out, m)
			}
		}
		return out
	}
	if u := uploads(); len(u) != 1 || u[0].Envelope.Actor.Kind != events.ActorInstall {
		t.Fatalf("imports: %d", len(u))
	}
	var d events.Uploaded
	uploads()[0].Envelope.DecodeData(&d)
	if d.Source != events.SourceInstall {
		t.Fatalf("source %s", d.Source)
	}
	// Removed by an operator: the same file is not imported again.
	svc.Remove(ctx, license.InstanceOrg, operator)
	svc.ImportInstallLicense(ctx, src)
	if len(uploads()) != 1 {
		t.Fatal("a removed install license came back from the file")
	}
	// A newer license in the file is imported at the next start.
	os.WriteFile(file, []byte(inst(func(p map[string]any) {
		p["license_id"] = "0193a5b0-7e1a-7c3d-8f00-0000000000f2"
		p["issued_at"] = "2026-11-20T00:00:00Z"
	})), 0o600)
	svc.ImportInstallLicense(ctx, src)
	if len(uploads()) != 2 {
		t.Fatal("the renewed file was not imported")
	}
	// A bad file appends nothing at all, not even a rejection.
	auditBefore := len(subjectTypes(t, f, events.AuditSubject(license.InstanceOrg)))
	os.WriteFile(file, []byte(sign(t, "k1", nil)), 0o600) // an acme license: org mismatch
	if err := svc.ImportInstallLicense(ctx, src); err != nil {
		t.Fatal(err)
	}
	if len(uploads()) != 2 || len(subjectTypes(t, f, events.AuditSubject(license.InstanceOrg))) != auditBefore {
		t.Fatal("a bad install file appended something")
	}
	// LICENSE_FILE and LICENSE_KEY together are an error; so are both default files.
	if err := svc.ImportInstallLicense(ctx, ledger.InstallSource{File: file, Key: "x"}); err == nil {
		t.Fatal("LICENSE_FILE and LICENSE_KEY both set")
	}
	os.WriteFile(filepath.Join(dir, "license.json"), []byte("{}"), 0o600)
	if err := svc.ImportInstallLicense(ctx, src); err == nil {
		t.Fatal("license.json and license.key both present")
	}
}

func TestClockRollback(t *testing.T) {
	f, svc := newLedger(t)
	if _, err := upload(t, svc, "acme", sign(t, "k1", nil)); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-10 * time.Minute)
	f.clock.Store(&past)
	s2 := ledger.New(ledger.Config{Store: f.store, Keys: keysFor(t), Now: f.now})
	err := s2.Start(context.Background(), events.LedgerStarted{})
	if !errors.Is(err, ledger.ErrClockRollback) {
		t.Fatalf("10 minutes behind: %v", err)
	}
	if err := s2.Start(context.Background(), events.LedgerStarted{IgnoredRollback: true}); err != nil {
		t.Fatal(err)
	}
	ms := subjectTypes(t, f, events.AuditSubject(license.InstanceOrg))
	var d events.LedgerStarted
	ms[len(ms)-1].Envelope.DecodeData(&d)
	if !d.IgnoredRollback || d.InstallID != svc.InstallID() || d.KeyringFingerprint == "" {
		t.Fatalf("ledger.started %+v", d)
	}
	// 4 minutes behind is within the allowance.
	near := time.Now().Add(-4 * time.Minute)
	f.clock.Store(&near)
	if err := ledger.New(ledger.Config{Store: f.store, Keys: keysFor(t), Now: f.now}).Start(context.Background(), events.LedgerStarted{}); err != nil {
		t.Fatalf("4 minutes behind: %v", err)
	}
}

func TestListOrgsPages(t *testing.T) {
	_, svc := newLedger(t)
	ctx := context.Background()
	for _, org := range []string{"delta", "alpha", "charlie", "bravo"} {
		if _, err := upload(t, svc, org, sign(t, "k1", func(p map[string]any) { p["org_slug"] = org })); err != nil {
			t.Fatal(err)
		}
	}
	svc.Status(ctx, "nobody") // a read creates no org
	var seen []string
	after := ""
	for pages := 0; ; pages++ {
		p := svc.ListOrgs(after, 2)
		for _, r := range p.Orgs {
			seen = append(seen, *r.Org)
		}
		if p.NextCursor == nil {
			break
		}
		after = *p.NextCursor
		if pages > 5 {
			t.Fatal("no end")
		}
	}
	want := "_instance,alpha,bravo,charlie,delta"
	if got := strings.Join(seen, ","); got != want {
		t.Fatalf("listing %s, want %s", got, want)
	}
}
