package license_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/licenseledger/ledger/internal/testenv/licensetest"
	"github.com/licenseledger/ledger/license"
)

// batchInputs are licenses of every kind Verify tells apart: valid ones
// under two keys, and each way of failing.
func batchInputs(t testing.TB) ([][]byte, []license.Expect) {
	var in [][]byte
	var ex []license.Expect
	add := func(key string, e license.Expect) {
		in, ex = append(in, []byte(key)), append(ex, e)
	}
	for i := range 40 {
		org := fmt.Sprintf("org-%d", i)
		p := basePayload()
		p["org_slug"] = org
		p["license_id"] = fmt.Sprintf("0193a5b0-7e1a-7c3d-8f00-%012d", i)
		add(sign(t, []string{"k1", "k2"}[i%2], p).Key, license.Expect{Org: org})
	}
	good := sign(t, "k1", basePayload())
	add(good.Key, license.Expect{Org: "acme"})
	add(good.Key, license.Expect{Org: "globex"})                                // org_mismatch
	add(licensetest.SignAs(t, "k9", "k1", basePayload()).Key, license.Expect{}) // signature_invalid
	add(sign(t, "k9", basePayload()).Key, license.Expect{})                     // unknown_key
	add("hfl1.k1.garbage", license.Expect{})                                    // malformed
	sig := []byte(good.Key)
	sig[len(sig)-3] ^= 1 // a signature bit flipped
	add(string(sig), license.Expect{})
	bound := basePayload()
	bound["install_id"] = "0193a5b0-7e1a-7c3d-8f00-00000000aaaa"
	add(sign(t, "k2", bound).Key, license.Expect{Org: "acme", InstallID: "0193a5b0-7e1a-7c3d-8f00-00000000bbbb"}) // install_mismatch
	return in, ex
}

// VerifyBatch answers exactly what Verify answers, input by input, whether
// the batch holds only valid licenses or a few bad ones among many.
func TestVerifyBatchIsVerify(t *testing.T) {
	ring := testRing(t, "k1", "k2")
	in, ex := batchInputs(t)
	check := func(name string, in [][]byte, ex []license.Expect) {
		t.Helper()
		ls, errs := ring.VerifyBatch(in, ex)
		for i := range in {
			l, err := ring.Verify(in[i], ex[i])
			if !reflect.DeepEqual(err, errs[i]) {
				t.Fatalf("%s, input %d: batch error %v, Verify %v", name, i, errs[i], err)
			}
			if (l == nil) != (ls[i] == nil) || l != nil && l.Fingerprint != ls[i].Fingerprint {
				t.Fatalf("%s, input %d: batch license %v, Verify %v", name, i, ls[i], l)
			}
		}
	}
	check("valid only", in[:40], ex[:40])
	check("mixed", in, ex)
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 20 { // shuffled, split at random sizes
		perm := rng.Perm(len(in))
		pin, pex := make([][]byte, len(in)), make([]license.Expect, len(in))
		for i, j := range perm {
			pin[i], pex[i] = in[j], ex[j]
		}
		n := 1 + rng.IntN(len(in))
		check(fmt.Sprintf("round %d", round), pin[:n], pex[:n])
	}
	var valid int
	_, errs := ring.VerifyBatch(in, ex)
	for _, err := range errs {
		if err == nil {
			valid++
		}
	}
	if valid != 41 {
		t.Fatalf("%d valid, want 41", valid)
	}
}

// More inputs than one equation holds are split.
func TestVerifyBatchSplitsLargeInputs(t *testing.T) {
	ring := testRing(t, "k1", "k2")
	in, ex := batchInputs(t)
	for len(in) < 3*license.BatchMax {
		in, ex = append(in, in[:40]...), append(ex, ex[:40]...)
	}
	_, errs := ring.VerifyBatch(in, ex)
	for i := range in {
		if _, err := ring.Verify(in[i], ex[i]); !reflect.DeepEqual(err, errs[i]) {
			t.Fatalf("input %d: batch %v, Verify %v", i, errs[i], err)
		}
	}
}

func BenchmarkVerifyBatch(b *testing.B) {
	ring := testRing(b, "k1", "k2")
	in, ex := batchInputs(b)
	in, ex = in[:40], ex[:40]
	b.Run("single", func(b *testing.B) {
		for b.Loop() {
			for i := range in {
				ring.Verify(in[i], ex[i])
			}
		}
	})
	b.Run("batch", func(b *testing.B) {
		for b.Loop() {
			ring.VerifyBatch(in, ex)
		}
	})
}
