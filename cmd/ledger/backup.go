package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/cli"
	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/natsbackup"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/secfile"
)

// manifest is the ledger's description of a backup directory, beside the
// JetStream snapshot files (backup.json and stream.arc.s2, the format of
// `nats stream backup`).
type manifest struct {
	Format        string    `json:"format"`
	Stream        string    `json:"stream"`
	StreamCreated time.Time `json:"stream_created"`
	BackupTime    time.Time `json:"backup_time"`
	FirstSeq      uint64    `json:"first_seq"`
	LastSeq       uint64    `json:"last_seq"`
	Messages      uint64    `json:"messages"`
	Bytes         uint64    `json:"bytes"`
	// Digest is the audit chain's digest (seq:hex) over every message up
	// to LastSeq, as ledger audit digest prints it: "" when the stream does
	// not start at seq 1.
	Digest string `json:"digest"`
	// Version is the ledger's that wrote the backup.
	Version string `json:"ledger_version"`
}

const manifestFormat = "ledger-stream-backup/1"

const backupExitCodes = "Exit codes: 0 ok; 1 refused (DIR not empty, a stream that holds messages, a restored stream that differs from the manifest, the store in use); 2 usage; 4 NATS unreachable."

type backupCmd struct {
	maintFlags
	textOutput
	Dir string `arg:"" placeholder:"DIR" help:"Directory for the backup: new, or empty."`
}

func (c *backupCmd) Help() string {
	return `Writes a consistent snapshot of the stream (LICENSE_STREAM) into DIR with the JetStream snapshot API: backup.json and stream.arc.s2, the files 'nats stream backup' writes (so 'nats stream restore DIR' reads them too), and manifest.json: stream name, its created time, the backup time, first and last sequence, message count and the audit chain's digest (seq:hex) over every message, which 'ledger audit digest' and the ledger's 'audit digest' log lines print for the same sequence.

While ledger serve runs, the backup goes through its embedded NATS (--nats-listen, default 127.0.0.1:4223) with $DATA_DIR/nats/ledger.nk; uploads go on meanwhile. When nothing answers there, the command starts the embedded server on $DATA_DIR itself (ledger serve must be stopped). With NATS_URL it snapshots that server's stream with the credentials given.

DIR is made 0700 and every file in it 0600: readable by the backup's owner only.

The snapshot holds the stream only: keep $DATA_DIR/nats/*.nk, admin.token and tokens with your other secrets. Restore with 'ledger restore DIR'.

` + backupExitCodes
}

func (c *backupCmd) Run(env *cli.Env) error {
	return c.runMaint(env, c.run)
}

func (c *backupCmd) run(ctx context.Context, env *cli.Env, log *slog.Logger) error {
	if err := checkEmptyDir(c.Dir); err != nil {
		return err
	}
	// The directory is the backup's (new or empty): 0700, as its files are
	// 0600, from before the first byte is written.
	was, err := secfile.MkdirPrivate(c.Dir)
	if err != nil {
		return &cli.Error{Code: cli.ExitFailed, Err: err}
	}
	if was != 0 {
		fmt.Fprintf(env.Stderr, "backup: %s was mode %04o; set to 0700 (a backup is readable by its owner only)\n", c.Dir, was)
	}
	sc, err := c.connect("ledger-backup", natsauth.RoleLedger, log, true)
	if err != nil {
		return err
	}
	defer sc.close()
	started := time.Now().UTC()
	prog := newProgress(env.Stderr, "auto", log, "snapshot", "bytes", true)
	st, err := natsbackup.Snapshot(ctx, sc.conn, c.Stream, c.Dir, prog.update)
	prog.finish()
	if err != nil {
		return streamError(err)
	}
	m := manifest{Format: manifestFormat, Stream: st.Stream, StreamCreated: st.Created.UTC(), BackupTime: started,
		FirstSeq: st.FirstSeq, LastSeq: st.LastSeq, Messages: st.Messages, Bytes: st.Bytes, Version: version}
	if m.Digest, err = chainDigest(ctx, sc.conn, c.Stream, st.FirstSeq, st.LastSeq); err != nil {
		return streamError(err)
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := secfile.WriteFile(filepath.Join(c.Dir, natsbackup.ManifestFile), append(b, '\n')); err != nil {
		return err
	}
	if err := sc.finish(); err != nil {
		return err
	}
	if c.Output != outText {
		return writeObject(env.Stdout, c.Output, struct {
			Dir string `json:"dir"`
			manifest
			From string `json:"from"`
		}{c.Dir, m, sc.where})
	}
	fmt.Fprintf(env.Stdout, "backup: %s: stream %s seq %d..%d (%d messages, %d bytes) digest %s, from %s\n",
		c.Dir, m.Stream, m.FirstSeq, m.LastSeq, m.Messages, m.Bytes, orNone(m.Digest), sc.where)
	return nil
}

type restoreCmd struct {
	maintFlags
	Dir string `arg:"" placeholder:"DIR" help:"A directory written by ledger backup (or nats stream backup)."`
}

func (c *restoreCmd) Help() string {
	return `Recreates the stream from a backup directory with the JetStream restore API, as 'nats stream restore' does: same sequence numbers, bytes and headers. Then, when DIR holds the ledger's manifest.json, checks that the restored stream has the manifest's last sequence and chain digest.

ledger serve must be stopped: the command starts the embedded server on $DATA_DIR itself (with NATS_URL, it restores into that server, with credentials allowed to restore). A stream that holds messages is never overwritten (exit 1); an empty one (a ledger that started and wrote nothing) is replaced.

` + backupExitCodes
}

func (c *restoreCmd) Run(env *cli.Env) error {
	return c.runMaint(env, c.run)
}

func (c *restoreCmd) run(ctx context.Context, env *cli.Env, log *slog.Logger) error {
	st, err := natsbackup.ReadSnapshotState(c.Dir)
	if err != nil {
		return &cli.Error{Code: cli.ExitFailed, Err: fmt.Errorf("%s is not a stream backup: %w", c.Dir, err)}
	}
	if st.Stream != c.Stream {
		return cli.Usage("%s holds stream %s, not %s (LICENSE_STREAM): JetStream cannot rename a stream on restore", c.Dir, st.Stream, c.Stream)
	}
	m, err := readManifest(c.Dir)
	if err != nil {
		return &cli.Error{Code: cli.ExitFailed, Err: err}
	}
	sc, err := c.connect("ledger-restore", natsauth.RoleAdmin, log, false)
	if err != nil {
		return err
	}
	defer sc.close()
	exists, info, err := sc.conn.StreamExists(ctx, c.Stream)
	if err != nil {
		return streamError(err)
	}
	if exists && info.LastSeq > 0 {
		return &cli.Error{Code: cli.ExitFailed, Err: fmt.Errorf("stream %s exists and holds messages (seq %d..%d) in %s: not overwriting it; nothing changed",
			c.Stream, info.FirstSeq, info.LastSeq, sc.where)}
	}
	if exists {
		if err := sc.conn.DeleteEmptyStream(ctx, c.Stream); err != nil {
			return streamError(err)
		}
		fmt.Fprintf(env.Stdout, "stream %s: existed without a message; replaced\n", c.Stream)
	}
	prog := newProgress(env.Stderr, "auto", log, "restore", "bytes", true)
	got, err := natsbackup.Restore(ctx, sc.conn, c.Dir, prog.update)
	prog.finish()
	if err != nil {
		return streamError(err)
	}
	fmt.Fprintf(env.Stdout, "restored: stream %s seq %d..%d (%d messages) into %s\n", got.Stream, got.FirstSeq, got.LastSeq, got.Messages, sc.where)
	if m == nil {
		fmt.Fprintln(env.Stdout, "manifest: none (not a ledger backup): the restored stream was not checked against a digest")
		return sc.finish()
	}
	digest, err := chainDigest(ctx, sc.conn, c.Stream, got.FirstSeq, m.LastSeq)
	if err != nil {
		return streamError(err)
	}
	if err := sc.finish(); err != nil {
		return err
	}
	if got.LastSeq != m.LastSeq || digest != m.Digest {
		fmt.Fprintf(env.Stdout, "manifest: MISMATCH: backup seq %d digest %s; restored seq %d digest %s\n", m.LastSeq, orNone(m.Digest), got.LastSeq, orNone(digest))
		return &cli.Error{Code: cli.ExitFailed, Err: errors.New("the restored stream differs from the backup's manifest")}
	}
	fmt.Fprintf(env.Stdout, "manifest: ok, last seq %d digest %s (backup of %s)\n", m.LastSeq, orNone(digest), m.BackupTime.Format(time.RFC3339))
	return nil
}

// chainDigest computes the audit chain over the stream's messages
// first..last: "" when the stream does not start at seq 1 (the chain
// starts there), the empty chain's digest when it holds nothing.
func chainDigest(ctx context.Context, conn *natsbus.Conn, stream string, first, last uint64) (string, error) {
	if last == 0 {
		return audit.Digest(0, audit.Zero), nil
	}
	if first != 1 {
		return "", nil
	}
	bus, _, err := conn.Open(ctx, stream, 1, false)
	if err != nil {
		return "", err
	}
	return digestUpTo(ctx, bus, last)
}

// streamConsumer delivers the stream's messages in order (natsbus.Bus).
type streamConsumer interface {
	Consume(ctx context.Context, start uint64, heartbeat time.Duration, fn func(*events.Message) error, onIdle func()) error
}

// digestUpTo computes the audit chain over the messages 1..last of src,
// which must all be there.
func digestUpTo(ctx context.Context, src streamConsumer, last uint64) (string, error) {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	h, next := audit.Zero, uint64(1)
	err := src.Consume(cctx, 1, time.Second, func(m *events.Message) error {
		if m.Seq != next {
			return fmt.Errorf("stream message %d missing (got %d)", next, m.Seq)
		}
		h, next = audit.Next(h, m.Seq, m.Raw), m.Seq+1
		if m.Seq == last {
			return errDone
		}
		return nil
	}, nil)
	if !errors.Is(err, errDone) {
		return "", fmt.Errorf("digest: %w", err)
	}
	return audit.Digest(last, h), nil
}

func readManifest(dir string) (*manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, natsbackup.ManifestFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil || m.Format != manifestFormat {
		return nil, fmt.Errorf("%s: not a %s manifest", filepath.Join(dir, natsbackup.ManifestFile), manifestFormat)
	}
	return &m, nil
}

// checkEmptyDir accepts a missing or empty directory.
func checkEmptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return &cli.Error{Code: cli.ExitFailed, Err: err}
	case len(entries) > 0:
		return &cli.Error{Code: cli.ExitFailed, Err: fmt.Errorf("%s is not empty: a backup goes into a new or empty directory", dir)}
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
