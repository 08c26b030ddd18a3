package license

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"regexp"
	"strings"

	"github.com/licenseledger/ledger/internal/strictjson"
)

// b64 is the strict unpadded base64url used for the payload and signature.
// Strict decoding rejects non-zero trailing bits, so every byte string has
// exactly one textual form and the fingerprint of a key cannot be varied
// without invalidating it.
var b64 = base64.RawURLEncoding.Strict()

var kidPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidKid reports whether kid is a well-formed key id.
func ValidKid(kid string) bool { return kidPattern.MatchString(kid) }

// License is a decoded license key. Decoding does not verify it: only a
// License returned by Ring.Verify with a nil error is trusted.
type License struct {
	// Kid names the vendor key that signed the license.
	Kid string
	// Key is the canonical compact form: "hfl1.<kid>.<payload>.<signature>"
	// with no whitespace, whichever form was decoded.
	Key string
	// Fingerprint is the lowercase hex SHA-256 of Key.
	Fingerprint string
	// Payload is the decoded payload, nil when the payload bytes are not a
	// valid payload (see PayloadErr).
	Payload *Payload
	// PayloadErr is why Payload is nil.
	PayloadErr error

	// The payload bytes and the signature are decoded again from Key when
	// asked for: a license is held in memory per org by every reader, and
	// Key already holds them.
	signedLen int // len("hfl1.<kid>.<payload>") within Key
}

// SignedBytes returns the bytes the signature covers: "hfl1.<kid>.<payload>"
// (nil without the key text: WithoutKey).
func (l *License) SignedBytes() []byte {
	if l.Key == "" {
		return nil
	}
	return []byte(l.Key[:l.signedLen])
}

// WithoutKey returns a copy of l without the key text: Key is empty, and
// SignedBytes, PayloadJSON, Signature and EncodeJSON return nil. It keeps
// what describes the license (Kid, Fingerprint, Payload, PayloadErr) for
// a reader that verified it and holds many licenses in memory; it cannot
// be verified again. Kid still refers to the key text's memory: a holder
// that wants that released copies it.
func (l *License) WithoutKey() *License {
	c := *l
	c.Key, c.signedLen = "", 0
	return &c
}

// PayloadJSON returns the payload bytes exactly as signed.
func (l *License) PayloadJSON() []byte {
	if l.Key == "" {
		return nil
	}
	payload := l.Key[len(Format)+1+len(l.Kid)+1 : l.signedLen]
	pj, _ := b64.DecodeString(payload) // checked by Decode
	return pj
}

// Signature returns the 64-byte signature.
func (l *License) Signature() []byte {
	if l.Key == "" {
		return nil
	}
	sig, _ := b64.DecodeString(l.Key[l.signedLen+1:]) // checked by Decode
	return sig
}

// jsonForm is the license.json encoding.
type jsonForm struct {
	Format    string `json:"format"`
	Kid       string `json:"kid"`
	Payload   string `json:"payload"`
	Signature string `json:"signature"`
}

var jsonFormKeys = []string{"format", "kid", "payload", "signature"}

// Decode parses a license in either form without verifying it. Input whose
// first non-whitespace byte is '{' is the JSON form, anything else compact.
//
// The returned error is a malformed *Error when the key structure is broken;
// then the License is nil. A structurally sound key whose payload is not a
// valid payload decodes with a nil error and a nil Payload (see PayloadErr):
// verification reports that after the signature, so a forged payload is
// never interpreted before it is authenticated.
func Decode(input []byte) (*License, error) {
	if len(input) > MaxInputSize {
		return nil, &Error{Reason: ReasonMalformed, Detail: ErrTooLarge.Error(), Err: ErrTooLarge}
	}
	trimmed := bytes.TrimLeft(input, asciiSpace)
	if len(trimmed) > 0 && trimmed[0] == '{' {
		return decodeJSONForm(trimmed)
	}
	return decodeCompact(stripSpace(input))
}

const asciiSpace = " \t\n\v\f\r"

// stripSpace removes every ASCII whitespace byte: mail clients wrap keys.
func stripSpace(b []byte) string {
	var sb strings.Builder
	sb.Grow(len(b))
	for _, c := range b {
		if strings.IndexByte(asciiSpace, c) < 0 {
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

func decodeJSONForm(data []byte) (*License, error) {
	if err := strictjson.CheckObject(data, jsonFormKeys); err != nil {
		return nil, malformed("license.json: %v", err)
	}
	var f jsonForm
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, malformed("license.json: %v", err)
	}
	if f.Format != Format {
		return nil, malformed("license.json: format must be %q", Format)
	}
	if f.Kid == "" || f.Payload == "" || f.Signature == "" {
		return nil, malformed("license.json: kid, payload and signature are required")
	}
	return decodeParts("", f.Kid, f.Payload, f.Signature)
}

func decodeCompact(key string) (*License, error) {
	if key == "" {
		return nil, malformed("empty input")
	}
	parts := strings.Split(key, ".")
	if len(parts) != 4 {
		return nil, malformed("a key has 4 dot-separated parts, this one has %d", len(parts))
	}
	if parts[0] != Format {
		return nil, malformed("a key starts with %q", Format+".")
	}
	return decodeParts(key, parts[1], parts[2], parts[3])
}

// decodeParts builds a License from its parts; canonical is the compact
// key they came from ("" for the JSON form), reused as Key so that a
// decoded license holds one copy of the text.
func decodeParts(canonical, kid, payload, sig string) (*License, error) {
	if !ValidKid(kid) {
		return nil, malformed("kid must match [A-Za-z0-9_-]{1,64}")
	}
	pj, err := b64.DecodeString(payload)
	if err != nil || len(pj) == 0 {
		return nil, malformed("payload is not unpadded base64url")
	}
	sb, err := b64.DecodeString(sig)
	if err != nil {
		return nil, malformed("signature is not unpadded base64url")
	}
	if len(sb) != 64 {
		return nil, malformed("signature is %d bytes, Ed25519 signatures are 64", len(sb))
	}
	key := canonical
	if key == "" {
		key = Format + "." + kid + "." + payload + "." + sig
	}
	signedLen := len(Format) + 1 + len(kid) + 1 + len(payload)
	sum := sha256.Sum256([]byte(key))
	l := &License{
		Kid:         key[len(Format)+1 : len(Format)+1+len(kid)], // within Key, not the input
		Key:         key,
		Fingerprint: hex.EncodeToString(sum[:]),
		signedLen:   signedLen,
	}
	l.Payload, l.PayloadErr = ParsePayload(pj)
	if l.PayloadErr != nil {
		l.Payload = nil
	}
	return l, nil
}

// Fingerprint returns the fingerprint of a canonical key.
func Fingerprint(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// EncodeJSON returns the license.json form of l.
func (l *License) EncodeJSON() []byte {
	if l.Key == "" {
		return nil
	}
	parts := strings.Split(l.Key, ".")
	out, _ := json.MarshalIndent(jsonForm{Format: Format, Kid: parts[1], Payload: parts[2], Signature: parts[3]}, "", "  ")
	return append(out, '\n')
}
