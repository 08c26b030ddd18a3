package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/licenseledger/ledger/internal/cli"
	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/natsbus"
)

const streamAdminHelp = `The stream's configuration is part of the contract (docs/design.md §3.1): file storage, limits retention with no limit set (no max age, messages, bytes or per-subject limit), discard new, a 2-minute duplicate window, deny delete and purge, direct get, LICENSE_STREAM_REPLICAS replicas, at most 1000 consumers, each removed after 5 minutes unused. A limit set on it makes JetStream drop history at once.

Only the stream administrator may create the stream or change its configuration: the admin user, whose seed the embedded server keeps in $DATA_DIR/nats/admin.nk and which scaled installs define in deploy/nats/auth.conf and the Kubernetes values. The running ledger's credentials (ledger.nk) may not. A running ledger compares the configuration with the contract's at start and every --stream-check-interval, and reports a difference (log, ledger_stream_config_drift, /readyz, a ledger.stream_config_drift event).

The stream is reached with NATS_URL and its credentials (NATS_NKEY=admin.nk), else the running ledger's embedded server at --nats-listen with $DATA_DIR/nats/admin.nk, else the embedded store on $DATA_DIR itself (ledger serve stopped).`

type streamApplyCmd struct {
	maintFlags
	Replicas int `name:"stream-replicas" env:"LICENSE_STREAM_REPLICAS" default:"1" help:"The stream's replicas (3 in clusters)."`
}

func (c *streamApplyCmd) Help() string {
	return `Creates the stream (LICENSE_STREAM) with the contract's configuration when it does not exist, and otherwise updates every setting that differs from it, printing each with its old and new value. Run it once before the first ledger of a scaled install starts, and before ledgers of a release that changes the configuration (the Kubernetes migrate Job does); the embedded server of a single-node install does it by itself at start for what a release changes.

` + streamAdminHelp + `

Exit codes: 0 the stream has the contract's configuration; 1 the server refused a change (it names it: some settings, such as the storage type, cannot change) or the credentials are not the stream administrator's; 2 usage; 4 NATS unreachable.`
}

func (c *streamApplyCmd) Run(env *cli.Env) error {
	if c.Replicas < 1 || c.Replicas > 5 {
		return cli.Usage("LICENSE_STREAM_REPLICAS must be 1..5")
	}
	return c.runMaint(env, c.run)
}

func (c *streamApplyCmd) run(ctx context.Context, env *cli.Env, log *slog.Logger) error {
	sc, err := c.connect("ledger-stream-apply", natsauth.RoleAdmin, log, true)
	if err != nil {
		return err
	}
	defer sc.close()
	actx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	res, err := sc.conn.ApplyStream(actx, c.Stream, c.Replicas, false)
	if err != nil {
		return streamError(err)
	}
	if err := sc.finish(); err != nil {
		return err
	}
	switch {
	case res.Created:
		fmt.Fprintf(env.Stdout, "stream %s: created with the contract's configuration (%d replica(s)), on %s\n", c.Stream, c.Replicas, sc.where)
	case len(res.Changed) > 0:
		fmt.Fprintf(env.Stdout, "stream %s: updated on %s:\n", c.Stream, sc.where)
		for _, f := range res.Changed {
			fmt.Fprintf(env.Stdout, "  %s: %s -> %s\n", f.Field, f.Actual, f.Expected)
		}
	default:
		fmt.Fprintf(env.Stdout, "stream %s: has the contract's configuration; nothing changed (%s)\n", c.Stream, sc.where)
	}
	if len(res.Left) > 0 {
		printDrift(env, c.Stream, res.Left)
		return &cli.Error{Code: cli.ExitFailed, Err: errors.New("the server kept settings that differ from the contract")}
	}
	return nil
}

type streamCheckCmd struct {
	maintFlags
	textOutput
	Replicas int `name:"stream-replicas" env:"LICENSE_STREAM_REPLICAS" default:"1" help:"The stream's replicas in the contract (3 in clusters)."`
}

func (c *streamCheckCmd) Help() string {
	return `Compares the stream's configuration with the contract's and prints every setting that differs, with the contract's value and the stream's. Changes nothing: ledger stream apply restores the configuration.

` + streamAdminHelp + ` Any identity may check (stream info).

Exit codes: 0 the configuration is the contract's; 1 it differs, or the stream does not exist; 2 usage; 4 NATS unreachable.`
}

func (c *streamCheckCmd) Run(env *cli.Env) error {
	if c.Replicas < 1 || c.Replicas > 5 {
		return cli.Usage("LICENSE_STREAM_REPLICAS must be 1..5")
	}
	return c.runMaint(env, c.run)
}

func (c *streamCheckCmd) run(ctx context.Context, env *cli.Env, log *slog.Logger) error {
	sc, err := c.connect("ledger-stream-check", natsauth.RoleAdmin, log, true)
	if err != nil {
		return err
	}
	defer sc.close()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	drift, err := sc.conn.StreamDrift(cctx, c.Stream, c.Replicas)
	if errors.Is(err, natsbus.ErrStreamNotFound) {
		return &cli.Error{Code: cli.ExitFailed, Err: fmt.Errorf("stream %s does not exist on %s (ledger stream apply creates it)", c.Stream, sc.where)}
	}
	if err != nil {
		return unavailable("%v", err)
	}
	if err := sc.finish(); err != nil {
		return err
	}
	if c.Output != outText {
		diffs := make([]map[string]string, 0, len(drift))
		for _, f := range drift {
			diffs = append(diffs, map[string]string{"field": f.Field, "expected": f.Expected, "actual": f.Actual})
		}
		if err := writeObject(env.Stdout, c.Output, map[string]any{"stream": c.Stream, "replicas": c.Replicas,
			"where": sc.where, "ok": len(drift) == 0, "differences": diffs}); err != nil {
			return err
		}
	}
	if len(drift) > 0 {
		if c.Output == outText {
			printDrift(env, c.Stream, drift)
		}
		return &cli.Error{Code: cli.ExitFailed, Err: fmt.Errorf("stream %s differs from the contract: restore it with %s", c.Stream, applyHint)}
	}
	if c.Output == outText {
		fmt.Fprintf(env.Stdout, "stream %s: has the contract's configuration (%d replica(s)), on %s\n", c.Stream, c.Replicas, sc.where)
	}
	return nil
}

func printDrift(env *cli.Env, stream string, fields []events.ConfigField) {
	fmt.Fprintf(env.Stdout, "stream %s: differs from the contract:\n", stream)
	for _, f := range fields {
		fmt.Fprintf(env.Stdout, "  %s: expected %s, actual %s\n", f.Field, f.Expected, f.Actual)
	}
}
