package gatekeeper

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/license"
)

// frozen is a lock-free Source over fixed states, like a follower's cache
// between events, with a generation (GenerationSource) like a follower's:
// whoever changes states bumps gen.
type frozen struct {
	states map[string]*license.OrgState
	inst   *license.OrgState
	gen    atomic.Uint64
}

func (f *frozen) Generation() uint64 { return f.gen.Load() }

func (w *world) freeze() *frozen {
	w.mu.RLock()
	defer w.mu.RUnlock()
	f := &frozen{states: map[string]*license.OrgState{}, inst: w.states[license.InstanceOrg]}
	for k, v := range w.states {
		f.states[k] = v
	}
	if f.inst == nil {
		f.inst = license.NewOrgState(license.InstanceOrg)
	}
	return f
}

func (f *frozen) State(_ context.Context, org string, minSeq uint64) (own, inst *license.OrgState, err error) {
	own, inst, _ = f.CachedState(org, minSeq)
	return own, inst, nil
}

var emptyOwn = license.NewOrgState("")

func (f *frozen) CachedState(org string, _ uint64) (own, inst *license.OrgState, ok bool) {
	own = f.states[org]
	if own == nil {
		own = emptyOwn
	}
	return own, f.inst, true
}

// benchGate is the common case: header mode from a trusted proxy, feature
// rules configured, the default clock, a valid license of the org's own
// (licenses issued yesterday, expiring in a year).
func benchGate(tb testing.TB) (*Gate, *frozen) {
	now := time.Now().UTC().Truncate(time.Second)
	dates := func(p map[string]any) map[string]any {
		return mod(p, "issued_at", now.Add(-24*time.Hour).Format(time.RFC3339), "expires", now.Add(365*24*time.Hour).Format(time.RFC3339))
	}
	w := newWorld(tb)
	w.enforcement(license.EnforceOn)
	w.upload("acme", "k1", dates(basePayload("acme")), events.SlotCurrent)
	w.upload("revoked", "k1", dates(basePayload("revoked")), events.SlotCurrent)
	w.fold("revoked", events.TypeInvalidated, issued, events.Invalidated{LicenseID: idA})
	src := w.freeze()
	g, err := New(src, Config{Features: mustFeatures(tb)})
	if err != nil {
		tb.Fatal(err)
	}
	return g, src
}

func benchRequest(tb testing.TB, method, path, org string) *http.Request {
	r := req(tb, method, path, org, "127.0.0.1:53412")
	r.Header.Set("User-Agent", "bench")
	r.Header.Set("Accept", "*/*")
	return r
}

func decideLoop(b *testing.B, g *Gate, r *http.Request, wantAllowed bool) {
	b.Helper()
	if d := g.Decide(r); d.Allowed != wantAllowed {
		b.Fatalf("decision %+v", d)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		g.Decide(r)
	}
}

// BenchmarkDecideCached is the §9 target: a decision on a cached entry with
// pre-rendered headers (path check, org from a trusted header, route
// match, state, status, headers, counters).
func BenchmarkDecideCached(b *testing.B) {
	g, _ := benchGate(b)
	decideLoop(b, g, benchRequest(b, "GET", "/api/projects/42", "acme"), true)
}

func BenchmarkDecideCachedCases(b *testing.B) {
	for _, c := range []struct {
		name, method, path, org string
		allowed                 bool
	}{
		{"feature_rule", "POST", "/api/chat/general/bots", "acme", false},
		{"feature_rule_held", "GET", "/api/projects/7/export", "acme", true},
		{"allowlisted", "GET", "/ui/settings/license", "acme", true},
		{"instance_license", "GET", "/api/projects/42", "nobody", false},
		{"revoked", "GET", "/api/projects/42", "revoked", false},
	} {
		b.Run(c.name, func(b *testing.B) {
			g, _ := benchGate(b)
			decideLoop(b, g, benchRequest(b, c.method, c.path, c.org), c.allowed)
		})
	}
}

func BenchmarkDecideCachedParallel(b *testing.B) {
	g, _ := benchGate(b)
	r := benchRequest(b, "GET", "/api/projects/42", "acme")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			g.Decide(r)
		}
	})
}

// BenchmarkDecideForCached is the /authz path: the request described by
// its original method, URI and headers.
func BenchmarkDecideForCached(b *testing.B) {
	g, _ := benchGate(b)
	hdr := http.Header{"X-Org-Slug": {"acme"}, "User-Agent": {"bench"}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		g.DecideFor(ctx, "GET", "/api/projects/42?page=2", "", hdr, "127.0.0.1:53412")
	}
}

// BenchmarkMiddlewareCached adds stripping X-License-* and setting the
// upstream headers on a request that already carries them (a request's
// header map growing by six keys allocates in the map, not in the gate).
func BenchmarkMiddlewareCached(b *testing.B) {
	g, _ := benchGate(b)
	h := g.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	r := benchRequest(b, "GET", "/api/projects/42", "acme")
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}

// BenchmarkDecideRouteMiss is a path the route cache does not hold: every
// request asks the ServeMuxes (an uncacheable, very long path).
func BenchmarkDecideRouteMiss(b *testing.B) {
	g, _ := benchGate(b)
	long := "/api/projects/"
	for len(long) <= maxCachedRoute {
		long += "segment/"
	}
	decideLoop(b, g, benchRequest(b, "GET", long+"x", "acme"), true)
}

// BenchmarkDecideEntryRebuild is a state change on every request: the
// cost of building an entry and its view.
func BenchmarkDecideEntryRebuild(b *testing.B) {
	g, src := benchGate(b)
	r := benchRequest(b, "GET", "/api/projects/42", "acme")
	own := src.states["acme"]
	b.ReportAllocs()
	for b.Loop() {
		c := *own
		src.states["acme"] = &c
		src.gen.Add(1)
		g.Decide(r)
	}
}

// References on this machine, to read the numbers above against.
func BenchmarkReferenceTimeNow(b *testing.B) {
	var n int64
	for b.Loop() {
		n += time.Now().UnixNano()
	}
	_ = n
}

func BenchmarkReferenceServeMuxHandler(b *testing.B) {
	mux := http.NewServeMux()
	for _, e := range DefaultAllow() {
		methods, pattern, err := parseAllow(e)
		if err != nil {
			b.Fatal(err)
		}
		mux.Handle(methods[0]+" "+pattern, http.NotFoundHandler())
	}
	r := benchRequest(b, "GET", "/api/license", "acme")
	b.ReportAllocs()
	for b.Loop() {
		mux.Handler(r)
	}
}

func TestDecideCachedAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	g, _ := benchGate(t)
	for _, c := range []struct{ method, path, org string }{
		{"GET", "/api/projects/42", "acme"},
		{"POST", "/api/chat/general/bots", "acme"},
		{"GET", "/ui/settings", "acme"},
		{"GET", "/api/projects/42", "nobody"},
		{"GET", "/api/projects/42", "revoked"},
		{"GET", "/a/../b", "acme"},
		{"GET", "/x", "Acme"},
	} {
		r := benchRequest(t, c.method, c.path, c.org)
		g.Decide(r)
		if n := testing.AllocsPerRun(200, func() { g.Decide(r) }); n != 0 {
			t.Errorf("%s %s as %s: %v allocations per decision", c.method, c.path, c.org, n)
		}
	}
	hdr := http.Header{"X-Org-Slug": {"acme"}}
	if n := testing.AllocsPerRun(200, func() { g.DecideFor(t.Context(), "GET", "/api/projects/42?x=1", "", hdr, local) }); n != 0 {
		t.Errorf("DecideFor: %v allocations", n)
	}
}
