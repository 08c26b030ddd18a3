// Command gatedapp is a platform's own HTTP service gating its handlers
// in-process: a follow.Follower keeps every org's license state current
// from the ledger's stream, and a gatekeeper.Gate decides each request
// before the handler runs. It imports only the ledger module's public
// packages.
//
// Against a ledger on the embedded default, from the ledger's directory:
//
//	gatedapp --nats-nkey data/nats/reader.nk --public-keys-file keys/vendor-2026.pub
//	curl -H 'X-Org-Slug: acme' http://127.0.0.1:8090/projects
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/licenseledger/ledger/gatekeeper"
	"github.com/licenseledger/ledger/gatekeeper/follow"
	"github.com/licenseledger/ledger/gatekeeper/natsstream"
	"github.com/licenseledger/ledger/license"
)

func main() {
	var (
		listen   = flag.String("listen", "127.0.0.1:8090", "address to serve on")
		natsURL  = flag.String("nats-url", "nats://127.0.0.1:4223", "the ledger's NATS")
		nkey     = flag.String("nats-nkey", "data/nats/reader.nk", "the reader's NKey seed file")
		keysFile = flag.String("public-keys-file", "", "trusted vendor public keys ('<kid> <base64>' lines)")
		stream   = flag.String("stream", natsstream.DefaultStream, "the license stream")
	)
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log, *listen, *natsURL, *nkey, *keysFile, *stream); err != nil {
		log.Error("gatedapp", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, listen, natsURL, nkey, keysFile, stream string) error {
	keys, err := license.NewKeys(license.RingConfig{File: keysFile})
	if err != nil {
		return err
	}
	auth, err := nats.NkeyOptionFromSeed(nkey)
	if err != nil {
		return err
	}
	const maxStaleness = 30 * time.Second
	nc, err := nats.Connect(natsURL, append(natsstream.ConnOptions(maxStaleness), auth, nats.Name("gatedapp"))...)
	if err != nil {
		return err
	}
	defer nc.Close()

	// The follower: every org's license state, current from the stream.
	st, err := natsstream.Open(ctx, nc, stream)
	if err != nil {
		return err
	}
	f, err := follow.New(follow.Config{Stream: st, Keys: keys, MaxStaleness: maxStaleness, Logger: log})
	if err != nil {
		return err
	}
	go f.Run(ctx)
	if err := f.Wait(ctx); err != nil {
		return err
	}

	// The gate, in front of the platform's own handlers: the org comes
	// from X-Org-Slug (set by the platform's front proxy on loopback).
	gate, err := gatekeeper.New(f, gatekeeper.Config{})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s: license %s, tier %q\n", r.Header.Get("X-License-Org"),
			r.Header.Get("X-License-Status"), r.Header.Get("X-License-Tier"))
	})
	srv := &http.Server{Addr: listen, Handler: gate.Middleware(mux), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Shutdown(context.Background())
	}()
	log.Info("gatedapp ready", "listen", listen, "orgs", f.Health().OrgsCached)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
