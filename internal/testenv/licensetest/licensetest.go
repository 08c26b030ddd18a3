// Package licensetest signs licenses for tests with deterministic vendor
// keys: the same name always gives the same key pair, so checked-in fuzz
// seeds and expected fingerprints stay valid across runs.
package licensetest

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/license"
)

// Key derives the key pair called name.
func Key(name string) (ed25519.PublicKey, ed25519.PrivateKey) {
	seed := sha256.Sum256([]byte("license test key " + name))
	priv := ed25519.NewKeyFromSeed(seed[:])
	return priv.Public().(ed25519.PublicKey), priv
}

// RingEntry is the LICENSE_PUBLIC_KEYS entry "kid:base64" of key kid.
func RingEntry(kid string) string {
	pub, _ := Key(kid)
	return kid + ":" + base64.StdEncoding.EncodeToString(pub)
}

// Ring trusts the keys named kids, each under its own name.
func Ring(t testing.TB, kids ...string) *license.Ring {
	t.Helper()
	keys := map[string]ed25519.PublicKey{}
	for _, k := range kids {
		keys[k], _ = Key(k)
	}
	r, err := license.NewRing(keys)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Keys is a reloadable key set trusting the keys named kids (as
// LICENSE_PUBLIC_KEYS would), without the built-in vendor key.
func Keys(t testing.TB, kids ...string) *license.Keys {
	t.Helper()
	entries := make([]string, len(kids))
	for i, k := range kids {
		entries[i] = RingEntry(k)
	}
	keys, err := license.NewKeys(license.RingConfig{Env: strings.Join(entries, ","), NoBuiltin: true})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// JSON marshals v or fails the test.
func JSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// SignAs signs payload p with the key called keyName under kid (a forgery
// when they differ).
func SignAs(t testing.TB, keyName, kid string, p map[string]any) *license.License {
	t.Helper()
	_, priv := Key(keyName)
	l, err := license.Sign(priv, kid, JSON(t, p))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Sign signs p with key kid under kid.
func Sign(t testing.TB, kid string, p map[string]any) *license.License {
	t.Helper()
	return SignAs(t, kid, kid, p)
}

// SignRaw signs arbitrary payload bytes, bypassing the payload rules the
// way a careless or hostile vendor tool could, and returns the compact key.
func SignRaw(kid string, payload []byte) string {
	_, priv := Key(kid)
	signed := "hfl1." + kid + "." + base64.RawURLEncoding.EncodeToString(payload)
	return signed + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, []byte(signed)))
}
