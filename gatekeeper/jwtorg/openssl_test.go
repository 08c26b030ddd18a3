package jwtorg

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

// Tokens in these tests are signed by the openssl command, not by this
// package nor by the JOSE library it uses: a bug shared by signer and
// verifier cannot hide itself.

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

// openssl runs the openssl command and returns its standard output.
func openssl(tb testing.TB, args ...string) []byte {
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

// tkey is a key pair made by openssl.
type tkey struct {
	kid, alg string // alg: RS256, ES256, EdDSA
	priv     string // the private key's PEM file
	pub      crypto.PublicKey
	pubPEM   []byte
}

var (
	keysMu  sync.Mutex
	keysDir string
	keys    = map[string]*tkey{}
)

// testKey returns the key pair named name (made once per test binary):
// alg RS256 (RSA 2048), ES256 (P-256) or EdDSA (Ed25519), with kid kid.
// Several names may share a kid, to sign as an impostor.
func testKey(tb testing.TB, name, alg, kid string) *tkey {
	tb.Helper()
	opensslPath(tb)
	keysMu.Lock()
	defer keysMu.Unlock()
	if k := keys[name]; k != nil {
		return k
	}
	if keysDir == "" {
		d, err := os.MkdirTemp("", "jwtorg-keys-")
		if err != nil {
			tb.Fatal(err)
		}
		keysDir = d
	}
	path := filepath.Join(keysDir, name+".pem")
	switch alg {
	case "RS256":
		openssl(tb, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path)
	case "ES256":
		openssl(tb, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
	case "EdDSA":
		openssl(tb, "genpkey", "-algorithm", "ED25519", "-out", path)
	default:
		tb.Fatalf("alg %s", alg)
	}
	k := &tkey{kid: kid, alg: alg, priv: path, pubPEM: openssl(tb, "pkey", "-in", path, "-pubout")}
	block, _ := pem.Decode(k.pubPEM)
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		tb.Fatal(err)
	}
	k.pub = pub
	keys[name] = k
	return k
}

// The keys most tests use.
func rsaKey(tb testing.TB) *tkey { return testKey(tb, "rsa", "RS256", "rsa-1") }
func ecKey(tb testing.TB) *tkey  { return testKey(tb, "ec", "ES256", "ec-1") }
func edKey(tb testing.TB) *tkey  { return testKey(tb, "ed", "EdDSA", "ed-1") }

// jwk is k's public JWK ("use":"sig", "alg" the key's), with fields set
// or, for nil values, deleted.
func (k *tkey) jwk(tb testing.TB, set map[string]any) map[string]any {
	tb.Helper()
	b, err := jose.JSONWebKey{Key: k.pub, KeyID: k.kid, Algorithm: k.alg, Use: "sig"}.MarshalJSON()
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

// jwks is a JWKS document of the given JWKs.
func jwks(tb testing.TB, jwks ...map[string]any) []byte {
	tb.Helper()
	b, err := json.Marshal(map[string]any{"keys": jwks})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func jsonOf(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// jwksOf is the JWKS of ks' public keys.
func jwksOf(tb testing.TB, ks ...*tkey) []byte {
	tb.Helper()
	var m []map[string]any
	for _, k := range ks {
		m = append(m, k.jwk(tb, nil))
	}
	return jwks(tb, m...)
}

var b64 = base64.RawURLEncoding

// encode is the base64url of v's JSON (v a string: taken as the JSON).
func encode(tb testing.TB, v any) string {
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

// sign returns the compact JWS of header and claims (maps, or JSON
// strings) signed by openssl with k's algorithm. header nil is
// {"alg": k.alg, "typ": "JWT", "kid": k.kid}.
func (k *tkey) sign(tb testing.TB, header, claims any) string {
	tb.Helper()
	if header == nil {
		header = map[string]any{"alg": k.alg, "typ": "JWT", "kid": k.kid}
	}
	input := encode(tb, header) + "." + encode(tb, claims)
	return input + "." + b64.EncodeToString(k.signature(tb, input))
}

// signature is openssl's signature of input with k in JWS form.
func (k *tkey) signature(tb testing.TB, input string) []byte {
	tb.Helper()
	in := filepath.Join(tb.TempDir(), "input")
	if err := os.WriteFile(in, []byte(input), 0o600); err != nil {
		tb.Fatal(err)
	}
	switch k.alg {
	case "RS256":
		return openssl(tb, "dgst", "-sha256", "-sign", k.priv, in)
	case "ES256":
		// openssl writes an ASN.1 SEQUENCE {r, s}; JWS wants r||s, 32
		// bytes each (RFC 7518 §3.4).
		var rs struct{ R, S *big.Int }
		if _, err := asn1.Unmarshal(openssl(tb, "dgst", "-sha256", "-sign", k.priv, in), &rs); err != nil {
			tb.Fatal(err)
		}
		return append(rs.R.FillBytes(make([]byte, 32)), rs.S.FillBytes(make([]byte, 32))...)
	case "EdDSA":
		return openssl(tb, "pkeyutl", "-sign", "-rawin", "-inkey", k.priv, "-in", in)
	}
	tb.Fatalf("alg %s", k.alg)
	return nil
}

// hmacSign returns the compact JWS of header and claims with an
// HMAC-SHA256 signature keyed by secret, made by openssl.
func hmacSign(tb testing.TB, header, claims any, secret []byte) string {
	tb.Helper()
	input := encode(tb, header) + "." + encode(tb, claims)
	in := filepath.Join(tb.TempDir(), "input")
	if err := os.WriteFile(in, []byte(input), 0o600); err != nil {
		tb.Fatal(err)
	}
	mac := openssl(tb, "mac", "-digest", "SHA256", "-macopt", "hexkey:"+hex.EncodeToString(secret), "-binary", "-in", in, "HMAC")
	return input + "." + b64.EncodeToString(mac)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if keysDir != "" {
		os.RemoveAll(keysDir)
	}
	os.Exit(code)
}
