package license_test

import (
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/testenv/licensetest"
	"github.com/licenseledger/ledger/license"
)

func testKey(name string) (ed25519.PublicKey, ed25519.PrivateKey) { return licensetest.Key(name) }

func testRing(t testing.TB, kids ...string) *license.Ring { return licensetest.Ring(t, kids...) }

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

func mustJSON(t testing.TB, v any) []byte { return licensetest.JSON(t, v) }

func signRaw(kid string, payload []byte) string { return licensetest.SignRaw(kid, payload) }

func sign(t testing.TB, kid string, p map[string]any) *license.License {
	t.Helper()
	return licensetest.Sign(t, kid, p)
}
