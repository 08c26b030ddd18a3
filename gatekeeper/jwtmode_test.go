package gatekeeper

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/licenseledger/ledger/gatekeeper/jwtorg"
)

// tokens is a TokenVerifier over a fixed table: token → org ("" for a
// token without the claim); any other token does not verify.
type tokens map[string]string

func (m tokens) OrgContext(_ context.Context, tok string) (string, error) {
	org, ok := m[tok]
	switch {
	case !ok:
		return "", errors.New("signature invalid")
	case org == "":
		return "", fmt.Errorf("claim org: %w", jwtorg.ErrNoClaim)
	}
	return org, nil
}

func TestJWTMode(t *testing.T) {
	w := decisionWorld(t)
	src, err := ParseOrgSource("jwt:org")
	if err != nil || src.Claim() != "org" || src.Kind() != OrgFromJWT || src.String() != "jwt:org" {
		t.Fatalf("ParseOrgSource: %+v, %v", src, err)
	}
	if _, err := New(w, Config{OrgSource: src}); err == nil {
		t.Fatal("jwt mode without a verifier accepted")
	}
	v := tokens{"t-acme": "acme", "t-revoked": "revoked", "t-noclaim": "", "t-bad-slug": "Acme"}
	g := newGate(t, w, newClock(t1), Config{OrgSource: src, Tokens: v, TokenCookie: "session"})
	for _, tc := range []struct {
		name   string
		hdr    map[string]string
		status int
		code   string
		www    string
	}{
		{"valid token", map[string]string{"Authorization": "Bearer t-acme"}, 200, "", ""},
		{"scheme in lower case", map[string]string{"Authorization": "bearer t-acme"}, 200, "", ""},
		{"scheme in capitals", map[string]string{"Authorization": "BEARER  t-acme"}, 200, "", ""},
		{"revoked org", map[string]string{"Authorization": "Bearer t-revoked"}, 403, CodeLicenseInvalid, ""},
		{"an org header beside the token is ignored", map[string]string{"Authorization": "Bearer t-revoked", "X-Org-Slug": "acme"}, 403, CodeLicenseInvalid, ""},
		{"an org header alone", map[string]string{"X-Org-Slug": "acme"}, 401, CodeOrgUnauthenticated, "Bearer"},
		{"no token", nil, 401, CodeOrgUnauthenticated, "Bearer"},
		{"a forged token", map[string]string{"Authorization": "Bearer t-forged"}, 401, CodeOrgUnauthenticated, `Bearer error="invalid_token"`},
		{"basic credentials", map[string]string{"Authorization": "Basic dTpw"}, 401, CodeOrgUnauthenticated, "Bearer"},
		{"an empty bearer", map[string]string{"Authorization": "Bearer "}, 401, CodeOrgUnauthenticated, "Bearer"},
		{"no org claim", map[string]string{"Authorization": "Bearer t-noclaim"}, 403, CodeOrgRequired, ""},
		{"a claim that is not a slug", map[string]string{"Authorization": "Bearer t-bad-slug"}, 403, CodeOrgInvalid, ""},
		{"the cookie", map[string]string{"Cookie": "theme=dark; session=t-acme"}, 200, "", ""},
		{"a quoted cookie", map[string]string{"Cookie": `session="t-acme"`}, 200, "", ""},
		{"the header wins over the cookie", map[string]string{"Authorization": "Bearer t-revoked", "Cookie": "session=t-acme"}, 403, CodeLicenseInvalid, ""},
		{"another cookie", map[string]string{"Cookie": "sessionx=t-acme"}, 401, CodeOrgUnauthenticated, "Bearer"},
		{"the cookie twice", map[string]string{"Cookie": "session=t-acme; session=t-revoked"}, 401, CodeOrgUnauthenticated, "Bearer"},
	} {
		r := wire(t, "GET", "/app", tc.hdr, "203.0.113.9:5000") // no peer is trusted for anything in jwt mode
		d := g.Decide(r)
		expect(t, tc.name, d, tc.status == 200, tc.status, tc.code)
		h := http.Header{}
		for k, v := range tc.hdr {
			h.Set(k, v)
		}
		if d2 := g.DecideFor(t.Context(), "GET", "/app", "", h, "203.0.113.9:5000"); d2.Code != d.Code || d2.Org != d.Org {
			t.Errorf("%s: DecideFor %+v, Decide %+v", tc.name, d2, d)
		}
		if d.Allowed {
			if d.Org != "acme" {
				t.Errorf("%s: decided for %q", tc.name, d.Org)
			}
			continue
		}
		rec := httptest.NewRecorder()
		WriteDenial(rec, d)
		if got := rec.Header().Get("WWW-Authenticate"); got != tc.www {
			t.Errorf("%s: WWW-Authenticate %q, want %q", tc.name, got, tc.www)
		}
		if rec.Code != tc.status {
			t.Errorf("%s: status %d", tc.name, rec.Code)
		}
		if a := d.ForAuthz(); a.Status != tc.status && tc.status == 401 {
			t.Errorf("%s: /authz status %d, want 401 (nginx passes it on)", tc.name, a.Status)
		}
	}
	// Two Authorization headers: which one counts would be a guess.
	r := wire(t, "GET", "/app", nil, local)
	r.Header["Authorization"] = []string{"Bearer t-acme", "Bearer t-revoked"}
	expect(t, "two Authorization headers", g.Decide(r), false, 401, CodeOrgUnauthenticated)
	// With AllowNoOrg a token without the claim is decided on _instance;
	// a missing token still is not.
	g = newGate(t, w, newClock(t1), Config{OrgSource: src, Tokens: v, AllowNoOrg: true})
	if d := g.Decide(wire(t, "GET", "/app", map[string]string{"Authorization": "Bearer t-noclaim"}, local)); d.Org != "_instance" {
		t.Errorf("no claim with AllowNoOrg: %+v", d)
	}
	expect(t, "no token with AllowNoOrg", g.Decide(wire(t, "GET", "/app", nil, local)), false, 401, CodeOrgUnauthenticated)
}
