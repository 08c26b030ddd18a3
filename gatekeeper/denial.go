package gatekeeper

import (
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/licenseledger/ledger/license"
)

// DefaultRenewalURL is the renewal link of the HTML denial page unless
// configured: the ledger's own license page for the org.
const DefaultRenewalURL = "/ui/license/?org={org}"

// renewalURL validates a Config.RenewalURL ("" is the default): a path on
// the same site or an absolute http(s) URL, so that the link can never be
// a script.
func renewalURL(tpl string) (string, error) {
	if tpl == "" {
		return DefaultRenewalURL, nil
	}
	u, err := url.Parse(strings.ReplaceAll(tpl, "{org}", "org"))
	if err != nil {
		return "", fmt.Errorf("renewal URL %q: %v", tpl, err)
	}
	switch {
	case u.Scheme == "" && u.Host == "" && strings.HasPrefix(u.Path, "/"):
	case (u.Scheme == "http" || u.Scheme == "https") && u.Host != "":
	default:
		return "", fmt.Errorf("renewal URL %q: want a path (/…) or an http(s) URL", tpl)
	}
	return tpl, nil
}

// CheckRenewalURL reports whether s is usable as Config.RenewalURL: ""
// (the default), a path on the same site or an absolute http(s) URL, in
// which {org} stands for the org.
func CheckRenewalURL(s string) error {
	_, err := renewalURL(s)
	return err
}

// Refusal is a denial a front end makes itself, before any decision (the
// /authz endpoint's CodeAuthzForbidden and CodeAuthzHeadersMismatch):
// code, the given status, and message ("" for the code's own). It is
// counted with the Gate's decisions (Stats, Collector) under code, which
// must be one of the denial codes.
func (g *Gate) Refusal(code string, status int, message string) Decision {
	d := Decision{Status: status, Code: code, Message: message}
	if message == "" {
		d.Message = messageOf(code)
	}
	g.stats.count(&d)
	return d
}

// WriteDenial answers the denied request r with d in the form r asks
// for: a small self-contained HTML page when r's Accept prefers
// text/html (PrefersHTML: a browser), else the JSON body of the package's
// WriteDenial. The status, X-License-Error and X-License-Reason are the
// same in both. The page names the org, the license status in words, the
// expiry when known and, for a license denial, a link to renew
// (Config.RenewalURL); everything on it is HTML-escaped, it loads nothing,
// and its Content-Security-Policy forbids everything but inline style.
//
// On /authz, r is the auth request: proxies pass the original request's
// Accept in it, and those that relay the answer's body to the client
// (Caddy, Traefik, Envoy) show the page.
func (g *Gate) WriteDenial(w http.ResponseWriter, r *http.Request, d Decision) {
	if r != nil && r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		// The body of a denied request is never read: answer at once and
		// close, rather than let net/http drain the body before it sends
		// the answer (a slow body would hold the denial back until the
		// read timeout). HTTP/2 ignores the header and needs none of this.
		w.Header().Set("Connection", "close")
	}
	if r == nil || !PrefersHTML(r.Header.Get("Accept")) {
		WriteDenial(w, d)
		return
	}
	status := denialHeaders(w.Header(), d)
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.WriteHeader(status)
	_ = denialPage.Execute(w, g.pageOf(d))
}

// denialHeaders sets the headers every denial carries and returns its
// status.
func denialHeaders(h http.Header, d Decision) int {
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set(HeaderError, d.Code)
	if d.Code == CodeOrgUnauthenticated {
		// RFC 6750 §3: no token, or one that does not verify.
		if d.badToken {
			h.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		} else {
			h.Set("WWW-Authenticate", "Bearer")
		}
	}
	if d.Reason != "" {
		// For proxies that cannot read an auth answer's body (nginx).
		h.Set(HeaderReason, string(d.Reason))
	}
	if d.Status == 0 || d.Status == http.StatusOK {
		return http.StatusForbidden
	}
	return d.Status
}

// PrefersHTML reports whether an Accept header value asks for HTML before
// JSON: text/html is listed with a quality above zero and above that of
// application/json, as a browser's navigation does. No Accept, "*/*" or
// application/json (an API client) is false.
func PrefersHTML(accept string) bool {
	if !strings.Contains(strings.ToLower(accept), "text/html") {
		return false
	}
	html, json := 0.0, 0.0
	for _, r := range strings.Split(accept, ",") {
		typ, params, _ := strings.Cut(r, ";")
		q := 1.0
		for _, p := range strings.Split(params, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
			if strings.EqualFold(k, "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					q = f
				}
			}
		}
		switch strings.ToLower(strings.TrimSpace(typ)) {
		case "text/html":
			html = max(html, q)
		case "application/json":
			json = max(json, q)
		}
	}
	return html > 0 && html > json
}

// page is what the HTML denial shows.
type page struct {
	Title, Message, Org, Status, Code string
	Expires, ExpiresISO               string
	Past                              bool
	Renew                             string // the renewal link, "" for none
}

func (g *Gate) pageOf(d Decision) page {
	p := page{Title: titleOf(d.Code), Message: sentence(d.Message), Org: d.Org, Code: d.Code, Status: statusWords(d)}
	if !d.Expires.IsZero() {
		t := d.Expires.UTC()
		p.Expires, p.ExpiresISO = t.Format("2 January 2006, 15:04 UTC"), t.Format(time.RFC3339)
		p.Past = d.LicenseStatus == license.StatusExpired || d.LicenseStatus == license.StatusGrace
	}
	switch d.Code {
	case CodeLicenseMissing, CodeLicenseExpired, CodeLicenseInvalid, CodeFeatureNotLicensed, CodeUsersLimitReached:
		if d.Org != "" {
			p.Renew = strings.ReplaceAll(g.renewal, "{org}", url.QueryEscape(d.Org))
		}
	}
	return p
}

// sentence capitalises a message's first letter (messages are lower case,
// for logs and JSON).
func sentence(m string) string {
	if m != "" && m[0] >= 'a' && m[0] <= 'z' {
		return string(m[0]-'a'+'A') + m[1:]
	}
	return m
}

// titleOf is a denial's heading.
func titleOf(code string) string {
	switch code {
	case CodeLicenseMissing:
		return "No license"
	case CodeLicenseExpired:
		return "License expired"
	case CodeLicenseInvalid:
		return "License not valid"
	case CodeFeatureNotLicensed:
		return "Feature not licensed"
	case CodeUsersLimitReached:
		return "All seats in use"
	case CodeStateUnavailable:
		return "License check unavailable"
	case CodeOrgRequired, CodeOrgInvalid, CodeOrgUnauthenticated:
		return "Organization not recognised"
	}
	return "Access denied"
}

// statusWords says the license status of d ("" when unknown).
func statusWords(d Decision) string {
	switch d.LicenseStatus {
	case license.StatusValid:
		return "valid"
	case license.StatusGrace:
		return "expired, in its grace period"
	case license.StatusExpired:
		return "expired"
	case license.StatusMissing:
		return "no license"
	case license.StatusInvalid:
		if d.Reason != "" {
			return "not valid (" + strings.ReplaceAll(string(d.Reason), "_", " ") + ")"
		}
		return "not valid"
	}
	return string(d.LicenseStatus)
}

var denialPage = template.Must(template.New("denial").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{.Title}}</title>
<style>
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1f2328;background:#f6f8fa;margin:0}
main{max-width:34rem;margin:10vh auto;padding:2rem;background:#fff;border:1px solid #d0d7de;border-radius:8px}
h1{font-size:1.4rem;margin:0 0 .5rem}
dl{display:grid;grid-template-columns:max-content auto;gap:.25rem 1rem;margin:1.25rem 0}
dt{color:#59636e}dd{margin:0}
a.renew{display:inline-block;padding:.5rem 1rem;background:#1f6feb;color:#fff;border-radius:6px;text-decoration:none}
.code{color:#59636e;font-size:.85rem;margin-top:1.5rem}
</style>
</head>
<body>
<main>
<h1>{{.Title}}</h1>
<p>{{.Message}}.</p>
<dl>
{{- if .Org}}
<dt>Organization</dt><dd>{{.Org}}</dd>
{{- end}}
{{- if .Status}}
<dt>License</dt><dd>{{.Status}}</dd>
{{- end}}
{{- if .Expires}}
<dt>{{if .Past}}Expired{{else}}Expires{{end}}</dt><dd><time datetime="{{.ExpiresISO}}">{{.Expires}}</time></dd>
{{- end}}
</dl>
{{- if .Renew}}
<p><a class="renew" href="{{.Renew}}">Renew the license</a></p>
{{- end}}
<p class="code">Error code: {{.Code}}</p>
</main>
</body>
</html>
`))
