package gatekeeper

import (
	"fmt"
	"hash/maphash"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
)

// Route matching is net/http.ServeMux's: one mux for the allowlist, one
// for the feature rules, built once. ServeMux.Handler costs hundreds of
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
	allow              bool
	rule               int // index in rules, or noRule
}

type router struct {
	allow, features *http.ServeMux
	rules           []FeatureRule
	byPattern       map[string]int
	hostKey         bool // some pattern names a host: the host is part of the match
	seed            maphash.Seed
	slots           []atomic.Pointer[route]
}

func newRouter(allow []string, rules []FeatureRule) (*router, error) {
	rt := &router{allow: http.NewServeMux(), rules: normalizeRules(rules), byPattern: map[string]int{},
		seed: maphash.MakeSeed(), slots: make([]atomic.Pointer[route], routeSlots)}
	seen := map[string]bool{}
	for _, p := range append(DefaultAllow(), allow...) {
		if seen[p] {
			continue
		}
		seen[p] = true
		if err := register(rt.allow, p, ruleHandler{idx: -1}); err != nil {
			return nil, fmt.Errorf("allow pattern %q: %v", p, err)
		}
		rt.hostKey = rt.hostKey || hasHost(p)
	}
	mux, err := buildFeatureMux(rt.rules)
	if err != nil {
		return nil, err
	}
	rt.features = mux
	for i, r := range rt.rules {
		rt.byPattern[r.Pattern] = i
		rt.hostKey = rt.hostKey || hasHost(r.Pattern)
	}
	return rt, nil
}

// hasHost reports whether a ServeMux pattern names a host.
func hasHost(pattern string) bool {
	if i := strings.IndexAny(pattern, " \t"); i >= 0 {
		pattern = strings.TrimLeft(pattern[i:], " \t")
	}
	return !strings.HasPrefix(pattern, "/")
}

// match returns whether the request is allowlisted and the index of the
// feature rule it falls under (noRule: none), and a hash of the request
// line for spreading counters. r is the request if there is one (nil:
// one is built on a cache miss from method, host, path and raw).
func (rt *router) match(r *http.Request, method, host, path, raw string) (allow bool, rule int, h uint64) {
	if !rt.hostKey {
		host = ""
	}
	cacheable := len(method)+len(host)+len(path) <= maxCachedRoute
	var slot *atomic.Pointer[route]
	if cacheable {
		h = maphash.String(rt.seed, path) ^ fnv(method)
		if host != "" {
			h ^= maphash.String(rt.seed, host) * 0x9e3779b97f4a7c15
		}
		slot = &rt.slots[h&(routeSlots-1)]
		if c := slot.Load(); c != nil && c.path == path && c.method == method && c.host == host {
			return c.allow, c.rule, h
		}
	}
	if r == nil {
		r = &http.Request{Method: method, Host: host, URL: &url.URL{Path: path, RawPath: raw}}
	}
	allow, rule = rt.lookup(r)
	if slot != nil {
		slot.Store(&route{method: strings.Clone(method), host: strings.Clone(host), path: strings.Clone(path), allow: allow, rule: rule})
	}
	return allow, rule, h
}

// lookup asks the muxes. A trailing-slash redirect (the rule "/a/" and the
// path "/a") does not allowlist, but does put the request under the
// redirect target's feature rule: what an upstream serves at "/a" is
// treated like what it serves under "/a/".
func (rt *router) lookup(r *http.Request) (allow bool, rule int) {
	if h, _ := rt.allow.Handler(r); isRule(h) {
		allow = true
	}
	rule = noRule
	if len(rt.rules) > 0 {
		h, pattern := rt.features.Handler(r)
		if rh, ok := h.(ruleHandler); ok {
			rule = rh.idx
		} else if i, ok := rt.byPattern[pattern]; ok && pattern != "" {
			rule = i
		}
	}
	return allow, rule
}

func isRule(h http.Handler) bool {
	_, ok := h.(ruleHandler)
	return ok
}

// fnv is FNV-1a of a short string (a method), mixed into the seeded hash of
// the path.
func fnv(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}
