package follow

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/testenv/licensetest"
	"github.com/licenseledger/ledger/license"
)

var scenarioOrgs = []string{"acme", "globex", "initech", license.InstanceOrg}

// sameAsLedger checks that the follower holds the ledger's state for every
// org of the scenario: the same read-model row and status payload.
func sameAsLedger(t *testing.T, e *env, f *Follower) {
	t.Helper()
	now := time.Now()
	for _, org := range scenarioOrgs {
		own, inst := mustState(t, f, org, 0)
		want := e.svc.State(org)
		if got, w := keylessRow(own), keylessRow(want); !reflect.DeepEqual(got, w) {
			t.Errorf("%s: row\n got %+v\nwant %+v", org, got, w)
		}
		if (own.Pending == nil) != (want.Pending == nil) ||
			own.Pending != nil && (own.Pending.GraceDays != want.Pending.GraceDays || own.Pending.Err != nil) {
			t.Errorf("%s: pending %+v, want %+v", org, own.Pending, want.Pending)
		}
		got, _ := json.Marshal(report(org, own, inst, now))
		w, _ := json.Marshal(license.ReportOf(org, want, e.svc.State(license.InstanceOrg), now))
		if string(got) != string(w) {
			t.Errorf("%s: status\n got %s\nwant %s", org, got, w)
		}
	}
}

func TestStartFromTheStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.scenario(t)
	h := e.head(t)
	c := &counting{inner: e.readerBus(t)}
	f := start(t, Config{Stream: c}, true)

	sameAsLedger(t, e, f)
	if got := f.InstallID(); got == "" || got != e.svc.InstallID() {
		t.Errorf("install id %q, want %q", got, e.svc.InstallID())
	}
	if got := c.consumeStarts(); len(got) != 2 || got[0] != h+1 && got[1] != h+1 || got[0] != 1 && got[1] != 1 {
		t.Errorf("consumers started at %v, want %d (follow) and 1 (fold)", got, h+1)
	}
	if got := value(t, f.m.loads.WithLabelValues("stream", "initial")); got != 1 {
		t.Errorf("initial stream loads %v, want 1", got)
	}
	hl := f.Health()
	if !hl.Loaded || hl.Stale || hl.AppliedSeq != h || hl.OrgsCached != len(scenarioOrgs) {
		t.Errorf("health %+v: want loaded, fresh, applied %d, %d orgs", hl, h, len(scenarioOrgs))
	}
	own, inst := mustState(t, f, "acme", 0)
	if own.Current == nil || own.Current.Err != nil {
		t.Fatalf("acme: current %+v", own.Current)
	}

	// The allocation-free fast path answers cached orgs only.
	if o, i, ok := f.CachedState("acme", own.Seq); !ok || o != own || i != inst {
		t.Errorf("CachedState(acme) = %v, %v, %v", o == own, i == inst, ok)
	}
	if o, i, ok := f.CachedState(license.InstanceOrg, 0); !ok || o != inst || i != inst {
		t.Errorf("CachedState(_instance) = %v, %v, %v", o == inst, i == inst, ok)
	}
	for _, tc := range []struct {
		org    string
		minSeq uint64
	}{{"acme", own.Seq + 1}, {"unknown", 0}, {"", 0}} {
		if _, _, ok := f.CachedState(tc.org, tc.minSeq); ok {
			t.Errorf("CachedState(%q, %d) answered", tc.org, tc.minSeq)
		}
	}
}

func TestCachedOrgsCostNoAllocation(t *testing.T) {
	e := newEnv(t)
	e.upload(t, "acme")
	f := start(t, Config{Stream: e.readerBus(t)}, true)
	if n := testing.AllocsPerRun(100, func() { f.CachedState("acme", 0) }); n != 0 {
		t.Errorf("CachedState allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { f.State(context.Background(), "acme", 0) }); n != 0 {
		t.Errorf("State on a cached org allocates %v times", n)
	}
}

func TestStartOnAnEmptyStreamAdoptsTheInstallIDLater(t *testing.T) {
	t.Parallel()
	e := newEnvNotStarted(t) // the stream exists; no ledger has started on it
	f := start(t, Config{Stream: e.readerBus(t)}, true)
	if f.InstallID() != "" {
		t.Fatalf("install id %q on an empty stream", f.InstallID())
	}
	own, inst := mustState(t, f, "acme", 0)
	if own.Seq != 0 || own.Org != "acme" || inst.Org != license.InstanceOrg {
		t.Fatalf("empty install: own %+v inst %+v", own, inst)
	}
	if err := e.svc.Start(context.Background(), events.LedgerStarted{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "install id adopted", func() bool { return f.InstallID() == e.svc.InstallID() })
	id, res := e.upload(t, "acme")
	own, _ = mustState(t, f, "acme", res.Seq)
	if own.Current.LicenseID != id || own.Current.Err != nil {
		t.Fatalf("acme: %s %v", own.Current.LicenseID, own.Current.Err)
	}
}

func TestEventsAreAppliedAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.upload(t, "acme")
	f := start(t, Config{Stream: e.readerBus(t)}, true)
	_, inst0 := mustState(t, f, "acme", 0)

	var worst time.Duration
	for i := 0; i < 20; i++ {
		id, res := e.upload(t, "acme")
		d := eventually(t, 2*time.Second, "upload applied", func() bool {
			own, _, err := f.State(context.Background(), "acme", 0)
			return err == nil && own.Seq >= res.Seq
		})
		worst = max(worst, d)
		own, _ := mustState(t, f, "acme", 0)
		if own.Current.LicenseID != id || own.Current.Err != nil {
			t.Fatalf("acme holds %s (err %v), want %s", own.Current.LicenseID, own.Current.Err, id)
		}
	}
	t.Logf("slowest of 20 uploads applied %s after the ledger's response", worst)

	// An _instance event: every org resolved through it sees the new
	// pointer.
	_, res := e.upload(t, license.InstanceOrg)
	eventually(t, 2*time.Second, "instance upload applied", func() bool {
		_, inst, err := f.State(context.Background(), "newco", 0)
		return err == nil && inst.Seq >= res.Seq
	})
	own, inst := mustState(t, f, "newco", 0)
	if inst == inst0 || inst.Current == nil || own.Seq != 0 {
		t.Fatalf("newco: own %+v inst %+v", own, inst)
	}
	if r := report("newco", own, inst, time.Now()); r.Status != license.StatusValid || *r.ResolvedFrom != license.FromInstance {
		t.Fatalf("newco: %s from %s", r.Status, *r.ResolvedFrom)
	}
	if got := value(t, f.m.applyLag); got < 21 {
		t.Errorf("apply lag observed %v times, want 21", got)
	}
}

func TestForgedUploadNeverValid(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.upload(t, "acme")
	f := start(t, Config{Stream: e.readerBus(t)}, true)
	ctx := context.Background()
	for _, tc := range []struct {
		org, key, kid string
		reason        license.Reason
	}{
		{"hooli", "k9", "k1", license.ReasonSignatureInvalid}, // an untrusted key claiming a trusted kid
		{"acme", "k9", "k9", license.ReasonUnknownKey},        // an untrusted vendor key
	} {
		id, p := e.payload(tc.org)
		forged := licensetest.SignAs(t, tc.key, tc.kid, p)
		prev, err := e.readerBus(t).Head(ctx, events.OrgSubject(tc.org))
		if err != nil {
			t.Fatal(err)
		}
		env, _ := events.New(events.TypeUploaded, tc.org, time.Now(), op, prev, events.Uploaded{LicenseID: id,
			Fingerprint: forged.Fingerprint, Key: forged.Key, Slot: events.SlotCurrent, GraceDaysEffective: 7, Source: events.SourceAPI})
		raw, _ := env.Encode()
		seq := e.publish(t, events.OrgSubject(tc.org), raw)
		eventually(t, 2*time.Second, "forged event applied", func() bool { return seqOf(f.cached(tc.org)) >= seq })
		own, inst := mustState(t, f, tc.org, seq)
		if own.Current == nil || own.Current.LicenseID != id {
			t.Fatalf("%s: the forged upload was not folded: %+v", tc.org, own.Current)
		}
		if license.ReasonOf(own.Current.Err) != tc.reason {
			t.Errorf("%s: slot error %v, want %s", tc.org, own.Current.Err, tc.reason)
		}
		if r := report(tc.org, own, inst, time.Now()); r.Status != license.StatusInvalid || r.Reason == nil || *r.Reason != tc.reason {
			t.Errorf("%s: status %s reason %v, want invalid %s", tc.org, r.Status, r.Reason, tc.reason)
		}
	}
	// A new follower folding the same stream agrees.
	g := start(t, Config{Stream: e.readerBus(t)}, true)
	own, _ := mustState(t, g, "hooli", 0)
	if own.Current == nil || own.Current.Err == nil {
		t.Fatalf("hooli from a fresh fold: %+v", own.Current)
	}
}

func TestUnknownSlugsCostNoIO(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.scenario(t)
	dsn, pool := migrated(t)
	pr := e.runProjector(t, pool)
	pr.caughtUp(t, e)
	c := &counting{inner: e.readerBus(t)}
	f := start(t, Config{Stream: c, DatabaseURL: dsn}, true)
	mustState(t, f, "acme", 0) // warm

	calls, pg, cached := c.calls.Load(), f.pgCalls.Load(), f.orgs.Load().len()
	began := time.Now()
	const n = 5000
	for i := range n {
		org := fmt.Sprintf("unknown-%d", i)
		own, inst, err := f.State(context.Background(), org, 0)
		if err != nil || own.Seq != 0 || own.Org != org || own.Current != nil || inst.Org != license.InstanceOrg {
			t.Fatalf("%s: own %+v inst %+v err %v", org, own, inst, err)
		}
	}
	per := time.Since(began) / n
	// The watcher's periodic stream check is the only call allowed.
	if got := c.calls.Load() - calls; got > 2 {
		t.Errorf("%d stream calls while answering unknown slugs", got)
	}
	if got := f.pgCalls.Load() - pg; got != 0 {
		t.Errorf("%d PostgreSQL calls while answering unknown slugs", got)
	}
	if got := f.orgs.Load().len(); got != cached {
		t.Errorf("cache grew from %d to %d orgs", cached, got)
	}
	t.Logf("unknown slug answered in %s", per)
}

func TestReverifyAfterKeyRingReload(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.upload(t, "acme")
	file := keyFile(t, "k1")
	keys, err := license.NewKeys(license.RingConfig{File: file, NoBuiltin: true})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	changed := map[string]bool{}
	f := start(t, Config{Stream: e.readerBus(t), Keys: keys}, true, func(f *Follower) {
		f.cfg.OnChange = func(org string) { mu.Lock(); changed[org] = true; mu.Unlock() }
	})
	before, _ := mustState(t, f, "acme", 0)
	if before.Current.Err != nil {
		t.Fatal(before.Current.Err)
	}
	// The vendor key is withdrawn.
	if err := os.WriteFile(file, []byte(strings.Replace(licensetest.RingEntry("k2"), ":", " ", 1)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ch, err := keys.Reload(); err != nil || !ch {
		t.Fatalf("reload: %v %v", ch, err)
	}
	mu.Lock()
	clear(changed)
	mu.Unlock()
	f.Reverify()
	after, _ := mustState(t, f, "acme", 0)
	if after == before || license.ReasonOf(after.Current.Err) != license.ReasonUnknownKey {
		t.Fatalf("after the reload: same pointer %v, err %v", after == before, after.Current.Err)
	}
	eventually(t, 2*time.Second, "OnChange for every re-verified org", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return changed["acme"] && changed[license.InstanceOrg]
	})
}

// OnChange runs apart from the consumer: a slow callback delays no event,
// and changes queued meanwhile are reported once each.
func TestSlowOnChangeDelaysNoEvent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.upload(t, "acme")
	block := make(chan struct{})
	calls := make(chan string, 100)
	f := start(t, Config{Stream: e.readerBus(t)}, true, func(f *Follower) {
		f.cfg.OnChange = func(org string) {
			<-block
			calls <- org
		}
	})
	defer func() {
		select {
		case <-block:
		default:
			close(block)
		}
	}()
	var last uint64
	for range 5 {
		_, res := e.upload(t, "acme")
		last = res.Seq
	}
	_, res := e.upload(t, "globex")
	eventually(t, 2*time.Second, "applied while OnChange blocks", func() bool {
		return seqOf(f.cached("acme")) == last && seqOf(f.cached("globex")) == res.Seq
	})
	close(block)
	seen := map[string]int{}
	deadline := time.After(2 * time.Second)
	for seen["acme"] == 0 || seen["globex"] == 0 {
		select {
		case org := <-calls:
			seen[org]++
		case <-deadline:
			t.Fatalf("OnChange calls %v", seen)
		}
	}
	time.Sleep(20 * time.Millisecond)
	if n := seen["acme"] + len(calls); n > 3 { // at most: the load, the call blocked, the coalesced rest
		t.Errorf("acme reported %d times for 6 changes: not coalesced", n)
	}
}

// recreated makes the stream look recreated (another created time).
type recreated struct {
	*counting
	shift atomic.Bool
}

func (r *recreated) Stream(ctx context.Context) (time.Time, uint64, error) {
	c, h, err := r.counting.Stream(ctx)
	if r.shift.Load() {
		c = c.Add(time.Hour)
	}
	return c, h, err
}

func TestRecreatedStreamIsLoadedAgain(t *testing.T) {
	e := newEnv(t)
	e.scenario(t)
	r := &recreated{counting: &counting{inner: e.readerBus(t)}}
	f := start(t, Config{Stream: r, MaxStaleness: 2 * time.Second}, true)
	before := f.orgs.Load()
	created := f.createdTime()
	r.shift.Store(true)
	eventually(t, 5*time.Second, "loaded again", func() bool { return f.createdTime().Equal(created.Add(time.Hour)) })
	if f.orgs.Load() == before {
		t.Fatal("the cache was not replaced")
	}
	if got := value(t, f.m.loads.WithLabelValues("stream", "initial")); got != 2 {
		t.Errorf("initial loads %v, want 2", got)
	}
	sameAsLedger(t, e, f)
	_, res := e.upload(t, "acme")
	eventually(t, 2*time.Second, "following the new stream", func() bool { return seqOf(f.cached("acme")) >= res.Seq && !f.Stale() })
}

// From the ledger's response to each replica's apply, 8 replicas.
func TestPropagationEightReplicas(t *testing.T) {
	e := newEnv(t)
	e.upload(t, "acme")
	type applied struct {
		seq uint64
		at  time.Time
	}
	const replicas, n = 8, 100
	chans := make([]chan applied, replicas)
	for i := range replicas {
		ch := make(chan applied, 4*n)
		chans[i] = ch
		f := start(t, Config{Stream: e.readerBus(t)}, true, func(g *Follower) {
			g.hookChanged = func(org string) {
				if org == "acme" {
					ch <- applied{seqOf(g.cached(org)), time.Now()}
				}
			}
		})
		_ = f
	}
	var lags []time.Duration
	for range n {
		_, res := e.upload(t, "acme")
		responded := time.Now()
		for i, ch := range chans {
			for waiting := true; waiting; {
				select {
				case a := <-ch:
					if a.seq >= res.Seq {
						lags = append(lags, max(a.at.Sub(responded), 0))
						waiting = false
					}
				case <-time.After(30 * time.Second):
					t.Fatalf("replica %d never applied seq %d", i, res.Seq)
				}
			}
		}
	}
	// Every replica applied every upload from its live consumer (the
	// waits above end only then). How fast is a figure, not a pass/fail:
	// ledger bench measures it beside JetStream's own delivery time.
	if len(lags) != replicas*n {
		t.Fatalf("%d applies, want %d", len(lags), replicas*n)
	}
	slices.Sort(lags)
	p := func(q float64) time.Duration { return lags[int(q*float64(len(lags)-1))] }
	t.Logf("ledger response → replica apply over %d applies: p50 %s, p99 %s, max %s", len(lags), p(0.5), p(0.99), lags[len(lags)-1])
}

func BenchmarkCachedState(b *testing.B) {
	e := newEnv(b)
	e.upload(b, "acme")
	f := start(b, Config{Stream: e.readerBus(b)}, true)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, ok := f.CachedState("acme", 0); !ok {
				b.Fatal("not cached")
			}
		}
	})
}

func BenchmarkStateCached(b *testing.B) {
	e := newEnv(b)
	e.upload(b, "acme")
	f := start(b, Config{Stream: e.readerBus(b)}, true)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := f.State(ctx, "acme", 0); err != nil {
				b.Fatal(err)
			}
		}
	})
}
