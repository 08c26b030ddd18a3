package license_test

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/license"
)

// Payloads a vendor tool signed correctly but that break the payload rules:
// they must be malformed even though the signature is good.
func TestSignedButMalformedPayloads(t *testing.T) {
	ring := testRing(t, "k1")
	good := string(mustJSON(t, basePayload()))
	with := func(k string, v any) string {
		p := basePayload()
		if v == nil {
			delete(p, k)
		} else {
			p[k] = v
		}
		return string(mustJSON(t, p))
	}
	cases := map[string]string{
		"duplicate key":          strings.Replace(good, `"tier":"enterprise"`, `"tier":"enterprise","tier":"starter"`, 1),
		"duplicate nested key":   strings.Replace(good, `"tier":"enterprise"`, `"tier":"enterprise","x":{"a":1,"a":2}`, 1),
		"mis-cased key":          strings.Replace(good, `"tier"`, `"Tier"`, 1),
		"mis-cased extra key":    strings.Replace(good, `"tier":"enterprise"`, `"tier":"enterprise","TIER":"starter"`, 1),
		"escaped duplicate":      strings.Replace(good, `"tier":"enterprise"`, `"tier":"enterprise","ti\u0065r":"starter"`, 1),
		"not an object":          `["acme"]`,
		"trailing data":          good + `{}`,
		"invalid utf8":           strings.Replace(good, "Acme Corp", "Acme \xff Corp", 1),
		"no license_id":          with("license_id", nil),
		"license_id not uuid":    with("license_id", "acme-2026"),
		"license_id braces":      with("license_id", "{0193a5b0-7e1a-7c3d-8f00-1234567890ab}"),
		"license_id nil uuid":    with("license_id", "00000000-0000-0000-0000-000000000000"),
		"no customer":            with("customer", nil),
		"blank customer":         with("customer", "  "),
		"customer not string":    with("customer", 7),
		"no org_slug":            with("org_slug", nil),
		"upper-case org":         with("org_slug", "Acme"),
		"org with underscore":    with("org_slug", "_instance"),
		"org too long":           with("org_slug", strings.Repeat("a", 64)),
		"org leading dash":       with("org_slug", "-acme"),
		"unknown tier":           with("tier", "gold"),
		"tier wrong case":        with("tier", "Enterprise"),
		"products not array":     with("products", "hub"),
		"feature with comma":     with("features", []string{"a,b"}),
		"feature with space":     with("features", []string{"a b"}),
		"no issued_at":           with("issued_at", nil),
		"no expires":             with("expires", nil),
		"expires not rfc3339":    with("expires", "2027-11-01"),
		"expires before issued":  with("expires", "2026-10-01T00:00:00Z"),
		"expires equals issued":  with("expires", "2026-11-01T00:00:00Z"),
		"not_before at expiry":   with("not_before", "2027-11-01T00:00:00Z"),
		"year 9999":              with("expires", "9999-01-01T00:00:00Z"),
		"negative users_limit":   with("users_limit", -1),
		"fractional users_limit": with("users_limit", 1.5),
		"exponent users_limit":   strings.Replace(good, `"users_limit":50`, `"users_limit":5e1`, 1),
		"string users_limit":     with("users_limit", "50"),
		"huge users_limit":       with("users_limit", 1<<31),
		"grace_days 366":         with("grace_days", 366),
		"negative grace_days":    with("grace_days", -1),
		"install_id not uuid":    with("install_id", "my-install"),
	}
	for name, payload := range cases {
		t.Run(name, func(t *testing.T) {
			key := signRaw("k1", []byte(payload))
			_, err := ring.Verify([]byte(key), license.Expect{})
			if license.ReasonOf(err) != license.ReasonMalformed {
				t.Fatalf("payload %s: %v, want malformed", payload, err)
			}
			_, priv := testKey("k1")
			if _, err := license.Sign(priv, "k1", []byte(payload)); err == nil {
				t.Fatalf("Sign accepted a malformed payload")
			}
		})
	}
}

func TestPayloadDefaultsAndUnknownKeys(t *testing.T) {
	p := basePayload()
	for _, k := range []string{"products", "features", "users_limit", "grace_days"} {
		delete(p, k)
	}
	p["not_before"] = nil
	p["install_id"] = nil
	p["support_contact"] = map[string]any{"email": "ops@example.com"}
	l := sign(t, "k1", p)
	got := l.Payload
	if got.Products == nil || len(got.Products) != 0 || got.Features == nil || len(got.Features) != 0 {
		t.Fatalf("absent arrays must be empty, got %#v %#v", got.Products, got.Features)
	}
	if got.UsersLimit != 0 || got.GraceDays != nil || !got.NotBefore.IsZero() || got.InstallID != "" {
		t.Fatalf("absent optional fields: %+v", got)
	}
	if license.EffectiveGrace(got, 7) != 7 {
		t.Fatal("absent grace_days must take the ledger default")
	}
	p["grace_days"] = 0
	if g := license.EffectiveGrace(sign(t, "k1", p).Payload, 7); g != 0 {
		t.Fatalf("grace_days 0 must stay 0, got %d", g)
	}
	p["issued_at"] = "2026-11-01T02:00:00.1234567+02:00"
	l = sign(t, "k1", p)
	if s := l.Payload.IssuedAt.String(); s != "2026-11-01 00:00:00.123456 +0000 UTC" {
		t.Fatalf("times are kept in UTC to the microsecond, got %s", s)
	}
}

// ValidSlug accepts exactly what the format's pattern for org slugs does.
func TestValidSlugIsThePattern(t *testing.T) {
	pattern := regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	cases := []string{"", "a", "0", "-", "a-", "-a", "acme", "org-00042", "Acme", "a_b", "a.b", "a b", "a\n", "\na",
		"_instance", "*", "é", strings.Repeat("a", 63), strings.Repeat("a", 64), "a" + strings.Repeat("-", 62),
		strings.Repeat("z9", 31) + "-", "a\x00"}
	rng := rand.New(rand.NewPCG(1, 2))
	for n := range 20000 {
		alphabet := "az09-_A.\x00\xff"
		if n%2 == 0 {
			alphabet = "az09-"
		}
		b := make([]byte, rng.IntN(70))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		cases = append(cases, string(b))
	}
	for _, s := range cases {
		if got, want := license.ValidSlug(s), pattern.MatchString(s); got != want {
			t.Fatalf("ValidSlug(%q) = %v, the pattern says %v", s, got, want)
		}
	}
}
