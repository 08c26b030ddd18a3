package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"

	"github.com/licenseledger/ledger/gatekeeper"
	"github.com/licenseledger/ledger/internal/tick"
)

// bufferPool gives ReverseProxy reusable 32 KiB copy buffers (without one
// it allocates a buffer per request).
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

// newProxy is the reverse proxy front end: strip client X-License-*,
// decide, deny with the JSON body (503 for license_state_unavailable), or
// forward with the X-License-* headers set — streaming, keep-alive and
// WebSocket upgrades included. Every forwarded request is tracked by org,
// so a flip to deny ends the org's open requests and connections.
func newProxy(gate *gatekeeper.Gate, upstream *url.URL, conns *connTracker, log *slog.Logger) http.Handler {
	transport := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport:  transport,
		BufferPool: &bufferPool{},
		ErrorLog:   slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() == nil {
				log.Warn("upstream unreachable", "err", err)
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte(`{"error":"upstream_unavailable","message":"the application did not answer"}` + "\n"))
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := gate.Decide(r)
		gate.PrepareRequest(r, d)
		if !d.Allowed {
			gatekeeper.WriteDenial(w, d)
			return
		}
		gatekeeper.SetClientHeaders(w.Header(), d)
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		r = r.WithContext(ctx)
		id := conns.add(d.Org, r, cancel)
		defer conns.remove(d.Org, id)
		rp.ServeHTTP(w, r)
	})
}

// connTracker keeps the in-flight requests of each org with a way to end
// them.
type connTracker struct {
	mu   sync.Mutex
	next uint64
	orgs map[string]map[uint64]tracked
}

type tracked struct {
	req    *http.Request
	cancel context.CancelFunc
}

func newConnTracker() *connTracker { return &connTracker{orgs: map[string]map[uint64]tracked{}} }

func (c *connTracker) add(org string, r *http.Request, cancel context.CancelFunc) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next++
	m := c.orgs[org]
	if m == nil {
		m = map[uint64]tracked{}
		c.orgs[org] = m
	}
	m[c.next] = tracked{req: r, cancel: cancel}
	return c.next
}

func (c *connTracker) remove(org string, id uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.orgs[org], id)
	if len(c.orgs[org]) == 0 {
		delete(c.orgs, org)
	}
}

// recheck decides org's open requests again and ends those now denied.
// An _instance change rechecks every org (they may resolve through it).
func (c *connTracker) recheck(org string, allowed func(*http.Request) bool) {
	c.mu.Lock()
	var open []tracked
	for o, m := range c.orgs {
		if o != org && org != "_instance" {
			continue
		}
		for _, t := range m {
			open = append(open, t)
		}
	}
	c.mu.Unlock()
	for _, t := range open {
		if !allowed(t.req) {
			t.cancel()
		}
	}
}

// recheckAll runs recheck for every org with open requests every interval:
// time-based expiry flips decisions without any event.
func (c *connTracker) recheckAll(ctx context.Context, interval time.Duration, allowed func(*http.Request) bool) {
	tick.Every(ctx, interval, func() { c.recheck("_instance", allowed) })
}
