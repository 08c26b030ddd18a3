// Package proxies runs the reverse-proxy configurations shipped in
// deploy/proxies (nginx, Caddy) for tests, in front of a gatekeeper's /authz
// endpoint, an upstream app and, for the auth-layer variants, the platform's
// session endpoint.
//
// The shipped files are the source of truth: they are read at test time and
// only their default addresses are replaced (DefaultListen, DefaultAuthz,
// DefaultUpstream, DefaultSession), so a test exercises exactly what an
// operator installs. A shipped file that no longer mentions one of the
// defaults fails the test rather than silently testing something else.
package proxies

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/testenv"
)

// The addresses written in the shipped snippets.
const (
	DefaultListen   = "127.0.0.1:8090" // where the proxy listens
	DefaultAuthz    = "127.0.0.1:8082" // the gatekeeper's --authz-listen
	DefaultUpstream = "127.0.0.1:3000" // the app
	DefaultSession  = "127.0.0.1:4180" // the platform's session endpoint (auth-layer variants)
)

// The snippets this package runs. In the jwt variants the gatekeeper takes
// the org from a verified token; in the auth-layer variants the platform's
// session endpoint names it first.
const (
	NginxJWT       = "nginx.conf"
	NginxAuthLayer = "nginx-auth-layer.conf"
	CaddyJWT       = "Caddyfile"
	CaddyAuthLayer = "Caddyfile.auth-layer"
)

// SecretPlaceholder stands for the gatekeeper's shared secret in the
// snippets' commented X-Gatekeeper-Secret line.
const SecretPlaceholder = "REPLACE-WITH-THE-SHARED-SECRET"

// SnippetDir is the directory of the shipped snippets, relative to the
// repository root.
const SnippetDir = "deploy/proxies"

const (
	// startTimeout bounds the wait for a proxy to accept connections.
	startTimeout = 15 * time.Second
	// stopTimeout bounds a graceful stop before the process group is killed.
	stopTimeout = 5 * time.Second
	// portAttempts: a free port picked up front can be taken by someone else
	// before the proxy binds it; then the start is retried on another port.
	portAttempts = 3
)

// Setup says which shipped snippet to run and where its default addresses
// point (host:port each).
type Setup struct {
	// File is the snippet's name in deploy/proxies. Defaults to the jwt
	// variant of the proxy (NginxJWT, CaddyJWT).
	File string
	// Authz is the gatekeeper's /authz listener; Upstream the app.
	Authz, Upstream string
	// Session is the platform's session endpoint, for the auth-layer
	// variants (required by them, refused by the others).
	Session string
	// Secret, when set, turns on the snippet's commented
	// X-Gatekeeper-Secret line with this value.
	Secret string
}

// RepoRoot returns the directory holding the module's go.mod, found by
// walking up from the working directory (a package's directory under go test).
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("proxies: working directory: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("proxies: no go.mod above the working directory")
		}
		dir = parent
	}
}

// SnippetPath returns the path of a shipped snippet, e.g. "nginx.conf".
func SnippetPath(t testing.TB, name string) string {
	t.Helper()
	return filepath.Join(RepoRoot(t), SnippetDir, name)
}

// Snippet returns the contents of a shipped snippet.
func Snippet(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(SnippetPath(t, name))
	if err != nil {
		t.Fatalf("proxies: %v", err)
	}
	return string(b)
}

// Render returns the snippet with its default addresses replaced: addrs maps
// a default (DefaultListen, DefaultAuthz, DefaultUpstream, DefaultSession) to
// its replacement. Every default given must occur in the snippet, and every
// default the snippet mentions must be given: a left-over default would
// point the proxy at whatever listens there.
func Render(snippet string, addrs map[string]string) (string, error) {
	var pairs []string
	for _, def := range []string{DefaultListen, DefaultAuthz, DefaultUpstream, DefaultSession} {
		to, given := addrs[def]
		switch in := strings.Contains(snippet, def); {
		case given && !in:
			return "", fmt.Errorf("the snippet no longer mentions the default address %s", def)
		case in && !given:
			return "", fmt.Errorf("the snippet mentions %s, which the setup gives no address for", def)
		case given:
			pairs = append(pairs, def, to)
		}
	}
	if len(pairs) != 2*len(addrs) {
		return "", fmt.Errorf("addresses %v: only the four defaults can be replaced", addrs)
	}
	// One pass: a replacement is never itself replaced, whatever port the
	// test got.
	return strings.NewReplacer(pairs...).Replace(snippet), nil
}

// secretLine is a commented directive sending X-Gatekeeper-Secret.
var secretLine = regexp.MustCompile(`(?m)^([ \t]*)#[ \t]*((?:proxy_set_header|header_up)[ \t]+X-Gatekeeper-Secret[ \t].*)$`)

// EnableSecret returns the snippet with its one commented
// X-Gatekeeper-Secret directive turned on, sending secret.
func EnableSecret(snippet, secret string) (string, error) {
	lines := secretLine.FindAllStringSubmatchIndex(snippet, -1)
	if len(lines) != 1 {
		return "", fmt.Errorf("want one commented X-Gatekeeper-Secret directive, found %d", len(lines))
	}
	m := lines[0]
	directive := snippet[m[4]:m[5]]
	if !strings.Contains(directive, SecretPlaceholder) {
		return "", fmt.Errorf("the X-Gatekeeper-Secret directive %q lacks the placeholder %s", directive, SecretPlaceholder)
	}
	directive = strings.Replace(directive, SecretPlaceholder, secret, 1)
	return snippet[:m[0]] + snippet[m[2]:m[3]] + directive + snippet[m[1]:], nil
}

// render is the snippet of s, ready for a proxy listening on listen.
func (s Setup) render(snippet, listen string) (string, error) {
	addrs := map[string]string{DefaultListen: listen, DefaultAuthz: s.Authz, DefaultUpstream: s.Upstream}
	if s.Session != "" {
		addrs[DefaultSession] = s.Session
	}
	out, err := Render(snippet, addrs)
	if err != nil || s.Secret == "" {
		return out, err
	}
	return EnableSecret(out, s.Secret)
}

// StartNginx runs nginx with the shipped nginx.conf (the jwt variant) in
// front of the gatekeeper's /authz at authzAddr and the app at upstreamAddr
// (host:port each); see Nginx.
func StartNginx(t testing.TB, authzAddr, upstreamAddr string) string {
	t.Helper()
	return Nginx(t, Setup{Authz: authzAddr, Upstream: upstreamAddr})
}

// Nginx runs nginx with a shipped snippet on a free loopback port. It
// returns the proxy's base URL ("http://127.0.0.1:port"); nginx is stopped
// when the test ends. Without nginx the test is skipped, or fails when CI
// is set.
func Nginx(t testing.TB, s Setup) string {
	t.Helper()
	bin := testenv.RequireTool(t, "nginx")
	snippet := Snippet(t, cmp.Or(s.File, NginxJWT))
	tempPaths := nginxTempPaths(t, bin)
	return start(t, "nginx", func(dir, listen string) (*exec.Cmd, error) {
		site, err := s.render(snippet, listen)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, "site.conf"), []byte(site), 0o644); err != nil {
			return nil, err
		}
		tmp := filepath.Join(dir, "tmp")
		if err := os.MkdirAll(tmp, 0o755); err != nil {
			return nil, err
		}
		var b strings.Builder
		// Single process, in the foreground: nothing to daemonize, and no
		// worker switching to another user when the tests run as root.
		b.WriteString("daemon off;\nmaster_process off;\nworker_processes 1;\n")
		fmt.Fprintf(&b, "pid %s;\n", quote(filepath.Join(dir, pidFile)))
		fmt.Fprintf(&b, "error_log %s info;\n", quote(filepath.Join(dir, "error.log")))
		b.WriteString("events {\n    worker_connections 256;\n}\nhttp {\n")
		fmt.Fprintf(&b, "    access_log %s;\n", quote(filepath.Join(dir, "access.log")))
		for _, directive := range tempPaths {
			fmt.Fprintf(&b, "    %s %s;\n", directive, quote(filepath.Join(tmp, strings.TrimSuffix(directive, "_temp_path"))))
		}
		fmt.Fprintf(&b, "    include %s;\n}\n", quote(filepath.Join(dir, "site.conf")))
		conf := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
			return nil, err
		}
		// -e: the compiled-in error log is opened before the configuration
		// is read; keep even that in the temp dir.
		return exec.Command(bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", conf), nil
	}, "error.log")
}

// nginxTempPaths lists the *_temp_path directives of the modules this nginx
// has: their compiled-in defaults (/var/lib/nginx/…) need not be writable.
func nginxTempPaths(t testing.TB, bin string) []string {
	t.Helper()
	out, err := exec.Command(bin, "-V").CombinedOutput()
	if err != nil {
		t.Fatalf("proxies: %s -V: %v\n%s", bin, err, out)
	}
	paths := []string{"client_body_temp_path", "proxy_temp_path"}
	for _, m := range []string{"fastcgi", "uwsgi", "scgi"} {
		if !strings.Contains(string(out), "--without-http_"+m+"_module") {
			paths = append(paths, m+"_temp_path")
		}
	}
	return paths
}

// StartCaddy runs Caddy with the shipped Caddyfile (the jwt variant) in
// front of the gatekeeper's /authz at authzAddr and the app at upstreamAddr
// (host:port each); see Caddy.
func StartCaddy(t testing.TB, authzAddr, upstreamAddr string) string {
	t.Helper()
	return Caddy(t, Setup{Authz: authzAddr, Upstream: upstreamAddr})
}

// Caddy runs Caddy with a shipped snippet on a free loopback port. It
// returns the proxy's base URL ("http://127.0.0.1:port"); Caddy is stopped
// when the test ends. Without caddy the test is skipped, or fails when CI
// is set.
func Caddy(t testing.TB, s Setup) string {
	t.Helper()
	bin := testenv.RequireTool(t, "caddy")
	snippet := Snippet(t, cmp.Or(s.File, CaddyJWT))
	return start(t, "caddy", func(dir, listen string) (*exec.Cmd, error) {
		site, err := s.render(snippet, listen)
		if err != nil {
			return nil, err
		}
		// No admin endpoint (it would need a port of its own) and no
		// certificate management; the global options block comes first.
		conf := "{\n\tadmin off\n\tauto_https off\n}\n\n" + site
		file := filepath.Join(dir, "Caddyfile")
		if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
			return nil, err
		}
		cmd := exec.Command(bin, "run", "--config", file, "--adapter", "caddyfile",
			"--pidfile", filepath.Join(dir, pidFile))
		// Caddy keeps state and an autosaved config under these.
		cmd.Env = append(os.Environ(),
			"HOME="+dir,
			"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
			"XDG_DATA_HOME="+filepath.Join(dir, "data"),
		)
		return cmd, nil
	}, "output.log")
}

// pidFile, in the run directory, is written by both proxies only once their
// listeners are bound: until then a connection to the port could reach
// whoever else took it.
const pidFile = "proxy.pid"

// start picks a port, lets prepare write the configuration into a fresh
// directory and build the command, runs it in a process group of its own,
// and waits until it has written its pid file and the port accepts
// connections. Output goes to output.log in that directory; logName is the
// file shown when the start fails.
func start(t testing.TB, name string, prepare func(dir, listen string) (*exec.Cmd, error), logName string) string {
	t.Helper()
	base := t.TempDir()
	var lastErr error
	for attempt := 1; attempt <= portAttempts; attempt++ {
		dir := filepath.Join(base, fmt.Sprintf("run%d", attempt))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatalf("proxies: %v", err)
		}
		listen, err := pickPort()
		if err != nil {
			t.Fatalf("proxies: %v", err)
		}
		cmd, err := prepare(dir, listen)
		if err != nil {
			t.Fatalf("proxies: %s configuration: %v", name, err)
		}
		p, err := launch(cmd, filepath.Join(dir, "output.log"))
		if err != nil {
			t.Fatalf("proxies: start %s: %v", name, err)
		}
		err = p.waitReady(filepath.Join(dir, pidFile), listen, startTimeout)
		if err == nil {
			t.Cleanup(func() {
				if err := p.stop(stopTimeout); err != nil {
					t.Errorf("proxies: stop %s: %v", name, err)
				}
			})
			return "http://" + listen
		}
		p.stop(stopTimeout)
		log := readLog(filepath.Join(dir, logName))
		if logName != "output.log" {
			log += readLog(filepath.Join(dir, "output.log"))
		}
		lastErr = fmt.Errorf("%w\n--- %s log ---\n%s", err, name, log)
		if !strings.Contains(strings.ToLower(log), "address already in use") {
			break
		}
	}
	t.Fatalf("proxies: %s did not start: %v", name, lastErr)
	return ""
}

// proc is a started proxy.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done
}

func launch(cmd *exec.Cmd, logPath string) (*proc, error) {
	out, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout = out
	cmd.Stderr = out
	ownProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	return p, nil
}

// waitReady polls until the process has written its pid to pidPath and addr
// accepts a TCP connection. Only a connection, no request: a request would
// reach the auth service, whose record the test reads.
func (p *proc) waitReady(pidPath, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	want := strconv.Itoa(p.cmd.Process.Pid)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("exited before listening on %s: %v", addr, p.err)
		default:
		}
		var err error
		if b, rerr := os.ReadFile(pidPath); rerr != nil || strings.TrimSpace(string(b)) != want {
			err = fmt.Errorf("no pid file %s with pid %s yet", pidPath, want)
		} else if c, derr := net.DialTimeout("tcp", addr, 200*time.Millisecond); derr != nil {
			err = derr
		} else {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready on %s after %v: %v", addr, timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop asks the process group to terminate, and kills it after timeout.
func (p *proc) stop(timeout time.Duration) error {
	select {
	case <-p.done:
		return nil // already gone (a failed start)
	default:
	}
	terminateGroup(p.cmd)
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
	}
	killGroup(p.cmd)
	select {
	case <-p.done:
		return errors.New("did not stop on SIGTERM; killed")
	case <-time.After(timeout):
		return errors.New("still running after SIGKILL")
	}
}

// pickPort is freePort; tests of the retry replace it.
var pickPort = freePort

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr, nil
}

func readLog(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)\n", err)
	}
	return string(b)
}

// quote makes a path one nginx configuration token.
func quote(path string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(path) + `"`
}
