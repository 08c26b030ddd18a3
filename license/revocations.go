package license

import (
	"iter"
	"maps"
	"sync/atomic"
)

// Revocation is the invalidation of a license id on an org's subject: the
// stream sequence that revoked it, and the operator's note.
type Revocation struct {
	Seq  uint64
	Note string
}

// Revocations are the license ids revoked on an org's subject, each with
// its latest Revocation. A value is immutable and cheap to copy: With
// returns a new set that shares all but its newest entries with the old
// one, so that a reader copying an org's state for every event (states are
// shared with concurrent readers, never changed in place) does not copy
// every revocation the org ever had. The zero value is the empty set.
type Revocations struct {
	s *revocationSet // nil: empty (one word per org state)
}

type revocationSet struct {
	base map[string]Revocation // never modified once built
	// recent are the revocations newer than base, oldest first. Sets
	// derived from one another share its array: a set sees only its own
	// length, and the first set to extend a shared array past a length
	// claims the slot (claimed), so no slot a set sees is ever written.
	recent  []revokedID
	claimed *atomic.Int64 // slots of recent's array in use by some set
	n       int           // distinct ids
	newest  revokedID     // the last revocation added
}

type revokedID struct {
	id string
	Revocation
}

// recentMax is how many revocations a set of n keeps beside its base
// before merging them into a new base, which copies the base once per this
// many revocations: O(√n) copies per revocation whatever the org's
// history (the newest are appended in place).
func recentMax(n int) int {
	k := 32
	for k*k < 4*n {
		k *= 2
	}
	return k
}

// NewRevocations returns the set of m's revocations; m must not be changed
// afterwards.
func NewRevocations(m map[string]Revocation) Revocations {
	if len(m) == 0 {
		return Revocations{}
	}
	return Revocations{&revocationSet{base: m, n: len(m)}}
}

// Get returns id's revocation.
func (r Revocations) Get(id string) (Revocation, bool) {
	if r.s == nil {
		return Revocation{}, false
	}
	for i := len(r.s.recent) - 1; i >= 0; i-- {
		if r.s.recent[i].id == id {
			return r.s.recent[i].Revocation, true
		}
	}
	v, ok := r.s.base[id]
	return v, ok
}

// Len returns the number of revoked ids.
func (r Revocations) Len() int {
	if r.s == nil {
		return 0
	}
	return r.s.n
}

// With returns the set with id revoked by v (replacing an earlier
// revocation of id); r is unchanged.
func (r Revocations) With(id string, v Revocation) Revocations {
	cur := r.s
	if cur == nil {
		cur = &revocationSet{}
	}
	n := cur.n
	if _, had := r.Get(id); !had {
		n++
	}
	if k := len(cur.recent); k < recentMax(n) {
		e := revokedID{id, v}
		if cur.claimed != nil && k < cap(cur.recent) && cur.claimed.CompareAndSwap(int64(k), int64(k+1)) {
			recent := append(cur.recent, e) // into the slot just claimed
			return Revocations{&revocationSet{base: cur.base, recent: recent, claimed: cur.claimed, n: n, newest: e}}
		}
		recent := make([]revokedID, k, max(2*k, 4))
		copy(recent, cur.recent)
		claimed := new(atomic.Int64)
		claimed.Store(int64(k + 1))
		return Revocations{&revocationSet{base: cur.base, recent: append(recent, e), claimed: claimed, n: n, newest: e}}
	}
	base := make(map[string]Revocation, n)
	maps.Copy(base, cur.base)
	for _, e := range cur.recent {
		base[e.id] = e.Revocation
	}
	base[id] = v
	return Revocations{&revocationSet{base: base, n: n, newest: revokedID{id, v}}}
}

// Newest returns the revocation With added last (none for a set made by
// NewRevocations alone).
func (r Revocations) Newest() (string, Revocation, bool) {
	if r.s == nil || r.s.newest.id == "" {
		return "", Revocation{}, false
	}
	return r.s.newest.id, r.s.newest.Revocation, true
}

// All yields every revoked id with its revocation, in no particular order.
func (r Revocations) All() iter.Seq2[string, Revocation] {
	return func(yield func(string, Revocation) bool) {
		if r.s == nil {
			return
		}
		r := r.s
		seen := make(map[string]bool, len(r.recent))
		for i := len(r.recent) - 1; i >= 0; i-- {
			e := r.recent[i]
			if seen[e.id] {
				continue
			}
			seen[e.id] = true
			if !yield(e.id, e.Revocation) {
				return
			}
		}
		for id, v := range r.base {
			if !seen[id] && !yield(id, v) {
				return
			}
		}
	}
}

// Map returns the set as a new map.
func (r Revocations) Map() map[string]Revocation {
	m := make(map[string]Revocation, r.Len())
	for id, v := range r.All() {
		m[id] = v
	}
	return m
}
