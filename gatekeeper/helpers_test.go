package gatekeeper

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/projection"
	"github.com/licenseledger/ledger/internal/testenv/licensetest"
	"github.com/licenseledger/ledger/license"
)

const (
	installID = "5b3c1d1e-7f55-4f4b-9b68-2a1f0d3c9e11"
	idA       = "0193a5b0-7e1a-7c3d-8f00-1234567890ab"
	idB       = "0193a5b0-7e1a-7c3d-8f00-0000000000bb"
	idI       = "0193a5b0-7e1a-7c3d-8f00-00000000001a"
)

var (
	// The base license: issued at issued, expires at expires, 14 days of
	// grace (graceEnd).
	issued   = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	expires  = time.Date(2027, 11, 1, 0, 0, 0, 0, time.UTC)
	graceEnd = expires.Add(14 * 24 * time.Hour)
	// t1 is well inside the base license's validity; tGrace inside its
	// grace; tExpired after it.
	t1       = time.Date(2026, 11, 29, 13, 1, 2, 123456000, time.UTC)
	tGrace   = expires.Add(3 * 24 * time.Hour)
	tExpired = graceEnd.Add(time.Second)

	actor = events.Actor{Kind: events.ActorOperator, ID: "deploy-bot"}
)

// basePayload is a valid payload for org, as a map for tests to bend.
func basePayload(org string) map[string]any {
	return map[string]any{
		"license_id":  idA,
		"customer":    "Acme Corp",
		"org_slug":    org,
		"tier":        "enterprise",
		"products":    []string{"hub_platform"},
		"features":    []string{"sso", "chat_connector", "audit_export"},
		"issued_at":   "2026-11-01T00:00:00Z",
		"expires":     "2027-11-01T00:00:00Z",
		"users_limit": 50,
		"grace_days":  14,
	}
}

func mod(p map[string]any, kv ...any) map[string]any {
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(p, kv[i].(string))
		} else {
			p[kv[i].(string)] = kv[i+1]
		}
	}
	return p
}

// world folds events into org states the way every reader of the stream
// does, and serves them as a Source.
type world struct {
	t     testing.TB
	trust projection.Trust

	mu     sync.RWMutex
	states map[string]*license.OrgState
	err    error         // State and CachedState fail with it
	slow   time.Duration // State sleeps this long, ignoring ctx
	block  bool          // State waits for ctx
	noFast bool          // CachedState reports false

	stateCalls  atomic.Int64
	lastMinSeq  atomic.Uint64
	cachedCalls atomic.Int64
}

func newWorld(t testing.TB) *world {
	return &world{t: t, trust: projection.Trust{Ring: licensetest.Ring(t, "k1"), InstallID: installID},
		states: map[string]*license.OrgState{}}
}

// fold appends an event to org's subject and folds it.
func (w *world) fold(org, typ string, at time.Time, data any) {
	w.t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.states[org]
	if s == nil {
		s = license.NewOrgState(org)
	}
	e, err := events.New(typ, org, at, actor, s.Seq, data)
	if err != nil {
		w.t.Fatal(err)
	}
	raw, err := e.Encode()
	if err != nil {
		w.t.Fatal(err)
	}
	m := events.Decode(events.OrgSubject(org), s.Seq+1, raw)
	if m.Envelope == nil {
		w.t.Fatalf("event %s does not decode: %v", typ, m.Err)
	}
	n, out, err := projection.Apply(w.trust, s, m)
	if out != projection.Applied || err != nil {
		w.t.Fatalf("fold %s on %s: %v %v", typ, org, out, err)
	}
	w.states[org] = n
}

// upload signs p with kid and folds its upload into org's slot.
func (w *world) upload(org, kid string, p map[string]any, slot string) {
	w.t.Helper()
	l := licensetest.Sign(w.t, kid, p)
	w.fold(org, events.TypeUploaded, issued, events.Uploaded{LicenseID: l.Payload.LicenseID, Fingerprint: l.Fingerprint,
		Key: l.Key, Slot: slot, GraceDaysEffective: license.EffectiveGrace(l.Payload, license.DefaultGraceDays),
		Source: events.SourceAPI})
}

func (w *world) enforcement(mode string) {
	w.t.Helper()
	w.fold(license.InstanceOrg, events.TypeEnforcementChanged, issued, events.EnforcementChanged{Mode: mode})
}

func (w *world) get(org string) (own, inst *license.OrgState) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	own, inst = w.states[org], w.states[license.InstanceOrg]
	if own == nil {
		own = license.NewOrgState(org) // a fresh pointer per call, as a follower does
	}
	if inst == nil {
		inst = license.NewOrgState(license.InstanceOrg)
	}
	return own, inst
}

func (w *world) State(ctx context.Context, org string, minSeq uint64) (own, inst *license.OrgState, err error) {
	w.stateCalls.Add(1)
	w.lastMinSeq.Store(minSeq)
	w.mu.RLock()
	e, slow, block := w.err, w.slow, w.block
	w.mu.RUnlock()
	if block {
		<-ctx.Done()
		return nil, nil, ErrUnavailable
	}
	if slow > 0 {
		time.Sleep(slow)
	}
	if e != nil {
		return nil, nil, e
	}
	own, inst = w.get(org)
	return own, inst, nil
}

func (w *world) CachedState(org string, minSeq uint64) (own, inst *license.OrgState, ok bool) {
	w.cachedCalls.Add(1)
	w.mu.RLock()
	skip := w.noFast || w.err != nil || w.block || w.slow > 0
	w.mu.RUnlock()
	if skip {
		return nil, nil, false
	}
	own, inst = w.get(org)
	if own.Seq < minSeq {
		return nil, nil, false
	}
	return own, inst, true
}

func (w *world) set(f func(w *world)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f(w)
}

// stateOnly hides a world's fast path.
type stateOnly struct{ Source }

// clock is an adjustable clock.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.set(t)
	return c
}
func (c *clock) set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }

// newGate builds a gate over src with cfg, the clock c unless cfg has one.
func newGate(t testing.TB, src Source, c *clock, cfg Config) *Gate {
	t.Helper()
	if cfg.Now == nil && c != nil {
		cfg.Now = c.now
	}
	g, err := New(src, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// req builds a request as a server receives it: method, request URI, org
// header (none when ""), from peer.
func req(t testing.TB, method, uri, org, peer string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, "http://gate.test"+uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.RequestURI = uri
	r.RemoteAddr = peer
	if org != "" {
		r.Header.Set("X-Org-Slug", org)
	}
	return r
}

const local = "127.0.0.1:40000"

func boolp(b bool) *bool { return &b }

// expect checks a decision's outcome.
func expect(t testing.TB, what string, d Decision, allowed bool, status int, code string) {
	t.Helper()
	if d.Allowed != allowed || d.Status != status || d.Code != code {
		t.Errorf("%s: allowed=%v status=%d code=%q (%s), want allowed=%v status=%d code=%q",
			what, d.Allowed, d.Status, d.Code, d.Message, allowed, status, code)
	}
}

// gatherOne collects g's metrics as "name{label=value,...}" → value.
func gatherOne(g *Gate) (map[string]float64, error) {
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(g.Collector()); err != nil {
		return nil, err
	}
	mfs, err := reg.Gather()
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			out[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return out, nil
}

// http1 is a header naming org.
func http1(org string) http.Header { return http.Header{"X-Org-Slug": {org}} }
