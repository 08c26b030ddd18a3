// Package faultproxy is a TCP proxy for tests that can lose traffic on
// purpose: drop the server's replies (a request that lands but whose answer
// never arrives) or black-hole a connection without closing it (the
// partition a closed socket would not simulate).
package faultproxy

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy forwards connections from its address to a target.
type Proxy struct {
	ln           net.Listener
	target       string
	dropReplies  atomic.Bool
	dropRequests atomic.Bool
	mu           sync.Mutex
	conns        []net.Conn
}

// Start listens on a free loopback port and forwards to target (host:port).
func Start(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target}
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// DropReplies discards target→client bytes while on.
func (p *Proxy) DropReplies(on bool) { p.dropReplies.Store(on) }

// Blackhole discards bytes in both directions while on, keeping sockets open.
func (p *Proxy) Blackhole(on bool) {
	p.dropReplies.Store(on)
	p.dropRequests.Store(on)
}

// Close stops accepting and closes every connection.
func (p *Proxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go pipe(s, c, &p.dropRequests)
		go pipe(c, s, &p.dropReplies)
	}
}

// pipe copies src to dst, discarding while drop is set.
func pipe(dst io.WriteCloser, src io.ReadCloser, drop *atomic.Bool) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !drop.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
