package jwtorg

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/testenv/jwttest"
)

func TestValidTokens(t *testing.T) {
	rsa, ec, ed := jwttest.RSAKey(t), jwttest.ECKey(t), jwttest.EdKey(t)
	v, _, _ := fileVerifier(t, jwttest.JWKSOf(t, rsa, ec, ed), nil)
	for _, k := range []*jwttest.Key{rsa, ec, ed} {
		t.Run(k.Alg, func(t *testing.T) {
			org, err := v.Org(k.Sign(t, nil, claims(orgClaim, "acme-"+strings.ToLower(k.Alg))))
			if err != nil || org != "acme-"+strings.ToLower(k.Alg) {
				t.Fatalf("Org = %q, %v", org, err)
			}
		})
	}
	if n := verifications(t, v, "ok"); n != 3 {
		t.Fatalf("ok verifications %d, want 3", n)
	}
	if got := metric(t, v, "gatekeeper_jwt_keys"); got != 3 {
		t.Fatalf("keys %v, want 3", got)
	}
}

// refusal is a token and how it must be answered.
type refusal struct {
	name   string
	token  string
	want   error  // nil: accepted with org acme
	result string // the verification result counted
}

func TestRefusals(t *testing.T) {
	rsa, ec, ed := jwttest.RSAKey(t), jwttest.ECKey(t), jwttest.EdKey(t)
	impostor := jwttest.NewKey(t, "impostor", "RS256", rsa.Kid) // another key, the same kid
	stranger := jwttest.NewKey(t, "stranger", "EdDSA", "not-in-the-set")
	v, _, _ := fileVerifier(t, jwttest.JWKSOf(t, rsa, ec, ed), nil)

	valid := rsa.Sign(t, nil, claims())
	parts := strings.Split(valid, ".")
	hdr := func(alg, kid string) map[string]any { return map[string]any{"alg": alg, "typ": "JWT", "kid": kid} }
	cases := []refusal{
		{"valid", valid, nil, "ok"},
		{"expired beyond the leeway", ed.Sign(t, nil, claims("exp", t0.Add(-61*time.Second).Unix())), ErrExpired, "expired"},
		{"expired within the leeway", ed.Sign(t, nil, claims("exp", t0.Add(-59*time.Second).Unix())), nil, "ok"},
		{"nbf in the future", ed.Sign(t, nil, claims("nbf", t0.Add(2*time.Minute).Unix())), ErrInvalid, "invalid"},
		{"nbf within the leeway", ed.Sign(t, nil, claims("nbf", t0.Add(59*time.Second).Unix())), nil, "ok"},
		{"iat in the future", ed.Sign(t, nil, claims("iat", t0.Add(2*time.Minute).Unix())), ErrInvalid, "invalid"},
		{"no exp", ed.Sign(t, nil, claims("exp", nil)), ErrInvalid, "invalid"},
		{"exp not a number", ed.Sign(t, nil, claims("exp", "tomorrow")), ErrInvalid, "invalid"},
		{"wrong aud", ed.Sign(t, nil, claims("aud", "https://other.example.com")), ErrInvalid, "invalid"},
		{"aud list with ours", ed.Sign(t, nil, claims("aud", []string{"x", audience})), nil, "ok"},
		{"no aud", ed.Sign(t, nil, claims("aud", nil)), ErrInvalid, "invalid"},
		{"wrong iss", ed.Sign(t, nil, claims("iss", "https://evil.example.com/")), ErrInvalid, "invalid"},
		{"no iss", ed.Sign(t, nil, claims("iss", nil)), ErrInvalid, "invalid"},
		{"alg none, no signature", jwttest.Encode(t, hdr("none", rsa.Kid)) + "." + jwttest.Encode(t, claims()) + ".", ErrInvalid, "invalid"},
		{"alg none, a signature", jwttest.Encode(t, hdr("none", rsa.Kid)) + "." + parts[1] + "." + parts[2], ErrInvalid, "invalid"},
		{"HS256 keyed with the RSA public key PEM", jwttest.HMACSign(t, hdr("HS256", rsa.Kid), claims(), rsa.PubPEM), ErrInvalid, "invalid"},
		{"HS256 keyed with the EC public key PEM", jwttest.HMACSign(t, hdr("HS256", ec.Kid), claims(), ec.PubPEM), ErrInvalid, "invalid"},
		{"RS256 naming the EC key", rsa.Sign(t, hdr("RS256", ec.Kid), claims()), ErrInvalid, "invalid"},
		{"ES256 naming the RSA key", ec.Sign(t, hdr("ES256", rsa.Kid), claims()), ErrInvalid, "invalid"},
		{"EdDSA naming the EC key", ed.Sign(t, hdr("EdDSA", ec.Kid), claims()), ErrInvalid, "invalid"},
		{"RS384", jwttest.Encode(t, hdr("RS384", rsa.Kid)) + "." + parts[1] + "." + parts[2], ErrInvalid, "invalid"},
		{"PS256", jwttest.Encode(t, hdr("PS256", rsa.Kid)) + "." + parts[1] + "." + parts[2], ErrInvalid, "invalid"},
		{"another key with the same kid", impostor.Sign(t, nil, claims()), ErrInvalid, "invalid"},
		{"a key the set does not hold", stranger.Sign(t, nil, claims()), ErrInvalid, "unknown_kid"},
		{"no kid", ed.Sign(t, map[string]any{"alg": "EdDSA"}, claims()), ErrInvalid, "unknown_kid"},
		{"tampered payload", parts[0] + "." + jwttest.Encode(t, claims(orgClaim, "globex")) + "." + parts[2], ErrInvalid, "invalid"},
		{"tampered signature", parts[0] + "." + parts[1] + "." + flip(parts[2]), ErrInvalid, "invalid"},
		{"crit header", ed.Sign(t, map[string]any{"alg": "EdDSA", "kid": ed.Kid, "crit": []string{"exp"}, "exp": 1}, claims()), ErrInvalid, "invalid"},
		{"b64 false", unencodedPayload(t, ed), ErrInvalid, "invalid"},
		{"duplicate org claim", ed.Sign(t, nil, `{"iss":"`+issuer+`","aud":"`+audience+`","exp":`+itoa(t0.Add(time.Hour).Unix())+
			`,"`+orgClaim+`":"acme","`+orgClaim+`":"globex"}`), ErrInvalid, "invalid"},
		{"claims not an object", ed.Sign(t, nil, `["acme"]`), ErrInvalid, "invalid"},
		{"no org claim", ed.Sign(t, nil, claims(orgClaim, nil)), ErrNoClaim, "no_claim"},
		{"org claim in another case", ed.Sign(t, nil, claims(orgClaim, nil, strings.ToUpper(orgClaim), "acme")), ErrNoClaim, "no_claim"},
		{"numeric org claim", ed.Sign(t, nil, claims(orgClaim, 42)), ErrNoClaim, "no_claim"},
		{"object org claim", ed.Sign(t, nil, claims(orgClaim, map[string]any{"id": "acme"})), ErrNoClaim, "no_claim"},
		{"list org claim", ed.Sign(t, nil, claims(orgClaim, []string{"acme"})), ErrNoClaim, "no_claim"},
		{"empty org claim", ed.Sign(t, nil, claims(orgClaim, "")), ErrNoClaim, "no_claim"},
		{"null org claim", ed.Sign(t, nil, `{"iss":"`+issuer+`","aud":"`+audience+`","exp":`+itoa(t0.Add(time.Hour).Unix())+
			`,"`+orgClaim+`":null}`), ErrNoClaim, "no_claim"},
		{"oversized", ed.Sign(t, nil, claims("pad", strings.Repeat("x", DefaultMaxTokenBytes))), ErrInvalid, "invalid"},
		{"empty", "", ErrInvalid, "invalid"},
		{"garbage", "not a token", ErrInvalid, "invalid"},
		{"two segments", parts[0] + "." + parts[1], ErrInvalid, "invalid"},
		{"four segments", valid + "." + parts[2], ErrInvalid, "invalid"},
		{"padded base64", parts[0] + "." + parts[1] + "." + parts[2] + "==", ErrInvalid, "invalid"},
		{"standard base64 alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(valid) + "+", ErrInvalid, "invalid"},
		{"line break", parts[0] + ".\n" + parts[1] + "." + parts[2], ErrInvalid, "invalid"},
		{"non-canonical base64", nonCanonical(t, valid), ErrInvalid, "invalid"},
		{"JSON serialization", `{"payload":"` + parts[1] + `","protected":"` + parts[0] + `","signature":"` + parts[2] + `"}`, ErrInvalid, "invalid"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := verifications(t, v, c.result)
			org, err := v.Org(c.token)
			switch {
			case c.want == nil && (err != nil || org != "acme"):
				t.Fatalf("Org = %q, %v; want acme", org, err)
			case c.want == ErrNoClaim && err != ErrNoClaim:
				t.Fatalf("Org = %q, %v; want ErrNoClaim itself", org, err)
			case c.want != nil && (!errors.Is(err, c.want) || org != ""):
				t.Fatalf("Org = %q, %v; want %v", org, err, c.want)
			case c.want != ErrNoClaim && errors.Is(err, ErrNoClaim), c.want == ErrNoClaim && errors.Is(err, ErrInvalid):
				t.Fatalf("Org error %v: ErrNoClaim and ErrInvalid must be distinct", err)
			}
			if got := verifications(t, v, c.result); got != before+1 {
				t.Fatalf("%s verifications %d → %d, want one more", c.result, before, got)
			}
		})
	}
}

// unencodedPayload is a token with "b64": false (RFC 7797): the
// signature covers the payload's JSON itself rather than its base64url
// segment, so the bytes signed are not the bytes sent.
func unencodedPayload(tb testing.TB, k *jwttest.Key) string {
	tb.Helper()
	h := jwttest.Encode(tb, map[string]any{"alg": k.Alg, "kid": k.Kid, "crit": []string{"b64"}, "b64": false})
	payload := string(jwttest.JSON(tb, claims()))
	return h + "." + b64.EncodeToString([]byte(payload)) + "." + b64.EncodeToString(k.Signature(tb, h+"."+payload))
}

// flip changes the first character of a base64url segment.
func flip(s string) string {
	c := byte('A')
	if s[0] == 'A' {
		c = 'B'
	}
	return string(c) + s[1:]
}

// nonCanonical is token with its signature segment's last character
// changed so that only its unused trailing bits differ: it decodes to the
// same bytes under lenient base64.
func nonCanonical(tb testing.TB, token string) string {
	tb.Helper()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.LastIndexByte(token, '.')
	sig := token[i+1:]
	unused := map[int]int{2: 4, 3: 2}[len(sig)%4] // bits of the last character not decoded
	if unused == 0 {
		tb.Fatalf("signature of %d characters has no unused bits", len(sig))
	}
	last := strings.IndexByte(alphabet, sig[len(sig)-1])
	out := token[:len(token)-1] + string(alphabet[last|1])
	if last|1 == last {
		out = token[:len(token)-1] + string(alphabet[last&^1])
	}
	if _, err := b64.DecodeString(out[i+1:]); err != nil {
		tb.Fatalf("lenient decoding refuses the non-canonical form: %v", err)
	}
	return out
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestConfigRequired(t *testing.T) {
	full := Config{Keys: "jwks.json", Issuer: issuer, Audience: audience, Claim: orgClaim}
	for _, f := range []struct {
		name string
		mod  func(*Config)
	}{
		{"Keys", func(c *Config) { c.Keys = "" }},
		{"Issuer", func(c *Config) { c.Issuer = "" }},
		{"Audience", func(c *Config) { c.Audience = "" }},
		{"Claim", func(c *Config) { c.Claim = "" }},
	} {
		c := full
		f.mod(&c)
		if _, err := New(context.Background(), c); err == nil || !strings.Contains(err.Error(), f.name) {
			t.Errorf("without %s: New error %v", f.name, err)
		}
	}
	c := full
	c.Leeway = -time.Second
	if _, err := New(context.Background(), c); err == nil {
		t.Error("negative leeway accepted")
	}
}

// TestJWKSRefused: a JWKS that cannot be read or holds no usable key is a
// startup error naming the file and the cause; keys that are not used
// are skipped (and logged), not trusted.
func TestJWKSRefused(t *testing.T) {
	rsa, ec, ed := jwttest.RSAKey(t), jwttest.ECKey(t), jwttest.EdKey(t)
	rsaHS := rsa.JWK(t, map[string]any{"kid": "rsa-hs", "alg": "HS256"})
	rsaPS := rsa.JWK(t, map[string]any{"kid": "rsa-ps", "alg": "PS256"})
	ecAsRSA := ec.JWK(t, map[string]any{"kid": "ec-rs", "alg": "RS256"})
	edEnc := ed.JWK(t, map[string]any{"kid": "ed-enc", "use": "enc"})
	oct := map[string]any{"kty": "oct", "kid": "hmac", "k": b64.EncodeToString(rsa.PubPEM), "alg": "HS256"}
	unknown := map[string]any{"kty": "XYZ", "kid": "future"}
	for _, c := range []struct {
		name, doc, want string
	}{
		{"missing file", "", "no such file"},
		{"not JSON", "{", "not a JWKS"},
		{"no keys", `{"keys":[]}`, "no usable signing key"},
		{"a JWK, not a set", string(jwttest.JSON(t, rsa.JWK(t, nil))), "not a JWKS"},
		{"unusable keys only", string(jwttest.JWKS(t, rsaHS, rsaPS, ecAsRSA, edEnc, oct, unknown)), "no usable signing key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := t.TempDir() + "/jwks.json"
			if c.doc != "" {
				writeFile(t, path, []byte(c.doc))
			}
			_, err := New(context.Background(), testConfig(path, newClock()))
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New error %v, want one naming %s and %q", err, path, c.want)
			}
		})
	}

	// Next to a usable key, the others are skipped: tokens naming them
	// are refused.
	var logs logBuffer
	v, _, _ := fileVerifier(t, jwttest.JWKS(t, ed.JWK(t, nil), rsaHS, rsaPS, ecAsRSA, edEnc, oct, unknown),
		func(c *Config) { c.Logger = logs.logger() })
	if got := metric(t, v, "gatekeeper_jwt_keys"); got != 1 {
		t.Fatalf("keys %v, want 1", got)
	}
	hdr := func(alg, kid string) map[string]any { return map[string]any{"alg": alg, "kid": kid} }
	for _, tok := range []string{
		rsa.Sign(t, hdr("RS256", "rsa-hs"), claims()),
		rsa.Sign(t, hdr("RS256", "rsa-ps"), claims()),
		ec.Sign(t, hdr("ES256", "ec-rs"), claims()),
		ed.Sign(t, hdr("EdDSA", "ed-enc"), claims()),
		jwttest.HMACSign(t, hdr("HS256", "hmac"), claims(), rsa.PubPEM),
	} {
		if org, err := v.Org(tok); !errors.Is(err, ErrInvalid) {
			t.Errorf("token of an unused key: Org = %q, %v", org, err)
		}
	}
	for _, kid := range []string{"rsa-hs", "rsa-ps", "ec-rs", "ed-enc", "hmac"} {
		if !strings.Contains(logs.String(), "kid="+kid) {
			t.Errorf("skipping kid %s not logged:\n%s", kid, logs.String())
		}
	}
}
