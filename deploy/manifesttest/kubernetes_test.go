package manifesttest

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/natsauth"
)

// check inspects loaded manifests and returns what is wrong, one line each.
type check func(t testing.TB, m *manifests) []string

// kubeChecks are the checks of deploy/kubernetes, by name. Each is also run
// against a broken copy in TestKubernetesChecksCanFail.
var kubeChecks = map[string]check{
	"kinds":          checkKinds,
	"kustomization":  checkKustomization,
	"secrets":        checkSecretTemplates,
	"references":     checkReferences,
	"security":       checkSecurity,
	"probes":         checkProbesAndPorts,
	"services":       checkServices,
	"secret-modes":   checkVolumeModes,
	"strict-files":   checkStrictFiles,
	"credentials":    checkCredentials,
	"hpa":            checkHPA,
	"pdb":            checkPDB,
	"ledger":         checkLedger,
	"gatekeeper":     checkGatekeeper,
	"migrate-job":    checkMigrateJob,
	"images":         checkImages,
	"nats-reference": checkNATSReference,
	"network-policy": checkNetworkPolicy,
	"trust":          checkTrust,
}

func TestKubernetes(t *testing.T) {
	m := loadManifests(t)
	names := make([]string, 0, len(kubeChecks))
	for name := range kubeChecks {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			if p := kubeChecks[name](t, m); len(p) > 0 {
				t.Errorf("%d problem(s):\n  %s", len(p), strings.Join(p, "\n  "))
			}
		})
	}
}

// --- kinds and files ---------------------------------------------------------

func checkKinds(t testing.TB, m *manifests) []string {
	var p []string
	want := map[string]int{"Namespace": 1, "Deployment": 2, "HorizontalPodAutoscaler": 1, "PodDisruptionBudget": 1,
		"Job": 1, "Service": 2, "Secret": 1, "ConfigMap": 1, "Kustomization": 1, "NetworkPolicy": 1}
	for kind, n := range want {
		if got := len(m.byKind(kind)); got < n {
			p = append(p, fmt.Sprintf("want at least %d %s, found %d", n, kind, got))
		}
	}
	var deps []string
	for _, o := range m.byKind("Deployment") {
		deps = append(deps, o.Metadata.Name)
	}
	sort.Strings(deps)
	if !slices.Equal(deps, []string{"gatekeeper", "ledger"}) {
		p = append(p, fmt.Sprintf("Deployments %v, want exactly gatekeeper and ledger", deps))
	}
	apiVersions := map[string]string{"Deployment": "apps/v1", "Job": "batch/v1", "HorizontalPodAutoscaler": "autoscaling/v2",
		"PodDisruptionBudget": "policy/v1", "Service": "v1", "Secret": "v1", "ConfigMap": "v1", "Namespace": "v1",
		"Kustomization": "kustomize.config.k8s.io/v1beta1", "NetworkPolicy": "networking.k8s.io/v1"}
	for _, o := range m.objects {
		want, ok := apiVersions[o.Kind]
		if !ok {
			p = append(p, fmt.Sprintf("%s: kind %s is not checked by this test; extend it", o, o.Kind))
			continue
		}
		if o.APIVersion != want {
			p = append(p, fmt.Sprintf("%s: apiVersion %s, want %s", o, o.APIVersion, want))
		}
		switch {
		case o.Kind == "Namespace" || o.Kind == "Kustomization":
		case o.Kind == "Secret" && o.Metadata.Namespace == natsNamespace:
		case o.Metadata.Namespace != namespace:
			p = append(p, fmt.Sprintf("%s: namespace %q, want %q", o, o.Metadata.Namespace, namespace))
		}
	}
	if ns := m.byKind("Namespace"); len(ns) == 1 && ns[0].Metadata.Name != namespace {
		p = append(p, fmt.Sprintf("%s: want namespace %s", ns[0], namespace))
	}
	return p
}

func checkKustomization(t testing.TB, m *manifests) []string {
	var p []string
	ks := m.byKind("Kustomization")
	if len(ks) != 1 || ks[0].File != "kustomization.yaml" {
		return []string{"want exactly one Kustomization, in kustomization.yaml"}
	}
	var k struct {
		Namespace string   `yaml:"namespace"`
		Resources []string `yaml:"resources"`
	}
	ks[0].decode(t, &k)
	if k.Namespace != namespace {
		p = append(p, fmt.Sprintf("kustomization namespace %q, want %q", k.Namespace, namespace))
	}
	listed := map[string]bool{}
	for _, r := range k.Resources {
		if listed[r] {
			p = append(p, fmt.Sprintf("%s is listed twice", r))
		}
		listed[r] = true
		if !slices.Contains(m.files, r) {
			p = append(p, fmt.Sprintf("resource %s does not exist", r))
		}
	}
	for _, f := range m.files {
		excluded := isSecretExample(f) || f == "kustomization.yaml" || f == filepath.Base(natsValuesFile) || f == "job-migrate.yaml"
		switch {
		case excluded && listed[f]:
			p = append(p, fmt.Sprintf("%s must not be a kustomize resource", f))
		case !excluded && !listed[f]:
			p = append(p, fmt.Sprintf("%s is not listed in kustomization.yaml", f))
		}
	}
	return p
}

// --- Secrets are templates only ----------------------------------------------

var (
	nkeySeedRe = regexp.MustCompile(`S[A-Z][A-Z2-7]{50,}`)
	nkeyPubRe  = regexp.MustCompile(`\b[UNAOC][A-Z2-7]{55}\b`)
	hexHashRe  = regexp.MustCompile(`\b[0-9a-f]{64}\b`)
)

func checkSecretTemplates(t testing.TB, m *manifests) []string {
	var p []string
	for _, o := range m.objects {
		if isSecretExample(o.File) != (o.Kind == "Secret") {
			if o.Kind == "Secret" {
				p = append(p, fmt.Sprintf("%s: Secrets belong only in secret-*.example.yaml templates", o))
			} else {
				p = append(p, fmt.Sprintf("%s: a secret-*.example.yaml file holds only Secrets", o))
			}
		}
	}
	for _, o := range m.byKind("Secret") {
		if len(o.stringMap(t, "data")) > 0 {
			p = append(p, fmt.Sprintf("%s: use stringData with visible placeholders, not data", o))
		}
		data := o.stringMap(t, "stringData")
		if len(data) == 0 {
			p = append(p, fmt.Sprintf("%s: no stringData", o))
		}
		for k, v := range data {
			where := fmt.Sprintf("%s key %s", o, k)
			if !strings.Contains(v, "REPLACE") {
				p = append(p, fmt.Sprintf("%s: the value must be a placeholder containing REPLACE", where))
			}
			for _, tok := range strings.Fields(v) {
				if _, err := natsauth.IdentityFromSeed(natsauth.RoleReader, []byte(tok)); err == nil {
					p = append(p, fmt.Sprintf("%s: holds a real nkey seed", where))
				}
			}
			if nkeySeedRe.MatchString(v) || nkeyPubRe.MatchString(v) {
				p = append(p, fmt.Sprintf("%s: holds something shaped like an nkey", where))
			}
			if hexHashRe.MatchString(v) {
				p = append(p, fmt.Sprintf("%s: holds a token hash", where))
			}
			if k == "tokens" {
				// The template must still be a valid (empty) tokens file.
				f := filepath.Join(t.TempDir(), "tokens")
				if err := os.WriteFile(f, []byte(v), 0o600); err != nil {
					t.Fatal(err)
				}
				if _, err := auth.ReadTokensFile(f); err != nil {
					p = append(p, fmt.Sprintf("%s: not a valid tokens file: %v", where, err))
				}
			}
		}
	}
	return p
}

// --- references between objects ---------------------------------------------

// checkReferences: every ConfigMap and Secret a workload (or the NATS
// values) uses exists, with the keys used; every template is used.
func checkReferences(t testing.TB, m *manifests) []string {
	var p []string
	usedSecrets := map[string]bool{}
	needSecretKey := func(where, ns, name, key string, optional bool) {
		usedSecrets[ns+"/"+name] = true
		data, ok := m.secretData(t, ns, name)
		if !ok {
			p = append(p, fmt.Sprintf("%s: Secret %s/%s has no secret-*.example.yaml template", where, ns, name))
			return
		}
		if key != "" {
			if _, ok := data[key]; !ok {
				p = append(p, fmt.Sprintf("%s: the template of Secret %s has no key %s", where, name, key))
			}
		}
	}
	needConfigMapKey := func(where, ns, name, key string) {
		data, ok := m.configMapData(t, ns, name)
		if !ok {
			p = append(p, fmt.Sprintf("%s: ConfigMap %s/%s does not exist", where, ns, name))
			return
		}
		if key != "" {
			if _, ok := data[key]; !ok {
				p = append(p, fmt.Sprintf("%s: ConfigMap %s has no key %s", where, name, key))
			}
		}
	}
	for _, w := range m.workloads(t) {
		ns := w.obj.Metadata.Namespace
		pod := w.pod()
		for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
			where := fmt.Sprintf("%s container %s", w.obj, c.Name)
			for _, ef := range c.EnvFrom {
				if ef.ConfigMapRef != nil {
					needConfigMapKey(where, ns, ef.ConfigMapRef.Name, "")
				}
				if ef.SecretRef != nil {
					needSecretKey(where, ns, ef.SecretRef.Name, "", false)
				}
			}
			for _, e := range c.Env {
				if e.ValueFrom == nil {
					continue
				}
				if r := e.ValueFrom.SecretKeyRef; r != nil {
					needSecretKey(where, ns, r.Name, r.Key, r.Optional != nil && *r.Optional)
				}
				if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
					needConfigMapKey(where, ns, r.Name, r.Key)
				}
			}
			for _, vm := range c.VolumeMounts {
				if !slices.ContainsFunc(pod.Volumes, func(v volume) bool { return v.Name == vm.Name }) {
					p = append(p, fmt.Sprintf("%s: mounts undefined volume %s", where, vm.Name))
				}
			}
		}
		for _, v := range pod.Volumes {
			where := fmt.Sprintf("%s volume %s", w.obj, v.Name)
			if v.Secret != nil {
				if len(v.Secret.Items) == 0 {
					needSecretKey(where, ns, v.Secret.SecretName, "", false)
				}
				for _, it := range v.Secret.Items {
					needSecretKey(where, ns, v.Secret.SecretName, it.Key, false)
				}
			}
			if v.ConfigMap != nil {
				if len(v.ConfigMap.Items) == 0 {
					needConfigMapKey(where, ns, v.ConfigMap.Name, "")
				}
				for _, it := range v.ConfigMap.Items {
					needConfigMapKey(where, ns, v.ConfigMap.Name, it.Key)
				}
			}
			used := slices.ContainsFunc(append(slices.Clone(pod.InitContainers), pod.Containers...), func(c container) bool {
				return slices.ContainsFunc(c.VolumeMounts, func(vm volumeMount) bool { return vm.Name == v.Name })
			})
			if !used {
				p = append(p, fmt.Sprintf("%s: mounted by no container", where))
			}
		}
	}
	vals, err := loadNATSValues(repoRootOf(t, m))
	if err != nil {
		p = append(p, err.Error())
	} else {
		for name, ref := range vals.envSecrets() {
			needSecretKey("nats-values.yaml container.env "+name, natsNamespace, ref.Name, ref.Key, false)
		}
	}
	for _, o := range m.byKind("Secret") {
		if !usedSecrets[o.Metadata.Namespace+"/"+o.Metadata.Name] {
			p = append(p, fmt.Sprintf("%s: the template is used by no workload", o))
		}
	}
	return p
}

// repoRootOf is the root the manifests were read from: the repository, or
// a broken copy of deploy/kubernetes in the negative tests.
func repoRootOf(t testing.TB, m *manifests) string {
	if m.root != "" {
		return m.root
	}
	return repoRoot(t)
}

// --- security ----------------------------------------------------------------

func checkSecurity(t testing.TB, m *manifests) []string {
	var p []string
	for _, w := range m.workloads(t) {
		pod := w.pod()
		psc := pod.SecurityContext
		if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
			p = append(p, fmt.Sprintf("%s: set automountServiceAccountToken: false (no API access needed)", w.obj))
		}
		if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
			p = append(p, fmt.Sprintf("%s: set enableServiceLinks: false (Services named ledger or gatekeeper would inject LEDGER_*/GATEKEEPER_* variables)", w.obj))
		}
		if pod.HostNetwork || pod.HostPID || pod.HostIPC {
			p = append(p, fmt.Sprintf("%s: no host namespaces", w.obj))
		}
		for _, v := range pod.Volumes {
			switch v.kind() {
			case "secret", "configMap", "emptyDir":
			default:
				p = append(p, fmt.Sprintf("%s volume %s: %s volumes are not expected", w.obj, v.Name, v.kind()))
			}
		}
		all := append(slices.Clone(pod.InitContainers), pod.Containers...)
		for _, c := range all {
			where := fmt.Sprintf("%s container %s", w.obj, c.Name)
			sc := c.SecurityContext
			if sc == nil {
				p = append(p, where+": no securityContext")
				continue
			}
			nonRoot := sc.RunAsNonRoot
			if nonRoot == nil {
				nonRoot = psc.RunAsNonRoot
			}
			if nonRoot == nil || !*nonRoot {
				p = append(p, where+": runAsNonRoot must be true")
			}
			if uid, ok := effectiveUID(pod, c); !ok || uid == 0 {
				p = append(p, where+": set a non-zero runAsUser (the image's 65532)")
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				p = append(p, where+": readOnlyRootFilesystem must be true")
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				p = append(p, where+": allowPrivilegeEscalation must be false")
			}
			if sc.Privileged != nil && *sc.Privileged {
				p = append(p, where+": privileged")
			}
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
				p = append(p, where+": capabilities must drop ALL")
			} else if len(sc.Capabilities.Add) > 0 {
				p = append(p, fmt.Sprintf("%s: adds capabilities %v", where, sc.Capabilities.Add))
			}
			seccomp := sc.SeccompProfile
			if seccomp == nil {
				seccomp = psc.SeccompProfile
			}
			if seccomp == nil || seccomp.Type != "RuntimeDefault" {
				p = append(p, where+": seccompProfile must be RuntimeDefault")
			}
			if c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" || c.Resources.Requests["cpu"] == "" {
				p = append(p, where+": set cpu and memory requests and a memory limit")
			}
		}
	}
	return p
}

// --- probes and ports ----------------------------------------------------------

// listenVars are, per binary, the variables of its listeners; the first is
// the one serving /healthz and /readyz.
var listenVars = map[string][]string{
	"/ledger":     {"LEDGER_LISTEN"},
	"/gatekeeper": {"GATEKEEPER_ADMIN_LISTEN", "GATEKEEPER_LISTEN", "GATEKEEPER_AUTHZ_LISTEN"},
}

func checkProbesAndPorts(t testing.TB, m *manifests) []string {
	var p []string
	for _, w := range m.workloads(t) {
		if w.obj.Kind != "Deployment" {
			continue
		}
		for _, c := range w.pod().Containers {
			where := fmt.Sprintf("%s container %s", w.obj, c.Name)
			vars, ok := listenVars[binaryOf(c)]
			if !ok {
				p = append(p, fmt.Sprintf("%s: runs %s, which has no known listener", where, binaryOf(c)))
				continue
			}
			env := m.containerEnv(t, w.obj.Metadata.Namespace, c)
			listenPorts := map[int]string{}
			healthPort := 0
			for i, v := range vars {
				src, ok := env[v]
				if !ok {
					if i == 0 {
						p = append(p, fmt.Sprintf("%s: set %s (the default is loopback, which probes cannot reach)", where, v))
					}
					continue
				}
				port, external, err := listenPort(src.Value)
				if err != nil {
					p = append(p, fmt.Sprintf("%s: %s=%q: %v", where, v, src.Value, err))
					continue
				}
				if !external {
					p = append(p, fmt.Sprintf("%s: %s=%s is not reachable from the kubelet or Services: listen on 0.0.0.0", where, v, src.Value))
				}
				listenPorts[port] = v
				if i == 0 {
					healthPort = port
				}
			}
			for _, cp := range c.Ports {
				if _, ok := listenPorts[cp.ContainerPort]; !ok {
					p = append(p, fmt.Sprintf("%s: containerPort %d (%s) is no listener's port %v", where, cp.ContainerPort, cp.Name, listenPorts))
				}
			}
			probeCheck := func(kind string, pr *probe, path string, required bool) {
				if pr == nil {
					if required {
						p = append(p, fmt.Sprintf("%s: no %s probe", where, kind))
					}
					return
				}
				if pr.HTTPGet == nil {
					p = append(p, fmt.Sprintf("%s: the %s probe must be an httpGet of %s", where, kind, path))
					return
				}
				if pr.HTTPGet.Path != path {
					p = append(p, fmt.Sprintf("%s: the %s probe gets %s, want %s", where, kind, pr.HTTPGet.Path, path))
				}
				port, err := resolvePort(c, pr.HTTPGet.Port)
				if err != nil {
					p = append(p, fmt.Sprintf("%s: %s probe: %v", where, kind, err))
				} else if port != healthPort {
					p = append(p, fmt.Sprintf("%s: the %s probe targets port %d, but %s listens on %d", where, kind, port, vars[0], healthPort))
				}
				scheme, want := pr.HTTPGet.Scheme, "HTTP"
				if scheme == "" {
					scheme = "HTTP"
				}
				if binaryOf(c) == "/ledger" && env["LEDGER_TLS_CERT"].Value != "" {
					want = "HTTPS"
				}
				if scheme != want {
					p = append(p, fmt.Sprintf("%s: the %s probe uses %s; the listener serves %s", where, kind, scheme, want))
				}
			}
			probeCheck("liveness", c.LivenessProbe, "/healthz", true)
			probeCheck("readiness", c.ReadinessProbe, "/readyz", true)
			probeCheck("startup", c.StartupProbe, "/healthz", false)
		}
	}
	return p
}

func resolvePort(c container, port intOrString) (int, error) {
	if port.IsInt {
		return port.Int, nil
	}
	for _, cp := range c.Ports {
		if cp.Name == port.Str {
			return cp.ContainerPort, nil
		}
	}
	return 0, fmt.Errorf("no container port named %q", port.Str)
}

// checkServices: each Service selects pods of one Deployment and targets
// ports its containers declare.
func checkServices(t testing.TB, m *manifests) []string {
	var p []string
	for _, o := range m.byKind("Service") {
		var s serviceSpec
		o.spec(t, &s)
		var selected []workloadObj
		for _, w := range m.workloads(t) {
			if w.obj.Kind == "Deployment" && len(s.Selector) > 0 && (labelSelector{MatchLabels: s.Selector}).selects(w.spec.Template.Metadata.Labels) {
				selected = append(selected, w)
			}
		}
		if len(selected) != 1 {
			p = append(p, fmt.Sprintf("%s: selects %d Deployments, want 1", o, len(selected)))
			continue
		}
		for _, sp := range s.Ports {
			found := false
			for _, c := range selected[0].pod().Containers {
				if _, err := resolvePort(c, sp.TargetPort); err == nil {
					found = true
				}
			}
			if !found {
				p = append(p, fmt.Sprintf("%s: port %s targets %s, which no container of %s declares", o, sp.Name, sp.TargetPort, selected[0].obj))
			}
		}
	}
	return p
}

// --- file modes --------------------------------------------------------------

func checkVolumeModes(t testing.TB, m *manifests) []string {
	var p []string
	for _, w := range m.workloads(t) {
		for _, v := range w.pod().Volumes {
			where := fmt.Sprintf("%s volume %s", w.obj, v.Name)
			switch {
			case v.Secret != nil:
				if v.Secret.DefaultMode == nil {
					p = append(p, where+": set defaultMode: 0400 (the default, 0644, lets everyone read it)")
				} else if *v.Secret.DefaultMode&0o077 != 0 {
					p = append(p, fmt.Sprintf("%s: defaultMode %04o lets group or others read the secret", where, *v.Secret.DefaultMode))
				}
				for _, it := range v.Secret.Items {
					if it.Mode != nil && *it.Mode&0o077 != 0 {
						p = append(p, fmt.Sprintf("%s: item %s mode %04o lets group or others read it", where, it.Key, *it.Mode))
					}
				}
			case v.ConfigMap != nil:
				// The key ring refuses a file group or others may write.
				if v.ConfigMap.DefaultMode != nil && *v.ConfigMap.DefaultMode&0o022 != 0 {
					p = append(p, fmt.Sprintf("%s: defaultMode %04o is group/other-writable", where, *v.ConfigMap.DefaultMode))
				}
			}
		}
	}
	return p
}

// strictFileVars are files the binaries refuse when group or others may
// read them (internal/natsauth, internal/auth).
var strictFileVars = []string{"NATS_NKEY", "LEDGER_TOKENS_FILE"}

// checkStrictFiles: the seed and tokens files are 0400 files of the
// process's own user, which a Secret volume cannot provide (0440 with
// fsGroup, root-owned without), so an init container must copy them.
func checkStrictFiles(t testing.TB, m *manifests) []string {
	var p []string
	for _, w := range m.workloads(t) {
		pod := w.pod()
		ns := w.obj.Metadata.Namespace
		files, problems := simulateInit(t, m, ns, pod)
		for _, s := range problems {
			p = append(p, fmt.Sprintf("%s: %s", w.obj, s))
		}
		for _, c := range pod.Containers {
			env := m.containerEnv(t, ns, c)
			uid, _ := effectiveUID(pod, c)
			for _, name := range strictFileVars {
				src, ok := env[name]
				if !ok {
					continue
				}
				where := fmt.Sprintf("%s container %s: %s=%s", w.obj, c.Name, name, src.Value)
				vm, v, ok := mountFor(pod, c, src.Value)
				if !ok {
					p = append(p, where+": on no volume")
					continue
				}
				rel := strings.TrimPrefix(strings.TrimPrefix(src.Value, strings.TrimSuffix(vm.MountPath, "/")), "/")
				switch {
				case v.Secret != nil || v.Projected != nil:
					p = append(p, where+": read straight from a Secret volume, the file is either root-owned (no fsGroup: unreadable for uid "+strconv.FormatInt(uid, 10)+") or group-readable (fsGroup: the kubelet adds 0440 whatever defaultMode says), and the binary refuses a group-readable file; copy it with an init container into an emptyDir")
				case v.EmptyDir == nil:
					p = append(p, fmt.Sprintf("%s: on a %s volume; want a memory emptyDir filled by an init container", where, v.kind()))
				default:
					if v.EmptyDir.Medium != "Memory" {
						p = append(p, where+": keep secrets off the node's disk (emptyDir medium: Memory)")
					}
					if !vm.ReadOnly {
						p = append(p, where+": mount the copied secrets read-only")
					}
					f, ok := files[simKey(v.Name, rel)]
					switch {
					case !ok:
						p = append(p, where+": no init container writes this file")
					case f.Mode&0o077 != 0:
						p = append(p, fmt.Sprintf("%s: the init container leaves mode %04o; the binary wants 0400 or 0600", where, f.Mode))
					case f.UID != uid:
						p = append(p, fmt.Sprintf("%s: the file belongs to uid %d, the process runs as %d", where, f.UID, uid))
					case name == "NATS_NKEY" && !strings.HasSuffix(f.Key, ".nk"):
						p = append(p, fmt.Sprintf("%s: copied from key %s, want a .nk seed", where, f.Key))
					}
				}
			}
			if src, ok := env["LICENSE_PUBLIC_KEYS_FILE"]; ok {
				where := fmt.Sprintf("%s container %s: LICENSE_PUBLIC_KEYS_FILE=%s", w.obj, c.Name, src.Value)
				vm, v, ok := mountFor(pod, c, src.Value)
				switch {
				case !ok:
					p = append(p, where+": on no volume")
				case v.ConfigMap == nil:
					p = append(p, where+": want the vendor-keys ConfigMap")
				default:
					key := strings.TrimPrefix(strings.TrimPrefix(src.Value, strings.TrimSuffix(vm.MountPath, "/")), "/")
					for _, it := range v.ConfigMap.Items {
						if it.Path == key {
							key = it.Key
						}
					}
					if data, ok := m.configMapData(t, ns, v.ConfigMap.Name); !ok || data[key] == "" {
						p = append(p, fmt.Sprintf("%s: ConfigMap %s has no key %s", where, v.ConfigMap.Name, key))
					}
				}
			}
		}
	}
	return p
}

// checkCredentials: credentials come from Secrets, never from literals or
// ConfigMaps.
var credentialVars = regexp.MustCompile(`(DATABASE_URL|PASSWORD|TOKEN|_KEY|SEED)$`)

func checkCredentials(t testing.TB, m *manifests) []string {
	var p []string
	for _, w := range m.workloads(t) {
		for _, c := range w.pod().Containers {
			for name, src := range m.containerEnv(t, w.obj.Metadata.Namespace, c) {
				if credentialVars.MatchString(name) && src.Secret == nil {
					p = append(p, fmt.Sprintf("%s container %s: %s must come from a Secret (secretKeyRef)", w.obj, c.Name, name))
				}
			}
		}
	}
	for _, o := range m.byKind("ConfigMap") {
		for k, v := range o.stringMap(t, "data") {
			if strings.Contains(v, "postgres://") || strings.Contains(v, "postgresql://") {
				p = append(p, fmt.Sprintf("%s: key %s holds a database URL; use a Secret", o, k))
			}
		}
	}
	return p
}

// --- scaling and disruption ------------------------------------------------------

func checkHPA(t testing.TB, m *manifests) []string {
	var p []string
	hpas := m.byKind("HorizontalPodAutoscaler")
	if len(hpas) != 1 {
		return []string{fmt.Sprintf("want one HorizontalPodAutoscaler, found %d", len(hpas))}
	}
	var h hpaSpec
	hpas[0].spec(t, &h)
	ref := h.ScaleTargetRef
	if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != "gatekeeper" {
		p = append(p, fmt.Sprintf("%s targets %s %s %s, want apps/v1 Deployment gatekeeper", hpas[0], ref.APIVersion, ref.Kind, ref.Name))
	}
	if h.MinReplicas == nil || *h.MinReplicas < 3 {
		p = append(p, fmt.Sprintf("%s: minReplicas must be at least 3", hpas[0]))
	} else if h.MaxReplicas < *h.MinReplicas {
		p = append(p, fmt.Sprintf("%s: maxReplicas %d < minReplicas %d", hpas[0], h.MaxReplicas, *h.MinReplicas))
	}
	cpu := false
	for _, mt := range h.Metrics {
		if mt.Type == "Resource" && mt.Resource != nil && mt.Resource.Name == "cpu" &&
			mt.Resource.Target.Type == "Utilization" && mt.Resource.Target.AverageUtilization != nil {
			cpu = true
		}
	}
	if !cpu {
		p = append(p, fmt.Sprintf("%s: want a cpu Utilization metric", hpas[0]))
	}
	if o := m.find("Deployment", hpas[0].Metadata.Namespace, ref.Name); o != nil {
		w := o.workload(t)
		if w.Replicas != nil {
			p = append(p, fmt.Sprintf("%s: leave replicas unset; the HPA owns the count (a replicas field resets it on every apply)", o))
		}
		for _, c := range w.Template.Spec.Containers {
			if c.Resources.Requests["cpu"] == "" {
				p = append(p, fmt.Sprintf("%s container %s: CPU utilization needs a cpu request", o, c.Name))
			}
		}
	} else {
		p = append(p, fmt.Sprintf("%s: target Deployment %s does not exist", hpas[0], ref.Name))
	}
	return p
}

func checkPDB(t testing.TB, m *manifests) []string {
	var p []string
	gk := m.deployment(t, "gatekeeper")
	ledger := m.deployment(t, "ledger")
	selectsGatekeeper := 0
	for _, o := range m.byKind("PodDisruptionBudget") {
		var s pdbSpec
		o.spec(t, &s)
		if (s.MinAvailable == nil) == (s.MaxUnavailable == nil) {
			p = append(p, fmt.Sprintf("%s: set exactly one of minAvailable and maxUnavailable", o))
		}
		gkSel := s.Selector.selects(gk.spec.Template.Metadata.Labels)
		ledgerSel := s.Selector.selects(ledger.spec.Template.Metadata.Labels)
		switch {
		case gkSel && ledgerSel:
			p = append(p, fmt.Sprintf("%s: selects both the gatekeeper and the ledger pods", o))
		case !gkSel && !ledgerSel:
			p = append(p, fmt.Sprintf("%s: selects no pods of this deployment", o))
		case gkSel:
			selectsGatekeeper++
			if !s.Selector.selects(gk.spec.Selector.MatchLabels) {
				p = append(p, fmt.Sprintf("%s: its selector must be covered by the gatekeeper Deployment's selector labels", o))
			}
			if s.MinAvailable != nil && s.MinAvailable.IsInt && s.MinAvailable.Int >= 3 {
				p = append(p, fmt.Sprintf("%s: minAvailable %d leaves no room to drain at 3 replicas", o, s.MinAvailable.Int))
			}
		}
	}
	if selectsGatekeeper != 1 {
		p = append(p, fmt.Sprintf("%d PodDisruptionBudgets select the gatekeeper pods, want 1", selectsGatekeeper))
	}
	return p
}

// --- the workloads themselves --------------------------------------------------

const natsURL = "nats://nats.nats.svc:4222"

func checkLedger(t testing.TB, m *manifests) []string {
	var p []string
	w := m.deployment(t, "ledger")
	if w.spec.Replicas == nil || *w.spec.Replicas != 2 {
		p = append(p, "ledger: want replicas: 2 (one active projector, one standby)")
	}
	if len(w.pod().Containers) != 1 {
		return append(p, "ledger: want one container")
	}
	c := w.pod().Containers[0]
	if binaryOf(c) != "/ledger" || !slices.Equal(subcommand(c), []string{"serve"}) {
		p = append(p, fmt.Sprintf("ledger: runs %s %v, want /ledger serve", binaryOf(c), subcommand(c)))
	}
	env := m.containerEnv(t, namespace, c)
	want := map[string]string{
		"NATS_URL":                 natsURL,
		"NATS_NKEY":                "/secrets/nats/ledger.nk",
		"LEDGER_TOKENS_FILE":       "/secrets/tokens/tokens",
		"LICENSE_PUBLIC_KEYS_FILE": "/config/keys/vendor.keys",
		"LICENSE_STREAM_REPLICAS":  "3",
		"LEDGER_LISTEN":            "0.0.0.0:8080",
	}
	for k, v := range want {
		if env[k].Value != v {
			p = append(p, fmt.Sprintf("ledger: %s=%q, want %q", k, env[k].Value, v))
		}
	}
	tls := env["LEDGER_TLS_CERT"].Value != "" && env["LEDGER_TLS_KEY"].Value != ""
	if !tls && env["LEDGER_INSECURE_HTTP"].Value != "true" {
		p = append(p, "ledger: a non-loopback LEDGER_LISTEN needs LEDGER_TLS_CERT/KEY or LEDGER_INSECURE_HTTP=true")
	}
	if s := env["DATABASE_URL"].Secret; s == nil || s.Name != "ledger-database" || (s.Optional != nil && *s.Optional) {
		p = append(p, "ledger: DATABASE_URL must come from the ledger-database Secret (not optional)")
	}
	for _, bad := range []string{"LEDGER_ALLOW_OWNER", "LEDGER_MIGRATE_DATABASE_URL", "LEDGER_ADMIN_TOKEN", "LEDGER_NATS_LISTEN"} {
		if _, ok := env[bad]; ok {
			p = append(p, fmt.Sprintf("ledger: %s has no place in a scaled install", bad))
		}
	}
	if vals, err := loadNATSValues(repoRootOf(t, m)); err == nil {
		if r := strconv.Itoa(vals.Config.Cluster.Replicas); env["LICENSE_STREAM_REPLICAS"].Value != r {
			p = append(p, fmt.Sprintf("ledger: LICENSE_STREAM_REPLICAS=%s but nats-values.yaml runs %s servers", env["LICENSE_STREAM_REPLICAS"].Value, r))
		}
	}
	return p
}

func checkGatekeeper(t testing.TB, m *manifests) []string {
	var p []string
	w := m.deployment(t, "gatekeeper")
	if len(w.pod().Containers) != 1 {
		return []string{"gatekeeper: want one container"}
	}
	c := w.pod().Containers[0]
	if binaryOf(c) != "/gatekeeper" || len(subcommand(c)) != 0 {
		p = append(p, fmt.Sprintf("gatekeeper: runs %s %v, want /gatekeeper", binaryOf(c), subcommand(c)))
	}
	env := m.containerEnv(t, namespace, c)
	want := map[string]string{
		"NATS_URL":                 natsURL,
		"NATS_NKEY":                "/secrets/nats/reader.nk",
		"LICENSE_PUBLIC_KEYS_FILE": "/config/keys/vendor.keys",
	}
	for k, v := range want {
		if env[k].Value != v {
			p = append(p, fmt.Sprintf("gatekeeper: %s=%q, want %q", k, env[k].Value, v))
		}
	}
	if s := env["DATABASE_URL"].Secret; s != nil && s.Name == "ledger-database" {
		p = append(p, "gatekeeper: do not share the ledger's read-write database user; use a ledger_auditor login")
	}
	if _, ok := env["LICENSE_ENFORCE"]; ok {
		p = append(p, "gatekeeper: LICENSE_ENFORCE overrides the install's enforcement; leave it out of the defaults")
	}
	return p
}

// checkMigrateJob: the Job that runs before every ledger upgrade migrates
// PostgreSQL as the schema owner and, beside it, applies the stream's
// configuration as the NATS stream administrator, which the ledgers may not.
func checkMigrateJob(t testing.TB, m *manifests) []string {
	var p []string
	jobs := m.byKind("Job")
	if len(jobs) != 1 {
		return []string{fmt.Sprintf("want one Job, found %d", len(jobs))}
	}
	w := workloadObj{obj: jobs[0], spec: jobs[0].workload(t)}
	if rp := w.pod().RestartPolicy; rp != "Never" && rp != "OnFailure" {
		p = append(p, fmt.Sprintf("%s: restartPolicy %q", w.obj, rp))
	}
	var migrate, apply []container
	for _, c := range w.pod().Containers {
		switch {
		case binaryOf(c) == "/ledger" && slices.Equal(subcommand(c), []string{"migrate", "up"}):
			migrate = append(migrate, c)
		case binaryOf(c) == "/ledger" && slices.Equal(subcommand(c), []string{"stream", "apply"}):
			apply = append(apply, c)
		default:
			p = append(p, fmt.Sprintf("%s container %s: runs %s %v, want /ledger migrate up or /ledger stream apply", w.obj, c.Name, binaryOf(c), subcommand(c)))
		}
	}
	if len(migrate) != 1 || len(apply) != 1 {
		return append(p, fmt.Sprintf("%s: want one container running /ledger migrate up and one /ledger stream apply, found %d and %d", w.obj, len(migrate), len(apply)))
	}
	env := m.containerEnv(t, namespace, migrate[0])
	s := env["LEDGER_MIGRATE_DATABASE_URL"].Secret
	switch {
	case s == nil:
		p = append(p, fmt.Sprintf("%s: LEDGER_MIGRATE_DATABASE_URL must come from a Secret", w.obj))
	case s.Name == "ledger-database":
		p = append(p, fmt.Sprintf("%s: migrate as the schema owner, not as ledger serve's user", w.obj))
	}
	if _, ok := env["DATABASE_URL"]; ok {
		p = append(p, fmt.Sprintf("%s: migrate never uses DATABASE_URL", w.obj))
	}
	return append(p, checkStreamApply(t, m, w, apply[0])...)
}

// checkStreamApply: ledger stream apply reaches the chart's NATS as the
// admin user, with the seed of the admin Secret (never the ledger's), and
// the replica count the NATS cluster has.
func checkStreamApply(t testing.TB, m *manifests, w workloadObj, c container) []string {
	var p []string
	where := fmt.Sprintf("%s container %s", w.obj, c.Name)
	env := m.containerEnv(t, namespace, c)
	if _, ok := env["NATS_URL"]; !ok {
		p = append(p, where+": no NATS_URL")
	}
	files, _ := simulateInit(t, m, namespace, w.pod())
	seed := env["NATS_NKEY"].Value
	vm, v, ok := mountFor(w.pod(), c, seed)
	if !ok {
		return append(p, fmt.Sprintf("%s: NATS_NKEY=%q on no volume", where, seed))
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(seed, strings.TrimSuffix(vm.MountPath, "/")), "/")
	if f, ok := files[simKey(v.Name, rel)]; !ok || f.Secret != "ledger-nats-admin-nkey" || f.Key != "admin.nk" {
		p = append(p, fmt.Sprintf("%s: NATS_NKEY=%s is %+v, want admin.nk of the Secret ledger-nats-admin-nkey (the stream administrator)", where, seed, f))
	}
	if vals, err := loadNATSValues(repoRootOf(t, m)); err == nil {
		if r := strconv.Itoa(vals.Config.Cluster.Replicas); env["LICENSE_STREAM_REPLICAS"].Value != r {
			p = append(p, fmt.Sprintf("%s: LICENSE_STREAM_REPLICAS=%q but nats-values.yaml runs %s servers", where, env["LICENSE_STREAM_REPLICAS"].Value, r))
		}
	}
	for _, w := range m.workloads(t) {
		if w.obj.Kind == "Job" {
			continue
		}
		for _, v := range w.pod().Volumes {
			if v.Secret != nil && v.Secret.SecretName == "ledger-nats-admin-nkey" {
				p = append(p, fmt.Sprintf("%s volume %s: only the Job holds the stream administrator's seed", w.obj, v.Name))
			}
		}
	}
	return p
}

// checkImages: one image for every workload, with a tag; init containers
// pinned too; commands are binaries the Dockerfile puts in the image.
func checkImages(t testing.TB, m *manifests) []string {
	var p []string
	df, err := parseDockerfile(string(readRepoFile(t, "Dockerfile")))
	if err != nil {
		return []string{err.Error()}
	}
	binaries := df.finalBinaries()
	images := map[string]bool{}
	tagged := func(where, image string) {
		name := image[strings.LastIndex(image, "/")+1:]
		i := strings.LastIndex(name, ":")
		if i < 0 || name[i+1:] == "latest" || name[i+1:] == "" {
			p = append(p, fmt.Sprintf("%s: image %q needs a version tag", where, image))
		}
	}
	for _, w := range m.workloads(t) {
		for _, c := range w.pod().InitContainers {
			tagged(fmt.Sprintf("%s init container %s", w.obj, c.Name), c.Image)
		}
		for _, c := range w.pod().Containers {
			where := fmt.Sprintf("%s container %s", w.obj, c.Name)
			tagged(where, c.Image)
			images[c.Image] = true
			if !slices.Contains(binaries, binaryOf(c)) {
				p = append(p, fmt.Sprintf("%s: runs %s, which the Dockerfile's final stage does not hold (%v)", where, binaryOf(c), binaries))
			}
		}
	}
	if len(images) != 1 {
		p = append(p, fmt.Sprintf("the ledger, gatekeeper and migrate containers use %d images, want the one image the Dockerfile builds", len(images)))
	}
	return p
}

// checkNATSReference: NATS_URL everywhere is the chart's client Service.
func checkNATSReference(t testing.TB, m *manifests) []string {
	var p []string
	for _, w := range m.workloads(t) {
		for _, c := range w.pod().Containers {
			env := m.containerEnv(t, w.obj.Metadata.Namespace, c)
			if u, ok := env["NATS_URL"]; ok && u.Value != natsURL {
				p = append(p, fmt.Sprintf("%s container %s: NATS_URL=%s, want %s (release nats in namespace %s)", w.obj, c.Name, u.Value, natsURL, natsNamespace))
			}
		}
	}
	return p
}

// --- the checks can fail -------------------------------------------------------

type edit struct {
	file, old, new string
	all            bool
}

// brokenCopy copies deploy/kubernetes (and nothing else) under a temporary
// root, applies the edits and removes the files listed, then loads it.
func brokenCopy(t *testing.T, edits []edit, remove ...string) *manifests {
	t.Helper()
	src := filepath.Join(repoRoot(t), kubeDir)
	root := t.TempDir()
	dst := filepath.Join(root, kubeDir)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".yaml") || slices.Contains(remove, e.Name()) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		s := string(data)
		for _, ed := range edits {
			if ed.file != e.Name() {
				continue
			}
			if !strings.Contains(s, ed.old) {
				t.Fatalf("%s no longer contains %q: update this case", ed.file, ed.old)
			}
			if ed.all {
				s = strings.ReplaceAll(s, ed.old, ed.new)
			} else {
				s = strings.Replace(s, ed.old, ed.new, 1)
			}
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m, errs := readManifests(root)
	if len(errs) > 0 {
		t.Fatalf("the broken copy does not load: %v", errs)
	}
	return m
}

func TestKubernetesChecksCanFail(t *testing.T) {
	seed, err := natsauth.GenerateIdentity(natsauth.RoleLedger)
	if err != nil {
		t.Fatal(err)
	}
	const (
		ledgerDep = "ledger-deployment.yaml"
		gkDep     = "gatekeeper-deployment.yaml"
		ledgerCM  = "configmap-ledger.yaml"
		gkCM      = "configmap-gatekeeper.yaml"
		gkNP      = "networkpolicy-gatekeeper.yaml"
	)
	cases := []struct {
		name   string
		check  check
		edits  []edit
		remove []string
		want   string
	}{
		{"hpa file gone", checkKinds, nil, []string{"gatekeeper-hpa.yaml"}, "want at least 1 HorizontalPodAutoscaler"},
		{"hpa file gone (kustomize)", checkKustomization, nil, []string{"gatekeeper-hpa.yaml"}, "resource gatekeeper-hpa.yaml does not exist"},
		{"unlisted resource", checkKustomization, []edit{{file: "kustomization.yaml", old: "  - ledger-pdb.yaml\n"}}, nil, "ledger-pdb.yaml is not listed"},
		{"job in kustomize", checkKustomization, []edit{{file: "kustomization.yaml", old: "  - ledger-pdb.yaml\n", new: "  - ledger-pdb.yaml\n  - job-migrate.yaml\n"}}, nil, "job-migrate.yaml must not be a kustomize resource"},
		{"writable root", checkSecurity, []edit{{file: ledgerDep, old: "readOnlyRootFilesystem: true", new: "readOnlyRootFilesystem: false"}}, nil, "install-secrets: readOnlyRootFilesystem must be true"},
		{"capabilities", checkSecurity, []edit{{file: gkDep, old: `drop: ["ALL"]`, new: `drop: ["NET_RAW"]`, all: true}}, nil, "capabilities must drop ALL"},
		{"escalation", checkSecurity, []edit{{file: ledgerDep, old: "allowPrivilegeEscalation: false", new: "allowPrivilegeEscalation: true", all: true}}, nil, "allowPrivilegeEscalation must be false"},
		{"root job", checkSecurity, []edit{{file: "job-migrate.yaml", old: "runAsNonRoot: true", new: "runAsNonRoot: false", all: true}}, nil, "runAsNonRoot must be true"},
		{"root uid", checkSecurity, []edit{{file: "job-migrate.yaml", old: "runAsUser: 65532", new: "runAsUser: 0", all: true}}, nil, "non-zero runAsUser"},
		{"seccomp", checkSecurity, []edit{{file: gkDep, old: "type: RuntimeDefault", new: "type: Unconfined", all: true}}, nil, "seccompProfile must be RuntimeDefault"},
		{"service links", checkSecurity, []edit{{file: ledgerDep, old: "enableServiceLinks: false", new: "enableServiceLinks: true"}}, nil, "enableServiceLinks: false"},
		{"probe scheme", checkProbesAndPorts, []edit{{file: ledgerCM, old: "  LOG_LEVEL: info\n", new: "  LOG_LEVEL: info\n  LEDGER_TLS_CERT: /tls/tls.crt\n  LEDGER_TLS_KEY: /tls/tls.key\n"}}, nil, "probe uses HTTP; the listener serves HTTPS"},
		{"readiness path", checkProbesAndPorts, []edit{{file: ledgerDep, old: "path: /readyz", new: "path: /healthz"}}, nil, "readiness probe gets /healthz, want /readyz"},
		{"liveness port", checkProbesAndPorts, []edit{{file: gkDep, old: "port: admin", new: "port: proxy"}}, nil, "liveness probe targets port 8081, but GATEKEEPER_ADMIN_LISTEN listens on 9091"},
		{"loopback listener", checkProbesAndPorts, []edit{{file: ledgerCM, old: "LEDGER_LISTEN: 0.0.0.0:8080", new: "LEDGER_LISTEN: 127.0.0.1:8080"}}, nil, "is not reachable from the kubelet"},
		{"no admin listener", checkProbesAndPorts, []edit{{file: gkCM, old: "  GATEKEEPER_ADMIN_LISTEN: 0.0.0.0:9091\n"}}, nil, "set GATEKEEPER_ADMIN_LISTEN"},
		{"service port", checkServices, []edit{{file: "gatekeeper-service.yaml", old: "targetPort: authz", new: "targetPort: authz2"}}, nil, "targets authz2"},
		{"group-readable secret", checkVolumeModes, []edit{{file: ledgerDep, old: "defaultMode: 0400", new: "defaultMode: 0440"}}, nil, "defaultMode 0440 lets group or others read"},
		{"default secret mode", checkVolumeModes, []edit{{file: gkDep, old: "            defaultMode: 0400\n"}}, nil, "set defaultMode: 0400"},
		{"no chmod", checkStrictFiles, []edit{
			{file: ledgerDep, old: "              umask 077\n"},
			{file: ledgerDep, old: "              chmod 0400 /secrets/nats/ledger.nk /secrets/tokens/tokens\n"}}, nil, "the init container leaves mode 0440"},
		{"no fsGroup", checkStrictFiles, []edit{{file: ledgerDep, old: "        fsGroup: 65532\n"}}, nil, "uid 65532 cannot read /secrets-src/nats/ledger.nk"},
		{"secret read directly", checkStrictFiles, []edit{{file: gkDep,
			old: "            - name: secrets\n              mountPath: /secrets\n              readOnly: true",
			new: "            - name: nats-nkey-src\n              mountPath: /secrets/nats\n              readOnly: true"}}, nil, "read straight from a Secret volume"},
		{"copy from a missing key", checkStrictFiles, []edit{{file: ledgerDep, old: "cp /secrets-src/tokens/tokens ", new: "cp /secrets-src/tokens/token "}}, nil, "Secret volume tokens-src has no file token"},
		{"unsupported script", checkStrictFiles, []edit{{file: gkDep, old: "umask 077\n", new: "umask 077 && true\n"}}, nil, "not simulated"},
		{"uncopied file", checkStrictFiles, []edit{{file: ledgerCM, old: "LEDGER_TOKENS_FILE: /secrets/tokens/tokens", new: "LEDGER_TOKENS_FILE: /secrets/tokens/all"}}, nil, "no init container writes this file"},
		{"real seed in a template", checkSecretTemplates, []edit{{file: "secret-nats-nkeys.example.yaml", old: "REPLACE-WITH-THE-LEDGER-USER-SEED", new: string(seed.Seed)}}, nil, "holds a real nkey seed"},
		{"secret outside templates", checkSecretTemplates, []edit{{file: ledgerCM, old: "  LOG_LEVEL: info\n", new: "  LOG_LEVEL: info\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: x\n  namespace: licenseledger\nstringData:\n  a: REPLACE\n"}}, nil, "Secrets belong only in secret-*.example.yaml"},
		{"broken tokens template", checkSecretTemplates, []edit{{file: "secret-tokens.example.yaml", old: "    # <sha256 hex", new: "    REPLACE <sha256 hex"}}, nil, "not a valid tokens file"},
		{"unknown secret", checkReferences, []edit{{file: ledgerDep, old: "name: ledger-database", new: "name: ledger-db"}}, nil, "Secret licenseledger/ledger-db has no secret-*.example.yaml template"},
		{"unknown configmap key", checkReferences, []edit{{file: ledgerDep, old: "                path: tokens\n", new: "                path: tokens\n              - key: extra\n                path: extra\n"}}, nil, "has no key extra"},
		{"database URL in a ConfigMap", checkCredentials, []edit{{file: gkCM, old: "  LOG_LEVEL: info\n", new: "  LOG_LEVEL: info\n  DATABASE_URL: postgres://u:p@db/ledger\n"}}, nil, "holds a database URL"},
		{"literal credential", checkCredentials, []edit{{file: "job-migrate.yaml", old: "            - name: LEDGER_MIGRATE_DATABASE_URL\n              valueFrom:\n                secretKeyRef:\n                  name: ledger-migrate-database\n                  key: url\n", new: "            - name: LEDGER_MIGRATE_DATABASE_URL\n              value: postgres://owner@db/ledger\n"}}, nil, "LEDGER_MIGRATE_DATABASE_URL must come from a Secret"},
		{"hpa target", checkHPA, []edit{{file: "gatekeeper-hpa.yaml", old: "    name: gatekeeper\n  minReplicas", new: "    name: ledger\n  minReplicas"}}, nil, "want apps/v1 Deployment gatekeeper"},
		{"hpa minimum", checkHPA, []edit{{file: "gatekeeper-hpa.yaml", old: "minReplicas: 3", new: "minReplicas: 1"}}, nil, "minReplicas must be at least 3"},
		{"replicas beside the hpa", checkHPA, []edit{{file: gkDep, old: "  revisionHistoryLimit: 5\n", new: "  replicas: 3\n  revisionHistoryLimit: 5\n"}}, nil, "leave replicas unset"},
		{"pdb selects the ledger", checkPDB, []edit{{file: "gatekeeper-pdb.yaml", old: "      app.kubernetes.io/name: gatekeeper", new: "      app.kubernetes.io/name: ledger"}}, nil, "0 PodDisruptionBudgets select the gatekeeper pods"},
		{"pdb selects everything", checkPDB, []edit{{file: "gatekeeper-pdb.yaml", old: "      app.kubernetes.io/name: gatekeeper\n"}}, nil, "selects both the gatekeeper and the ledger pods"},
		{"stream replicas", checkLedger, []edit{{file: ledgerCM, old: `LICENSE_STREAM_REPLICAS: "3"`, new: `LICENSE_STREAM_REPLICAS: "1"`}}, nil, `LICENSE_STREAM_REPLICAS="1", want "3"`},
		{"plain HTTP without the flag", checkLedger, []edit{{file: ledgerCM, old: "  LEDGER_INSECURE_HTTP: \"true\"\n"}}, nil, "needs LEDGER_TLS_CERT/KEY or LEDGER_INSECURE_HTTP=true"},
		{"one ledger", checkLedger, []edit{{file: ledgerDep, old: "replicas: 2", new: "replicas: 1"}}, nil, "want replicas: 2"},
		{"enforcement override", checkGatekeeper, []edit{{file: gkCM, old: "  LOG_LEVEL: info\n", new: "  LOG_LEVEL: info\n  LICENSE_ENFORCE: \"1\"\n"}}, nil, "LICENSE_ENFORCE overrides"},
		{"migrate as the app user", checkMigrateJob, []edit{{file: "job-migrate.yaml", old: "name: ledger-migrate-database", new: "name: ledger-database"}}, nil, "migrate as the schema owner"},
		{"no stream apply", checkMigrateJob, []edit{{file: "job-migrate.yaml", old: `args: ["stream", "apply"]`, new: `args: ["stream", "check"]`}}, nil, "want /ledger migrate up or /ledger stream apply"},
		{"stream apply as the ledger", checkMigrateJob, []edit{{file: "job-migrate.yaml", old: "secretName: ledger-nats-admin-nkey", new: "secretName: ledger-nats-nkey"},
			{file: "job-migrate.yaml", old: "- key: admin.nk", new: "- key: ledger.nk"}}, nil, "want admin.nk of the Secret ledger-nats-admin-nkey"},
		{"stream apply with one replica", checkMigrateJob, []edit{{file: "job-migrate.yaml", old: "              value: \"3\"", new: "              value: \"1\""}}, nil, `LICENSE_STREAM_REPLICAS="1" but nats-values.yaml runs 3 servers`},
		{"admin seed in the ledger's pods", checkMigrateJob, []edit{{file: "ledger-deployment.yaml", old: "secretName: ledger-nats-nkey", new: "secretName: ledger-nats-admin-nkey"}}, nil, "only the Job holds the stream administrator's seed"},
		{"latest image", checkImages, []edit{{file: "job-migrate.yaml", old: "ledger:0.1.0", new: "ledger:latest"}}, nil, "needs a version tag"},
		{"unknown binary", checkImages, []edit{{file: gkDep, old: `command: ["/gatekeeper"]`, new: `command: ["/gate"]`}}, nil, "runs /gate, which the Dockerfile's final stage does not hold"},
		{"another NATS", checkNATSReference, []edit{{file: gkCM, old: "NATS_URL: nats://nats.nats.svc:4222", new: "NATS_URL: nats://nats:4222"}}, nil, "want nats://nats.nats.svc:4222"},
		{"network policy gone", checkKinds, nil, []string{gkNP}, "want at least 1 NetworkPolicy"},
		{"network policy gone (isolation)", checkNetworkPolicy, nil, []string{gkNP}, "every pod can reach /authz"},
		{"authz from anywhere", checkNetworkPolicy, []edit{{file: gkNP, old: "    - from:\n        - namespaceSelector:\n            matchLabels:\n              kubernetes.io/metadata.name: ingress-nginx\n          podSelector:\n            matchLabels:\n              app.kubernetes.io/name: ingress-nginx\n      ports:", new: "    - ports:"}}, nil, "no from: lets in every source"},
		{"authz from an address block", checkNetworkPolicy, []edit{{file: gkNP, old: "        - namespaceSelector:\n            matchLabels:\n              kubernetes.io/metadata.name: ingress-nginx\n", new: "        - ipBlock:\n            cidr: 10.0.0.0/8\n"}}, nil, "ipBlock"},
		{"authz from monitoring", checkNetworkPolicy, []edit{{file: gkNP, old: "        - port: admin\n", new: "        - port: admin\n        - port: 8082\n"}}, nil, "port authz lets in namespace monitoring"},
		{"every port", checkNetworkPolicy, []edit{{file: gkNP, old: "      ports:\n        - port: admin\n          protocol: TCP\n"}}, nil, "no ports: opens every port"},
		{"policy selects nothing", checkNetworkPolicy, []edit{{file: gkNP, old: "      app.kubernetes.io/name: gatekeeper\n      app.kubernetes.io/part-of", new: "      app.kubernetes.io/name: gate\n      app.kubernetes.io/part-of"}}, nil, "every pod can reach /authz"},
		{"whole pod network trusted", checkTrust, []edit{{file: gkCM, old: "GATEKEEPER_TRUSTED_PROXIES: 192.0.2.0/24", new: "GATEKEEPER_TRUSTED_PROXIES: 10.0.0.0/8"}}, nil, "GATEKEEPER_TRUSTED_PROXIES trusts 10.0.0.0/8"},
		{"authz asked by anyone", checkTrust, []edit{{file: gkCM, old: "GATEKEEPER_AUTHZ_TRUSTED: 192.0.2.0/24", new: "GATEKEEPER_AUTHZ_TRUSTED: 0.0.0.0/0"}}, nil, "GATEKEEPER_AUTHZ_TRUSTED trusts 0.0.0.0/0"},
		{"authz peers unset", checkTrust, []edit{{file: gkCM, old: "  GATEKEEPER_AUTHZ_TRUSTED: 192.0.2.0/24\n"}}, nil, "set GATEKEEPER_AUTHZ_TRUSTED"},
		{"org header peers unset", checkTrust, []edit{{file: gkCM, old: "  GATEKEEPER_TRUSTED_PROXIES: 192.0.2.0/24\n"}}, nil, "set GATEKEEPER_TRUSTED_PROXIES"},
		{"unknown variable", checkEnvNames, []edit{{file: ledgerCM, old: "LEDGER_INSECURE_HTTP:", new: "LEDGER_INSECURE_HTTPS:"}}, nil, "LEDGER_INSECURE_HTTPS is not read by /ledger serve"},
		{"variable of the other binary", checkEnvNames, []edit{{file: gkCM, old: "  LOG_LEVEL: info\n", new: "  LOG_LEVEL: info\n  LEDGER_LISTEN: 0.0.0.0:8080\n"}}, nil, "LEDGER_LISTEN is not read by /gatekeeper"},
		{"migrate reads no log settings", checkEnvNames, []edit{{file: "job-migrate.yaml", old: "                  key: url\n", new: "                  key: url\n            - name: LOG_FORMAT\n              value: json\n"}}, nil, "LOG_FORMAT is not read by /ledger migrate up"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := brokenCopy(t, c.edits, c.remove...)
			got := strings.Join(c.check(t, m), "\n")
			if !strings.Contains(got, c.want) {
				t.Errorf("want a problem mentioning %q, got:\n%s", c.want, got)
			}
		})
	}
	// Every check of TestKubernetes is exercised above.
	covered := map[string]bool{}
	for _, c := range cases {
		for name, fn := range kubeChecks {
			if fmt.Sprintf("%p", fn) == fmt.Sprintf("%p", c.check) {
				covered[name] = true
			}
		}
	}
	for name := range kubeChecks {
		if !covered[name] {
			t.Errorf("check %q has no failing case", name)
		}
	}
}
