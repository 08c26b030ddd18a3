package frontend

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

// Proxy is the reverse proxy front end: strip client X-License-*, decide,
// deny (Gate.WriteDenial: JSON, or HTML for a browser; 503 for
// license_state_unavailable), or forward
// with the X-License-* headers set — streaming, keep-alive and WebSocket
// upgrades included. Every forwarded request is tracked by org, so a flip
// to deny ends the org's open requests and connections (Recheck). It is
// safe for concurrent use.
type Proxy struct {
	gate  *gatekeeper.Gate
	rp    *httputil.ReverseProxy
	conns *connTracker
}

// NewProxy returns a Proxy forwarding to upstream what gate allows.
func NewProxy(gate *gatekeeper.Gate, upstream *url.URL, log *slog.Logger) *Proxy {
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
	return &Proxy{gate: gate, rp: rp, conns: newConnTracker()}
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d := p.gate.Decide(r)
	p.gate.PrepareRequest(r, d)
	if !d.Allowed {
		p.gate.WriteDenial(w, r, d)
		return
	}
	delete(r.Header, SecretHeader) // /authz's, never the application's
	gatekeeper.SetClientHeaders(w.Header(), d)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	r = r.WithContext(ctx)
	id := p.conns.add(d.Org, r, cancel)
	defer p.conns.remove(d.Org, id)
	p.rp.ServeHTTP(w, r)
}

// Recheck decides org's open requests again and ends those now denied.
// An _instance change rechecks every org (they may resolve through it).
func (p *Proxy) Recheck(org string) { p.conns.recheck(org, p.allowed) }

// RecheckEvery rechecks every org with open requests every interval until
// ctx ends: time-based expiry flips decisions without any event.
func (p *Proxy) RecheckEvery(ctx context.Context, interval time.Duration) {
	tick.Every(ctx, interval, func() { p.conns.recheck("_instance", p.allowed) })
}

func (p *Proxy) allowed(r *http.Request) bool { return p.gate.Decide(r).Allowed }

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
