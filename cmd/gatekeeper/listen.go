package main

import (
	"net/http"
	"time"
)

// limits protect every listener (proxy, /authz, admin) from slow and
// greedy clients.
type limits struct {
	// readTimeout bounds reading a request's headers and body
	// (--read-timeout); the headers alone get at most maxHeaderWait.
	readTimeout time.Duration
	// maxHeaderBytes bounds the request header block (--max-header-bytes).
	maxHeaderBytes int
	// maxConns bounds the open connections of one listener (--max-conns);
	// more wait in the kernel's accept queue.
	maxConns int
}

// maxHeaderWait bounds reading the request headers when --read-timeout
// is longer.
const maxHeaderWait = 10 * time.Second

// server returns the http.Server of one listener. ReadTimeout bounds only
// the reading of a request: net/http lifts the read deadline once the body
// has been read (when it starts watching the idle connection) and when a
// connection is hijacked for an upgrade, so a long response or a WebSocket
// lives on. There is deliberately no WriteTimeout: it would cut them.
func (l limits) server(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadTimeout: l.readTimeout,
		ReadHeaderTimeout: min(l.readTimeout, maxHeaderWait), MaxHeaderBytes: l.maxHeaderBytes,
		IdleTimeout: 2 * time.Minute}
}
