package license_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"testing"
	"time"

	"github.com/licenseledger/ledger/license"
)

// testKey derives a deterministic key pair from name, so fuzz seeds stay valid.
func testKey(name string) (ed25519.PublicKey, ed25519.PrivateKey) {
	seed := sha256.Sum256([]byte("license test key " + name))
	priv := ed25519.NewKeyFromSeed(seed[:])
	return priv.Public().(ed25519.PublicKey), priv
}

func testRing(t testing.TB, kids ...string) *license.Ring {
	t.Helper()
	keys := map[string]ed25519.PublicKey{}
	for _, k := range kids {
		keys[k], _ = testKey(k)
	}
	r, err := license.NewRing(keys)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var t0 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// basePayload is a valid payload as a map, for tests to bend.
func basePayload() map[string]any {
	return map[string]any{
		"license_id":  "0193a5b0-7e1a-7c3d-8f00-1234567890ab",
		"customer":    "Acme Corp",
		"org_slug":    "acme",
		"tier":        "enterprise",
		"products":    []string{"hub_platform"},
		"features":    []string{"chat_connector", "audit_export"},
		"issued_at":   "2026-11-01T00:00:00Z",
		"expires":     "2027-11-01T00:00:00Z",
		"users_limit": 50,
		"grace_days":  14,
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signRaw signs arbitrary payload bytes, bypassing Sign's validation, the
// way a careless or hostile vendor tool could.
func signRaw(kid string, payload []byte) string {
	_, priv := testKey(kid)
	signed := "hfl1." + kid + "." + b64(payload)
	return signed + "." + b64(ed25519.Sign(priv, []byte(signed)))
}

func sign(t testing.TB, kid string, p map[string]any) *license.License {
	t.Helper()
	_, priv := testKey(kid)
	l, err := license.Sign(priv, kid, mustJSON(t, p))
	if err != nil {
		t.Fatal(err)
	}
	return l
}
