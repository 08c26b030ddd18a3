package jwtorg

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/json"
)

// RSA keys outside these bounds are not used: smaller ones are weak,
// larger ones make every uncached verification expensive.
const (
	minRSABits = 2048
	maxRSABits = 8192
)

// maxJWKSBytes bounds a JWKS document.
const maxJWKSBytes = 1 << 20

// key is a usable verification key of a JWKS.
type key struct {
	kid string
	alg jose.SignatureAlgorithm // the only algorithm it verifies
	pub any                     // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
	id  string                  // kid, alg and thumbprint: its identity across loads
}

// keySet is an immutable set of keys by kid (a JWK without kid is under
// "", for tokens without kid). gen changes whenever a key of the previous
// set is gone, so cached verifications made with it stop counting.
type keySet struct {
	byKID map[string][]key
	n     int
	gen   uint64
}

// skippedKey is a JWK of the set that is not used, and why.
type skippedKey struct{ kid, reason string }

// parseJWKS returns the usable keys of a JWKS document and the JWKs it
// skipped. A JWK that does not parse is skipped rather than failing the
// set: issuers publish key types this package does not use. A set with no
// usable key is an error.
func parseJWKS(body []byte) (*keySet, []skippedKey, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, nil, fmt.Errorf("not a JWKS: %w", err)
	}
	if doc.Keys == nil {
		return nil, nil, errors.New(`not a JWKS: no "keys" array`)
	}
	ks := &keySet{byKID: map[string][]key{}}
	var skipped []skippedKey
	for _, raw := range doc.Keys {
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(raw); err != nil {
			skipped = append(skipped, skippedKey{"", err.Error()})
			continue
		}
		k, err := usable(&jwk)
		if err != nil {
			skipped = append(skipped, skippedKey{jwk.KeyID, err.Error()})
			continue
		}
		ks.byKID[k.kid] = append(ks.byKID[k.kid], k)
		ks.n++
	}
	if ks.n == 0 {
		return nil, skipped, errors.New("no usable signing key (RS256, ES256 or EdDSA public key)")
	}
	return ks, skipped, nil
}

// usable returns jwk as a key, or why it is not used.
func usable(jwk *jose.JSONWebKey) (key, error) {
	if jwk.Use != "" && jwk.Use != "sig" {
		return key{}, fmt.Errorf("use %q is not sig", jwk.Use)
	}
	if !jwk.IsPublic() || !jwk.Valid() {
		return key{}, errors.New("not a public key")
	}
	var alg jose.SignatureAlgorithm
	switch pub := jwk.Key.(type) {
	case *rsa.PublicKey:
		if b := pub.N.BitLen(); b < minRSABits || b > maxRSABits {
			return key{}, fmt.Errorf("RSA key of %d bits (%d to %d allowed)", b, minRSABits, maxRSABits)
		}
		alg = jose.RS256
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return key{}, fmt.Errorf("EC key on %s (P-256 only)", pub.Curve.Params().Name)
		}
		alg = jose.ES256
	case ed25519.PublicKey:
		alg = jose.EdDSA
	default:
		return key{}, fmt.Errorf("key type %T is not used", pub)
	}
	if jwk.Algorithm != "" && jwk.Algorithm != string(alg) {
		return key{}, fmt.Errorf("alg %q is not %s, the only algorithm used with this key type", jwk.Algorithm, alg)
	}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return key{}, err
	}
	return key{kid: jwk.KeyID, alg: alg, pub: jwk.Key,
		id: jwk.KeyID + "\x00" + string(alg) + "\x00" + hex.EncodeToString(tp)}, nil
}

// diff returns the kids whose keys next adds to prev, and those of keys
// prev holds and next does not (sorted, each once).
func diff(prev, next *keySet) (added, removed []string) {
	ids := func(ks *keySet) map[string]string {
		m := map[string]string{}
		for kid, keys := range ks.byKID {
			for _, k := range keys {
				m[k.id] = kid
			}
		}
		return m
	}
	p, n := ids(prev), ids(next)
	for id, kid := range n {
		if _, ok := p[id]; !ok {
			added = append(added, kid)
		}
	}
	for id, kid := range p {
		if _, ok := n[id]; !ok {
			removed = append(removed, kid)
		}
	}
	slices.Sort(added)
	slices.Sort(removed)
	return slices.Compact(added), slices.Compact(removed)
}
