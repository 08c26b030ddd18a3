package gatekeeper

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"

	"github.com/licenseledger/ledger/gatekeeper/jwtorg"
)

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c - 'a' + 10)
	case c >= 'A' && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

// validSlug reports whether s matches ^[a-z0-9][a-z0-9-]{0,62}$ (the
// contract's slug rule, license.ValidSlug) without a regular expression.
func validSlug(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// orgResult is what a request says about its org.
type orgResult uint8

const (
	orgNone       orgResult = iota // no org in the request
	orgOK                          // a valid slug
	orgBad                         // present but not a slug
	orgIgnored                     // header mode: a header from an untrusted peer (ignored: no org)
	orgPrefixOnly                  // path mode: the org prefix with no org after it (org_required, always)
	orgNoToken                     // jwt mode: no bearer token (org_unauthenticated)
	orgBadToken                    // jwt mode: a token that does not verify (org_unauthenticated)
)

// orgOf extracts the org of a request from the configured source. path is
// the request path decoded once (already found canonical), host the Host
// header.
func (g *Gate) orgOf(ctx context.Context, path, host string, hdr http.Header, remoteAddr string) (string, orgResult) {
	var v string
	switch g.orgFrom.kind {
	case OrgFromHeader:
		vals := hdr[g.orgFrom.header]
		if len(vals) == 0 {
			return "", orgNone
		}
		if !g.proxies.Trusted(remoteAddr) {
			return "", orgIgnored
		}
		if len(vals) > 1 {
			return "", orgBad // ambiguous
		}
		v = vals[0]
		if v == "" {
			return "", orgNone
		}
	case OrgFromHost:
		h := stripPort(host)
		if h == "" {
			return "", orgNone
		}
		if h[len(h)-1] == '.' {
			h = h[:len(h)-1]
		}
		pre, suf := g.orgFrom.prefix, g.orgFrom.suffix
		if len(h) < len(pre)+len(suf) || !strings.EqualFold(h[:len(pre)], pre) || !strings.EqualFold(h[len(h)-len(suf):], suf) {
			return "", orgNone
		}
		v = h[len(pre) : len(h)-len(suf)]
		if v == "" {
			return "", orgNone
		}
	case OrgFromPath:
		// The prefix matches in any ASCII case (a case-insensitive
		// upstream serves /ORGS/gamma/ as /orgs/gamma/); the org segment
		// must still be a slug byte for byte. A path that is the prefix
		// without an org ("/orgs", "/orgs/") names no org but is not
		// outside the prefix either: it is never decided on _instance.
		pre := g.orgFrom.prefix
		if len(path) < len(pre)-1 || !strings.EqualFold(path[:len(pre)-1], pre[:len(pre)-1]) ||
			len(path) > len(pre)-1 && path[len(pre)-1] != '/' {
			return "", orgNone
		}
		if len(path) > len(pre) {
			v = path[len(pre):]
			if i := strings.IndexByte(v, '/'); i >= 0 {
				v = v[:i]
			}
		}
		if v == "" {
			return "", orgPrefixOnly
		}
	case OrgFromJWT:
		tok, ok := jwtorg.TokenFrom(hdr, g.tokenCookie)
		if !ok {
			return "", orgNoToken
		}
		org, err := g.tokens.OrgContext(ctx, tok)
		switch {
		case errors.Is(err, jwtorg.ErrNoClaim):
			return "", orgNone
		case err != nil:
			return "", orgBadToken
		}
		v = org
	}
	if !validSlug(v) {
		return "", orgBad
	}
	return v, orgOK
}

// stripPort removes a port from a Host value; an IPv6 literal keeps its
// brackets (it is never an org host).
func stripPort(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		return host[:i]
	}
	return host
}

// trustList holds the trusted peers, IPv4 prefixes also as masks for a
// parse-free check of the common "a.b.c.d:port" form.
type trustList struct {
	prefixes []netip.Prefix
	v4       []v4net
}

type v4net struct{ ip, mask uint32 }

func newTrustList(ps []netip.Prefix) trustList {
	t := trustList{prefixes: ps}
	for _, p := range ps {
		if a := p.Addr(); a.Is4() {
			b := a.As4()
			mask := uint32(0)
			if p.Bits() > 0 {
				mask = ^uint32(0) << (32 - p.Bits())
			}
			t.v4 = append(t.v4, v4net{ip: uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]), mask: mask})
		}
	}
	return t
}

// Peers is a set of trusted peers, matched against a request's RemoteAddr
// (the connection's address, never a forwarded one): without parsing in
// the common "a.b.c.d:port" form, and with the answer for recently seen
// peers cached (a connection's RemoteAddr is the same string for each of
// its requests, so a hit is one string comparison). It is safe for
// concurrent use; its memory is bounded whatever peers connect.
type Peers struct {
	trust trustList
	cache [256]atomic.Pointer[peer] // direct-mapped
}

type peer struct {
	addr    string
	trusted bool
}

// NewPeers returns the peers within prefixes (an IPv4-mapped IPv6 prefix
// counts as its IPv4 one). An empty list trusts no peer; an invalid
// prefix is an error.
func NewPeers(prefixes []netip.Prefix) (*Peers, error) {
	ps := make([]netip.Prefix, 0, len(prefixes))
	for _, p := range prefixes {
		if !p.IsValid() {
			return nil, fmt.Errorf("invalid trusted peer prefix %v", p)
		}
		ps = append(ps, normalizePrefix(p))
	}
	return &Peers{trust: newTrustList(ps)}, nil
}

// Trusted reports whether remoteAddr ("ip:port", "[ip]:port" or a bare
// ip) is a trusted peer. Anything unparseable (a Unix socket's "@", "") is
// not.
func (ps *Peers) Trusted(remoteAddr string) bool {
	n := len(remoteAddr)
	if n < 2 {
		return false
	}
	slot := &ps.cache[(uint(remoteAddr[n-1])^uint(remoteAddr[n-2])<<3^uint(n)<<5)&255]
	if p := slot.Load(); p != nil && p.addr == remoteAddr {
		return p.trusted
	}
	t := ps.trusted(remoteAddr)
	slot.Store(&peer{addr: remoteAddr, trusted: t}) // the connection's own string: the next hit compares pointers
	return t
}

// trusted is Trusted without the cache.
func (ps *Peers) trusted(remoteAddr string) bool {
	if ip, ok := parseV4HostPort(remoteAddr); ok {
		for _, n := range ps.trust.v4 {
			if ip&n.mask == n.ip&n.mask {
				return true
			}
		}
		return false
	}
	var a netip.Addr
	if ap, err := netip.ParseAddrPort(remoteAddr); err == nil {
		a = ap.Addr()
	} else if a, err = netip.ParseAddr(remoteAddr); err != nil {
		return false
	}
	a = a.Unmap().WithZone("")
	for _, p := range ps.trust.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseV4HostPort parses "a.b.c.d:port" (or "a.b.c.d") in decimal without
// leading zeros; ok false sends the caller to netip.
func parseV4HostPort(s string) (ip uint32, ok bool) {
	var part, n, digits int
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			if digits == 1 && n == 0 {
				return 0, false // leading zero
			}
			n = n*10 + int(c-'0')
			digits++
			if n > 255 {
				return 0, false
			}
		case c == '.' || c == ':':
			if digits == 0 || (c == '.') != (part < 3) {
				return 0, false
			}
			ip = ip<<8 | uint32(n)
			part++
			n, digits = 0, 0
			if c == ':' {
				return ip, validPort(s[i+1:])
			}
		default:
			return 0, false
		}
	}
	if part != 3 || digits == 0 {
		return 0, false
	}
	return ip<<8 | uint32(n), true
}

func validPort(s string) bool {
	if s == "" || len(s) > 5 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// foldHeader maps a header name byte the way lenient upstream stacks
// compare names: ASCII case-insensitive, '_' the same as '-'.
func foldHeader(c byte) byte {
	switch {
	case c >= 'A' && c <= 'Z':
		return c + 'a' - 'A'
	case c == '_':
		return '-'
	}
	return c
}

// isLicenseHeader reports whether name is an X-License-* header, in any
// case and with '_' for '-' (some upstream stacks read X_License_Org as
// X-License-Org).
func isLicenseHeader(name string) bool {
	const p = "x-license-"
	if len(name) < len(p) {
		return false
	}
	for i := 0; i < len(p); i++ {
		if foldHeader(name[i]) != p[i] {
			return false
		}
	}
	return true
}

// sameHeader reports whether a and b name the same header for a lenient
// upstream (foldHeader).
func sameHeader(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if foldHeader(a[i]) != foldHeader(b[i]) {
			return false
		}
	}
	return true
}

// StripClientHeaders removes every X-License-* header from h (any case,
// '_' standing for '-'): a client must never be able to send what only the
// gatekeeper may set.
func StripClientHeaders(h http.Header) {
	for k := range h {
		if isLicenseHeader(k) {
			delete(h, k)
		}
	}
}

// minSeqHeader is the consistency token (design §6.5).
const minSeqHeader = "X-License-Min-Seq"

// minSeqOf parses X-License-Min-Seq; a missing or malformed value is 0.
func minSeqOf(h http.Header) uint64 {
	vals := h[minSeqHeader]
	if len(vals) != 1 {
		return 0
	}
	s := vals[0]
	if s == "" || len(s) > 19 {
		return 0
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0
		}
		n = n*10 + uint64(s[i]-'0')
	}
	return n
}
