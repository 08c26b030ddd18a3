package gatekeeper

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/license"
)

// wire parses a raw request line as a server does, so the URL holds what a
// client really sent.
func wire(t testing.TB, method, uri string, hdr map[string]string, peer string) *http.Request {
	t.Helper()
	var b strings.Builder
	b.WriteString(method + " " + uri + " HTTP/1.1\r\nHost: gate.test\r\n")
	for k, v := range hdr {
		b.WriteString(k + ": " + v + "\r\n")
	}
	b.WriteString("\r\n")
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(b.String())))
	if err != nil {
		t.Fatalf("%s %s: %v", method, uri, err)
	}
	r.RemoteAddr = peer
	return r
}

func TestPathInvalid(t *testing.T) {
	w := decisionWorld(t)
	g := newGate(t, w, newClock(t1), Config{Enforce: boolp(false)})
	bad := []string{
		// Dot segments and empty segments, in any spelling.
		"/a/../b", "/a/./b", "//a", "/a//b", "/a/b//", "/a/..", "/a/.", "/..", "/.", "/a/%2e%2e/b", "/a/%2E./b",
		"/a/.%2e", "/a/%2e/b", "/ui/../api/x", "/api/license/../../admin", "/...", "/%2e%2e%2e", "/ui/..;/premium/x",
		// Encoded separators, double encoding, malformed escapes.
		"/a%2fb", "/a%2Fb", "/a%5cb", "/a%5Cb", "/a\\b", "/a%", "/a%2", "/a%zz", "/%2570remium/x",
		"/ui/%252e%252e/app/data", "/a%25", "/a%3fb", "/a%3Fb", "/a%23b",
		// Path parameters.
		"/premium;/x", "/;/premium/x", "/premium;jsessionid=1/x", "/a%3bb", "/a%3B",
		// Control characters and NUL.
		"/a%00b", "/a%0a", "/a%0D", "/a%09b", "/a%7f", "/a%c2%85",
		// Invalid, overlong and ambiguous UTF-8.
		"/ui/%c0%ae%c0%ae/app/data", "/a%c0%afb", "/a%ff", "/a%e0%80%ae", "/a%c3",
		"/ui/%ef%bc%8e%ef%bc%8e/app/data", "/a%ef%bc%8fb", "/premi%c4%b1um", "/%c5%bfso", "/%e2%84%aaey",
		"/a%e2%80%8bb", "/a%ef%bb%bfb", "/%ef%ac%81le",
		// Trailing dots and spaces (dropped by Windows stacks).
		"/premium./x", "/premium%20/x", "/premium.%20/x", "/a/b.",
	}
	for _, uri := range bad {
		d := g.DecideFor(t.Context(), "GET", uri+"?q=1", "", http.Header{"X-Org-Slug": {"acme"}}, local)
		expect(t, "DecideFor "+uri, d, false, 400, CodePathInvalid)
		if d.Org != "" {
			t.Errorf("%s: org %q on a path denial", uri, d.Org)
		}
		if strings.ContainsAny(uri, "\\") || strings.HasSuffix(uri, "%") || strings.HasSuffix(uri, "%2") || strings.Contains(uri, "%zz") {
			continue // not a request line Go's server accepts
		}
		d = g.Decide(wire(t, "GET", uri, map[string]string{"X-Org-Slug": "acme"}, local))
		expect(t, "Decide "+uri, d, false, 400, CodePathInvalid)
		if got := g.DecideFor(t.Context(), "GET", uri, "", http.Header{"X-Org-Slug": {"acme"}}, local).ForAuthz(); got.Status != 403 {
			t.Errorf("%s: /authz status %d, want 403 (nginx passes only 2xx, 401, 403)", uri, got.Status)
		}
	}
	// Before anything else: a bad org, no org, an allowlisted route.
	expect(t, "path before org", g.DecideFor(t.Context(), "GET", "/a/../b", "", http.Header{"X-Org-Slug": {"Acme"}}, local), false, 400, CodePathInvalid)
	expect(t, "path before no org", g.DecideFor(t.Context(), "GET", "//healthz", "", nil, local), false, 400, CodePathInvalid)
	expect(t, "path before allowlist", g.DecideFor(t.Context(), "GET", "/api/license;x", "", http.Header{"X-Org-Slug": {"acme"}}, local), false, 400, CodePathInvalid)

	good := []string{"/", "/a", "/a/", "/a/b/", "/a.b", "/a/..b", "/.well-known/x", "/a%20b", "/a%2eb", "/a%41",
		"/caf%C3%A9", "/caf%c3%a9/x", "/%E6%97%A5%E6%9C%AC", "/a:b@c$d&e+f,g=h~i", "/a-b_c"}
	for _, uri := range good {
		d := g.DecideFor(t.Context(), "GET", uri, "", http.Header{"X-Org-Slug": {"acme"}}, local)
		expect(t, "DecideFor "+uri, d, true, 200, "")
		d = g.Decide(wire(t, "GET", uri, map[string]string{"X-Org-Slug": "acme"}, local))
		expect(t, "Decide "+uri, d, true, 200, "")
	}
	// Not a path at all.
	expect(t, "OPTIONS *", g.Decide(wire(t, "OPTIONS", "*", map[string]string{"X-Org-Slug": "acme"}, local)), false, 400, CodePathInvalid)
	expect(t, "relative", g.DecideFor(t.Context(), "GET", "a/b", "", http.Header{"X-Org-Slug": {"acme"}}, local), false, 400, CodePathInvalid)
}

// The request that goes upstream carries the path the gate matched, in
// one escaping, whatever spelling the client chose.
func TestPrepareRequestCanonicalPath(t *testing.T) {
	w := decisionWorld(t)
	g := newGate(t, w, newClock(t1), Config{Enforce: boolp(false)})
	for _, c := range []struct{ sent, want string }{
		{"/%70remium/x", "/premium/x"},
		{"/caf%c3%a9", "/caf%C3%A9"},
		{"/a%2eb/%7e", "/a.b/~"},
		{"/plain/path", "/plain/path"},
		{"/sp%20ace", "/sp%20ace"},
	} {
		r := wire(t, "GET", c.sent+"?q=%2F", map[string]string{"X-Org-Slug": "acme"}, local)
		d := g.Decide(r)
		if !d.Allowed {
			t.Fatalf("%s: %+v", c.sent, d)
		}
		g.PrepareRequest(r, d)
		if got := r.URL.EscapedPath(); got != c.want || r.URL.RawQuery != "q=%2F" {
			t.Errorf("%s: upstream gets %q ?%s, want %q ?q=%%2F", c.sent, got, r.URL.RawQuery, c.want)
		}
	}
}

func TestRoutesMatchTheDecodedPath(t *testing.T) {
	w := decisionWorld(t)
	g := newGate(t, w, newClock(tExpired), Config{Features: mustFeatures(t)})
	// %61 is 'a': decoded once, the allowlist matches.
	d := g.Decide(wire(t, "GET", "/%61pi/license", map[string]string{"X-Org-Slug": "acme"}, local))
	if !d.Allowed || !d.Allowlisted {
		t.Fatalf("encoded allowlisted path: %+v", d)
	}
	// ... and only once: %2561 is "%61", not "a".
	d = g.Decide(wire(t, "GET", "/%2561pi/license", map[string]string{"X-Org-Slug": "acme"}, local))
	if d.Allowed {
		t.Fatalf("doubly encoded path allowlisted: %+v", d)
	}
	d = g.DecideFor(t.Context(), "GET", "/%61pi/license", "", http.Header{"X-Org-Slug": {"acme"}}, local)
	if !d.Allowed || !d.Allowlisted {
		t.Fatalf("DecideFor, encoded allowlisted path: %+v", d)
	}
	c := newClock(t1)
	g = newGate(t, w, c, Config{Features: mustFeatures(t)})
	d = g.DecideFor(t.Context(), "GET", "/api/%63hat/x", "", http.Header{"X-Org-Slug": {"nofeat"}}, local)
	expect(t, "encoded feature route", d, false, 403, CodeFeatureNotLicensed)
	// Twice, from the route cache.
	d = g.DecideFor(t.Context(), "GET", "/api/%63hat/x", "", http.Header{"X-Org-Slug": {"nofeat"}}, local)
	expect(t, "encoded feature route, cached", d, false, 403, CodeFeatureNotLicensed)
}

func TestSlugs(t *testing.T) {
	w := decisionWorld(t)
	g := newGate(t, w, newClock(t1), Config{})
	long := strings.Repeat("a", 63)
	for _, org := range []string{"Acme", "ACME", "*", "_instance", "acme ", " acme", "-acme", "acme_x", "acme.x",
		long + "a", "ac%6De", "ａcme", "acme\x00", "é"} {
		d := g.DecideFor(t.Context(), "GET", "/app", "", http.Header{"X-Org-Slug": {org}}, local)
		expect(t, "org "+org, d, false, 403, CodeOrgInvalid)
		if d.Org != "" {
			t.Errorf("org %q echoed", org)
		}
		if validSlug(org) || license.ValidSlug(org) {
			t.Errorf("%q counted as a slug", org)
		}
	}
	for _, org := range []string{"acme", "a", "0", "a-", "9-b-c", long} {
		if !validSlug(org) || !license.ValidSlug(org) {
			t.Errorf("%q not a slug", org)
		}
	}
	// Two values are ambiguous.
	d := g.DecideFor(t.Context(), "GET", "/app", "", http.Header{"X-Org-Slug": {"acme", "acme"}}, local)
	expect(t, "two org headers", d, false, 403, CodeOrgInvalid)
	// Empty: no org.
	d = g.DecideFor(t.Context(), "GET", "/app", "", http.Header{"X-Org-Slug": {""}}, local)
	expect(t, "empty org header", d, false, 403, CodeOrgRequired)
}

func TestOrgRequired(t *testing.T) {
	w := decisionWorld(t)
	g := newGate(t, w, newClock(t1), Config{})
	expect(t, "no org", g.Decide(req(t, "GET", "/app", "", local)), false, 403, CodeOrgRequired)
	expect(t, "no org, allowlisted", g.Decide(req(t, "GET", "/healthz", "", local)), false, 403, CodeOrgRequired)
	// AllowNoOrg: _instance decides (here: enforcement on, no instance license).
	g = newGate(t, w, newClock(t1), Config{AllowNoOrg: true})
	d := g.Decide(req(t, "GET", "/app", "", local))
	expect(t, "no org allowed, no instance license", d, false, 403, CodeLicenseMissing)
	if d.Org != license.InstanceOrg {
		t.Fatalf("org %q", d.Org)
	}
	expect(t, "no org allowed, allowlisted", g.Decide(req(t, "GET", "/healthz", "", local)), true, 200, "")
	w.upload(license.InstanceOrg, "k1", mod(basePayload("*"), "license_id", idI), events.SlotCurrent)
	d = g.Decide(req(t, "GET", "/app", "", local))
	expect(t, "no org allowed, instance license", d, true, 200, "")
	if d.Upstream().Get(HeaderOrg) != license.InstanceOrg {
		t.Fatalf("upstream %v", d.Upstream())
	}
	// A bad org is still a bad org.
	expect(t, "bad org with AllowNoOrg", g.Decide(req(t, "GET", "/app", "*", local)), false, 403, CodeOrgInvalid)
}

func TestTrustedProxies(t *testing.T) {
	w := decisionWorld(t)
	g := newGate(t, w, newClock(t1), Config{})
	for _, peer := range []string{"127.0.0.1:1", "127.9.8.7:65535", "[::1]:8080", "[::ffff:127.0.0.1]:80", "127.0.0.1", "::1"} {
		expect(t, "trusted "+peer, g.Decide(req(t, "GET", "/app", "acme", peer)), true, 200, "")
	}
	for _, peer := range []string{"10.0.0.1:1", "[::2]:80", "128.0.0.1:1", "[fe80::1%eth0]:80", "@", "", "127.0.0.1:x", "0127.0.0.1:1", "garbage"} {
		r := req(t, "GET", "/app", "acme", peer)
		r.Header["X_Org_Slug"] = []string{"acme"}
		d := g.Decide(r)
		expect(t, "untrusted "+peer, d, false, 403, CodeOrgRequired)
		g.PrepareRequest(r, d)
		if len(r.Header) != 0 {
			t.Errorf("untrusted %s: org header kept: %v", peer, r.Header)
		}
	}
	// From an untrusted peer the header is ignored: with AllowNoOrg the
	// instance decides, and the header never reaches the upstream.
	w.upload(license.InstanceOrg, "k1", mod(basePayload("*"), "license_id", idI), events.SlotCurrent)
	g = newGate(t, w, newClock(t1), Config{AllowNoOrg: true})
	var got http.Header
	h := g.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = r.Header.Clone() }))
	h.ServeHTTP(httptest.NewRecorder(), req(t, "GET", "/app", "revoked", "192.0.2.1:5"))
	if got == nil || got.Get("X-Org-Slug") != "" || got.Get(HeaderOrg) != license.InstanceOrg {
		t.Fatalf("untrusted header: upstream saw %v", got)
	}
	// Trusted: kept, its '_' variant removed.
	r := req(t, "GET", "/app", "acme", local)
	r.Header["X_Org_Slug"] = []string{"revoked"}
	h.ServeHTTP(httptest.NewRecorder(), r)
	//lint:ignore SA1008 the '_' variant, as a client may send it, must be gone
	if got.Get("X-Org-Slug") != "acme" || len(got["X_Org_Slug"]) != 0 || got.Get(HeaderOrg) != "acme" {
		t.Fatalf("trusted header: upstream saw %v", got)
	}
	// A configured list; an empty one trusts nobody.
	nets, err := ParseTrustedProxies([]string{" 10.0.0.0/8", "", "192.0.2.7", "2001:db8::/32", "::ffff:198.51.100.0/120"})
	if err != nil {
		t.Fatal(err)
	}
	g = newGate(t, w, newClock(t1), Config{TrustedProxies: nets})
	for peer, ok := range map[string]bool{"10.1.2.3:4": true, "192.0.2.7:1": true, "192.0.2.8:1": false,
		"[2001:db8::5]:1": true, "127.0.0.1:1": false, "198.51.100.9:1": true, "[::ffff:198.51.100.10]:1": true} {
		if got := g.proxies.Trusted(peer); got != ok {
			t.Errorf("%v: trusted %v, want %v", peer, got, ok)
		}
	}
	g = newGate(t, w, newClock(t1), Config{TrustedProxies: []netip.Prefix{}})
	if g.proxies.Trusted(local) {
		t.Fatal("an empty list trusts loopback")
	}
	if _, err := ParseTrustedProxies([]string{"10.0.0.0/33"}); err == nil {
		t.Fatal("bad CIDR accepted")
	}
	if _, err := ParseTrustedProxies([]string{"localhost"}); err == nil {
		t.Fatal("host name accepted")
	}
}

func TestParseV4(t *testing.T) {
	for s, want := range map[string]bool{"1.2.3.4:5": true, "1.2.3.4": true, "255.255.255.255:65535": true,
		"256.1.1.1:1": false, "1.2.3:4": false, "1.2.3.4.5:6": false, "1.2.3.4:": false, "01.2.3.4:1": false,
		"1..3.4:5": false, "[::1]:1": false, "1.2.3.4:123456": false, "0.0.0.0:0": true} {
		ip, ok := parseV4HostPort(s)
		if ok != want {
			t.Errorf("%q: ok %v", s, ok)
			continue
		}
		if ok {
			host, _, _ := strings.Cut(s, ":")
			a := netip.MustParseAddr(host).As4()
			if ip != uint32(a[0])<<24|uint32(a[1])<<16|uint32(a[2])<<8|uint32(a[3]) {
				t.Errorf("%q: %x", s, ip)
			}
		}
	}
}

func TestOrgFromHost(t *testing.T) {
	w := decisionWorld(t)
	src, err := ParseOrgSource("host:{org}.Example.com")
	if err != nil {
		t.Fatal(err)
	}
	if src.String() != "host:{org}.example.com" || src.Kind() != OrgFromHost {
		t.Fatalf("source %v", src)
	}
	g := newGate(t, w, newClock(t1), Config{OrgSource: src})
	for host, want := range map[string]string{
		"acme.example.com":       "",
		"acme.example.com:8443":  "",
		"acme.EXAMPLE.com":       "",
		"acme.example.com.":      "",
		"ACME.example.com":       CodeOrgInvalid,
		"Acme.example.com":       CodeOrgInvalid,
		"*.example.com":          CodeOrgInvalid,
		"a.b.example.com":        CodeOrgInvalid,
		"_instance.example.com":  CodeOrgInvalid,
		"example.com":            CodeOrgRequired,
		".example.com":           CodeOrgRequired,
		"acme.example.org":       CodeOrgRequired,
		"acmeexample.com":        CodeOrgRequired,
		"":                       CodeOrgRequired,
		"[::1]:80":               CodeOrgRequired,
		"nobody.example.com":     CodeLicenseMissing,
		"revoked.example.com:80": CodeLicenseInvalid,
	} {
		r := req(t, "GET", "/app", "", "203.0.113.9:1") // the header is not used: the peer does not matter
		r.Host = host
		d := g.Decide(r)
		if d.Code != want || d.Allowed != (want == "") {
			t.Errorf("host %q: %+v, want code %q", host, d, want)
		}
		if want == "" && d.Org != "acme" {
			t.Errorf("host %q: org %q", host, d.Org)
		}
	}
	// A header is not a source in host mode.
	r := req(t, "GET", "/app", "acme", local)
	r.Host = "example.com"
	expect(t, "header in host mode", g.Decide(r), false, 403, CodeOrgRequired)
}

func TestOrgFromPath(t *testing.T) {
	w := decisionWorld(t)
	src, err := ParseOrgSource("path:/orgs/{org}/")
	if err != nil {
		t.Fatal(err)
	}
	for _, noOrg := range []bool{false, true} {
		g := newGate(t, w, newClock(t1), Config{OrgSource: src, AllowNoOrg: noOrg, Allow: []string{"GET /orgs/{org}/renew"}})
		outside := CodeOrgRequired // a path outside the prefix
		if noOrg {
			outside = CodeLicenseMissing // decided on _instance, which holds no license here
		}
		for uri, want := range map[string]string{
			"/orgs/acme/projects":      "",
			"/orgs/acme":               "",
			"/orgs/acme/":              "",
			"/orgs/Acme/projects":      CodeOrgInvalid,
			"/orgs/%61cme/projects":    "", // decoded once; the upstream gets /orgs/acme/projects
			"/orgs/*/x":                CodeOrgInvalid,
			"/orgs/_instance/x":        CodeOrgInvalid,
			"/orgs/":                   CodeOrgRequired, // the prefix without an org: never _instance
			"/orgs":                    CodeOrgRequired,
			"/ORGS/":                   CodeOrgRequired,
			"/ORGS/acme/x":             "",
			"/ORGS/revoked/x":          CodeLicenseInvalid, // the upstream serves revoked here
			"/Orgs/revoked/data":       CodeLicenseInvalid,
			"/ORGS/Revoked/x":          CodeOrgInvalid,
			"/orgs;/revoked/data":      CodePathInvalid,
			"/orgs%3b/revoked/data":    CodePathInvalid,
			"/orgsx/revoked":           outside,
			"/app":                     outside,
			"/orgs//acme":              CodePathInvalid,
			"/orgs/acme/../revoked/x":  CodePathInvalid,
			"/orgs/nobody/x":           CodeLicenseMissing,
			"/orgs/revoked/x":          CodeLicenseInvalid,
			"/orgs/revoked/renew":      "",                 // allowlisted, the route is the full path
			"/orgs/revoked/Renew":      CodeLicenseInvalid, // the allowlist matches exactly
			"/orgs/acme/x?org=revoked": "",
		} {
			d := g.Decide(wire(t, "GET", uri, map[string]string{"X-Org-Slug": "revoked"}, local))
			if d.Code != want || d.Allowed != (want == "") {
				t.Errorf("allow-no-org %v: %s: %+v, want code %q", noOrg, uri, d, want)
			}
			d2 := g.DecideFor(t.Context(), "GET", uri, "", nil, "")
			if d2.Code != d.Code || d2.Org != d.Org {
				t.Errorf("%s: DecideFor %+v, Decide %+v", uri, d2, d)
			}
		}
		d := g.Decide(wire(t, "POST", "/orgs/revoked/renew", nil, local))
		expect(t, "POST on a GET entry", d, false, 403, CodeLicenseInvalid)
	}
}

func TestParseOrgSource(t *testing.T) {
	for in, want := range map[string]string{
		"header:X-Org-Slug":        "header:X-Org-Slug",
		"header:x-tenant":          "header:X-Tenant",
		"host:{org}.example.com":   "host:{org}.example.com",
		"host:app-{org}.Corp.io":   "host:app-{org}.corp.io",
		"path:/orgs/{org}/":        "path:/orgs/{org}/",
		"path:/orgs/{org}":         "path:/orgs/{org}/",
		"path:/{org}/":             "path:/{org}/",
		"path:/t/orgs/{org}/":      "path:/t/orgs/{org}/",
		"header:X_Org_Slug":        "header:X_org_slug",
		"host:{org}":               "host:{org}",
		"host:{org}.a-b.example.c": "host:{org}.a-b.example.c",
	} {
		src, err := ParseOrgSource(in)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if src.String() != want {
			t.Errorf("%q: %q, want %q", in, src.String(), want)
		}
	}
	for _, in := range []string{"", "header", "header:", "header:X Org", "header:X-License-Org", "header:x_license_org",
		"cookie:org", "host:example.com", "host:{org}.{org}.com", "host:{org}.example.com:8443", "host:{org}/x",
		"path:orgs/{org}/", "path:/orgs/{org}/x", "path:/orgs-{org}/", "path:/orgs/{org}{x}/", "path://{org}/",
		"path:/../{org}/", "path:/a%2f/{org}/"} {
		if src, err := ParseOrgSource(in); err == nil {
			t.Errorf("%q accepted as %v", in, src)
		}
	}
	var zero OrgSource
	if zero.String() != DefaultOrgSource || zero.Kind() != OrgFromHeader {
		t.Fatalf("zero value %v", zero)
	}
}

func TestParseEnforce(t *testing.T) {
	for in, want := range map[string]string{"": "nil", "0": "false", "1": "true"} {
		v, err := ParseEnforce(in)
		got := "nil"
		if v != nil {
			got = map[bool]string{true: "true", false: "false"}[*v]
		}
		if err != nil || got != want {
			t.Errorf("%q: %v %v", in, got, err)
		}
	}
	for _, in := range []string{"true", "on", "yes", " 1", "2", "false"} {
		if _, err := ParseEnforce(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestStripClientHeaders(t *testing.T) {
	h := http.Header{
		"X-License-Org": {"a"}, "x-license-status": {"b"}, "X_LICENSE_TIER": {"c"}, "X-License-": {"d"},
		"X-Licenses": {"keep"}, "X-License": {"keep"}, "Authorization": {"keep"}, "X-Org-Slug": {"keep"},
	}
	StripClientHeaders(h)
	if len(h) != 4 || h.Get("X-Licenses") != "keep" || h.Get("X-License") != "keep" {
		t.Fatalf("after strip: %v", h)
	}
}

// escapedPath is url.URL.EscapedPath, faster.
func TestEscapedPathMatchesNetURL(t *testing.T) {
	for _, p := range []string{"/", "/api/projects/42", "/a b", "/ü", "/a%2fb", "/a?b", "/a#b", "/x;y=1,2@h:p$&+", "/~user/._-",
		"/a\\b", "/\"q\"", "/[x]", "/{x}", "/!*'()", "", "*"} {
		u := &url.URL{Path: p}
		if got, want := escapedPath(u), u.EscapedPath(); got != want {
			t.Errorf("escapedPath(%q) = %q, want %q", p, got, want)
		}
	}
	u, _ := url.Parse("/a%2Fb/c")
	if got, want := escapedPath(u), u.EscapedPath(); got != want {
		t.Errorf("with RawPath: %q, want %q", got, want)
	}
}

// plainPath agrees with escapedPath and canonicalPath whenever it answers.
func TestPlainPathAgrees(t *testing.T) {
	for _, p := range []string{"/", "/api/projects/42", "//x", "/a//b", "/a/", "/a/./b", "/a/../b", "/a.b", "/a%2fb", "/a b", "/ü",
		"/x;y=1,2@h:p$&+", "/~user/_-", "/a\\b", "", "*", "x"} {
		u := &url.URL{Path: p}
		if raw, ok := plainPath(u); ok && (raw != escapedPath(u) || !canonicalPath(raw)) {
			t.Errorf("plainPath(%q) = %q, true; escaped %q, valid %v", p, raw, escapedPath(u), canonicalPath(escapedPath(u)))
		}
	}
	if _, ok := plainPath(&url.URL{Path: "/api/projects/42"}); !ok {
		t.Error("the common case is not taken")
	}
}
