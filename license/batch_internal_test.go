package license

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"filippo.io/edwards25519"
	"fmt"
	"testing"
)

// The batch equation holds for valid signatures and fails when any one of
// them is wrong: it decides, it does not only fall back.
func TestBatchEquation(t *testing.T) {
	var ls []*License
	var pubs []ed25519.PublicKey
	var idx []int
	for i := range 20 {
		seed := sha256.Sum256([]byte(fmt.Sprintf("batch key %d", i%3)))
		priv := ed25519.NewKeyFromSeed(seed[:])
		payload, _ := json.Marshal(map[string]any{"license_id": "0193a5b0-7e1a-7c3d-8f00-1234567890ab", "customer": "C",
			"org_slug": fmt.Sprintf("org-%d", i), "tier": "starter", "issued_at": "2026-11-01T00:00:00Z", "expires": "2027-11-01T00:00:00Z"})
		l, err := Sign(priv, fmt.Sprintf("k%d", i%3), payload)
		if err != nil {
			t.Fatal(err)
		}
		ls, pubs, idx = append(ls, l), append(pubs, priv.Public().(ed25519.PublicKey)), append(idx, i)
	}
	if !batchValid(pubs, nil, ls, idx) {
		t.Fatal("valid signatures failed the batch equation")
	}
	swapped := append([]ed25519.PublicKey(nil), pubs...)
	swapped[7], swapped[8] = swapped[8], swapped[7] // two signatures under the wrong keys
	if batchValid(swapped, nil, ls, idx) {
		t.Fatal("signatures under the wrong keys passed the batch equation")
	}
	bad := *ls[5]
	b := []byte(bad.Key)
	b[len(b)-2] ^= 'A' ^ 'B' // one signature changed
	bad.Key = string(b)
	tampered := append([]*License(nil), ls...)
	tampered[5] = &bad
	if batchValid(pubs, nil, tampered, idx) {
		t.Fatal("a changed signature passed the batch equation")
	}
}

// canonicalSeeds are the encodings at the edges of canonical: y = 0, 1,
// p - 1, p, p + 1 and 2^255 - 1, each with and without the sign bit, and a
// point of the curve (the base point).
func canonicalSeeds() [][]byte {
	le := func(low byte, mid byte, top byte) []byte {
		b := make([]byte, 32)
		b[0] = low
		for i := 1; i < 31; i++ {
			b[i] = mid
		}
		b[31] = top
		return b
	}
	var seeds [][]byte
	for _, b := range [][]byte{le(0, 0, 0), le(1, 0, 0), le(0xec, 0xff, 0x7f), le(0xed, 0xff, 0x7f), le(0xee, 0xff, 0x7f),
		le(0xff, 0xff, 0x7f), edwards25519.NewGeneratorPoint().Bytes()} {
		signed := append([]byte(nil), b...)
		signed[31] |= 0x80
		seeds = append(seeds, b, signed)
	}
	return seeds
}

// canonical agrees with decoding then encoding again, on every input the
// decoder accepts.
func FuzzCanonical(f *testing.F) {
	for _, s := range canonicalSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) != 32 {
			return
		}
		p, err := new(edwards25519.Point).SetBytes(b)
		if err != nil {
			return
		}
		if want := bytes.Equal(p.Bytes(), b); canonical(b) != want {
			t.Fatalf("canonical(%x) = %v, re-encoding says %v", b, !want, want)
		}
	})
}

// The edges the fuzzer starts from decide as re-encoding does: the
// non-canonical ones exist and are refused.
func TestCanonicalEdges(t *testing.T) {
	refused := 0
	for _, b := range canonicalSeeds() {
		p, err := new(edwards25519.Point).SetBytes(b)
		if err != nil {
			continue
		}
		want := bytes.Equal(p.Bytes(), b)
		if canonical(b) != want {
			t.Errorf("canonical(%x) = %v, want %v", b, !want, want)
		}
		if !want {
			refused++
		}
	}
	if refused < 3 {
		t.Errorf("only %d non-canonical encodings among the edges the decoder accepts", refused)
	}
}
