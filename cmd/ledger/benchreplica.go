package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/licenseledger/ledger/internal/bench"
	"github.com/licenseledger/ledger/internal/cli"
	"github.com/licenseledger/ledger/internal/secfile"
)

// benchReplicaCmd is the gatekeeper replica ledger bench starts as a
// process of its own (this binary, re-executed) to measure a replica's
// start and memory from outside. Hidden: it is bench's, not an
// operator's.
type benchReplicaCmd struct {
	NATSURL     string `name:"nats-url" env:"NATS_URL" required:"" help:"The stream's NATS server."`
	NATSNKey    string `name:"nats-nkey" env:"NATS_NKEY" placeholder:"FILE" help:"The reader's nkey seed file."`
	Stream      string `name:"stream" env:"LICENSE_STREAM" help:"Stream name (default LICENSES)."`
	PublicKeys  string `name:"public-keys" env:"LICENSE_PUBLIC_KEYS" required:"" help:"The only trusted vendor keys, kid:base64,…"`
	DatabaseURL string `name:"database-url" env:"DATABASE_URL" placeholder:"URL" help:"PostgreSQL read model to load from."`
	CPUProfile  string `name:"cpuprofile" placeholder:"FILE" type:"path" help:"Write a CPU profile of the replica's life to FILE."`
	HeapProfile string `name:"heapprofile" placeholder:"FILE" type:"path" help:"Write a heap profile to FILE at each GET /heap."`
}

func (c *benchReplicaCmd) Run(env *cli.Env) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if c.CPUProfile != "" {
		f, err := secfile.Create(c.CPUProfile)
		if err != nil {
			return cli.Usage("--cpuprofile: %v", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	// As cmd/gatekeeper does: the Go memory limit follows the container's.
	cli.SetMemoryLimit(slog.New(slog.NewJSONHandler(env.Stderr, nil)))
	err := bench.RunReplica(ctx, bench.ReplicaConfig{NATSURL: c.NATSURL, NKeyFile: c.NATSNKey, Stream: c.Stream,
		PublicKeys: c.PublicKeys, DatabaseURL: c.DatabaseURL, HeapProfile: c.HeapProfile}, env.Stdout, env.Stderr)
	if err != nil {
		return &cli.Error{Code: cli.ExitUnavailable, Err: err}
	}
	return nil
}
