package projection

import (
	"time"

	"github.com/licenseledger/ledger/license"
)

// Row is an org's row of the org_licenses read model, derived from its
// folded state. Every store (in memory, PostgreSQL) writes exactly this.
// Pointers are NULL when nil; arrays are never nil.
type Row struct {
	OrgSlug           string
	LicenseID         *string
	Customer          *string
	Tier              *string
	Products          []string
	Features          []string
	IssuedAt          *time.Time
	NotBefore         *time.Time
	ExpiresAt         *time.Time
	UsersLimit        *int
	GraceDays         *int
	LicenseKey        *string
	Fingerprint       *string
	Revoked           bool
	RevokedNote       *string
	PendingLicenseID  *string
	PendingNotBefore  *time.Time
	PendingLicenseKey *string
	// UsersActive and UsersReportedAt are the last usage report (NULL
	// before any); a removal keeps them (usage is the org's, not a
	// license's).
	UsersActive     *int
	UsersReportedAt *time.Time
	UpdatedAt       time.Time
	LastSeq         uint64
}

// RowOf projects s into its org_licenses row: the current and pending
// slots as stored (the pending one becomes current at read time), with the
// license columns taken from the stored key's payload. A removal leaves the
// license columns NULL and the arrays empty.
func RowOf(s *license.OrgState) Row {
	r := Row{OrgSlug: s.Org, Products: []string{}, Features: []string{}, UpdatedAt: s.UpdatedAt, LastSeq: s.Seq}
	if c := s.Current; c != nil {
		id, key, fp, grace := c.LicenseID, c.Key, c.Fingerprint, c.GraceDays
		r.LicenseID, r.LicenseKey, r.Fingerprint, r.GraceDays = &id, &key, &fp, &grace
		if p := c.Payload(); p != nil {
			customer, tier, users := p.Customer, string(p.Tier), p.UsersLimit
			r.Customer, r.Tier, r.UsersLimit = &customer, &tier, &users
			r.Products, r.Features = append([]string{}, p.Products...), append([]string{}, p.Features...)
			r.IssuedAt, r.ExpiresAt = timeOrNil(p.IssuedAt), timeOrNil(p.Expires)
			r.NotBefore = timeOrNil(p.NotBefore)
		}
		if s.IsRevoked(id) {
			rev, _ := s.Revoked.Get(id)
			r.Revoked, r.RevokedNote = true, &rev.Note
		}
	}
	if n, ok := s.Users(); ok {
		at := s.UsersReportedAt
		r.UsersActive, r.UsersReportedAt = &n, &at
	}
	if p := s.Pending; p != nil {
		id, key := p.LicenseID, p.Key
		r.PendingLicenseID, r.PendingLicenseKey = &id, &key
		if pl := p.Payload(); pl != nil {
			r.PendingNotBefore = timeOrNil(pl.NotBefore)
		}
	}
	return r
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
