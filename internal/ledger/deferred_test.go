package ledger_test

import (
	"context"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/ledger"
	"github.com/licenseledger/ledger/internal/testenv/licensetest"
	"github.com/licenseledger/ledger/license"
)

// A ledger's start folds every org with verification deferred: whatever
// reads a state gets it verified (a forged key refused as surely), and
// VerifyDeferred verifies the rest on every core.
func TestDeferredVerificationNeverLeaksAnUnverifiedState(t *testing.T) {
	f := newFixture()
	ctx := context.Background()
	writer := f.service(t)
	for _, org := range []string{"acme", "globex"} {
		if _, err := upload(t, writer, org, sign(t, "k1", func(p map[string]any) { p["org_slug"] = org })); err != nil {
			t.Fatal(err)
		}
	}
	// hooli: a key signed by another private key under the trusted kid.
	_, priv9 := licensetest.Key("k9")
	forged, _ := license.Sign(priv9, "k1", licensetest.JSON(t, map[string]any{"license_id": "0193a5b0-7e1a-7c3d-8f00-1234567890ab",
		"customer": "Hooli", "org_slug": "hooli", "tier": "starter", "issued_at": "2026-11-01T00:00:00Z",
		"expires": time.Now().AddDate(1, 0, 0).UTC().Format(time.RFC3339)}))
	env, _ := events.New(events.TypeUploaded, "hooli", time.Now(), operator, 0, events.Uploaded{
		LicenseID: "0193a5b0-7e1a-7c3d-8f00-1234567890ab", Fingerprint: forged.Fingerprint, Key: forged.Key,
		Slot: events.SlotCurrent, GraceDaysEffective: 7, Source: events.SourceAPI})
	if _, err := f.store.Append(ctx, events.OrgSubject("hooli"), env, 0); err != nil {
		t.Fatal(err)
	}

	// A second ledger catches up with verification deferred.
	svc := ledger.New(ledger.Config{Store: f.store, Keys: keysFor(t), DefaultGraceDays: 7, Now: f.now, Version: "test"})
	svc.DeferVerification(true)
	for _, org := range []string{"acme", "globex", "hooli"} {
		if err := f.store.ReadSubject(ctx, events.OrgSubject(org), 0, 1<<62, func(m *events.Message) error {
			svc.Observe(m)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	svc.DeferVerification(false)
	if n := svc.UnverifiedOrgs(); n != 3 {
		t.Fatalf("%d orgs unverified after a deferred catch-up, want 3", n)
	}

	// Reads verify what they return.
	if st := svc.State("acme"); st.Current == nil || st.Current.Err != nil || st.Unverified() {
		t.Fatalf("acme read while deferred: %+v", st.Current)
	}
	if r, err := svc.Status(ctx, "hooli"); err != nil || r.Status != license.StatusInvalid || r.Reason == nil || *r.Reason != license.ReasonSignatureInvalid {
		t.Fatalf("hooli (forged): %+v %v", r, err)
	}
	// The background pass verifies what no read has: globex only.
	if n := svc.VerifyDeferred(ctx); n != 1 {
		t.Fatalf("VerifyDeferred verified %d states, want 1 (globex)", n)
	}
	if n := svc.VerifyDeferred(ctx); n != 0 {
		t.Fatalf("a second pass verified %d states", n)
	}
	if n := svc.UnverifiedOrgs(); n != 0 {
		t.Fatalf("%d orgs unverified after VerifyDeferred", n)
	}
	if st := svc.State("globex"); st.Current == nil || st.Current.Err != nil {
		t.Fatalf("globex: %+v", st.Current)
	}
}
