package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/licenseledger/ledger/internal/cli"
	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/postgres"
	"github.com/licenseledger/ledger/license"
)

// TypeAuditReplaced is appended on licenses.audit._instance when ledger
// replay --swap --accept-divergence replaces a live audit trail that
// diverged from the stream; its data is a postgres.Replacement.
const TypeAuditReplaced = "ledger.audit_replaced"

// replayCmd rebuilds the read model and the audit trail from the stream
// into the ledger_shadow schema, compares them with the live tables
// (--verify) or swaps them in (--swap).
type replayCmd struct {
	Verify           bool          `help:"Rebuild into the ledger_shadow schema while the system serves, re-verifying every license against the current key ring, and print the differences with the live tables (exit 1 if any)."`
	Swap             bool          `help:"Rebuild (or catch up a finished shadow), then replace the live read model in one transaction; live audit rows missing are appended. Refused (exit 1) when the live audit diverges from the stream, unless --accept-divergence."`
	FromSeq          uint64        `name:"from-seq" placeholder:"N" help:"With --verify only: trust the live audit rows before N (their hash chain is verified first), fold them for state, and read the stream from N on — for a stream whose early part is gone."`
	AcceptDivergence bool          `name:"accept-divergence" help:"With --swap: replace a live audit that diverges from the stream. It is kept as license_audit_replaced_<unix>, and a ledger.audit_replaced event records it on licenses.audit._instance (needs the ledger's NATS credentials)."`
	DatabaseURL      string        `name:"database-url" env:"LEDGER_MIGRATE_DATABASE_URL" placeholder:"URL" help:"PostgreSQL as the owner of the schema. Required."`
	DataDir          string        `name:"data-dir" env:"DATA_DIR" default:"./data" placeholder:"DIR" help:"Ledger data directory: nats/ledger.nk for the embedded server's stream."`
	Output           string        `short:"o" enum:"text,json,table,csv" default:"text" placeholder:"text|json|table|csv" help:"--verify's report: text (default), the lines below; json: {total, differences: [{table, key, what}], checkpoint, live_checkpoint, org_rows, revoked_rows, audit_rows, chain}; table or csv: the differences, one row each (table, key, what). --swap prints text only."`
	Progress         string        `enum:"auto,bar,log" default:"auto" help:"auto: a progress bar when stderr is a terminal, else a log line every 5 s; bar; log."`
	AnnounceTimeout  time.Duration `name:"announce-timeout" default:"30s" hidden:"" help:"How long recording an accepted divergence on the stream may take."`
	cli.NATSConn
	cli.KeyringFlags
	cli.LogFlags
}

// Help is the detail of ledger replay --help.
func (c *replayCmd) Help() string {
	return `The stream is read from NATS_URL, else the embedded server of ledger serve at --nats-listen ` +
		`(default 127.0.0.1:4223) with $DATA_DIR/nats/ledger.nk (reader credentials suffice, except to record an accepted divergence).

--verify prints one line per difference: "org_licenses ORG: COLUMN: live X, replay Y", ` +
		`"org_licenses ORG: missing in live" or "extra in live", the same for "revoked_licenses ORG LICENSE_ID", ` +
		`"license_audit seq N[-M]: missing in live" or "extra in live", "license_audit seq N: COLUMNS differ", ` +
		`and the live chain verification; then a summary line. recorded_at is not compared.

--from-seq N (with --verify): the live audit rows 1..N-1 are taken as the start of the stream. Their ` +
		`chain (gapless sequences, prev_hash links, hashes recomputed from envelope_raw) must verify, else exit 1; ` +
		`their envelope_raw is folded for state and the stream is read from N. Differences before N can then only ` +
		`be found in what the rows themselves contradict.

The shadow keeps its own checkpoint: an interrupted run (Ctrl-C, kill) is resumed by the next one with ` +
		`the same key ring; a finished shadow is rebuilt by --verify and caught up by --swap. --swap changes ` +
		`the live tables in one transaction or not at all.

Exit codes: 0 no differences (--verify) or swapped (--swap); 1 differences found, a divergent audit ` +
		`refused, a stream or audit prefix that cannot be rebuilt; 2 usage; 4 PostgreSQL or the stream unreachable.`
}

func (c *replayCmd) Run(env *cli.Env) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return c.run(ctx, env)
}

func (c *replayCmd) validate() error {
	switch {
	case c.Verify == c.Swap:
		return cli.Usage("replay needs exactly one of --verify and --swap")
	case c.FromSeq > 0 && !c.Verify:
		return cli.Usage("--from-seq only goes with --verify: a swap needs the whole stream")
	case c.Output != outText && !c.Verify:
		return cli.Usage("-o %s only goes with --verify: --swap prints what it did", c.Output)
	case c.AcceptDivergence && !c.Swap:
		return cli.Usage("--accept-divergence only goes with --swap")
	case c.DatabaseURL == "":
		return cli.Usage("replay needs the owner's database URL: set LEDGER_MIGRATE_DATABASE_URL or pass --database-url")
	}
	return nil
}

func (c *replayCmd) run(ctx context.Context, env *cli.Env) error {
	if err := c.validate(); err != nil {
		return err
	}
	// Logs and the progress bar share stderr: never a line.
	e := *env
	e.Stderr = newTermWriter(env.Stderr)
	env = &e
	log, err := c.Logger(env.Stderr)
	if err != nil {
		return err
	}
	keys, err := c.KeyringFlags.Load()
	if err != nil {
		return cli.Usage("key ring: %v", err)
	}
	bus, closeBus, err := c.openStream(ctx)
	if err != nil {
		return err
	}
	defer closeBus()
	installID, _, err := events.InstallID(ctx, bus)
	if err != nil {
		return unavailable("the stream: %v", err)
	}
	prog := newProgress(env.Stderr, c.Progress, log, "replay", "events", false)
	defer prog.finish()
	r, err := postgres.OpenReplay(ctx, postgres.ReplayConfig{DSN: c.DatabaseURL, Source: bus, Keys: keys,
		InstallID: installID, Progress: prog.update, Logger: log})
	if err != nil {
		return replayError(err)
	}
	defer r.Close()
	if c.Verify {
		return c.verify(ctx, env, r, prog)
	}
	return c.swap(ctx, env, r, bus, prog)
}

func (c *replayCmd) verify(ctx context.Context, env *cli.Env, r *postgres.Replayer, prog *progress) error {
	b, err := r.Build(ctx, postgres.Rebuild, c.FromSeq)
	prog.finish()
	if err != nil {
		return replayError(err)
	}
	c.logBuild(prog.log, b)
	d, err := r.Diff(ctx, c.FromSeq)
	if err != nil {
		return replayError(err)
	}
	if err := printDiff(env, c.Output, d); err != nil {
		return err
	}
	if d.Total > 0 {
		return cli.Silent(cli.ExitFailed)
	}
	return nil
}

// printDiff writes replay --verify's report in the format of -o.
func printDiff(env *cli.Env, format string, d postgres.DiffResult) error {
	type diff struct {
		Table string `json:"table"`
		Key   string `json:"key"`
		What  string `json:"what"`
	}
	rows := make([]diff, 0, len(d.Differences))
	for _, x := range d.Differences {
		rows = append(rows, diff{x.Table, x.Key, x.What})
	}
	switch format {
	case outText:
		d.Print(env.Stdout)
		return nil
	case outJSON:
		return writeObject(env.Stdout, outJSON, map[string]any{"total": d.Total, "differences": rows,
			"checkpoint": d.Checkpoint, "live_checkpoint": d.LiveCheckpoint, "org_rows": d.OrgRows,
			"revoked_rows": d.RevokedRows, "audit_rows": d.AuditRows, "chain": d.Chain})
	}
	if more := d.Total - len(rows); more > 0 {
		fmt.Fprintf(env.Stderr, "replay: %d more differences not listed\n", more)
	}
	return writeRows(env.Stdout, format, []string{"table", "key", "what"}, rows)
}

func (c *replayCmd) logBuild(log *slog.Logger, b postgres.BuildResult) {
	rate := 0.0
	if s := b.Elapsed.Seconds(); s > 0 {
		rate = float64(b.Events) / s
	}
	log.Info("shadow built", "schema", postgres.ShadowSchema, "resumed", b.Resumed, "from", b.From,
		"checkpoint", b.Checkpoint, "events", b.Events, "elapsed", b.Elapsed.Round(time.Millisecond),
		"events_per_s", int(rate))
}

func (c *replayCmd) swap(ctx context.Context, env *cli.Env, r *postgres.Replayer, bus auditAppender, prog *progress) error {
	opts := postgres.SwapOptions{AcceptDivergence: c.AcceptDivergence, Now: env.Now,
		Announce: func(ctx context.Context, rep postgres.Replacement) (uint64, error) {
			// Credentials without publish rights get no answer at all.
			ctx, cancel := context.WithTimeout(ctx, c.AnnounceTimeout)
			defer cancel()
			return announceReplacement(ctx, bus, env.Now(), rep)
		}}
	res, err := r.Swap(ctx, opts)
	prog.finish()
	if errors.Is(err, postgres.ErrDivergent) {
		return fmt.Errorf("%w: nothing was changed. The live license_audit has rows the stream does not have, or "+
			"lacks or alters some: see ledger replay --verify. To keep it as license_audit_replaced_<unix> and "+
			"take the stream's, run again with --accept-divergence (recorded on the stream)", err)
	}
	if err != nil {
		return replayError(err)
	}
	c.logBuild(prog.log, res.Build)
	w := env.Stdout
	fmt.Fprintf(w, "swapped: live checkpoint %d -> %d\n", res.PreviousCheckpoint, res.Checkpoint)
	fmt.Fprintf(w, "org_licenses: %d rows written, %d deleted\n", res.OrgRowsWritten, res.OrgRowsDeleted)
	fmt.Fprintf(w, "revoked_licenses: %d rows written, %d deleted\n", res.RevokedWritten, res.RevokedDeleted)
	if rep := res.Replaced; rep != nil {
		fmt.Fprintf(w, "license_audit: diverged at seq %d; the live table (%d rows) is kept as %s; "+
			"the replacement is recorded at seq %d (%s)\n", rep.FirstDivergentSeq, rep.Rows, rep.Table, res.AnnouncedSeq, TypeAuditReplaced)
	} else {
		fmt.Fprintf(w, "license_audit: %d rows appended\n", res.AuditAppended)
	}
	return nil
}

// auditAppender appends an event after a subject's head (natsbus.Bus).
type auditAppender interface {
	Head(ctx context.Context, subject string) (uint64, error)
	Append(ctx context.Context, subject string, env *events.Envelope, expected uint64) (uint64, error)
}

// announceReplacement appends the ledger.audit_replaced event on the
// install's audit subject.
func announceReplacement(ctx context.Context, bus auditAppender, now time.Time, rep postgres.Replacement) (uint64, error) {
	subject := events.AuditSubject(license.InstanceOrg)
	actor := events.Actor{Kind: events.ActorOperator, ID: "ledger replay"}
	for attempt := 0; ; attempt++ {
		head, err := bus.Head(ctx, subject)
		if err != nil {
			return 0, err
		}
		env, err := events.New(TypeAuditReplaced, license.InstanceOrg, now, actor, head, rep)
		if err != nil {
			return 0, err
		}
		seq, err := bus.Append(ctx, subject, env, head)
		if errors.Is(err, events.ErrConflict) && attempt < 5 {
			continue // another audit event got there first
		}
		return seq, err
	}
}

// openStream reaches the stream: NATS_URL, else the embedded server at
// --nats-listen with $DATA_DIR/nats/ledger.nk.
func (c *replayCmd) openStream(ctx context.Context) (*natsbus.Bus, func(), error) {
	cfg := c.Resolve(c.DataDir, "ledger-replay", natsauth.RoleLedger, nil)
	conn, err := natsbus.Dial(cfg)
	if err != nil {
		return nil, nil, unavailable("the stream: %w", err)
	}
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	bus, _, err := conn.Open(octx, c.Stream, 1, false)
	if err != nil {
		conn.Close()
		return nil, nil, unavailable("the stream: %v", err)
	}
	return bus, conn.Close, nil
}

// replayError maps replay errors to exit codes.
func replayError(err error) error {
	switch {
	case errors.Is(err, postgres.ErrInvalidDSN), errors.Is(err, natsbus.ErrPermissionViolation):
		// Wrong settings: a DSN that does not parse, or NATS credentials
		// without the rights the command needs.
		return &cli.Error{Code: cli.ExitUsage, Err: err}
	case errors.Is(err, postgres.ErrUnavailable), errors.Is(err, events.ErrUnavailable):
		return &cli.Error{Code: cli.ExitUnavailable, Err: err}
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("interrupted: the shadow keeps what was committed; run the command again to resume")
	}
	return err
}
