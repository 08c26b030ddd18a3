package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/testenv/proxies"
)

// frontEnd sends a GET for org (or no org when "") to path and returns
// the answer the client gets.
type frontEnd func(t *testing.T, org, path string, hdr ...string) answer

func withOrg(org string, hdr []string) []string {
	if org != "" {
		hdr = append(hdr, "X-Org-Slug", org)
	}
	return hdr
}

// authzFront asks /authz directly, the way nginx does, and turns an allow
// into the upstream's answer with the headers the proxy would copy.
func authzFront(w *world) frontEnd {
	return func(t *testing.T, org, path string, hdr ...string) answer {
		a := get(t, "http://"+w.gk.authz+"/authz", withOrg(org, append(hdr, "X-Original-Method", "GET", "X-Original-URI", path))...)
		if a.code != http.StatusOK {
			return a
		}
		up := get(t, w.upstream.URL+path)
		for k, v := range a.hdr {
			if len(k) > 10 && k[:10] == "X-License-" && k != "X-License-Warning" {
				up.body[k] = v[0]
			}
		}
		up.hdr.Set("X-License-Warning", a.hdr.Get("X-License-Warning"))
		return up
	}
}

func urlFront(base string) frontEnd {
	return func(t *testing.T, org, path string, hdr ...string) answer {
		return get(t, base+path, withOrg(org, hdr)...)
	}
}

// platformSession stands in for the platform's session endpoint of the
// auth-layer proxy snippets: the session cookie's value is the session's
// org (none: a session without an org).
func platformSession(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, err := r.Cookie("session"); err == nil {
			w.Header().Set("X-Org-Slug", c.Value)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// sessionFront signs in to an auth-layer proxy as a member of org, and
// also claims acme's org in X-Org-Slug: the claim must never count.
func sessionFront(base string) frontEnd {
	return func(t *testing.T, org, path string, hdr ...string) answer {
		hdr = append(hdr, "X-Org-Slug", "acme")
		if org != "" {
			hdr = append(hdr, "Cookie", "session="+org)
		}
		return get(t, base+path, hdr...)
	}
}

// Every row of the decision table and every code, through the reverse
// proxy, through /authz, and through real nginx and real Caddy running the
// shipped auth-layer snippets (the org from the platform's session, never
// from the client's header).
func TestDecisionTableThroughEveryFrontEnd(t *testing.T) {
	w := newWorld(t, nil)
	ctx := context.Background()
	w.upload("acme", nil)                                                        // valid, features sso
	w.upload("grace", func(p map[string]any) { p["expires"] = past(time.Hour) }) // in grace (7 days)
	w.upload("revoked", nil)                                                     // invalidated below
	// Expires a few seconds after its upload (whole seconds: a loaded
	// machine must not see it expired before it is stored).
	soon := time.Now().Add(4 * time.Second).UTC().Truncate(time.Second)
	w.upload("soon", func(p map[string]any) { p["expires"] = soon.Format(time.RFC3339); p["grace_days"] = 0 })
	if _, err := w.svc.Invalidate(ctx, "revoked", op, "0193a5b0-7e1a-7c3d-8f00-"+"00000"+hexOrg("revoked"), "test"); err != nil {
		t.Fatal(err)
	}
	w.syncHead()
	time.Sleep(time.Until(soon) + 100*time.Millisecond) // "soon" expires by time alone
	forwarded := w.start(func(c *gatekeeperCmd) { c.AuthzHeaders = "forwarded" })
	session := platformSession(t)
	fronts := map[string]frontEnd{
		"proxy": urlFront("http://" + w.gk.proxy),
		"authz": authzFront(w),
		"nginx": sessionFront(proxies.Nginx(t, proxies.Setup{File: proxies.NginxAuthLayer,
			Authz: w.gk.authz, Upstream: w.upstream.Listener.Addr().String(), Session: session})),
		"caddy": sessionFront(proxies.Caddy(t, proxies.Setup{File: proxies.CaddyAuthLayer,
			Authz: forwarded.authz, Upstream: w.upstream.Listener.Addr().String(), Session: session})),
	}
	cases := []struct {
		name, org, path string
		hdr             []string
		code            int
		err, reason     string
		status          string // X-License-Status upstream
		warning         bool
	}{
		{"valid", "acme", "/app", nil, 200, "", "", "valid", false},
		{"grace", "grace", "/app", nil, 200, "", "", "grace", true},
		{"missing", "nobody", "/app", nil, 403, "license_missing", "", "", false},
		{"expired", "soon", "/app", nil, 403, "license_expired", "", "", false},
		{"invalid", "revoked", "/app", nil, 403, "license_invalid", "revoked", "", false},
		{"feature", "acme", "/reports/q3", nil, 403, "feature_not_licensed", "", "", false},
		{"allowlisted renewal", "soon", "/api/license", nil, 200, "", "", "expired", false},
		{"allowlisted ui", "revoked", "/ui/license/", nil, 200, "", "", "invalid", false},
		{"org required", "", "/app", nil, 403, "org_required", "", "", false},
		{"org invalid", "Acme", "/app", nil, 403, "org_invalid", "", "", false},
		{"wildcard org", "*", "/app", nil, 403, "org_invalid", "", "", false},
		{"path invalid", "acme", "/a/%2e%2e/b", nil, 403, "path_invalid", "", "", false},
		{"path parameter", "acme", "/ui/..;/reports/q3", nil, 403, "path_invalid", "", "", false},
		{"double encoding", "acme", "/%2572eports/q3", nil, 403, "path_invalid", "", "", false},
		{"feature in capitals", "acme", "/REPORTS/q3", nil, 403, "feature_not_licensed", "", "", false},
		{"ui is not a way around", "revoked", "/UI/license/", nil, 403, "license_invalid", "", "", false},
		{"encoded slash", "acme", "/a%2Fb", nil, 403, "path_invalid", "", "", false},
		{"unavailable", "acme", "/app", []string{"X-License-Min-Seq", "999999999"}, 403, "license_state_unavailable", "", "", false},
		{"forged headers stripped", "acme", "/app", []string{"X-License-Status", "valid", "X-License-Tier", "gold"}, 200, "", "", "valid", false},
	}
	for name, front := range fronts {
		for _, c := range cases {
			t.Run(name+"/"+c.name, func(t *testing.T) {
				a := front(t, c.org, c.path, c.hdr...)
				want := c.code
				if name == "proxy" && c.err == "license_state_unavailable" {
					want = 503 // the proxy answers unavailability itself
				}
				if name != "authz" && c.err == "path_invalid" {
					want = 400 // /authz answers 403 (nginx passes only 2xx, 401 and 403); the proxy and the snippets answer 400
				}
				if a.code != want {
					t.Fatalf("status %d, want %d (%v)", a.code, want, a.body)
				}
				if c.err != "" {
					if a.body["error"] != c.err || a.hdr.Get("X-License-Error") != c.err {
						t.Fatalf("denial %v / %q, want %s", a.body, a.hdr.Get("X-License-Error"), c.err)
					}
					if c.reason != "" && (a.body["reason"] != c.reason || a.hdr.Get("X-License-Reason") != c.reason && name != "nginx") {
						t.Fatalf("reason %v, want %s", a.body["reason"], c.reason)
					}
					return
				}
				if a.body["X-License-Status"] != c.status {
					t.Fatalf("upstream saw X-License-Status %v, want %s (%v)", a.body["X-License-Status"], c.status, a.body)
				}
				if c.status == "valid" && (a.body["X-License-Tier"] != "enterprise" || a.body["X-License-Features"] != "sso" || a.body["X-License-Org"] != c.org) {
					t.Fatalf("upstream headers %v", a.body)
				}
				if got := a.hdr.Get("X-License-Warning") != ""; got != c.warning {
					t.Fatalf("warning %q", a.hdr.Get("X-License-Warning"))
				}
			})
		}
	}
	// Enforcement off: everything passes, unenforced.
	if _, err := w.svc.SetEnforcement(ctx, op, "off"); err != nil {
		t.Fatal(err)
	}
	for name, front := range fronts {
		eventually(t, func() error {
			if a := front(t, "nobody", "/app"); a.code != 200 {
				return fmt.Errorf("%s with enforcement off: %d %v", name, a.code, a.body)
			}
			return nil
		})
	}
}

func past(d time.Duration) string { return time.Now().Add(-d).UTC().Format(time.RFC3339) }
