package gatekeeper

import (
	"sync/atomic"
	"testing"

	"github.com/licenseledger/ledger/internal/projection"
)

// genSource is a frozen source with generations, counting CachedState
// calls.
type genSource struct {
	*frozen
	gen   atomic.Uint64
	calls atomic.Int64
}

func (s *genSource) CachedState(org string, minSeq uint64) (own, inst *projection.OrgState, ok bool) {
	s.calls.Add(1)
	return s.frozen.CachedState(org, minSeq)
}

func (s *genSource) Generation() uint64 { return s.gen.Load() }

// While the generation stays, an org is decided again without asking the
// source; a new generation is seen on the next request; a consistency
// token always asks.
func TestGenerationSkipsSourceUntilItChanges(t *testing.T) {
	_, fz := benchGate(t)
	src := &genSource{frozen: fz}
	g, err := New(src, Config{Features: mustFeatures(t)})
	if err != nil {
		t.Fatal(err)
	}
	r := benchRequest(t, "GET", "/api/projects/42", "acme")
	for range 3 {
		if d := g.Decide(r); !d.Allowed {
			t.Fatalf("denied: %+v", d)
		}
	}
	if n := src.calls.Load(); n != 1 {
		t.Fatalf("source asked %d times, want 1", n)
	}
	fz.states["acme"] = fz.states["revoked"] // a change the source has not announced yet
	if d := g.Decide(r); !d.Allowed {
		t.Fatalf("decided on an unannounced change: %+v", d)
	}
	src.gen.Add(1)
	d := g.Decide(r)
	if d.Allowed || d.Code != CodeLicenseInvalid {
		t.Fatalf("after the generation moved: %+v, want license_invalid", d)
	}
	if n := src.calls.Load(); n != 2 {
		t.Fatalf("source asked %d times, want 2", n)
	}
	tok := r.Clone(r.Context())
	tok.Header = r.Header.Clone()
	tok.Header.Set("X-License-Min-Seq", "1")
	g.Decide(tok)
	g.Decide(tok)
	if n := src.calls.Load(); n != 4 {
		t.Fatalf("with a consistency token the source was asked %d times in all, want 4", n)
	}
	if raceEnabled {
		return
	}
	if n := testing.AllocsPerRun(100, func() { g.Decide(r) }); n != 0 {
		t.Errorf("%v allocations per decision", n)
	}
}
