package license_test

import (
	"testing"
	"time"

	"github.com/licenseledger/ledger/license"
)

func BenchmarkDecode(b *testing.B) {
	key := []byte(sign(b, "k1", basePayload()).Key)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := license.Decode(key); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	ring := testRing(b, "k1")
	key := []byte(sign(b, "k1", basePayload()).Key)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ring.Verify(key, license.Expect{Org: "acme"}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStatus(b *testing.B) {
	h := &license.Held{License: sign(b, "k1", basePayload()), GraceDays: 14}
	at := time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	for b.Loop() {
		if st, _ := h.Status(at, false); st != license.StatusValid {
			b.Fatal(st)
		}
	}
}
