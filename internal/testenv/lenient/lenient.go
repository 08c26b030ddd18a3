// Package lenient reads request paths the way the most forgiving upstream
// stacks do, for tests that check that whatever the gatekeeper forwards
// reaches, on any upstream, the route the gatekeeper decided on.
//
// Normalize combines every leniency seen in real application servers and
// frameworks: '\' read as '/' (IIS, some Java and Windows stacks), ";"
// path parameters stripped from each segment (Tomcat, Jetty, Spring),
// percent-decoding applied twice (stacks that decode in a filter and again
// in the router), overlong UTF-8 forms of '.' and '/' mapped to those
// characters (old decoders), Unicode compatibility normalisation (NFKC:
// fullwidth '．' is '.'), case folding in both directions (IIS, ASP.NET:
// "ı" matches "I"), trailing dots and spaces of a segment dropped
// (Windows file names), empty segments merged and dot segments resolved.
package lenient

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strings"

	"golang.org/x/text/unicode/norm"
)

// Normalize returns the path an upstream with every leniency routes for
// raw, a request path (the query, if any, is dropped) in any escaping.
// The result is lower case, clean, and keeps a trailing slash.
func Normalize(raw string) string {
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		raw = raw[:i]
	}
	p := stripParams(strings.ReplaceAll(raw, "\\", "/"))
	p = decode(decode(p))
	p = overlong.Replace(p)
	p = stripParams(strings.ReplaceAll(p, "\\", "/"))
	p = norm.NFKC.String(p)
	p = Fold(p)
	segs := strings.Split(p, "/")
	for i, s := range segs {
		switch {
		case s == "":
		case strings.Trim(s, ".") == "":
			segs[i] = ".." // "..." is ".." to a stack that drops trailing dots
			if s == "." {
				segs[i] = "."
			}
		default:
			segs[i] = strings.TrimRight(s, ". ")
		}
	}
	p = strings.Join(segs, "/")
	trailing := strings.HasSuffix(p, "/")
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	p = path.Clean(p)
	if trailing && p != "/" {
		p += "/"
	}
	return p
}

// Fold folds case the way case-insensitive stacks compare: upper case
// first (ı → I, ſ → S), then lower.
func Fold(s string) string { return strings.ToLower(strings.ToUpper(s)) }

// stripParams removes ";…" up to the end of each segment.
func stripParams(p string) string {
	if !strings.Contains(p, ";") {
		return p
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if j := strings.IndexByte(s, ';'); j >= 0 {
			segs[i] = s[:j]
		}
	}
	return strings.Join(segs, "/")
}

// decode percent-decodes p, leaving malformed escapes as they are.
func decode(p string) string {
	if !strings.Contains(p, "%") {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) && ishex(p[i+1]) && ishex(p[i+2]) {
			d, _ := url.PathUnescape(p[i : i+3])
			b.WriteString(d)
			i += 2
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

func ishex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// overlong maps the overlong UTF-8 forms of '.', '/' and '\' to the
// characters old decoders took them for.
var overlong = strings.NewReplacer(
	"\xc0\xae", ".", "\xc0\xaf", "/", "\xc1\x9c", "/",
	"\xe0\x80\xae", ".", "\xe0\x80\xaf", "/",
)

// Route is one route of a test upstream: a path prefix (a whole path when
// it does not end in '/') and the route's name.
type Route struct{ Prefix, Name string }

// RouteOf returns the name of the first route p (a normalized or strict
// path) falls under, "other" for none.
func RouteOf(routes []Route, p string) string {
	for _, r := range routes {
		if p == r.Prefix || strings.HasSuffix(r.Prefix, "/") && (strings.HasPrefix(p, r.Prefix) || p+"/" == r.Prefix) {
			return r.Name
		}
	}
	return "other"
}

// Answer is what the test upstreams reply: the route they served, the org
// a path-mode upstream read from the path ("" for none), and the
// X-License-* headers they received.
type Answer struct {
	Route   string            `json:"route"`
	Org     string            `json:"org"`
	Path    string            `json:"path"` // the request path as received
	Headers map[string]string `json:"headers"`
}

// Handler is an upstream with every leniency: it routes Normalize of the
// request path as received (RequestURI) on routes, the method folded to
// upper case, and reads the org from orgPrefix (e.g. "/orgs/", matched
// after normalization; "" for none).
func Handler(routes []Route, orgPrefix string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := Normalize(r.RequestURI)
		a := Answer{Route: RouteOf(routes, p), Path: r.RequestURI}
		if orgPrefix != "" && strings.HasPrefix(p, orgPrefix) {
			a.Org, _, _ = strings.Cut(p[len(orgPrefix):], "/")
		}
		reply(w, r, a)
	})
}

// Strict is an upstream routing with Go's ServeMux (exact, case-sensitive,
// decoded once; unclean paths are redirected, answered as route
// "redirect").
func Strict(routes []Route) http.Handler {
	mux := http.NewServeMux()
	for _, rt := range routes {
		name := rt.Name
		pattern := rt.Prefix
		if strings.HasSuffix(pattern, "/") {
			pattern += "{rest...}"
		}
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			reply(w, r, Answer{Route: name, Path: r.RequestURI})
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		reply(w, r, Answer{Route: "other", Path: r.RequestURI})
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, r)
		if rec.Code >= 300 && rec.Code < 400 {
			reply(w, r, Answer{Route: "redirect", Path: r.RequestURI})
			return
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	})
}

func reply(w http.ResponseWriter, r *http.Request, a Answer) {
	a.Headers = map[string]string{}
	for k, v := range r.Header {
		if strings.HasPrefix(k, "X-License-") {
			a.Headers[k] = v[0]
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(a)
}
