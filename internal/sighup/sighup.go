// Package sighup runs reloads on SIGHUP, the operator's "re-read your
// files" signal (key ring, /authz secret, JWKS file).
package sighup

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// Handle calls reload, in one goroutine, on every SIGHUP the process gets
// until ctx ends. It returns at once; the signal is caught from then on.
func Handle(ctx context.Context, reload func()) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP)
	go func() {
		defer signal.Stop(sig)
		for {
			select {
			case <-ctx.Done():
				return
			case <-sig:
				reload()
			}
		}
	}()
}
