package jwtorg

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/fasthash"
	"github.com/licenseledger/ledger/internal/testenv/jwttest"
)

// TestFileReload: Reload picks up a new kid and drops a removed one; the
// cached tokens of the removed key are refused from then on.
func TestFileReload(t *testing.T) {
	k1, k2 := jwttest.NewKey(t, "rot-1", "EdDSA", "rot-1"), jwttest.NewKey(t, "rot-2", "ES256", "rot-2")
	var logs logBuffer
	v, _, path := fileVerifier(t, jwttest.JWKSOf(t, k1), func(c *Config) { c.Logger = logs.logger() })
	tok1, tok2 := k1.Sign(t, nil, claims()), k2.Sign(t, nil, claims())
	mustOrg(t, v, tok1, "acme")
	mustOrg(t, v, tok1, "acme") // now cached
	if n := verifications(t, v, "cached"); n != 1 {
		t.Fatalf("cached %d, want 1", n)
	}

	writeFile(t, path, jwttest.JWKSOf(t, k1, k2))
	mustRefuse(t, v, tok2, ErrInvalid) // not until Reload
	if err := v.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustOrg(t, v, tok2, "acme")
	mustOrg(t, v, tok1, "acme") // a key added: the cache stays
	if n := verifications(t, v, "cached"); n != 2 {
		t.Fatalf("cached %d after adding a key, want 2", n)
	}

	writeFile(t, path, jwttest.JWKSOf(t, k2))
	if err := v.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustRefuse(t, v, tok1, ErrInvalid)
	if n := verifications(t, v, "cached"); n != 2 {
		t.Fatalf("a token of the removed key was answered from the cache")
	}
	mustOrg(t, v, tok2, "acme")
	if got := metric(t, v, "gatekeeper_jwt_keys"); got != 1 {
		t.Fatalf("keys %v, want 1", got)
	}
	if !strings.Contains(logs.String(), "removed=[rot-1]") {
		t.Fatalf("removal not logged:\n%s", logs.String())
	}

	// A broken file keeps the keys in use.
	writeFile(t, path, []byte(`{"keys": [`))
	if err := v.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Reload of a broken file: %v", err)
	}
	mustOrg(t, v, tok2, "acme")
	if n := metric(t, v, "gatekeeper_jwt_jwks_refreshes_total", "trigger", "reload", "result", "error"); n != 1 {
		t.Fatalf("reload errors %v, want 1", n)
	}
	if n := metric(t, v, "gatekeeper_jwt_jwks_refreshes_total", "trigger", "reload", "result", "ok"); n != 2 {
		t.Fatalf("reloads %v, want 2", n)
	}
}

// TestRemovedKeyInFlight: a verification that began with a key set and
// ends after a reload removed its key does not leave the token cached.
func TestRemovedKeyInFlight(t *testing.T) {
	k1, k2 := jwttest.NewKey(t, "rot-1", "EdDSA", "rot-1"), jwttest.NewKey(t, "rot-2", "ES256", "rot-2")
	v, _, path := fileVerifier(t, jwttest.JWKSOf(t, k1, k2), nil)
	tok := k1.Sign(t, nil, claims())
	before := v.keys.Load()
	writeFile(t, path, jwttest.JWKSOf(t, k2))
	if err := v.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	// As if it had read the set just before the reload:
	if org, err := v.verify(context.Background(), tok, fasthash.Tail(tok, v.seed), before); err != nil || org != "acme" {
		t.Fatalf("verify with the old set: %q, %v", org, err)
	}
	mustRefuse(t, v, tok, ErrInvalid)
}

// TestReplacedKeySameKID: a kid whose key is replaced counts as removed.
func TestReplacedKeySameKID(t *testing.T) {
	old, repl := jwttest.NewKey(t, "same-old", "EdDSA", "same"), jwttest.NewKey(t, "same-new", "EdDSA", "same")
	v, _, path := fileVerifier(t, jwttest.JWKSOf(t, old), nil)
	tok := old.Sign(t, nil, claims())
	mustOrg(t, v, tok, "acme")
	writeFile(t, path, jwttest.JWKSOf(t, repl))
	if err := v.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustRefuse(t, v, tok, ErrInvalid)
	mustOrg(t, v, repl.Sign(t, nil, claims()), "acme")
}

func mustOrg(tb testing.TB, v *Verifier, token, want string) {
	tb.Helper()
	if org, err := v.Org(token); err != nil || org != want {
		tb.Fatalf("Org = %q, %v; want %q", org, err, want)
	}
}

func mustRefuse(tb testing.TB, v *Verifier, token string, want error) {
	tb.Helper()
	if org, err := v.Org(token); !errors.Is(err, want) || org != "" {
		tb.Fatalf("Org = %q, %v; want %v", org, err, want)
	}
}

// jwksServer serves a JWKS it can swap, with cache headers, counting the
// requests.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	doc     []byte
	etag    string        // "": none
	cc      string        // Cache-Control
	status  int           // 0: 200
	hold    chan struct{} // non-nil: requests wait until it is closed
	hits    atomic.Int32
	matched atomic.Int32 // requests answered 304
}

func newJWKSServer(tb testing.TB, doc []byte) *jwksServer {
	s := &jwksServer{doc: doc}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	tb.Cleanup(s.Close)
	return s
}

func (s *jwksServer) serve(w http.ResponseWriter, r *http.Request) {
	s.hits.Add(1)
	s.mu.Lock()
	hold := s.hold
	s.mu.Unlock()
	if hold != nil {
		<-hold
	}
	s.mu.Lock()
	doc, etag, cc, status := s.doc, s.etag, s.cc, s.status
	s.mu.Unlock()
	if cc != "" {
		w.Header().Set("Cache-Control", cc)
	}
	if status != 0 {
		http.Error(w, "down", status)
		return
	}
	if etag != "" {
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			s.matched.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	_, _ = w.Write(doc)
}

func (s *jwksServer) set(doc []byte, etag, cc string, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.doc, s.etag, s.cc, s.status = doc, etag, cc, status
}

func urlVerifier(tb testing.TB, s *jwksServer, mod func(*Config)) (*Verifier, *clock) {
	tb.Helper()
	c := newClock()
	cfg := testConfig(s.URL+"/.well-known/jwks.json", c)
	cfg.HTTPClient = s.Client()
	if mod != nil {
		mod(&cfg)
	}
	v, err := New(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return v, c
}

// TestURLUnknownKID: a token naming a new kid makes the JWKS be fetched
// again, at most once per interval.
func TestURLUnknownKID(t *testing.T) {
	k1, k2, k3 := jwttest.NewKey(t, "url-1", "RS256", "url-1"), jwttest.NewKey(t, "url-2", "ES256", "url-2"), jwttest.NewKey(t, "url-3", "EdDSA", "url-3")
	s := newJWKSServer(t, jwttest.JWKSOf(t, k1))
	v, _ := urlVerifier(t, s, func(c *Config) { c.UnknownKIDInterval = time.Hour })
	if n := s.hits.Load(); n != 1 {
		t.Fatalf("hits after New %d, want 1", n)
	}
	mustOrg(t, v, k1.Sign(t, nil, claims()), "acme")

	s.set(jwttest.JWKSOf(t, k1, k2), "", "", 0)
	mustOrg(t, v, k2.Sign(t, nil, claims()), "acme")
	if n := s.hits.Load(); n != 2 {
		t.Fatalf("hits after a new kid %d, want 2", n)
	}

	s.set(jwttest.JWKSOf(t, k1, k2, k3), "", "", 0)
	tok3 := k3.Sign(t, nil, claims())
	mustRefuse(t, v, tok3, ErrInvalid) // within the interval: not fetched
	mustRefuse(t, v, k3.Sign(t, map[string]any{"alg": "EdDSA", "kid": "url-4"}, claims()), ErrInvalid)
	if n := s.hits.Load(); n != 2 {
		t.Fatalf("hits after unknown kids within the interval %d, want 2", n)
	}
	if n := verifications(t, v, "unknown_kid"); n != 2 {
		t.Fatalf("unknown_kid %d, want 2", n)
	}
	if n := metric(t, v, "gatekeeper_jwt_jwks_refreshes_total", "trigger", "unknown_kid", "result", "ok"); n != 1 {
		t.Fatalf("unknown-kid refreshes %v, want 1", n)
	}
	if err := v.Reload(context.Background()); err != nil { // explicit: not rate-limited
		t.Fatal(err)
	}
	mustOrg(t, v, tok3, "acme")
}

// TestURLUnknownKIDInterval: past the interval, another unknown kid
// fetches again; concurrent callers share one fetch.
func TestURLUnknownKIDInterval(t *testing.T) {
	k1, k2 := jwttest.NewKey(t, "url-1", "RS256", "url-1"), jwttest.NewKey(t, "url-2", "ES256", "url-2")
	s := newJWKSServer(t, jwttest.JWKSOf(t, k1))
	const interval = 300 * time.Millisecond
	v, _ := urlVerifier(t, s, func(c *Config) { c.UnknownKIDInterval = interval })
	start := time.Now()
	mustRefuse(t, v, k2.Sign(t, nil, claims()), ErrInvalid) // fetched, still unknown
	if n := s.hits.Load(); n != 2 {
		t.Fatalf("hits %d, want 2", n)
	}
	s.set(jwttest.JWKSOf(t, k1, k2), "", "", 0)
	tok := k2.Sign(t, nil, claims())
	time.Sleep(interval - time.Since(start) + 50*time.Millisecond)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if org, err := v.Org(tok); err != nil || org != "acme" {
				t.Errorf("Org = %q, %v", org, err)
			}
		})
	}
	wg.Wait()
	if n := s.hits.Load(); n != 3 {
		t.Fatalf("hits %d, want 3 (one shared fetch)", n)
	}
}

// TestURLUnknownKIDDeadline: the caller's context bounds its wait for a
// slow fetch; the fetch itself goes on for the others.
func TestURLUnknownKIDDeadline(t *testing.T) {
	k1, k2 := jwttest.NewKey(t, "url-1", "RS256", "url-1"), jwttest.NewKey(t, "url-2", "ES256", "url-2")
	s := newJWKSServer(t, jwttest.JWKSOf(t, k1))
	v, _ := urlVerifier(t, s, nil)
	release := make(chan struct{})
	s.set(jwttest.JWKSOf(t, k1, k2), "", "", 0)
	s.mu.Lock()
	s.hold = release
	s.mu.Unlock()
	tok := k2.Sign(t, nil, claims())
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := v.OrgContext(ctx, tok); !errors.Is(err, ErrInvalid) {
		t.Fatalf("OrgContext error %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("waited %v past a 100 ms deadline", d)
	}
	close(release)
	waitFor(t, 3*time.Second, func() bool { _, err := v.Org(tok); return err == nil })
}

// TestURLRun: Run refreshes when max-age says, revalidating with the
// ETag; a failing refresh keeps the keys and is logged.
func TestURLRun(t *testing.T) {
	k1, k2 := jwttest.NewKey(t, "url-1", "RS256", "url-1"), jwttest.NewKey(t, "url-2", "ES256", "url-2")
	s := newJWKSServer(t, jwttest.JWKSOf(t, k1))
	s.set(jwttest.JWKSOf(t, k1), `"v1"`, "public, max-age=1", 0)
	var logs logBuffer
	v, _ := urlVerifier(t, s, func(c *Config) {
		c.MinRefresh = 10 * time.Millisecond
		c.UnknownKIDInterval = time.Hour
		c.Logger = logs.logger()
	})
	tok1, tok2 := k1.Sign(t, nil, claims()), k2.Sign(t, nil, claims())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { v.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	// Revalidated with If-None-Match after about a second, not every
	// MinRefresh.
	// (The metric is counted once the 304 is read: wait for it, not for
	// the server's count.)
	waitFor(t, 3*time.Second, func() bool {
		return metric(t, v, "gatekeeper_jwt_jwks_refreshes_total", "trigger", "scheduled", "result", "not_modified") >= 1
	})
	if s.matched.Load() < 1 {
		t.Fatal("a refresh counted not_modified without an If-None-Match match")
	}
	if n := s.hits.Load(); n > 3 {
		t.Fatalf("%d fetches within a max-age of 1 s", n)
	}

	// A new document: picked up by the schedule (the unknown-kid
	// fetch is spent first, so it cannot be what finds k2).
	mustRefuse(t, v, jwttest.NewKey(t, "url-3", "EdDSA", "url-3").Sign(t, nil, claims()), ErrInvalid)
	s.set(jwttest.JWKSOf(t, k2), `"v2"`, "max-age=1", 0)
	waitFor(t, 3*time.Second, func() bool { _, err := v.Org(tok2); return err == nil })
	mustRefuse(t, v, tok1, ErrInvalid)

	// Failures keep k2.
	s.set(nil, "", "max-age=1", http.StatusInternalServerError)
	hits := s.hits.Load()
	waitFor(t, 3*time.Second, func() bool { // retried after MinRefresh, each failure counted
		return s.hits.Load() >= hits+2 &&
			metric(t, v, "gatekeeper_jwt_jwks_refreshes_total", "trigger", "scheduled", "result", "error") >= 2
	})
	mustOrg(t, v, tok2, "acme")
	if !strings.Contains(logs.String(), "500") || !strings.Contains(logs.String(), s.URL) {
		t.Fatalf("failed refresh not logged with its cause and URL:\n%s", logs.String())
	}
	last := metric(t, v, "gatekeeper_jwt_jwks_last_refresh_timestamp_seconds")
	if age := time.Since(time.Unix(int64(last), 0)); age < 0 || age > 5*time.Second {
		t.Fatalf("last refresh %v ago", age)
	}
}

// TestURLRefreshFailures: a reload that fails in any way keeps the keys.
func TestURLRefreshFailures(t *testing.T) {
	k1, k2 := jwttest.NewKey(t, "url-1", "RS256", "url-1"), jwttest.NewKey(t, "url-2", "ES256", "url-2")
	s := newJWKSServer(t, jwttest.JWKSOf(t, k1))
	v, _ := urlVerifier(t, s, nil)
	tok := k1.Sign(t, nil, claims())
	mustOrg(t, v, tok, "acme")
	for _, c := range []struct {
		name   string
		doc    []byte
		status int
		want   string
	}{
		{"HTTP 500", nil, http.StatusInternalServerError, "500"},
		{"not JSON", []byte("<html>"), 0, "not a JWKS"},
		{"no usable key", jwttest.JWKS(t, k2.JWK(t, map[string]any{"use": "enc"})), 0, "no usable signing key"},
		{"too large", []byte(`{"keys":[], "pad":"` + strings.Repeat("x", maxJWKSBytes) + `"}`), 0, "larger than"},
	} {
		s.set(c.doc, "", "", c.status)
		err := v.Reload(context.Background())
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), s.URL) {
			t.Errorf("%s: Reload error %v", c.name, err)
		}
		if _, err := v.Org(tok); err != nil {
			t.Errorf("%s: the old key is gone: %v", c.name, err)
		}
	}
	// The initial load must succeed.
	s.set(nil, "", "", http.StatusNotFound)
	_, err := New(context.Background(), testConfig(s.URL+"/jwks", newClock()))
	if err == nil || !strings.Contains(err.Error(), s.URL+"/jwks") || !strings.Contains(err.Error(), "404") {
		t.Fatalf("New against a 404: %v", err)
	}
}

// TestURLCredentialsRedacted: a password in the URL stays out of errors.
func TestURLCredentialsRedacted(t *testing.T) {
	s := newJWKSServer(t, nil)
	s.set(nil, "", "", http.StatusForbidden)
	u := strings.Replace(s.URL, "http://", "http://user:s3cret@", 1)
	_, err := New(context.Background(), testConfig(u, newClock()))
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("New error %v", err)
	}
}

func TestTTLOf(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	date := now.Format(http.TimeFormat)
	for _, c := range []struct {
		hdr   map[string]string
		want  time.Duration
		known bool
	}{
		{map[string]string{}, 0, false},
		{map[string]string{"Cache-Control": "public, max-age=300"}, 300 * time.Second, true},
		{map[string]string{"Cache-Control": `max-age="300"`}, 300 * time.Second, true},
		{map[string]string{"Cache-Control": "max-age=300", "Age": "100"}, 200 * time.Second, true},
		{map[string]string{"Cache-Control": "max-age=300", "Age": "400"}, 0, true},
		{map[string]string{"Cache-Control": "MAX-AGE=60"}, 60 * time.Second, true},
		{map[string]string{"Cache-Control": "max-age=300, no-cache"}, 0, true},
		{map[string]string{"Cache-Control": "no-store"}, 0, true},
		{map[string]string{"Cache-Control": "max-age=soon"}, 0, true},
		{map[string]string{"Cache-Control": "max-age=99999999999999999999"}, 0, true},
		{map[string]string{"Cache-Control": "max-age=600", "Expires": now.Add(time.Hour).Format(http.TimeFormat)}, 600 * time.Second, true},
		{map[string]string{"Expires": now.Add(time.Hour).Format(http.TimeFormat), "Date": date}, time.Hour, true},
		{map[string]string{"Expires": now.Add(time.Hour).Format(http.TimeFormat), "Date": now.Add(-time.Hour).Format(http.TimeFormat)}, 2 * time.Hour, true},
		{map[string]string{"Expires": now.Add(time.Hour).Format(http.TimeFormat)}, time.Hour, true}, // no Date: now
		{map[string]string{"Expires": "0"}, 0, true},
		{map[string]string{"Expires": now.Add(-time.Hour).Format(http.TimeFormat)}, 0, true},
	} {
		h := http.Header{}
		for k, val := range c.hdr {
			h.Set(k, val)
		}
		got, known := ttlOf(h, now)
		if got != c.want || known != c.known {
			t.Errorf("%v: %v %v, want %v %v", c.hdr, got, known, c.want, c.known)
		}
	}
	u := &urlSource{min: time.Minute, max: 24 * time.Hour}
	for _, c := range []struct {
		ttl   time.Duration
		known bool
		want  time.Duration
	}{
		{0, true, time.Minute}, {time.Second, true, time.Minute}, {time.Hour, true, time.Hour},
		{48 * time.Hour, true, 24 * time.Hour}, {0, false, DefaultRefresh},
	} {
		if got := u.bound(c.ttl, c.known); got != c.want {
			t.Errorf("bound(%v, %v) = %v, want %v", c.ttl, c.known, got, c.want)
		}
	}
}

func waitFor(tb testing.TB, d time.Duration, cond func() bool) {
	tb.Helper()
	// d is what the condition needs on a quiet machine; the bound is
	// generous so that a loaded one (-race, two cores) does not fail it.
	d *= 5
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("condition not met within %v", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPlainHTTPSource(t *testing.T) {
	for keys, plain := range map[string]bool{
		"http://id.example.com/jwks.json":  true,
		"http://10.0.0.1/jwks.json":        true,
		"https://id.example.com/jwks.json": false,
		"http://127.0.0.1:8080/jwks.json":  false,
		"http://[::1]/jwks.json":           false,
		"http://localhost/jwks.json":       false,
	} {
		src, ok := newKeySource(Config{Keys: keys}).(*urlSource)
		if !ok || src.plain != plain {
			t.Errorf("%s: URL source %v, plain %v; want plain %v", keys, ok, src != nil && src.plain, plain)
		}
	}
	if _, ok := newKeySource(Config{Keys: "/etc/jwks.json"}).(fileSource); !ok {
		t.Error("a path is not a file source")
	}
}
