// Package jwtorg takes a request's org from a verified JWT: the platform's
// own session or access token, signed by its issuer with a key published
// in a JWKS. It is the verifier behind the gatekeeper's
// --org-from jwt:CLAIM, and is importable on its own.
//
// A Verifier accepts RS256, ES256 and EdDSA only, each with a key of the
// matching type (RSA 2048 to 8192 bits, EC P-256, Ed25519); it refuses
// none, HMAC and every other algorithm, a key whose JWK names another
// "alg" or "use":"enc", a token without exp, and a token whose bytes are
// not exactly what was signed (non-canonical base64url, a crit header such
// as "b64": false). It checks iss and aud exactly, and exp, nbf and iat
// with a leeway. The org is one top-level string claim, which the caller
// validates.
//
// Verified tokens are cached until they expire, so that a request with a
// known token costs a hash, a comparison and a clock read, without
// allocating. The JWKS comes from a file (re-read by Reload) or an http(s)
// URL (refreshed by Run according to its cache headers, and re-fetched,
// rate-limited, when a token names a key the set does not hold).
package jwtorg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/licenseledger/ledger/internal/coarseclock"
	"github.com/licenseledger/ledger/internal/fasthash"
)

// ErrInvalid is wrapped by every refusal of a token but ErrNoClaim: a
// missing, malformed, forged, expired or mis-addressed token, or one
// signed by a key the JWKS does not hold (401 org_unauthenticated).
var ErrInvalid = errors.New("invalid token")

// ErrExpired is returned for a token past its exp plus the leeway; it
// wraps ErrInvalid.
var ErrExpired = fmt.Errorf("%w: expired", ErrInvalid)

// ErrNoClaim means the token verified but does not carry the org claim as
// a non-empty string (403 org_required). It is returned as is, never
// wrapped.
var ErrNoClaim = errors.New("token names no org")

// Defaults of a Config's zero fields.
const (
	DefaultLeeway             = 60 * time.Second
	DefaultCacheEntries       = 16384
	DefaultCacheBytes         = 32 << 20
	DefaultMaxTokenBytes      = 8 << 10
	DefaultHTTPTimeout        = 10 * time.Second
	DefaultMinRefresh         = time.Minute
	DefaultMaxRefresh         = 24 * time.Hour
	DefaultUnknownKIDInterval = 30 * time.Second
	DefaultUnknownKIDWait     = time.Second
	// DefaultRefresh is how long a fetched JWKS is kept when its response
	// carries no cache headers (bounded by MinRefresh and MaxRefresh).
	DefaultRefresh = time.Hour
)

// MaxCacheEntries bounds Config.CacheEntries.
const MaxCacheEntries = 1 << 22

// Config configures a Verifier. Keys, Issuer, Audience and Claim are
// required; every other zero field takes the documented default.
type Config struct {
	// Keys is the JWKS: a file path, or an http:// or https:// URL.
	Keys string
	// Issuer is the iss every token must carry, compared exactly.
	Issuer string
	// Audience must be the token's aud or one of its aud values.
	Audience string
	// Claim is the top-level claim holding the org (a string).
	Claim string
	// Leeway is the clock skew allowed on exp, nbf and iat. Defaults to
	// DefaultLeeway (60 s).
	Leeway time.Duration
	// CacheEntries bounds the verified-token cache in entries (rounded up
	// to a power of two, at most MaxCacheEntries). Defaults to
	// DefaultCacheEntries (16384).
	CacheEntries int
	// CacheBytes bounds the memory the cached tokens and orgs hold, with a
	// fixed overhead per entry. Defaults to DefaultCacheBytes (32 MiB).
	CacheBytes int
	// MaxTokenBytes is the longest token looked at; longer ones are
	// refused unparsed. Defaults to DefaultMaxTokenBytes (8 KiB).
	MaxTokenBytes int
	// HTTPClient fetches a URL JWKS. Defaults to a client with a
	// DefaultHTTPTimeout (10 s) timeout.
	HTTPClient *http.Client
	// MinRefresh and MaxRefresh bound how long a fetched JWKS is kept
	// (its Cache-Control max-age, or Expires; DefaultRefresh without
	// either). After a failed refresh the next try is MinRefresh later.
	// Default to DefaultMinRefresh (1 min) and DefaultMaxRefresh (24 h).
	MinRefresh, MaxRefresh time.Duration
	// UnknownKIDInterval is the least time between two fetches of a URL
	// JWKS caused by tokens naming a key it does not hold. Defaults to
	// DefaultUnknownKIDInterval (30 s).
	UnknownKIDInterval time.Duration
	// UnknownKIDWait bounds how long a caller waits for that fetch (its
	// context may end the wait sooner); the fetch itself goes on for the
	// next callers. Defaults to DefaultUnknownKIDWait (1 s).
	UnknownKIDWait time.Duration
	// Logger receives key-set changes and failed refreshes. Defaults to
	// slog.Default().
	Logger *slog.Logger
	// Now is the clock tokens are checked against (exp, nbf, iat, and the
	// cache's expiry). Defaults to the system clock, which cached lookups
	// read coarsely (at most about a millisecond late). Refresh scheduling
	// and its rate limit always use the system clock.
	Now func() time.Time
}

// Verifier verifies tokens against a JWKS and returns their org. It is
// safe for concurrent use.
type Verifier struct {
	cfg    Config
	src    keySource
	log    *slog.Logger
	leeway int64 // nanoseconds
	keys   atomic.Pointer[keySet]
	cache  *tokenCache
	seed   uint64 // of fasthash.Tail
	stats  counters

	loadMu   sync.Mutex   // serialises loads of the key set
	lastBody [32]byte     // SHA-256 of the JWKS installed (under loadMu)
	etag     string       // of the last URL response (under loadMu)
	next     atomic.Int64 // Unix nanoseconds: when Run refreshes next

	kidMu       sync.Mutex
	kidLast     time.Time     // the last unknown-kid fetch started
	kidInflight chan struct{} // closed when the running unknown-kid fetch ends
}

// New returns a Verifier with cfg's JWKS loaded. It fails when a required
// field is missing, or when the JWKS cannot be read, parsed, or holds no
// usable signing key; the error names the file or URL and the cause.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	v := &Verifier{cfg: cfg, log: cfg.Logger, leeway: int64(cfg.Leeway),
		cache: newTokenCache(cfg.CacheEntries, cfg.CacheBytes), seed: fasthash.NewSeed()}
	v.src = newKeySource(cfg)
	if u, ok := v.src.(*urlSource); ok && u.plain {
		v.log.Warn("the JWKS comes over plain HTTP: whoever can alter it on the way can sign tokens", "source", u.name)
	}
	v.keys.Store(&keySet{byKID: map[string][]key{}})
	if err := v.load(ctx, triggerInitial); err != nil {
		return nil, err
	}
	return v, nil
}

func (c Config) check() error {
	var missing []string
	for _, f := range []struct{ name, v string }{{"Keys", c.Keys}, {"Issuer", c.Issuer},
		{"Audience", c.Audience}, {"Claim", c.Claim}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("jwtorg: %s required", strings.Join(missing, ", "))
	}
	if c.Leeway < 0 || c.CacheEntries < 0 || c.CacheBytes < 0 || c.MaxTokenBytes < 0 ||
		c.MinRefresh < 0 || c.MaxRefresh < 0 || c.UnknownKIDInterval < 0 || c.UnknownKIDWait < 0 {
		return errors.New("jwtorg: negative durations and sizes are not allowed")
	}
	if c.MinRefresh > 0 && c.MaxRefresh > 0 && c.MinRefresh > c.MaxRefresh {
		return errors.New("jwtorg: MinRefresh is above MaxRefresh")
	}
	return nil
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.Leeway, DefaultLeeway)
	def(&c.MinRefresh, DefaultMinRefresh)
	def(&c.MaxRefresh, DefaultMaxRefresh)
	def(&c.UnknownKIDInterval, DefaultUnknownKIDInterval)
	def(&c.UnknownKIDWait, DefaultUnknownKIDWait)
	c.MaxRefresh = max(c.MaxRefresh, c.MinRefresh)
	if c.CacheEntries == 0 {
		c.CacheEntries = DefaultCacheEntries
	}
	c.CacheEntries = min(c.CacheEntries, MaxCacheEntries)
	if c.CacheBytes == 0 {
		c.CacheBytes = DefaultCacheBytes
	}
	if c.MaxTokenBytes == 0 {
		c.MaxTokenBytes = DefaultMaxTokenBytes
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Claim is the claim the org is read from.
func (v *Verifier) Claim() string { return v.cfg.Claim }

// Org returns the org token names. It is OrgContext without a deadline
// on the JWKS fetch an unknown key may cause.
func (v *Verifier) Org(token string) (string, error) {
	return v.OrgContext(context.Background(), token)
}

// OrgContext returns the org token names: the value of the Claim of a
// token that verifies. Errors wrap ErrInvalid (ErrExpired for an expired
// token), or are ErrNoClaim for a valid token without the claim as a
// non-empty string; the org itself is the caller's to validate.
//
// A token verified before and not expired since is answered from the
// cache, without allocating. A token naming a key the set does not hold
// makes a URL JWKS be fetched again (at most once per UnknownKIDInterval,
// shared by concurrent callers); ctx bounds the wait for that fetch.
func (v *Verifier) OrgContext(ctx context.Context, token string) (string, error) {
	if len(token) > v.cfg.MaxTokenBytes {
		v.stats.add(0, resultInvalid)
		return "", errTooLong
	}
	h := fasthash.Tail(token, v.seed)
	ks := v.keys.Load()
	if e := v.cache.get(h, token); e != nil && e.gen == ks.gen && v.nanos() <= e.until {
		if e.org == "" {
			v.stats.add(h, resultNoClaim)
			return "", ErrNoClaim
		}
		v.stats.add(h, resultCached)
		return e.org, nil
	}
	return v.verify(ctx, token, h, ks)
}

// nanos is the time of a cached lookup, in Unix nanoseconds.
func (v *Verifier) nanos() int64 {
	if v.cfg.Now == nil {
		return coarseclock.Default.Nanos()
	}
	return v.cfg.Now().UnixNano()
}

// now is the time of a verification.
func (v *Verifier) now() time.Time {
	if v.cfg.Now == nil {
		return time.Now()
	}
	return v.cfg.Now()
}

var errTooLong = fmt.Errorf("%w: too long", ErrInvalid)
