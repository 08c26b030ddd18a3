package proxies_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/testenv/proxies"
)

// The six headers an allowed /authz answer carries, and the values the stub
// auth service gives them.
var licenseHeaders = map[string]string{
	"X-License-Org":            "acme",
	"X-License-Status":         "valid",
	"X-License-Tier":           "enterprise",
	"X-License-Features":       "chat_connector,sso",
	"X-License-Users-Limit":    "50",
	"X-License-Days-Remaining": "364",
}

const graceWarning = "grace; ends=2027-12-06T14:19:45Z"

// authCall is what the stub auth service was asked about.
type authCall struct {
	Method, URI, Org, MinSeq string
}

// authStub stands in for the gatekeeper's /authz with one header family:
// "original" (X-Original-Method/-URI) or "forwarded" (X-Forwarded-Method/
// -Uri), never a fallback to the other. It allows unless the original URI
// contains "deny"; "grace" answers in grace, "bare" allows with no X-License-*
// header at all (as an unenforced install may).
type authStub struct {
	family string
	srv    *httptest.Server
	mu     sync.Mutex
	calls  []authCall
	errs   []string
}

func newAuthStub(t *testing.T, family string) *authStub {
	t.Helper()
	a := &authStub{family: family}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *authStub) addr() string { return a.srv.Listener.Addr().String() }

func (a *authStub) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/authz" && !strings.HasPrefix(r.URL.Path, "/authz/") {
		a.fail(w, "request for "+r.URL.Path)
		return
	}
	var method, uri string
	switch a.family {
	case "original":
		method, uri = r.Header.Get("X-Original-Method"), r.Header.Get("X-Original-URI")
	case "forwarded":
		method, uri = r.Header.Get("X-Forwarded-Method"), r.Header.Get("X-Forwarded-Uri")
	}
	if method == "" || uri == "" {
		a.fail(w, "no "+a.family+" method/URI headers")
		return
	}
	org := r.Header.Get("X-Org-Slug")
	a.mu.Lock()
	a.calls = append(a.calls, authCall{Method: method, URI: uri, Org: org, MinSeq: r.Header.Get("X-License-Min-Seq")})
	a.mu.Unlock()

	if strings.Contains(uri, "deny") {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-License-Error", "license_expired")
		w.WriteHeader(http.StatusForbidden)
		json.NewEncoder(w).Encode(map[string]any{
			"error": "license_expired", "message": "the license expired", "org": org, "reason": nil,
		})
		return
	}
	if strings.Contains(uri, "bare") {
		w.WriteHeader(http.StatusOK)
		return
	}
	for k, v := range licenseHeaders {
		w.Header().Set(k, v)
	}
	w.Header().Set("X-License-Org", org)
	if strings.Contains(uri, "grace") {
		w.Header().Set("X-License-Status", "grace")
		w.Header().Set("X-License-Days-Remaining", "-1")
		w.Header().Set("X-License-Warning", graceWarning)
	}
	w.WriteHeader(http.StatusOK)
}

func (a *authStub) fail(w http.ResponseWriter, msg string) {
	a.mu.Lock()
	a.errs = append(a.errs, msg)
	a.mu.Unlock()
	http.Error(w, msg, http.StatusBadRequest)
}

// take returns and forgets the calls so far; a malformed auth request fails
// the test.
func (a *authStub) take(t *testing.T) []authCall {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range a.errs {
		t.Errorf("auth stub: %s", e)
	}
	calls := a.calls
	a.calls, a.errs = nil, nil
	return calls
}

// echo is what the stub upstream saw.
type echo struct {
	Method  string      `json:"method"`
	URI     string      `json:"uri"`
	Headers http.Header `json:"headers"`
	Body    string      `json:"body"`
}

// upstream stands in for the app: it answers with the request it got, as
// JSON. A URI containing "appwarn" makes it send an X-License-Warning of its
// own.
type upstream struct {
	srv  *httptest.Server
	hits atomic.Int64
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		if strings.Contains(r.RequestURI, "appwarn") {
			w.Header().Set("X-License-Warning", "from the app")
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(echo{Method: r.Method, URI: r.RequestURI, Headers: r.Header, Body: string(body)})
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) addr() string { return u.srv.Listener.Addr().String() }

type startFunc func(t testing.TB, authzAddr, upstreamAddr string) string

func TestNginx(t *testing.T) {
	t.Parallel()
	testProxy(t, proxies.StartNginx, "original")
}

func TestCaddy(t *testing.T) {
	t.Parallel()
	testProxy(t, proxies.StartCaddy, "forwarded")
}

var client = &http.Client{Timeout: 10 * time.Second}

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

func oneCall(t *testing.T, a *authStub) authCall {
	t.Helper()
	calls := a.take(t)
	if len(calls) != 1 {
		t.Fatalf("auth service asked %d times (%+v), want once", len(calls), calls)
	}
	return calls[0]
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

func testProxy(t *testing.T, start startFunc, family string) {
	auth := newAuthStub(t, family)
	up := newUpstream(t)
	begin := time.Now()
	base := start(t, auth.addr(), up.addr())
	t.Logf("proxy started in %v at %s", time.Since(begin).Round(time.Millisecond), base)

	t.Run("allowed", func(t *testing.T) {
		resp, body := do(t, "POST", base+"/api/things?x=1&y=two", "hello", map[string]string{
			"X-Org-Slug":        "acme",
			"X-License-Min-Seq": "42",
		})
		e := reachedUpstream(t, resp, body)
		if e.Method != "POST" || e.URI != "/api/things?x=1&y=two" || e.Body != "hello" {
			t.Errorf("upstream got %s %s body %q, want POST /api/things?x=1&y=two body hello", e.Method, e.URI, e.Body)
		}
		for k, want := range licenseHeaders {
			if got := e.Headers.Values(k); len(got) != 1 || got[0] != want {
				t.Errorf("upstream %s = %q, want [%q]", k, got, want)
			}
		}
		if got := e.Headers.Get("X-Org-Slug"); got != "acme" {
			t.Errorf("upstream X-Org-Slug = %q, want acme", got)
		}
		for _, k := range []string{"X-License-Warning", "X-License-Error", "X-License-Min-Seq"} {
			if v, ok := e.Headers[k]; ok {
				t.Errorf("upstream got %s: %q", k, v)
			}
		}
		if v, ok := resp.Header["X-License-Warning"]; ok {
			t.Errorf("client got X-License-Warning %q outside grace", v)
		}
		call := oneCall(t, auth)
		want := authCall{Method: "POST", URI: "/api/things?x=1&y=two", Org: "acme", MinSeq: "42"}
		if call != want {
			t.Errorf("auth service asked about %+v, want %+v", call, want)
		}
	})

	t.Run("forged headers", func(t *testing.T) {
		forged := map[string]string{
			"X-Org-Slug":        "acme",
			"X-License-Status":  "forged",
			"X-License-Org":     "forged",
			"X-License-Tier":    "forged",
			"X-License-Warning": "forged",
			"X-License-Error":   "forged",
		}
		resp, body := do(t, "GET", base+"/forged", "", forged)
		e := reachedUpstream(t, resp, body)
		noForgery(t, e.Headers)
		if got := e.Headers.Values("X-License-Status"); len(got) != 1 || got[0] != "valid" {
			t.Errorf("upstream X-License-Status = %q, want [valid]", got)
		}
		if got := resp.Header.Values("X-License-Warning"); len(got) != 0 {
			t.Errorf("client got X-License-Warning %q", got)
		}
		auth.take(t)

		// An allowed answer without X-License-* headers must not let the
		// client's through either, nor put anything in their place.
		resp, body = do(t, "GET", base+"/bare", "", forged)
		e = reachedUpstream(t, resp, body)
		for k, v := range e.Headers {
			if strings.HasPrefix(k, "X-License-") {
				t.Errorf("upstream got %s: %q after an answer without it", k, v)
			}
		}
		auth.take(t)
	})

	t.Run("denied", func(t *testing.T) {
		hits := up.hits.Load()
		resp, body := do(t, "GET", base+"/deny/this?q=1", "", map[string]string{"X-Org-Slug": "acme"})
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("status %d, want 403; body %s", resp.StatusCode, body)
		}
		if got := resp.Header.Get("X-License-Error"); got != "license_expired" {
			t.Errorf("X-License-Error = %q, want license_expired", got)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("Content-Type = %q, want application/json", ct)
		}
		var denial struct {
			Error string  `json:"error"`
			Org   *string `json:"org"`
		}
		if err := json.Unmarshal(body, &denial); err != nil {
			t.Fatalf("denial body is not JSON: %v: %s", err, body)
		}
		if denial.Error != "license_expired" || denial.Org == nil || *denial.Org != "acme" {
			t.Errorf("denial body %s, want error license_expired and org acme", body)
		}
		call := oneCall(t, auth)
		if want := (authCall{Method: "GET", URI: "/deny/this?q=1", Org: "acme"}); call != want {
			t.Errorf("auth service asked about %+v, want %+v", call, want)
		}

		// Whatever the client sends as its org, the body stays JSON.
		resp, body = do(t, "GET", base+"/deny", "", map[string]string{"X-Org-Slug": `x","error":"ok`})
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("status %d, want 403", resp.StatusCode)
		}
		denial.Org = nil
		if err := json.Unmarshal(body, &denial); err != nil || denial.Error != "license_expired" {
			t.Errorf("denial body %s (%v), want JSON with error license_expired", body, err)
		}
		auth.take(t)

		if n := up.hits.Load() - hits; n != 0 {
			t.Errorf("denied requests reached the upstream %d times", n)
		}
	})

	t.Run("grace", func(t *testing.T) {
		resp, body := do(t, "GET", base+"/grace", "", map[string]string{"X-Org-Slug": "acme"})
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
		resp, body = do(t, "GET", base+"/grace/appwarn", "", map[string]string{"X-Org-Slug": "acme"})
		reachedUpstream(t, resp, body)
		if got := resp.Header.Values("X-License-Warning"); len(got) != 1 || got[0] != graceWarning {
			t.Errorf("client X-License-Warning = %q, want [%q]", got, graceWarning)
		}
		resp, body = do(t, "GET", base+"/appwarn", "", map[string]string{"X-Org-Slug": "acme"})
		reachedUpstream(t, resp, body)
		if got := resp.Header.Values("X-License-Warning"); len(got) != 0 {
			t.Errorf("client X-License-Warning = %q outside grace, want none", got)
		}
		auth.take(t)
	})
}

// With the auth service unreachable, nothing reaches the app.
func TestGatekeeperDown(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		start  startFunc
		status int
		code   string // X-License-Error, if the proxy sets one
	}{
		{"nginx", proxies.StartNginx, http.StatusServiceUnavailable, "license_state_unavailable"},
		{"caddy", proxies.StartCaddy, http.StatusBadGateway, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up := newUpstream(t)
			base := tc.start(t, closedAddr(t), up.addr())
			resp, body := do(t, "GET", base+"/api/things", "", map[string]string{"X-Org-Slug": "acme"})
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d; body %s", resp.StatusCode, tc.status, body)
			}
			if got := resp.Header.Get("X-License-Error"); got != tc.code {
				t.Errorf("X-License-Error = %q, want %q", got, tc.code)
			}
			if tc.code != "" {
				var denial struct {
					Error string `json:"error"`
					Org   string `json:"org"`
				}
				if err := json.Unmarshal(body, &denial); err != nil || denial.Error != tc.code || denial.Org != "acme" {
					t.Errorf("body %s (%v), want JSON with error %s and org acme", body, err, tc.code)
				}
			}
			if n := up.hits.Load(); n != 0 {
				t.Errorf("the upstream was reached %d times", n)
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
