package gatekeeper

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/licenseledger/ledger/license"
)

// Denial codes (the "error" of a denial body and X-License-Error).
const (
	CodePathInvalid        = "path_invalid"
	CodeOrgInvalid         = "org_invalid"
	CodeOrgRequired        = "org_required"
	CodeLicenseMissing     = "license_missing"
	CodeFeatureNotLicensed = "feature_not_licensed"
	CodeLicenseExpired     = "license_expired"
	CodeLicenseInvalid     = "license_invalid"
	CodeStateUnavailable   = "license_state_unavailable"
	// CodeOrgUnauthenticated: jwt mode, the request carries no token, or
	// one that does not verify (401 with WWW-Authenticate: Bearer).
	CodeOrgUnauthenticated = "org_unauthenticated"
	// CodeAuthzHeadersMismatch: /authz got the other header family than
	// --authz-headers names (400).
	CodeAuthzHeadersMismatch = "authz_headers_mismatch"
	// CodeAuthzForbidden: /authz asked by a peer outside --authz-trusted or
	// without the shared secret (403; nothing about any org is told).
	CodeAuthzForbidden = "authz_forbidden"
	// CodeUsersLimitReached: a seat route (Config.SeatRoutes) in seat mode
	// hard, for an org whose reported active users are at or over its
	// license's users_limit (403; the org's other routes still pass).
	CodeUsersLimitReached = "users_limit_reached"
	codeCount             = 12
)

// codes lists every denial code.
var codes = [codeCount]string{CodePathInvalid, CodeOrgInvalid, CodeOrgRequired, CodeLicenseMissing,
	CodeFeatureNotLicensed, CodeLicenseExpired, CodeLicenseInvalid, CodeStateUnavailable,
	CodeOrgUnauthenticated, CodeAuthzHeadersMismatch, CodeAuthzForbidden, CodeUsersLimitReached}

// messageOf is the default message of a denial code.
func messageOf(code string) string {
	switch code {
	case CodePathInvalid:
		return "the request path has no single meaning: an empty, '.' or '..' segment, a ';' parameter, a double or malformed escape, an encoded slash, a control character or ambiguous Unicode"
	case CodeOrgInvalid:
		return "the org is not a valid slug"
	case CodeOrgRequired:
		return "the request names no org"
	case CodeLicenseMissing:
		return "the org holds no license"
	case CodeFeatureNotLicensed:
		return "the org's license does not include a feature this route needs"
	case CodeLicenseExpired:
		return "the org's license has expired"
	case CodeLicenseInvalid:
		return "the org's license is invalid"
	case CodeStateUnavailable:
		return "the org's license state cannot be determined right now; retry shortly"
	case CodeOrgUnauthenticated:
		return "a valid bearer token naming the org is required"
	case CodeAuthzHeadersMismatch:
		return "the proxy sent another header family than the gatekeeper's --authz-headers names"
	case CodeAuthzForbidden:
		return "this peer may not ask the gatekeeper for decisions"
	case CodeUsersLimitReached:
		return "the org has used all of its seats: routes that add a user are refused until users are removed or the license raises its users_limit; removing users and every other route still work"
	}
	return code
}

// The headers a Gate sets.
const (
	HeaderOrg           = "X-License-Org"
	HeaderStatus        = "X-License-Status"
	HeaderTier          = "X-License-Tier"
	HeaderFeatures      = "X-License-Features"
	HeaderUsersLimit    = "X-License-Users-Limit"
	HeaderDaysRemaining = "X-License-Days-Remaining"
	HeaderWarning       = "X-License-Warning"
	HeaderError         = "X-License-Error"
	HeaderReason        = "X-License-Reason" // on license_invalid denials
)

// Decision is a Gate's answer for one request.
type Decision struct {
	// Allowed says whether the request may go upstream.
	Allowed bool
	// Allowlisted: the route passes whatever the state. Unenforced:
	// allowed only because enforcement is off.
	Allowlisted, Unenforced bool

	dropOrgHdr   bool  // header mode: the org header came from an untrusted peer
	badToken     bool  // jwt mode: a token was sent and did not verify
	resultStripe uint8 // spreads the counters

	// Status is the HTTP status to answer with: 200 when allowed; 403 for
	// a denial, or 503 for license_state_unavailable (the proxy's and the
	// middleware's answer; /authz uses ForAuthz for 403).
	Status int
	// Code is the denial code ("" when allowed); Message says it in words.
	Code    string
	Message string
	// Reason is the license's invalid reason for license_invalid ("" =
	// JSON null).
	Reason license.Reason
	// Org is the org decided for ("_instance" with AllowNoOrg and no org
	// in the request; "" when there is no valid org).
	Org string
	// LicenseStatus is the org's status when known ("" otherwise).
	LicenseStatus license.Status
	// Expires is the expiry of the org's license in force when its status
	// is valid, grace or expired (zero otherwise).
	Expires time.Time

	hdr    *headerSet // pre-rendered, shared, never modified; nil when the state is unknown
	orgHdr *[1]string // X-License-Org's value, with hdr
}

// headerSet holds the pre-rendered values of a view's headers but the
// org's (shared by every org with the same values); nil slices are not
// sent.
type headerSet struct {
	status, tier, features, usersLimit, days []string
	warning                                  []string // client response: in grace, and over the seats on a seat route
}

// statusOf is the HTTP status of a denial code on the proxy and the
// middleware.
func statusOf(code string) int {
	switch code {
	case CodePathInvalid, CodeAuthzHeadersMismatch:
		return http.StatusBadRequest
	case CodeOrgUnauthenticated:
		return http.StatusUnauthorized
	case CodeStateUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusForbidden
}

// ForAuthz returns d as the /authz endpoint answers it: 401 for
// org_unauthenticated, 403 for every other denial (path_invalid and
// license_state_unavailable included): nginx's auth_request passes only
// 2xx, 401 and 403 on, and takes anything else for a failed subrequest.
func (d Decision) ForAuthz() Decision {
	if !d.Allowed && d.Status != http.StatusUnauthorized {
		d.Status = http.StatusForbidden
	}
	return d
}

// Upstream returns a copy of the X-License-* headers d sends upstream
// (empty unless allowed with a known state), with X-License-Warning when
// the client response carries one.
func (d Decision) Upstream() http.Header {
	h := http.Header{}
	SetUpstreamHeaders(h, d)
	SetClientHeaders(h, d)
	return h
}

// SetUpstreamHeaders sets the X-License-* headers of an allowed request on
// h (the request going upstream, or a 200 /authz response): X-License-Org,
// -Status, -Tier, -Features (comma-separated, sorted), -Users-Limit (0 =
// unlimited) and -Days-Remaining, those that apply. Tier, features, users
// limit and days remaining are sent for valid, grace and expired licenses
// only. When d is a denial or the state is unknown it only removes them.
// The values are shared, pre-rendered slices: assigned, not copied, so a
// caller must not modify them.
func SetUpstreamHeaders(h http.Header, d Decision) {
	setUpstream(h, d, len(h) == 0)
}

// setUpstream is SetUpstreamHeaders; absent says h holds no X-License-*
// header (an empty map, or one just stripped): nothing to remove.
func setUpstream(h http.Header, d Decision, absent bool) {
	if absent {
		if d.Allowed && d.hdr != nil {
			s := d.hdr
			h[HeaderOrg] = d.orgHdr[:]
			add(h, HeaderStatus, s.status)
			add(h, HeaderTier, s.tier)
			add(h, HeaderFeatures, s.features)
			add(h, HeaderUsersLimit, s.usersLimit)
			add(h, HeaderDaysRemaining, s.days)
		}
		return
	}
	s, org := d.hdr, []string(nil)
	if !d.Allowed || s == nil {
		s = &noHeaders
	} else {
		org = d.orgHdr[:]
	}
	set(h, HeaderOrg, org)
	set(h, HeaderStatus, s.status)
	set(h, HeaderTier, s.tier)
	set(h, HeaderFeatures, s.features)
	set(h, HeaderUsersLimit, s.usersLimit)
	set(h, HeaderDaysRemaining, s.days)
}

// SetClientHeaders sets the headers of the client response of an allowed
// request: X-License-Warning, one value: "grace; ends=<RFC 3339>" in
// grace; "users_limit; active=N; limit=L" on a seat route of an org at or
// over its users_limit in seat mode soft (or hard while not enforced);
// both joined by ", " when both apply.
func SetClientHeaders(h http.Header, d Decision) {
	if d.Allowed && d.hdr != nil && d.hdr.warning != nil {
		h[HeaderWarning] = d.hdr.warning
	}
}

var noHeaders headerSet

func add(h http.Header, k string, v []string) {
	if v != nil {
		h[k] = v
	}
}

func set(h http.Header, k string, v []string) {
	if v == nil {
		delete(h, k)
		return
	}
	h[k] = v
}

// denialBody is the JSON body of a denial.
type denialBody struct {
	Error   string  `json:"error"`
	Message string  `json:"message"`
	Org     *string `json:"org"`
	Reason  *string `json:"reason"`
}

// WriteDenial answers a denied request: d.Status (403, or 503 for
// license_state_unavailable; 403 when unset) with
// {"error", "message", "org", "reason"} (org and reason null when empty)
// and X-License-Error: <code>. Gate.WriteDenial also answers browsers with
// an HTML page.
func WriteDenial(w http.ResponseWriter, d Decision) {
	b := denialBody{Error: d.Code, Message: d.Message}
	if d.Org != "" {
		b.Org = &d.Org
	}
	if d.Reason != "" {
		r := string(d.Reason)
		b.Reason = &r
	}
	status := denialHeaders(w.Header(), d)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(b)
}
