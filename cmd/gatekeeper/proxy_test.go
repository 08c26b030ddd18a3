package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// upgradeUpstream answers an Upgrade with 101 and then echoes bytes.
func upgradeUpstream(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			fmt.Fprintf(w, "org=%s status=%s", r.Header.Get("X-License-Org"), r.Header.Get("X-License-Status"))
			return
		}
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		io.Copy(conn, brw)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// An upgraded connection of an org is closed as soon as its decision flips
// to deny (here: the license is revoked).
func TestProxyClosesConnectionsOnDeny(t *testing.T) {
	var w *world
	up := upgradeUpstream(t)
	w = newWorld(t, func(c *gatekeeperCmd) { c.Upstream = up })
	res := w.upload("acme", nil)
	conn, err := net.Dial("tcp", w.gk.proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: app\r\nX-Org-Slug: acme\r\nX-License-Min-Seq: %d\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n", res.Seq)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	fmt.Fprint(conn, "ping\n")
	if line, err := br.ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("echo: %q %v", line, err)
	}
	revokedAt := time.Now()
	if _, err := w.svc.Invalidate(context.Background(), "acme", op, *res.Report.LicenseID, "refund"); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, err := br.ReadString('\n'); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the connection stayed open after the license was revoked")
			}
			break
		}
	}
	t.Logf("connection closed %v after the revocation", time.Since(revokedAt).Round(time.Millisecond))
	// New requests are denied too.
	if a := get(t, "http://"+w.gk.proxy+"/ws", "X-Org-Slug", "acme"); a.code != 403 || a.body["error"] != "license_invalid" {
		t.Fatalf("after revocation: %d %v", a.code, a.body)
	}
}

// Envoy's family: the original method and path come from the auth
// request itself, behind /authz.
func TestAuthzPathFamily(t *testing.T) {
	w := newWorld(t, func(c *gatekeeperCmd) { c.AuthzHeaders = "path" })
	w.upload("acme", nil)
	base := "http://" + w.gk.authz
	if a := get(t, base+"/authz/app/x?y=1", "X-Org-Slug", "acme"); a.code != 200 || a.hdr.Get("X-License-Status") != "valid" {
		t.Fatalf("allowed: %d %v", a.code, a.hdr)
	}
	if a := get(t, base+"/authz/reports/q3", "X-Org-Slug", "acme"); a.code != 403 || a.body["error"] != "feature_not_licensed" {
		t.Fatalf("feature: %d %v", a.code, a.body)
	}
	if a := get(t, base+"/authz/app", "X-Org-Slug", "nobody"); a.code != 403 || a.hdr.Get("X-License-Error") != "license_missing" {
		t.Fatalf("missing: %d %v", a.code, a.body)
	}
	// The original family never falls back to X-Forwarded-*: without
	// X-Original-* the request is refused (TestAuthzHeadersMismatch).
	w2 := w.start(func(c *gatekeeperCmd) { c.AuthzHeaders = "original" })
	if a := get(t, "http://"+w2.authz+"/authz", "X-Org-Slug", "acme", "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/app"); a.code != 400 || a.body["error"] != "authz_headers_mismatch" {
		t.Fatalf("original family with forwarded headers: %d %v", a.code, a.body)
	}
	if a := get(t, "http://"+w2.authz+"/authz", "X-Org-Slug", "acme"); a.code != 403 || a.body["error"] != "path_invalid" {
		t.Fatalf("original family without any original request: %d %v", a.code, a.body)
	}
}

func TestAdminEndpoints(t *testing.T) {
	w := newWorld(t, nil)
	w.upload("acme", nil)
	get(t, "http://"+w.gk.proxy+"/app", "X-Org-Slug", "acme")
	get(t, "http://"+w.gk.proxy+"/app", "X-Org-Slug", "nobody")
	admin := "http://" + w.gk.admin
	if a := get(t, admin+"/healthz"); a.code != 200 {
		t.Fatalf("healthz %d", a.code)
	}
	if a := get(t, admin+"/readyz"); a.code != 200 || a.body["loaded"] != true {
		t.Fatalf("readyz %d %v", a.code, a.body)
	}
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := string(raw)
	for _, want := range []string{`gatekeeper_decisions_total{code="",result="allowed"} 1`, `gatekeeper_decisions_total{code="license_missing",result="denied"} 1`,
		"gatekeeper_enforcement_override -1"} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(m, `org="acme"`) {
		t.Error("a metric has a per-org label")
	}
}

// A streamed response reaches the client chunk by chunk, not when the
// upstream finishes.
func TestProxyStreams(t *testing.T) {
	up, release := sseUpstream(t)
	defer close(release)
	w := newWorld(t, func(c *gatekeeperCmd) { c.Upstream = up })
	w.upload("acme", nil)
	req, _ := http.NewRequest("GET", "http://"+w.gk.proxy+"/events", nil)
	req.Header.Set("X-Org-Slug", "acme")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(resp.Body).ReadString('\n')
		line <- l
	}()
	select {
	case l := <-line:
		if l != "data: first\n" {
			t.Fatalf("first chunk %q", l)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the first chunk was held back until the upstream finished")
	}
}
