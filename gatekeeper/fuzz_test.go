package gatekeeper

import (
	"bufio"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/license"
)

// FuzzRequest feeds arbitrary request lines, org headers, hosts and peers
// to gates in each org mode over an install where every well-formed org
// is licensed (an instance-wide license), and checks that nothing panics,
// that anything allowed has a clean path and a valid slug taken from the
// configured source, and that Decide on the parsed request agrees with
// DecideFor on its parts.
func FuzzRequest(f *testing.F) {
	for _, s := range [][5]string{
		{"GET", "/app", "acme", "acme.example.com", "127.0.0.1:1"},
		{"GET", "/a/../b", "acme", "acme.example.com", "127.0.0.1:1"},
		{"GET", "/orgs/acme/x/%2e%2e/y", "acme", "acme.example.com", "[::1]:9"},
		{"POST", "/a%2Fb?x=1", "Acme", "ACME.example.com:80", "10.0.0.1:1"},
		{"GET", "//orgs/acme/", "_instance", "*.example.com", "127.0.0.1:1"},
		{"GET", "/orgs/%61cme/x", "acme\t", "acme.example.com.", "127.0.0.1"},
		{"DELETE", "/api/license", "", "", ""},
	} {
		f.Add(s[0], s[1], s[2], s[3], s[4])
	}
	w := newWorld(f)
	w.enforcement(events.EnforceOn)
	w.upload(license.InstanceOrg, "k1", mod(basePayload("*"), "license_id", idI), events.SlotCurrent)
	src := w.freeze()
	var gates []*Gate
	for _, spec := range []string{"header:X-Org-Slug", "host:{org}.example.com", "path:/orgs/{org}/"} {
		for _, noOrg := range []bool{false, true} {
			o, err := ParseOrgSource(spec)
			if err != nil {
				f.Fatal(err)
			}
			gates = append(gates, newGate(f, src, newClock(t1), Config{OrgSource: o, AllowNoOrg: noOrg}))
		}
	}
	f.Fuzz(func(t *testing.T, method, uri, org, host, peer string) {
		for _, g := range gates {
			hdr := http.Header{"X-Org-Slug": {org}}
			d := g.DecideFor(t.Context(), method, uri, host, hdr, peer)
			if d.Status == 0 || d.Allowed == (d.Code != "") {
				t.Fatalf("%v: incoherent decision %+v", g.orgFrom, d)
			}
			if hdr.Get("X-Org-Slug") != org || len(hdr) != 1 {
				t.Fatalf("DecideFor changed the header: %v", hdr)
			}
			if d.Allowed {
				checkAllowed(t, g, uri, org, host, peer, d)
			}
			if strings.HasPrefix(uri, "/") {
				compareWithServer(t, g, method, uri, org, host, peer, d)
			}
		}
	})
}

// checkAllowed re-checks an allowed request with independent means.
func checkAllowed(t *testing.T, g *Gate, uri, org, host, peer string, d Decision) {
	t.Helper()
	raw, _, _ := strings.Cut(uri, "?")
	if !strings.HasPrefix(raw, "/") || strings.Contains(raw, "\\") {
		t.Fatalf("allowed path %q", raw)
	}
	lower := strings.ToLower(raw)
	if strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c") {
		t.Fatalf("allowed path %q with an encoded slash", raw)
	}
	segs := strings.Split(raw[1:], "/")
	for i, s := range segs {
		if s == "" && i != len(segs)-1 {
			t.Fatalf("allowed path %q with an empty segment", raw)
		}
		dec, err := url.PathUnescape(s)
		if err != nil || dec == "." || dec == ".." {
			t.Fatalf("allowed path %q with segment %q", raw, s)
		}
	}
	if d.Org == license.InstanceOrg {
		if !g.allowNoOrg {
			t.Fatalf("%v: _instance decided without AllowNoOrg", g.orgFrom)
		}
		return
	}
	if !license.ValidSlug(d.Org) {
		t.Fatalf("%v: allowed org %q", g.orgFrom, d.Org)
	}
	switch g.orgFrom.kind {
	case OrgFromHeader:
		if d.Org != org || !g.proxies.trusted(peer) {
			t.Fatalf("header org %q from %q decided as %q", org, peer, d.Org)
		}
	case OrgFromHost:
		h := strings.ToLower(host)
		if !strings.HasPrefix(host, d.Org+".") || !strings.Contains(h, ".example.com") {
			t.Fatalf("host %q decided as %q", host, d.Org)
		}
	case OrgFromPath:
		dec, _ := url.PathUnescape(raw)
		if !strings.HasPrefix(strings.ToLower(dec), "/orgs/"+d.Org) {
			t.Fatalf("path %q decided as %q", raw, d.Org)
		}
	}
}

// compareWithServer parses the request as net/http does and checks that
// Decide agrees with DecideFor.
func compareWithServer(t *testing.T, g *Gate, method, uri, org, host, peer string, want Decision) {
	t.Helper()
	line := method + " " + uri + " HTTP/1.1\r\nHost: " + host + "\r\nX-Org-Slug: " + org + "\r\n\r\n"
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(line)))
	if err != nil || r.Method != method || r.RequestURI != uri || r.Host != host || r.Header.Get("X-Org-Slug") != org ||
		strings.ContainsAny(uri, "#") {
		return // not a request a server would see this way
	}
	r.RemoteAddr = peer
	got := g.Decide(r)
	if got.Allowed != want.Allowed || got.Code != want.Code || got.Org != want.Org {
		t.Fatalf("%v: %s %q host %q org %q: Decide %+v, DecideFor %+v", g.orgFrom, method, uri, host, org, got, want)
	}
}
