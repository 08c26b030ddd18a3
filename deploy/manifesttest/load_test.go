package manifesttest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"
)

// Paths relative to the repository root.
const (
	kubeDir        = "deploy/kubernetes"
	natsValuesFile = "deploy/kubernetes/nats-values.yaml"
	namespace      = "licenseledger"
)

// repoRoot is the repository root: two levels above this package.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found from %s: %v", root, err)
	}
	return root
}

func readRepoFile(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// --- Kubernetes object model: only the fields the tests look at. ---------

type objectMeta struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type labelSelector struct {
	MatchLabels      map[string]string `yaml:"matchLabels"`
	MatchExpressions []any             `yaml:"matchExpressions"`
}

// selects reports whether the selector matches labels (matchLabels only:
// the manifests use no expressions, and a selector with some is refused).
func (s labelSelector) selects(labels map[string]string) bool {
	if len(s.MatchLabels) == 0 || len(s.MatchExpressions) > 0 {
		return false
	}
	for k, v := range s.MatchLabels {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// intOrString is a Kubernetes IntOrString (ports, PDB budgets).
type intOrString struct {
	IsInt bool
	Int   int
	Str   string
}

func (v *intOrString) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a number or a string", n.Line)
	}
	if n.Tag == "!!int" {
		i, err := strconv.Atoi(n.Value)
		if err != nil {
			return err
		}
		*v = intOrString{IsInt: true, Int: i}
		return nil
	}
	*v = intOrString{Str: n.Value}
	return nil
}

func (v intOrString) String() string {
	if v.IsInt {
		return strconv.Itoa(v.Int)
	}
	return v.Str
}

type workloadSpec struct {
	Replicas *int          `yaml:"replicas"`
	Selector labelSelector `yaml:"selector"`
	Template podTemplate   `yaml:"template"`
}

type podTemplate struct {
	Metadata objectMeta `yaml:"metadata"`
	Spec     podSpec    `yaml:"spec"`
}

type podSpec struct {
	AutomountServiceAccountToken *bool              `yaml:"automountServiceAccountToken"`
	EnableServiceLinks           *bool              `yaml:"enableServiceLinks"`
	HostNetwork                  bool               `yaml:"hostNetwork"`
	HostPID                      bool               `yaml:"hostPID"`
	HostIPC                      bool               `yaml:"hostIPC"`
	RestartPolicy                string             `yaml:"restartPolicy"`
	SecurityContext              podSecurityContext `yaml:"securityContext"`
	InitContainers               []container        `yaml:"initContainers"`
	Containers                   []container        `yaml:"containers"`
	Volumes                      []volume           `yaml:"volumes"`
}

type seccompProfile struct {
	Type string `yaml:"type"`
}

type podSecurityContext struct {
	RunAsNonRoot   *bool           `yaml:"runAsNonRoot"`
	RunAsUser      *int64          `yaml:"runAsUser"`
	RunAsGroup     *int64          `yaml:"runAsGroup"`
	FSGroup        *int64          `yaml:"fsGroup"`
	SeccompProfile *seccompProfile `yaml:"seccompProfile"`
}

type securityContext struct {
	RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
	RunAsUser                *int64 `yaml:"runAsUser"`
	RunAsGroup               *int64 `yaml:"runAsGroup"`
	ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
	AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
	Privileged               *bool  `yaml:"privileged"`
	Capabilities             *struct {
		Add  []string `yaml:"add"`
		Drop []string `yaml:"drop"`
	} `yaml:"capabilities"`
	SeccompProfile *seccompProfile `yaml:"seccompProfile"`
}

type keyRef struct {
	Name     string `yaml:"name"`
	Key      string `yaml:"key"`
	Optional *bool  `yaml:"optional"`
}

type envVar struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom *struct {
		SecretKeyRef    *keyRef `yaml:"secretKeyRef"`
		ConfigMapKeyRef *keyRef `yaml:"configMapKeyRef"`
		FieldRef        any     `yaml:"fieldRef"`
	} `yaml:"valueFrom"`
}

type envFromSource struct {
	Prefix       string `yaml:"prefix"`
	ConfigMapRef *struct {
		Name string `yaml:"name"`
	} `yaml:"configMapRef"`
	SecretRef *struct {
		Name string `yaml:"name"`
	} `yaml:"secretRef"`
}

type probe struct {
	HTTPGet *struct {
		Path   string      `yaml:"path"`
		Port   intOrString `yaml:"port"`
		Scheme string      `yaml:"scheme"`
	} `yaml:"httpGet"`
	PeriodSeconds    int `yaml:"periodSeconds"`
	FailureThreshold int `yaml:"failureThreshold"`
}

type volumeMount struct {
	Name      string `yaml:"name"`
	MountPath string `yaml:"mountPath"`
	ReadOnly  bool   `yaml:"readOnly"`
	SubPath   string `yaml:"subPath"`
}

type container struct {
	Name            string           `yaml:"name"`
	Image           string           `yaml:"image"`
	Command         []string         `yaml:"command"`
	Args            []string         `yaml:"args"`
	Env             []envVar         `yaml:"env"`
	EnvFrom         []envFromSource  `yaml:"envFrom"`
	Ports           []containerPort  `yaml:"ports"`
	LivenessProbe   *probe           `yaml:"livenessProbe"`
	ReadinessProbe  *probe           `yaml:"readinessProbe"`
	StartupProbe    *probe           `yaml:"startupProbe"`
	SecurityContext *securityContext `yaml:"securityContext"`
	VolumeMounts    []volumeMount    `yaml:"volumeMounts"`
	Resources       struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
}

type containerPort struct {
	Name          string `yaml:"name"`
	ContainerPort int    `yaml:"containerPort"`
	Protocol      string `yaml:"protocol"`
}

type keyToPath struct {
	Key  string `yaml:"key"`
	Path string `yaml:"path"`
	Mode *int   `yaml:"mode"`
}

type volume struct {
	Name   string `yaml:"name"`
	Secret *struct {
		SecretName  string      `yaml:"secretName"`
		DefaultMode *int        `yaml:"defaultMode"`
		Items       []keyToPath `yaml:"items"`
		Optional    *bool       `yaml:"optional"`
	} `yaml:"secret"`
	ConfigMap *struct {
		Name        string      `yaml:"name"`
		DefaultMode *int        `yaml:"defaultMode"`
		Items       []keyToPath `yaml:"items"`
	} `yaml:"configMap"`
	EmptyDir *struct {
		Medium    string `yaml:"medium"`
		SizeLimit string `yaml:"sizeLimit"`
	} `yaml:"emptyDir"`
	Projected             any `yaml:"projected"`
	HostPath              any `yaml:"hostPath"`
	PersistentVolumeClaim any `yaml:"persistentVolumeClaim"`
}

func (v volume) kind() string {
	switch {
	case v.Secret != nil:
		return "secret"
	case v.ConfigMap != nil:
		return "configMap"
	case v.EmptyDir != nil:
		return "emptyDir"
	case v.Projected != nil:
		return "projected"
	case v.HostPath != nil:
		return "hostPath"
	case v.PersistentVolumeClaim != nil:
		return "persistentVolumeClaim"
	}
	return "unknown"
}

type serviceSpec struct {
	Type     string            `yaml:"type"`
	Selector map[string]string `yaml:"selector"`
	Ports    []struct {
		Name       string      `yaml:"name"`
		Port       int         `yaml:"port"`
		TargetPort intOrString `yaml:"targetPort"`
	} `yaml:"ports"`
}

type hpaSpec struct {
	ScaleTargetRef struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Name       string `yaml:"name"`
	} `yaml:"scaleTargetRef"`
	MinReplicas *int `yaml:"minReplicas"`
	MaxReplicas int  `yaml:"maxReplicas"`
	Metrics     []struct {
		Type     string `yaml:"type"`
		Resource *struct {
			Name   string `yaml:"name"`
			Target struct {
				Type               string `yaml:"type"`
				AverageUtilization *int   `yaml:"averageUtilization"`
			} `yaml:"target"`
		} `yaml:"resource"`
	} `yaml:"metrics"`
}

type pdbSpec struct {
	MinAvailable   *intOrString  `yaml:"minAvailable"`
	MaxUnavailable *intOrString  `yaml:"maxUnavailable"`
	Selector       labelSelector `yaml:"selector"`
}

type networkPolicyPeer struct {
	NamespaceSelector *labelSelector `yaml:"namespaceSelector"`
	PodSelector       *labelSelector `yaml:"podSelector"`
	IPBlock           any            `yaml:"ipBlock"`
}

type networkPolicySpec struct {
	PodSelector labelSelector `yaml:"podSelector"`
	PolicyTypes []string      `yaml:"policyTypes"`
	Ingress     []struct {
		From  []networkPolicyPeer `yaml:"from"`
		Ports []struct {
			Port     *intOrString `yaml:"port"`
			Protocol string       `yaml:"protocol"`
		} `yaml:"ports"`
	} `yaml:"ingress"`
}

// object is one YAML document of deploy/kubernetes.
type object struct {
	File       string // base name
	Doc        int    // index of the document in its file
	APIVersion string
	Kind       string
	Metadata   objectMeta
	node       *yaml.Node
}

func (o *object) String() string {
	return fmt.Sprintf("%s %s/%s (%s #%d)", o.Kind, o.Metadata.Namespace, o.Metadata.Name, o.File, o.Doc)
}

// decode decodes the whole document into v.
func (o *object) decode(t testing.TB, v any) {
	t.Helper()
	if err := o.node.Decode(v); err != nil {
		t.Fatalf("%s: %v", o, err)
	}
}

func (o *object) spec(t testing.TB, v any) {
	t.Helper()
	var doc struct {
		Spec yaml.Node `yaml:"spec"`
	}
	o.decode(t, &doc)
	if doc.Spec.Kind == 0 {
		t.Fatalf("%s: no spec", o)
	}
	if err := doc.Spec.Decode(v); err != nil {
		t.Fatalf("%s: spec: %v", o, err)
	}
}

func (o *object) workload(t testing.TB) workloadSpec {
	t.Helper()
	var w workloadSpec
	o.spec(t, &w)
	return w
}

// stringMap is the data (or stringData) of a ConfigMap or Secret.
func (o *object) stringMap(t testing.TB, field string) map[string]string {
	t.Helper()
	var doc map[string]yaml.Node
	o.decode(t, &doc)
	n, ok := doc[field]
	if !ok {
		return nil
	}
	var m map[string]string
	if err := n.Decode(&m); err != nil {
		t.Fatalf("%s: %s: %v", o, field, err)
	}
	return m
}

// parseDocuments splits a multi-document YAML stream; empty documents are
// skipped.
func parseDocuments(data []byte) ([]*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if n.Kind == yaml.DocumentNode && len(n.Content) == 1 && n.Content[0].Tag == "!!null" {
			continue
		}
		if n.Kind == 0 {
			continue
		}
		docs = append(docs, &n)
	}
}

// manifests holds every document of deploy/kubernetes except the Helm
// values, which are no Kubernetes object.
type manifests struct {
	root    string // the repository root they were read from
	objects []*object
	files   []string // base names of every *.yaml, nats-values.yaml included
}

var (
	loadOnce   sync.Once
	loaded     *manifests
	loadErrors []string
)

func loadManifests(t testing.TB) *manifests {
	t.Helper()
	root := repoRoot(t)
	loadOnce.Do(func() {
		loaded, loadErrors = readManifests(root)
	})
	if len(loadErrors) > 0 {
		t.Fatalf("deploy/kubernetes does not load:\n%s", strings.Join(loadErrors, "\n"))
	}
	return loaded
}

// readManifests reads root/deploy/kubernetes.
func readManifests(root string) (*manifests, []string) {
	var errs []string
	m := &manifests{root: root}
	dir := filepath.Join(root, kubeDir)
	paths, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, []string{err.Error()}
	}
	yml, _ := filepath.Glob(filepath.Join(dir, "*.yml"))
	for _, p := range yml {
		errs = append(errs, fmt.Sprintf("%s: use the .yaml extension", filepath.Base(p)))
	}
	sort.Strings(paths)
	for _, p := range paths {
		base := filepath.Base(p)
		m.files = append(m.files, base)
		data, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		docs, err := parseDocuments(data)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", base, err))
			continue
		}
		if base == filepath.Base(natsValuesFile) {
			continue
		}
		if len(docs) == 0 {
			errs = append(errs, fmt.Sprintf("%s: no document", base))
		}
		for i, n := range docs {
			var head struct {
				APIVersion string     `yaml:"apiVersion"`
				Kind       string     `yaml:"kind"`
				Metadata   objectMeta `yaml:"metadata"`
			}
			if err := n.Decode(&head); err != nil {
				errs = append(errs, fmt.Sprintf("%s #%d: %v", base, i, err))
				continue
			}
			o := &object{File: base, Doc: i, APIVersion: head.APIVersion, Kind: head.Kind, Metadata: head.Metadata, node: n}
			if o.APIVersion == "" || o.Kind == "" {
				errs = append(errs, fmt.Sprintf("%s #%d: apiVersion and kind are required", base, i))
				continue
			}
			if o.Kind != "Kustomization" && o.Metadata.Name == "" {
				errs = append(errs, fmt.Sprintf("%s: metadata.name is required", o))
			}
			m.objects = append(m.objects, o)
		}
	}
	return m, errs
}

func (m *manifests) byKind(kind string) []*object {
	var out []*object
	for _, o := range m.objects {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

func (m *manifests) find(kind, ns, name string) *object {
	for _, o := range m.objects {
		if o.Kind == kind && o.Metadata.Namespace == ns && o.Metadata.Name == name {
			return o
		}
	}
	return nil
}

// isSecretExample reports whether base is a Secret template file.
func isSecretExample(base string) bool {
	return strings.HasPrefix(base, "secret-") && strings.HasSuffix(base, ".example.yaml")
}

// workloadObj is a Deployment or a Job with its pod template.
type workloadObj struct {
	obj  *object
	spec workloadSpec
}

func (w workloadObj) pod() podSpec { return w.spec.Template.Spec }

func (m *manifests) workloads(t testing.TB) []workloadObj {
	t.Helper()
	var out []workloadObj
	for _, o := range m.objects {
		if o.Kind == "Deployment" || o.Kind == "Job" || o.Kind == "StatefulSet" || o.Kind == "DaemonSet" {
			out = append(out, workloadObj{obj: o, spec: o.workload(t)})
		}
	}
	return out
}

func (m *manifests) deployment(t testing.TB, name string) workloadObj {
	t.Helper()
	o := m.find("Deployment", namespace, name)
	if o == nil {
		t.Fatalf("no Deployment %s/%s", namespace, name)
	}
	return workloadObj{obj: o, spec: o.workload(t)}
}

// configMapData is the data of ConfigMap ns/name, or nil.
func (m *manifests) configMapData(t testing.TB, ns, name string) (map[string]string, bool) {
	t.Helper()
	o := m.find("ConfigMap", ns, name)
	if o == nil {
		return nil, false
	}
	return o.stringMap(t, "data"), true
}

// secretData is the stringData and data (base64-decoded keys only) of the
// example Secret ns/name.
func (m *manifests) secretData(t testing.TB, ns, name string) (map[string]string, bool) {
	t.Helper()
	o := m.find("Secret", ns, name)
	if o == nil {
		return nil, false
	}
	out := map[string]string{}
	for k, v := range o.stringMap(t, "stringData") {
		out[k] = v
	}
	for k := range o.stringMap(t, "data") {
		if _, dup := out[k]; !dup {
			out[k] = ""
		}
	}
	return out, true
}

// envSource says where a container's variable comes from.
type envSource struct {
	Value     string  // literal, or the ConfigMap's value
	ConfigMap string  // the ConfigMap it comes from (envFrom or configMapKeyRef)
	Secret    *keyRef // secretKeyRef, or secretRef (Key = the name)
	Field     bool    // fieldRef
}

// containerEnv resolves a container's environment as Kubernetes does:
// envFrom first, then env (which wins).
func (m *manifests) containerEnv(t testing.TB, ns string, c container) map[string]envSource {
	t.Helper()
	env := map[string]envSource{}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			data, ok := m.configMapData(t, ns, ef.ConfigMapRef.Name)
			if !ok {
				t.Errorf("container %s: envFrom ConfigMap %s/%s is not in deploy/kubernetes", c.Name, ns, ef.ConfigMapRef.Name)
				continue
			}
			for k, v := range data {
				env[ef.Prefix+k] = envSource{Value: v, ConfigMap: ef.ConfigMapRef.Name}
			}
		case ef.SecretRef != nil:
			data, ok := m.secretData(t, ns, ef.SecretRef.Name)
			if !ok {
				t.Errorf("container %s: envFrom Secret %s/%s has no example", c.Name, ns, ef.SecretRef.Name)
				continue
			}
			for k := range data {
				env[ef.Prefix+k] = envSource{Secret: &keyRef{Name: ef.SecretRef.Name, Key: k}}
			}
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = envSource{Value: e.Value}
		case e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = envSource{Secret: e.ValueFrom.SecretKeyRef}
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			data, _ := m.configMapData(t, ns, ref.Name)
			env[e.Name] = envSource{Value: data[ref.Key], ConfigMap: ref.Name}
		default:
			env[e.Name] = envSource{Field: true}
		}
	}
	return env
}

// mountFor finds the volume mount holding path (longest mount path prefix)
// and its volume.
func mountFor(pod podSpec, c container, path string) (volumeMount, volume, bool) {
	var best volumeMount
	found := false
	for _, vm := range c.VolumeMounts {
		mp := strings.TrimSuffix(vm.MountPath, "/")
		if path == mp || strings.HasPrefix(path, mp+"/") {
			if !found || len(mp) > len(strings.TrimSuffix(best.MountPath, "/")) {
				best, found = vm, true
			}
		}
	}
	if !found {
		return volumeMount{}, volume{}, false
	}
	for _, v := range pod.Volumes {
		if v.Name == best.Name {
			return best, v, true
		}
	}
	return best, volume{}, false
}

// binaryOf is the program a container runs: its command, else the image's
// entrypoint (/ledger).
func binaryOf(c container) string {
	if len(c.Command) > 0 {
		return c.Command[0]
	}
	return "/ledger"
}

// subcommand is the leading words of the arguments that are not flags.
func subcommand(c container) []string {
	args := c.Args
	if len(c.Command) > 1 {
		args = append(slices.Clone(c.Command[1:]), args...)
	}
	var words []string
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			break
		}
		words = append(words, a)
	}
	return words
}

// listenPort is the port of a host:port listen address, and whether the
// host accepts connections from other hosts (kubelet probes, Services).
func listenPort(addr string) (port int, external bool, err error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, false, err
	}
	port, err = strconv.Atoi(p)
	if err != nil {
		return 0, false, err
	}
	switch host {
	case "", "0.0.0.0", "::":
		return port, true, nil
	}
	// Loopback, or one specific address that need not be the pod's.
	return port, false, nil
}

func TestYAMLDocumentsParse(t *testing.T) {
	m := loadManifests(t)
	if len(m.objects) == 0 {
		t.Fatal("no Kubernetes object in deploy/kubernetes")
	}
	if !slices.Contains(m.files, filepath.Base(natsValuesFile)) {
		t.Errorf("%s is missing", natsValuesFile)
	}
	seen := map[string]*object{}
	for _, o := range m.objects {
		key := o.Kind + " " + o.Metadata.Namespace + "/" + o.Metadata.Name
		if prev, dup := seen[key]; dup && o.Kind != "Kustomization" {
			t.Errorf("%s is defined twice (also %s)", o, prev)
		}
		seen[key] = o
	}
	t.Logf("%d files, %d objects", len(m.files), len(m.objects))
}

// TestLoaderFindsProblems feeds the loader broken input, so that the checks
// built on it are known to be able to fail.
func TestLoaderFindsProblems(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, kubeDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\nkind: Service\n")
	write("b.yaml", "apiVersion: v1\nkind: [\n")
	write("c.yml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
	m, errs := readManifests(root)
	joined := strings.Join(errs, "\n")
	for _, want := range []string{"a.yaml #1: apiVersion and kind are required", "b.yaml:", "c.yml: use the .yaml extension"} {
		if !strings.Contains(joined, want) {
			t.Errorf("loader errors %q lack %q", joined, want)
		}
	}
	if m == nil || len(m.byKind("ConfigMap")) != 1 {
		t.Errorf("the valid document was not kept")
	}
}
