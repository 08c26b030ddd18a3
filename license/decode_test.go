package license_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/license"
)

func TestBothFormsVerifyToTheSameCanonicalKey(t *testing.T) {
	ring := testRing(t, "k1")
	l := sign(t, "k1", basePayload())
	inputs := map[string]string{
		"compact":       l.Key,
		"json":          string(l.EncodeJSON()),
		"wrapped":       wrap(l.Key, 60, "\r\n") + "\n",
		"tabs-and-vt":   "\t " + strings.Join(strings.SplitAfter(l.Key, "."), "\v\f ") + " ",
		"json-indented": "\n\n   " + string(l.EncodeJSON()),
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			got, err := ring.Verify([]byte(in), license.Expect{Org: "acme"})
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got.Key != l.Key || got.Fingerprint != l.Fingerprint {
				t.Fatalf("canonical %q fingerprint %s, want %q %s", got.Key, got.Fingerprint, l.Key, l.Fingerprint)
			}
			if got.Fingerprint != license.Fingerprint(l.Key) || strings.ContainsAny(got.Key, " \n\t") {
				t.Fatalf("fingerprint is not SHA-256 of the whitespace-free key")
			}
			if got.Payload.Customer != "Acme Corp" || got.Payload.Org() != "acme" {
				t.Fatalf("payload %+v", got.Payload)
			}
		})
	}
}

func wrap(s string, n int, nl string) string {
	var b strings.Builder
	for len(s) > n {
		b.WriteString(s[:n] + nl)
		s = s[n:]
	}
	b.WriteString(s)
	return b.String()
}

func TestSizeLimit(t *testing.T) {
	l := sign(t, "k1", basePayload())
	ring := testRing(t, "k1")
	pad := license.MaxInputSize - len(l.Key)
	if _, err := ring.Verify([]byte(l.Key+strings.Repeat(" ", pad)), license.Expect{}); err != nil {
		t.Fatalf("input of exactly %d bytes: %v", license.MaxInputSize, err)
	}
	_, err := ring.Verify([]byte(l.Key+strings.Repeat(" ", pad+1)), license.Expect{})
	if !errors.Is(err, license.ErrTooLarge) || license.ReasonOf(err) != license.ReasonMalformed {
		t.Fatalf("input of %d bytes: %v, want malformed ErrTooLarge", license.MaxInputSize+1, err)
	}
}

func TestMalformedStructure(t *testing.T) {
	l := sign(t, "k1", basePayload())
	parts := strings.Split(l.Key, ".")
	cases := map[string]string{
		"empty":                 "",
		"only spaces":           "   \n",
		"three parts":           strings.Join(parts[:3], "."),
		"five parts":            l.Key + ".x",
		"wrong format":          "hfl2." + strings.Join(parts[1:], "."),
		"bad kid":               "hfl1.k!1." + parts[2] + "." + parts[3],
		"long kid":              "hfl1." + strings.Repeat("k", 65) + "." + parts[2] + "." + parts[3],
		"padded payload":        "hfl1.k1." + parts[2] + "=." + parts[3],
		"std alphabet":          "hfl1.k1." + strings.ReplaceAll(parts[2], "_", "/") + "/." + parts[3],
		"short signature":       "hfl1.k1." + parts[2] + "." + parts[3][:40],
		"empty payload":         "hfl1.k1.." + parts[3],
		"json wrong format":     `{"format":"hfl2","kid":"k1","payload":"` + parts[2] + `","signature":"` + parts[3] + `"}`,
		"json missing field":    `{"format":"hfl1","kid":"k1","payload":"` + parts[2] + `"}`,
		"json duplicate kid":    `{"format":"hfl1","kid":"k1","kid":"k2","payload":"` + parts[2] + `","signature":"` + parts[3] + `"}`,
		"json mis-cased key":    `{"format":"hfl1","KID":"k1","payload":"` + parts[2] + `","signature":"` + parts[3] + `"}`,
		"json trailing data":    string(l.EncodeJSON()) + "{}",
		"json array":            `[]`,
		"json wrong value type": `{"format":"hfl1","kid":1,"payload":"` + parts[2] + `","signature":"` + parts[3] + `"}`,
		"not utf8":              "\xff\xfe",
	}
	ring := testRing(t, "k1")
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := ring.Verify([]byte(in), license.Expect{})
			if license.ReasonOf(err) != license.ReasonMalformed || got != nil {
				t.Fatalf("got %v, %v; want malformed and no license", got, err)
			}
		})
	}
}

// Every single-character change anywhere in a key must make it fail, with
// the reason of the part that was changed.
func TestEveryTamperedCharacterFails(t *testing.T) {
	ring := testRing(t, "k1", "k2")
	l := sign(t, "k1", basePayload())
	kidEnd := len("hfl1.k1")
	payloadEnd := strings.LastIndexByte(l.Key, '.')
	for i := 0; i < len(l.Key); i++ {
		for _, c := range []byte{'A', 'g', '-', '_', '0', '.'} {
			if l.Key[i] == c {
				continue
			}
			in := l.Key[:i] + string(c) + l.Key[i+1:]
			_, err := ring.Verify([]byte(in), license.Expect{Org: "acme"})
			if err == nil {
				t.Fatalf("position %d changed to %q still verifies", i, c)
			}
			reason := license.ReasonOf(err)
			switch {
			case c == '.' || l.Key[i] == '.' || i < len("hfl1."):
				if reason != license.ReasonMalformed {
					t.Fatalf("position %d (structure): %v", i, err)
				}
			case i < kidEnd: // the kid: another kid, unknown here
				if reason != license.ReasonUnknownKey && reason != license.ReasonMalformed {
					t.Fatalf("position %d (kid): %v", i, err)
				}
			case i == payloadEnd-1 || i == len(l.Key)-1:
				// The last character of a base64 part carries padding bits:
				// a change there may be non-canonical, which is malformed.
				if reason != license.ReasonSignatureInvalid && reason != license.ReasonMalformed {
					t.Fatalf("position %d: %v", i, err)
				}
			default: // payload and signature bytes
				if reason != license.ReasonSignatureInvalid {
					t.Fatalf("position %d: %v, want signature_invalid", i, err)
				}
			}
		}
	}
}

func TestKidAndKeyMismatches(t *testing.T) {
	ring := testRing(t, "k1", "k2")
	l := sign(t, "k1", basePayload())
	rest := strings.TrimPrefix(l.Key, "hfl1.k1.")

	_, err := ring.Verify([]byte("hfl1.k2."+rest), license.Expect{})
	if license.ReasonOf(err) != license.ReasonSignatureInvalid {
		t.Fatalf("signature moved to another trusted kid: %v", err)
	}
	_, err = ring.Verify([]byte("hfl1.k9."+rest), license.Expect{})
	if license.ReasonOf(err) != license.ReasonUnknownKey {
		t.Fatalf("untrusted kid: %v", err)
	}
	// Another key signing under a trusted kid ("k1" signed with k3's key).
	_, priv3 := testKey("k3")
	forged, err := license.Sign(priv3, "k1", mustJSON(t, basePayload()))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ring.Verify([]byte(forged.Key), license.Expect{})
	if license.ReasonOf(err) != license.ReasonSignatureInvalid {
		t.Fatalf("another key under a trusted kid: %v", err)
	}
	if got == nil || got.Fingerprint != forged.Fingerprint {
		t.Fatalf("a failed verification must still report the fingerprint")
	}
	if testRing(t).Len() != 0 {
		t.Fatal("empty ring has keys")
	}
	if _, err := testRing(t).Verify([]byte(l.Key), license.Expect{}); license.ReasonOf(err) != license.ReasonUnknownKey {
		t.Fatalf("empty ring: %v", err)
	}
}

func TestOrgAndInstallChecks(t *testing.T) {
	ring := testRing(t, "k1")
	p := basePayload()
	p["install_id"] = "5B3C1D1E-7F55-4F4B-9B68-2A1F0D3C9E11"
	l := sign(t, "k1", p)
	if l.Payload.InstallID != "5b3c1d1e-7f55-4f4b-9b68-2a1f0d3c9e11" {
		t.Fatalf("install_id not lowercased: %q", l.Payload.InstallID)
	}
	check := func(e license.Expect, want license.Reason) {
		t.Helper()
		_, err := ring.Verify([]byte(l.Key), e)
		if license.ReasonOf(err) != want {
			t.Fatalf("%+v: %v, want %q", e, err, want)
		}
	}
	check(license.Expect{Org: "acme", InstallID: "5b3c1d1e-7f55-4f4b-9b68-2a1f0d3c9e11"}, "")
	check(license.Expect{Org: "acme", InstallID: "5B3C1D1E-7F55-4F4B-9B68-2A1F0D3C9E11"}, "")
	check(license.Expect{Org: "globex"}, license.ReasonOrgMismatch)
	check(license.Expect{Org: license.InstanceOrg}, license.ReasonOrgMismatch)
	check(license.Expect{Org: "acme", InstallID: "00000000-0000-4000-8000-000000000001"}, license.ReasonInstallMismatch)
	check(license.Expect{Org: "globex", InstallID: "00000000-0000-4000-8000-000000000001"}, license.ReasonOrgMismatch)

	p = basePayload()
	p["org_slug"] = "*"
	inst := sign(t, "k1", p)
	if _, err := ring.Verify([]byte(inst.Key), license.Expect{Org: license.InstanceOrg}); err != nil {
		t.Fatalf("instance license for _instance: %v", err)
	}
	if _, err := ring.Verify([]byte(inst.Key), license.Expect{Org: "acme"}); license.ReasonOf(err) != license.ReasonOrgMismatch {
		t.Fatalf("instance license for an org slot: %v", err)
	}
}

// A decoded license gives back the signed payload bytes and the signature
// from its key, in both input forms, and holds its kid within Key.
func TestDecodedPartsFromKey(t *testing.T) {
	payload := mustJSON(t, basePayload())
	key := signRaw("k1", payload)
	parts := strings.Split(key, ".")
	sig, err := base64.RawURLEncoding.DecodeString(parts[3])
	if err != nil {
		t.Fatal(err)
	}
	jsonForm := fmt.Sprintf(`{"format":"hfl1","kid":"k1","payload":%q,"signature":%q}`, parts[2], parts[3])
	for name, input := range map[string]string{"compact": key, "wrapped": key[:40] + "\n  " + key[40:], "json": jsonForm} {
		l, err := license.Decode([]byte(input))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if l.Key != key || l.Kid != "k1" || string(l.PayloadJSON()) != string(payload) || !bytes.Equal(l.Signature(), sig) ||
			string(l.SignedBytes()) != strings.Join(parts[:3], ".") {
			t.Errorf("%s: key %q kid %q payload %q", name, l.Key, l.Kid, l.PayloadJSON())
		}
		if _, err := testRing(t, "k1").Verify([]byte(input), license.Expect{Org: "acme"}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// A license without its key text still describes itself, and has no
// signed bytes, payload JSON, signature or JSON form to offer.
func TestWithoutKey(t *testing.T) {
	l, err := testRing(t, "k1").Verify([]byte(sign(t, "k1", basePayload()).Key), license.Expect{Org: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	c := l.WithoutKey()
	if c.Key != "" || c.Kid != l.Kid || c.Fingerprint != l.Fingerprint || c.Payload != l.Payload {
		t.Fatalf("WithoutKey: %+v", c)
	}
	if c.SignedBytes() != nil || c.PayloadJSON() != nil || c.Signature() != nil || c.EncodeJSON() != nil {
		t.Error("key material derived without the key")
	}
	if l.Key == "" || len(l.Signature()) != 64 {
		t.Error("the original lost its key")
	}
}
