package license_test

import (
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/license"
)

// fuzzRing trusts k1 and k2. The fuzzer knows no private key, so whatever
// it produces must never verify unless it is, canonically, a key the seeds
// already hold.
func fuzzRing(t testing.TB) (*license.Ring, map[string]bool) {
	ring := testRing(t, "k1", "k2")
	known := map[string]bool{}
	for _, s := range fuzzSeeds(t) {
		if l, err := ring.Verify([]byte(s), license.Expect{}); err == nil {
			known[l.Fingerprint] = true
		}
	}
	return ring, known
}

func fuzzSeeds(t testing.TB) []string {
	p := basePayload()
	valid := sign(t, "k1", p)
	p["org_slug"] = "*"
	p["not_before"] = "2026-11-02T00:00:00Z"
	inst := sign(t, "k2", p)
	return []string{valid.Key, inst.Key, string(valid.EncodeJSON()), string(inst.EncodeJSON()),
		wrap(valid.Key, 64, "\n"), signRaw("k1", []byte(`{"license_id":1}`))}
}

// checkDecoded holds for any input: no panic, a size limit, canonical
// stability, and no forgery.
func checkDecoded(t *testing.T, ring *license.Ring, known map[string]bool, data []byte) {
	l, err := ring.Verify(data, license.Expect{})
	if len(data) > license.MaxInputSize && (err == nil || l != nil) {
		t.Fatalf("input over the limit decoded")
	}
	if l == nil {
		if license.ReasonOf(err) != license.ReasonMalformed {
			t.Fatalf("no license but reason %v", err)
		}
		return
	}
	if l.Fingerprint != license.Fingerprint(l.Key) || strings.ContainsAny(l.Key, " \t\r\n\v\f") {
		t.Fatalf("canonical form %q is not whitespace-free or its fingerprint is wrong", l.Key)
	}
	for _, again := range [][]byte{[]byte(l.Key), l.EncodeJSON()} {
		l2, err2 := ring.Verify(again, license.Expect{})
		if l2 == nil || l2.Fingerprint != l.Fingerprint || license.ReasonOf(err2) != license.ReasonOf(err) {
			t.Fatalf("re-decoding the canonical form changed the outcome: %v vs %v", err, err2)
		}
	}
	if err == nil {
		if !known[l.Fingerprint] {
			t.Fatalf("fuzzed input verified as a new license: %q", l.Key)
		}
		h := &license.Held{License: l, GraceDays: 7}
		h.Status(time.Now(), false) // must not panic on any verified payload
	}
}

func FuzzDecodeCompact(f *testing.F) {
	ring, known := fuzzRing(f)
	for _, s := range fuzzSeeds(f) {
		if !strings.HasPrefix(s, "{") {
			f.Add([]byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkDecoded(t, ring, known, data) })
}

func FuzzDecodeJSON(f *testing.F) {
	ring, known := fuzzRing(f)
	for _, s := range fuzzSeeds(f) {
		if strings.HasPrefix(s, "{") {
			f.Add([]byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkDecoded(t, ring, known, data) })
}

// FuzzParsePayload: whatever the payload parser accepts satisfies every
// payload rule, and a signed accepted payload verifies to the same values.
func FuzzParsePayload(f *testing.F) {
	f.Add(mustJSON(f, basePayload()))
	f.Add([]byte(`{"license_id":"0193a5b0-7e1a-7c3d-8f00-1234567890ab","customer":"A","org_slug":"*","tier":"starter","issued_at":"2026-01-01T00:00:00Z","expires":"2026-01-02T00:00:00+01:00","grace_days":365,"users_limit":0}`))
	ring := testRing(f, "k1")
	_, priv := testKey("k1")
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := license.ParsePayload(data)
		if err != nil {
			if p != nil || license.ReasonOf(err) != license.ReasonMalformed {
				t.Fatalf("error %v with payload %v", err, p)
			}
			return
		}
		if !p.IssuedAt.Before(p.Expires) || (!p.NotBefore.IsZero() && !p.NotBefore.Before(p.Expires)) ||
			p.Products == nil || p.Features == nil || p.UsersLimit < 0 ||
			(p.GraceDays != nil && (*p.GraceDays < 0 || *p.GraceDays > license.MaxGraceDays)) ||
			(p.OrgSlug != "*" && !license.ValidSlug(p.OrgSlug)) || len(p.LicenseID) != 36 {
			t.Fatalf("accepted payload breaks a rule: %+v", p)
		}
		l, err := license.Sign(priv, "k1", data)
		if err != nil {
			t.Fatalf("Sign refused what ParsePayload accepted: %v", err)
		}
		got, err := ring.Verify([]byte(l.Key), license.Expect{Org: p.Org()})
		if err != nil || got.Payload.LicenseID != p.LicenseID || !got.Payload.Expires.Equal(p.Expires) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
