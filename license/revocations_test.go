package license_test

import (
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/license"
)

// Revocations behave as a map copied before every change, across the
// merges of their newest entries into a new base: every earlier value
// keeps what it held.
func TestRevocationsAreImmutable(t *testing.T) {
	var sets []license.Revocations
	var want []map[string]license.Revocation
	cur, m := license.Revocations{}, map[string]license.Revocation{}
	for i := range 200 {
		id := fmt.Sprintf("id-%d", i%150) // some ids revoked twice: the later wins
		v := license.Revocation{Seq: uint64(i + 1), Note: fmt.Sprint("note ", i)}
		cur = cur.With(id, v)
		m[id] = v
		if nid, nv, ok := cur.Newest(); !ok || nid != id || nv != v {
			t.Fatalf("Newest after %s: %s %v %v", id, nid, nv, ok)
		}
		sets, want = append(sets, cur), append(want, maps.Clone(m))
		if i%7 == 0 { // a second state derived from the same parent
			other := sets[len(sets)-1].With("other", license.Revocation{Seq: 9999})
			if _, ok := other.Get("other"); !ok || other.Len() != len(m)+1 {
				t.Fatalf("derived set: len %d", other.Len())
			}
		}
	}
	for i, s := range sets {
		if s.Len() != len(want[i]) || !maps.Equal(s.Map(), want[i]) {
			t.Fatalf("set %d: len %d, %v; want %v", i, s.Len(), s.Map(), want[i])
		}
		if _, ok := s.Get("other"); ok {
			t.Fatalf("set %d holds what a set derived from it added", i)
		}
		for id, v := range want[i] {
			if got, ok := s.Get(id); !ok || got != v {
				t.Fatalf("set %d: Get(%s) = %v, %v; want %v", i, id, got, ok, v)
			}
		}
	}
	var zero license.Revocations
	if _, ok := zero.Get("x"); ok || zero.Len() != 0 || len(zero.Map()) != 0 {
		t.Error("the zero value is not empty")
	}
	if s := license.NewRevocations(map[string]license.Revocation{"a": {Seq: 3}}); s.Len() != 1 || s.With("b", license.Revocation{}).Len() != 2 {
		t.Error("NewRevocations")
	}
}

// Revoking one more license of an org with many costs the same whatever
// it had: the set is not copied whole.
func BenchmarkRevocationsWith(b *testing.B) {
	for _, n := range []int{10, 1000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s := license.Revocations{}
			for i := range n {
				s = s.With(fmt.Sprint("id-", i), license.Revocation{Seq: uint64(i)})
			}
			b.ResetTimer()
			for i := range b.N { // a chain of states, as a fold makes
				s = s.With(fmt.Sprint("new-", i), license.Revocation{Seq: uint64(i)})
			}
		})
	}
}

// Sets extended from one parent at once, on several goroutines, each hold
// the parent's revocations and their own only (-race checks the sharing).
func TestRevocationsExtendedConcurrently(t *testing.T) {
	parent := license.Revocations{}
	for i := range 5 {
		parent = parent.With(fmt.Sprint("base-", i), license.Revocation{Seq: uint64(i + 1)})
	}
	const writers = 8
	results := make([]license.Revocations, writers)
	done := make(chan int)
	for w := range writers {
		go func() {
			s := parent
			for i := range 50 {
				s = s.With(fmt.Sprintf("w%d-%d", w, i), license.Revocation{Seq: uint64(100*w + i)})
			}
			results[w] = s
			done <- w
		}()
	}
	for range writers {
		<-done
	}
	for w, s := range results {
		if s.Len() != 55 {
			t.Fatalf("writer %d: %d revocations, want 55", w, s.Len())
		}
		for id := range s.All() {
			if !strings.HasPrefix(id, "base-") && !strings.HasPrefix(id, fmt.Sprintf("w%d-", w)) {
				t.Fatalf("writer %d holds %s", w, id)
			}
		}
	}
	if parent.Len() != 5 {
		t.Fatalf("the parent changed: %d", parent.Len())
	}
}
