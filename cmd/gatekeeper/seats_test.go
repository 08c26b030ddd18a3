package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/cli"
	"github.com/licenseledger/ledger/internal/testenv/metricstest"
	"github.com/licenseledger/ledger/internal/testenv/proxies"
	"github.com/licenseledger/ledger/license"
)

// seatRoutes writes a --seat-routes file.
func seatRoutes(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "seat-routes")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// send sends method to url with hdr (name, value pairs).
func send(t *testing.T, method, url string, hdr ...string) answer {
	t.Helper()
	code, h, raw := request(t, method, url, hdr...)
	var m map[string]any
	json.Unmarshal([]byte(raw), &m)
	return answer{code, h, m}
}

func (w *world) seatMode(mode string) {
	w.t.Helper()
	if _, err := w.svc.SetSeatEnforcement(context.Background(), op, mode); err != nil {
		w.t.Fatal(err)
	}
	w.syncHead()
}

func (w *world) users(org string, n int) uint64 {
	w.t.Helper()
	res, err := w.svc.ReportUsage(context.Background(), org, op, n)
	if err != nil {
		w.t.Fatal(err)
	}
	return res.Seq
}

// Seats through every front end: the reverse proxy, /authz itself, and
// real nginx and Caddy running the shipped auth-layer snippets. soft: the
// seat route passes with the warning on the client's response (never the
// app's request); hard: the seat route is 403 users_limit_reached while
// the org's other routes, removing users included, pass.
func TestSeatsThroughEveryFrontEnd(t *testing.T) {
	routes := seatRoutes(t, "# adding a user takes a seat\nPOST /api/users\n")
	w := newWorld(t, func(c *gatekeeperCmd) { c.SeatRoutes = routes })
	w.upload("acme", func(p map[string]any) { p["users_limit"] = 50 })
	w.upload("open", func(p map[string]any) { p["users_limit"] = 0 }) // unlimited
	w.users("acme", 51)
	w.users("open", 5000)
	w.upload("grace", func(p map[string]any) { p["users_limit"] = 50; p["expires"] = past(time.Hour) })
	w.users("grace", 51)
	w.seatMode(license.SeatsSoft)
	forwarded := w.start(func(c *gatekeeperCmd) { c.AuthzHeaders = "forwarded"; c.SeatRoutes = routes })
	session := platformSession(t)
	up := w.upstream.Listener.Addr().String()
	type front func(method, org, path string) answer
	viaSession := func(base string) front {
		return func(method, org, path string) answer {
			return send(t, method, base+path, "Cookie", "session="+org, "X-License-Warning", "forged")
		}
	}
	fronts := map[string]front{
		"proxy": func(method, org, path string) answer {
			return send(t, method, "http://"+w.gk.proxy+path, "X-Org-Slug", org, "X-License-Warning", "forged")
		},
		"authz": func(method, org, path string) answer {
			return send(t, "GET", "http://"+w.gk.authz+"/authz", "X-Org-Slug", org, "X-Original-Method", method, "X-Original-URI", path)
		},
		"nginx": viaSession(proxies.Nginx(t, proxies.Setup{File: proxies.NginxAuthLayer, Authz: w.gk.authz, Upstream: up, Session: session})),
		"caddy": viaSession(proxies.Caddy(t, proxies.Setup{File: proxies.CaddyAuthLayer, Authz: forwarded.authz, Upstream: up, Session: session})),
	}
	const warning = "users_limit; active=51; limit=50"
	for name, f := range fronts {
		t.Run("soft/"+name, func(t *testing.T) {
			a := f("POST", "acme", "/api/users")
			if a.code != 200 || a.hdr.Get("X-License-Warning") != warning || len(a.hdr.Values("X-License-Warning")) != 1 {
				t.Fatalf("seat route: %d %v %v", a.code, a.hdr, a.body)
			}
			if name != "authz" && (a.body["X-License-Warning"] != nil || a.body["X-License-Users-Limit"] != "50") {
				t.Fatalf("the app saw %v", a.body)
			}
			if a := f("GET", "acme", "/app"); a.code != 200 || a.hdr.Get("X-License-Warning") != "" {
				t.Fatalf("another route: %d %v", a.code, a.hdr)
			}
			if a := f("POST", "open", "/api/users"); a.code != 200 || a.hdr.Get("X-License-Warning") != "" {
				t.Fatalf("unlimited: %d %v", a.code, a.hdr)
			}
			// In grace: both warnings, one value.
			a = f("POST", "grace", "/api/users")
			if v := a.hdr.Values("X-License-Warning"); a.code != 200 || len(v) != 1 || !strings.HasPrefix(v[0], "grace; ends=") || !strings.HasSuffix(v[0], ", "+warning) {
				t.Fatalf("grace and seats: %d %q", a.code, v)
			}
		})
	}
	w.seatMode(license.SeatsHard)
	for name, f := range fronts {
		t.Run("hard/"+name, func(t *testing.T) {
			a := f("POST", "acme", "/api/users")
			if a.code != 403 || a.hdr.Get("X-License-Error") != "users_limit_reached" || a.body["error"] != "users_limit_reached" {
				t.Fatalf("seat route: %d %v %v", a.code, a.hdr, a.body)
			}
			if name != "nginx" && !strings.Contains(fmt.Sprint(a.body["message"]), "removing users") {
				t.Fatalf("message %v", a.body)
			}
			for _, r := range [][2]string{{"GET", "/app"}, {"DELETE", "/api/users/7"}, {"GET", "/api/users"}} {
				if a := f(r[0], "acme", r[1]); a.code != 200 || a.hdr.Get("X-License-Warning") != "" {
					t.Fatalf("%s %s: %d %v %v", r[0], r[1], a.code, a.hdr, a.body)
				}
			}
			if a := f("POST", "open", "/api/users"); a.code != 200 {
				t.Fatalf("unlimited: %d %v", a.code, a.body)
			}
		})
	}
}

// A usage report is seen with the same consistency as a license change:
// a request carrying the report's sequence (X-License-Min-Seq) is decided
// on it, and a new license raising users_limit applies at once.
func TestSeatsFollowReportsAndLicenses(t *testing.T) {
	w := newWorld(t, func(c *gatekeeperCmd) { c.SeatRoutes = seatRoutes(t, "POST /api/users\n") })
	w.upload("acme", func(p map[string]any) { p["users_limit"] = 50 })
	w.seatMode(license.SeatsHard)
	seat := func(seq uint64) answer {
		return send(t, "POST", "http://"+w.gk.proxy+"/api/users", "X-Org-Slug", "acme", "X-License-Min-Seq", fmt.Sprint(seq))
	}
	if a := seat(w.users("acme", 50)); a.code != 403 || a.body["error"] != "users_limit_reached" {
		t.Fatalf("at the limit: %d %v", a.code, a.body)
	}
	if a := seat(w.users("acme", 49)); a.code != 200 {
		t.Fatalf("after a user was removed: %d %v", a.code, a.body)
	}
	if a := seat(w.users("acme", 80)); a.code != 403 {
		t.Fatalf("over: %d %v", a.code, a.body)
	}
	res := w.upload("acme", func(p map[string]any) {
		p["users_limit"] = 100
		p["license_id"] = "0193a5b0-7e1a-7c3d-8f00-0000000000bb"
	})
	if a := seat(res.Seq); a.code != 200 || a.body["X-License-Users-Limit"] != "100" {
		t.Fatalf("a license with 100 seats: %d %v", a.code, a.body)
	}
	resp, err := http.Get("http://" + w.gk.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	metricstest.Check(t, raw) // promtool's lint, and units in names
	for _, want := range []string{`gatekeeper_seat_checks_total{mode="hard",outcome="denied"} 2`, `gatekeeper_seat_checks_total{mode="hard",outcome="under"} 2`,
		`gatekeeper_decisions_total{code="users_limit_reached",result="denied"} 2`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("metrics lack %q:\n%s", want, grep(string(raw), "seat", "users_limit"))
		}
	}
}

func TestSeatRoutesFlag(t *testing.T) {
	c := &gatekeeperCmd{OrgFrom: "header:X-Org-Slug", SeatRoutes: seatRoutes(t, "POST /api/users\n\nget /api/invites\n")}
	_, err := c.gateConfig()
	if err == nil || !strings.Contains(err.Error(), "--seat-routes "+c.SeatRoutes+": seat routes line 3: pattern \"get /api/invites\"") {
		t.Fatalf("bad file: %v", err)
	}
	c.SeatRoutes = filepath.Join(t.TempDir(), "absent")
	if _, err := c.gateConfig(); err == nil || !strings.Contains(err.Error(), "--seat-routes:") {
		t.Fatalf("missing file: %v", err)
	}
	c.SeatRoutes = seatRoutes(t, "POST /api/users\nPUT /api/orgs/{org}/members/{id}\n")
	cfg, err := c.gateConfig()
	if err != nil || len(cfg.SeatRoutes) != 2 {
		t.Fatalf("good file: %v %v", cfg.SeatRoutes, err)
	}
	var out, errb bytes.Buffer
	run([]string{"--help"}, &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Now: time.Now})
	if !strings.Contains(out.String(), "--seat-routes=FILE") || !strings.Contains(out.String(), "$GATEKEEPER_SEAT_ROUTES") {
		t.Fatalf("--help lacks --seat-routes:\n%s", out.String())
	}
}
