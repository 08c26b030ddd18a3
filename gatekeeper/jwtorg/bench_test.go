package jwtorg

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/testenv/jwttest"
)

// benchToken is a token of about 800 bytes, like a platform's access
// token, signed by k, valid for an hour from now (benchmarks read the
// system clock, as production does).
func benchToken(b *testing.B, k *jwttest.Key, sub string) string {
	now := time.Now()
	c := claims("iat", now.Unix(), "exp", now.Add(time.Hour).Unix(), "sub", sub,
		"azp", "k1bRyHrHn3BNuBAiOu6B5Mk3LsWgA7fq", "jti", "b9f4a4f2-6f1e-4f8e-9d53-0c1f1b1de0d4")
	sigLen := map[string]int{"RS256": 342, "ES256": 86, "EdDSA": 86}[k.Alg]
	hdr := map[string]any{"alg": k.Alg, "typ": "JWT", "kid": k.Kid}
	scope := "openid profile email"
	for len(jwttest.Encode(b, hdr))+1+len(jwttest.Encode(b, c))+1+sigLen < 800 {
		scope += " read:licenses"
		c["scope"] = scope
	}
	return k.Sign(b, hdr, c)
}

func benchVerifier(b *testing.B, mod func(*Config), ks ...*jwttest.Key) *Verifier {
	v, _, _ := fileVerifier(b, jwttest.JWKSOf(b, ks...), func(c *Config) {
		c.Now = nil // the system clock
		if mod != nil {
			mod(c)
		}
	})
	return v
}

// BenchmarkOrgCached is the hot path: a token verified before.
func BenchmarkOrgCached(b *testing.B) {
	k := jwttest.RSAKey(b)
	v := benchVerifier(b, nil, k)
	tok := benchToken(b, k, "auth0|5f7c8ec7c33c6c004bbafe82")
	mustOrg(b, v, tok, "acme")
	b.ReportAllocs()
	b.ReportMetric(float64(len(tok)), "token-bytes")
	for b.Loop() {
		if _, err := v.Org(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOrgCachedParallel: many cores looking up cached tokens.
func BenchmarkOrgCachedParallel(b *testing.B) {
	k := jwttest.EdKey(b)
	v := benchVerifier(b, nil, k)
	toks := make([]string, 8)
	for i := range toks {
		toks[i] = benchToken(b, k, fmt.Sprintf("auth0|5f7c8ec7c33c6c004bbafe%02d", i))
		mustOrg(b, v, toks[i], "acme")
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := v.Org(toks[i&7]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// BenchmarkOrgUncached is a full verification (nothing is cached: the
// cache's byte bound is below one entry).
func BenchmarkOrgUncached(b *testing.B) {
	for _, k := range []*jwttest.Key{jwttest.RSAKey(b), jwttest.ECKey(b), jwttest.EdKey(b)} {
		b.Run(k.Alg, func(b *testing.B) {
			v := benchVerifier(b, func(c *Config) { c.CacheBytes = 1 }, k)
			tok := benchToken(b, k, "auth0|5f7c8ec7c33c6c004bbafe82")
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.OrgContext(context.Background(), tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkTokenFromOrgCached is what a gate adds per request in jwt
// mode: the token from the Authorization header, then the cached lookup.
func BenchmarkTokenFromOrgCached(b *testing.B) {
	k := jwttest.RSAKey(b)
	v := benchVerifier(b, nil, k)
	tok := benchToken(b, k, "auth0|5f7c8ec7c33c6c004bbafe82")
	mustOrg(b, v, tok, "acme")
	h := http.Header{"Authorization": {"Bearer " + tok}, "Cookie": {"theme=dark; session=x"}}
	b.ReportAllocs()
	for b.Loop() {
		t, _ := TokenFrom(h, "session")
		if _, err := v.Org(t); err != nil {
			b.Fatal(err)
		}
	}
}
