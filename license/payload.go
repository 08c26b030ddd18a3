package license

import (
	"encoding/json"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/licenseledger/ledger/internal/strictjson"
)

// Tier is a license tier.
type Tier string

// The tiers a payload may name.
const (
	TierStarter      Tier = "starter"
	TierProfessional Tier = "professional"
	TierEnterprise   Tier = "enterprise"
)

// Payload is the signed content of a license. Optional times are zero when
// absent; GraceDays is nil when the payload does not set it.
type Payload struct {
	LicenseID  string // lowercase RFC 4122 UUID
	Customer   string
	OrgSlug    string // an org slug or "*" (instance-wide)
	Tier       Tier
	Products   []string // never nil
	Features   []string // never nil
	IssuedAt   time.Time
	NotBefore  time.Time // zero: no lower bound
	Expires    time.Time
	UsersLimit int  // 0: unlimited
	GraceDays  *int // nil: the uploading ledger's default applies
	InstallID  string
}

// Org returns the org the license is for: OrgSlug, or InstanceOrg for "*".
func (p *Payload) Org() string {
	if p.OrgSlug == InstanceSlug {
		return InstanceOrg
	}
	return p.OrgSlug
}

var payloadKeys = []string{"license_id", "customer", "org_slug", "tier", "products", "features",
	"issued_at", "not_before", "expires", "users_limit", "grace_days", "install_id"}

var (
	// Products and features travel in comma-separated headers and the
	// features file: no commas, no spaces.
	namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`)
	// Whole, non-negative JSON integers only: no sign, fraction or exponent.
	uintPattern = regexp.MustCompile(`^(0|[1-9][0-9]{0,9})$`)
)

// ValidSlug reports whether s is an org slug, ^[a-z0-9][a-z0-9-]{0,62}$
// (the reserved "_instance" is not). Readers check every message's
// subject with it, so it is a loop over the bytes, not a regexp.
func ValidSlug(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// Years outside this range are malformed, so expires plus the longest grace
// still formats as RFC 3339 and fits every store.
const minYear, maxYear = 1970, 9998

// ParsePayload parses payload JSON under the strict rules of the format:
// UTF-8, one object, exact-case unique keys, required fields present, known
// tier, ranges respected, issued_at < expires and not_before < expires.
// Unknown keys are ignored. Errors are malformed *Error values.
func ParsePayload(data []byte) (*Payload, error) {
	if err := strictjson.CheckObject(data, payloadKeys); err != nil {
		return nil, malformed("payload: %v", err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, malformed("payload: %v", err)
	}
	f := fields{raw: raw}
	p := &Payload{
		LicenseID:  f.uuid("license_id", true),
		Customer:   f.str("customer", true),
		OrgSlug:    f.str("org_slug", true),
		Tier:       Tier(f.str("tier", true)),
		Products:   f.names("products"),
		Features:   f.names("features"),
		IssuedAt:   f.time("issued_at", true),
		NotBefore:  f.time("not_before", false),
		Expires:    f.time("expires", true),
		UsersLimit: f.uint("users_limit", 1<<31-1),
		InstallID:  f.uuid("install_id", false),
	}
	if _, ok := f.present("grace_days"); ok {
		g := f.uint("grace_days", MaxGraceDays)
		p.GraceDays = &g
	}
	if f.err != nil {
		return nil, f.err
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Payload) check() error {
	switch {
	case strings.TrimSpace(p.Customer) == "":
		return malformed("customer must not be empty")
	case p.OrgSlug != InstanceSlug && !ValidSlug(p.OrgSlug):
		return malformed("org_slug must be \"*\" or match ^[a-z0-9][a-z0-9-]{0,62}$")
	case p.Tier != TierStarter && p.Tier != TierProfessional && p.Tier != TierEnterprise:
		return malformed("tier must be starter, professional or enterprise")
	case !p.IssuedAt.Before(p.Expires):
		return malformed("issued_at must be before expires")
	case !p.NotBefore.IsZero() && !p.NotBefore.Before(p.Expires):
		return malformed("not_before must be before expires")
	}
	return nil
}

// fields reads typed values out of a raw object, keeping the first error.
type fields struct {
	raw map[string]json.RawMessage
	err error
}

func (f *fields) fail(format string, args ...any) {
	if f.err == nil {
		f.err = malformed(format, args...)
	}
}

// present returns the raw value of key; JSON null counts as absent.
func (f *fields) present(key string) (json.RawMessage, bool) {
	v, ok := f.raw[key]
	if !ok || string(v) == "null" {
		return nil, false
	}
	return v, true
}

func (f *fields) str(key string, required bool) string {
	v, ok := f.present(key)
	if !ok {
		if required {
			f.fail("%s is required", key)
		}
		return ""
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		f.fail("%s must be a string", key)
	}
	return s
}

func (f *fields) uuid(key string, required bool) string {
	s := f.str(key, required)
	if s == "" {
		if f.err == nil && required {
			f.fail("%s is required", key)
		}
		return ""
	}
	u, err := uuid.Parse(s)
	if err != nil || len(s) != 36 || u.Variant() != uuid.RFC4122 || u.Version() < 1 || u.Version() > 8 {
		f.fail("%s must be an RFC 4122 UUID", key)
		return ""
	}
	return u.String()
}

func (f *fields) time(key string, required bool) time.Time {
	s := f.str(key, required)
	if s == "" {
		if f.err == nil && required {
			f.fail("%s is required", key)
		}
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		f.fail("%s must be an RFC 3339 time", key)
		return time.Time{}
	}
	if y := t.UTC().Year(); y < minYear || y > maxYear {
		f.fail("%s must be between years %d and %d", key, minYear, maxYear)
	}
	// Stores keep microseconds: never hold more than they can give back.
	return t.UTC().Truncate(time.Microsecond)
}

func (f *fields) uint(key string, max int) int {
	v, ok := f.present(key)
	if !ok {
		return 0
	}
	s := string(v)
	if !uintPattern.MatchString(s) {
		f.fail("%s must be a whole number between 0 and %d", key, max)
		return 0
	}
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	if n > max {
		f.fail("%s must be between 0 and %d", key, max)
	}
	return n
}

func (f *fields) names(key string) []string {
	v, ok := f.present(key)
	if !ok {
		return []string{}
	}
	var list []string
	if err := json.Unmarshal(v, &list); err != nil {
		f.fail("%s must be an array of strings", key)
		return []string{}
	}
	for _, n := range list {
		if !namePattern.MatchString(n) {
			f.fail("%s entries must match ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$", key)
		}
	}
	if list == nil {
		list = []string{}
	}
	return list
}
