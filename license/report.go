package license

import (
	"sort"
	"time"
)

// Where an org's status was resolved from.
const (
	FromOrg      = "org"
	FromInstance = "instance"
	FromNone     = "none"
)

// Report is the status payload of the HTTP API and the CLIs. Every key is
// always present; a nil pointer is JSON null. Times are RFC 3339 UTC, whole
// seconds.
type Report struct {
	Org           *string  `json:"org"`
	Status        Status   `json:"status"`
	Reason        *Reason  `json:"reason"`
	ResolvedFrom  *string  `json:"resolved_from"`
	LicenseID     *string  `json:"license_id"`
	Customer      *string  `json:"customer"`
	Tier          *Tier    `json:"tier"`
	Products      []string `json:"products"`
	Features      []string `json:"features"`
	IssuedAt      *string  `json:"issued_at"`
	NotBefore     *string  `json:"not_before"`
	Expires       *string  `json:"expires"`
	GraceEnds     *string  `json:"grace_ends"`
	DaysRemaining *int     `json:"days_remaining"`
	UsersLimit    *int     `json:"users_limit"`
	// UsersActive is the org's active users as its platform last reported
	// them, UsersReportedAt when; both null before any report.
	UsersActive     *int     `json:"users_active"`
	UsersReportedAt *string  `json:"users_reported_at"`
	Enforcement     *string  `json:"enforcement"`
	Seq             *uint64  `json:"seq"`
	Pending         *Pending `json:"pending"`
}

// Pending is the waiting license of a status payload.
type Pending struct {
	LicenseID string `json:"license_id"`
	NotBefore string `json:"not_before"`
}

// FormatTime renders t as the contract's RFC 3339 UTC whole-second form.
func FormatTime(t time.Time) string {
	return t.UTC().Truncate(time.Second).Format(time.RFC3339)
}

func timePtr(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := FormatTime(t)
	return &s
}

func ptr[T any](v T) *T { return &v }

// Describe builds the status payload of license h (nil: none) as seen at
// t, with waiting (nil: none) as the pending license. org may be empty for
// offline inspection, in which case it is taken from the payload. The
// caller sets ResolvedFrom, Enforcement and Seq where they apply.
//
// Fields of a license whose verification failed are shown as decoded, so an
// operator can see what was presented; the status says it is not trusted.
func Describe(org string, h *Held, revoked bool, waiting *Held, t time.Time) Report {
	st, reason := h.Status(t, revoked)
	r := Report{Status: st}
	if org != "" {
		r.Org = &org
	}
	if reason != "" {
		r.Reason = &reason
	}
	if p := h.Payload(); p != nil {
		if r.Org == nil {
			r.Org = ptr(p.Org())
		}
		r.LicenseID = &p.LicenseID
		r.Customer = &p.Customer
		r.Tier = &p.Tier
		r.Products = sortedCopy(p.Products)
		r.Features = sortedCopy(p.Features)
		r.IssuedAt = timePtr(p.IssuedAt)
		r.NotBefore = timePtr(p.NotBefore)
		r.Expires = timePtr(p.Expires)
		r.GraceEnds = timePtr(h.GraceEnds())
		r.DaysRemaining = ptr(DaysRemaining(p.Expires, t))
		r.UsersLimit = ptr(p.UsersLimit)
	}
	if p := waiting.Payload(); p != nil {
		r.Pending = &Pending{LicenseID: p.LicenseID, NotBefore: FormatTime(p.NotBefore)}
	}
	return r
}

func sortedCopy(s []string) []string {
	c := append([]string{}, s...)
	sort.Strings(c)
	return c
}
