package gatekeeper

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/licenseledger/ledger/license"
)

// genSource is a frozen source with generations, counting CachedState
// calls.
type genSource struct {
	*frozen
	gen   atomic.Uint64
	calls atomic.Int64
}

func (s *genSource) CachedState(org string, minSeq uint64) (own, inst *license.OrgState, ok bool) {
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

// memoSource keeps one memo per org, like a follower's cache entries.
type memoSource struct {
	*frozen
	memos map[string]*Memo
}

func (s *memoSource) Memo(org string) *Memo { return s.memos[org] }

// Gates sharing a Source's memos decide each by its own rules: an entry
// another Gate left in the memo is not used.
func TestGatesSharingMemos(t *testing.T) {
	_, fz := benchGate(t)
	src := &memoSource{frozen: fz, memos: map[string]*Memo{"acme": {}}}
	g1, err := New(src, Config{Features: mustFeatures(t)})
	if err != nil {
		t.Fatal(err)
	}
	other, err := ParseFeatures(strings.NewReader("/api/chat/ nope\n"))
	if err != nil {
		t.Fatal(err)
	}
	g2, err := New(src, Config{Features: other})
	if err != nil {
		t.Fatal(err)
	}
	r := benchRequest(t, "GET", "/api/chat/general", "acme")
	for i := range 3 {
		fz.gen.Add(1) // each Gate looks its entry up again
		if d := g1.Decide(r); !d.Allowed {
			t.Fatalf("round %d, gate 1: %+v", i, d)
		}
		fz.gen.Add(1)
		if d := g2.Decide(r); d.Allowed || d.Code != CodeFeatureNotLicensed {
			t.Fatalf("round %d, gate 2: %+v, want feature_not_licensed", i, d)
		}
	}
	if src.memos["acme"].e.Load() == nil {
		t.Fatal("the memo holds no entry")
	}
}
