package follow

import (
	"sort"
	"strings"
	"sync"

	"github.com/licenseledger/ledger/license"
)

// A replica whose key ring lacks the vendor's key denies every licensed
// org license_invalid (unknown_key) — after a key rotation done on the
// ledgers only, say. That must be loud: the cache counts, as states are
// replaced, the licenses signed with each kid and the orgs whose license
// fails with unknown_key, so the metric, /readyz and the log can say so
// without walking every org.

// keyUse counts, over one cache (orgMap), the current and pending
// licenses signed with each kid, and the orgs with a license that fails
// with unknown_key. It is safe for concurrent use.
type keyUse struct {
	mu      sync.Mutex
	kids    map[string]int
	unknown int
}

// keyMark is what one org's state adds to a keyUse.
type keyMark struct {
	kids    [2]string // of the current and the pending license ("" for none)
	unknown bool
}

func markOf(st *license.OrgState) (m keyMark) {
	if st == nil {
		return m
	}
	for i, s := range [2]*license.Slot{st.Current, st.Pending} {
		if s == nil || s.License == nil {
			continue
		}
		m.kids[i] = s.License.Kid
		if license.ReasonOf(s.Err) == license.ReasonUnknownKey {
			m.unknown = true
		}
	}
	return m
}

// replace moves an org's contribution from old to n and reports whether
// the set of kids in use changed.
func (k *keyUse) replace(old, n keyMark) (changed bool) {
	if old == n {
		return false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.kids == nil {
		k.kids = map[string]int{}
	}
	for _, kid := range n.kids {
		if kid != "" {
			changed = changed || k.kids[kid] == 0
			k.kids[kid]++
		}
	}
	for _, kid := range old.kids {
		if kid != "" {
			if k.kids[kid]--; k.kids[kid] <= 0 {
				delete(k.kids, kid)
				changed = true
			}
		}
	}
	if old.unknown {
		k.unknown--
	}
	if n.unknown {
		k.unknown++
	}
	return changed
}

// inUse returns the kids in use, sorted.
func (k *keyUse) inUse() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	kids := make([]string, 0, len(k.kids))
	for kid := range k.kids {
		kids = append(kids, kid)
	}
	sort.Strings(kids)
	return kids
}

func (k *keyUse) unknownOrgs() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.unknown
}

// set replaces e's state (e in o) and keeps o's key use and count of
// unverified states current. It reports whether the set of kids in use
// changed.
func (o *orgMap) set(e *entry, st *license.OrgState) bool {
	old := e.st.Swap(st)
	if was, is := old.Unverified(), st.Unverified(); was != is {
		if is {
			o.unverified.Add(1)
		} else {
			o.unverified.Add(-1)
		}
	}
	return o.use.replace(markOf(old), markOf(st))
}

// store replaces e's state (e in m, under e.mu) and, once loaded, says so
// when the kids in use changed the key ring's verdict (checkKeyring).
func (f *Follower) store(m *orgMap, e *entry, st *license.OrgState) {
	if m.set(e, st) && f.loaded.Load() {
		f.checkKeyring()
	}
}

// UnknownKeyOrgs counts the cached orgs with a current or pending license
// signed by a key (kid) the key ring does not hold.
func (f *Follower) UnknownKeyOrgs() int { return f.orgs.Load().use.unknownOrgs() }

// KeyringProblem says, once the initial state is loaded, when the key
// ring trusts none of the keys the cached licenses are signed with, e.g.
// "trusts none of the keys in use (k9)"; "" when it trusts one of them or
// no license is cached.
func (f *Follower) KeyringProblem() string {
	if !f.loaded.Load() {
		return ""
	}
	kids := f.orgs.Load().use.inUse()
	if len(kids) == 0 {
		return ""
	}
	ring := f.cfg.Keys.Ring()
	for _, kid := range kids {
		if _, ok := ring.Key(kid); ok {
			return ""
		}
	}
	if len(kids) > 5 {
		kids = append(kids[:5:5], "…")
	}
	return "trusts none of the keys in use (" + strings.Join(kids, ", ") + ")"
}

// checkKeyring logs KeyringProblem once per change: a warning when it
// appears or changes, a note when it clears.
func (f *Follower) checkKeyring() {
	p := f.KeyringProblem()
	f.keyringMu.Lock()
	defer f.keyringMu.Unlock()
	if p == f.keyringSaid {
		return
	}
	f.keyringSaid = p
	fp := f.cfg.Keys.Ring().Fingerprint()
	if p == "" {
		f.log.Info("the key ring trusts a key the licenses use again", "keyring_fingerprint", fp)
		return
	}
	f.log.Warn("the key ring "+p+": every org licensed with them is denied license_invalid (unknown_key); "+
		"add the vendor's public key to LICENSE_PUBLIC_KEYS or LICENSE_PUBLIC_KEYS_FILE and reload (SIGHUP)",
		"keyring_fingerprint", fp, "orgs_unknown_key", f.UnknownKeyOrgs())
}
