// Package license implements the hfl1 license format: parsing both encodings,
// Ed25519 verification against a key ring, and the status of a license at a
// given time.
//
// Verification and status are pure: they import neither NATS nor
// PostgreSQL and never read the clock. Callers pass the time they decide
// at, so every replica that holds the same licenses and the same time
// reaches the same status. Only the key ring (Keys) touches the outside
// world: it may read a key file, which ReloadOnSIGHUP reads again on
// SIGHUP.
package license

import (
	"errors"
	"fmt"
	"time"
)

const (
	// Format is the version prefix of every key and the "format" of the JSON form.
	Format = "hfl1"
	// MaxInputSize is the largest license input accepted, in bytes, whitespace included.
	MaxInputSize = 65536
	// InstanceOrg is the reserved name of the instance-wide slot (payload org_slug "*").
	InstanceOrg = "_instance"
	// InstanceSlug is the payload org_slug of an instance-wide license.
	InstanceSlug = "*"
	// Skew is the clock allowance applied to not_before.
	Skew = 5 * time.Minute
	// DefaultGraceDays is the grace applied when neither the payload nor the
	// uploading ledger's LICENSE_GRACE_DAYS says otherwise.
	DefaultGraceDays = 7
	// MaxGraceDays bounds the payload's grace_days.
	MaxGraceDays = 365
)

// Reason explains an invalid status. Its values are part of the contract.
type Reason string

// Reasons of the "invalid" status, in the order verification checks them.
const (
	ReasonMalformed        Reason = "malformed"
	ReasonUnknownKey       Reason = "unknown_key"
	ReasonSignatureInvalid Reason = "signature_invalid"
	ReasonOrgMismatch      Reason = "org_mismatch"
	ReasonInstallMismatch  Reason = "install_mismatch"
	ReasonRevoked          Reason = "revoked"
	ReasonNotYetValid      Reason = "not_yet_valid"
)

// Error is a verification failure. Reason is the contract value; Detail says
// in words what was wrong, for logs and API messages. Detail never contains
// the key itself.
type Error struct {
	Reason Reason
	Detail string
	Err    error // underlying cause, if any (ErrTooLarge)
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return string(e.Reason)
	}
	return string(e.Reason) + ": " + e.Detail
}

// ErrTooLarge is returned (wrapped in a malformed *Error) for input over
// MaxInputSize. HTTP callers answer it with 413 payload_too_large.
var ErrTooLarge = errors.New("license input larger than 65536 bytes")

func (e *Error) Unwrap() error { return e.Err }

func malformed(format string, args ...any) *Error {
	return &Error{Reason: ReasonMalformed, Detail: fmt.Sprintf(format, args...)}
}

// ReasonOf returns the Reason of a verification error, or "" for nil. Errors
// that are not *Error count as malformed.
func ReasonOf(err error) Reason {
	if err == nil {
		return ""
	}
	var le *Error
	if errors.As(err, &le) {
		return le.Reason
	}
	return ReasonMalformed
}
