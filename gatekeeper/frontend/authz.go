// Package frontend holds the gatekeeper's HTTP front ends around a
// gatekeeper.Gate: the /authz endpoint for nginx, Caddy, Traefik and
// Envoy, and the reverse proxy. cmd/gatekeeper serves them; ledger bench
// measures them.
package frontend

import (
	"net/http"
	"strings"

	"github.com/licenseledger/ledger/gatekeeper"
)

// Authz answers /authz and /authz/…, any method: 200 with the
// X-License-* headers for the proxy to copy upstream, or 403 with the
// denial body (license_state_unavailable included: nginx passes only 2xx,
// 401 and 403). The original request comes from one header family, never
// a fallback: original (X-Original-Method/-URI), forwarded
// (X-Forwarded-Method/-Uri) or path (this request's method and the path
// after /authz, Envoy's path_prefix).
func Authz(gate *gatekeeper.Gate, family string) http.Handler {
	mux := http.NewServeMux()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method, uri, host := originalRequest(r, family)
		var d gatekeeper.Decision
		if method == "" || uri == "" || uri[0] != '/' {
			d = gate.DecideFor(r.Context(), http.MethodGet, "/..", host, r.Header, r.RemoteAddr) // path_invalid
		} else {
			d = gate.DecideFor(r.Context(), method, uri, host, r.Header, r.RemoteAddr)
		}
		d = d.ForAuthz()
		if !d.Allowed {
			gatekeeper.WriteDenial(w, d)
			return
		}
		gatekeeper.SetUpstreamHeaders(w.Header(), d)
		gatekeeper.SetClientHeaders(w.Header(), d)
		w.WriteHeader(http.StatusOK)
	})
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
