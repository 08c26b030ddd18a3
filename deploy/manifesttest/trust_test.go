package manifesttest

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// Who may reach the gatekeepers, and whose word they take for the org.

// The placeholders of networkpolicy-gatekeeper.yaml: the namespaces allowed
// in, by the label Kubernetes puts on every namespace.
const (
	namespaceNameLabel  = "kubernetes.io/metadata.name"
	ingressNamespace    = "ingress-nginx"
	monitoringNamespace = "monitoring"
)

// gatekeeperPortsFrom are, per container port of the gatekeeper, the only
// namespaces a NetworkPolicy may let in.
var gatekeeperPortsFrom = map[string]string{
	"authz": ingressNamespace,
	"proxy": ingressNamespace,
	"admin": monitoringNamespace,
}

// checkNetworkPolicy: the gatekeeper pods are isolated for ingress, and the
// rules let in only the ingress controller's namespace to /authz and the
// proxy, and only the monitoring namespace to the admin port.
func checkNetworkPolicy(t testing.TB, m *manifests) []string {
	var p []string
	gk := m.deployment(t, "gatekeeper")
	c := gk.pod().Containers[0]
	allowed := map[string][]string{} // container port name → namespaces let in
	isolated := false
	for _, o := range m.byKind("NetworkPolicy") {
		var s networkPolicySpec
		o.spec(t, &s)
		if !s.PodSelector.selects(gk.spec.Template.Metadata.Labels) {
			continue
		}
		if s.PodSelector.selects(m.deployment(t, "ledger").spec.Template.Metadata.Labels) {
			p = append(p, fmt.Sprintf("%s: selects the ledger pods too", o))
		}
		isolated = isolated || slices.Contains(s.PolicyTypes, "Ingress")
		for i, r := range s.Ingress {
			where := fmt.Sprintf("%s ingress rule %d", o, i)
			if len(r.From) == 0 {
				p = append(p, where+": no from: lets in every source")
			}
			if len(r.Ports) == 0 {
				p = append(p, where+": no ports: opens every port")
			}
			var namespaces []string
			for j, peer := range r.From {
				ns, problem := peerNamespace(peer)
				if problem != "" {
					p = append(p, fmt.Sprintf("%s peer %d: %s", where, j, problem))
					continue
				}
				namespaces = append(namespaces, ns)
			}
			for _, rp := range r.Ports {
				if rp.Port == nil {
					p = append(p, where+": a port entry without a port opens every port")
					continue
				}
				name, ok := containerPortName(c, *rp.Port)
				if !ok {
					p = append(p, fmt.Sprintf("%s: port %s is no port of the gatekeeper container", where, rp.Port))
					continue
				}
				allowed[name] = append(allowed[name], namespaces...)
			}
		}
	}
	if !isolated {
		return append(p, "no NetworkPolicy with policyTypes [Ingress] selects the gatekeeper pods: every pod can reach /authz")
	}
	names := make([]string, 0, len(allowed))
	for name := range allowed {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		want, ok := gatekeeperPortsFrom[name]
		if !ok {
			p = append(p, fmt.Sprintf("port %s is opened; only %v are expected", name, gatekeeperPortsFrom))
			continue
		}
		for _, ns := range allowed[name] {
			if ns != want {
				p = append(p, fmt.Sprintf("port %s lets in namespace %s, want only %s", name, ns, want))
			}
		}
	}
	for name, ns := range gatekeeperPortsFrom {
		if len(allowed[name]) == 0 {
			p = append(p, fmt.Sprintf("port %s is closed to %s, which needs it", name, ns))
		}
	}
	return p
}

// peerNamespace is the one namespace a NetworkPolicy peer names, or what
// is wrong with the peer.
func peerNamespace(peer networkPolicyPeer) (string, string) {
	switch {
	case peer.IPBlock != nil:
		return "", "ipBlock: name the ingress controller's namespace instead (pod addresses change)"
	case peer.NamespaceSelector == nil:
		return "", "no namespaceSelector: pods of the gatekeeper's own namespace are not expected"
	case len(peer.NamespaceSelector.MatchExpressions) > 0 || len(peer.NamespaceSelector.MatchLabels) != 1:
		return "", fmt.Sprintf("namespaceSelector %v: want exactly %s: <namespace>", peer.NamespaceSelector.MatchLabels, namespaceNameLabel)
	}
	ns, ok := peer.NamespaceSelector.MatchLabels[namespaceNameLabel]
	if !ok {
		return "", fmt.Sprintf("namespaceSelector %v: want %s: <namespace>", peer.NamespaceSelector.MatchLabels, namespaceNameLabel)
	}
	return ns, ""
}

// containerPortName resolves a NetworkPolicy port (a number or a name) to
// the container port's name.
func containerPortName(c container, port intOrString) (string, bool) {
	for _, cp := range c.Ports {
		if port.IsInt && cp.ContainerPort == port.Int || !port.IsInt && cp.Name == port.Str {
			return cp.Name, true
		}
	}
	return "", false
}

// trustVars list the peers (CIDRs) a gatekeeper believes: the org header
// from the first, /authz questions from the second.
var trustVars = []string{"GATEKEEPER_TRUSTED_PROXIES", "GATEKEEPER_AUTHZ_TRUSTED"}

// checkTrust: no ConfigMap trusts a wide range (the whole pod network lets
// any pod claim any org), and the gatekeeper names who may ask /authz.
func checkTrust(t testing.TB, m *manifests) []string {
	var p []string
	for _, o := range m.byKind("ConfigMap") {
		data := o.stringMap(t, "data")
		for _, v := range trustVars {
			if val, ok := data[v]; ok {
				for _, s := range tooBroad(val) {
					p = append(p, fmt.Sprintf("%s: %s %s", o, v, s))
				}
			}
		}
	}
	gk := m.deployment(t, "gatekeeper")
	env := m.containerEnv(t, namespace, gk.pod().Containers[0])
	if listen := env["GATEKEEPER_AUTHZ_LISTEN"].Value; listen != "" && listen != "off" {
		if _, external, _ := listenPort(listen); external && env["GATEKEEPER_AUTHZ_TRUSTED"].Value == "" {
			p = append(p, "gatekeeper: /authz listens on "+listen+": set GATEKEEPER_AUTHZ_TRUSTED to the ingress controller's pod CIDR")
		}
	}
	if from := env["GATEKEEPER_ORG_FROM"].Value; (from == "" || strings.HasPrefix(from, "header:")) && env["GATEKEEPER_TRUSTED_PROXIES"].Value == "" {
		p = append(p, "gatekeeper: header mode: set GATEKEEPER_TRUSTED_PROXIES to the ingress controller's pod CIDR")
	}
	return p
}

// tooBroad says what is wrong with a comma list of CIDRs: unparsable, or
// wider than /16 (IPv4) or /48 (IPv6), 10.0.0.0/8 and 0.0.0.0/0 among them;
// loopback is fine.
func tooBroad(list string) []string {
	var p []string
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			p = append(p, fmt.Sprintf("%q is not a CIDR: %v", s, err))
			continue
		}
		if pfx.Masked().Addr().IsLoopback() {
			continue // a proxy in the same pod
		}
		if pfx.Addr().Is4() && pfx.Bits() < 16 || !pfx.Addr().Is4() && pfx.Bits() < 48 {
			p = append(p, fmt.Sprintf("trusts %s: far more than the ingress controller's pods", pfx))
		}
	}
	return p
}

var jwtExampleRe = regexp.MustCompile(`(?m)^  #(GATEKEEPER_[A-Z_]+): (\S+)$`)

// The commented jwt-mode lines of configmap-gatekeeper.yaml are variables
// the gatekeeper reads, with the values jwt mode needs.
func TestGatekeeperJWTExample(t *testing.T) {
	src := string(readRepoFile(t, kubeDir+"/configmap-gatekeeper.yaml"))
	vars := map[string]string{}
	for _, m := range jwtExampleRe.FindAllStringSubmatch(src, -1) {
		vars[m[1]] = m[2]
	}
	if vars["GATEKEEPER_ORG_FROM"] != "jwt:org" {
		t.Errorf("the commented example sets GATEKEEPER_ORG_FROM %q, want jwt:org (found %v)", vars["GATEKEEPER_ORG_FROM"], vars)
	}
	if k := vars["GATEKEEPER_JWT_KEYS"]; !strings.HasPrefix(k, "https://") || !strings.HasSuffix(k, "/.well-known/jwks.json") {
		t.Errorf("GATEKEEPER_JWT_KEYS %q, want https://…/.well-known/jwks.json", k)
	}
	for _, v := range []string{"GATEKEEPER_JWT_ISSUER", "GATEKEEPER_JWT_AUDIENCE"} {
		if vars[v] == "" {
			t.Errorf("the commented example does not set %s (jwt mode requires it)", v)
		}
	}
	h := help(t, "/gatekeeper")
	for v := range vars {
		if !envAnnotation(v).MatchString(h) {
			t.Errorf("%s is not read by /gatekeeper (not in its --help)", v)
		}
	}
}

func TestTrustChecksCanFail(t *testing.T) {
	for list, want := range map[string]string{
		"10.0.0.0/8":              "trusts 10.0.0.0/8",
		"192.0.2.0/24,0.0.0.0/0":  "trusts 0.0.0.0/0",
		"fd00::/8":                "trusts fd00::/8",
		"10.244.0.0/16, bogus":    `"bogus" is not a CIDR`,
		"10.244.3.0/24,::1/128":   "",
		"127.0.0.0/8,::1/128":     "",
		"10.244.0.0/16,fd00::/64": "",
	} {
		got := strings.Join(tooBroad(list), "\n")
		if want == "" && got != "" || !strings.Contains(got, want) {
			t.Errorf("tooBroad(%q) = %q, want %q", list, got, want)
		}
	}
}
