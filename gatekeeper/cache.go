package gatekeeper

import (
	"hash/maphash"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/projection"
	"github.com/licenseledger/ledger/license"
)

// The decision cache. An entry is built per org from the (own, instance)
// state pointers a Source returns: states are immutable, so pointer
// identity is the version, and an entry is rebuilt only when either
// pointer changes. Time moves an org's status without any event; an entry
// therefore holds a view — status, denial and pre-rendered headers — with
// the interval [from, until) in which it holds, bounded by every
// threshold of the licenses involved (not_before − 5 min, which is also a
// pending license's switch time; expires; grace end) and by the day
// boundaries of X-License-Days-Remaining. Outside it the view is built
// again at the new time. The status itself always comes from
// projection.Report (license.Held.Status): nothing here re-derives it.
//
// Orgs with events live in a sync.Map (they are bounded by the orgs the
// ledger knows). Orgs with no events of their own (Seq 0, which a Source
// may allocate afresh for every call) are keyed by name and instance
// state in a fixed-size direct-mapped table, so clients naming random
// slugs cannot grow memory.
//
// In front of the map, a direct-mapped table indexed by the own state's
// pointer finds the entry without hashing the org's name; a collision
// there only sends the lookup to the map. It keeps at most l1Slots
// superseded entries alive.
const (
	anonSlots = 1024 // a power of two
	l1Slots   = 4096 // a power of two
)

type orgSlot struct{ cur atomic.Pointer[entry] }

type entry struct {
	gen       atomic.Uint64 // the source generation it was last found current at (byOrg)
	org       string
	own, inst *projection.OrgState // own nil: no events of its own
	enforced  bool                 // install mode on (auto counts as off)
	orgHdr    []string
	view      atomic.Pointer[view]
}

// view is an entry's decision material during [from, until) (Unix
// nanoseconds, clamped: unixNanos).
type view struct {
	from, until int64
	status      license.Status
	reason      license.Reason
	code        string // the enforced denial for the status ("" for valid, grace)
	hdr         headerSet
	ruleOK      []bool   // per feature rule: the license holds all its features
	ruleMsg     []string // per feature rule: the denial message when not
}

// hasNoEvents reports whether s is the state of an org with no events.
func hasNoEvents(s *projection.OrgState) bool {
	return s == nil || s.Seq == 0 && s.Current == nil && s.Pending == nil && len(s.Revoked) == 0 && s.Enforcement == ""
}

type entryCache struct {
	orgs  sync.Map // org → *orgSlot
	l1    []atomic.Pointer[entry]
	byOrg []atomic.Pointer[entry] // by org name, checked against the source generation
	anon  []atomic.Pointer[entry]
	seed  maphash.Seed
}

func newEntryCache() *entryCache {
	return &entryCache{l1: make([]atomic.Pointer[entry], l1Slots), anon: make([]atomic.Pointer[entry], anonSlots),
		byOrg: make([]atomic.Pointer[entry], l1Slots), seed: maphash.MakeSeed()}
}

// current returns org's entry if it was found current at generation gen.
func (c *entryCache) current(org string, gen uint64) (*entry, *atomic.Pointer[entry]) {
	slot := &c.byOrg[maphash.String(c.seed, org)&(l1Slots-1)]
	if e := slot.Load(); e != nil && e.gen.Load() == gen && e.org == org {
		return e, slot
	}
	return nil, slot
}

// found records that e is org's entry at generation gen.
func (c *entryCache) found(slot *atomic.Pointer[entry], e *entry, gen uint64) {
	e.gen.Store(gen)
	slot.Store(e)
}

// get returns org's entry for (own, inst), building it if needed. States
// with no events count as nil: a Source may allocate them per call.
func (c *entryCache) get(org string, own, inst *projection.OrgState) *entry {
	if hasNoEvents(inst) {
		inst = nil
	}
	if hasNoEvents(own) {
		slot := &c.anon[maphash.String(c.seed, org)&(anonSlots-1)]
		if e := slot.Load(); e != nil && e.inst == inst && e.org == org {
			return e
		}
		e := newEntry(org, nil, inst)
		slot.Store(e)
		return e
	}
	l1 := &c.l1[maphash.Comparable(c.seed, own)&(l1Slots-1)]
	if e := l1.Load(); e != nil && e.own == own && e.inst == inst && e.org == org {
		return e
	}
	v, ok := c.orgs.Load(org)
	if !ok {
		v, _ = c.orgs.LoadOrStore(strings.Clone(org), &orgSlot{})
	}
	s := v.(*orgSlot)
	e := s.cur.Load()
	if e == nil || e.own != own || e.inst != inst {
		e = newEntry(org, own, inst)
		s.cur.Store(e)
	}
	l1.Store(e)
	return e
}

func newEntry(org string, own, inst *projection.OrgState) *entry {
	org = strings.Clone(org)
	return &entry{org: org, own: own, inst: inst, enforced: inst.EnforcementMode() == events.EnforceOn, orgHdr: []string{org}}
}

// at returns e's view at now (Unix nanoseconds).
func (e *entry) at(now int64, rules []FeatureRule) *view {
	if v := e.view.Load(); v != nil && v.from <= now && now < v.until {
		return v
	}
	v := e.build(now, rules)
	e.view.Store(v)
	return v
}

// build computes e's view at now.
func (e *entry) build(now int64, rules []FeatureRule) *view {
	t := time.Unix(0, now).UTC()
	rep := projection.Report(e.org, e.own, e.inst, t)
	v := &view{status: rep.Status, from: math.MinInt64, until: math.MaxInt64}
	if rep.Reason != nil {
		v.reason = *rep.Reason
	}
	// The window: between the thresholds of every license of both states
	// around t (a superset of those of the license in force), and within
	// the day of each one's days_remaining.
	var slots []*projection.Slot
	for _, st := range []*projection.OrgState{e.own, e.inst} {
		if st != nil {
			slots = append(slots, st.Current, st.Pending)
		}
	}
	for _, s := range slots {
		if s == nil || s.License == nil || s.License.Payload == nil {
			continue
		}
		p := s.License.Payload
		if !p.NotBefore.IsZero() {
			v.narrow(t, p.NotBefore.Add(-license.Skew))
		}
		v.narrow(t, p.Expires)
		v.narrow(t, s.Held.GraceEnds())
		from, until := dayWindow(p.Expires, t)
		v.from = max(v.from, unixNanos(from))
		v.until = min(v.until, unixNanos(until))
	}

	h := &v.hdr
	h.org, h.status = e.orgHdr, intern(string(rep.Status))
	switch rep.Status {
	case license.StatusValid, license.StatusGrace, license.StatusExpired:
		if rep.Tier != nil {
			h.tier = intern(string(*rep.Tier))
		}
		h.features = intern(strings.Join(rep.Features, ","))
		if rep.UsersLimit != nil {
			h.usersLimit = intern(strconv.Itoa(*rep.UsersLimit))
		}
		if rep.DaysRemaining != nil {
			h.days = intern(strconv.Itoa(*rep.DaysRemaining))
		}
		if rep.Status == license.StatusGrace && rep.GraceEnds != nil {
			h.warning = []string{"grace; ends=" + *rep.GraceEnds}
		}
	}

	switch rep.Status {
	case license.StatusMissing:
		v.code = CodeLicenseMissing
	case license.StatusExpired:
		v.code = CodeLicenseExpired
	case license.StatusInvalid:
		v.code = CodeLicenseInvalid
	case license.StatusValid, license.StatusGrace:
		if len(rules) > 0 {
			v.ruleOK = make([]bool, len(rules))
			v.ruleMsg = make([]string, len(rules))
		}
		for i, r := range rules {
			var lacking []string
			for _, f := range r.Features {
				if !contains(rep.Features, f) {
					lacking = append(lacking, f)
				}
			}
			v.ruleOK[i] = len(lacking) == 0
			if !v.ruleOK[i] {
				v.ruleMsg[i] = "the org's license does not include " + strings.Join(lacking, ", ") + ", which this route needs"
			}
		}
	default:
		v.code = CodeLicenseInvalid
	}
	return v
}

// Header values repeat across orgs (statuses, tiers, feature sets, users
// limits, day counts): views share one pre-rendered slice per value, up to
// internMax values, so that a replica holding every licensed org keeps
// each value once.
const internMax = 8192

var interned struct {
	mu sync.Mutex
	m  map[string][]string
}

// intern returns the shared one-value slice for s (never modified).
func intern(s string) []string {
	interned.mu.Lock()
	defer interned.mu.Unlock()
	if v, ok := interned.m[s]; ok {
		return v
	}
	v := []string{strings.Clone(s)}
	if interned.m == nil {
		interned.m = map[string][]string{}
	}
	if len(interned.m) < internMax {
		interned.m[v[0]] = v
	}
	return v
}

// narrow shrinks v's window around t with the threshold b.
func (v *view) narrow(t, b time.Time) {
	if t.Before(b) {
		v.until = min(v.until, unixNanos(b))
	} else {
		v.from = max(v.from, unixNanos(b))
	}
}

// dayWindow is the interval [from, until) around t in which
// license.DaysRemaining(expires, ·) keeps its value d at t:
// expires − (d+1)·86,400 s < t' ≤ expires − d·86,400 s.
func dayWindow(expires, t time.Time) (from, until time.Time) {
	d := int64(license.DaysRemaining(expires, t))
	sec, ns := expires.Unix(), int64(expires.Nanosecond())
	until = time.Unix(sec-d*86400, ns).Add(time.Nanosecond)
	from = time.Unix(sec-(d+1)*86400, ns).Add(time.Nanosecond)
	return from, until
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
