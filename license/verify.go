package license

import (
	"crypto/ed25519"
	"fmt"
	"strings"
)

// Expect is what a license must match besides its signature.
type Expect struct {
	// Org is the slot the license is for: an org slug, or InstanceOrg, which
	// requires org_slug "*". Empty skips the check (offline inspection).
	Org string
	// InstallID is this install's id. A license naming an install_id must
	// match it; empty skips the check (offline inspection).
	InstallID string
}

// Verify decodes input and checks it in the contract's order: structure,
// kid, signature, payload, org, install id. It returns the decoded license
// whenever the structure parsed (so callers can report its fingerprint and,
// for inspection only, its unverified fields) and a nil error only when the
// license is authentic and matches expect. Errors are *Error values.
// Revocation and time are not part of verification: see Held.Status.
func (r *Ring) Verify(input []byte, expect Expect) (*License, error) {
	l, err := Decode(input)
	if err != nil {
		return nil, err
	}
	return l, r.Check(l, expect)
}

// Check verifies an already decoded license; see Verify.
func (r *Ring) Check(l *License, expect Expect) error {
	pub, ok := r.keys[l.Kid]
	if !ok && len(r.keys) == 0 {
		return &Error{Reason: ReasonUnknownKey, Detail: fmt.Sprintf("the key ring trusts no vendor key at all, so no license (kid %q) "+
			"can verify: give the vendor's public keys in LICENSE_PUBLIC_KEYS or LICENSE_PUBLIC_KEYS_FILE", l.Kid)}
	}
	if !ok {
		return &Error{Reason: ReasonUnknownKey, Detail: fmt.Sprintf("no trusted key has kid %q (the ring trusts %s): add the vendor's "+
			"key %q to LICENSE_PUBLIC_KEYS or LICENSE_PUBLIC_KEYS_FILE", l.Kid, strings.Join(r.Kids(), ", "), l.Kid)}
	}
	if !ed25519.Verify(pub, l.SignedBytes(), l.Signature()) {
		return &Error{Reason: ReasonSignatureInvalid, Detail: fmt.Sprintf("the signature does not match key %q", l.Kid)}
	}
	return checkClaims(l, expect)
}

// checkClaims is what Check verifies after the signature: the payload, the
// org and the install id.
func checkClaims(l *License, expect Expect) error {
	if l.Payload == nil {
		return l.PayloadErr
	}
	p := l.Payload
	if expect.Org != "" && p.Org() != expect.Org {
		return &Error{Reason: ReasonOrgMismatch, Detail: fmt.Sprintf("the license is for %q, not %q", p.OrgSlug, expect.Org)}
	}
	if expect.InstallID != "" && p.InstallID != "" && p.InstallID != strings.ToLower(expect.InstallID) {
		return &Error{Reason: ReasonInstallMismatch, Detail: "the license is bound to another install"}
	}
	return nil
}
