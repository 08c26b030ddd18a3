package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/testenv/jwttest"
	"github.com/licenseledger/ledger/internal/testenv/licensetest"
	"github.com/licenseledger/ledger/internal/testenv/proxies"
)

const (
	jwtIssuer   = "https://platform.test"
	jwtAudience = "platform"
)

// jwtClaims are a platform token's claims for org (no "org" claim when
// org is ""), valid for an hour, with changes.
func jwtClaims(org string, set ...any) map[string]any {
	now := time.Now().Unix()
	c := map[string]any{"iss": jwtIssuer, "aud": jwtAudience, "sub": "user-1", "iat": now, "exp": now + 3600}
	if org != "" {
		c["org"] = org
	}
	for i := 0; i+1 < len(set); i += 2 {
		if set[i+1] == nil {
			delete(c, set[i].(string))
		} else {
			c[set[i].(string)] = set[i+1]
		}
	}
	return c
}

// jwtWorld is a world whose gatekeeper takes the org from the platform's
// tokens, verified against a JWKS file holding the RSA, EC and Ed25519
// keys made by openssl.
func jwtWorld(t *testing.T, mod func(*gatekeeperCmd)) (*world, string) {
	t.Helper()
	rsa, ec, ed := jwttest.RSAKey(t), jwttest.ECKey(t), jwttest.EdKey(t)
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwks, jwttest.JWKSOf(t, rsa, ec, ed), 0o644); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, func(c *gatekeeperCmd) {
		c.OrgFrom, c.JWTKeys, c.JWTIssuer, c.JWTAudience, c.JWTCookie = "jwt:org", jwks, jwtIssuer, jwtAudience, "session"
		if mod != nil {
			mod(c)
		}
	})
	w.upload("acme", nil)
	w.upload("revoked", nil)
	if _, err := w.svc.Invalidate(context.Background(), "revoked", op, "0193a5b0-7e1a-7c3d-8f00-"+"00000"+hexOrg("revoked"), "test"); err != nil {
		t.Fatal(err)
	}
	w.syncHead()
	return w, jwks
}

// The org comes from the platform's token, made outside this project's
// code (openssl), through the proxy, /authz, and real nginx and Caddy
// running the shipped jwt snippets: every forged, expired, mis-addressed
// or confused token is 401, and a client's org header counts for nothing.
func TestJWTThroughEveryFrontEnd(t *testing.T) {
	w, jwks := jwtWorld(t, nil)
	forwarded := w.start(func(c *gatekeeperCmd) {
		c.AuthzHeaders = "forwarded"
		c.OrgFrom, c.JWTKeys, c.JWTIssuer, c.JWTAudience, c.JWTCookie = "jwt:org", jwks, jwtIssuer, jwtAudience, "session"
	})
	rsa, ec, ed := jwttest.RSAKey(t), jwttest.ECKey(t), jwttest.EdKey(t)
	impostor := jwttest.NewKey(t, "impostor", "RS256", rsa.Kid) // another key, the same kid
	valid := rsa.Sign(t, nil, jwtClaims("acme"))
	parts := strings.Split(valid, ".")
	tampered := parts[0] + "." + jwttest.Encode(t, jwtClaims("revoked")) + "." + parts[2]
	noneTok := jwttest.Encode(t, map[string]any{"alg": "none", "typ": "JWT"}) + "." + jwttest.Encode(t, jwtClaims("acme")) + "."
	hs := jwttest.HMACSign(t, map[string]any{"alg": "HS256", "typ": "JWT", "kid": rsa.Kid}, jwtClaims("acme"), rsa.PubPEM)
	old := time.Now().Add(-2 * time.Hour).Unix()

	fronts := map[string]func(t *testing.T, hdr ...string) answer{
		"proxy": func(t *testing.T, hdr ...string) answer { return get(t, "http://"+w.gk.proxy+"/app", hdr...) },
		"authz": func(t *testing.T, hdr ...string) answer {
			return get(t, "http://"+w.gk.authz+"/authz", append(hdr, "X-Original-Method", "GET", "X-Original-URI", "/app")...)
		},
		"nginx": func() func(t *testing.T, hdr ...string) answer {
			base := proxies.Nginx(t, proxies.Setup{Authz: w.gk.authz, Upstream: w.upstream.Listener.Addr().String()})
			return func(t *testing.T, hdr ...string) answer { return get(t, base+"/app", hdr...) }
		}(),
		// Caddy asks a gatekeeper reading the forwarded header family.
		"caddy": func() func(t *testing.T, hdr ...string) answer {
			base := proxies.Caddy(t, proxies.Setup{Authz: forwarded.authz, Upstream: w.upstream.Listener.Addr().String()})
			return func(t *testing.T, hdr ...string) answer { return get(t, base+"/app", hdr...) }
		}(),
	}
	cases := []struct {
		name  string
		hdr   []string
		code  int
		err   string
		org   string // X-License-Org upstream, for a 200
		reuse bool   // ask twice: the second answer comes from the token cache
	}{
		{"RS256", []string{"Authorization", "Bearer " + valid}, 200, "", "acme", true},
		{"ES256", []string{"Authorization", "Bearer " + ec.Sign(t, nil, jwtClaims("acme"))}, 200, "", "acme", false},
		{"EdDSA", []string{"Authorization", "Bearer " + ed.Sign(t, nil, jwtClaims("acme"))}, 200, "", "acme", false},
		{"scheme in lower case", []string{"Authorization", "bearer " + valid}, 200, "", "acme", false},
		{"the session cookie", []string{"Cookie", "session=" + valid}, 200, "", "acme", false},
		{"revoked org", []string{"Authorization", "Bearer " + ed.Sign(t, nil, jwtClaims("revoked"))}, 403, "license_invalid", "", false},
		{"an org header beside the token", []string{"Authorization", "Bearer " + ed.Sign(t, nil, jwtClaims("revoked")), "X-Org-Slug", "acme"}, 403, "license_invalid", "", false},
		{"an org header alone", []string{"X-Org-Slug", "acme"}, 401, "org_unauthenticated", "", false},
		{"no token", nil, 401, "org_unauthenticated", "", false},
		{"expired", []string{"Authorization", "Bearer " + rsa.Sign(t, nil, jwtClaims("acme", "iat", old, "exp", old+60))}, 401, "org_unauthenticated", "", false},
		{"not yet valid", []string{"Authorization", "Bearer " + rsa.Sign(t, nil, jwtClaims("acme", "nbf", time.Now().Add(time.Hour).Unix()))}, 401, "org_unauthenticated", "", false},
		{"wrong audience", []string{"Authorization", "Bearer " + rsa.Sign(t, nil, jwtClaims("acme", "aud", "another-app"))}, 401, "org_unauthenticated", "", false},
		{"wrong issuer", []string{"Authorization", "Bearer " + rsa.Sign(t, nil, jwtClaims("acme", "iss", "https://evil.test"))}, 401, "org_unauthenticated", "", false},
		{"alg none", []string{"Authorization", "Bearer " + noneTok}, 401, "org_unauthenticated", "", false},
		{"HS256 keyed with the RSA public key", []string{"Authorization", "Bearer " + hs}, 401, "org_unauthenticated", "", false},
		{"another key with the same kid", []string{"Authorization", "Bearer " + impostor.Sign(t, nil, jwtClaims("acme"))}, 401, "org_unauthenticated", "", false},
		{"a tampered payload", []string{"Authorization", "Bearer " + tampered}, 401, "org_unauthenticated", "", false},
		{"no exp", []string{"Authorization", "Bearer " + rsa.Sign(t, nil, jwtClaims("acme", "exp", nil))}, 401, "org_unauthenticated", "", false},
		{"without the claim", []string{"Authorization", "Bearer " + rsa.Sign(t, nil, jwtClaims(""))}, 403, "org_required", "", false},
		{"a claim that is not a slug", []string{"Authorization", "Bearer " + rsa.Sign(t, nil, jwtClaims("Acme"))}, 403, "org_invalid", "", false},
	}
	for name, front := range fronts {
		for _, c := range cases {
			t.Run(name+"/"+c.name, func(t *testing.T) {
				for range map[bool]int{false: 1, true: 2}[c.reuse] {
					a := front(t, c.hdr...)
					if a.code != c.code {
						t.Fatalf("status %d, want %d (%v)", a.code, c.code, a.body)
					}
					if c.err != "" {
						if a.body["error"] != c.err || a.hdr.Get("X-License-Error") != c.err {
							t.Fatalf("denial %v / %q, want %s", a.body, a.hdr.Get("X-License-Error"), c.err)
						}
						if c.code == 401 && !strings.HasPrefix(a.hdr.Get("WWW-Authenticate"), "Bearer") {
							t.Fatalf("401 without WWW-Authenticate: Bearer (%q)", a.hdr.Get("WWW-Authenticate"))
						}
						return
					}
					got := a.body["X-License-Org"]
					if name == "authz" {
						got = a.hdr.Get("X-License-Org")
					}
					if got != c.org {
						t.Fatalf("decided for %v, want %s (%v)", got, c.org, a.body)
					}
				}
			})
		}
	}
}

// A new signing key is picked up without a restart: from a JWKS file on
// SIGHUP, and from a JWKS URL when a token names a kid the gatekeeper has
// not seen (one fetch, however many such tokens arrive).
func TestJWTKeyRotation(t *testing.T) {
	w, jwks := jwtWorld(t, nil)
	next := jwttest.NewKey(t, "rotated", "ES256", "ec-2026-12")
	tok := "Bearer " + next.Sign(t, nil, jwtClaims("acme"))
	if a := get(t, "http://"+w.gk.proxy+"/app", "Authorization", tok); a.code != 401 {
		t.Fatalf("a token of a key not yet published: %d %v", a.code, a.body)
	}
	if err := os.WriteFile(jwks, jwttest.JWKSOf(t, jwttest.RSAKey(t), next), 0o644); err != nil {
		t.Fatal(err)
	}
	hup(t)
	eventually(t, func() error {
		if a := get(t, "http://"+w.gk.proxy+"/app", "Authorization", tok); a.code != 200 {
			return fmt.Errorf("after SIGHUP: %d %v", a.code, a.body)
		}
		return nil
	})
	// The Ed25519 key left the file: its tokens are refused, cached or not.
	if a := get(t, "http://"+w.gk.proxy+"/app", "Authorization", "Bearer "+jwttest.EdKey(t).Sign(t, nil, jwtClaims("acme"))); a.code != 401 {
		t.Fatalf("a token of a removed key: %d %v", a.code, a.body)
	}

	// A URL JWKS: the new kid is fetched on first sight.
	var doc atomic.Pointer[[]byte]
	var fetches atomic.Int64
	first := jwttest.JWKSOf(t, jwttest.RSAKey(t))
	doc.Store(&first)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		rw.Header().Set("Content-Type", "application/json")
		rw.Header().Set("Cache-Control", "max-age=3600")
		rw.Write(*doc.Load())
	}))
	t.Cleanup(srv.Close)
	a := w.start(func(c *gatekeeperCmd) {
		c.OrgFrom, c.JWTKeys, c.JWTIssuer, c.JWTAudience = "jwt:org", srv.URL+"/.well-known/jwks.json", jwtIssuer, jwtAudience
	})
	if r := get(t, "http://"+a.proxy+"/app", "Authorization", "Bearer "+jwttest.RSAKey(t).Sign(t, nil, jwtClaims("acme"))); r.code != 200 {
		t.Fatalf("URL JWKS, the published key: %d %v", r.code, r.body)
	}
	before := fetches.Load()
	rotated := jwttest.JWKSOf(t, jwttest.RSAKey(t), next)
	doc.Store(&rotated)
	if r := get(t, "http://"+a.proxy+"/app", "Authorization", tok); r.code != 200 {
		t.Fatalf("URL JWKS, a new kid: %d %v", r.code, r.body)
	}
	unknown := jwttest.NewKey(t, "unpublished", "EdDSA", "never-published")
	for range 5 {
		if r := get(t, "http://"+a.proxy+"/app", "Authorization", "Bearer "+unknown.Sign(t, nil, jwtClaims("acme"))); r.code != 401 {
			t.Fatalf("an unpublished kid: %d %v", r.code, r.body)
		}
	}
	if n := fetches.Load() - before; n != 1 {
		t.Errorf("%d JWKS fetches for a new kid and five unknown ones, want 1 (rate-limited)", n)
	}
	if m := scrape(t, a.admin); !strings.Contains(m, "gatekeeper_jwt_verifications_total") {
		t.Error("no gatekeeper_jwt_* metrics")
	}
}

// The jwt flags are checked before anything starts, naming what is
// missing.
func TestJWTFlags(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "jwks.json")
	os.WriteFile(keys, jwttest.JWKSOf(t, jwttest.RSAKey(t)), 0o644)
	for _, c := range []struct {
		name string
		mod  func(*gatekeeperCmd)
		want string
	}{
		{"no keys", func(c *gatekeeperCmd) { c.OrgFrom, c.JWTIssuer, c.JWTAudience = "jwt:org", jwtIssuer, jwtAudience }, "--jwt-keys"},
		{"no issuer", func(c *gatekeeperCmd) { c.OrgFrom, c.JWTKeys, c.JWTAudience = "jwt:org", keys, jwtAudience }, "--jwt-issuer"},
		{"no audience", func(c *gatekeeperCmd) { c.OrgFrom, c.JWTKeys, c.JWTIssuer = "jwt:org", keys, jwtIssuer }, "--jwt-audience"},
		{"a JWKS that is not one", func(c *gatekeeperCmd) {
			c.OrgFrom, c.JWTKeys, c.JWTIssuer, c.JWTAudience = "jwt:org", "/etc/hostname", jwtIssuer, jwtAudience
		}, "--jwt-keys"},
		{"jwt flags in header mode", func(c *gatekeeperCmd) { c.JWTKeys = keys }, "--jwt-keys is for --org-from jwt:CLAIM"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := &gatekeeperCmd{Listen: "off", AuthzListen: "off", AdminListen: "127.0.0.1:0", OrgFrom: "header:X-Org-Slug",
				DecisionTimeout: time.Second, ReadTimeout: time.Second, MaxHeaderBytes: 1 << 16, MaxConns: 10, RenewalURL: "/renew",
				AuthzHeaders: "original"}
			cmd.PublicKeys = licensetest.RingEntry("k1")
			cmd.NATSURL = "nats://127.0.0.1:1"
			c.mod(cmd)
			err := cmd.serve(t.Context(), slog.New(slog.DiscardHandler), nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one naming %q", err, c.want)
			}
		})
	}
}
