package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/ledger"
	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/testenv"
	"github.com/licenseledger/ledger/internal/testenv/licensetest"
	"github.com/licenseledger/ledger/internal/testenv/natstest"
	"github.com/licenseledger/ledger/license"
)

var op = events.Actor{Kind: events.ActorOperator, ID: "test"}

// world is a stream with a ledger appending to it, an upstream that echoes
// what it received, and a gatekeeper in front.
type world struct {
	admins   []string // admin addresses of the gatekeepers started
	srv      *natstest.Server
	t        *testing.T
	svc      *ledger.Service
	upstream *httptest.Server
	bus      *natsbus.Bus
	gk       addrs
	logs     testenv.Buffer // what every gatekeeper started logged
}

func newWorld(t *testing.T, mod func(*gatekeeperCmd)) *world {
	t.Helper()
	srv := natstest.Start(t)
	srv.CreateStream(t)
	bus, _, err := natsbus.Open(context.Background(), srv.Connect(t, natsauth.RoleLedger), "LICENSES", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	keys := licensetest.Keys(t, "k1")
	svc := ledger.New(ledger.Config{Store: bus, Keys: keys, DefaultGraceDays: 7})
	if err := svc.Start(context.Background(), events.LedgerStarted{}); err != nil {
		t.Fatal(err)
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := map[string]string{"path": r.URL.Path, "method": r.Method}
		for k := range r.Header {
			if strings.HasPrefix(k, "X-License-") || k == "X-Gatekeeper-Secret" {
				hdr[k] = r.Header.Get(k)
			}
		}
		json.NewEncoder(w).Encode(hdr)
	}))
	t.Cleanup(up.Close)
	w := &world{t: t, svc: svc, upstream: up, srv: srv, bus: bus}
	w.gk = w.start(mod)
	return w
}

// start runs another gatekeeper on the world's stream.
func (w *world) start(mod func(*gatekeeperCmd)) addrs {
	t := w.t
	t.Helper()
	seed := filepath.Join(t.TempDir(), "reader.nk")
	os.WriteFile(seed, w.srv.ReaderSeed, 0o600)
	features := filepath.Join(t.TempDir(), "features")
	os.WriteFile(features, []byte("# reports need the reports feature\nGET /reports/{rest...} reports\n"), 0o644)
	cmd := &gatekeeperCmd{Listen: "127.0.0.1:0", Upstream: w.upstream.URL, AuthzListen: "127.0.0.1:0", AuthzHeaders: "original",
		AdminListen: "127.0.0.1:0", OrgFrom: "header:X-Org-Slug", TrustedProxies: []string{"127.0.0.0/8", "::1/128"},
		DecisionTimeout: 100 * time.Millisecond, MinSeqWait: 50 * time.Millisecond, MaxStaleness: 30 * time.Second,
		ShutdownWait: time.Second, Features: features, AuthzTrusted: []string{"127.0.0.0/8", "::1/128"},
		ReadTimeout: 30 * time.Second, MaxHeaderBytes: 64 << 10, MaxConns: 10000, RenewalURL: "/ui/license/?org={org}", AllowUI: "/ui/"}
	cmd.NATSURL, cmd.NATSNKey, cmd.Stream, cmd.PublicKeys = w.srv.URL(), seed, "LICENSES", licensetest.RingEntry("k1")
	if mod != nil {
		mod(cmd)
	}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan addrs, 1)
	done := make(chan error, 1)
	go func() { done <- cmd.serve(ctx, slog.New(slog.NewTextHandler(&w.logs, nil)), started) }()
	var a addrs
	select {
	case a = <-started:
	case err := <-done:
		t.Fatalf("gatekeeper: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("gatekeeper did not start")
	}
	t.Cleanup(func() { cancel(); <-done })
	w.admins = append(w.admins, a.admin)
	return a
}

// sync waits until every gatekeeper has applied the stream up to seq.
func (w *world) sync(seq uint64) {
	w.t.Helper()
	for _, admin := range w.admins {
		eventually(w.t, func() error {
			a := get(w.t, "http://"+admin+"/readyz")
			if applied, _ := a.body["applied_seq"].(float64); uint64(applied) < seq {
				return fmt.Errorf("gatekeeper %s at %v, want %d", admin, a.body["applied_seq"], seq)
			}
			return nil
		})
	}
}

func (w *world) upload(org string, mod func(map[string]any)) ledger.Result {
	w.t.Helper()
	p := map[string]any{"license_id": "0193a5b0-7e1a-7c3d-8f00-" + strings.Repeat("0", 12-len(org)) + hexOrg(org),
		"customer": org, "org_slug": org, "tier": "enterprise", "features": []string{"sso"},
		"issued_at": "2026-11-01T00:00:00Z", "expires": time.Now().Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339)}
	if org == license.InstanceOrg {
		p["org_slug"] = "*"
	}
	if mod != nil {
		mod(p)
	}
	res, err := w.svc.Upload(context.Background(), ledger.Upload{Org: org, Body: []byte(licensetest.Sign(w.t, "k1", p).Key), Actor: op, Source: events.SourceAPI})
	if err != nil {
		w.t.Fatalf("upload %s: %v", org, err)
	}
	w.syncHead()
	return res
}

// syncHead waits until every gatekeeper has applied the whole stream
// (the upload may have been followed by the enforcement latch).
func (w *world) syncHead() {
	w.t.Helper()
	_, head, err := w.bus.Stream(context.Background())
	if err != nil {
		w.t.Fatal(err)
	}
	w.sync(head)
}

func hexOrg(org string) string {
	h := ""
	for _, c := range org {
		h += string("0123456789abcdef"[int(c)%16])
	}
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}

type answer struct {
	code int
	hdr  http.Header
	body map[string]any
}

func get(t *testing.T, url string, hdr ...string) answer {
	t.Helper()
	code, h, raw := getRaw(t, url, hdr...)
	var m map[string]any
	json.Unmarshal([]byte(raw), &m)
	return answer{code, h, m}
}

// eventually retries check until it passes (events reach replicas within
// milliseconds; the bound only keeps a broken build from hanging).
func eventually(t *testing.T, check func() error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
