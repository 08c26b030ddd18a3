package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/testenv/lenient"
	"github.com/licenseledger/ledger/internal/testenv/proxies"
)

// The routes of the test upstreams. "reports" needs the reports feature
// (acme lacks it); "ui", "license" and "healthz" are allowlisted for
// some methods; everything else needs a valid license.
var diffRoutes = []lenient.Route{
	{Prefix: "/api/license", Name: "license"},
	{Prefix: "/ui/", Name: "ui"},
	{Prefix: "/healthz", Name: "healthz"},
	{Prefix: "/reports/", Name: "reports"},
	{Prefix: "/app/", Name: "app"},
}

// permitted says whether org may be served route with method: what the
// gate must hold to, whatever the upstream.
func permitted(org, method, route string) bool {
	switch {
	case route == "redirect":
		return true // the upstream serves nothing but a redirect
	case route == "license" && (method == "GET" || method == "POST"),
		route == "ui" && (method == "GET" || method == "HEAD"),
		route == "healthz" && (method == "GET" || method == "HEAD"):
		return true // allowlisted
	case org == "acme":
		return route != "reports"
	}
	return false // revoked: nothing but the allowlist
}

// diffCorpus is the differential corpus: every spelling class of the
// issue — case, path parameters, single, double and triple encoding,
// trailing dots and spaces, fullwidth, overlong and invisible characters,
// empty segments, encoded and literal separators, control characters —
// applied to a feature route and a licensed route, and every dot-segment
// spelling with every separator walking out of each allowlisted prefix.
func diffCorpus() []string {
	seen := map[string]bool{}
	var out []string
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, t := range []struct{ seg, rest string }{{"reports", "q3"}, {"app", "data"}} {
		s, r := t.seg, t.rest
		up := strings.ToUpper(s)
		for _, p := range []string{
			"/" + s + "/" + r, "/" + strings.ToUpper(s[:1]) + s[1:] + "/" + r, "/" + up + "/" + r, "/" + up + "/" + strings.ToUpper(r),
			"/" + s + ";/" + r, "/" + s + ";x=1/" + r, "/;/" + s + "/" + r, "/" + s + "/" + r + ";", "/" + s + "%3b/" + r,
			"/" + s + "%3B/" + r, "/" + s + ";jsessionid=0/" + r, "/" + s + "/;/" + r,
			"/" + s + "./" + r, "/" + s + "%2e/" + r, "/" + s + "%20/" + r, "/" + s + ".%20/" + r, "/" + s + "../" + r,
			"/" + s + "/" + r + ".", "/" + s + "/" + r + "%20",
			"//" + s + "/" + r, "/" + s + "//" + r, "/" + s + "%2f" + r, "/" + s + "%2F" + r, "/" + s + "%5c" + r,
			"/" + s + "\\" + r, "\\" + s + "\\" + r, "/" + s + "%252f" + r, "/" + s + "%c0%af" + r, "/" + s + "%ef%bc%8f" + r,
			"/" + s + "%00/" + r, "/" + s + "%09/" + r, "/" + s + "%0a/" + r, "/" + s + "%0d/" + r, "/" + s + "%7f/" + r,
			"/" + s[:2] + "%e2%80%8b" + s[2:] + "/" + r, "/" + s[:2] + "%c2%ad" + s[2:] + "/" + r, "/%ef%bb%bf" + s + "/" + r,
			"/./" + s + "/" + r, "/" + s + "/./" + r, "/x/../" + s + "/" + r, "/x/%2e%2e/" + s + "/" + r,
		} {
			add(p)
		}
		// Each letter of the segment escaped once (both hex cases), twice
		// and three times; and in its fullwidth form.
		for i := range len(s) {
			c := s[i]
			add(fmt.Sprintf("/%s%%%02x%s/%s", s[:i], c, s[i+1:], r))
			add(fmt.Sprintf("/%s%%%02X%s/%s", s[:i], c, s[i+1:], r))
			add(fmt.Sprintf("/%s%%25%02x%s/%s", s[:i], c, s[i+1:], r))
			add(fmt.Sprintf("/%s%%2525%02x%s/%s", s[:i], c, s[i+1:], r))
			fw := string(rune(0xFF41 + int(c-'a'))) // fullwidth small letter
			add("/" + s[:i] + escapeAll(fw) + s[i+1:] + "/" + r)
		}
		// Letters whose case folds to ASCII: ſ (s), ı (i), K (k).
		add("/" + strings.ReplaceAll(s, "s", "%c5%bf") + "/" + r)
		add("/" + strings.ReplaceAll(s, "a", "%c3%a0") + "/" + r) // à: a different letter, served as itself
	}
	dots := []string{"..", "..;", ".%2e", "%2e.", "%2e%2e", "%2E%2E", "%252e%252e", "%25252e%25252e", "%c0%ae%c0%ae",
		"%e0%80%ae%e0%80%ae", "%ef%bc%8e%ef%bc%8e", "...", "..%20", "..%00", "..%3b", ". .", ".. ", ".%c0%ae"}
	seps := []string{"/", "%2f", "%2F", "%5c", "\\", "%252f", "%c0%af", "%ef%bc%8f", ";/"}
	for _, prefix := range []string{"/ui/", "/api/license/", "/healthz/"} {
		for _, d := range dots {
			for _, sep := range seps {
				add(prefix + d + sep + "reports/q3")
			}
		}
		add(prefix + "..")
		add(prefix + "%2e%2e")
	}
	for _, p := range []string{"/api/license", "/API/license", "/api/License", "/api/license;", "/api/license/", "/api/%6cicense",
		"/ui/", "/ui/x", "/UI/x", "/Ui/admin/delete-all", "/ui/admin/delete-all", "/ui;/admin", "/ui%2fadmin", "/healthz",
		"/HEALTHZ", "/healthz;", "/healthz.", "/healthz%20", "/ui/%2e", "/ui/.", "/ui//x", "/", "/app", "/reports"} {
		add(p)
	}
	return out
}

// escapeAll percent-encodes every byte of s.
func escapeAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, "%%%02x", s[i])
	}
	return b.String()
}

// rawAnswer is one request's answer as the client saw it.
type rawAnswer struct {
	code int
	err  string // X-License-Error
	up   *lenient.Answer
}

// sendRaw sends a request line exactly as written (no client library
// re-escaping it) and reads the answer.
func sendRaw(t *testing.T, addr, method, target string, hdr ...string) rawAnswer {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n", method, target)
	for i := 0; i+1 < len(hdr); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", hdr[i], hdr[i+1])
	}
	if method == "POST" {
		b.WriteString("Content-Length: 0\r\n")
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		return rawAnswer{code: -1} // the front end closed without answering: nothing was served
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	a := rawAnswer{code: resp.StatusCode, err: resp.Header.Get("X-License-Error")}
	var up lenient.Answer
	if json.Unmarshal(body, &up) == nil && up.Route != "" {
		a.up = &up
	}
	return a
}

// Whatever the gate forwards routes, on every upstream, to a route the
// gate's decision covers: through the reverse proxy and through real
// nginx asking /authz, in front of Go's ServeMux and of an upstream with
// every leniency (lenient.Normalize).
func TestDifferentialPaths(t *testing.T) {
	corpus := diffCorpus()
	if len(corpus) < 300 {
		t.Fatalf("the corpus has %d paths, want at least 300", len(corpus))
	}
	strict := httptest.NewServer(lenient.Strict(diffRoutes))
	t.Cleanup(strict.Close)
	loose := httptest.NewServer(lenient.Handler(diffRoutes, ""))
	t.Cleanup(loose.Close)
	features := filepath.Join(t.TempDir(), "features")
	if err := os.WriteFile(features, []byte("/reports/{rest...} reports\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, nil)
	w.upload("acme", nil) // valid, without the reports feature
	w.upload("revoked", nil)
	if _, err := w.svc.Invalidate(context.Background(), "revoked", op, "0193a5b0-7e1a-7c3d-8f00-"+"00000"+hexOrg("revoked"), "test"); err != nil {
		t.Fatal(err)
	}
	w.syncHead()
	fronts := map[string]string{}
	session := platformSession(t)
	for name, up := range map[string]*httptest.Server{"strict": strict, "lenient": loose} {
		a := w.start(func(c *gatekeeperCmd) { c.Upstream, c.Features = up.URL, features })
		fronts["proxy→"+name] = a.proxy
		fronts["nginx→"+name] = strings.TrimPrefix(proxies.Nginx(t, proxies.Setup{File: proxies.NginxAuthLayer,
			Authz: a.authz, Upstream: up.Listener.Addr().String(), Session: session}), "http://")
	}
	w.syncHead()

	forwarded, refused := 0, 0
	for front, addr := range fronts {
		fwd := 0
		for _, path := range corpus {
			methods := []string{"GET"}
			if strings.HasPrefix(strings.ToLower(path), "/ui") || strings.HasPrefix(strings.ToLower(path), "/api") {
				methods = append(methods, "POST")
			}
			for _, method := range methods {
				for _, org := range []string{"acme", "revoked"} {
					// The proxy takes the org from the trusted loopback
					// header; nginx from the platform's session (and
					// never from the header, which claims acme).
					a := sendRaw(t, addr, method, path, "X-Org-Slug", org)
					if strings.HasPrefix(front, "nginx") {
						a = sendRaw(t, addr, method, path, "Cookie", "session="+org, "X-Org-Slug", "acme")
					}
					if a.up == nil {
						if a.code == http.StatusOK {
							t.Errorf("%s: %s %s as %s: 200 without the upstream's answer", front, method, path, org)
						}
						refused++
						continue
					}
					forwarded++
					fwd++
					if !permitted(org, method, a.up.Route) {
						t.Errorf("%s: %s %s as %s reached route %q (upstream saw %q)", front, method, path, org, a.up.Route, a.up.Path)
					}
					if a.up.Route != "redirect" && a.up.Headers["X-License-Org"] != org {
						t.Errorf("%s: %s %s as %s: upstream X-License-Org %q", front, method, path, org, a.up.Headers["X-License-Org"])
					}
				}
			}
		}
		if fwd == 0 {
			t.Errorf("%s forwarded nothing: the corpus does not exercise it", front)
		}
	}
	t.Logf("%d paths through %d front ends: %d forwarded, %d refused", len(corpus), len(fronts), forwarded, refused)
	if forwarded == 0 || refused == 0 {
		t.Fatalf("forwarded %d, refused %d: the corpus does not exercise both sides", forwarded, refused)
	}
}

// In path mode the org is read from the path: whatever the gate forwards,
// the lenient upstream reads the org the gate decided on, and a spelling
// of the org prefix is never decided on the instance-wide license.
func TestDifferentialPathMode(t *testing.T) {
	loose := httptest.NewServer(lenient.Handler(diffRoutes, "/orgs/"))
	t.Cleanup(loose.Close)
	w := newWorld(t, nil)
	w.upload("_instance", nil) // every request without an org is licensed
	w.upload("acme", nil)
	w.upload("revoked", nil)
	if _, err := w.svc.Invalidate(context.Background(), "revoked", op, "0193a5b0-7e1a-7c3d-8f00-"+"00000"+hexOrg("revoked"), "test"); err != nil {
		t.Fatal(err)
	}
	w.syncHead()
	a := w.start(func(c *gatekeeperCmd) {
		c.Upstream, c.OrgFrom, c.AllowNoOrg = loose.URL, "path:/orgs/{org}/", true
	})
	w.syncHead()
	var corpus []string
	for _, pre := range []string{"/orgs/", "/ORGS/", "/Orgs/", "/orgs;/", "/orgs%3b/", "/orgs./", "/orgs%20/", "//orgs/", "/%6frgs/",
		"/%256frgs/", "/or%ef%bd%87s/", "/x/../orgs/", "/orgs/x/../", "/ORGS;x/", "/orgs\\", "/orgs%2f", "/.%2e/orgs/"} {
		for _, org := range []string{"revoked", "Revoked", "revoked.", "revoked;", "rev%6fked", "%72evoked", "acme/../revoked", "acme", "%61cme"} {
			corpus = append(corpus, pre+org+"/data")
		}
		corpus = append(corpus, pre, strings.TrimSuffix(pre, "/"))
	}
	corpus = append(corpus, "/app/data", "/other")
	forwarded := 0
	for _, p := range corpus {
		r := sendRaw(t, a.proxy, "GET", p)
		if r.up == nil {
			continue
		}
		forwarded++
		got := r.up.Headers["X-License-Org"]
		want := r.up.Org
		if want == "" {
			want = "_instance"
		}
		if got != want {
			t.Errorf("GET %s: decided for %q, the upstream serves %q (it saw %q)", p, got, want, r.up.Path)
		}
		if r.up.Org == "revoked" {
			t.Errorf("GET %s: the revoked org served", p)
		}
	}
	if forwarded == 0 {
		t.Fatal("nothing forwarded: the corpus does not exercise the allowed side")
	}
}
