package jwtorg

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/licenseledger/ledger/internal/testenv/jwttest"
)

// fuzzJWKS is the fixed JWKS of FuzzOrg; the seed tokens under
// testdata/fuzz/FuzzOrg were signed by its keys (whose private halves
// were thrown away) at t0.
const fuzzJWKS = "testdata/fuzz_jwks.json"

var updateFuzzCorpus = flag.Bool("update-fuzz-corpus", false,
	"sign new FuzzOrg seed tokens with openssl, rewriting "+fuzzJWKS+" and testdata/fuzz/FuzzOrg")

// FuzzOrg feeds arbitrary tokens to a verifier of a fixed JWKS and checks
// that nothing panics, that every refusal is ErrNoClaim or wraps
// ErrInvalid, that a second lookup (perhaps cached) agrees with the
// first, and that anything accepted verifies against the JWKS by the
// standard library's own primitives, with the expected iss and aud, an
// exp within the leeway, and the org claim returned.
func FuzzOrg(f *testing.F) {
	for _, s := range []string{"", ".", "..", "a.b.c", "e30.e30.", "eyJhbGciOiJub25lIn0.e30.", "Bearer x.y.z"} {
		f.Add(s)
	}
	keys := readFuzzKeys(f)
	v, err := New(context.Background(), Config{Keys: fuzzJWKS, Issuer: issuer, Audience: audience, Claim: orgClaim,
		Now: func() time.Time { return t0 }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, token string) {
		org, err := v.Org(token)
		if org2, err2 := v.Org(token); org2 != org || err2 != err && !(errors.Is(err, ErrInvalid) && errors.Is(err2, ErrInvalid)) {
			t.Fatalf("second lookup %q, %v; first %q, %v", org2, err2, org, err)
		}
		switch {
		case err == nil && org == "":
			t.Fatal("accepted without an org")
		case err == nil, err == ErrNoClaim:
			if ierr := checkIndependently(keys, token, org); ierr != nil {
				t.Fatalf("accepted %q (org %q, %v), but %v", token, org, err, ierr)
			}
		case !errors.Is(err, ErrInvalid) || errors.Is(err, ErrNoClaim):
			t.Fatalf("error %v: neither ErrNoClaim nor an ErrInvalid", err)
		}
	})
}

// readFuzzKeys reads the fuzz JWKS by kid.
func readFuzzKeys(tb testing.TB) map[string]jose.JSONWebKey {
	tb.Helper()
	b, err := os.ReadFile(fuzzJWKS)
	if err != nil {
		tb.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		tb.Fatal(err)
	}
	m := map[string]jose.JSONWebKey{}
	for _, k := range set.Keys {
		m[k.KeyID] = k
	}
	return m
}

// checkIndependently verifies an accepted token without this package or
// the JOSE library: the signature over the token's own first two
// segments with crypto/rsa, crypto/ecdsa or crypto/ed25519, and the
// claims with encoding/json.
func checkIndependently(keys map[string]jose.JSONWebKey, token, org string) error {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return fmt.Errorf("%d segments", len(parts))
	}
	var hdr struct{ Alg, Kid string }
	if err := decodeSegment(parts[0], &hdr); err != nil {
		return err
	}
	k, ok := keys[hdr.Kid]
	if !ok {
		return fmt.Errorf("kid %q not in the JWKS", hdr.Kid)
	}
	sig, err := b64.Strict().DecodeString(parts[2])
	if err != nil {
		return err
	}
	input := []byte(parts[0] + "." + parts[1])
	digest := sha256.Sum256(input)
	switch pub := k.Key.(type) {
	case *rsa.PublicKey:
		if hdr.Alg != "RS256" {
			return fmt.Errorf("alg %s with an RSA key", hdr.Alg)
		}
		err = rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig)
	case *ecdsa.PublicKey:
		if hdr.Alg != "ES256" || len(sig) != 64 {
			return fmt.Errorf("alg %s, %d-byte signature with an EC key", hdr.Alg, len(sig))
		}
		if !ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			err = errors.New("ECDSA signature does not verify")
		}
	case ed25519.PublicKey:
		if hdr.Alg != "EdDSA" {
			return fmt.Errorf("alg %s with an Ed25519 key", hdr.Alg)
		}
		if !ed25519.Verify(pub, input, sig) {
			err = errors.New("Ed25519 signature does not verify")
		}
	default:
		return fmt.Errorf("key type %T", pub)
	}
	if err != nil {
		return err
	}
	var c map[string]any
	if err := decodeSegment(parts[1], &c); err != nil {
		return err
	}
	exp, ok := c["exp"].(float64)
	switch {
	case c["iss"] != issuer:
		return fmt.Errorf("iss %v", c["iss"])
	case !hasAudience(c["aud"]):
		return fmt.Errorf("aud %v", c["aud"])
	case !ok || time.Unix(int64(exp), 0).Add(DefaultLeeway).Before(t0):
		return fmt.Errorf("exp %v", c["exp"])
	}
	if want, _ := c[orgClaim].(string); want != org {
		return fmt.Errorf("org claim %q, returned %q", want, org)
	}
	return nil
}

func hasAudience(aud any) bool {
	if l, ok := aud.([]any); ok {
		for _, a := range l {
			if a == audience {
				return true
			}
		}
	}
	return aud == audience
}

func decodeSegment(seg string, v any) error {
	b, err := b64.Strict().DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// TestUpdateFuzzCorpus makes FuzzOrg's JWKS and seed tokens (run with
// -update-fuzz-corpus; the keys are new each time).
func TestUpdateFuzzCorpus(t *testing.T) {
	if !*updateFuzzCorpus {
		t.Skip("run with -update-fuzz-corpus to sign new seed tokens")
	}
	rsa := jwttest.NewKey(t, "fuzz-rsa", "RS256", "fuzz-rsa")
	ec := jwttest.NewKey(t, "fuzz-ec", "ES256", "fuzz-ec")
	ed := jwttest.NewKey(t, "fuzz-ed", "EdDSA", "fuzz-ed")
	b, err := json.MarshalIndent(map[string]any{"keys": []map[string]any{rsa.JWK(t, nil), ec.JWK(t, nil), ed.JWK(t, nil)}}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(fuzzJWKS), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, fuzzJWKS, append(b, '\n'))
	hdr := func(alg, kid string) map[string]any { return map[string]any{"alg": alg, "typ": "JWT", "kid": kid} }
	seeds := map[string]string{
		"rs256":         rsa.Sign(t, nil, claims()),
		"es256":         ec.Sign(t, nil, claims()),
		"eddsa":         ed.Sign(t, nil, claims()),
		"aud-list":      ed.Sign(t, nil, claims("aud", []string{"other", audience})),
		"no-claim":      ed.Sign(t, nil, claims(orgClaim, nil)),
		"numeric-claim": ec.Sign(t, nil, claims(orgClaim, 7)),
		"expired":       ed.Sign(t, nil, claims("exp", t0.Add(-time.Hour).Unix())),
		"no-exp":        ed.Sign(t, nil, claims("exp", nil)),
		"wrong-aud":     rsa.Sign(t, nil, claims("aud", "other")),
		"wrong-iss":     ec.Sign(t, nil, claims("iss", "other")),
		"alg-none":      jwttest.Encode(t, hdr("none", "fuzz-rsa")) + "." + jwttest.Encode(t, claims()) + ".",
		"hs256-rsa-pem": jwttest.HMACSign(t, hdr("HS256", "fuzz-rsa"), claims(), rsa.PubPEM),
		"rs256-ec-kid":  rsa.Sign(t, hdr("RS256", "fuzz-ec"), claims()),
		"es256-ed-kid":  ec.Sign(t, hdr("ES256", "fuzz-ed"), claims()),
		"unknown-kid":   ed.Sign(t, hdr("EdDSA", "fuzz-unknown"), claims()),
	}
	valid := strings.Split(seeds["rs256"], ".")
	seeds["tampered-claim"] = valid[0] + "." + jwttest.Encode(t, claims(orgClaim, "globex")) + "." + valid[2]
	dir := filepath.Join("testdata", "fuzz", "FuzzOrg")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, tok := range seeds {
		writeFile(t, filepath.Join(dir, name), fmt.Appendf(nil, "go test fuzz v1\nstring(%q)\n", tok))
	}
}

// TestFuzzSeeds checks that the checked-in seeds still mean what their
// names say (a JWKS regenerated without its seeds would make the fuzz
// target start from refusals only).
func TestFuzzSeeds(t *testing.T) {
	v, err := New(context.Background(), Config{Keys: fuzzJWKS, Issuer: issuer, Audience: audience, Claim: orgClaim,
		Now: func() time.Time { return t0 }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]error{"rs256": nil, "es256": nil, "eddsa": nil, "aud-list": nil,
		"no-claim": ErrNoClaim, "numeric-claim": ErrNoClaim, "expired": ErrExpired}
	dir := filepath.Join("testdata", "fuzz", "FuzzOrg")
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) < len(want) {
		t.Fatalf("seeds: %d, %v", len(entries), err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		var tok string
		if _, err := fmt.Sscanf(strings.TrimPrefix(string(b), "go test fuzz v1\n"), "string(%q)", &tok); err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		w, ok := want[e.Name()]
		if !ok {
			w = ErrInvalid
		}
		org, err := v.Org(tok)
		if w == nil && (err != nil || org != "acme") || w != nil && !errors.Is(err, w) {
			t.Errorf("seed %s: Org = %q, %v; want %v", e.Name(), org, err, w)
		}
	}
}
