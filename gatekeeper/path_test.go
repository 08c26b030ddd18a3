package gatekeeper

import (
	"net/url"
	"testing"

	"github.com/licenseledger/ledger/internal/testenv/lenient"
)

// FuzzCanonicalPath checks the invariant the canonical path exists for:
// a path the gate accepts means the same thing to the most lenient
// upstream as to the gate — sent as the client wrote it (what nginx
// passes on after /authz) and in the canonical form the proxy forwards —
// and the canonical form is itself accepted and decodes to the same path.
func FuzzCanonicalPath(f *testing.F) {
	for _, s := range []string{
		"/premium/x", "/Premium/x", "/premium;/x", "/;/premium/x", "/%2570remium/x", "/%70remium/x",
		"/ui/..;/premium/x", "/ui/%252e%252e/app/data", "/ui/%c0%ae%c0%ae/app/data", "/ui/%ef%bc%8e%ef%bc%8e/app/data",
		"/ORGS/gamma/data", "/orgs;/gamma/data", "/a\\b", "/a%5cb", "/premium./x", "/premium%20/x", "/caf%c3%a9",
		"/premi%c4%b1um", "/%e2%84%aaey", "/a%e2%80%8bb", "/", "/a/", "/a.b/c", "/%7euser", "/a%00", "/..%2f",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if !canonicalPath(raw) {
			return
		}
		dec, err := url.PathUnescape(raw)
		if err != nil {
			t.Fatalf("%q accepted but does not decode: %v", raw, err)
		}
		canon := (&url.URL{Path: dec}).EscapedPath()
		if !canonicalPath(canon) {
			t.Fatalf("%q accepted, its canonical form %q is not", raw, canon)
		}
		if d2, _ := url.PathUnescape(canon); d2 != dec {
			t.Fatalf("%q: canonical form %q decodes to %q, not %q", raw, canon, d2, dec)
		}
		want := foldCase(dec)
		if got := lenient.Normalize(raw); got != want {
			t.Fatalf("%q: the gate matches %q, a lenient upstream routes %q", raw, want, got)
		}
		if got := lenient.Normalize(canon); got != want {
			t.Fatalf("%q forwarded as %q: the gate matches %q, a lenient upstream routes %q", raw, canon, want, got)
		}
	})
}
