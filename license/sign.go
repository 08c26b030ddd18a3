package license

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
)

// Sign signs payload with priv under kid and returns the license. The
// payload must pass ParsePayload: a vendor can never issue a license that
// installs would reject as malformed.
func Sign(priv ed25519.PrivateKey, kid string, payload []byte) (*License, error) {
	if !ValidKid(kid) {
		return nil, fmt.Errorf("kid %q must match [A-Za-z0-9_-]{1,64}", kid)
	}
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("not an Ed25519 private key")
	}
	if _, err := ParsePayload(payload); err != nil {
		return nil, err
	}
	signed := Format + "." + kid + "." + base64.RawURLEncoding.EncodeToString(payload)
	sig := ed25519.Sign(priv, []byte(signed))
	return Decode([]byte(signed + "." + base64.RawURLEncoding.EncodeToString(sig)))
}
