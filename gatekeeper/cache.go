package gatekeeper

import (
	"fmt"
	"hash/maphash"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/licenseledger/ledger/internal/fasthash"
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
// license.ReportOf (license.Held.Status): nothing here re-derives it.
//
// An org's entry is kept in the Memo its Source holds for the org
// (MemoSource), so that it lives and dies with the source's own cache
// entry; with a Source that has no memos, orgs with events live in a
// sync.Map (they are bounded by the orgs the ledger knows). Orgs with no
// events of their own (Seq 0, which a Source may allocate afresh for
// every call) are keyed by name and instance state in a fixed-size
// direct-mapped table, so clients naming random slugs cannot grow memory.
//
// In front of those, a direct-mapped table indexed by the own state's
// pointer finds the entry without hashing the org's name; a collision
// there only sends the lookup further. It keeps at most l1Slots
// superseded entries alive.
//
// A view's decision material (status, denial, header values, feature
// rule results) is the same for every org whose license says the same
// things on the same day: it is shared (interned per Gate, up to
// internMax), and a view adds only its window.
const (
	anonSlots = 1024 // a power of two
	l1Slots   = 4096 // a power of two
)

type orgSlot struct{ cur atomic.Pointer[entry] }

// Memo is where a Source keeps a Gate's decision entry for an org it
// caches (see MemoSource). The zero value is empty; a Gate fills it.
type Memo struct{ e atomic.Pointer[entry] }

// MemoSource is an optional addition to a Source that caches orgs: Memo
// returns the memo it keeps with org's cached state, nil when it caches
// none for org. A Gate keeps its decision entry there rather than in a map
// of its own: a replica holding every licensed org keeps one map. A memo
// serves one Gate at a time: Gates sharing a Source replace each other's
// entries (correct, but slower).
type MemoSource interface {
	Memo(org string) *Memo
}

type entry struct {
	gen       atomic.Uint64     // the source generation it was last found current at (byOrg)
	own, inst *license.OrgState // own nil: no events of its own
	cache     *entryCache       // the Gate's cache it belongs to (memos)
	orgHdr    [1]string         // the org; X-License-Org's value
	enforced  bool              // install mode on (auto counts as off)
	view      atomic.Pointer[view]
}

// org is the org e decides.
func (e *entry) org() string { return e.orgHdr[0] }

// view is an entry's decision material during [from, until) (Unix
// nanoseconds, clamped: unixNanos).
type view struct {
	from, until int64
	// expires is the expiry of the license in force for a valid, grace or
	// expired status (zero otherwise): per license, so kept out of the
	// shared look.
	expires time.Time
	// seat is the seat check of seat routes (Config.SeatRoutes), nil when
	// they are not checked (seats off, no report, no limit — 0 is
	// unlimited — or no license in force). Kept out of line: other routes
	// never read it.
	seat *seatView
	*look
}

// seatView is the seat check of a view, per org: from the instance's seat
// mode, the org's reported users and the users_limit of the license in
// force (valid or grace).
type seatView struct {
	hard bool      // the seat mode is hard (else soft)
	over bool      // users at or over the limit
	hdr  headerSet // over: the look's headers with the seat warning added
	msg  string    // over: the users_limit_reached message
}

// look is what a view decides with, shared by the views that agree on it.
type look struct {
	status  license.Status
	reason  license.Reason
	code    string // the enforced denial for the status ("" for valid, grace)
	hdr     headerSet
	ruleOK  []bool   // per feature rule: the license holds all its features
	ruleMsg []string // per feature rule: the denial message when not
}

// lookKey identifies a look: everything it is computed from.
type lookKey struct {
	status             license.Status
	reason             license.Reason
	tier, features     string
	usersLimit, days   int
	hasUsers, hasDays  bool
	hasTier, graceEnds bool
	graceEndsAt        string
}

// hasNoEvents reports whether s is the state of an org with no events.
func hasNoEvents(s *license.OrgState) bool {
	return s == nil || s.Seq == 0 && s.Current == nil && s.Pending == nil && s.Revoked.Len() == 0 && s.Enforcement == ""
}

type entryCache struct {
	orgs  sync.Map // org → *orgSlot, without memos
	memos MemoSource
	l1    []atomic.Pointer[entry]
	byOrg []atomic.Pointer[entry] // by org name, checked against the source generation
	anon  []atomic.Pointer[entry]
	seed  maphash.Seed
	hseed uint64 // fasthash.String seed
	rules []FeatureRule

	looksMu sync.Mutex
	looks   map[lookKey]*look
}

func newEntryCache(memos MemoSource, rules []FeatureRule) *entryCache {
	return &entryCache{l1: make([]atomic.Pointer[entry], l1Slots), anon: make([]atomic.Pointer[entry], anonSlots),
		byOrg: make([]atomic.Pointer[entry], l1Slots), seed: maphash.MakeSeed(), hseed: fasthash.NewSeed(),
		memos: memos, rules: rules}
}

// current returns org's entry if it was found current at generation gen.
func (c *entryCache) current(org string, gen uint64) (*entry, *atomic.Pointer[entry]) {
	slot := &c.byOrg[fasthash.String(org, c.hseed)&(l1Slots-1)]
	if e := slot.Load(); e != nil && e.gen.Load() == gen && e.orgHdr[0] == org {
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
func (c *entryCache) get(org string, own, inst *license.OrgState) *entry {
	if hasNoEvents(inst) {
		inst = nil
	}
	if hasNoEvents(own) {
		slot := &c.anon[fasthash.String(org, c.hseed)&(anonSlots-1)]
		if e := slot.Load(); e != nil && e.inst == inst && e.org() == org {
			return e
		}
		e := c.newEntry(org, nil, inst)
		slot.Store(e)
		return e
	}
	l1 := &c.l1[maphash.Comparable(c.seed, own)&(l1Slots-1)]
	if e := l1.Load(); e != nil && e.own == own && e.inst == inst && e.org() == org {
		return e
	}
	var cur *atomic.Pointer[entry]
	if c.memos != nil {
		if m := c.memos.Memo(org); m != nil {
			cur = &m.e
		}
	}
	if cur == nil {
		v, ok := c.orgs.Load(org)
		if !ok {
			v, _ = c.orgs.LoadOrStore(strings.Clone(org), &orgSlot{})
		}
		cur = &v.(*orgSlot).cur
	}
	e := cur.Load()
	if e == nil || e.own != own || e.inst != inst || e.cache != c || e.org() != org {
		e = c.newEntry(org, own, inst)
		cur.Store(e)
	}
	l1.Store(e)
	return e
}

func (c *entryCache) newEntry(org string, own, inst *license.OrgState) *entry {
	if own != nil && own.Org == org {
		org = own.Org // held by the state already
	} else {
		org = strings.Clone(org)
	}
	return &entry{orgHdr: [1]string{org}, own: own, inst: inst, cache: c, enforced: inst.EnforcementMode() == license.EnforceOn}
}

// at returns e's view at now (Unix nanoseconds).
func (e *entry) at(now int64) *view {
	if v := e.view.Load(); v != nil && v.from <= now && now < v.until {
		return v
	}
	v := e.build(now)
	e.view.Store(v)
	return v
}

// build computes e's view at now.
func (e *entry) build(now int64) *view {
	t := time.Unix(0, now).UTC()
	rep := license.ReportOf(e.org(), e.own, e.inst, t)
	v := &view{from: math.MinInt64, until: math.MaxInt64}
	// The window: between the thresholds of every license of both states
	// around t (a superset of those of the license in force), and within
	// the day of each one's days_remaining.
	for _, st := range [2]*license.OrgState{e.own, e.inst} {
		if st == nil {
			continue
		}
		for _, s := range [2]*license.Slot{st.Current, st.Pending} {
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
	}
	v.look = e.cache.lookOf(&rep)
	v.seatOf(&rep, e.own, e.inst)
	switch rep.Status {
	case license.StatusValid, license.StatusGrace, license.StatusExpired:
		if rep.Expires != nil {
			v.expires, _ = time.Parse(time.RFC3339, *rep.Expires)
		}
	}
	return v
}

// seatOf sets v's seat check from the report (status, users_limit), the
// org's reported users and the instance's seat mode. It needs v.look.
func (v *view) seatOf(rep *license.Report, own, inst *license.OrgState) {
	mode := inst.SeatMode()
	if mode != license.SeatsSoft && mode != license.SeatsHard {
		return
	}
	if rep.Status != license.StatusValid && rep.Status != license.StatusGrace || rep.UsersLimit == nil || *rep.UsersLimit <= 0 {
		return
	}
	n, ok := own.Users()
	if !ok {
		return
	}
	limit := *rep.UsersLimit
	sv := &seatView{hard: mode == license.SeatsHard}
	v.seat = sv
	if n < limit {
		return
	}
	sv.over, sv.hdr = true, v.look.hdr
	w := fmt.Sprintf("users_limit; active=%d; limit=%d", n, limit)
	if sv.hdr.warning != nil {
		// One value: a proxy relaying a single value relays both.
		w = sv.hdr.warning[0] + ", " + w
	}
	sv.hdr.warning = []string{w}
	sv.msg = fmt.Sprintf("the org has used all of its %d seats (%d active users): routes that add a user are refused until users are removed or the license raises its users_limit; removing users and every other route still work", limit, n)
}

// lookOf returns the look of a status report: the shared one when there
// is one, else a new one (shared from then on, up to internMax).
func (c *entryCache) lookOf(rep *license.Report) *look {
	k := lookKey{status: rep.Status}
	if rep.Reason != nil {
		k.reason = *rep.Reason
	}
	switch rep.Status {
	case license.StatusValid, license.StatusGrace, license.StatusExpired:
		if rep.Tier != nil {
			k.tier, k.hasTier = string(*rep.Tier), true
		}
		k.features = strings.Join(rep.Features, ",")
		if rep.UsersLimit != nil {
			k.usersLimit, k.hasUsers = *rep.UsersLimit, true
		}
		if rep.DaysRemaining != nil {
			k.days, k.hasDays = *rep.DaysRemaining, true
		}
		if rep.Status == license.StatusGrace && rep.GraceEnds != nil {
			k.graceEndsAt, k.graceEnds = *rep.GraceEnds, true
		}
	}
	c.looksMu.Lock()
	l, ok := c.looks[k]
	c.looksMu.Unlock()
	if ok {
		return l
	}
	l = c.newLook(k, rep.Features)
	c.looksMu.Lock()
	defer c.looksMu.Unlock()
	if prev, ok := c.looks[k]; ok {
		return prev
	}
	if c.looks == nil {
		c.looks = map[lookKey]*look{}
	}
	if len(c.looks) < internMax {
		c.looks[k] = l
	}
	return l
}

func (c *entryCache) newLook(k lookKey, features []string) *look {
	l := &look{status: k.status, reason: k.reason}
	h := &l.hdr
	h.status = intern(string(k.status))
	switch k.status {
	case license.StatusValid, license.StatusGrace, license.StatusExpired:
		if k.hasTier {
			h.tier = intern(k.tier)
		}
		h.features = intern(k.features)
		if k.hasUsers {
			h.usersLimit = intern(strconv.Itoa(k.usersLimit))
		}
		if k.hasDays {
			h.days = intern(strconv.Itoa(k.days))
		}
		if k.graceEnds {
			h.warning = []string{"grace; ends=" + k.graceEndsAt}
		}
	}

	switch k.status {
	case license.StatusMissing:
		l.code = CodeLicenseMissing
	case license.StatusExpired:
		l.code = CodeLicenseExpired
	case license.StatusInvalid:
		l.code = CodeLicenseInvalid
	case license.StatusValid, license.StatusGrace:
		if len(c.rules) > 0 {
			l.ruleOK = make([]bool, len(c.rules))
			l.ruleMsg = make([]string, len(c.rules))
		}
		for i, r := range c.rules {
			var lacking []string
			for _, f := range r.Features {
				if !contains(features, f) {
					lacking = append(lacking, f)
				}
			}
			l.ruleOK[i] = len(lacking) == 0
			if !l.ruleOK[i] {
				l.ruleMsg[i] = "the org's license does not include " + strings.Join(lacking, ", ") + ", which this route needs"
			}
		}
	default:
		l.code = CodeLicenseInvalid
	}
	return l
}

// Header values repeat across orgs (statuses, tiers, feature sets, users
// limits, day counts): looks share one pre-rendered slice per value, up to
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
