package proxies_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/licenseledger/ledger/internal/testenv/proxies"
)

// Traefik and Envoy are not run here: their snippets are checked by parsing,
// each as shipped and with its commented secret lines turned on.

// The Traefik and Envoy snippets; the auth-layer ones ask the platform's
// session endpoint first.
const (
	traefikJWT       = "traefik.yml"
	traefikAuthLayer = "traefik-auth-layer.yml"
	envoyJWT         = "envoy.yaml"
	envoyAuthLayer   = "envoy-auth-layer.yaml"
)

func TestTraefikSnippets(t *testing.T) {
	for _, name := range []string{traefikJWT, traefikAuthLayer} {
		for _, secret := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/secret=%v", name, secret), func(t *testing.T) {
				src := proxies.Snippet(t, name)
				if secret {
					src = uncommentCode(src)
				}
				checkTraefik(t, parseYAML(t, src), name == traefikAuthLayer, secret)
			})
		}
	}
	if !strings.Contains(proxies.Snippet(t, traefikJWT), `address: "`+proxies.DefaultListen+`"`) {
		t.Errorf("%s: the entry point shown does not listen on %s", traefikJWT, proxies.DefaultListen)
	}
}

func checkTraefik(t *testing.T, doc map[string]any, layer, secret bool) {
	http := field(t, doc, "http")
	middlewares := field(t, http, "middlewares").(map[string]any)

	// The ForwardAuth middlewares by address: the gatekeeper's and, in the
	// auth-layer variant, the session endpoint's.
	var gate, session string
	forwardAuth := map[string]map[string]any{}
	for name, m := range middlewares {
		f, ok := m.(map[string]any)["forwardAuth"]
		if !ok {
			continue
		}
		fa := f.(map[string]any)
		forwardAuth[name] = fa
		switch field(t, fa, "address") {
		case "http://" + proxies.DefaultAuthz + "/authz":
			gate = name
		case "http://" + proxies.DefaultSession + "/session":
			session = name
		default:
			t.Errorf("forwardAuth %s asks %v", name, fa["address"])
		}
		if trust, ok := field(t, fa, "trustForwardHeader").(bool); !ok || trust {
			t.Errorf("%s: trustForwardHeader = %v, want false (clients must not choose the URI decided on)", name, fa["trustForwardHeader"])
		}
		// Without the list, every client header is sent.
		if len(stringList(t, field(t, fa, "authRequestHeaders"))) == 0 {
			t.Errorf("%s: authRequestHeaders is empty: every client header would be sent", name)
		}
	}
	want := 1 // the gatekeeper's
	if layer {
		want = 2 // and the session endpoint's
	}
	if gate == "" || (session != "") != layer || len(forwardAuth) != want {
		t.Fatalf("forwardAuth middlewares %v: want the gatekeeper's, and the session endpoint's in the auth-layer variant", forwardAuth)
	}
	fa := forwardAuth[gate]
	copied := stringList(t, field(t, fa, "authResponseHeaders"))
	for _, h := range append(slices.Clone(sixHeaders), "X-License-Warning") {
		if !slices.Contains(copied, h) {
			t.Errorf("authResponseHeaders lacks %s", h)
		}
	}
	sent := stringList(t, field(t, fa, "authRequestHeaders"))
	if layer != slices.Contains(sent, "X-Org-Slug") {
		t.Errorf("the gatekeeper gets %v: want X-Org-Slug exactly in the auth-layer variant", sent)
	}
	if !layer && !slices.Contains(sent, "Authorization") {
		t.Errorf("the gatekeeper gets %v: want the token (Authorization)", sent)
	}
	if secret != slices.Contains(sent, "X-Gatekeeper-Secret") {
		t.Errorf("the gatekeeper gets %v: want X-Gatekeeper-Secret exactly with the secret on", sent)
	}
	if layer {
		s := forwardAuth[session]
		if got := stringList(t, field(t, s, "authResponseHeaders")); !slices.Equal(got, []string{"X-Org-Slug"}) {
			t.Errorf("%s copies %v, want [X-Org-Slug] (which also removes the client's)", session, got)
		}
		if slices.Contains(stringList(t, field(t, s, "authRequestHeaders")), "X-Org-Slug") {
			t.Errorf("%s is sent the client's X-Org-Slug", session)
		}
	}

	// headers middlewares: what each sets (an empty value removes).
	sets := func(name string) map[string]any {
		h, ok := middlewares[name].(map[string]any)["headers"].(map[string]any)
		if !ok {
			return nil
		}
		m, _ := h["customRequestHeaders"].(map[string]any)
		return m
	}
	routers := field(t, http, "routers").(map[string]any)
	if len(routers) == 0 {
		t.Fatal("no router")
	}
	for name, r := range routers {
		used := stringList(t, field(t, r.(map[string]any), "middlewares"))
		at := slices.Index(used, gate)
		if at < 0 {
			t.Errorf("router %s does not use %s", name, gate)
			continue
		}
		// Before the gate: the session endpoint, and the secret.
		for _, m := range used[:at] {
			if s := sets(m); m != session && !(secret && len(s) == 1 && s["X-Gatekeeper-Secret"] == proxies.SecretPlaceholder) {
				t.Errorf("router %s: %s runs before %s", name, m, gate)
			}
		}
		if layer && !slices.Contains(used[:at], session) {
			t.Errorf("router %s: %s must run before %s", name, session, gate)
		}
		// After it: the client's org header (jwt), the consistency token
		// and the secret are removed.
		removed := map[string]bool{}
		for _, m := range used[at+1:] {
			for h, v := range sets(m) {
				removed[h] = removed[h] || v == ""
			}
		}
		want := []string{"X-License-Min-Seq", "X-Gatekeeper-Secret"}
		if !layer {
			want = append(want, "X-Org-Slug")
		}
		for _, h := range want {
			if !removed[h] {
				t.Errorf("router %s: nothing after %s removes %s", name, gate, h)
			}
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

func TestEnvoySnippets(t *testing.T) {
	for _, name := range []string{envoyJWT, envoyAuthLayer} {
		for _, secret := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/secret=%v", name, secret), func(t *testing.T) {
				src := proxies.Snippet(t, name)
				if secret {
					src = uncommentCode(src)
				}
				checkEnvoy(t, parseYAML(t, src), name == envoyAuthLayer, secret)
			})
		}
	}
}

func checkEnvoy(t *testing.T, doc map[string]any, layer, secret bool) {
	static := field(t, doc, "static_resources")

	// The endpoint of each cluster.
	endpoints := map[string]string{}
	for _, c := range field(t, static, "clusters").([]any) {
		c := c.(map[string]any)
		la := field(t, c, "load_assignment").(map[string]any)
		for _, e := range field(t, la, "endpoints").([]any) {
			for _, lb := range field(t, e.(map[string]any), "lb_endpoints").([]any) {
				endpoints[c["name"].(string)] = socketAddress(t, lb.(map[string]any)["endpoint"])
			}
		}
	}
	if !slices.Contains(slicesOf(endpoints), proxies.DefaultUpstream) {
		t.Errorf("cluster endpoints %v lack the app at %s", endpoints, proxies.DefaultUpstream)
	}

	// The HTTP filters of the (single) connection manager.
	var filters []any
	listeners := field(t, static, "listeners").([]any)
	if len(listeners) != 1 {
		t.Fatalf("%d listeners, want 1", len(listeners))
	}
	if got := socketAddress(t, listeners[0]); got != proxies.DefaultListen {
		t.Errorf("listener at %s, want %s", got, proxies.DefaultListen)
	}
	for _, fc := range field(t, listeners[0], "filter_chains").([]any) {
		for _, f := range field(t, fc.(map[string]any), "filters").([]any) {
			f := f.(map[string]any)
			if f["name"] == "envoy.filters.network.http_connection_manager" {
				filters = field(t, field(t, f, "typed_config"), "http_filters").([]any)
			}
		}
	}
	// Each filter's kind (its config type) and config; the ext_authz ones
	// by the service they ask.
	const extAuthz = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"
	var kinds []string
	var mutation, gate, session map[string]any
	for _, f := range filters {
		tc := field(t, f, "typed_config").(map[string]any)
		kind := tc["@type"].(string)
		switch kind {
		case "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation":
			mutation = tc
		case extAuthz:
			hs := field(t, tc, "http_service")
			switch endpoints[field(t, field(t, hs, "server_uri"), "cluster").(string)] {
			case proxies.DefaultAuthz:
				gate, kind = tc, "gatekeeper"
			case proxies.DefaultSession:
				session, kind = tc, "session"
			}
		}
		kinds = append(kinds, kind[strings.LastIndex(kind, ".")+1:])
	}
	want := []string{"HeaderMutation", "gatekeeper", "Router"}
	if layer {
		want = []string{"HeaderMutation", "session", "gatekeeper", "Router"}
	}
	if !slices.Equal(kinds, want) {
		t.Fatalf("http_filters %v, want %v", kinds, want)
	}

	// Client-sent X-License-* headers, the org header and the secret are
	// removed before ext_authz.
	var removed []string
	for _, m := range field(t, field(t, mutation, "mutations"), "request_mutations").([]any) {
		if r, ok := m.(map[string]any)["remove"].(string); ok {
			removed = append(removed, r)
		}
	}
	for _, h := range append(slices.Clone(sixHeaders), "X-License-Warning", "X-Org-Slug", "X-Gatekeeper-Secret") {
		if !slices.Contains(removed, strings.ToLower(h)) {
			t.Errorf("header_mutation does not remove %s", h)
		}
	}

	for what, ea := range map[string]map[string]any{"gatekeeper": gate, "session": session} {
		if ea == nil {
			continue
		}
		if fma, _ := ea["failure_mode_allow"].(bool); fma {
			t.Errorf("%s: failure_mode_allow is true: an unreachable service would let everything through", what)
		}
		hs := field(t, ea, "http_service")
		timeout, err := time.ParseDuration(field(t, field(t, hs, "server_uri"), "timeout").(string))
		if err != nil || timeout < 200*time.Millisecond {
			t.Errorf("%s: server_uri.timeout %v (%v), want at least 200ms", what, timeout, err)
		}
	}
	sent := matcherList(t, field(t, gate, "allowed_headers"))
	if layer != slices.Contains(sent, "x-org-slug") {
		t.Errorf("the gatekeeper gets %v: want x-org-slug exactly in the auth-layer variant", sent)
	}
	if !layer && !(slices.Contains(sent, "authorization") && slices.Contains(sent, "cookie")) {
		t.Errorf("the gatekeeper gets %v: want the token (authorization, cookie)", sent)
	}
	hs := field(t, gate, "http_service").(map[string]any)
	if got := field(t, hs, "path_prefix"); got != "/authz" {
		t.Errorf("path_prefix = %v, want /authz", got)
	}
	resp := field(t, hs, "authorization_response")
	upstream := matcherList(t, field(t, resp, "allowed_upstream_headers"))
	for _, h := range sixHeaders {
		if !slices.Contains(upstream, strings.ToLower(h)) {
			t.Errorf("allowed_upstream_headers lacks %s", strings.ToLower(h))
		}
	}
	client := matcherList(t, field(t, resp, "allowed_client_headers"))
	for _, h := range []string{"x-license-error", "x-license-warning", "www-authenticate"} {
		if !slices.Contains(client, h) {
			t.Errorf("allowed_client_headers lacks %s", h)
		}
	}
	if onSuccess := matcherList(t, field(t, resp, "allowed_client_headers_on_success")); !slices.Contains(onSuccess, "x-license-warning") {
		t.Errorf("allowed_client_headers_on_success %v lacks x-license-warning", onSuccess)
	}
	if _, ok := hs["authorization_request"]; ok != secret {
		t.Errorf("authorization_request set: %v, want it only with the secret on", ok)
	} else if secret {
		added := field(t, field(t, hs, "authorization_request"), "headers_to_add").([]any)
		if len(added) != 1 || added[0].(map[string]any)["key"] != "x-gatekeeper-secret" || added[0].(map[string]any)["value"] != proxies.SecretPlaceholder {
			t.Errorf("headers_to_add %v, want x-gatekeeper-secret: %s", added, proxies.SecretPlaceholder)
		}
	}

	if layer {
		shs := field(t, session, "http_service")
		if got := field(t, shs, "path_prefix"); got != "/session" {
			t.Errorf("session path_prefix = %v, want /session", got)
		}
		if slices.Contains(matcherList(t, field(t, session, "allowed_headers")), "x-org-slug") {
			t.Error("the session endpoint is sent the client's x-org-slug")
		}
		if got := matcherList(t, field(t, field(t, shs, "authorization_response"), "allowed_upstream_headers")); !slices.Equal(got, []string{"x-org-slug"}) {
			t.Errorf("the session endpoint's answer sets %v on the request, want [x-org-slug]", got)
		}
	}
}

// socketAddress is host:port of a mapping holding address.socket_address.
func socketAddress(t *testing.T, m any) string {
	t.Helper()
	sa := field(t, field(t, m, "address"), "socket_address")
	return fmt.Sprintf("%v:%v", field(t, sa, "address"), field(t, sa, "port_value"))
}

func slicesOf(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func parseYAML(t *testing.T, src string) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
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
