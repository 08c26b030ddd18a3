package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/cli"
	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/testenv/licensetest"
	"github.com/licenseledger/ledger/internal/testenv/proxies"
)

// scrape returns the gatekeeper's /metrics.
func scrape(t *testing.T, admin string) string {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return string(raw)
}

// metricLine reports whether the exposition holds the sample line want.
func metricLine(m, want string) bool {
	return regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want) + `$`).MatchString(m)
}

// hup sends SIGHUP to this process: every running gatekeeper reloads its
// key ring and its /authz secret.
func hup(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // whatever the umask
		t.Fatal(err)
	}
	return path
}

// forbidden checks an authz_forbidden answer: it says nothing about any
// org.
func forbidden(t *testing.T, what string, a answer) {
	t.Helper()
	org, hasOrg := a.body["org"]
	if a.code != 403 || a.body["error"] != "authz_forbidden" || a.hdr.Get("X-License-Error") != "authz_forbidden" || !hasOrg || org != nil {
		t.Errorf("%s: %d %v %v", what, a.code, a.hdr, a.body)
	}
	for k := range a.hdr {
		if strings.HasPrefix(k, "X-License-") && k != "X-License-Error" {
			t.Errorf("%s: the refusal carries %s: %v", what, k, a.hdr)
		}
	}
}

// /authz answers only trusted peers that know the secret; the secret is
// re-read on SIGHUP and never reaches the application.
func TestAuthzAnswersOnlyTrustedCallers(t *testing.T) {
	secret := writeFile(t, filepath.Join(t.TempDir(), "authz.secret"), "first-secret-0123456789\n", 0o600)
	w := newWorld(t, func(c *gatekeeperCmd) { c.AuthzSecretFile = secret })
	w.upload("acme", nil)
	ask := func(addr string, hdr ...string) answer {
		return get(t, "http://"+addr+"/authz", append([]string{"X-Org-Slug", "acme", "X-Original-Method", "GET", "X-Original-URI", "/app"}, hdr...)...)
	}
	forbidden(t, "no secret", ask(w.gk.authz))
	forbidden(t, "a wrong secret", ask(w.gk.authz, "X-Gatekeeper-Secret", "other-secret-0123456789"))
	forbidden(t, "a prefix of the secret", ask(w.gk.authz, "X-Gatekeeper-Secret", "first-secret"))
	if a := ask(w.gk.authz, "X-Gatekeeper-Secret", "first-secret-0123456789"); a.code != 200 || a.hdr.Get("X-License-Status") != "valid" {
		t.Fatalf("with the secret: %d %v %v", a.code, a.hdr, a.body)
	}

	writeFile(t, secret, "second-secret-0123456789\n", 0o600)
	hup(t)
	eventually(t, func() error {
		if a := ask(w.gk.authz, "X-Gatekeeper-Secret", "second-secret-0123456789"); a.code != 200 {
			return fmt.Errorf("the new secret after SIGHUP: %d %v", a.code, a.body)
		}
		return nil
	})
	forbidden(t, "the old secret after SIGHUP", ask(w.gk.authz, "X-Gatekeeper-Secret", "first-secret-0123456789"))

	// The reverse proxy never forwards the secret.
	if a := get(t, "http://"+w.gk.proxy+"/app", "X-Org-Slug", "acme", "X-Gatekeeper-Secret", "second-secret-0123456789"); a.code != 200 || a.body["X-Gatekeeper-Secret"] != nil {
		t.Fatalf("proxied: %d %v", a.code, a.body)
	}

	// A peer outside --authz-trusted (here loopback itself) is refused,
	// and counted.
	far := w.start(func(c *gatekeeperCmd) { c.AuthzTrusted = []string{"192.0.2.0/24"} })
	forbidden(t, "an untrusted peer", ask(far.authz))
	if m := scrape(t, far.admin); !metricLine(m, `gatekeeper_decisions_total{code="authz_forbidden",result="denied"} 1`) {
		t.Errorf("metrics: %s", grep(m, "authz_forbidden"))
	}
	if n := strings.Count(w.logs.String(), "refused a peer outside --authz-trusted"); n != 1 {
		t.Errorf("the untrusted peer was logged %d times:\n%s", n, w.logs.String())
	}
}

// A proxy sending the other header family is told which --authz-headers
// to set (400), and the gatekeeper logs it once per family.
func TestAuthzHeadersMismatch(t *testing.T) {
	w := newWorld(t, nil) // original
	w.upload("acme", nil)
	fwd := w.start(func(c *gatekeeperCmd) { c.AuthzHeaders = "forwarded" })
	path := w.start(func(c *gatekeeperCmd) { c.AuthzHeaders = "path" })
	original := []string{"X-Original-Method", "GET", "X-Original-URI", "/app"}
	forwarded := []string{"X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/app"}
	for _, c := range []struct {
		name, addr, family string
		hdr                []string
		fix                string
	}{
		{"original got forwarded", w.gk.authz, "original", forwarded, "forwarded"},
		{"forwarded got original", fwd.authz, "forwarded", original, "original"},
		{"path got original", path.authz, "path", original, "original"},
		{"path got forwarded", path.authz, "path", forwarded, "forwarded"},
	} {
		for range 2 {
			a := get(t, "http://"+c.addr+"/authz", append([]string{"X-Org-Slug", "acme"}, c.hdr...)...)
			msg, _ := a.body["message"].(string)
			if a.code != 400 || a.body["error"] != "authz_headers_mismatch" || a.hdr.Get("X-License-Error") != "authz_headers_mismatch" ||
				!strings.Contains(msg, "--authz-headers "+c.fix) || a.hdr.Get("X-License-Status") != "" {
				t.Errorf("%s: %d %v %v", c.name, a.code, a.hdr, a.body)
			}
		}
		if n := strings.Count(w.logs.String(), "authz_headers="+c.family+" sent="+c.fix); n != 1 {
			t.Errorf("%s: logged %d times:\n%s", c.name, n, grep(w.logs.String(), "header family"))
		}
	}
	// The configured family still decides.
	if a := get(t, "http://"+fwd.authz+"/authz", append([]string{"X-Org-Slug", "acme"}, forwarded...)...); a.code != 200 {
		t.Errorf("forwarded family: %d %v", a.code, a.body)
	}
	if m := scrape(t, w.gk.admin); !metricLine(m, `gatekeeper_decisions_total{code="authz_headers_mismatch",result="denied"} 2`) {
		t.Errorf("metrics: %s", grep(m, "authz_headers_mismatch"))
	}
}

// Bad settings stop the command before it connects anywhere, naming the
// flag (or variables) to fix.
func TestStartupRefusals(t *testing.T) {
	t.Setenv("LICENSE_PUBLIC_KEYS", "")
	t.Setenv("LICENSE_PUBLIC_KEYS_FILE", "")
	dir := t.TempDir()
	open := writeFile(t, filepath.Join(dir, "open"), "a-long-enough-secret-0123\n", 0o640)
	short := writeFile(t, filepath.Join(dir, "short"), "s3cret\n", 0o600)
	empty := writeFile(t, filepath.Join(dir, "empty"), "\n", 0o600)
	id, err := natsauth.GenerateIdentity(natsauth.RoleReader)
	if err != nil {
		t.Fatal(err)
	}
	seed := writeFile(t, filepath.Join(dir, "reader.nk"), string(id.Seed)+"\n", 0o644)
	key := []string{"--public-keys", licensetest.RingEntry("k1")}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{append(key, "--authz-secret-file", open), []string{"--authz-secret-file", open + " is accessible by group or others (mode 0640): run chmod 600 " + open}},
		{append(key, "--authz-secret-file", short), []string{"--authz-secret-file", "at least 16"}},
		{append(key, "--nats-nkey", seed), []string{"NATS_NKEY", seed + " is accessible by group or others (mode 0644): run chmod 600 " + seed}},
		{append(key, "--authz-secret-file", empty), []string{"--authz-secret-file", "at least 16"}},
		{append(key, "--authz-secret-file", filepath.Join(dir, "none")), []string{"--authz-secret-file"}},
		{append(key, "--authz-trusted", "10.0.0.0/33"), []string{"--authz-trusted"}},
		{append(key, "--read-timeout", "0s"), []string{"--read-timeout", "positive"}},
		{append(key, "--read-timeout=-1s"), []string{"--read-timeout", "positive"}},
		{append(key, "--max-header-bytes", "0"), []string{"--max-header-bytes", "positive"}},
		{append(key, "--max-conns=-5"), []string{"--max-conns", "positive"}},
		{append(key, "--renewal-url", "javascript:alert(1)"), []string{"--renewal-url"}},
		{nil, []string{"LICENSE_PUBLIC_KEYS ", "LICENSE_PUBLIC_KEYS_FILE", "--allow-no-keys"}},
	} {
		var stderr bytes.Buffer
		args := append(c.args, "--listen", "off", "--authz-listen", "off", "--admin-listen", "127.0.0.1:0",
			"--data-dir", dir, "--nats-url", "nats://127.0.0.1:1")
		code := run(args, &cli.Env{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: &stderr, Now: time.Now})
		out := stderr.String()
		if code != cli.ExitUsage {
			t.Errorf("%v: exit %d, want %d: %s", c.args, code, cli.ExitUsage, out)
			continue
		}
		for _, want := range c.want {
			if !strings.Contains(out, want) {
				t.Errorf("%v: the error does not name %q: %s", c.args, want, out)
			}
		}
	}
}

// With --allow-no-keys a gatekeeper without keys starts, says so, and
// denies licensed orgs; /readyz and the metrics say why.
func TestAllowNoKeys(t *testing.T) {
	w := newWorld(t, func(c *gatekeeperCmd) { c.PublicKeys, c.AllowNoKeys = "", true })
	if !strings.Contains(w.logs.String(), "level=WARN msg=\"no trusted vendor key (--allow-no-keys)") {
		t.Errorf("no warning:\n%s", w.logs.String())
	}
	w.upload("acme", nil)
	if a := get(t, "http://"+w.gk.proxy+"/app", "X-Org-Slug", "acme"); a.code != 403 || a.body["error"] != "license_invalid" || a.body["reason"] != "unknown_key" {
		t.Fatalf("no keys: %d %v", a.code, a.body)
	}
	if a := get(t, "http://"+w.gk.admin+"/readyz"); a.code != 200 || a.body["keyring"] != "trusts none of the keys in use (k1)" {
		t.Fatalf("readyz: %d %v", a.code, a.body)
	}
}

// A ring that trusts none of the keys the licenses use is loud: a gauge
// of the orgs it denies, a /readyz field, one warning; a reload that adds
// the key ends it. Every process exports its ring's fingerprint.
func TestKeyringTrustsNoKeyInUse(t *testing.T) {
	ring := writeFile(t, filepath.Join(t.TempDir(), "vendor.keys"), licensetest.RingEntry("k2")+"\n", 0o600)
	w := newWorld(t, func(c *gatekeeperCmd) { c.PublicKeys, c.PublicKeysFile = "", ring })
	admin := w.gk.admin
	fp2, fp12 := licensetest.Ring(t, "k2").Fingerprint(), licensetest.Ring(t, "k1", "k2").Fingerprint()
	if a := get(t, "http://"+admin+"/readyz"); a.code != 200 || a.body["keyring"] != nil {
		t.Fatalf("readyz before any license: %d %v", a.code, a.body)
	}
	w.upload("acme", nil) // signed with k1
	w.upload("beta", nil)
	if a := get(t, "http://"+admin+"/readyz"); a.code != 200 || a.body["keyring"] != "trusts none of the keys in use (k1)" {
		t.Fatalf("readyz: %d %v", a.code, a.body)
	}
	m := scrape(t, admin)
	for _, want := range []string{`license_keyring_info{fingerprint="` + fp2 + `"} 1`, "gatekeeper_orgs_unknown_key 2"} {
		if !metricLine(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, grep(m, "keyring", "unknown_key"))
		}
	}
	if n := strings.Count(w.logs.String(), "trusts none of the keys in use (k1)"); n != 1 {
		t.Errorf("warned %d times, want once:\n%s", n, w.logs.String())
	}

	writeFile(t, ring, licensetest.RingEntry("k2")+"\n"+licensetest.RingEntry("k1")+"\n", 0o600)
	hup(t)
	eventually(t, func() error {
		m := scrape(t, admin)
		if !metricLine(m, `license_keyring_info{fingerprint="`+fp12+`"} 1`) || !metricLine(m, "gatekeeper_orgs_unknown_key 0") || strings.Contains(m, fp2) {
			return fmt.Errorf("after the reload: %s", grep(m, "keyring", "unknown_key"))
		}
		return nil
	})
	if a := get(t, "http://"+admin+"/readyz"); a.code != 200 || a.body["keyring"] != nil {
		t.Fatalf("readyz after the reload: %d %v", a.code, a.body)
	}
	if a := get(t, "http://"+w.gk.proxy+"/app", "X-Org-Slug", "acme"); a.code != 200 {
		t.Fatalf("after the reload: %d %v", a.code, a.body)
	}
	if !strings.Contains(w.logs.String(), "trusts a key the licenses use again") {
		t.Errorf("the recovery was not logged:\n%s", w.logs.String())
	}
}

// sendSlowly writes line after line to conn, one every 50 ms, until the
// server closes the connection; it fails when all lines were accepted.
func sendSlowly(t *testing.T, conn net.Conn, line string, n int) {
	t.Helper()
	closed := make(chan struct{})
	go func() { io.Copy(io.Discard, conn); close(closed) }()
	began := time.Now()
	for range n {
		select {
		case <-closed:
			t.Logf("cut after %v", time.Since(began).Round(time.Millisecond))
			return
		case <-time.After(50 * time.Millisecond):
		}
		if _, err := io.WriteString(conn, line); err != nil {
			t.Logf("cut after %v", time.Since(began).Round(time.Millisecond))
			return
		}
	}
	t.Fatalf("the server read %d slow writes over %v without cutting the connection", n, time.Since(began).Round(time.Millisecond))
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// A body or a header block trickling in is cut at --read-timeout.
func TestSlowRequestsAreCut(t *testing.T) {
	w := newWorld(t, func(c *gatekeeperCmd) { c.ReadTimeout = time.Second })
	w.upload("acme", nil)
	// A body at a byte per 50 ms would take 50 s.
	conn := dial(t, w.gk.proxy)
	fmt.Fprint(conn, "POST /upload HTTP/1.1\r\nHost: app\r\nX-Org-Slug: acme\r\nContent-Length: 1000\r\n\r\n")
	sendSlowly(t, conn, "x", 1000)
	// Headers, a line per 50 ms, on each listener.
	for name, addr := range map[string]string{"proxy": w.gk.proxy, "authz": w.gk.authz, "admin": w.gk.admin} {
		t.Run(name, func(t *testing.T) {
			conn := dial(t, addr)
			fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: app\r\n")
			sendSlowly(t, conn, "X-Slow: 1\r\n", 1000)
		})
	}
}

// A denied request's body is never waited for: the denial comes at once,
// and the connection closes, whatever pace the body comes at.
func TestDenialDoesNotWaitForTheBody(t *testing.T) {
	const timeout = time.Minute
	w := newWorld(t, func(c *gatekeeperCmd) { c.ReadTimeout = timeout })
	w.upload("acme", nil) // enforcement on
	conn := dial(t, w.gk.proxy)
	conn.SetDeadline(time.Now().Add(timeout / 2)) // well before the read timeout could answer
	fmt.Fprint(conn, "POST /upload HTTP/1.1\r\nHost: app\r\nX-Org-Slug: nobody\r\nContent-Length: 100000\r\n\r\nx")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no denial before the body arrived: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 || resp.Header.Get("X-License-Error") != "license_missing" || !resp.Close {
		t.Fatalf("%d %q, close %v", resp.StatusCode, resp.Header.Get("X-License-Error"), resp.Close)
	}
}

// sseUpstream streams a first event at once and a second one when release
// is closed.
func sseUpstream(t *testing.T) (string, chan struct{}) {
	t.Helper()
	release := make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, "data: second\n\n")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String(), release
}

// --read-timeout bounds reading a request, not the life of a response or
// of an upgraded connection.
func TestLongConnectionsOutliveTheReadTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	up, release := sseUpstream(t)
	w := newWorld(t, func(c *gatekeeperCmd) { c.Upstream, c.ReadTimeout = up, timeout })
	w.upload("acme", nil)
	req, _ := http.NewRequest("GET", "http://"+w.gk.proxy+"/events", nil)
	req.Header.Set("X-Org-Slug", "acme")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if l, _ := br.ReadString('\n'); l != "data: first\n" {
		t.Fatalf("first event %q", l)
	}
	time.Sleep(4 * timeout)
	close(release)
	rest, err := io.ReadAll(br)
	if err != nil || !strings.Contains(string(rest), "data: second") {
		t.Fatalf("the stream was cut after the read timeout: %q %v", rest, err)
	}

	// A WebSocket-style upgraded connection.
	echo := upgradeUpstream(t)
	gk := w.start(func(c *gatekeeperCmd) { c.Upstream, c.ReadTimeout = echo, timeout })
	conn := dial(t, gk.proxy)
	fmt.Fprint(conn, "GET /ws HTTP/1.1\r\nHost: app\r\nX-Org-Slug: acme\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	cr := bufio.NewReader(conn)
	if resp, err := http.ReadResponse(cr, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	for i := range 3 {
		fmt.Fprintf(conn, "ping %d\n", i)
		if line, err := cr.ReadString('\n'); err != nil || line != fmt.Sprintf("ping %d\n", i) {
			t.Fatalf("echo %d: %q %v", i, line, err)
		}
		time.Sleep(2 * timeout)
	}
}

// --max-header-bytes and --max-conns.
func TestListenerLimits(t *testing.T) {
	w := newWorld(t, func(c *gatekeeperCmd) { c.MaxHeaderBytes = 1024 })
	w.upload("acme", nil)
	if a := get(t, "http://"+w.gk.proxy+"/app", "X-Org-Slug", "acme", "X-Big", strings.Repeat("a", 16<<10)); a.code != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("a 16 KiB header: %d", a.code)
	}
	if a := get(t, "http://"+w.gk.proxy+"/app", "X-Org-Slug", "acme", "X-Small", strings.Repeat("a", 512)); a.code != 200 {
		t.Fatalf("a small header: %d", a.code)
	}

	// One connection per listener: a second one waits until the first
	// closes.
	one := w.start(func(c *gatekeeperCmd) { c.MaxConns = 1 })
	first := dial(t, one.authz)
	fmt.Fprint(first, "GET /authz HTTP/1.1\r\nHost: gk\r\nX-Org-Slug: acme\r\nX-Original-Method: GET\r\nX-Original-URI: /app\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(first), nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("first connection: %v %v", resp, err)
	}
	second := dial(t, one.authz)
	fmt.Fprint(second, "GET /authz HTTP/1.1\r\nHost: gk\r\nX-Org-Slug: acme\r\nX-Original-Method: GET\r\nX-Original-URI: /app\r\n\r\n")
	answered := make(chan error, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(second), nil)
		if err == nil && resp.StatusCode != 200 {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		answered <- err
	}()
	select {
	case err := <-answered:
		t.Fatalf("a second connection was served while the first was open (%v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	first.Close()
	select {
	case err := <-answered:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second connection was not served after the first closed")
	}
}

// A browser gets the HTML page, from the proxy, from /authz and through
// Caddy (which relays /authz's answer); the renewal link is escaped.
func TestBrowserDenialPage(t *testing.T) {
	renewal := func(c *gatekeeperCmd) { c.RenewalURL = "https://billing.example.com/renew?src=gate&org={org}" }
	w := newWorld(t, renewal)
	expires := time.Now().Add(40 * 24 * time.Hour).UTC().Truncate(time.Second)
	w.upload("acme", func(p map[string]any) { p["expires"] = expires.Format(time.RFC3339) })
	const accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	page := func(name string, a answer, raw string, want ...string) {
		t.Helper()
		h := a.hdr
		if a.code != 403 || h.Get("Content-Type") != "text/html; charset=utf-8" || h.Get("Content-Security-Policy") != "default-src 'none'; style-src 'unsafe-inline'" ||
			h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %d %v", name, a.code, h)
		}
		for _, s := range want {
			if !strings.Contains(raw, s) {
				t.Errorf("%s: the page lacks %s:\n%s", name, s, raw)
			}
		}
	}
	code, hdr, raw := getRaw(t, "http://"+w.gk.proxy+"/reports/q3", "X-Org-Slug", "acme", "Accept", accept)
	page("proxy", answer{code: code, hdr: hdr}, raw, "Feature not licensed", "<dd>acme</dd>",
		`<time datetime="`+expires.Format(time.RFC3339)+`">`, `href="https://billing.example.com/renew?src=gate&amp;org=acme"`)
	if hdr.Get("X-License-Error") != "feature_not_licensed" {
		t.Errorf("proxy: X-License-Error %q", hdr.Get("X-License-Error"))
	}
	code, hdr, raw = getRaw(t, "http://"+w.gk.authz+"/authz", "X-Org-Slug", "nobody", "X-Original-Method", "GET", "X-Original-URI", "/app", "Accept", accept)
	page("authz", answer{code: code, hdr: hdr}, raw, "No license", "<dd>nobody</dd>", `org=nobody"`)

	fwd := w.start(func(c *gatekeeperCmd) { renewal(c); c.AuthzHeaders = "forwarded" })
	caddy := proxies.Caddy(t, proxies.Setup{File: proxies.CaddyAuthLayer, Authz: fwd.authz,
		Upstream: w.upstream.Listener.Addr().String(), Session: platformSession(t)})
	code, hdr, raw = getRaw(t, caddy+"/app", "Cookie", "session=nobody", "Accept", accept)
	page("caddy", answer{code: code, hdr: hdr}, raw, "No license", "<dd>nobody</dd>")
	if a := get(t, caddy+"/app", "Cookie", "session=nobody"); a.code != 403 || a.body["error"] != "license_missing" {
		t.Errorf("caddy, an API client: %d %v", a.code, a.body)
	}
}

// getRaw is get returning the body as it came.
func getRaw(t *testing.T, url string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	return request(t, "GET", url, hdr...)
}

// request sends method to url with hdr (name, value pairs) and returns
// the answer's status, headers and body as it came.
func request(t *testing.T, method, url string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(raw)
}

// grep returns the lines of s holding any of subs.
func grep(s string, subs ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, sub := range subs {
			if strings.Contains(l, sub) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
