package proxies_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/internal/testenv/proxies"
)

// These tests read the shipped snippets without running them: what the
// end-to-end tests cannot see (which headers a file names, in which order),
// and the Traefik and Envoy files, which are not run here.

// sixHeaders are the headers an allowed /authz answer carries upstream.
var sixHeaders = []string{
	"X-License-Org", "X-License-Status", "X-License-Tier",
	"X-License-Features", "X-License-Users-Limit", "X-License-Days-Remaining",
}

// uncommentCode turns on the commented configuration of a snippet. Commented
// code has its hash where the code would start ("#key: value", no space
// after the hash; prose is "# text"), and a block of it goes on while the
// following lines have their hash in the same column.
func uncommentCode(s string) string {
	lines := strings.Split(s, "\n")
	block := "" // the indentation of the commented block being read
	inBlock := false
	for i, l := range lines {
		indent := l[:len(l)-len(strings.TrimLeft(l, " \t"))]
		rest := l[len(indent):]
		switch {
		case inBlock && indent == block && strings.HasPrefix(rest, "#"):
		case strings.HasPrefix(rest, "#") && len(rest) > 1 && !strings.ContainsRune(" \t#", rune(rest[1])):
			block, inBlock = indent, true
		default:
			inBlock = false
			continue
		}
		lines[i] = indent + rest[1:]
	}
	return strings.Join(lines, "\n")
}

func TestNginxSnippets(t *testing.T) {
	for _, name := range []string{proxies.NginxJWT, proxies.NginxAuthLayer} {
		t.Run(name, func(t *testing.T) {
			src := proxies.Snippet(t, name)
			conf, err := parseNginx(src)
			if err != nil {
				t.Fatal(err)
			}
			layer := name == proxies.NginxAuthLayer
			servers := all(conf, "server")
			if len(servers) != 1 {
				t.Fatalf("%d server blocks, want 1", len(servers))
			}
			srv := servers[0].block
			if got := args1(srv, "listen"); got != proxies.DefaultListen {
				t.Errorf("listen %q, want %s", got, proxies.DefaultListen)
			}

			// No client org header is read anywhere: $http_x_org_slug is
			// the client's X-Org-Slug.
			walk(conf, func(d *directive) {
				for _, a := range d.args {
					if strings.Contains(strings.ToLower(a), "$http_x_org_slug") {
						t.Errorf("%s %v reads the client's X-Org-Slug", d.name, d.args)
					}
				}
			})

			// The subrequest to the gatekeeper passes no client header but
			// the ones it names.
			authz := location(srv, "=", "/_license_authz")
			if authz == nil {
				t.Fatal("no location = /_license_authz")
			}
			if got := args1(authz, "proxy_pass"); got != "http://"+proxies.DefaultAuthz+"/authz" {
				t.Errorf("/_license_authz proxy_pass %q", got)
			}
			if args1(authz, "proxy_pass_request_headers") != "off" || len(all(authz, "internal")) != 1 {
				t.Error("/_license_authz: want internal and proxy_pass_request_headers off (only the headers set there reach the gatekeeper)")
			}
			sent := headersSet(authz)
			wantOrg := ""
			if layer {
				wantOrg = "$platform_org"
			} else if sent["authorization"] != "$http_authorization" || sent["cookie"] != "$http_cookie" {
				t.Errorf("jwt mode: the token must reach the gatekeeper: Authorization %q, Cookie %q", sent["authorization"], sent["cookie"])
			}
			if org, ok := sent["x-org-slug"]; !ok || org != wantOrg {
				t.Errorf("/_license_authz sends X-Org-Slug %q (set: %v), want %q", org, ok, wantOrg)
			}
			for h, v := range map[string]string{"x-original-method": "$request_method", "x-original-uri": "$request_uri", "x-license-min-seq": "$http_x_license_min_seq"} {
				if sent[h] != v {
					t.Errorf("/_license_authz sends %s %q, want %s", h, sent[h], v)
				}
			}

			// The location that gates and proxies to the app.
			gated := location(srv, "/")
			if layer {
				step1 := gated
				gated = location(srv, "@licensed")
				if args1(step1, "auth_request") != "/_platform_session" {
					t.Errorf("location / auth_request %q, want /_platform_session", args1(step1, "auth_request"))
				}
				captured := false
				for _, d := range all(step1, "auth_request_set") {
					captured = captured || strings.Join(d.args, " ") == "$platform_org $upstream_http_x_org_slug"
				}
				if !captured {
					t.Error("location / does not capture the session endpoint's X-Org-Slug as $platform_org")
				}
				if tf := all(step1, "try_files"); len(tf) != 1 || tf[0].args[len(tf[0].args)-1] != "@licensed" || len(all(step1, "proxy_pass")) != 0 {
					t.Error("location / must continue in @licensed (try_files … @licensed) and proxy nowhere itself")
				}
				session := location(srv, "=", "/_platform_session")
				if got := args1(session, "proxy_pass"); got != "http://"+proxies.DefaultSession+"/session" {
					t.Errorf("/_platform_session proxy_pass %q", got)
				}
				if org, ok := headersSet(session)["x-org-slug"]; !ok || org != "" {
					t.Errorf("/_platform_session sends the client's X-Org-Slug (%q, set: %v)", org, ok)
				}
			}
			if gated == nil {
				t.Fatal("no location proxying to the app")
			}
			if args1(gated, "auth_request") != "/_license_authz" {
				t.Errorf("the app's location asks %q, want /_license_authz", args1(gated, "auth_request"))
			}
			if got := args1(gated, "proxy_pass"); got != "http://"+proxies.DefaultUpstream {
				t.Errorf("the app's location proxy_pass %q", got)
			}
			toApp := headersSet(gated)
			if org, ok := toApp["x-org-slug"]; !ok || org != wantOrg {
				t.Errorf("the app gets X-Org-Slug %q (set: %v), want %q", org, ok, wantOrg)
			}
			for _, h := range sixHeaders {
				if toApp[strings.ToLower(h)] == "" {
					t.Errorf("the app's location does not set %s", h)
				}
			}
			pages := map[string]string{}
			for _, d := range all(gated, "error_page") {
				pages[d.args[0]] = strings.Join(d.args[1:], " ")
			}
			wantPages := map[string]string{"403": "= @license_denied", "500": "= @license_unavailable"}
			if !layer {
				wantPages["401"] = "= @license_unauthenticated"
			}
			for code, to := range wantPages {
				if pages[code] != to {
					t.Errorf("error_page %s %q, want %q", code, pages[code], to)
				}
			}

			// A 401 keeps a challenge; path_invalid is a 400.
			if !layer {
				unauth := location(srv, "@license_unauthenticated")
				challenge := false
				for _, d := range all(unauth, "add_header") {
					challenge = challenge || d.args[0] == "WWW-Authenticate"
				}
				if !challenge || !strings.HasPrefix(args1(unauth, "return"), "401 ") || !strings.Contains(args1(unauth, "return"), `"org_unauthenticated"`) {
					t.Error("@license_unauthenticated must answer 401 org_unauthenticated with WWW-Authenticate")
				}
				if m := regexp.MustCompile(`(?s)map \$license_challenge \S+ \{\s*""\s+"Bearer";`).FindString(src); m == "" {
					t.Error("without the gatekeeper's challenge, WWW-Authenticate must default to Bearer")
				}
			}
			pathInvalid := false
			for _, d := range all(location(srv, "@license_denied"), "if") {
				pathInvalid = pathInvalid || strings.Join(d.args, " ") == "($license_error = path_invalid)" && strings.HasPrefix(args1(d.block, "return"), "400 ")
			}
			if !pathInvalid {
				t.Error("@license_denied does not answer path_invalid with 400")
			}
		})
	}
}

// caddyLines returns the directive lines of a Caddyfile: trimmed, without
// comments and blank lines.
func caddyLines(src string) []string {
	var out []string
	for _, l := range strings.Split(src, "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

func TestCaddySnippets(t *testing.T) {
	for _, name := range []string{proxies.CaddyJWT, proxies.CaddyAuthLayer} {
		t.Run(name, func(t *testing.T) {
			lines := caddyLines(proxies.Snippet(t, name))
			layer := name == proxies.CaddyAuthLayer
			if !slices.Contains(lines, "http://"+proxies.DefaultListen+" {") {
				t.Errorf("no site block http://%s", proxies.DefaultListen)
			}
			var auths []string // forward_auth upstreams, in order
			firstAuth := -1
			for i, l := range lines {
				if up, ok := strings.CutPrefix(l, "forward_auth "); ok {
					auths = append(auths, strings.TrimSuffix(up, " {"))
					if firstAuth < 0 {
						firstAuth = i
					}
				}
			}
			want := []string{proxies.DefaultAuthz}
			if layer {
				want = []string{proxies.DefaultSession, proxies.DefaultAuthz}
			}
			if !slices.Equal(auths, want) {
				t.Fatalf("forward_auth to %v, want %v", auths, want)
			}
			// The client's org header is removed before anything is asked,
			// and nothing else touches it but the session endpoint's copy.
			strip := slices.Index(lines, "request_header -X-Org-Slug")
			if strip < 0 || strip > firstAuth {
				t.Errorf("request_header -X-Org-Slug at line %d, want before the first forward_auth (%d)", strip, firstAuth)
			}
			for _, l := range lines {
				if !strings.Contains(l, "X-Org-Slug") {
					continue
				}
				allowed := l == "request_header -X-Org-Slug" ||
					layer && (l == "copy_headers X-Org-Slug" || l == `@org_unset header_regexp X-Org-Slug ^\{` || l == "request_header @org_unset -X-Org-Slug")
				if !allowed {
					t.Errorf("%q handles the org header", l)
				}
			}
			// The token travels as sent (forward_auth passes the client's
			// headers): nothing removes Authorization or Cookie.
			for _, l := range lines {
				for _, h := range []string{"-Authorization", "-Cookie"} {
					if strings.HasSuffix(l, h) {
						t.Errorf("%q removes the token", l)
					}
				}
			}
			for _, l := range []string{"uri /authz", "request_header -X-Gatekeeper-Secret", "copy_response 400"} {
				if !slices.Contains(lines, l) {
					t.Errorf("no %q", l)
				}
			}
			if layer && !slices.Contains(lines, "uri /session") {
				t.Error("no uri /session")
			}
		})
	}
}

// The helpers render exactly the shipped files: the defaults must be there,
// and a replacement is never replaced again.
func TestRender(t *testing.T) {
	defaults := []string{proxies.DefaultListen, proxies.DefaultAuthz, proxies.DefaultUpstream, proxies.DefaultSession}
	count := func(s string) (n int) {
		for _, d := range defaults {
			n += strings.Count(s, d)
		}
		return n
	}
	for _, name := range []string{proxies.NginxJWT, proxies.NginxAuthLayer, proxies.CaddyJWT, proxies.CaddyAuthLayer} {
		s := proxies.Snippet(t, name)
		// Ports chosen to collide with the other defaults.
		addrs := map[string]string{
			proxies.DefaultListen:   proxies.DefaultAuthz,
			proxies.DefaultAuthz:    proxies.DefaultUpstream,
			proxies.DefaultUpstream: proxies.DefaultListen,
		}
		layer := strings.Contains(name, "auth-layer")
		if layer {
			addrs[proxies.DefaultSession] = proxies.DefaultListen
		}
		out, err := proxies.Render(s, addrs)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got, want := count(out), count(s); got != want {
			t.Errorf("%s: %d default addresses after rendering, want %d", name, got, want)
		}
		if strings.Count(out, proxies.DefaultAuthz) != strings.Count(s, proxies.DefaultListen) {
			t.Errorf("%s: the listen address was not replaced everywhere", name)
		}
		// The session endpoint is in the auth-layer variants only, and a
		// setup must say where it is.
		delete(addrs, proxies.DefaultSession)
		_, err = proxies.Render(s, addrs)
		if layer != (err != nil) {
			t.Errorf("%s rendered without the session address: %v", name, err)
		}
		if !layer {
			addrs[proxies.DefaultSession] = "127.0.0.1:1"
			if _, err := proxies.Render(s, addrs); err == nil {
				t.Errorf("%s rendered a session address it does not mention", name)
			}
		}

		// The commented secret line can be turned on, and sends the secret.
		on, err := proxies.EnableSecret(s, "the-secret")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if strings.Contains(on, proxies.SecretPlaceholder) || !strings.Contains(on, "X-Gatekeeper-Secret \"the-secret\"") {
			t.Errorf("%s: the secret line was not turned on:\n%s", name, on)
		}
	}
	if _, err := proxies.Render("listen 127.0.0.1:9999;", map[string]string{proxies.DefaultListen: "a"}); err == nil {
		t.Error("a snippet without the default addresses rendered without error")
	}
	if _, err := proxies.EnableSecret("# proxy_set_header X-Gatekeeper-Secret \"x\";", "s"); err == nil {
		t.Error("a secret line without the placeholder was turned on")
	}
	if _, err := os.Stat(filepath.Join(proxies.RepoRoot(t), "go.mod")); err != nil {
		t.Error(err)
	}
}
