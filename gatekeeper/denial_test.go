package gatekeeper

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The browser accept header of a page navigation (Chrome, Firefox).
const browserAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"

func TestPrefersHTML(t *testing.T) {
	for accept, want := range map[string]bool{
		browserAccept:                       true,
		"text/html":                         true,
		"TEXT/HTML; charset=utf-8":          true,
		"application/json;q=0.5, text/html": true,
		"":                                  false,
		"*/*":                               false,
		"application/json":                  false,
		"application/json, text/html":       false, // a tie: the API client keeps JSON
		"text/html;q=0, */*":                false,
		"text/html;q=0.4, application/json": false,
	} {
		if got := PrefersHTML(accept); got != want {
			t.Errorf("PrefersHTML(%q) = %v, want %v", accept, got, want)
		}
	}
}

// A browser gets a page saying what is wrong and where to renew, with
// the status and X-License-Error of the JSON denial; everything on it is
// escaped, and it may load nothing.
func TestDenialPage(t *testing.T) {
	w := decisionWorld(t)
	c := newClock(tExpired)
	renewal := `https://billing.example.com/renew?from=gate&org={org}&note="<b>x</b>"`
	g := newGate(t, w, c, Config{RenewalURL: renewal})
	serve := func(org, accept string) *httptest.ResponseRecorder {
		r := req(t, "GET", "/app", org, local)
		if accept != "" {
			r.Header.Set("Accept", accept)
		}
		rec := httptest.NewRecorder()
		g.Middleware(http.NotFoundHandler()).ServeHTTP(rec, r)
		return rec
	}
	rec := serve("acme", browserAccept)
	body, h := rec.Body.String(), rec.Header()
	if rec.Code != 403 || h.Get(HeaderError) != CodeLicenseExpired || h.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("page: %d %v", rec.Code, h)
	}
	for k, v := range map[string]string{"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
		"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"} {
		if h.Get(k) != v {
			t.Errorf("%s: %q, want %q", k, h.Get(k), v)
		}
	}
	for _, want := range []string{"<title>License expired</title>", "<dd>acme</dd>", "<dd>expired</dd>",
		`<time datetime="2027-11-01T00:00:00Z">1 November 2027, 00:00 UTC</time>`,
		`href="https://billing.example.com/renew?from=gate&amp;org=acme&amp;note=%22%3cb%3ex%3c/b%3e%22"`,
		"license_expired"} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %s:\n%s", want, body)
		}
	}
	for _, never := range []string{"<b>", "src=", "<link", "<script", "@import", "url("} {
		if strings.Contains(body, never) {
			t.Errorf("the page holds %q:\n%s", never, body)
		}
	}

	// A revoked license: the reason in words, no expiry (the license is
	// not trusted), the default renewal link on this site.
	g2 := newGate(t, w, newClock(t1), Config{})
	rec = httptest.NewRecorder()
	r := req(t, "GET", "/app", "revoked", local)
	r.Header.Set("Accept", browserAccept)
	g2.Middleware(http.NotFoundHandler()).ServeHTTP(rec, r)
	body = rec.Body.String()
	if rec.Code != 403 || rec.Header().Get(HeaderReason) != "revoked" || !strings.Contains(body, "<dd>not valid (revoked)</dd>") ||
		!strings.Contains(body, `href="/ui/license/?org=revoked"`) || strings.Contains(body, "<time") {
		t.Errorf("revoked: %d %v\n%s", rec.Code, rec.Header(), body)
	}

	// API clients keep the JSON body, byte for byte.
	want := httptest.NewRecorder()
	WriteDenial(want, g.Decide(req(t, "GET", "/app", "acme", local)))
	for _, accept := range []string{"", "*/*", "application/json", "application/json, text/html"} {
		rec := serve("acme", accept)
		if rec.Code != 403 || rec.Header().Get("Content-Type") != "application/json" || rec.Body.String() != want.Body.String() {
			t.Errorf("Accept %q: %d %v %s", accept, rec.Code, rec.Header(), rec.Body)
		}
	}
}

func TestDecisionExpires(t *testing.T) {
	w := decisionWorld(t)
	g := newGate(t, w, newClock(t1), Config{})
	if d := g.Decide(req(t, "GET", "/app", "acme", local)); !d.Expires.Equal(expires) {
		t.Errorf("valid: expires %v, want %v", d.Expires, expires)
	}
	for _, org := range []string{"nobody", "revoked"} {
		if d := g.Decide(req(t, "GET", "/app", org, local)); !d.Expires.IsZero() {
			t.Errorf("%s: expires %v, want none", org, d.Expires)
		}
	}
}

func TestRenewalURL(t *testing.T) {
	for _, ok := range []string{"", "/ui/license/?org={org}", "https://billing.example.com/{org}/renew", "http://x/"} {
		if err := CheckRenewalURL(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"javascript:alert(1)", "ui/license", "//evil.example/{org}", "data:text/html,x", "https://"} {
		if err := CheckRenewalURL(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
		if _, err := New(newWorld(t), Config{RenewalURL: bad}); err == nil {
			t.Errorf("New accepted the renewal URL %q", bad)
		}
	}
}
