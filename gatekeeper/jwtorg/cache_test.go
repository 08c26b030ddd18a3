package jwtorg

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/testenv/jwttest"
)

func TestCacheHit(t *testing.T) {
	k := jwttest.EdKey(t)
	v, _, _ := fileVerifier(t, jwttest.JWKSOf(t, k), nil)
	tok := k.Sign(t, nil, claims())
	for range 3 {
		mustOrg(t, v, tok, "acme")
	}
	if ok, cached := verifications(t, v, "ok"), verifications(t, v, "cached"); ok != 1 || cached != 2 {
		t.Fatalf("ok %d cached %d, want 1 and 2", ok, cached)
	}
	// A valid token without the claim is cached too.
	noOrg := k.Sign(t, nil, claims(orgClaim, nil))
	for range 2 {
		if _, err := v.Org(noOrg); err != ErrNoClaim {
			t.Fatalf("Org error %v, want ErrNoClaim", err)
		}
	}
	if n := metric(t, v, "gatekeeper_jwt_cache_entries"); n != 2 {
		t.Fatalf("cache entries %v, want 2", n)
	}
	if n := verifications(t, v, "ok"); n != 1 {
		t.Fatalf("ok %d, want 1", n)
	}
	// A token differing from a cached one is not answered from the cache.
	i := strings.LastIndexByte(tok, '.')
	mustRefuse(t, v, tok[:i+1]+flip(tok[i+1:]), ErrInvalid)
	mustRefuse(t, v, tok+"A", ErrInvalid)
}

func TestCacheExpiry(t *testing.T) {
	k := jwttest.EdKey(t)
	v, c, _ := fileVerifier(t, jwttest.JWKSOf(t, k), nil)
	tok := k.Sign(t, nil, claims("exp", t0.Add(10*time.Minute).Unix()))
	mustOrg(t, v, tok, "acme")
	c.Add(10*time.Minute + DefaultLeeway) // the last instant it holds
	mustOrg(t, v, tok, "acme")
	if n := verifications(t, v, "cached"); n != 1 {
		t.Fatalf("cached %d, want 1", n)
	}
	c.Add(time.Second)
	mustRefuse(t, v, tok, ErrExpired)
	if n := verifications(t, v, "expired"); n != 1 {
		t.Fatalf("expired %d, want 1", n)
	}
}

func TestCacheBounds(t *testing.T) {
	k := jwttest.EdKey(t)
	var toks []string
	for i := range 40 {
		toks = append(toks, k.Sign(t, nil, claims("sub", fmt.Sprintf("user-%02d", i))))
	}
	size := len(toks[0]) + len("acme") + entryOverhead
	for _, c := range []struct {
		name           string
		entries, bytes int
		maxEntries     int
	}{
		{"entries", 4, 0, 4},
		{"bytes", 1024, 3 * size, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			v, _, _ := fileVerifier(t, jwttest.JWKSOf(t, k), func(cfg *Config) { cfg.CacheEntries, cfg.CacheBytes = c.entries, c.bytes })
			for range 2 {
				for _, tok := range toks {
					mustOrg(t, v, tok, "acme")
				}
			}
			entries := metric(t, v, "gatekeeper_jwt_cache_entries")
			bytes := metric(t, v, "gatekeeper_jwt_cache_bytes")
			if entries < 1 || entries > float64(c.maxEntries) || bytes != entries*float64(size) {
				t.Fatalf("cache holds %v entries, %v bytes; want 1 to %d of %d bytes each", entries, bytes, c.maxEntries, size)
			}
			if cached := verifications(t, v, "cached"); cached > c.maxEntries {
				t.Fatalf("%d cache hits with at most %d entries", cached, c.maxEntries)
			}
		})
	}
}

// TestTokenCacheConcurrent: under concurrent stores and clears, the
// accounting matches what the slots hold and never passes the bound.
func TestTokenCacheConcurrent(t *testing.T) {
	c := newTokenCache(64, 40*(entryOverhead+100))
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 5000 {
				tok := fmt.Sprintf("%d-%d-%s", w, i, strings.Repeat("x", i%100))
				h := uint64(i*7919 + w)
				c.put(h, &cacheEntry{token: tok, org: "acme"})
				if e := c.get(h, tok); e != nil && e.token != tok {
					t.Errorf("get %q returned %q", tok, e.token)
				}
				if b := c.bytes.Load(); b > c.limit {
					t.Errorf("bytes %d over the bound %d", b, c.limit)
				}
				if i%1000 == 999 && w == 0 {
					c.clear()
				}
			}
		})
	}
	wg.Wait()
	var n, b int64
	for i := range c.slots {
		if e := c.slots[i].Load(); e != nil {
			n++
			b += e.size()
		}
	}
	if n != c.entries.Load() || b != c.bytes.Load() {
		t.Fatalf("slots hold %d entries, %d bytes; counted %d, %d", n, b, c.entries.Load(), c.bytes.Load())
	}
	c.clear()
	if c.entries.Load() != 0 || c.bytes.Load() != 0 {
		t.Fatalf("after clear: %d entries, %d bytes", c.entries.Load(), c.bytes.Load())
	}
}

// TestConcurrentOrgAndReload runs lookups while the key set changes
// (for the race detector, and to check no token of a removed key passes).
func TestConcurrentOrgAndReload(t *testing.T) {
	k1, k2 := jwttest.NewKey(t, "conc-1", "EdDSA", "conc-1"), jwttest.NewKey(t, "conc-2", "EdDSA", "conc-2")
	v, _, path := fileVerifier(t, jwttest.JWKSOf(t, k1, k2), nil)
	tok1, tok2 := k1.Sign(t, nil, claims()), k2.Sign(t, nil, claims())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				if _, err := v.Org(tok2); err != nil {
					t.Errorf("tok2: %v", err)
					return
				}
				_, _ = v.Org(tok1)
			}
		})
	}
	for i := range 20 {
		doc := jwttest.JWKSOf(t, k1, k2)
		if i%2 == 1 {
			doc = jwttest.JWKSOf(t, k2)
		}
		writeFile(t, path, doc)
		if err := v.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 {
			mustRefuse(t, v, tok1, ErrInvalid)
		}
	}
	cancel()
	wg.Wait()
}

func TestCachedLookupAllocs(t *testing.T) {
	k := jwttest.RSAKey(t)
	v, _, _ := fileVerifier(t, jwttest.JWKSOf(t, k), nil)
	tok := k.Sign(t, nil, claims())
	mustOrg(t, v, tok, "acme")
	if a := testing.AllocsPerRun(100, func() { _, _ = v.Org(tok) }); a != 0 {
		t.Fatalf("a cached lookup allocates %v times", a)
	}
}
