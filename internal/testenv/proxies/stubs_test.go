package proxies_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// The six headers an allowed /authz answer carries, and the values the stub
// auth service gives them (X-License-Org is the org decided for).
var licenseHeaders = map[string]string{
	"X-License-Org":            "acme",
	"X-License-Status":         "valid",
	"X-License-Tier":           "enterprise",
	"X-License-Features":       "chat_connector,sso",
	"X-License-Users-Limit":    "50",
	"X-License-Days-Remaining": "364",
}

const graceWarning = "grace; ends=2027-12-06T14:19:45Z"

// How the stubs recognise a client: a jwt-mode gatekeeper takes the org from
// a token ("Bearer token-<org>", or the app_token cookie), the platform's
// session endpoint from the session cookie ("session=sess-<org>";
// "sess-noorg" is a session without an org).
const (
	tokenPrefix   = "token-"
	tokenCookie   = "app_token"
	sessionPrefix = "sess-"
	sessionCookie = "session"
	noOrgSession  = sessionPrefix + "noorg"
)

// authCall is what the stub auth service was asked about.
type authCall struct {
	Method, URI string
	Org         string // the org decided for
	OrgHeader   string // X-Org-Slug as received
	MinSeq      string
	Secret      string // X-Gatekeeper-Secret as received
}

// authStub stands in for the gatekeeper's /authz with one header family:
// "original" (X-Original-Method/-URI) or "forwarded" (X-Forwarded-Method/
// -Uri), never a fallback to the other. In jwt mode the org comes from the
// token and X-Org-Slug is ignored (no valid token: 401 org_unauthenticated);
// in header mode it is X-Org-Slug (none: 403 org_required). With a secret,
// a request without it is 403 authz_forbidden.
//
// It allows unless the original URI contains "deny"; "grace" answers in
// grace, "bare" allows with no X-License-* header at all (as an unenforced
// install may), and "%2e%2e" is 403 path_invalid, as the gatekeeper answers
// on /authz.
type authStub struct {
	family string
	jwt    bool
	secret string
	srv    *httptest.Server
	mu     sync.Mutex
	calls  []authCall
	errs   []string
}

func newAuthStub(t *testing.T, family string, jwt bool, secret string) *authStub {
	t.Helper()
	a := &authStub{family: family, jwt: jwt, secret: secret}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *authStub) addr() string { return a.srv.Listener.Addr().String() }

// tokenOrg is the org of a stub token, "" when there is none.
func tokenOrg(r *http.Request) string {
	if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		org, _ := strings.CutPrefix(bearer, tokenPrefix)
		return org
	}
	if c, err := r.Cookie(tokenCookie); err == nil {
		org, _ := strings.CutPrefix(c.Value, tokenPrefix)
		return org
	}
	return ""
}

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
	call := authCall{Method: method, URI: uri, OrgHeader: r.Header.Get("X-Org-Slug"),
		MinSeq: r.Header.Get("X-License-Min-Seq"), Secret: r.Header.Get("X-Gatekeeper-Secret")}
	if a.jwt {
		call.Org = tokenOrg(r)
	} else {
		call.Org = call.OrgHeader
	}
	a.mu.Lock()
	a.calls = append(a.calls, call)
	a.mu.Unlock()

	org := call.Org
	switch {
	case a.secret != "" && call.Secret != a.secret:
		deny(w, http.StatusForbidden, "authz_forbidden", "")
	case strings.Contains(uri, "%2e%2e"):
		deny(w, http.StatusForbidden, "path_invalid", "")
	case org == "" && a.jwt:
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		deny(w, http.StatusUnauthorized, "org_unauthenticated", "")
	case org == "":
		deny(w, http.StatusForbidden, "org_required", "")
	case strings.Contains(uri, "deny"):
		deny(w, http.StatusForbidden, "license_expired", org)
	case strings.Contains(uri, "bare"):
		w.WriteHeader(http.StatusOK)
	default:
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
}

// deny writes a denial the way the gatekeeper does: the JSON body and
// X-License-Error, and no X-License-Org.
func deny(w http.ResponseWriter, status int, code, org string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-License-Error", code)
	w.WriteHeader(status)
	var o any
	if org != "" {
		o = org
	}
	json.NewEncoder(w).Encode(map[string]any{"error": code, "message": "stub " + code, "org": o, "reason": nil})
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

func oneCall(t *testing.T, a *authStub) authCall {
	t.Helper()
	calls := a.take(t)
	if len(calls) != 1 {
		t.Fatalf("auth service asked %d times (%+v), want once", len(calls), calls)
	}
	return calls[0]
}

// sessionCall is what the platform's session endpoint was asked.
type sessionCall struct {
	Path      string
	Session   string // the session cookie
	OrgHeader string // X-Org-Slug as received
}

// platform stands in for the platform's session endpoint, /session (and
// /session/…): a session cookie "sess-<org>" is answered 200 with
// X-Org-Slug: <org> ("sess-noorg": 200 without it), no session 401.
type platform struct {
	srv   *httptest.Server
	mu    sync.Mutex
	calls []sessionCall
}

func newPlatform(t *testing.T) *platform {
	t.Helper()
	p := &platform{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		call := sessionCall{Path: r.URL.Path, OrgHeader: r.Header.Get("X-Org-Slug")}
		if c, err := r.Cookie(sessionCookie); err == nil {
			call.Session = c.Value
		}
		p.mu.Lock()
		p.calls = append(p.calls, call)
		p.mu.Unlock()
		org, ok := strings.CutPrefix(call.Session, sessionPrefix)
		switch {
		case r.URL.Path != "/session" && !strings.HasPrefix(r.URL.Path, "/session/"):
			http.Error(w, "not the session endpoint", http.StatusNotFound)
		case !ok || org == "":
			w.Header().Set("WWW-Authenticate", `Session realm="platform"`)
			http.Error(w, "sign in first", http.StatusUnauthorized)
		case call.Session == noOrgSession:
			w.WriteHeader(http.StatusOK)
		default:
			w.Header().Set("X-Org-Slug", org)
			w.WriteHeader(http.StatusOK)
		}
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *platform) addr() string { return p.srv.Listener.Addr().String() }

func (p *platform) take() []sessionCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	calls := p.calls
	p.calls = nil
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
