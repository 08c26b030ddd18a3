package proxies_test

import (
	"encoding/json"
	"io"
	"maps"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/testenv/proxies"
)

// variant is one shipped snippet run for real.
type variant struct {
	name   string
	run    func(testing.TB, proxies.Setup) string
	file   string
	family string // the gatekeeper's --authz-headers for it
	// layer: the platform's session endpoint names the org (auth-layer
	// variants); otherwise the gatekeeper takes it from a token (jwt).
	layer bool
	// rebuilds: the proxy cannot pass an auth answer's body and writes
	// its own (nginx).
	rebuilds bool
}

var variants = []variant{
	{"nginx", proxies.Nginx, proxies.NginxJWT, "original", false, true},
	{"nginx-auth-layer", proxies.Nginx, proxies.NginxAuthLayer, "original", true, true},
	{"caddy", proxies.Caddy, proxies.CaddyJWT, "forwarded", false, false},
	{"caddy-auth-layer", proxies.Caddy, proxies.CaddyAuthLayer, "forwarded", true, false},
}

// signIn returns the headers that make the client a member of org: the
// platform's session cookie, or a token.
func (v variant) signIn(org string) map[string]string {
	if v.layer {
		return map[string]string{"Cookie": sessionCookie + "=" + sessionPrefix + org}
	}
	return map[string]string{"Authorization": "Bearer " + tokenPrefix + org}
}

// appOrgHeader is the X-Org-Slug the app gets for a client of org: the
// platform's value, or none (the token's org is X-License-Org).
func (v variant) appOrgHeader(org string) string {
	if v.layer {
		return org
	}
	return ""
}

// setup is a proxy running a variant in front of the stubs.
type setup struct {
	auth *authStub
	plat *platform // auth-layer variants
	up   *upstream
	base string
}

// start runs v in front of fresh stubs; the auth stub requires authzSecret
// when set, and the proxy sends proxySecret when set.
func start(t *testing.T, v variant, authzSecret, proxySecret string) *setup {
	t.Helper()
	s := &setup{auth: newAuthStub(t, v.family, !v.layer, authzSecret), up: newUpstream(t)}
	cfg := proxies.Setup{File: v.file, Authz: s.auth.addr(), Upstream: s.up.addr(), Secret: proxySecret}
	if v.layer {
		s.plat = newPlatform(t)
		cfg.Session = s.plat.addr()
	}
	begin := time.Now()
	s.base = v.run(t, cfg)
	t.Logf("%s started in %v at %s", v.file, time.Since(begin).Round(time.Millisecond), s.base)
	return s
}

var client = &http.Client{Timeout: 10 * time.Second}

func with(a map[string]string, b ...map[string]string) map[string]string {
	out := maps.Clone(a)
	for _, m := range b {
		maps.Copy(out, m)
	}
	return out
}

func do(t *testing.T, method, url string, body string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// reachedUpstream decodes an allowed response, which the upstream echoed.
func reachedUpstream(t *testing.T, resp *http.Response, body []byte) echo {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200; body %s", resp.StatusCode, body)
	}
	var e echo
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("not the upstream's echo: %v: %s", err, body)
	}
	return e
}

// denial is the JSON body of a denial.
type denial struct {
	Error string  `json:"error"`
	Org   *string `json:"org"`
}

// denied checks a denial's status, X-License-Error and JSON body, and
// returns the body.
func denied(t *testing.T, resp *http.Response, body []byte, status int, code string) denial {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if got := resp.Header.Get("X-License-Error"); got != code {
		t.Errorf("X-License-Error = %q, want %s", got, code)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var d denial
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatalf("denial body is not JSON: %v: %s", err, body)
	}
	if d.Error != code {
		t.Errorf("denial body %s, want error %s", body, code)
	}
	return d
}

// noForgery fails if any X-License-* value the upstream got contains
// "forged".
func noForgery(t *testing.T, h http.Header) {
	t.Helper()
	for k, vs := range h {
		if !strings.HasPrefix(k, "X-License-") {
			continue
		}
		for _, v := range vs {
			if strings.Contains(v, "forged") {
				t.Errorf("client-sent %s: %q reached the upstream", k, v)
			}
		}
	}
}

// orgHeaderIs checks the X-Org-Slug the upstream got.
func orgHeaderIs(t *testing.T, h http.Header, want string) {
	t.Helper()
	got := h.Values("X-Org-Slug")
	if want == "" && len(got) != 0 || want != "" && (len(got) != 1 || got[0] != want) {
		t.Errorf("upstream X-Org-Slug = %q, want %q", got, want)
	}
}

func TestProxies(t *testing.T) {
	t.Parallel()
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			testVariant(t, v)
		})
	}
}

func testVariant(t *testing.T, v variant) {
	s := start(t, v, "", "")
	auth, up, base := s.auth, s.up, s.base
	// Every request of a client also claims acme's org: the header must
	// never matter.
	claim := map[string]string{"X-Org-Slug": "acme"}

	t.Run("allowed", func(t *testing.T) {
		resp, body := do(t, "POST", base+"/api/things?x=1&y=two", "hello", with(v.signIn("acme"), map[string]string{
			"X-Org-Slug":        "evil-corp",
			"X-License-Min-Seq": "42",
		}))
		e := reachedUpstream(t, resp, body)
		if e.Method != "POST" || e.URI != "/api/things?x=1&y=two" || e.Body != "hello" {
			t.Errorf("upstream got %s %s body %q, want POST /api/things?x=1&y=two body hello", e.Method, e.URI, e.Body)
		}
		for k, want := range licenseHeaders {
			if got := e.Headers.Values(k); len(got) != 1 || got[0] != want {
				t.Errorf("upstream %s = %q, want [%q]", k, got, want)
			}
		}
		orgHeaderIs(t, e.Headers, v.appOrgHeader("acme"))
		for _, k := range []string{"X-License-Warning", "X-License-Error", "X-License-Min-Seq"} {
			if v, ok := e.Headers[k]; ok {
				t.Errorf("upstream got %s: %q", k, v)
			}
		}
		if v, ok := resp.Header["X-License-Warning"]; ok {
			t.Errorf("client got X-License-Warning %q outside grace", v)
		}
		call := oneCall(t, auth)
		want := authCall{Method: "POST", URI: "/api/things?x=1&y=two", Org: "acme", OrgHeader: v.appOrgHeader("acme"), MinSeq: "42"}
		if call != want {
			t.Errorf("auth service asked about %+v, want %+v", call, want)
		}
		if v.layer {
			calls := s.plat.take()
			if len(calls) != 1 || calls[0].OrgHeader != "" || calls[0].Session != sessionPrefix+"acme" {
				t.Errorf("session endpoint asked %+v, want once, with the session and without the client's org header", calls)
			}
		}
	})

	t.Run("client org header ignored", func(t *testing.T) {
		signIns := []map[string]string{v.signIn("globex")}
		if !v.layer {
			// The token in a cookie (--jwt-cookie) reaches the gatekeeper too.
			signIns = append(signIns, map[string]string{"Cookie": tokenCookie + "=" + tokenPrefix + "globex"})
		}
		for _, signIn := range signIns {
			resp, body := do(t, "GET", base+"/app", "", with(signIn, claim))
			e := reachedUpstream(t, resp, body)
			if got := e.Headers.Get("X-License-Org"); got != "globex" {
				t.Errorf("upstream X-License-Org = %q, want globex", got)
			}
			orgHeaderIs(t, e.Headers, v.appOrgHeader("globex"))
			call := oneCall(t, auth)
			if call.Org != "globex" || call.OrgHeader != v.appOrgHeader("globex") {
				t.Errorf("auth service decided for %q with X-Org-Slug %q, want globex and %q", call.Org, call.OrgHeader, v.appOrgHeader("globex"))
			}
		}
		if v.layer {
			s.plat.take()
		}
	})

	t.Run("forged headers", func(t *testing.T) {
		forged := map[string]string{
			"X-License-Status":    "forged",
			"X-License-Org":       "forged",
			"X-License-Tier":      "forged",
			"X-License-Warning":   "forged",
			"X-License-Error":     "forged",
			"X-Gatekeeper-Secret": "forged",
		}
		resp, body := do(t, "GET", base+"/forged", "", with(v.signIn("acme"), forged))
		e := reachedUpstream(t, resp, body)
		noForgery(t, e.Headers)
		if got := e.Headers.Values("X-License-Status"); len(got) != 1 || got[0] != "valid" {
			t.Errorf("upstream X-License-Status = %q, want [valid]", got)
		}
		if got := resp.Header.Values("X-License-Warning"); len(got) != 0 {
			t.Errorf("client got X-License-Warning %q", got)
		}
		if call := oneCall(t, auth); call.Secret != "" {
			t.Errorf("a client-sent X-Gatekeeper-Secret reached the gatekeeper: %q", call.Secret)
		}

		// An allowed answer without X-License-* headers must not let the
		// client's through either, nor put anything in their place.
		resp, body = do(t, "GET", base+"/bare", "", with(v.signIn("acme"), forged))
		e = reachedUpstream(t, resp, body)
		for k, val := range e.Headers {
			if strings.HasPrefix(k, "X-License-") {
				t.Errorf("upstream got %s: %q after an answer without it", k, val)
			}
		}
		auth.take(t)
		if v.layer {
			s.plat.take()
		}
	})

	t.Run("unauthenticated", func(t *testing.T) {
		hits := up.hits.Load()
		resp, body := do(t, "GET", base+"/app", "", claim)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401; body %s", resp.StatusCode, body)
		}
		switch {
		case !v.layer:
			// The gatekeeper's 401, with its challenge.
			if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
				t.Errorf("WWW-Authenticate = %q, want Bearer…", got)
			}
			denied(t, resp, body, http.StatusUnauthorized, "org_unauthenticated")
			if call := oneCall(t, auth); call.Org != "" || call.OrgHeader != "" {
				t.Errorf("auth service asked about %+v: the client's org header reached it", call)
			}
		case v.rebuilds:
			denied(t, resp, body, http.StatusUnauthorized, "org_unauthenticated")
			fallthrough
		default:
			// The session endpoint's 401 (nginx with its challenge, Caddy
			// as it was written); the gatekeeper is not asked.
			if got := resp.Header.Get("WWW-Authenticate"); got != `Session realm="platform"` {
				t.Errorf("WWW-Authenticate = %q, want the session endpoint's", got)
			}
			if calls := auth.take(t); len(calls) != 0 {
				t.Errorf("the gatekeeper was asked %+v without a session", calls)
			}
			if calls := s.plat.take(); len(calls) != 1 || calls[0].OrgHeader != "" {
				t.Errorf("session endpoint asked %+v, want once, without the client's org header", calls)
			}
		}

		if v.layer {
			// Signed in, but the session names no org: the client's claim
			// still does not count.
			resp, body := do(t, "GET", base+"/app", "", with(map[string]string{"Cookie": sessionCookie + "=" + noOrgSession}, claim))
			denied(t, resp, body, http.StatusForbidden, "org_required")
			if call := oneCall(t, auth); call.OrgHeader != "" {
				t.Errorf("the gatekeeper got X-Org-Slug %q from a session without an org", call.OrgHeader)
			}
			s.plat.take()
		}
		if n := up.hits.Load() - hits; n != 0 {
			t.Errorf("unauthenticated requests reached the upstream %d times", n)
		}
	})

	t.Run("denied", func(t *testing.T) {
		hits := up.hits.Load()
		resp, body := do(t, "GET", base+"/deny/this?q=1", "", with(v.signIn("acme"), claim))
		d := denied(t, resp, body, http.StatusForbidden, "license_expired")
		// nginx names the org it knows: the platform's; in jwt mode only the
		// gatekeeper knows it, and nginx cannot read its body.
		if v.rebuilds && !v.layer {
			if d.Org != nil && *d.Org != "acme" {
				t.Errorf("denial body %s names another org than acme", body)
			}
		} else if d.Org == nil || *d.Org != "acme" {
			t.Errorf("denial body %s, want org acme", body)
		}
		call := oneCall(t, auth)
		if want := (authCall{Method: "GET", URI: "/deny/this?q=1", Org: "acme", OrgHeader: v.appOrgHeader("acme")}); call != want {
			t.Errorf("auth service asked about %+v, want %+v", call, want)
		}

		// Whatever the client sends as its org, the body stays JSON.
		resp, body = do(t, "GET", base+"/deny", "", with(v.signIn("acme"), map[string]string{"X-Org-Slug": `x","error":"ok`}))
		denied(t, resp, body, http.StatusForbidden, "license_expired")
		auth.take(t)

		// A path the gatekeeper refuses to decide on is the client's error.
		resp, body = do(t, "GET", base+"/a/%2e%2e/b", "", v.signIn("acme"))
		denied(t, resp, body, http.StatusBadRequest, "path_invalid")
		auth.take(t)

		if n := up.hits.Load() - hits; n != 0 {
			t.Errorf("denied requests reached the upstream %d times", n)
		}
		if v.layer {
			s.plat.take()
		}
	})

	t.Run("grace", func(t *testing.T) {
		resp, body := do(t, "GET", base+"/grace", "", v.signIn("acme"))
		e := reachedUpstream(t, resp, body)
		if got := resp.Header.Values("X-License-Warning"); len(got) != 1 || got[0] != graceWarning {
			t.Errorf("client X-License-Warning = %q, want [%q]", got, graceWarning)
		}
		if got := e.Headers.Get("X-License-Status"); got != "grace" {
			t.Errorf("upstream X-License-Status = %q, want grace", got)
		}
		if v, ok := e.Headers["X-License-Warning"]; ok {
			t.Errorf("upstream got X-License-Warning %q (it is for the client)", v)
		}
		auth.take(t)

		// The app's own header of that name never replaces or doubles it.
		resp, body = do(t, "GET", base+"/grace/appwarn", "", v.signIn("acme"))
		reachedUpstream(t, resp, body)
		if got := resp.Header.Values("X-License-Warning"); len(got) != 1 || got[0] != graceWarning {
			t.Errorf("client X-License-Warning = %q, want [%q]", got, graceWarning)
		}
		resp, body = do(t, "GET", base+"/appwarn", "", v.signIn("acme"))
		reachedUpstream(t, resp, body)
		if got := resp.Header.Values("X-License-Warning"); len(got) != 0 {
			t.Errorf("client X-License-Warning = %q outside grace, want none", got)
		}
		auth.take(t)
	})
}

// The commented X-Gatekeeper-Secret line, turned on, sends the secret to
// the gatekeeper and nowhere else; left off, a gatekeeper that requires one
// denies everything.
func TestSecret(t *testing.T) {
	t.Parallel()
	const secret = "s3cret-for-the-gatekeeper"
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			s := start(t, v, secret, secret)
			resp, body := do(t, "GET", s.base+"/app", "", with(v.signIn("acme"), map[string]string{"X-Gatekeeper-Secret": "from-client"}))
			e := reachedUpstream(t, resp, body)
			if got := e.Headers.Get("X-Gatekeeper-Secret"); got == secret {
				t.Error("the app got the gatekeeper's secret")
			}
			if call := oneCall(t, s.auth); call.Secret != secret {
				t.Errorf("the gatekeeper got X-Gatekeeper-Secret %q, want the secret", call.Secret)
			}
			for k, vs := range resp.Header {
				for _, val := range vs {
					if strings.Contains(val, secret) {
						t.Errorf("the client got the secret in %s", k)
					}
				}
			}

			off := start(t, v, secret, "")
			resp, body = do(t, "GET", off.base+"/app", "", v.signIn("acme"))
			denied(t, resp, body, http.StatusForbidden, "authz_forbidden")
			if n := off.up.hits.Load(); n != 0 {
				t.Errorf("the upstream was reached %d times", n)
			}
		})
	}
}

// With the auth service unreachable, nothing reaches the app.
func TestGatekeeperDown(t *testing.T) {
	t.Parallel()
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			up := newUpstream(t)
			cfg := proxies.Setup{File: v.file, Authz: closedAddr(t), Upstream: up.addr()}
			if v.layer {
				cfg.Session = newPlatform(t).addr()
			}
			resp, body := do(t, "GET", v.run(t, cfg)+"/api/things", "", v.signIn("acme"))
			if v.rebuilds {
				d := denied(t, resp, body, http.StatusServiceUnavailable, "license_state_unavailable")
				if v.layer && (d.Org == nil || *d.Org != "acme") {
					t.Errorf("body %s, want org acme", body)
				}
			} else if resp.StatusCode != http.StatusBadGateway {
				t.Errorf("status %d, want 502; body %s", resp.StatusCode, body)
			}
			if n := up.hits.Load(); n != 0 {
				t.Errorf("the upstream was reached %d times", n)
			}
		})
	}
}

// With the platform's session endpoint unreachable, neither the gatekeeper
// nor the app is asked.
func TestSessionEndpointDown(t *testing.T) {
	t.Parallel()
	for _, v := range variants {
		if !v.layer {
			continue
		}
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			auth, up := newAuthStub(t, v.family, false, ""), newUpstream(t)
			base := v.run(t, proxies.Setup{File: v.file, Authz: auth.addr(), Upstream: up.addr(), Session: closedAddr(t)})
			resp, body := do(t, "GET", base+"/api/things", "", with(v.signIn("acme"), map[string]string{"X-Org-Slug": "acme"}))
			if resp.StatusCode < 500 {
				t.Errorf("status %d, want a 5xx; body %s", resp.StatusCode, body)
			}
			if n := up.hits.Load(); n != 0 {
				t.Errorf("the upstream was reached %d times", n)
			}
			if calls := auth.take(t); len(calls) != 0 {
				t.Errorf("the gatekeeper was asked %+v", calls)
			}
		})
	}
}

// closedAddr returns a loopback address nobody listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
