package jwtorg

import (
	"net/http"
	"strings"

	"github.com/licenseledger/ledger/internal/bearer"
)

// TokenFrom returns the bearer token of a request's headers h, without
// allocating: that of "Authorization: Bearer <token>" (the scheme
// case-insensitive, RFC 9110 §11.1; RFC 6750 §2.1), else, when cookie is
// not empty and there is no Authorization header with the Bearer scheme,
// the value of that cookie. ok is false when there is none, and when the
// request is ambiguous: more than one Authorization header, a Bearer
// header without a token, or the cookie present twice with different
// values. As with Bearer, the token is the Verifier's to check.
func TokenFrom(h http.Header, cookie string) (token string, ok bool) {
	switch auth := h["Authorization"]; len(auth) {
	case 0:
	case 1:
		if t, isBearer := bearer.Parse(auth[0]); isBearer {
			return t, t != ""
		}
	default:
		return "", false
	}
	if cookie == "" {
		return "", false
	}
	return cookieValue(h["Cookie"], cookie)
}

// Bearer returns the token of an Authorization header value with the
// Bearer scheme (case-insensitive) followed by one or more spaces,
// without allocating. ok is false for another scheme or no token. The
// token itself is not checked here (a Verifier refuses one with anything
// but base64url segments), so that reading it costs no pass over it.
func Bearer(authorization string) (token string, ok bool) {
	t, isBearer := bearer.Parse(authorization)
	return t, isBearer && t != ""
}

// cookieValue returns the value of cookie name in the Cookie header
// lines (RFC 6265 §4.2.1, a quoted value unquoted); ok is false when
// there is none, or several with different values.
func cookieValue(lines []string, name string) (string, bool) {
	var found string
	seen := false
	for _, line := range lines {
		for line != "" {
			var pair string
			if i := strings.IndexByte(line, ';'); i >= 0 {
				pair, line = line[:i], line[i+1:]
			} else {
				pair, line = line, ""
			}
			k, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if !ok || strings.TrimSpace(k) != name {
				continue
			}
			val = strings.TrimSpace(val)
			if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
				val = val[1 : len(val)-1]
			}
			if seen && val != found {
				return "", false
			}
			found, seen = val, true
		}
	}
	return found, found != ""
}
