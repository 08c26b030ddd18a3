package license

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
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
	if !batchValid(pubs, ls, idx) {
		t.Fatal("valid signatures failed the batch equation")
	}
	swapped := append([]ed25519.PublicKey(nil), pubs...)
	swapped[7], swapped[8] = swapped[8], swapped[7] // two signatures under the wrong keys
	if batchValid(swapped, ls, idx) {
		t.Fatal("signatures under the wrong keys passed the batch equation")
	}
	bad := *ls[5]
	b := []byte(bad.Key)
	b[len(b)-2] ^= 'A' ^ 'B' // one signature changed
	bad.Key = string(b)
	tampered := append([]*License(nil), ls...)
	tampered[5] = &bad
	if batchValid(pubs, tampered, idx) {
		t.Fatal("a changed signature passed the batch equation")
	}
}
