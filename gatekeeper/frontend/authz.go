// Package frontend holds the gatekeeper's HTTP front ends around a
// gatekeeper.Gate: the /authz endpoint for nginx, Caddy, Traefik and
// Envoy, and the reverse proxy. cmd/gatekeeper serves them; ledger bench
// measures them.
package frontend

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/licenseledger/ledger/gatekeeper"
)

// Authz answers /authz and /authz/…, any method: 200 with the
// X-License-* headers for the proxy to copy upstream, or 403 with the
// denial (license_state_unavailable included: nginx passes only 2xx, 401
// and 403), as JSON or, when the original request's Accept prefers it,
// as the HTML page (Gate.WriteDenial). The original request comes from
// one header family, never a fallback: original (X-Original-Method/-URI),
// forwarded (X-Forwarded-Method/-Uri) or path (this request's method and
// the path after /authz, Envoy's path_prefix).
//
// Only callers it trusts are answered (AuthzTrusted, AuthzSecret); others
// get 403 authz_forbidden and nothing about any org. A request carrying
// the other family's headers and not the configured one's is answered 400
// authz_headers_mismatch, naming the --authz-headers value to set: a
// misconfigured proxy is told, not silently denied path_invalid.
func Authz(gate *gatekeeper.Gate, family string, opts ...AuthzOption) http.Handler {
	loopback, _ := gatekeeper.NewPeers(gatekeeper.DefaultTrustedProxies())
	a := &authz{gate: gate, family: family, trusted: loopback, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(a)
	}
	mux := http.NewServeMux()
	h := http.HandlerFunc(a.serve)
	mux.Handle("/authz", h)
	mux.Handle("/authz/", h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/authz" && r.URL.RawPath == "" && r.Method != http.MethodConnect {
			h(w, r) // what the mux would do, without its lookup
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// An AuthzOption configures Authz.
type AuthzOption func(*authz)

// AuthzTrusted answers only peers (by the connection's address, never a
// forwarded one) in peers; default loopback
// (gatekeeper.DefaultTrustedProxies).
func AuthzTrusted(peers *gatekeeper.Peers) AuthzOption {
	return func(a *authz) { a.trusted = peers }
}

// AuthzSecret also requires s in the X-Gatekeeper-Secret header of every
// request.
func AuthzSecret(s *Secret) AuthzOption { return func(a *authz) { a.secret = s } }

// AuthzLogger logs, once each, the refusals an operator must fix: a peer
// or a secret refused, a header family mismatch. Default: no logs.
func AuthzLogger(log *slog.Logger) AuthzOption { return func(a *authz) { a.log = log } }

type authz struct {
	gate    *gatekeeper.Gate
	family  string
	trusted *gatekeeper.Peers
	secret  *Secret
	log     *slog.Logger
	warned  [4]atomic.Bool // by warning: badPeer, badSecret, sentOriginal, sentForwarded
}

const (
	warnPeer = iota
	warnSecret
	warnOriginal
	warnForwarded
)

func (a *authz) serve(w http.ResponseWriter, r *http.Request) {
	if !a.permitted(r) {
		gatekeeper.WriteDenial(w, a.gate.Refusal(gatekeeper.CodeAuthzForbidden, http.StatusForbidden, ""))
		return
	}
	if sent := sentFamily(r, a.family); sent != "" {
		a.mismatch(w, r, sent)
		return
	}
	method, uri, host := originalRequest(r, a.family)
	var d gatekeeper.Decision
	if method == "" || uri == "" || uri[0] != '/' {
		d = a.gate.DecideFor(r.Context(), http.MethodGet, "/..", host, r.Header, r.RemoteAddr) // path_invalid
	} else {
		d = a.gate.DecideFor(r.Context(), method, uri, host, r.Header, r.RemoteAddr)
	}
	d = d.ForAuthz()
	if !d.Allowed {
		a.gate.WriteDenial(w, r, d)
		return
	}
	gatekeeper.SetUpstreamHeaders(w.Header(), d)
	gatekeeper.SetClientHeaders(w.Header(), d)
	w.WriteHeader(http.StatusOK)
}

// permitted reports whether r's peer is trusted and r carries the secret
// (when one is required).
func (a *authz) permitted(r *http.Request) bool {
	if !a.trusted.Trusted(r.RemoteAddr) {
		a.warnOnce(warnPeer, "/authz refused a peer outside --authz-trusted (403 authz_forbidden)", "peer", r.RemoteAddr)
		return false
	}
	if a.secret != nil && !a.secret.Match(first(r.Header, SecretHeader)) {
		a.warnOnce(warnSecret, "/authz refused a request without the --authz-secret-file secret in "+SecretHeader+" (403 authz_forbidden)", "peer", r.RemoteAddr)
		return false
	}
	return true
}

// mismatch answers a request that carries the family sent instead of the
// configured one.
func (a *authz) mismatch(w http.ResponseWriter, r *http.Request, sent string) {
	msg := fmt.Sprintf("the proxy sent %s but this gatekeeper reads %s: set --authz-headers %s (GATEKEEPER_AUTHZ_HEADERS=%s)",
		familyHeaders(sent), familyHeaders(a.family), sent, sent)
	which := warnOriginal
	if sent == "forwarded" {
		which = warnForwarded
	}
	a.warnOnce(which, "/authz got another header family than --authz-headers names (400 authz_headers_mismatch)",
		"authz_headers", a.family, "sent", sent, "fix", "--authz-headers "+sent, "peer", r.RemoteAddr)
	gatekeeper.WriteDenial(w, a.gate.Refusal(gatekeeper.CodeAuthzHeadersMismatch, http.StatusBadRequest, msg))
}

func (a *authz) warnOnce(which int, msg string, args ...any) {
	if !a.warned[which].Swap(true) {
		a.log.Warn(msg, args...)
	}
}

// sentFamily returns the header family r carries in place of the
// configured one, "" when there is none: with original or forwarded, the
// other family's method or URI header and none of its own; with path,
// either family's.
func sentFamily(r *http.Request, family string) string {
	h := r.Header
	orig := len(h["X-Original-Uri"]) > 0 || len(h["X-Original-Method"]) > 0
	fwd := len(h["X-Forwarded-Uri"]) > 0 || len(h["X-Forwarded-Method"]) > 0
	switch {
	case family == "original" && fwd && !orig:
		return "forwarded"
	case family == "forwarded" && orig && !fwd:
		return "original"
	case family == "path" && orig:
		return "original"
	case family == "path" && fwd:
		return "forwarded"
	}
	return ""
}

// familyHeaders names where a family carries the original request.
func familyHeaders(family string) string {
	switch family {
	case "original":
		return "X-Original-Method/X-Original-URI"
	case "forwarded":
		return "X-Forwarded-Method/X-Forwarded-Uri"
	}
	return "the method and the path after /authz"
}

// first is the first value of h[key], key in canonical form (Header.Get
// without canonicalizing the key on every request).
func first(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// originalRequest reads the method, request URI and host of the request
// being authorised.
func originalRequest(r *http.Request, family string) (method, uri, host string) {
	switch family {
	case "forwarded":
		host = first(r.Header, "X-Forwarded-Host")
		if host == "" {
			host = r.Host
		}
		return first(r.Header, "X-Forwarded-Method"), first(r.Header, "X-Forwarded-Uri"), host
	case "path":
		raw := r.URL.RawPath
		if raw == "" {
			raw = r.URL.EscapedPath()
		}
		uri = trimAuthzPrefix(raw)
		if r.URL.RawQuery != "" {
			uri += "?" + r.URL.RawQuery
		}
		return r.Method, uri, r.Host
	}
	return first(r.Header, "X-Original-Method"), first(r.Header, "X-Original-Uri"), r.Host
}

// trimAuthzPrefix returns the path after /authz (Envoy's path_prefix).
func trimAuthzPrefix(p string) string {
	rest := strings.TrimPrefix(p, "/authz")
	if rest == "" {
		return "/"
	}
	return rest
}
