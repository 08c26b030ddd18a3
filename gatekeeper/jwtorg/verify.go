package jwtorg

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/json"
	"github.com/go-jose/go-jose/v4/jwt"
)

// algorithms are the only ones a token may name.
var algorithms = []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA}

// verify is OrgContext for a token not in the cache: it checks token
// against ks (or the set a fetch for an unknown kid brings), caches the
// outcome when the token verifies, and counts it.
func (v *Verifier) verify(ctx context.Context, token string, h uint64, ks *keySet) (string, error) {
	org, until, ks, err := v.check(ctx, token, ks)
	var r result
	switch {
	case err == nil:
		r = resultOK
	case err == ErrNoClaim:
		r = resultNoClaim
	case errors.Is(err, ErrExpired):
		r = resultExpired
	case errors.Is(err, errUnknownKID):
		r = resultUnknownKID
	default:
		r = resultInvalid
	}
	v.stats.add(h, r)
	if err == nil || err == ErrNoClaim {
		v.cache.put(h, &cacheEntry{token: strings.Clone(token), org: org, until: until, gen: ks.gen})
	}
	return org, err
}

var (
	errMalformed  = fmt.Errorf("%w: malformed", ErrInvalid)
	errUnknownKID = fmt.Errorf("%w: signed by a key the JWKS does not hold", ErrInvalid)
	errNoExp      = fmt.Errorf("%w: no exp", ErrInvalid)
	errCrit       = fmt.Errorf("%w: crit header", ErrInvalid)
)

// check verifies token and returns its org (ErrNoClaim when it has none),
// the Unix nanosecond instant up to which it stays valid, and the key set
// it was checked against.
func (v *Verifier) check(ctx context.Context, token string, ks *keySet) (string, int64, *keySet, error) {
	if !wellFormed(token) {
		return "", 0, ks, errMalformed
	}
	tok, err := jwt.ParseSigned(token, algorithms)
	if err != nil {
		return "", 0, ks, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	hdr := tok.Headers[0]
	if _, ok := hdr.ExtraHeaders["crit"]; ok {
		// No extension is understood; b64 would sign other bytes than
		// the token carries.
		return "", 0, ks, errCrit
	}
	keys, ok := ks.byKID[hdr.KeyID]
	if !ok {
		// Whether or not this call fetched, a set installed since ks was
		// read is visible now.
		v.refetch(ctx)
		ks = v.keys.Load()
		keys, ok = ks.byKID[hdr.KeyID]
	}
	if !ok {
		return "", 0, ks, errUnknownKID
	}
	var std jwt.Claims
	var all map[string]json.RawMessage
	matched := false
	for _, k := range keys { // a kid may name several keys
		if string(k.alg) != hdr.Algorithm {
			continue
		}
		matched = true
		if err = tok.Claims(k.pub, &std, &all); !errors.Is(err, jose.ErrCryptoFailure) {
			break // verified, or the claims do not decode
		}
	}
	switch {
	case !matched:
		return "", 0, ks, fmt.Errorf("%w: alg %s does not match key %q", ErrInvalid, hdr.Algorithm, hdr.KeyID)
	case err != nil:
		return "", 0, ks, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	until, err := v.validate(&std)
	if err != nil {
		return "", 0, ks, err
	}
	var org string
	if raw, ok := all[v.cfg.Claim]; !ok || json.Unmarshal(raw, &org) != nil || org == "" {
		return "", until, ks, ErrNoClaim
	}
	return org, until, ks, nil
}

// validate checks the registered claims of a verified token and returns
// the Unix nanosecond instant up to which they hold.
func (v *Verifier) validate(c *jwt.Claims) (int64, error) {
	if c.Expiry == nil {
		// A token without exp would never leave the cache.
		return 0, errNoExp
	}
	err := c.ValidateWithLeeway(jwt.Expected{Issuer: v.cfg.Issuer, AnyAudience: jwt.Audience{v.cfg.Audience},
		Time: v.now()}, v.cfg.Leeway)
	switch {
	case errors.Is(err, jwt.ErrExpired):
		return 0, ErrExpired
	case err != nil:
		return 0, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return addClamped(int64(*c.Expiry), v.leeway), nil
}

// addClamped is Unix second s plus nanoseconds d, in Unix nanoseconds,
// clamped to int64.
func addClamped(s, d int64) int64 {
	const maxSec = math.MaxInt64/int64(time.Second) - 1
	if s >= maxSec || s <= -maxSec {
		if s < 0 {
			return math.MinInt64
		}
		return math.MaxInt64
	}
	n := s * int64(time.Second)
	if d > 0 && n > math.MaxInt64-d {
		return math.MaxInt64
	}
	return n + d
}

var strictB64 = base64.RawURLEncoding.Strict()

// wellFormed reports whether token is three segments of canonical
// unpadded base64url. go-jose decodes more leniently (non-zero trailing
// bits, line breaks), which would let different strings carry one
// signature: such a token is refused rather than given two meanings.
func wellFormed(token string) bool {
	dots := 0
	for i := 0; i < len(token); i++ {
		switch c := token[i]; {
		case c == '.':
			dots++
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	if dots != 2 {
		return false
	}
	for seg := range strings.SplitSeq(token, ".") {
		if seg == "" {
			return false
		}
		if _, err := strictB64.DecodeString(seg); err != nil {
			return false
		}
	}
	return true
}
