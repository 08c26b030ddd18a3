package ledger

import (
	"errors"
	"time"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/license"
)

// Error codes of the API contract. The HTTP layer maps each to a status in
// one table.
const (
	CodeMalformed        = "license_malformed"
	CodeSignatureInvalid = "license_signature_invalid"
	CodeUnknownKey       = "license_unknown_key"
	CodeOrgMismatch      = "license_org_mismatch"
	CodeInstallMismatch  = "license_install_mismatch"
	CodeRevoked          = "license_revoked"
	CodeAlreadyExpired   = "license_already_expired"
	CodeOlderThanCurrent = "license_older_than_current"
	CodeConflict         = "conflict"
	CodeTooLarge         = "payload_too_large"
	CodeUnavailable      = "event_store_unavailable"
	CodeForbidden        = "forbidden"
	CodeNotFound         = "not_found"
	CodeBadRequest       = "bad_request"
	// CodeRateLimited: a usage report that would change the org's users
	// came sooner than LEDGER_USAGE_RATE allows (Error.RetryAfter says
	// when to report again).
	CodeRateLimited = "rate_limited"
)

// Error is a command failure with its contract code and a message for
// people. It never carries a license key.
type Error struct {
	Code    string
	Message string
	// RetryAfter, when set, is how long to wait before asking again.
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func fail(code, msg string) *Error { return &Error{Code: code, Message: msg} }

// codeOf maps a verification failure to its API code.
func codeOf(err error) string {
	if errors.Is(err, license.ErrTooLarge) {
		return CodeTooLarge
	}
	switch license.ReasonOf(err) {
	case license.ReasonUnknownKey:
		return CodeUnknownKey
	case license.ReasonSignatureInvalid:
		return CodeSignatureInvalid
	case license.ReasonOrgMismatch:
		return CodeOrgMismatch
	case license.ReasonInstallMismatch:
		return CodeInstallMismatch
	}
	return CodeMalformed
}

// CodeOf returns the contract code of any command error.
func CodeOf(err error) string {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e.Code
	case errors.Is(err, events.ErrConflict):
		return CodeConflict
	case errors.Is(err, events.ErrUnavailable):
		return CodeUnavailable
	}
	return ""
}
