package follow

import (
	"context"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/projection"
	"github.com/licenseledger/ledger/license"
)

func TestStartFromPostgres(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.scenario(t)
	dsn, pool := migrated(t)
	pr := e.runProjector(t, pool)
	pr.caughtUp(t, e)
	pr.stop() // the checkpoint is the head: the snapshot is complete
	h := e.head(t)

	c := &counting{inner: e.readerBus(t)}
	f := start(t, Config{Stream: c, DatabaseURL: dsn}, true)
	sameAsLedger(t, e, f)
	if own, _ := mustState(t, f, "acme", 0); own.Pending == nil || own.Pending.GraceDays != 11 {
		t.Fatalf("acme's pending license from its row: %+v", own.Pending)
	}
	if got := c.consumeStarts(); !slices.Equal(got, []uint64{h + 1}) {
		t.Errorf("consumers started at %v, want only the follower's at %d: nothing folded", got, h+1)
	}
	if p, s := value(t, f.m.loads.WithLabelValues("postgres", "initial")), value(t, f.m.loads.WithLabelValues("stream", "initial")); p != 1 || s != 0 {
		t.Errorf("initial loads: %v from PostgreSQL, %v from the stream; want 1 and 0", p, s)
	}
	// Answered before a load (the rows cannot hold _instance's
	// enforcement mode: it must come from the stream).
	release := make(chan struct{})
	defer close(release)
	g := start(t, Config{Stream: e.readerBus(t), DatabaseURL: dsn}, false, func(f *Follower) { f.hookBeforeLoad = func() { <-release } })
	for _, org := range scenarioOrgs {
		own, inst := mustState(t, g, org, 0)
		if mode := inst.EnforcementMode(); mode != "on" {
			t.Fatalf("%s before the load: enforcement %q, want on", org, mode)
		}
		if !reflect.DeepEqual(keylessRow(own), keylessRow(e.svc.State(org))) {
			t.Errorf("%s before the load: %+v", org, projection.RowOf(own))
		}
	}

	// Events after the snapshot still arrive.
	id, res := e.upload(t, "acme")
	own, _ := mustState(t, f, "acme", res.Seq)
	if own.Current.LicenseID != id || own.Current.Err != nil {
		t.Fatalf("acme: %s %v", own.Current.LicenseID, own.Current.Err)
	}
}

// The projector is held back (checkpoint < H) and a license is revoked
// meanwhile: a new replica's first answer for that org is the revoked
// state, whether it is answered before the initial load (one org, the
// trust rule) or after it (the snapshot with the newer events folded on).
func TestTrustRuleWithTheProjectorHeldBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	acmeID, _ := e.upload(t, "acme")
	globexID, _ := e.upload(t, "globex")
	dsn, pool := migrated(t)
	pr := e.runProjector(t, pool)
	pr.caughtUp(t, e)
	pr.stop()
	checkpoint := e.head(t)
	e.invalidate(t, "acme", acmeID)
	newcoID, _ := e.upload(t, "newco") // an org PostgreSQL has never seen
	h := e.head(t)

	revoked := func(f *Follower, when string) {
		t.Helper()
		own, inst := mustState(t, f, "acme", 0)
		if !own.IsRevoked(acmeID) || own.Current.LicenseID != acmeID {
			t.Fatalf("%s: acme's first answer is not revoked: %+v", when, own)
		}
		if r := report("acme", own, inst, time.Now()); r.Status != license.StatusInvalid || *r.Reason != license.ReasonRevoked {
			t.Fatalf("%s: acme is %s", when, r.Status)
		}
	}

	// Before the initial load: per-org loads. Every state a replica
	// installs for an org is at least as new as the one before.
	release := make(chan struct{})
	c := &counting{inner: e.readerBus(t)}
	var mu sync.Mutex
	seen := map[string]uint64{}
	// The stream's tail folds on every core, on top of the rows.
	f := start(t, Config{Stream: countingRaw{c}, DatabaseURL: dsn}, false, func(f *Follower) {
		f.hookBeforeLoad = func() { <-release }
		f.hookChanged = func(org string) {
			mu.Lock()
			defer mu.Unlock()
			if s := seqOf(f.cached(org)); s < seen[org] {
				t.Errorf("%s went back from %d to %d", org, seen[org], s)
			} else {
				seen[org] = s
			}
		}
	})
	if f.Ready() {
		t.Fatal("ready before the load")
	}
	revoked(f, "before the load")
	own, _ := mustState(t, f, "globex", 0) // its row is at its subject head: trusted
	if own.Current.LicenseID != globexID || own.IsRevoked(globexID) {
		t.Fatalf("globex: %+v", own)
	}
	own, _ = mustState(t, f, "newco", 0)
	if own.Current.LicenseID != newcoID {
		t.Fatalf("newco: %+v", own)
	}
	if p, s := value(t, f.m.loads.WithLabelValues("postgres", "org")), value(t, f.m.loads.WithLabelValues("stream", "org")); p != 1 || s != 3 {
		t.Errorf("per-org loads: %v from PostgreSQL (globex), %v from the stream (acme, newco, _instance); want 1 and 3", p, s)
	}
	// globex moves past H and is answered at its new head: the initial
	// load (at H) must not take it back.
	globex2, g2 := e.upload(t, "globex")
	if own, _ := mustState(t, f, "globex", 0); own.Seq != g2.Seq || own.Current.LicenseID != globex2 {
		t.Fatalf("globex before the load: %+v", own)
	}
	// Appended while the load is held: buffered by the consumer, applied
	// after the load, before the follower is ready.
	hooliID, hooli := e.upload(t, "hooli")
	time.Sleep(20 * time.Millisecond)
	if f.cached("hooli") != nil {
		t.Fatal("an event was applied before the initial load")
	}
	close(release)
	if err := f.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := f.cached("hooli"); st == nil || st.Seq != hooli.Seq || st.Current.LicenseID != hooliID {
		t.Fatalf("the event buffered during the load is missing once ready: %+v", st)
	}
	revoked(f, "after the load")
	if got := c.consumeStarts(); !slices.Contains(got, checkpoint+1) || !slices.Contains(got, h+1) || slices.Contains(got, 1) {
		t.Errorf("consumers started at %v: want %d (the snapshot's tail) and %d (follow), not 1", got, checkpoint+1, h+1)
	}

	// A replica loading normally, and one without PostgreSQL, agree.
	for _, g := range []*Follower{start(t, Config{Stream: e.readerBus(t), DatabaseURL: dsn}, true), start(t, Config{Stream: e.readerBus(t)}, true)} {
		revoked(g, "loaded")
		for _, org := range []string{"acme", "globex", "newco", "hooli", license.InstanceOrg} {
			a, _ := mustState(t, f, org, 0)
			b, _ := mustState(t, g, org, 0)
			if ra, rb := keylessRow(a), keylessRow(b); !reflect.DeepEqual(ra, rb) {
				t.Errorf("%s: replicas disagree:\n%+v\n%+v", org, ra, rb)
			}
		}
	}
}

// A row that is behind its subject's head is never used, even when it is
// the only row: a new replica answering before its load folds the subject.
func TestRowBehindTheSubjectIsNotTrusted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id, _ := e.upload(t, "acme")
	dsn, pool := migrated(t)
	pr := e.runProjector(t, pool)
	pr.caughtUp(t, e)
	pr.stop()
	// Trusted while at the head.
	release := make(chan struct{})
	f := start(t, Config{Stream: e.readerBus(t), DatabaseURL: dsn}, false, func(f *Follower) { f.hookBeforeLoad = func() { <-release } })
	defer close(release)
	own, _ := mustState(t, f, "acme", 0)
	if own.Current.LicenseID != id || value(t, f.m.loads.WithLabelValues("postgres", "org")) != 1 {
		t.Fatalf("acme not taken from its row: %+v", own.Current)
	}
	// One more event: the row is behind, so the subject is folded.
	e.upload(t, "acme")
	g := start(t, Config{Stream: e.readerBus(t), DatabaseURL: dsn}, false, func(f *Follower) { f.hookBeforeLoad = func() { <-release } })
	own, _ = mustState(t, g, "acme", 0)
	if value(t, g.m.loads.WithLabelValues("postgres", "org")) != 0 || value(t, g.m.loads.WithLabelValues("stream", "org")) != 2 {
		t.Fatalf("acme loaded from its stale row")
	}
	if own.Seq != e.svc.State("acme").Seq {
		t.Fatalf("acme at %d, want %d", own.Seq, e.svc.State("acme").Seq)
	}
}
