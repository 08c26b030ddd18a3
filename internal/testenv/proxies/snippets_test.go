package proxies_test

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/testenv/proxies"
	"go.yaml.in/yaml/v3"
)

// sixHeaders are the headers an allowed /authz answer carries upstream.
var sixHeaders = []string{
	"X-License-Org", "X-License-Status", "X-License-Tier",
	"X-License-Features", "X-License-Users-Limit", "X-License-Days-Remaining",
}

// Traefik and Envoy are not run here: their snippets are checked by parsing.

func TestTraefikSnippet(t *testing.T) {
	doc := parseYAML(t, "traefik.yml")
	http := field(t, doc, "http")
	middlewares := field(t, http, "middlewares").(map[string]any)

	// Exactly one ForwardAuth middleware, used by the router.
	var gate string
	var fa map[string]any
	for name, m := range middlewares {
		if f, ok := m.(map[string]any)["forwardAuth"]; ok {
			if gate != "" {
				t.Fatalf("two forwardAuth middlewares: %s and %s", gate, name)
			}
			gate, fa = name, f.(map[string]any)
		}
	}
	if fa == nil {
		t.Fatal("no forwardAuth middleware")
	}
	if got := field(t, fa, "address"); got != "http://"+proxies.DefaultAuthz+"/authz" {
		t.Errorf("forwardAuth.address = %v, want http://%s/authz", got, proxies.DefaultAuthz)
	}
	if trust, ok := field(t, fa, "trustForwardHeader").(bool); !ok || trust {
		t.Errorf("forwardAuth.trustForwardHeader = %v, want false (clients must not choose the URI decided on)", fa["trustForwardHeader"])
	}
	copied := stringList(t, field(t, fa, "authResponseHeaders"))
	for _, h := range append(slices.Clone(sixHeaders), "X-License-Warning") {
		if !slices.Contains(copied, h) {
			t.Errorf("authResponseHeaders lacks %s", h)
		}
	}
	if sent := stringList(t, field(t, fa, "authRequestHeaders")); !slices.Contains(sent, "X-Org-Slug") {
		t.Errorf("authRequestHeaders %v lacks X-Org-Slug", sent)
	}

	routers := field(t, http, "routers").(map[string]any)
	if len(routers) == 0 {
		t.Fatal("no router")
	}
	for name, r := range routers {
		used := stringList(t, field(t, r.(map[string]any), "middlewares"))
		if len(used) == 0 || used[0] != gate {
			t.Errorf("router %s middlewares %v: %s must come first", name, used, gate)
		}
	}
	var urls []string
	for _, s := range field(t, http, "services").(map[string]any) {
		lb := field(t, s.(map[string]any), "loadBalancer").(map[string]any)
		for _, srv := range field(t, lb, "servers").([]any) {
			urls = append(urls, srv.(map[string]any)["url"].(string))
		}
	}
	if !slices.Contains(urls, "http://"+proxies.DefaultUpstream) {
		t.Errorf("service URLs %v lack http://%s", urls, proxies.DefaultUpstream)
	}
}

func TestEnvoySnippet(t *testing.T) {
	doc := parseYAML(t, "envoy.yaml")
	static := field(t, doc, "static_resources")

	// The HTTP filters of the (single) connection manager.
	var filters []any
	for _, l := range field(t, static, "listeners").([]any) {
		for _, fc := range field(t, l.(map[string]any), "filter_chains").([]any) {
			for _, f := range field(t, fc.(map[string]any), "filters").([]any) {
				f := f.(map[string]any)
				if f["name"] == "envoy.filters.network.http_connection_manager" {
					filters = field(t, f, "typed_config").(map[string]any)["http_filters"].([]any)
				}
			}
		}
	}
	var names []string
	byName := map[string]map[string]any{}
	for _, f := range filters {
		f := f.(map[string]any)
		name := f["name"].(string)
		names = append(names, name)
		byName[name] = field(t, f, "typed_config").(map[string]any)
	}
	mutation, authz := slices.Index(names, "envoy.filters.http.header_mutation"), slices.Index(names, "envoy.filters.http.ext_authz")
	if authz < 0 || mutation < 0 || mutation > authz || names[len(names)-1] != "envoy.filters.http.router" {
		t.Fatalf("http_filters %v: want header_mutation, then ext_authz, the router last", names)
	}

	// Client-sent X-License-* headers are removed before ext_authz.
	var removed []string
	mutations := field(t, byName["envoy.filters.http.header_mutation"], "mutations").(map[string]any)
	for _, m := range field(t, mutations, "request_mutations").([]any) {
		if r, ok := m.(map[string]any)["remove"].(string); ok {
			removed = append(removed, r)
		}
	}
	for _, h := range append(slices.Clone(sixHeaders), "X-License-Warning") {
		if !slices.Contains(removed, strings.ToLower(h)) {
			t.Errorf("header_mutation does not remove %s", h)
		}
	}

	ea := byName["envoy.filters.http.ext_authz"]
	if fma, _ := ea["failure_mode_allow"].(bool); fma {
		t.Error("failure_mode_allow is true: an unreachable gatekeeper would let everything through")
	}
	if sent := matcherList(t, field(t, ea, "allowed_headers")); !slices.Contains(sent, "x-org-slug") {
		t.Errorf("allowed_headers %v lacks x-org-slug", sent)
	}
	hs := field(t, ea, "http_service").(map[string]any)
	if got := field(t, hs, "path_prefix"); got != "/authz" {
		t.Errorf("path_prefix = %v, want /authz", got)
	}
	uri := field(t, hs, "server_uri").(map[string]any)
	timeout, err := time.ParseDuration(field(t, uri, "timeout").(string))
	if err != nil || timeout < 200*time.Millisecond {
		t.Errorf("server_uri.timeout = %v (%v), want at least 200ms", uri["timeout"], err)
	}
	resp := field(t, hs, "authorization_response").(map[string]any)
	upstream := matcherList(t, field(t, resp, "allowed_upstream_headers"))
	for _, h := range sixHeaders {
		if !slices.Contains(upstream, strings.ToLower(h)) {
			t.Errorf("allowed_upstream_headers lacks %s", strings.ToLower(h))
		}
	}
	client := matcherList(t, field(t, resp, "allowed_client_headers"))
	for _, h := range []string{"x-license-error", "x-license-warning"} {
		if !slices.Contains(client, h) {
			t.Errorf("allowed_client_headers lacks %s", h)
		}
	}
	if onSuccess := matcherList(t, field(t, resp, "allowed_client_headers_on_success")); !slices.Contains(onSuccess, "x-license-warning") {
		t.Errorf("allowed_client_headers_on_success %v lacks x-license-warning", onSuccess)
	}

	// The authz cluster is the gatekeeper's --authz-listen; the app's is the
	// default upstream.
	endpoints := map[string]string{}
	for _, c := range field(t, static, "clusters").([]any) {
		c := c.(map[string]any)
		la := field(t, c, "load_assignment").(map[string]any)
		for _, e := range field(t, la, "endpoints").([]any) {
			for _, lb := range field(t, e.(map[string]any), "lb_endpoints").([]any) {
				sa := lb.(map[string]any)["endpoint"].(map[string]any)["address"].(map[string]any)["socket_address"].(map[string]any)
				endpoints[c["name"].(string)] = fmt.Sprintf("%v:%v", sa["address"], sa["port_value"])
			}
		}
	}
	if got := endpoints[field(t, uri, "cluster").(string)]; got != proxies.DefaultAuthz {
		t.Errorf("authz cluster endpoint = %q, want %s", got, proxies.DefaultAuthz)
	}
	if !slices.Contains(slices.Collect(maps.Values(endpoints)), proxies.DefaultUpstream) {
		t.Errorf("cluster endpoints %v lack the app at %s", endpoints, proxies.DefaultUpstream)
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

func parseYAML(t *testing.T, name string) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(proxies.Snippet(t, name)), &doc); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return doc
}

// field returns m[key] of a YAML mapping, failing the test when absent.
func field(t *testing.T, m any, key string) any {
	t.Helper()
	mm, ok := m.(map[string]any)
	if !ok {
		t.Fatalf("looking up %q in a %T, not a mapping", key, m)
	}
	v, ok := mm[key]
	if !ok {
		t.Fatalf("no %q field", key)
	}
	return v
}

func stringList(t *testing.T, v any) []string {
	t.Helper()
	l, ok := v.([]any)
	if !ok {
		t.Fatalf("%v is not a list", v)
	}
	var out []string
	for _, e := range l {
		s, ok := e.(string)
		if !ok {
			t.Fatalf("%v is not a string", e)
		}
		out = append(out, s)
	}
	return out
}

// matcherList returns the exact values of an Envoy ListStringMatcher.
func matcherList(t *testing.T, v any) []string {
	t.Helper()
	var out []string
	for _, p := range field(t, v, "patterns").([]any) {
		if s, ok := p.(map[string]any)["exact"].(string); ok {
			out = append(out, s)
		}
	}
	return out
}
