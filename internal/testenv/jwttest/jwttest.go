// Package jwttest makes JWTs the way a platform's token issuer would, with
// the openssl command rather than this module's code or the JOSE library
// it verifies with: a bug shared by signer and verifier cannot hide
// itself. Keys are made once per test binary (Cleanup removes them).
package jwttest

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// opensslPath returns the openssl command, skipping the test when it is
// missing, unless CI is set (then a missing tool fails).
func opensslPath(tb testing.TB) string {
	tb.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") == "" {
			tb.Skip("openssl not found (set CI to make this a failure)")
		}
		tb.Fatalf("openssl not found and CI is set: %v", err)
	}
	return p
}

// OpenSSL runs the openssl command and returns its standard output.
func OpenSSL(tb testing.TB, args ...string) []byte {
	tb.Helper()
	cmd := exec.Command(opensslPath(tb), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("openssl %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// Key is a key pair made by openssl.
type Key struct {
	Kid, Alg string // Alg: RS256, ES256, EdDSA
	Priv     string // the private key's PEM file
	Pub      crypto.PublicKey
	PubPEM   []byte
}

var (
	keysMu  sync.Mutex
	keysDir string
	keys    = map[string]*Key{}
)

// NewKey returns the key pair named name (made once per test binary):
// alg RS256 (RSA 2048), ES256 (P-256) or EdDSA (Ed25519), with kid kid.
// Several names may share a kid, to sign as an impostor.
func NewKey(tb testing.TB, name, alg, kid string) *Key {
	tb.Helper()
	opensslPath(tb)
	keysMu.Lock()
	defer keysMu.Unlock()
	if k := keys[name]; k != nil {
		return k
	}
	if keysDir == "" {
		d, err := os.MkdirTemp("", "jwttest-keys-")
		if err != nil {
			tb.Fatal(err)
		}
		keysDir = d
	}
	path := filepath.Join(keysDir, name+".pem")
	switch alg {
	case "RS256":
		OpenSSL(tb, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path)
	case "ES256":
		OpenSSL(tb, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
	case "EdDSA":
		OpenSSL(tb, "genpkey", "-algorithm", "ED25519", "-out", path)
	default:
		tb.Fatalf("alg %s", alg)
	}
	k := &Key{Kid: kid, Alg: alg, Priv: path, PubPEM: OpenSSL(tb, "pkey", "-in", path, "-pubout")}
	block, _ := pem.Decode(k.PubPEM)
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		tb.Fatal(err)
	}
	k.Pub = pub
	keys[name] = k
	return k
}

// The keys most tests use.
func RSAKey(tb testing.TB) *Key { return NewKey(tb, "rsa", "RS256", "rsa-1") }
func ECKey(tb testing.TB) *Key  { return NewKey(tb, "ec", "ES256", "ec-1") }
func EdKey(tb testing.TB) *Key  { return NewKey(tb, "ed", "EdDSA", "ed-1") }

// JWK is k's public JWK ("use":"sig", "alg" the key's), with fields set
// or, for nil values, deleted.
func (k *Key) JWK(tb testing.TB, set map[string]any) map[string]any {
	tb.Helper()
	b, err := jose.JSONWebKey{Key: k.Pub, KeyID: k.Kid, Algorithm: k.Alg, Use: "sig"}.MarshalJSON()
	if err != nil {
		tb.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		tb.Fatal(err)
	}
	for f, v := range set {
		if v == nil {
			delete(m, f)
		} else {
			m[f] = v
		}
	}
	return m
}

// JWKS is a JWKS document of the given JWKs.
func JWKS(tb testing.TB, jwks ...map[string]any) []byte {
	tb.Helper()
	b, err := json.Marshal(map[string]any{"keys": jwks})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// JSON is v as JSON.
func JSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// JWKSOf is the JWKS of ks' public keys.
func JWKSOf(tb testing.TB, ks ...*Key) []byte {
	tb.Helper()
	var m []map[string]any
	for _, k := range ks {
		m = append(m, k.JWK(tb, nil))
	}
	return JWKS(tb, m...)
}

var b64 = base64.RawURLEncoding // JWS segments

// Encode is the base64url of v's JSON (v a string: taken as the JSON).
func Encode(tb testing.TB, v any) string {
	tb.Helper()
	if s, ok := v.(string); ok {
		return b64.EncodeToString([]byte(s))
	}
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b64.EncodeToString(b)
}

// Sign returns the compact JWS of header and claims (maps, or JSON
// strings) signed by openssl with k's algorithm. header nil is
// {"alg": k.Alg, "typ": "JWT", "kid": k.Kid}.
func (k *Key) Sign(tb testing.TB, header, claims any) string {
	tb.Helper()
	if header == nil {
		header = map[string]any{"alg": k.Alg, "typ": "JWT", "kid": k.Kid}
	}
	input := Encode(tb, header) + "." + Encode(tb, claims)
	return input + "." + b64.EncodeToString(k.Signature(tb, input))
}

// Signature is openssl's signature of input with k in JWS form.
func (k *Key) Signature(tb testing.TB, input string) []byte {
	tb.Helper()
	in := filepath.Join(tb.TempDir(), "input")
	if err := os.WriteFile(in, []byte(input), 0o600); err != nil {
		tb.Fatal(err)
	}
	switch k.Alg {
	case "RS256":
		return OpenSSL(tb, "dgst", "-sha256", "-sign", k.Priv, in)
	case "ES256":
		// openssl writes an ASN.1 SEQUENCE {r, s}; JWS wants r||s, 32
		// bytes each (RFC 7518 §3.4).
		var rs struct{ R, S *big.Int }
		if _, err := asn1.Unmarshal(OpenSSL(tb, "dgst", "-sha256", "-sign", k.Priv, in), &rs); err != nil {
			tb.Fatal(err)
		}
		return append(rs.R.FillBytes(make([]byte, 32)), rs.S.FillBytes(make([]byte, 32))...)
	case "EdDSA":
		return OpenSSL(tb, "pkeyutl", "-sign", "-rawin", "-inkey", k.Priv, "-in", in)
	}
	tb.Fatalf("alg %s", k.Alg)
	return nil
}

// HMACSign returns the compact JWS of header and claims with an
// HMAC-SHA256 signature keyed by secret, made by openssl.
func HMACSign(tb testing.TB, header, claims any, secret []byte) string {
	tb.Helper()
	input := Encode(tb, header) + "." + Encode(tb, claims)
	in := filepath.Join(tb.TempDir(), "input")
	if err := os.WriteFile(in, []byte(input), 0o600); err != nil {
		tb.Fatal(err)
	}
	mac := OpenSSL(tb, "mac", "-digest", "SHA256", "-macopt", "hexkey:"+hex.EncodeToString(secret), "-binary", "-in", in, "HMAC")
	return input + "." + b64.EncodeToString(mac)
}

// Cleanup removes the keys made so far (call it from TestMain after the
// tests ran).
func Cleanup() {
	keysMu.Lock()
	defer keysMu.Unlock()
	if keysDir != "" {
		os.RemoveAll(keysDir)
		keysDir, keys = "", map[string]*Key{}
	}
}
