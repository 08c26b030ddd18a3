// Package bearer reads the credentials of an Authorization header with the
// Bearer scheme (RFC 6750 §2.1): the scheme matched case-insensitively
// (RFC 9110 §11.1), then one or more spaces, then the token. The ledger
// API and the gatekeeper read the header the same way.
package bearer

import "strings"

// scheme is the authentication scheme, as servers spell it.
const scheme = "Bearer"

// Parse reports whether v, an Authorization header value, has the Bearer
// scheme, and returns its token: "" when the scheme stands alone or is
// followed only by spaces. "Bearerx" is another scheme. The token itself is
// not checked. Parse does not allocate.
func Parse(v string) (token string, isBearer bool) {
	if len(v) < len(scheme) || v[:len(scheme)] != scheme && !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", false
	}
	rest := v[len(scheme):]
	if rest == "" {
		return "", true
	}
	if rest[0] != ' ' {
		return "", false
	}
	for rest != "" && rest[0] == ' ' {
		rest = rest[1:]
	}
	return rest, true
}
