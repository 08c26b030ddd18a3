package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/licenseledger/ledger/internal/bench"
	"github.com/licenseledger/ledger/internal/cli"
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
}

func (c *benchReplicaCmd) Run(env *cli.Env) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := bench.RunReplica(ctx, bench.ReplicaConfig{NATSURL: c.NATSURL, NKeyFile: c.NATSNKey, Stream: c.Stream,
		PublicKeys: c.PublicKeys, DatabaseURL: c.DatabaseURL}, env.Stdout, env.Stderr)
	if err != nil {
		return &cli.Error{Code: cli.ExitUnavailable, Err: err}
	}
	return nil
}
