package gatekeeper

import (
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// A request path has one meaning or none. Upstream stacks differ in how
// they read a path: some strip ";" path parameters (Tomcat, Spring,
// Jetty), fold case (IIS, ASP.NET), decode twice, map overlong UTF-8 or
// fullwidth characters to '.' and '/', drop trailing dots and spaces of a
// segment (Windows), or treat '\' as '/'. A path on which any of them
// could disagree with the route the gate decided on is refused
// (path_invalid) before any decision; every other path is decoded once,
// and the proxy forwards that decoded path in Go's canonical escaping, so
// the gate and the upstream see the same thing.

// canonicalPath reports whether raw, a request path in its escaped form
// as sent, has one unambiguous meaning. It refuses:
//
//   - anything not starting with '/';
//   - a malformed escape, an encoded '%' (double encoding), an encoded
//     '/';
//   - ';' (path parameters), '\', '?', '#', control characters and NUL,
//     literal or encoded;
//   - an empty segment ("//"; a trailing slash is fine), a "." or ".."
//     segment in any spelling, a segment ending in '.' or ' ';
//   - bytes that are not valid UTF-8 once decoded (overlong forms
//     included), non-ASCII text that Unicode compatibility normalisation
//     (NFKC) would change (fullwidth '.' and '/', ligatures, the Kelvin
//     sign), a non-ASCII letter whose case folds to an ASCII one (dotless
//     ı, long ſ), and invisible format characters.
//
// ok true means raw decoded once is the path the gate matches, and that
// path escaped again (url.URL with an empty RawPath) is what goes
// upstream.
func canonicalPath(raw string) bool {
	if raw == "" || raw[0] != '/' {
		return false
	}
	var dec []byte // the decoded path, built only when raw has an escape or a non-ASCII byte
	nonASCII := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '%' {
			if i+2 >= len(raw) {
				return false
			}
			hi, lo := unhex(raw[i+1]), unhex(raw[i+2])
			if hi < 0 || lo < 0 {
				return false
			}
			c = byte(hi<<4 | lo)
			if c == '%' || c == '/' || pathRefused[c] {
				return false
			}
			if dec == nil {
				dec = append(make([]byte, 0, len(raw)), raw[:i]...)
			}
			i += 2
		} else if pathRefused[c] {
			return false
		}
		if c >= utf8.RuneSelf {
			nonASCII = true
			if dec == nil {
				dec = append(make([]byte, 0, len(raw)), raw[:i]...)
			}
		}
		if dec != nil {
			dec = append(dec, c)
		}
	}
	path := raw
	if dec != nil {
		path = string(dec)
	}
	if !cleanSegments(path) {
		return false
	}
	return !nonASCII || unambiguousText(path)
}

// pathRefused marks the bytes refused in a path, literal or encoded.
var pathRefused = func() (t [256]bool) {
	for c := 0; c < 0x20; c++ {
		t[c] = true
	}
	t[0x7f], t[';'], t['\\'], t['?'], t['#'] = true, true, true, true, true
	return t
}()

// cleanSegments reports whether path (decoded) has no empty segment but a
// final one, no "." or ".." segment, and no segment ending in '.' or ' '
// (which Windows stacks drop: "premium." is "premium" there).
func cleanSegments(path string) bool {
	start := 1
	for i := 1; i <= len(path); i++ {
		if i < len(path) && path[i] != '/' {
			continue
		}
		seg := path[start:i]
		if seg == "" {
			if i < len(path) {
				return false // "//"
			}
		} else if last := seg[len(seg)-1]; last == '.' || last == ' ' {
			return false // ".", "..", "...", "a.", "a "
		}
		start = i + 1
	}
	return true
}

// unambiguousText reports whether path, holding non-ASCII bytes, is valid
// UTF-8 that no upstream can read as another ASCII path: NFKC-normal (no
// fullwidth '.', '/', no compatibility characters), with no invisible
// format or control characters and no letter whose case folds to ASCII.
func unambiguousText(path string) bool {
	if !utf8.ValidString(path) || !norm.NFKC.IsNormalString(path) {
		return false
	}
	for _, r := range path {
		if r < utf8.RuneSelf {
			continue
		}
		if unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp) || foldsToASCII(r) {
			return false
		}
	}
	return true
}

// foldsToASCII reports whether r's case folding orbit or its upper or
// lower case holds an ASCII letter (ı → I, ſ → S, K → k).
func foldsToASCII(r rune) bool {
	if unicode.ToUpper(r) < utf8.RuneSelf || unicode.ToLower(r) < utf8.RuneSelf {
		return true
	}
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		if f < utf8.RuneSelf {
			return true
		}
	}
	return false
}

// foldCase is s as rules that restrict match it: case folded (upper case,
// then lower, so that ı, I and i are one letter, as case-insensitive
// upstream stacks compare), so that no case variant escapes a rule.
func foldCase(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return strings.ToLower(strings.ToUpper(s))
		}
	}
	return lowerASCII(s)
}

// lowerASCII is s with ASCII letters in lower case (s itself when it has
// none in upper case).
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// upperASCII is lowerASCII's counterpart, for methods.
func upperASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'a' && c <= 'z' {
			return strings.ToUpper(s)
		}
	}
	return s
}

// canonicalURL sets u to its canonical form for the upstream: the path
// decoded once (u.Path) in Go's default escaping, whatever escaping the
// client chose. Call it only for a path the gate accepted.
func canonicalURL(u *url.URL) {
	u.RawPath = ""
}
