// Package webhook signs and sends webhook deliveries the way the Standard
// Webhooks specification (standardwebhooks.com) says, so that a receiver
// verifies them with any of its libraries: the headers webhook-id,
// webhook-timestamp and webhook-signature ("v1," and the base64
// HMAC-SHA256 of "id.timestamp.body"), and secrets written "whsec_" and
// base64.
//
// Sending is outbound traffic an operator did not write, so it is fenced
// (Policy): https only unless a host is allowed plain http, no request to
// a loopback, link-local (the cloud metadata services among them),
// unspecified or multicast address unless allowed, redirects not
// followed, a timeout on every delivery and a cap on what is read back.
package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks' header names.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts every secret's text.
const SecretPrefix = "whsec_"

// secretBytes is the length of the secrets NewSecret makes (the
// specification asks for 24 to 64).
const secretBytes = 32

// NewSecret returns a new random secret in its text form.
func NewSecret() (string, error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(b), nil
}

// ParseSecret returns the key of a secret's text form ("whsec_" and
// base64 of 24 to 64 bytes).
func ParseSecret(s string) ([]byte, error) {
	rest, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return nil, errors.New("webhook: a secret starts with " + SecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("webhook: secret: %v", err)
	}
	if len(key) < 24 || len(key) > 64 {
		return nil, fmt.Errorf("webhook: secret of %d bytes, want 24 to 64", len(key))
	}
	return key, nil
}

// Sign returns the webhook-signature value of a delivery: "v1," and the
// base64 HMAC-SHA256 under key of "id.timestamp.body", the timestamp in
// Unix seconds.
func Sign(key []byte, id string, ts time.Time, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + strconv.FormatInt(ts.Unix(), 10) + "."))
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// SetHeaders sets a delivery's Standard Webhooks headers on h, signed
// with every key in keys (a rotation signs with the old and the new
// secret for a while: receivers accept any one signature).
func SetHeaders(h http.Header, keys [][]byte, id string, ts time.Time, body []byte) {
	sigs := make([]string, len(keys))
	for i, k := range keys {
		sigs[i] = Sign(k, id, ts, body)
	}
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, strings.Join(sigs, " "))
}
