package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/cli"
	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/natsembed"
	"github.com/licenseledger/ledger/internal/postgres"
)

// The maintenance commands (stream apply, check and reseed, backup,
// restore) reach the stream as the ledger does: NATS_URL with its
// credentials, else the embedded server of ledger serve at --nats-listen
// with the seed of the identity the command needs ($DATA_DIR/nats/admin.nk
// for the stream commands, ledger.nk for backup), else — when nothing
// listens there — the embedded server started on $DATA_DIR for this
// process alone.

// maintFlags say how a maintenance command reaches the stream.
// Without NATS_URL, when nothing answers at --nats-listen (or it is off),
// the command starts the embedded server on $DATA_DIR itself, which needs
// ledger serve stopped.
type maintFlags struct {
	cli.NATSConn
	cli.LogFlags
	DataDir string `name:"data-dir" env:"DATA_DIR" default:"./data" placeholder:"DIR" help:"Ledger data directory: the embedded NATS store ($DATA_DIR/nats) and its credentials (admin.nk, ledger.nk)."`
}

// streamConn is an open connection to the stream's server.
type streamConn struct {
	conn *natsbus.Conn
	// where says how it was reached, for the output.
	where   string
	offline bool
	closer  func() error
	once    sync.Once
	err     error
}

// close closes the connection, and stops and syncs the embedded server
// the command started; it may be called again (and returns the same
// error), so commands defer it and also check it before reporting success.
func (sc *streamConn) close() error {
	sc.once.Do(func() { sc.err = sc.closer() })
	return sc.err
}

// finish closes sc and turns a failure to sync the store into the
// command's error.
func (sc *streamConn) finish() error {
	if err := sc.close(); err != nil {
		return unavailable("the embedded store: %v", err)
	}
	return nil
}

func closeConn(conn *natsbus.Conn) func() error { return func() error { conn.Close(); return nil } }

// connect reaches NATS as role (the running ledger's embedded server: with
// role's seed in $DATA_DIR/nats unless credentials are given). online=false
// refuses a running ledger's embedded server (restore needs it stopped).
func (f *maintFlags) connect(name string, role natsauth.Role, log *slog.Logger, online bool) (*streamConn, error) {
	if f.NATSURL != "" {
		conn, err := natsbus.Dial(f.ConnConfig(name, role, log))
		if err != nil {
			return nil, unavailable("%w", err)
		}
		return &streamConn{conn: conn, where: "NATS_URL " + f.NATSURL, closer: closeConn(conn)}, nil
	}
	if f.NATSListen != "off" {
		if c, err := net.DialTimeout("tcp", f.NATSListen, 2*time.Second); err == nil {
			c.Close()
			if !online {
				return nil, &cli.Error{Code: cli.ExitFailed, Err: fmt.Errorf("a NATS server answers at %s (ledger serve is running): stop it first", f.NATSListen)}
			}
			cfg := f.Resolve(f.DataDir, name, role, log)
			conn, err := natsbus.Dial(cfg)
			if err != nil {
				return nil, unavailable("%w", err)
			}
			return &streamConn{conn: conn, where: "the running ledger's NATS at " + cfg.URL, closer: closeConn(conn)}, nil
		}
	}
	off, err := natsembed.StartOffline(f.DataDir)
	if errors.Is(err, natsembed.ErrStoreInUse) {
		return nil, &cli.Error{Code: cli.ExitFailed, Err: fmt.Errorf("%v; its NATS does not answer at --nats-listen %s: "+
			"stop it, or give the address it listens on", err, f.NATSListen)}
	}
	if err != nil {
		return nil, unavailable("%w", err)
	}
	conn, err := off.Connect(name)
	if err != nil {
		off.Close()
		return nil, unavailable("%w", err)
	}
	return &streamConn{conn: conn, offline: true, where: "the embedded store " + filepath.Join(f.DataDir, "nats") + " (ledger serve stopped)",
		closer: func() error { conn.Close(); return off.Close() }}, nil
}

// signalContext ends on SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// runMaint runs a maintenance command's body with its logger and a
// context that SIGINT and SIGTERM cancel.
// Its logs and notes go through a termWriter, so that they never share a
// line with a progress bar.
func (m *maintFlags) runMaint(env *cli.Env, run func(context.Context, *cli.Env, *slog.Logger) error) error {
	e := *env
	e.Stderr = newTermWriter(env.Stderr)
	env = &e
	log, err := m.Logger(env.Stderr)
	if err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	return run(ctx, env, log)
}

type streamCmd struct {
	Apply  streamApplyCmd  `cmd:"" help:"Create the stream, or restore the contract's configuration on it, as the stream administrator (admin.nk)."`
	Check  streamCheckCmd  `cmd:"" help:"Compare the stream's configuration with the contract's: exit 0 when they match, 1 listing each difference."`
	Reseed streamReseedCmd `cmd:"" help:"Recreate a lost stream from license_audit in PostgreSQL, with the same sequence numbers and bytes."`
}

type streamReseedCmd struct {
	maintFlags
	DatabaseURL string `name:"database-url" env:"LEDGER_MIGRATE_DATABASE_URL" placeholder:"URL" help:"PostgreSQL as the owner of the schema (like ledger migrate). Required."`
	Replicas    int    `name:"stream-replicas" env:"LICENSE_STREAM_REPLICAS" default:"1" help:"Replicas of the recreated stream (3 in clusters)."`
	OldHead     uint64 `name:"old-head" env:"LEDGER_RESEED_OLD_HEAD" placeholder:"N" help:"The last sequence the lost stream held, if known: prints the exact range of events PostgreSQL never received."`
	Window      int    `name:"window" env:"LEDGER_RESEED_WINDOW" default:"256" help:"Publish acknowledgements outstanding at once (1..4000)."`
}

func (c *streamReseedCmd) Help() string {
	return `The stream is the system of record, and license_audit holds every one of its messages up to the projector's checkpoint, byte for byte. When the stream is lost (its store deleted, a cluster rebuilt empty), reseed puts those messages back:

  1. verifies the audit chain (as ledger audit verify) and stops if it does not hold;
  2. creates the stream with the contract's configuration (LICENSE_STREAM, first sequence that of the first row);
  3. publishes every row's envelope_raw on its subject, byte-exact, with Nats-Expected-Last-Sequence = seq - 1 (so every message lands at its original sequence or not at all) and Nats-Msg-Id = its event id;
  4. compares the new stream with the audit message by message (seq, subject, bytes);
  5. points the projection checkpoints at the new stream, so the projector and ledger serve continue from PostgreSQL.

Stop every ledger first (a ledger starting on a missing stream creates an empty one and writes to it). A stream that exists and holds messages is refused, unless they are exactly the audit's first messages: then an interrupted reseed continues after them.

The checkpoint is the last sequence PostgreSQL holds. Events the lost stream held after it (appended while the projector lagged) are gone for good: their sequence numbers will be reused by new events. Give the lost stream's last sequence with --old-head N to have the exact range printed: the gatekeepers' /readyz shows it as stream_head, the ledger's /metrics as ledger_stream_last_seq, and every 'audit digest' log line names a sequence the stream held. Tell the customers of the orgs in that range to upload again.

The stream is reached with the stream administrator's credentials (stream create, publish licenses.>): NATS_URL and its credentials (NATS_NKEY=admin.nk), else the embedded server (see --nats-listen; $DATA_DIR/nats/admin.nk). PostgreSQL as the owner: LEDGER_MIGRATE_DATABASE_URL.

Exit codes: 0 reseeded (or nothing to do); 1 the audit does not verify, the stream holds other messages, or the new stream differs from the audit; 2 usage; 4 PostgreSQL or NATS unreachable.`
}

func (c *streamReseedCmd) Run(env *cli.Env) error {
	if c.DatabaseURL == "" {
		return cli.Usage("stream reseed reads license_audit as the schema owner: set LEDGER_MIGRATE_DATABASE_URL or pass --database-url")
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		return cli.Usage("LICENSE_STREAM_REPLICAS must be 1..5")
	}
	if c.Window < 1 || c.Window > 4000 {
		return cli.Usage("--window must be 1..4000")
	}
	return c.runMaint(env, c.run)
}

func (c *streamReseedCmd) run(ctx context.Context, env *cli.Env, log *slog.Logger) error {
	db, err := postgres.OpenDB(ctx, c.DatabaseURL)
	if errors.Is(err, postgres.ErrInvalidDSN) {
		return cli.Usage("LEDGER_MIGRATE_DATABASE_URL: %v", err)
	}
	if err != nil {
		return unavailable("LEDGER_MIGRATE_DATABASE_URL: %v", err)
	}
	defer db.Close()
	reader := db.AuditReader()

	// 1. The audit must verify: it is all the stream will be.
	log.Info("verifying the audit chain")
	res, err := audit.Verify(ctx, reader, audit.VerifyOptions{})
	if err != nil {
		return unavailable("audit: %v", err)
	}
	if !res.OK {
		fmt.Fprintf(env.Stdout, "audit: %s\n", res)
		return &cli.Error{Code: cli.ExitFailed, Err: fmt.Errorf("the audit trail does not verify (%s): not reseeding from it; nothing changed", res)}
	}
	checkpoint := res.Rows // Verify checked the rows run from seq 1 without a gap
	fmt.Fprintf(env.Stdout, "audit: ok %d %s\n", res.Rows, res.Digest)
	if checkpoint == 0 {
		return &cli.Error{Code: cli.ExitFailed, Err: errors.New("license_audit is empty: nothing to reseed from; nothing changed")}
	}

	// 2. The stream: new, or holding a prefix of the audit.
	sc, err := c.connect("ledger-stream-reseed", natsauth.RoleAdmin, log, true)
	if err != nil {
		return err
	}
	defer sc.close()
	const first = 1
	info, err := sc.conn.CreateSeedStream(ctx, c.Stream, c.Replicas, first)
	existed := errors.Is(err, natsbus.ErrStreamExists)
	if err != nil && !existed {
		return streamError(err)
	}
	from := uint64(first)
	if existed {
		if from, err = c.continueAfter(ctx, sc.conn, reader, info, checkpoint); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "stream %s: exists (created %s) and holds the audit's first %d messages: continuing at seq %d\n",
			c.Stream, info.Created.UTC().Format(time.RFC3339Nano), from-1, from)
	} else {
		fmt.Fprintf(env.Stdout, "stream %s: created at %s with %d replica(s), on %s\n",
			c.Stream, info.Created.UTC().Format(time.RFC3339Nano), c.Replicas, sc.where)
	}

	// 3. Every row from `from` to the checkpoint, at its sequence.
	start := time.Now()
	published, err := c.publish(ctx, env, log, sc.conn, reader, from, checkpoint)
	elapsed := time.Since(start)
	if err != nil {
		return err
	}
	if published > 0 {
		fmt.Fprintf(env.Stdout, "published: %d messages, seq %d..%d, in %s (%.0f messages/s)\n",
			published, from, checkpoint, elapsed.Round(time.Millisecond), float64(published)/max(elapsed.Seconds(), 1e-9))
	} else {
		fmt.Fprintln(env.Stdout, "published: nothing (the stream already holds every audit row)")
	}

	// 4. The stream, message by message, against the audit.
	if err := c.compare(ctx, env, sc.conn, reader, checkpoint); err != nil {
		return err
	}

	// 5. The projector's position is valid on the new stream, once it is
	// on disk.
	info, err = streamInfo(ctx, sc.conn, c.Stream)
	if err != nil {
		return err
	}
	if err := sc.finish(); err != nil {
		return err
	}
	n, err := db.AdoptStreamCheckpoints(ctx, info.Created, checkpoint)
	if err != nil {
		return unavailable("projection checkpoints: %v", err)
	}
	fmt.Fprintf(env.Stdout, "checkpoint: %d (the last seq PostgreSQL holds); %d projection checkpoint(s) now follow the new stream\n", checkpoint, n)
	switch {
	case c.OldHead > checkpoint:
		fmt.Fprintf(env.Stdout, "lost: seq %d..%d (%d events the old stream held after the checkpoint; PostgreSQL never had them)\n",
			checkpoint+1, c.OldHead, c.OldHead-checkpoint)
	case c.OldHead > 0:
		fmt.Fprintf(env.Stdout, "lost: nothing (the old stream ended at seq %d, at or before the checkpoint)\n", c.OldHead)
	default:
		fmt.Fprintf(env.Stdout, "lost: any events the old stream held after seq %d (unknown: pass --old-head N to name the range)\n", checkpoint)
	}
	return nil
}

// continueAfter checks that an existing stream holds exactly the audit's
// first messages, and returns the sequence to publish next.
func (c *streamReseedCmd) continueAfter(ctx context.Context, conn *natsbus.Conn, reader audit.Reader, info natsbus.StreamInfo, checkpoint uint64) (uint64, error) {
	if info.LastSeq == 0 && info.FirstSeq <= 1 {
		return 1, nil
	}
	refuse := func(why string) error {
		return &cli.Error{Code: cli.ExitFailed, Err: fmt.Errorf("stream %s exists and holds messages (seq %d..%d) %s: not touching it; nothing changed. "+
			"If it is the live stream, it is not lost", c.Stream, info.FirstSeq, info.LastSeq, why)}
	}
	if info.FirstSeq != 1 {
		return 0, refuse("that do not start at seq 1")
	}
	if info.LastSeq > checkpoint {
		return 0, refuse(fmt.Sprintf("beyond the audit's last seq %d", checkpoint))
	}
	bus, _, err := conn.Open(ctx, c.Stream, 1, false)
	if err != nil {
		return 0, streamError(err)
	}
	lookup, done := streamLookups(bus)()
	defer done()
	// The stream's messages must be the audit's, up to its head; past it
	// the first missing message is where the reseed continues.
	limited := func(ctx context.Context, seq uint64) (string, []byte, error) {
		if seq > info.LastSeq {
			return "", nil, nil
		}
		return lookup(ctx, seq)
	}
	res, err := audit.Verify(ctx, reader, audit.VerifyOptions{Stream: limited})
	if err != nil {
		return 0, unavailable("%v", err)
	}
	if (res.OK && info.LastSeq == checkpoint) || (res.BadSeq == info.LastSeq+1 && res.Column == audit.ColEnvelopeRaw) {
		return info.LastSeq + 1, nil
	}
	return 0, refuse(fmt.Sprintf("that differ from license_audit at seq %d (%s)", res.BadSeq, res.Column))
}

// errDone ends a scan once the checkpoint is published.
var errDone = errors.New("done")

func isUnavailable(err error) bool { return errors.Is(err, events.ErrUnavailable) }

func (c *streamReseedCmd) publish(ctx context.Context, env *cli.Env, log *slog.Logger, conn *natsbus.Conn, reader audit.Reader, from, to uint64) (uint64, error) {
	if from > to {
		return 0, nil
	}
	pub, err := conn.NewSeedPublisher(c.Stream, c.Window)
	if err != nil {
		return 0, err
	}
	prog := newProgress(env.Stderr, "auto", log, "publishing", "messages", false)
	var sent uint64
	err = reader.Scan(ctx, audit.Query{After: from - 1}, func(r *audit.Record) error {
		if r.Seq > to {
			return errDone
		}
		if err := pub.Publish(ctx, natsbus.SeedMessage{Seq: r.Seq, Subject: r.Subject, Data: r.Raw, ID: r.EventID}); err != nil {
			return err
		}
		sent++
		prog.update(sent, to-from+1)
		return nil
	})
	if err == nil || errors.Is(err, errDone) {
		err = pub.Flush(ctx)
	}
	prog.finish()
	if err != nil {
		return sent, &cli.Error{Code: cli.ExitUnavailable, Err: fmt.Errorf("reseed interrupted with the stream holding seq 1..%d at least: run the same command again to continue (%w)",
			max(from-1, pub.Acked), err)}
	}
	return to - from + 1, nil
}

// compare checks every audit row against the new stream, and that the
// stream holds nothing more.
func (c *streamReseedCmd) compare(ctx context.Context, env *cli.Env, conn *natsbus.Conn, reader audit.Reader, checkpoint uint64) error {
	bus, info, err := conn.Open(ctx, c.Stream, 1, false)
	if err != nil {
		return streamError(err)
	}
	lookup, done := streamLookups(bus)()
	defer done()
	res, err := audit.Verify(ctx, reader, audit.VerifyOptions{Stream: lookup})
	if err != nil {
		return unavailable("compare: %v", err)
	}
	if !res.OK || res.Rows != checkpoint || info.LastSeq != checkpoint {
		fmt.Fprintf(env.Stdout, "compared: %s (stream head %d, audit rows %d)\n", res, info.LastSeq, res.Rows)
		return &cli.Error{Code: cli.ExitFailed, Err: errors.New("the new stream differs from license_audit")}
	}
	fmt.Fprintf(env.Stdout, "compared: ok %d messages (seq, subject, bytes) %s\n", res.Rows, res.Digest)
	return nil
}

func streamInfo(ctx context.Context, conn *natsbus.Conn, name string) (natsbus.StreamInfo, error) {
	ok, info, err := conn.StreamExists(ctx, name)
	if err == nil && !ok {
		err = fmt.Errorf("stream %s is gone", name)
	}
	if err != nil {
		return info, streamError(err)
	}
	return info, nil
}

// streamError maps a stream failure to its exit code: unavailable, or
// failed (a stream that breaks the contract).
func streamError(err error) error {
	var ce *cli.Error
	if errors.As(err, &ce) {
		return err
	}
	if errors.Is(err, context.Canceled) || isUnavailable(err) {
		return &cli.Error{Code: cli.ExitUnavailable, Err: err}
	}
	return &cli.Error{Code: cli.ExitFailed, Err: err}
}
