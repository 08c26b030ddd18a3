package webui_test

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/internal/webui"
)

type answer struct {
	code int
	h    http.Header
	body string
}

func do(t *testing.T, srv *httptest.Server, method, path string, hdr ...string) answer {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

// start serves the UI in front of a stand-in API that names itself.
func start(t *testing.T) *httptest.Server {
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTeapot)
		io.WriteString(w, `{"api":"`+r.Method+` `+r.URL.Path+`"}`)
	})
	srv := httptest.NewServer(webui.Wrap(api))
	t.Cleanup(srv.Close)
	return srv
}

func TestPagesAndAssets(t *testing.T) {
	srv := start(t)
	cases := []struct {
		path, ctype, contains string
	}{
		{"/ui/", "text/html; charset=utf-8", `<script type="module" src="/ui/assets/app.js"></script>`},
		{"/ui/license/", "text/html; charset=utf-8", "Licensed Features"},
		{"/ui/orgs/", "text/html; charset=utf-8", "Organizations"},
		{"/ui/audit/", "text/html; charset=utf-8", "Audit history"},
		{"/ui/assets/app.js", "text/javascript; charset=utf-8", "from './common.js';"},
		{"/ui/assets/common.js", "text/javascript; charset=utf-8", "export function errorSentence("},
		{"/ui/assets/license.js", "text/javascript; charset=utf-8", "export async function initLicense("},
		{"/ui/assets/orgs.js", "text/javascript; charset=utf-8", "export async function initOrgs("},
		{"/ui/assets/audit.js", "text/javascript; charset=utf-8", "export function initAudit("},
		{"/ui/assets/style.css", "text/css; charset=utf-8", ".badge-valid"},
		{"/ui/assets/favicon.svg", "image/svg+xml", "<svg"},
	}
	for _, c := range cases {
		a := do(t, srv, "GET", c.path)
		if a.code != 200 || a.h.Get("Content-Type") != c.ctype || !strings.Contains(a.body, c.contains) {
			t.Errorf("GET %s: %d %q, body has %q: %v", c.path, a.code, a.h.Get("Content-Type"), c.contains, strings.Contains(a.body, c.contains))
		}
		if got := a.h.Get("Content-Security-Policy"); got != webui.ContentSecurityPolicy || !strings.Contains(got, "script-src 'self';") {
			t.Errorf("GET %s: CSP %q", c.path, got)
		}
		if a.h.Get("X-Content-Type-Options") != "nosniff" || a.h.Get("X-Frame-Options") != "DENY" || a.h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("GET %s: security headers %v", c.path, a.h)
		}
		if a.h.Get("Cache-Control") != "no-cache" || a.h.Get("ETag") == "" {
			t.Errorf("GET %s: cache headers %q %q", c.path, a.h.Get("Cache-Control"), a.h.Get("ETag"))
		}
		// Revalidation: the same ETag is a 304 with no body.
		if b := do(t, srv, "GET", c.path, "If-None-Match", a.h.Get("ETag")); b.code != 304 || b.body != "" {
			t.Errorf("GET %s If-None-Match: %d %q", c.path, b.code, b.body)
		}
		if h := do(t, srv, "HEAD", c.path); h.code != 200 || h.body != "" || h.h.Get("Content-Type") != c.ctype {
			t.Errorf("HEAD %s: %d", c.path, h.code)
		}
	}
}

func TestRedirectsNotFoundAndAPIPassThrough(t *testing.T) {
	srv := start(t)
	if a := do(t, srv, "GET", "/"); a.code != http.StatusFound || a.h.Get("Location") != "/ui/" {
		t.Errorf("GET /: %d %q", a.code, a.h.Get("Location"))
	}
	if a := do(t, srv, "GET", "/ui"); a.code != http.StatusMovedPermanently || a.h.Get("Location") != "/ui/" {
		t.Errorf("GET /ui: %d %q", a.code, a.h.Get("Location"))
	}
	for _, p := range []string{"/ui/nope", "/ui/assets/missing.js", "/ui/license/extra", "/ui/assets/"} {
		a := do(t, srv, "GET", p)
		if a.code != 404 || a.h.Get("Content-Type") != "text/html; charset=utf-8" || !strings.Contains(a.body, "Page not found") ||
			a.h.Get("Content-Security-Policy") == "" || a.h.Get("Cache-Control") != "no-store" {
			t.Errorf("GET %s: %d %v %q", p, a.code, a.h, a.body)
		}
	}
	if a := do(t, srv, "POST", "/ui/license/"); a.code != 405 || a.h.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /ui/license/: %d %v", a.code, a.h)
	}
	// Everything else, a POST to / included, is the API's.
	for _, c := range []struct{ method, path string }{{"GET", "/api/license"}, {"POST", "/"}, {"GET", "/healthz"}, {"GET", "/uix"}} {
		if a := do(t, srv, c.method, c.path); a.code != http.StatusTeapot || a.body != `{"api":"`+c.method+" "+c.path+`"}` {
			t.Errorf("%s %s: %d %s", c.method, c.path, a.code, a.body)
		}
	}
}

// The CSP forbids inline scripts, inline styles and other origins: the
// embedded files must need none of them, and must fetch nothing from
// elsewhere (the UI works offline).
func TestAssetsNeedNoInlineCodeNorOtherOrigins(t *testing.T) {
	inlineScript := regexp.MustCompile(`(?i)<script(?:\s[^>]*)?>\s*[^<\s]`)
	handlerAttr := regexp.MustCompile(`(?i)\son[a-z]+\s*=`)
	styleAttr := regexp.MustCompile(`(?i)\sstyle\s*=`)
	scriptTag := regexp.MustCompile(`(?i)<script[^>]*>`)
	remote := regexp.MustCompile(`(?i)(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	n := 0
	err := filepath.WalkDir("static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		s := string(b)
		if strings.HasSuffix(p, ".html") {
			for _, re := range []*regexp.Regexp{inlineScript, handlerAttr, styleAttr} {
				if m := re.FindString(s); m != "" {
					t.Errorf("%s: %q is blocked by the CSP", p, m)
				}
			}
			for _, tag := range scriptTag.FindAllString(s, -1) {
				if !strings.Contains(tag, ` src="/ui/assets/`) {
					t.Errorf("%s: %q is not a script of the UI's own", p, tag)
				}
			}
		}
		if strings.HasSuffix(p, ".js") && (strings.Contains(s, "innerHTML") || strings.Contains(s, "eval(") || strings.Contains(s, ".style.")) {
			t.Errorf("%s: uses innerHTML, eval or inline styles", p)
		}
		// The SVG namespace is a name, not a fetch.
		if m := remote.FindString(strings.ReplaceAll(s, "http://www.w3.org/2000/svg", "")); m != "" {
			t.Errorf("%s: refers to another origin: %q", p, m)
		}
		return nil
	})
	if err != nil || n < 5 {
		t.Fatalf("walked %d files: %v", n, err)
	}
}

// Every error code of the API contract (DESIGN §5.2) has its own sentence
// for people in the UI, not the generic fallback.
func TestEveryAPIErrorCodeHasASentence(t *testing.T) {
	js, err := os.ReadFile("static/assets/common.js")
	if err != nil {
		t.Fatal(err)
	}
	codes := []string{
		"license_malformed", "license_signature_invalid", "license_unknown_key", "license_org_mismatch",
		"license_install_mismatch", "license_revoked", "license_already_expired", "license_older_than_current",
		"conflict", "unauthorized", "forbidden", "payload_too_large", "rate_limited", "event_store_unavailable",
		"org_required", "org_invalid", "org_ambiguous", "bad_request", "not_found", "method_not_allowed",
	}
	for _, c := range codes {
		if !strings.Contains(string(js), "case '"+c+"':\n      return ") {
			t.Errorf("no sentence for %s", c)
		}
	}
}
