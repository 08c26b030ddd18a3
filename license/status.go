package license

import (
	"time"
)

// Status is an org's license status at a moment.
type Status string

// The statuses, as the contract names them.
const (
	StatusValid   Status = "valid"
	StatusGrace   Status = "grace"
	StatusExpired Status = "expired"
	StatusMissing Status = "missing"
	StatusInvalid Status = "invalid"
)

const day = 24 * time.Hour

// Held is a license as an org holds it: the stored key's verification
// outcome against the reader's ring and the effective grace recorded when it
// was uploaded (every reader uses the recorded value, so none disagree).
type Held struct {
	// License is the decoded stored key. Its Payload is nil only when Err is
	// malformed.
	License *License
	// Err is the verification failure of the stored key; nil when verified.
	Err error
	// GraceDays is the effective grace in days.
	GraceDays int
}

// EffectiveGrace is the grace a license gets at upload: the payload's
// grace_days when present, else the ledger's default.
func EffectiveGrace(p *Payload, defaultDays int) int {
	if p != nil && p.GraceDays != nil {
		return *p.GraceDays
	}
	return defaultDays
}

// Payload returns the license payload, nil when there is none to read.
func (h *Held) Payload() *Payload {
	if h == nil || h.License == nil {
		return nil
	}
	return h.License.Payload
}

// GraceEnds returns expires + the effective grace.
func (h *Held) GraceEnds() time.Time {
	p := h.Payload()
	if p == nil {
		return time.Time{}
	}
	return p.Expires.Add(time.Duration(h.GraceDays) * day)
}

// Status returns the status of h at t, first match wins: a verification
// failure, then revocation, then not_yet_valid (t < not_before − Skew), then
// expired (t >= grace end), grace (t >= expires), else valid. A nil Held is
// missing.
func (h *Held) Status(t time.Time, revoked bool) (Status, Reason) {
	if h == nil || h.License == nil {
		return StatusMissing, ""
	}
	if h.Err != nil {
		return StatusInvalid, ReasonOf(h.Err)
	}
	p := h.License.Payload
	switch {
	case revoked:
		return StatusInvalid, ReasonRevoked
	case !p.NotBefore.IsZero() && t.Before(p.NotBefore.Add(-Skew)):
		return StatusInvalid, ReasonNotYetValid
	case !t.Before(h.GraceEnds()):
		return StatusExpired, ""
	case !t.Before(p.Expires):
		return StatusGrace, ""
	}
	return StatusValid, ""
}

// StartsLater reports whether a license uploaded at t must wait in the
// pending slot: its not_before − Skew is still in the future.
func StartsLater(p *Payload, t time.Time) bool {
	return p != nil && !p.NotBefore.IsZero() && t.Before(p.NotBefore.Add(-Skew))
}

// Applicable resolves an org's two slots at t. The pending license becomes
// current at its not_before − Skew, by time alone; until then the current
// one stays in force. It returns the license in force (nil if none) and the
// one still waiting (nil if none).
func Applicable(current, pending *Held, t time.Time) (inForce, waiting *Held) {
	if pending == nil || StartsLater(pending.Payload(), t) {
		return current, pending
	}
	return pending, nil
}

// DaysRemaining is ⌊(expires − t) / 86,400 s⌋: one second past expiry is −1.
func DaysRemaining(expires, t time.Time) int {
	secs := expires.Unix() - t.Unix()
	if expires.Nanosecond() < t.Nanosecond() {
		secs-- // the true difference is secs + a fraction in [0, 1)
	}
	const perDay = 86400
	d := secs / perDay
	if secs%perDay < 0 {
		d--
	}
	return int(d)
}
