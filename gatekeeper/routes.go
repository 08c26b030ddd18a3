package gatekeeper

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/licenseledger/ledger/internal/fasthash"
)

// Route matching is net/http.ServeMux's: one mux for the allowlist, one
// for the feature rules, one for the seat routes, built once. ServeMux.Handler costs hundreds of
// nanoseconds and allocates for wildcard and unmatched paths, so its
// answers are memoised in a fixed-size, direct-mapped cache keyed by
// (method, path[, host]): a hit allocates nothing, a miss asks the muxes
// and replaces the slot. Memory is bounded whatever paths clients send.
const (
	routeSlots     = 4096 // a power of two
	maxCachedRoute = 512  // longer method+host+path keys are matched uncached
	noRule         = -1
)

type route struct {
	method, host, path string
	plain              bool // every byte of path is pathLiteral: path is its own escaped form
	routeMatch
}

// routeMatch is what a request line matched.
type routeMatch struct {
	allow  bool
	seat   bool  // a seat route (Config.SeatRoutes)
	stripe uint8 // spreads the counters (from the request line's hash)
	rule   int   // index in rules, or noRule
}

type router struct {
	allow     map[string]*http.ServeMux // by method, exactly as sent
	allowList []string                  // the effective allowlist, one entry per method set
	features  *http.ServeMux            // patterns with their path and host in lower case
	rules     []FeatureRule
	byPattern map[string]int  // folded pattern → rule
	seats     *http.ServeMux  // Config.SeatRoutes, folded as features; nil: none
	seatPats  map[string]bool // folded seat patterns (a redirect's target)
	hostKey   bool            // some pattern names a host: the host is part of the match
	seed      uint64
	slots     []atomic.Pointer[route]
}

func newRouter(allow []string, noDefaults bool, rules []FeatureRule, seats []string) (*router, error) {
	rt := &router{allow: map[string]*http.ServeMux{}, rules: normalizeRules(rules), byPattern: map[string]int{},
		seed: fasthash.NewSeed(), slots: make([]atomic.Pointer[route], routeSlots)}
	entries := allow
	if !noDefaults {
		entries = append(DefaultAllow(), allow...)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		methods, pattern, err := parseAllow(e)
		if err != nil {
			return nil, err
		}
		for _, m := range methods {
			if seen[m+" "+pattern] {
				continue
			}
			seen[m+" "+pattern] = true
			mux := rt.allow[m]
			if mux == nil {
				mux = http.NewServeMux()
				rt.allow[m] = mux
			}
			if err := register(mux, pattern, ruleHandler{idx: -1}); err != nil {
				return nil, fmt.Errorf("allow %q: %v", e, err)
			}
		}
		rt.allowList = append(rt.allowList, strings.Join(methods, ",")+" "+pattern)
		rt.hostKey = rt.hostKey || hasHost(pattern)
	}
	mux, err := buildFeatureMux(rt.rules)
	if err != nil {
		return nil, err
	}
	rt.features = mux
	for i, r := range rt.rules {
		rt.byPattern[foldPattern(r.Pattern)] = i
		rt.hostKey = rt.hostKey || hasHost(r.Pattern)
	}
	if len(seats) > 0 {
		if rt.seats, err = buildSeatMux(seats); err != nil {
			return nil, err
		}
		rt.seatPats = map[string]bool{}
		for _, p := range seats {
			rt.seatPats[foldPattern(p)] = true
			rt.hostKey = rt.hostKey || hasHost(p)
		}
	}
	return rt, nil
}

// parseAllow parses an allowlist entry "METHOD[,METHOD…] PATTERN".
func parseAllow(e string) (methods []string, pattern string, err error) {
	f := strings.Fields(e)
	if len(f) != 2 || strings.HasPrefix(f[0], "/") {
		return nil, "", fmt.Errorf("allow %q: want \"METHOD[,METHOD...] PATTERN\", e.g. \"GET,HEAD /status\": every entry names its methods", e)
	}
	for _, m := range strings.Split(f[0], ",") {
		if !validToken(m) || strings.ToUpper(m) != m {
			return nil, "", fmt.Errorf("allow %q: method %q: want an upper-case method such as GET", e, m)
		}
		if !slices.Contains(methods, m) {
			methods = append(methods, m)
		}
	}
	pattern = f[1]
	if i := strings.IndexByte(pattern, '/'); i < 0 {
		return nil, "", fmt.Errorf("allow %q: the pattern needs a path starting with '/'", e)
	}
	return methods, pattern, nil
}

// Allowlist returns the effective allowlist, one "METHODS PATTERN" entry
// each, defaults first (for the start log).
func (g *Gate) Allowlist() []string { return slices.Clone(g.routes.allowList) }

// foldPattern is a feature rule's pattern as it is matched: the method in
// upper case, the host and path in lower case (paths are matched in lower
// case too, foldCase), so that no case variant of a restricted route escapes it on
// a case-insensitive upstream.
func foldPattern(p string) string {
	p = strings.TrimSpace(p)
	if m, rest, ok := strings.Cut(p, " "); ok && !strings.HasPrefix(m, "/") {
		return upperASCII(m) + " " + foldCase(strings.TrimLeft(rest, " \t"))
	}
	return foldCase(p)
}

// hasHost reports whether a ServeMux pattern names a host.
func hasHost(pattern string) bool {
	if i := strings.IndexAny(pattern, " \t"); i >= 0 {
		pattern = strings.TrimLeft(pattern[i:], " \t")
	}
	return !strings.HasPrefix(pattern, "/")
}

// cached returns the route cache's answer for (method, host, path), nil
// when it holds none. Only requests whose path passed canonicalPath are ever
// cached, so a hit on a plain path (route.plain) also says that the same
// path, sent unescaped, is valid.
func (rt *router) cached(method, host, path string) *route {
	if !rt.hostKey {
		host = ""
	}
	if len(method)+len(host)+len(path) > maxCachedRoute {
		return nil
	}
	c := rt.slots[rt.hash(method, host, path)&(routeSlots-1)].Load()
	if c != nil && c.path == path && c.method == method && c.host == host {
		return c
	}
	return nil
}

// hash is the route cache's hash of a request line.
func (rt *router) hash(method, host, path string) uint64 {
	m := uint64(len(method))
	if len(method) > 0 {
		m |= uint64(method[0])<<8 | uint64(method[len(method)-1])<<16
	}
	h := fasthash.String(path, rt.seed^m*fasthash.K2)
	if host != "" {
		h ^= fasthash.String(host, rt.seed) * fasthash.K1
	}
	return h
}

// match returns whether the request is allowlisted, the feature rule it
// falls under (noRule: none) and whether it is a seat route, from the cache or, on a miss, from the
// muxes (then cached). path must be a canonical path (canonicalPath)
// decoded once.
func (rt *router) match(method, host, path string) routeMatch {
	if !rt.hostKey {
		host = ""
	}
	cacheable := len(method)+len(host)+len(path) <= maxCachedRoute
	var slot *atomic.Pointer[route]
	h := rt.hash(method, host, path)
	if cacheable {
		slot = &rt.slots[h&(routeSlots-1)]
		if c := slot.Load(); c != nil && c.path == path && c.method == method && c.host == host {
			return c.routeMatch
		}
	}
	m := routeMatch{stripe: uint8(h >> 32)}
	m.allow, m.rule, m.seat = rt.lookup(method, host, path)
	if slot != nil {
		slot.Store(&route{method: strings.Clone(method), host: strings.Clone(host), path: strings.Clone(path),
			plain: isPlain(path), routeMatch: m})
	}
	return m
}

// isPlain reports whether every byte of p stands for itself in a path.
func isPlain(p string) bool {
	for i := 0; i < len(p); i++ {
		if !pathLiteral[p[i]] {
			return false
		}
	}
	return true
}

// lookup asks the muxes: the allowlist with the method and path exactly
// as sent, the feature rules with the method in upper case and the host
// and path in lower case. A trailing-slash redirect (the rule "/a/" and
// the path "/a") does not allowlist, but does put the request under the
// redirect target's feature rule: what an upstream serves at "/a" is
// treated like what it serves under "/a/". The other way round too: a path
// with a trailing slash that no rule names falls under the rule of the
// path without it, since most upstreams serve "/a/" as "/a" (a rule must
// not be walked around by a slash; only restrictions widen so, never the
// allowlist). Seat routes match as feature rules do.
func (rt *router) lookup(method, host, path string) (allow bool, rule int, seat bool) {
	if mux := rt.allow[method]; mux != nil {
		r := &http.Request{Method: method, Host: host, URL: &url.URL{Path: path}}
		if h, _ := mux.Handler(r); isRule(h) {
			allow = true
		}
	}
	rule = noRule
	if len(rt.rules) > 0 || rt.seats != nil {
		r := &http.Request{Method: upperASCII(method), Host: lowerASCII(host), URL: &url.URL{Path: foldCase(path)}}
		rule, seat = rt.restrictions(r)
		if trimmed, ok := strings.CutSuffix(r.URL.Path, "/"); ok && trimmed != "" {
			r.URL.Path = trimmed
			r2, s2 := rt.restrictions(r)
			if rule == noRule {
				rule = r2
			}
			seat = seat || s2
		}
	}
	return allow, rule, seat
}

// restrictions returns the feature rule and whether a seat route match r
// (method, host and path already folded).
func (rt *router) restrictions(r *http.Request) (rule int, seat bool) {
	rule = noRule
	if len(rt.rules) > 0 {
		h, pattern := rt.features.Handler(r)
		if rh, ok := h.(ruleHandler); ok {
			rule = rh.idx
		} else if i, ok := rt.byPattern[pattern]; ok && pattern != "" {
			rule = i
		}
	}
	if rt.seats != nil {
		h, pattern := rt.seats.Handler(r)
		seat = isRule(h) || pattern != "" && rt.seatPats[pattern]
	}
	return rule, seat
}

func isRule(h http.Handler) bool {
	_, ok := h.(ruleHandler)
	return ok
}
