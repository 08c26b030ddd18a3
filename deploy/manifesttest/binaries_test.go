package manifesttest

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/testenv/licensetest"
)

// The binaries are built once, the way the Dockerfile builds them, and
// their --help output is the reference for the variables the manifests set.

const testVersion = "manifesttest"

var (
	binDir    string
	buildOnce sync.Once
	buildErr  error
	helpMu    sync.Mutex
	helpCache = map[string]string{}
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binaries builds ledger, gatekeeper and licensegen with the Dockerfile's
// flags and returns the directory holding them.
func binaries(t testing.TB) string {
	t.Helper()
	root := repoRoot(t)
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "manifesttest-bin-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+testVersion,
			"-o", binDir+string(filepath.Separator), "./cmd/ledger", "./cmd/gatekeeper", "./cmd/licensegen")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		start := time.Now()
		if err := cmd.Run(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out.String())
			return
		}
		fmt.Fprintf(os.Stderr, "manifesttest: built the binaries in %s\n", time.Since(start).Round(time.Millisecond))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// help is the --help output of a binary (by image path, e.g. /ledger) and
// subcommand.
func help(t testing.TB, binary string, words ...string) string {
	t.Helper()
	key := binary + " " + strings.Join(words, " ")
	helpMu.Lock()
	defer helpMu.Unlock()
	if h, ok := helpCache[key]; ok {
		return h
	}
	bin := filepath.Join(binaries(t), filepath.Base(binary))
	cmd := exec.Command(bin, append(append([]string{}, words...), "--help")...)
	cmd.Env = []string{} // defaults only
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s --help: %v\n%s", key, err, out)
	}
	helpCache[key] = string(out)
	return string(out)
}

func TestBinariesStaticAndVersioned(t *testing.T) {
	dir := binaries(t)
	for _, name := range []string{"ledger", "gatekeeper", "licensegen"} {
		f, err := elf.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		libs, _ := f.ImportedLibraries()
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				t.Errorf("%s needs a dynamic loader: it would not start on distroless/static", name)
			}
		}
		if len(libs) > 0 {
			t.Errorf("%s links %v dynamically", name, libs)
		}
		f.Close()
	}
	for _, name := range []string{"ledger", "gatekeeper", "licensegen"} {
		out, err := exec.Command(filepath.Join(dir, name), "--version").CombinedOutput()
		if want := name + " " + testVersion + " (commit "; err != nil || !strings.HasPrefix(string(out), want) {
			t.Errorf("%s --version: %q, %v; want %q… (-X main.version)", name, out, err, want)
		}
	}
}

var envAnnotation = func(name string) *regexp.Regexp {
	return regexp.MustCompile(`\(\$` + regexp.QuoteMeta(name) + `\)`)
}

// checkEnvNames: every variable a container gets is one its program reads,
// as its --help lists it ("($NAME)").
func checkEnvNames(t testing.TB, m *manifests) []string {
	var p []string
	for _, w := range m.workloads(t) {
		for _, c := range w.pod().Containers {
			h := help(t, binaryOf(c), subcommand(c)...)
			for name := range m.containerEnv(t, w.obj.Metadata.Namespace, c) {
				if !envAnnotation(name).MatchString(h) {
					p = append(p, fmt.Sprintf("%s container %s: %s is not read by %s (not in its --help)",
						w.obj, c.Name, name, strings.Join(append([]string{binaryOf(c)}, subcommand(c)...), " ")))
				}
			}
		}
	}
	return p
}

func TestEnvNamesInHelp(t *testing.T) {
	m := loadManifests(t)
	for _, s := range checkEnvNames(t, m) {
		t.Error(s)
	}
	// The reference itself: help lists the variables the design names.
	for bin, names := range map[string][]string{
		"/ledger serve": {"NATS_URL", "NATS_NKEY", "DATABASE_URL", "LEDGER_TOKENS_FILE", "LICENSE_PUBLIC_KEYS_FILE",
			"LICENSE_STREAM_REPLICAS", "LEDGER_LISTEN", "LEDGER_INSECURE_HTTP"},
		"/gatekeeper":        {"NATS_URL", "NATS_NKEY", "GATEKEEPER_LISTEN", "GATEKEEPER_AUTHZ_LISTEN", "GATEKEEPER_ADMIN_LISTEN"},
		"/ledger migrate up": {"LEDGER_MIGRATE_DATABASE_URL"},
	} {
		f := strings.Fields(bin)
		h := help(t, f[0], f[1:]...)
		for _, n := range names {
			if !envAnnotation(n).MatchString(h) {
				t.Errorf("%s --help does not list $%s", bin, n)
			}
		}
	}
}

// closedPort is a loopback port nothing listens on.
func closedPort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

var postgresURLRe = regexp.MustCompile(`^(postgres(ql)?://[^@]*@)[^/?]+`)

// podRun is a container of a manifest prepared to run here: its files
// under dir, its environment, its argv.
type podRun struct {
	dir  string
	env  []string
	argv []string
}

// prepareRun lays out what a container would see: the init containers'
// copies (from the Secret templates, with fresh nkey seeds instead of the
// placeholders), the ConfigMap volumes, and its environment with paths moved
// under a temporary root. NATS and PostgreSQL point at a closed port.
func prepareRun(t *testing.T, m *manifests, w workloadObj, c container) podRun {
	t.Helper()
	ns := w.obj.Metadata.Namespace
	pod := w.pod()
	dir := t.TempDir()
	fsRoot := filepath.Join(dir, "fs")
	down := closedPort(t)
	secretValue := func(name, key string) (string, bool) {
		data, ok := m.secretData(t, ns, name)
		if !ok {
			return "", false
		}
		v, ok := data[key]
		if ok && strings.HasSuffix(key, ".nk") {
			id, err := natsauth.GenerateIdentity(natsauth.RoleReader)
			if err != nil {
				t.Fatal(err)
			}
			v = string(id.Seed) + "\n"
		}
		return v, ok
	}
	write := func(p, content string, mode os.FileMode) {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	files, problems := simulateInit(t, m, ns, pod)
	if len(problems) > 0 {
		t.Fatalf("init containers: %v", problems)
	}
	for _, vm := range c.VolumeMounts {
		var v volume
		for _, pv := range pod.Volumes {
			if pv.Name == vm.Name {
				v = pv
			}
		}
		base := filepath.Join(fsRoot, vm.MountPath)
		switch {
		case v.EmptyDir != nil:
			for k, f := range files {
				vol, rel, _ := strings.Cut(k, ":")
				if vol != v.Name {
					continue
				}
				content, ok := secretValue(f.Secret, f.Key)
				if !ok {
					t.Fatalf("Secret %s key %s has no template", f.Secret, f.Key)
				}
				write(filepath.Join(base, rel), content, os.FileMode(f.Mode))
			}
			if err := os.MkdirAll(base, 0o700); err != nil {
				t.Fatal(err)
			}
		case v.ConfigMap != nil:
			data, _ := m.configMapData(t, ns, v.ConfigMap.Name)
			mode := 0o644
			if v.ConfigMap.DefaultMode != nil {
				mode = *v.ConfigMap.DefaultMode
			}
			for k, val := range data {
				if v.ConfigMap.Name == "vendor-keys" {
					// The operator puts the vendor's public key in, as the
					// ConfigMap says (a gatekeeper trusting no key refuses
					// to start).
					val += licensetest.RingEntry("vendor-2026") + "\n"
				}
				write(filepath.Join(base, k), val, os.FileMode(mode))
			}
		case v.Secret != nil:
			data, _ := m.secretData(t, ns, v.Secret.SecretName)
			for k := range data {
				val, _ := secretValue(v.Secret.SecretName, k)
				write(filepath.Join(base, k), val, 0o440) // what fsGroup makes of it
			}
		}
	}
	var env []string
	for name, src := range m.containerEnv(t, ns, c) {
		val := src.Value
		if src.Secret != nil {
			v, ok := secretValue(src.Secret.Name, src.Secret.Key)
			if !ok {
				if src.Secret.Optional != nil && *src.Secret.Optional {
					continue
				}
				t.Fatalf("%s: Secret %s has no template", name, src.Secret.Name)
			}
			val = v
		}
		if strings.HasPrefix(val, "/") {
			if _, _, ok := mountFor(pod, c, val); ok {
				val = filepath.Join(fsRoot, val)
			}
		}
		if name == "NATS_URL" {
			val = fmt.Sprintf("nats://127.0.0.1:%d", down)
		}
		val = postgresURLRe.ReplaceAllString(val, fmt.Sprintf("${1}127.0.0.1:%d", down))
		env = append(env, name+"="+val)
	}
	argv := append(append([]string{filepath.Join(binaries(t), filepath.Base(binaryOf(c)))}, c.Command[min(1, len(c.Command)):]...), c.Args...)
	return podRun{dir: dir, env: env, argv: argv}
}

// TestManifestConfigAccepted runs each container's program with the
// manifest's environment and files: it must get past its configuration
// (variables, listen addresses, key ring, tokens file, seed) and stop only
// because NATS or PostgreSQL is unreachable here (exit 4), never on usage
// (exit 2) or a file it refuses.
func TestManifestConfigAccepted(t *testing.T) {
	m := loadManifests(t)
	for _, w := range m.workloads(t) {
		for _, c := range w.pod().Containers {
			t.Run(w.obj.Metadata.Name+"/"+c.Name, func(t *testing.T) {
				r := prepareRun(t, m, w, c)
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, r.argv[0], r.argv[1:]...)
				cmd.Env, cmd.Dir = r.env, r.dir
				var stderr bytes.Buffer
				cmd.Stdout, cmd.Stderr = &stderr, &stderr
				err := cmd.Run()
				var exit *exec.ExitError
				if !errors.As(err, &exit) {
					t.Fatalf("%v: %v\n%s", r.argv, err, stderr.String())
				}
				out := stderr.String()
				if exit.ExitCode() != 4 {
					t.Fatalf("%v exited %d, want 4 (unavailable: nothing to connect to here):\n%s", r.argv[1:], exit.ExitCode(), out)
				}
				for _, bad := range []string{"NATS_NKEY", "LEDGER_TOKENS_FILE", "accessible by group", "key ring"} {
					if strings.Contains(out, bad) {
						t.Errorf("%v complains about its configuration (%s):\n%s", r.argv[1:], bad, out)
					}
				}
				if binaryOf(c) != "/ledger" || subcommand(c)[0] == "serve" {
					if !strings.Contains(out, "connect to NATS") {
						t.Errorf("%v did not stop at the NATS connection:\n%s", r.argv[1:], out)
					}
				}
				t.Logf("%s", strings.TrimSpace(out))
			})
		}
	}
}
