package gatekeeper

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Defaults of a Config's zero fields.
const (
	// DefaultOrgSource is where the org comes from unless configured.
	DefaultOrgSource = "header:X-Org-Slug"
	// DefaultDecisionTimeout bounds each Source.State call of a decision;
	// past it the state counts as unavailable.
	DefaultDecisionTimeout = 100 * time.Millisecond
)

// DefaultTrustedProxies returns the peers whose org header is honoured
// unless configured: loopback, 127.0.0.0/8 and ::1.
func DefaultTrustedProxies() []netip.Prefix {
	return []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
}

// DefaultAllow returns the built-in allowlist: routes that pass whatever
// the license state, each with its methods — the health and readiness
// probes of the application, and the license endpoints, so that an org can
// see and renew its license. Config.Allow adds to it;
// Config.NoDefaultAllow drops it.
func DefaultAllow() []string { return slices.Clone(defaultAllow) }

var defaultAllow = []string{
	"GET,HEAD /health",
	"GET,HEAD /healthz",
	"GET,HEAD /readyz",
	"GET /api/license",
	"POST /api/license",
}

// AllowUI returns the allowlist entry of the ledger's own web UI under
// prefix (e.g. "/ui/"): GET and HEAD of prefix and everything below it.
func AllowUI(prefix string) (string, error) {
	if !strings.HasPrefix(prefix, "/") || !strings.HasSuffix(prefix, "/") || !canonicalPath(prefix) ||
		strings.ContainsAny(prefix, "%{}?# \t") {
		return "", fmt.Errorf("UI prefix %q: want a plain path ending in '/', e.g. /ui/", prefix)
	}
	return "GET,HEAD " + prefix + "{rest...}", nil
}

// Config configures a Gate. The zero value is the documented default
// configuration.
type Config struct {
	// OrgSource says where a request's org comes from (zero value:
	// DefaultOrgSource). Build it with ParseOrgSource.
	OrgSource OrgSource
	// TrustedProxies are the peers (by the request's RemoteAddr) whose org
	// header is honoured in header mode; from any other peer the header is
	// ignored and removed before the request goes upstream. nil means
	// DefaultTrustedProxies(); an empty non-nil slice trusts no peer.
	TrustedProxies []netip.Prefix
	// AllowNoOrg lets requests without an org through to the decision,
	// made on the instance-wide state (org "_instance"), instead of
	// denying them with org_required.
	AllowNoOrg bool
	// Allow adds entries to DefaultAllow(): "METHOD[,METHOD…] PATTERN",
	// PATTERN a net/http.ServeMux pattern without a method
	// ("[HOST]/PATH"). An entry matches exactly: only the methods it
	// names (GET does not imply HEAD), and the path as written, case
	// included, so that no spelling of another route gains an exemption.
	Allow []string
	// NoDefaultAllow drops DefaultAllow(): only Allow's entries pass.
	NoDefaultAllow bool
	// Features are the routes that need licensed features (ParseFeatures).
	Features []FeatureRule
	// SeatRoutes are the routes that consume a seat (ParseSeatRoutes):
	// "[METHOD ]PATTERN", ServeMux patterns matched as feature rules are
	// (e.g. "POST /api/users"). On them, and only there, an org whose
	// reported active users are at or over its license's users_limit is
	// warned (seat mode soft) or refused users_limit_reached (hard, while
	// enforcement is on); see design §6.
	SeatRoutes []string
	// Enforce overrides the install's enforcement mode when non-nil
	// (LICENSE_ENFORCE: ParseEnforce).
	Enforce *bool
	// DecisionTimeout bounds each Source.State call (0: the default,
	// DefaultDecisionTimeout).
	DecisionTimeout time.Duration
	// Tokens verifies bearer tokens in jwt mode (OrgSource jwt:CLAIM):
	// required there, unused otherwise. The package gatekeeper/jwtorg
	// provides one over a JWKS.
	Tokens TokenVerifier
	// TokenCookie also takes the token from this cookie when a request
	// has no Authorization header (jwt mode; "" for none).
	TokenCookie string
	// Now is the clock. nil is the wall clock, read cheaply: the
	// monotonic clock per decision and the wall clock once a second, so a
	// step of the system clock is seen within a second.
	Now func() time.Time
	// RenewalURL is the renewal link of the HTML denial page (Gate.WriteDenial):
	// a path or an http(s) URL in which {org} is replaced by the org,
	// URL-escaped. "" means DefaultRenewalURL.
	RenewalURL string
}

// OrgSourceKind is where an org comes from.
type OrgSourceKind uint8

// The org sources.
const (
	OrgFromHeader OrgSourceKind = iota // a request header, from trusted peers only
	OrgFromHost                        // a part of the Host
	OrgFromPath                        // a segment of the path
	OrgFromJWT                         // a claim of a verified bearer token
)

// OrgSource is a parsed --org-from value: header:NAME, host:TEMPLATE with
// one {org} (e.g. {org}.example.com), path:TEMPLATE with one {org}
// segment (e.g. /orgs/{org}/) or jwt:CLAIM (the org is the claim CLAIM of
// a verified bearer token: Config.Tokens). The zero value is
// DefaultOrgSource.
type OrgSource struct {
	kind   OrgSourceKind
	header string // canonical header name (header mode)
	prefix string // before {org} (host, path)
	suffix string // after {org} (host)
	claim  string // jwt mode
	spec   string
}

// Claim is the token claim holding the org (jwt mode; "" otherwise).
func (o OrgSource) Claim() string { return o.claim }

// ParseOrgSource parses header:NAME, host:TEMPLATE, path:TEMPLATE or
// jwt:CLAIM.
//
// In host mode the template's fixed parts match the request's Host (port
// and one trailing dot removed) case-insensitively, as host names do; the
// {org} part must still be a slug byte for byte. In path mode the fixed
// part matches the raw path exactly, and the org is the raw segment in
// place of {org} (no percent-decoding: an escaped slug is invalid).
func ParseOrgSource(s string) (OrgSource, error) {
	kind, arg, ok := strings.Cut(s, ":")
	if !ok || arg == "" {
		return OrgSource{}, fmt.Errorf("org source %q: want header:NAME, host:TEMPLATE, path:TEMPLATE or jwt:CLAIM", s)
	}
	switch kind {
	case "header":
		if !validToken(arg) {
			return OrgSource{}, fmt.Errorf("org source %q: %q is not a header name", s, arg)
		}
		name := http.CanonicalHeaderKey(arg)
		if isLicenseHeader(name) {
			return OrgSource{}, fmt.Errorf("org source %q: X-License-* headers are stripped from every request", s)
		}
		return OrgSource{kind: OrgFromHeader, header: name, spec: "header:" + name}, nil
	case "host":
		pre, suf, err := splitTemplate(strings.ToLower(arg))
		if err != nil {
			return OrgSource{}, fmt.Errorf("org source %q: %w", s, err)
		}
		for _, c := range []byte(pre + suf) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
				return OrgSource{}, fmt.Errorf("org source %q: host templates hold only letters, digits, '-', '.' and {org}", s)
			}
		}
		return OrgSource{kind: OrgFromHost, prefix: pre, suffix: suf, spec: "host:" + pre + "{org}" + suf}, nil
	case "path":
		pre, suf, err := splitTemplate(arg)
		if err != nil {
			return OrgSource{}, fmt.Errorf("org source %q: %w", s, err)
		}
		if !strings.HasPrefix(pre, "/") || !strings.HasSuffix(pre, "/") || (suf != "" && suf != "/") {
			return OrgSource{}, fmt.Errorf("org source %q: a path template is /PREFIX/{org}/ ({org} a whole segment, nothing after it)", s)
		}
		if !canonicalPath(pre) || strings.ContainsAny(pre, "%?#") {
			return OrgSource{}, fmt.Errorf("org source %q: the prefix %q is not a plain path", s, pre)
		}
		return OrgSource{kind: OrgFromPath, prefix: pre, spec: "path:" + pre + "{org}/"}, nil
	case "jwt":
		if !validClaim(arg) {
			return OrgSource{}, fmt.Errorf("org source %q: %q is not a claim name (letters, digits, '_', '-', '.', ':', '/')", s, arg)
		}
		return OrgSource{kind: OrgFromJWT, claim: arg, spec: "jwt:" + arg}, nil
	}
	return OrgSource{}, fmt.Errorf("org source %q: unknown kind %q (header, host, path or jwt)", s, kind)
}

// splitTemplate splits t around its one {org}.
func splitTemplate(t string) (pre, suf string, err error) {
	pre, suf, ok := strings.Cut(t, "{org}")
	if !ok || strings.ContainsAny(pre+suf, "{}") {
		return "", "", errors.New("the template needs exactly one {org} and no other braces")
	}
	return pre, suf, nil
}

// Kind is where the org comes from.
func (o OrgSource) Kind() OrgSourceKind { return o.orDefault().kind }

// String is the source in ParseOrgSource's syntax.
func (o OrgSource) String() string { return o.orDefault().spec }

func (o OrgSource) orDefault() OrgSource {
	if o.spec == "" {
		return OrgSource{kind: OrgFromHeader, header: "X-Org-Slug", spec: DefaultOrgSource}
	}
	return o
}

// ParseTrustedProxies parses CIDRs or single addresses (a /32 or /128).
// Blank entries are skipped.
func ParseTrustedProxies(list []string) ([]netip.Prefix, error) {
	out := []netip.Prefix{}
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: %w", s, err)
			}
			out = append(out, normalizePrefix(p))
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: %w", s, err)
		}
		a = a.Unmap().WithZone("")
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// normalizePrefix masks p and turns an IPv4-mapped IPv6 prefix into the
// IPv4 one: peers are compared unmapped.
func normalizePrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked()
}

// ParseEnforce parses LICENSE_ENFORCE: "" is no override (nil), "0" off,
// "1" on; anything else is an error (a startup error for the caller).
func ParseEnforce(v string) (*bool, error) {
	switch v {
	case "":
		return nil, nil
	case "0", "1":
		b := v == "1"
		return &b, nil
	}
	return nil, fmt.Errorf("LICENSE_ENFORCE=%q: want 0 or 1", v)
}

// validToken reports whether s is an HTTP token (a header name).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// validClaim reports whether s is a plausible claim name: 1 to 128 of
// letters, digits and "_-.:/" (URI-named claims included).
func validClaim(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_-.:/", c) >= 0) {
			return false
		}
	}
	return true
}
