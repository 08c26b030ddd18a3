package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/projection"
	"github.com/licenseledger/ledger/license"
)

// Errors of Replay that an operator must act on (exit 1, not 4).
var (
	// ErrReplayRunning: another ledger replay holds the shadow.
	ErrReplayRunning = errors.New("another ledger replay is running on this database")
	// ErrStreamGap: the stream lacks messages the rebuild needs.
	ErrStreamGap = errors.New("the stream lacks messages the rebuild needs")
	// ErrPrefixInvalid: with FromSeq, the live audit rows before it do not
	// verify.
	ErrPrefixInvalid = errors.New("the live audit rows before --from-seq do not verify")
	// ErrDivergent: the live audit is not a prefix of the rebuilt one.
	ErrDivergent = errors.New("the live audit trail diverges from the stream")
)

// replayLockKey is the advisory lock one replay holds ("ledger-rp").
const replayLockKey int64 = 0x6c65646765722d70

// ReplayConfig configures a Replayer.
type ReplayConfig struct {
	// DSN connects as the owner of the schema (LEDGER_MIGRATE_DATABASE_URL).
	DSN    string
	Source Source
	Keys   *license.Keys
	// InstallID is the install's id for re-verification ("" unknown).
	InstallID string
	// BatchSize bounds a shadow transaction. Defaults to 5,000.
	BatchSize int
	// Progress, if set, is called after each committed batch with the
	// shadow's checkpoint and the sequence the build goes to.
	Progress func(done, total uint64)
	Logger   *slog.Logger
}

// Replayer rebuilds the read model and the audit trail from the stream
// into the shadow schema, compares them with the live tables, and swaps
// the rebuilt read model in. One runs at a time per database.
type Replayer struct {
	cfg    ReplayConfig
	live   string        // the live tables' schema
	pool   *pgxpool.Pool // default search path: the live tables
	shadow *pgxpool.Pool // search_path = ledger_shadow
	lock   *pgxpool.Conn // holds replayLockKey
}

// OpenReplay connects (twice: the live tables and the shadow) and takes
// the replay lock. A DSN that does not parse wraps ErrInvalidDSN; an
// unreachable server wraps ErrUnavailable.
func OpenReplay(ctx context.Context, cfg ReplayConfig) (*Replayer, error) {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 5000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Replayer{cfg: cfg}
	var err error
	if r.pool, err = Open(ctx, cfg.DSN); err != nil {
		return nil, err
	}
	if r.live, err = liveSchema(ctx, r.pool); err != nil {
		r.Close()
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("%w: %w", ErrInvalidDSN, err)
	}
	applyPoolDefaults(pc, cfg.DSN)
	pc.ConnConfig.RuntimeParams["search_path"] = ShadowSchema
	// The shadow is rebuilt from the stream: a batch lost in a crash is
	// folded again from the checkpoint that survived, which is always
	// consistent with the rows (one transaction). Not waiting for each
	// commit's WAL flush makes the rebuild several times faster.
	pc.ConnConfig.RuntimeParams["synchronous_commit"] = "off"
	pc.ConnConfig.RuntimeParams["application_name"] = "ledger replay"
	if r.shadow, err = pgxpool.NewWithConfig(ctx, pc); err != nil {
		r.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if r.lock, err = r.pool.Acquire(ctx); err != nil {
		r.Close()
		return nil, classifyConnectError(err)
	}
	var locked bool
	if err := r.lock.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, replayLockKey).Scan(&locked); err != nil {
		r.Close()
		return nil, classifyConnectError(err)
	}
	if !locked {
		r.lock.Release()
		r.lock = nil
		r.Close()
		return nil, ErrReplayRunning
	}
	return r, nil
}

// Close releases the lock and the connections. It may be called again.
func (r *Replayer) Close() {
	if r.lock != nil {
		r.lock.Exec(context.Background(), `SELECT pg_advisory_unlock($1)`, replayLockKey)
		r.lock.Release()
		r.lock = nil
	}
	if r.shadow != nil {
		r.shadow.Close()
		r.shadow = nil
	}
	if r.pool != nil {
		r.pool.Close()
		r.pool = nil
	}
}

// LiveSchema is the schema of the live tables.
func (r *Replayer) LiveSchema() string { return r.live }

// Build modes.
type BuildMode int

const (
	// Rebuild starts over unless an interrupted build of the same inputs
	// can be resumed (ledger replay --verify).
	Rebuild BuildMode = iota
	// CatchUp also resumes a finished build of the same inputs, bringing
	// it to the stream head (ledger replay --swap).
	CatchUp
)

// BuildResult says what Build did.
type BuildResult struct {
	Resumed    bool   // an existing shadow was continued
	From       uint64 // the shadow's checkpoint before
	Checkpoint uint64 // the shadow's checkpoint now
	Events     uint64 // messages folded
	Elapsed    time.Duration
}

func (r *Replayer) trust() projection.Trust {
	return projection.Trust{Ring: r.cfg.Keys.Ring(), InstallID: r.cfg.InstallID}
}

// Build brings the shadow to the stream head as it is when Build starts:
// a fresh shadow folds the whole stream (or, with fromSeq > 0, the live
// audit rows before fromSeq, their chain verified, then the stream from
// fromSeq); an existing one of the same key ring, install id, stream and
// fromSeq is resumed (mode says which). Every license is verified under
// the current key ring. It commits as it goes: an interrupted Build leaves
// a shadow the next one resumes.
func (r *Replayer) Build(ctx context.Context, mode BuildMode, fromSeq uint64) (BuildResult, error) {
	start := time.Now()
	created, head, err := r.cfg.Source.Stream(ctx)
	if err != nil {
		return BuildResult{}, err
	}
	created = created.UTC().Truncate(time.Microsecond)
	want := shadowMeta{KeyringFingerprint: r.cfg.Keys.Ring().Fingerprint(), InstallID: r.cfg.InstallID,
		StreamCreated: created, FromSeq: fromSeq, StartedAt: time.Now().UTC()}
	meta, err := readShadowMeta(ctx, r.shadow)
	if err != nil {
		return BuildResult{}, err
	}
	res := BuildResult{}
	if meta != nil && meta.KeyringFingerprint == want.KeyringFingerprint && meta.InstallID == want.InstallID &&
		meta.StreamCreated.Equal(created) && meta.FromSeq == fromSeq && (mode == CatchUp || meta.FinishedAt == nil) {
		res.Resumed = true
		r.cfg.Logger.Info("resuming the shadow", "schema", ShadowSchema, "started_at", meta.StartedAt)
	} else {
		if fromSeq > head+1 {
			return res, fmt.Errorf("--from-seq %d is past the stream head %d", fromSeq, head)
		}
		if err := createShadow(ctx, r.shadow, r.live, want); err != nil {
			return res, err
		}
	}
	b, release, err := r.shadowBatcher(ctx, created)
	if err != nil {
		return res, err
	}
	defer release()
	res.From = b.seq
	if fromSeq > 1 && b.seq+1 < fromSeq { // a fresh build, or one interrupted in the prefix
		if err := r.foldPrefix(ctx, b, fromSeq); err != nil {
			return res, err
		}
	}
	// The deferred indexes are built once every audit row is written,
	// beside the final write of the read model.
	indexes := make(chan error, 1)
	var building atomic.Bool
	b.auditWritten = func() {
		building.Store(true)
		go func() { indexes <- buildDeferredIndexes(ctx, r.shadow) }()
	}
	err = r.foldStream(ctx, b, head)
	if building.Load() {
		if ierr := <-indexes; err == nil {
			err = ierr
		}
	}
	if err != nil {
		return res, err
	}
	if err := finishShadow(ctx, r.shadow, r.cfg.Logger); err != nil {
		return res, err
	}
	res.Checkpoint, res.Events, res.Elapsed = b.seq, b.seq-res.From, time.Since(start)
	return res, nil
}

// shadowBatcher returns a batcher on a shadow connection at the shadow's
// checkpoint, with every org's state loaded (and re-verified), and the
// function that gives the connection back.
func (r *Replayer) shadowBatcher(ctx context.Context, created time.Time) (*batcher, func(), error) {
	conn, err := r.shadow.Acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	b, err := r.loadBatcher(ctx, conn.Conn(), created)
	if err != nil {
		conn.Release()
		return nil, nil, err
	}
	return b, conn.Release, nil
}

func (r *Replayer) loadBatcher(ctx context.Context, c *pgx.Conn, created time.Time) (*batcher, error) {
	b := &batcher{conn: c, name: "org_licenses", trust: r.trust, log: r.cfg.Logger, created: created,
		states: map[string]*license.OrgState{}, tree: audit.NewTree()}
	if _, err := c.Exec(ctx, `INSERT INTO projection_checkpoints (name, last_seq, updated_at) VALUES ($1, 0, now())
		ON CONFLICT (name) DO NOTHING`, b.name); err != nil {
		return nil, err
	}
	var seq int64
	if err := c.QueryRow(ctx, `SELECT last_seq, updated_at FROM projection_checkpoints WHERE name = $1`, b.name).Scan(&seq, &b.fence); err != nil {
		return nil, err
	}
	b.seq = uint64(seq)
	// Audit rows past the checkpoint: a build with deferred rows was
	// interrupted between two flushes. They are skipped, not written again.
	var top int64
	var topHash []byte
	err := c.QueryRow(ctx, `SELECT seq, hash FROM license_audit ORDER BY seq DESC LIMIT 1`).Scan(&top, &topHash)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return nil, err
	case top > seq:
		b.auditSeq = uint64(top)
		copy(b.auditHash[:], topHash)
	}
	if b.seq == 0 {
		return b, nil
	}
	var h []byte
	if err := c.QueryRow(ctx, `SELECT hash FROM license_audit WHERE seq = $1`, seq).Scan(&h); err != nil {
		return nil, fmt.Errorf("the shadow's audit row at its checkpoint %d: %w", seq, err)
	}
	copy(b.chain[:], h)
	var treeSize int64
	if err := c.QueryRow(ctx, `SELECT tree_size FROM projection_checkpoints WHERE name = $1`, b.name).Scan(&treeSize); err != nil {
		return nil, err
	}
	if uint64(treeSize) != b.seq {
		return nil, fmt.Errorf("the shadow was built by an earlier release, without the audit tree: drop it (DROP SCHEMA %s CASCADE) and run the replay again", ShadowSchema)
	}
	if b.tree, err = audit.LoadTree(ctx, shadowTreeRows{c}, b.seq); err != nil {
		return nil, fmt.Errorf("the shadow's audit tree at %d: %w", b.seq, err)
	}
	snap, err := ReadSnapshot(ctx, r.shadow, b.name, r.trust(), PendingGraceFrom(r.cfg.Source))
	if err != nil {
		return nil, fmt.Errorf("the shadow's rows: %w", err)
	}
	for _, st := range snap.States {
		b.states[st.Org] = st
	}
	return b, nil
}

// foldPrefix folds the live audit rows before fromSeq (from the shadow's
// checkpoint on), checking that their chain holds: seq 1 on, gapless,
// each prev_hash the previous hash, each hash recomputed from envelope_raw.
func (r *Replayer) foldPrefix(ctx context.Context, b *batcher, fromSeq uint64) error {
	total := fromSeq - 1
	after, chain := b.seq, b.chain
	for after < total {
		rows, err := r.pool.Query(ctx, fmt.Sprintf(`SELECT seq, subject, envelope_raw, prev_hash, hash FROM %s
			WHERE seq > $1 AND seq < $2 ORDER BY seq LIMIT $3`, pgx.Identifier{r.live, tableAudit}.Sanitize()),
			int64(after), int64(fromSeq), r.cfg.BatchSize)
		if err != nil {
			return err
		}
		var msgs []*events.Message
		for rows.Next() {
			var seq int64
			var subject string
			var raw, prev, hash []byte
			if err := rows.Scan(&seq, &subject, &raw, &prev, &hash); err != nil {
				rows.Close()
				return err
			}
			next := audit.Next(chain, uint64(seq), raw)
			switch {
			case uint64(seq) != after+1:
				rows.Close()
				return fmt.Errorf("%w: seq %d is missing", ErrPrefixInvalid, after+1)
			case string(prev) != string(chain[:]):
				rows.Close()
				return fmt.Errorf("%w: seq %d (prev_hash)", ErrPrefixInvalid, seq)
			case string(hash) != string(next[:]):
				rows.Close()
				return fmt.Errorf("%w: seq %d (hash)", ErrPrefixInvalid, seq)
			}
			after, chain = uint64(seq), next
			msgs = append(msgs, events.Decode(subject, uint64(seq), raw))
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(msgs) == 0 {
			return fmt.Errorf("%w: seq %d is missing", ErrPrefixInvalid, after+1)
		}
		p, err := b.fold(msgs)
		if err != nil {
			return err
		}
		err = b.write(ctx, p)
		p.release()
		if err != nil {
			return err
		}
		r.progress(b.seq, total)
	}
	return nil
}

func (r *Replayer) progress(done, total uint64) {
	if r.cfg.Progress != nil {
		r.cfg.Progress(done, total)
	}
}

// errReached stops the consumer once the wanted head is delivered.
var errReached = errors.New("reached the head")

// foldStream folds the stream from the batcher's checkpoint + 1 to head.
func (r *Replayer) foldStream(ctx context.Context, b *batcher, head uint64) error {
	r.progress(b.seq, head)
	if b.seq >= head {
		return nil
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs := make(chan *events.Message, r.cfg.BatchSize)
	srcErr := make(chan error, 1)
	expect := b.seq + 1
	go func() {
		err := r.cfg.Source.Consume(cctx, expect, time.Second, func(m *events.Message) error {
			if m.Seq != expect {
				return fmt.Errorf("%w: the stream has no message %d (the next one is %d); "+
					"messages before %d can only be taken from the live audit: ledger replay --verify --from-seq %d",
					ErrStreamGap, expect, m.Seq, m.Seq, m.Seq)
			}
			expect++
			select {
			case msgs <- m:
			case <-cctx.Done():
				return cctx.Err()
			}
			if m.Seq >= head {
				return errReached
			}
			return nil
		}, nil)
		if errors.Is(err, errReached) {
			return // run returns once the message at head is committed
		}
		if err == nil {
			err = ctx.Err()
		}
		srcErr <- err
	}()
	// The read model is written now and then, not with every batch: a
	// rebuild writes each org's row once per flush instead of once per
	// batch it has events in.
	b.deferRows, b.checkpoint = true, b.seq
	err := b.run(ctx, msgs, srcErr, r.cfg.BatchSize, 50*time.Millisecond, func(seq uint64) bool { return seq >= head },
		func(res batchResult) { r.progress(res.seq, head) })
	if err == nil && b.seq < head {
		if err = ctx.Err(); err == nil {
			err = fmt.Errorf("the shadow stopped at %d of %d", b.seq, head)
		}
	}
	return err
}
