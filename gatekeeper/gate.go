package gatekeeper

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/licenseledger/ledger/internal/coarseclock"
	"github.com/licenseledger/ledger/license"
)

// Gate decides per request whether an org may be served (design §6.2,
// §6.3). It is safe for concurrent use.
type Gate struct {
	src         Source
	fast        CachedSource     // src, when it has the fast path
	gens        GenerationSource // src, when it has generations
	orgFrom     OrgSource
	proxies     *Peers // whose org header is honoured (header mode)
	allowNoOrg  bool
	enforce     *bool
	timeout     time.Duration
	now         func() int64 // Unix nanoseconds (unixNanos); nil: the default clock
	routes      *router
	cache       *entryCache
	stats       counters
	seats       seatCounters  // apart from stats: the decision counters keep their layout
	tokens      TokenVerifier // jwt mode
	tokenCookie string        // jwt mode
	renewal     string        // Config.RenewalURL, validated
}

// New returns a Gate deciding from src with cfg.
func New(src Source, cfg Config) (*Gate, error) {
	if src == nil {
		return nil, errors.New("gatekeeper: no source")
	}
	if cfg.DecisionTimeout < 0 {
		return nil, fmt.Errorf("gatekeeper: decision timeout %v", cfg.DecisionTimeout)
	}
	g := &Gate{src: src, orgFrom: cfg.OrgSource.orDefault(), allowNoOrg: cfg.AllowNoOrg,
		timeout: cfg.DecisionTimeout}
	if g.orgFrom.kind == OrgFromJWT {
		if cfg.Tokens == nil {
			return nil, fmt.Errorf("gatekeeper: org source %s needs a token verifier (Config.Tokens)", g.orgFrom)
		}
		g.tokens, g.tokenCookie = cfg.Tokens, cfg.TokenCookie
	}
	g.fast, _ = src.(CachedSource)
	g.gens, _ = src.(GenerationSource)
	if cfg.Enforce != nil {
		v := *cfg.Enforce
		g.enforce = &v
	}
	if g.timeout == 0 {
		g.timeout = DefaultDecisionTimeout
	}
	if now := cfg.Now; now != nil {
		g.now = func() int64 { return unixNanos(now()) }
	}
	proxies := cfg.TrustedProxies
	if proxies == nil {
		proxies = DefaultTrustedProxies()
	}
	var err error
	if g.proxies, err = NewPeers(proxies); err != nil {
		return nil, fmt.Errorf("gatekeeper: trusted proxies: %w", err)
	}
	rt, err := newRouter(cfg.Allow, cfg.NoDefaultAllow, cfg.Features, cfg.SeatRoutes)
	if err != nil {
		return nil, fmt.Errorf("gatekeeper: %w", err)
	}
	g.routes = rt
	if g.renewal, err = renewalURL(cfg.RenewalURL); err != nil {
		return nil, fmt.Errorf("gatekeeper: %w", err)
	}
	memos, _ := src.(MemoSource)
	g.cache = newEntryCache(memos, rt.rules)
	return g, nil
}

// nanos is the time decisions are made at.
func (g *Gate) nanos() int64 {
	if g.now == nil {
		return coarseclock.Default.Nanos()
	}
	return g.now()
}

// OrgSource is the org source in use.
func (g *Gate) OrgSource() OrgSource { return g.orgFrom }

// Decide decides r as the request it is (the proxy and the middleware).
// It reads r and does not change it; PrepareRequest does.
func (g *Gate) Decide(r *http.Request) (d Decision) {
	u := r.URL
	if u == nil {
		g.denyInto(&d, CodePathInvalid)
		return d
	}
	// The common case in one lookup: a path sent as it is, whose route is
	// cached, was found valid before and is its own escaped form.
	if u.RawPath == "" {
		if c := g.routes.cached(r.Method, r.Host, u.Path); c != nil && c.plain {
			g.decide(r.Context(), &d, r, r.Method, u.Path, u.Path, r.Host, r.Header, r.RemoteAddr, &c.routeMatch)
			return d
		}
	}
	raw, ok := plainPath(u)
	if !ok {
		// The path as the client sent it is judged (RawPath), and so is
		// the form it goes upstream in (Path escaped again): url.URL keeps
		// a RawPath that does not decode to Path out of EscapedPath.
		if rp := u.RawPath; rp != "" && !canonicalPath(rp) {
			g.denyInto(&d, CodePathInvalid)
			return d
		}
		if raw = escapedPath(u); !canonicalPath(raw) {
			g.denyInto(&d, CodePathInvalid)
			return d
		}
	}
	g.decide(r.Context(), &d, r, r.Method, raw, u.Path, r.Host, r.Header, r.RemoteAddr, nil)
	return d
}

// escapedPath is u.EscapedPath() without its cost in the common case: a
// path with no RawPath whose bytes all stand for themselves in a path
// (letters, digits, "-._~" and "$&+,/:;=@") is its own escaped form.
func escapedPath(u *url.URL) string {
	if u.RawPath == "" {
		p := u.Path
		i := 0
		for i < len(p) && pathLiteral[p[i]] {
			i++
		}
		if i == len(p) && p != "" {
			return p
		}
	}
	return u.EscapedPath()
}

// plainPath is the common case of escapedPath and canonicalPath in one
// scan: a path with no RawPath, made of bytes that stand for themselves,
// with no '.', no ';' and no empty segment, is canonical and its own
// escaped form. ok false sends the caller to the full checks.
func plainPath(u *url.URL) (string, bool) {
	p := u.Path
	if u.RawPath != "" || p == "" || p[0] != '/' {
		return "", false
	}
	for i := 1; i < len(p); i++ {
		c := p[i]
		if !pathLiteral[c] || c == '.' || c == ';' || c == '/' && p[i-1] == '/' {
			return "", false
		}
	}
	return p, true
}

// pathLiteral marks the bytes net/url leaves unescaped in a path.
var pathLiteral = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-._~$&+,/:;=@" {
		t[c] = true
	}
	return t
}()

// DecideFor decides a request described rather than received: the /authz
// front end passes the original method and request URI (path in its
// escaped form as sent, with or without the query, e.g. nginx's
// $request_uri), the original host, the headers (the org header and
// X-License-Min-Seq are read from hdr) and the auth request's peer. hdr is
// not changed.
func (g *Gate) DecideFor(ctx context.Context, method, uri, host string, hdr http.Header, remoteAddr string) (d Decision) {
	raw := uri
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		raw = raw[:i]
	}
	// A cached plain path is valid, and decodes to itself.
	if c := g.routes.cached(method, host, raw); c != nil && c.plain {
		g.decide(ctx, &d, nil, method, raw, raw, host, hdr, remoteAddr, &c.routeMatch)
		return d
	}
	if !canonicalPath(raw) {
		g.denyInto(&d, CodePathInvalid)
		return d
	}
	path, err := url.PathUnescape(raw) // cannot fail on a canonical path
	if err != nil {
		g.denyInto(&d, CodePathInvalid)
		return d
	}
	g.decide(ctx, &d, nil, method, raw, path, host, hdr, remoteAddr, nil)
	return d
}

// denyInto makes d a denial with code.
func (g *Gate) denyInto(d *Decision, code string) {
	d.Allowed, d.Status, d.Code, d.Message = false, statusOf(code), code, messageOf(code)
	g.stats.count(d)
}

// decide runs the checks after the path's (raw is valid, path is raw
// decoded once) in order — org, route, state, decision — into d, which
// starts zero. m is the route's match when already known (nil: match).
func (g *Gate) decide(ctx context.Context, d *Decision, r *http.Request, method, raw, path, host string, hdr http.Header, remoteAddr string, m *routeMatch) {
	org, res := g.orgOf(ctx, path, host, hdr, remoteAddr)
	d.dropOrgHdr = res == orgIgnored
	switch res {
	case orgBad:
		g.denyInto(d, CodeOrgInvalid)
		return
	case orgPrefixOnly:
		g.denyInto(d, CodeOrgRequired)
		return
	case orgNoToken, orgBadToken:
		g.denyInto(d, CodeOrgUnauthenticated)
		d.badToken = res == orgBadToken
		return
	case orgNone, orgIgnored:
		if !g.allowNoOrg {
			g.denyInto(d, CodeOrgRequired)
			return
		}
		org = license.InstanceOrg
	}
	if m == nil {
		rm := g.routes.match(method, host, path)
		m = &rm
	}
	allow, rule, seat := m.allow, m.rule, m.seat
	d.Org, d.Allowlisted, d.resultStripe = org, allow, m.stripe

	e, err := g.entryFor(ctx, org, minSeqOf(hdr))
	if err != nil {
		switch {
		case allow:
			d.Allowed, d.Status = true, http.StatusOK
		case g.enforce != nil && !*g.enforce:
			d.Allowed, d.Status, d.Unenforced = true, http.StatusOK, true
		default:
			g.denyInto(d, CodeStateUnavailable)
			return
		}
		g.stats.count(d)
		return
	}
	v := e.at(g.nanos())
	d.LicenseStatus, d.Expires, d.hdr, d.orgHdr = v.status, v.expires, &v.hdr, &e.orgHdr
	enforced := e.enforced
	if g.enforce != nil {
		enforced = *g.enforce
	}
	switch {
	case allow:
		d.Allowed, d.Status = true, http.StatusOK
	case !enforced:
		d.Allowed, d.Status, d.Unenforced = true, http.StatusOK, true
		if seat && v.seat != nil {
			g.seatCheck(d, v.seat, false) // hard mode unenforced warns as soft does
		}
	case v.code != "":
		g.denyInto(d, v.code)
		d.Reason = v.reason
		return
	case rule != noRule && !v.ruleOK[rule]:
		g.denyInto(d, CodeFeatureNotLicensed)
		d.Message = v.ruleMsg[rule]
		return
	case seat && v.seat != nil:
		if g.seatCheck(d, v.seat, true) {
			return
		}
	default:
		d.Allowed, d.Status = true, http.StatusOK
	}
	g.stats.count(d)
}

// seatCheck decides the seat check of a request on a seat route that
// passed every other check, and counts it: enforced, over the limit in
// hard mode, it denies d (counted) and reports true; otherwise d is
// allowed (already, when not enforced) and, over the limit, gets the
// headers with the seat warning. Out of line: decide's common path stays
// as it was.
//
//go:noinline
func (g *Gate) seatCheck(d *Decision, s *seatView, enforced bool) (denied bool) {
	if enforced && s.over && s.hard {
		g.seats.count(d.resultStripe, idxSeatHardDenied)
		g.denyInto(d, CodeUsersLimitReached)
		d.Message = s.msg
		return true
	}
	if enforced {
		d.Allowed, d.Status = true, http.StatusOK
	}
	i := idxSeatSoftUnder
	if s.hard {
		i = idxSeatHardUnder
	}
	if s.over {
		i++ // warned
		d.hdr = &s.hdr
	}
	g.seats.count(d.resultStripe, i)
	return false
}

// entryFor returns org's decision entry. Without a consistency token, an
// entry found current at the source's present generation is used as it is
// (one lookup by org name); otherwise the source is asked (state).
func (g *Gate) entryFor(ctx context.Context, org string, minSeq uint64) (*entry, error) {
	if g.gens == nil || minSeq != 0 {
		own, inst, err := g.state(ctx, org, minSeq)
		if err != nil {
			return nil, err
		}
		return g.cache.get(org, own, inst), nil
	}
	gen := g.gens.Generation()
	e, slot := g.cache.current(org, gen)
	if e != nil {
		return e, nil
	}
	own, inst, err := g.state(ctx, org, 0)
	if err != nil {
		return nil, err
	}
	e = g.cache.get(org, own, inst)
	g.cache.found(slot, e, gen)
	return e, nil
}

// state asks the Source: the fast path first, then State under the
// decision deadline. A state delivered after the deadline counts as
// unavailable.
func (g *Gate) state(ctx context.Context, org string, minSeq uint64) (own, inst *license.OrgState, err error) {
	if g.fast != nil {
		if own, inst, ok := g.fast.CachedState(org, minSeq); ok {
			return own, inst, nil
		}
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	own, inst, err = g.src.State(ctx, org, minSeq)
	if err == nil && ctx.Err() != nil {
		err = fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
	}
	return own, inst, err
}

// PrepareRequest readies r for the upstream after d: on an allowed
// request it puts the path in its canonical escaping (the path decoded
// once, escaped as Go does: the upstream routes exactly what the gate
// matched, whatever spelling the client chose); it strips every
// client-sent X-License-* header, removes the org header when it came
// from an untrusted peer (with its '_' and case variants, always), and on
// an allowed request sets the X-License-* headers (SetUpstreamHeaders).
// It changes r.Header in place.
func (g *Gate) PrepareRequest(r *http.Request, d Decision) {
	if d.Allowed && r.URL != nil && r.URL.RawPath != "" {
		canonicalURL(r.URL) // the upstream gets the path the gate decided on
	}
	h := r.Header
	if h == nil {
		h = http.Header{}
		r.Header = h
	}
	name := g.orgFrom.header
	for k := range h {
		switch {
		case isLicenseHeader(k):
			delete(h, k)
		case name != "" && sameHeader(k, name) && (k != name || d.dropOrgHdr):
			delete(h, k)
		}
	}
	if d.Allowed {
		setUpstream(h, d, true) // every X-License-* header was just removed
	}
}

// Middleware enforces licenses in front of next: it decides each request,
// answers a denial (WriteDenial: the JSON body, or the HTML page for a
// browser; 503 for license_state_unavailable, 403 otherwise), or
// prepares the request (PrepareRequest) and calls next, with
// X-License-Warning on the response in grace and, on a seat route, over
// the org's seats (SetClientHeaders).
func (g *Gate) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := g.Decide(r)
		g.PrepareRequest(r, d)
		if !d.Allowed {
			g.WriteDenial(w, r, d)
			return
		}
		SetClientHeaders(w.Header(), d)
		next.ServeHTTP(w, r)
	})
}
