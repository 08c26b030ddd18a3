package follow

import (
	"context"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/licenseledger/ledger/gatekeeper"
	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/testenv/licensetest"
	"github.com/licenseledger/ledger/license"
)

// A replica is ready before it has verified every license: it verifies
// them in the background, and an org asked for first is verified then.
// No decision is ever made on a key this process has not verified: a
// forged key is refused whether the background or the request verifies it.
func TestReadyBeforeVerifiedNeverDecidesUnverified(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.upload(t, "acme")
	e.upload(t, "globex")
	ctx := context.Background()
	forge := func(org, key, kid string) {
		id, p := e.payload(org)
		forged := licensetest.SignAs(t, key, kid, p)
		env, _ := events.New(events.TypeUploaded, org, time.Now(), op, 0, events.Uploaded{LicenseID: id,
			Fingerprint: forged.Fingerprint, Key: forged.Key, Slot: events.SlotCurrent, GraceDaysEffective: 7, Source: events.SourceAPI})
		raw, _ := env.Encode()
		e.publish(t, events.OrgSubject(org), raw)
	}
	forge("hooli", "k9", "k1")   // an untrusted key claiming a trusted kid
	forge("initech", "k9", "k9") // an untrusted vendor key
	if _, err := e.svc.SetEnforcement(ctx, op, "on"); err != nil {
		t.Fatal(err)
	}
	e.head(t)

	release := make(chan struct{})
	f := start(t, Config{Stream: e.readerBus(t)}, true, func(f *Follower) { f.hookVerify = func() { <-release } })
	if n := f.Health().OrgsUnverified; n != 4 {
		t.Fatalf("ready with %d orgs unverified, want 4 (acme, globex, hooli, initech)", n)
	}
	for _, org := range []string{"acme", "globex", "hooli", "initech"} {
		if _, _, ok := f.CachedState(org, 0); ok {
			t.Fatalf("%s answered from the cache before its key was verified", org)
		}
	}

	g, err := gatekeeper.New(f, gatekeeper.Config{})
	if err != nil {
		t.Fatal(err)
	}
	decide := func(org string) gatekeeper.Decision {
		r := httptest.NewRequest("GET", "/projects", nil)
		r.RemoteAddr = "127.0.0.1:40000"
		r.Header.Set("X-Org-Slug", org)
		return g.Decide(r)
	}
	if d := decide("acme"); !d.Allowed {
		t.Fatalf("acme denied: %s", d.Code)
	}
	for _, org := range []string{"hooli", "initech"} {
		if d := decide(org); d.Allowed || d.Code != "license_invalid" {
			t.Fatalf("%s (forged) decided %v %s", org, d.Allowed, d.Code)
		}
	}
	own, _, ok := f.CachedState("acme", 0)
	if !ok || own.Current.Err != nil || own.Current.Key != "" {
		t.Fatalf("acme after its request: ok %v %+v", ok, own)
	}
	if n := f.Health().OrgsUnverified; n != 1 {
		t.Fatalf("%d orgs unverified after three requests, want 1 (globex)", n)
	}

	close(release)
	eventually(t, 5*time.Second, "the background verification", func() bool { return f.UnverifiedOrgs() == 0 })
	own, _, ok = f.CachedState("globex", 0)
	if !ok || own.Current.Err != nil {
		t.Fatalf("globex after the background verification: ok %v %+v", ok, own)
	}
	if _, inst, _ := f.CachedState("initech", 0); inst == nil {
		t.Fatal("initech has no cached state")
	}
	if own, _ := mustState(t, f, "initech", 0); license.ReasonOf(own.Current.Err) != license.ReasonUnknownKey {
		t.Fatalf("initech: %v", own.Current.Err)
	}
	if r, b := value(t, f.m.verifications.WithLabelValues("request")), value(t, f.m.verifications.WithLabelValues("background")); r != 3 || b != 1 {
		t.Errorf("verified %v at a request and %v in the background, want 3 and 1", r, b)
	}
}

// The background verification refuses a forged key as surely as a
// request does, and leaves every org verified and compact.
func TestDeferredKeysVerifiedInTheBackground(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	orgs := []string{"acme", "globex", "initech", "umbrella"}
	for _, org := range orgs {
		e.upload(t, org)
	}
	id, p := e.payload("hooli")
	forged := licensetest.SignAs(t, "k9", "k1", p)
	env, _ := events.New(events.TypeUploaded, "hooli", time.Now(), op, 0, events.Uploaded{LicenseID: id,
		Fingerprint: forged.Fingerprint, Key: forged.Key, Slot: events.SlotCurrent, GraceDaysEffective: 7, Source: events.SourceAPI})
	raw, _ := env.Encode()
	e.publish(t, events.OrgSubject("hooli"), raw)
	e.head(t)

	f := start(t, Config{Stream: e.readerBus(t)}, true)
	eventually(t, 5*time.Second, "every key verified", func() bool { return f.UnverifiedOrgs() == 0 })
	for _, org := range orgs {
		own, _, ok := f.CachedState(org, 0)
		if !ok || own.Current == nil || own.Current.Err != nil || own.Current.Key != "" {
			t.Fatalf("%s: ok %v %+v", org, ok, own)
		}
	}
	if own, _ := mustState(t, f, "hooli", 0); license.ReasonOf(own.Current.Err) != license.ReasonSignatureInvalid || own.Current.Key != "" {
		t.Fatalf("hooli (forged): %v", own.Current.Err)
	}
	if got := value(t, f.m.verifications.WithLabelValues("background")); got != 5 {
		t.Errorf("%v verified in the background, want 5", got)
	}
}

// Verifying a state replaces it: OnChange hears of it, and CachedState
// answers it from then on (a consumer that reads the state on each change
// sees it become usable).
func TestVerificationReportsTheChange(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.upload(t, "acme")
	usable := make(chan string, 16)
	release := make(chan struct{})
	var fol atomic.Pointer[Follower]
	f := start(t, Config{Stream: e.readerBus(t), OnChange: func(org string) {
		if _, _, ok := fol.Load().CachedState(org, 0); ok && org == "acme" {
			usable <- org
		}
	}}, true, func(g *Follower) { fol.Store(g); g.hookVerify = func() { <-release } })
	select {
	case <-usable:
		t.Fatal("acme was usable before its key was verified")
	case <-time.After(100 * time.Millisecond):
	}
	gen := f.Generation()
	close(release)
	select {
	case <-usable:
	case <-time.After(5 * time.Second):
		t.Fatal("OnChange never reported acme verified")
	}
	if f.Generation() == gen {
		t.Error("the generation stayed while CachedState's answer changed")
	}
}
