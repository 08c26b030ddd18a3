package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/projection"
	"github.com/licenseledger/ledger/internal/tail"
	"github.com/licenseledger/ledger/license"
)

// Source is the stream as the projector reads it (natsbus.Bus).
type Source interface {
	// Consume delivers every message from start on, in order.
	Consume(ctx context.Context, start uint64, heartbeat time.Duration, fn func(*events.Message) error, onIdle func()) error
	// Stream returns the stream's created time and head.
	Stream(ctx context.Context) (created time.Time, head uint64, err error)
	// ReadSubject calls fn for messages on subject in (after, upTo].
	ReadSubject(ctx context.Context, subject string, after, upTo uint64, fn func(*events.Message) error) error
}

// Errors that stop the projector loudly: an operator must act.
var (
	ErrSchemaTooNew    = errors.New("an event's schema is newer than this build reads: upgrade the projector")
	ErrStreamRecreated = errors.New("the stream was recreated since the checkpoint: replay it into PostgreSQL (ledger replay)")
	ErrFenced          = errors.New("the checkpoint moved under this projector: another one took over")
)

// ProjectorConfig configures a Projector.
type ProjectorConfig struct {
	Pool   *pgxpool.Pool
	Source Source
	Keys   *license.Keys
	// InstallID returns the install id for re-verification ("" unknown).
	InstallID func() string
	// Name is the checkpoint row. Defaults to "org_licenses".
	Name string
	// LockKey is the advisory lock making one projector active. Defaults
	// to a constant derived from the name.
	LockKey int64
	// BatchSize and BatchWait bound a transaction: a batch commits when
	// it holds BatchSize events or BatchWait after its first one. Live, a
	// batch holds what arrived within BatchWait; catching up, messages
	// queue (up to BatchSize) while a batch commits, so batches grow to
	// BatchSize. Default 5,000 and 20 ms.
	BatchSize int
	BatchWait time.Duration
	Logger    *slog.Logger
	// Registry receives the projector's metrics (nil: none).
	Registry prometheus.Registerer
	// SkipTree writes audit rows without their tree_hashes and leaves
	// tree_size where it is: ledger bench's reference for what the Merkle
	// tree costs the projector. The next start without it computes the
	// missing hashes (loadTree).
	SkipTree bool
}

// Projector folds the stream into org_licenses, revoked_licenses and the
// hash-chained license_audit, exactly once: each batch commits its rows
// and a fenced checkpoint update in one transaction, and a (re)start
// resumes from the checkpoint + 1. One replica is active at a time (a
// PostgreSQL advisory lock); others wait.
type Projector struct {
	cfg     ProjectorConfig
	applied atomic.Uint64             // last committed sequence
	head    atomic.Uint64             // stream head last seen (at a session start, or on standby)
	tail    atomic.Pointer[tail.Tail] // the active session's, which sees the head move
	active  atomic.Bool
	mu      sync.Mutex
	stopped error // why it stopped for good, nil while running

	batches      prometheus.Counter
	events       prometheus.Counter
	lagGauges    [2]prometheus.GaugeFunc
	stoppedGauge prometheus.GaugeFunc
}

// NewProjector returns a projector; Run starts it.
func NewProjector(cfg ProjectorConfig) *Projector {
	if cfg.Name == "" {
		cfg.Name = "org_licenses"
	}
	if cfg.LockKey == 0 {
		cfg.LockKey = 0x6c6564676572 // "ledger"
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 5000
	}
	if cfg.BatchWait <= 0 {
		cfg.BatchWait = 20 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.InstallID == nil {
		cfg.InstallID = func() string { return "" }
	}
	p := &Projector{cfg: cfg,
		batches: prometheus.NewCounter(prometheus.CounterOpts{Name: "ledger_projector_batches_total", Help: "Transactions committed by the projector."}),
		events:  prometheus.NewCounter(prometheus.CounterOpts{Name: "ledger_projector_events_total", Help: "Stream messages projected into PostgreSQL."}),
	}
	p.stoppedGauge = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ledger_projector_stopped",
		Help: "1 when the projector stopped for good (a newer event schema, a recreated stream): an operator must act."},
		func() float64 {
			if p.Stopped() != nil {
				return 1
			}
			return 0
		})
	lag := func() float64 { return float64(p.Lag()) }
	p.lagGauges = [2]prometheus.GaugeFunc{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ledger_projector_pg_lag_events",
			Help: "Stream head minus the projector's PostgreSQL checkpoint, in events."}, lag),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ledger_projector_pg_lag",
			Help: "Deprecated: ledger_projector_pg_lag_events, the same value with its unit in the name; removed in the next release."}, lag),
	}
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(p.batches, p.events, p.lagGauges[0], p.lagGauges[1], p.stoppedGauge)
	}
	return p
}

// trust is the key ring and install id licenses are verified against now.
func (p *Projector) trust() projection.Trust {
	return projection.Trust{Ring: p.cfg.Keys.Ring(), InstallID: p.cfg.InstallID()}
}

// Lag is the stream head minus the committed checkpoint.
func (p *Projector) Lag() uint64 {
	h, a := p.head.Load(), p.applied.Load()
	if t := p.tail.Load(); t != nil && p.active.Load() {
		h = max(h, t.Head())
	}
	if a >= h {
		return 0
	}
	return h - a
}

// Applied is the last committed sequence.
func (p *Projector) Applied() uint64 { return p.applied.Load() }

// Active reports whether this replica holds the projector lock.
func (p *Projector) Active() bool { return p.active.Load() }

// Stopped returns why the projector stopped for good (schema too new,
// stream recreated), nil while it runs or waits.
func (p *Projector) Stopped() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopped
}

// Run projects until ctx ends or a condition an operator must fix stops it
// (returned, and kept in Stopped). Transient failures (PostgreSQL or NATS
// down, a lost lock) are logged and retried.
func (p *Projector) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		err := p.runOnce(ctx)
		if errors.Is(err, ErrSchemaTooNew) || errors.Is(err, ErrStreamRecreated) {
			p.mu.Lock()
			p.stopped = err
			p.mu.Unlock()
			p.cfg.Logger.Error("projector stopped", "err", err, "checkpoint", p.applied.Load())
			return err
		}
		if err != nil && ctx.Err() == nil {
			p.cfg.Logger.Warn("projector interrupted; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return nil
}

// runOnce takes the lock (or returns to wait) and projects while it holds it.
func (p *Projector) runOnce(ctx context.Context) error {
	conn, err := p.cfg.Pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, p.cfg.LockKey).Scan(&locked); err != nil {
		return err
	}
	if !locked {
		// Another replica is active: follow its checkpoint for the lag.
		var seq int64
		if conn.QueryRow(ctx, `SELECT last_seq FROM projection_checkpoints WHERE name = $1`, p.cfg.Name).Scan(&seq) == nil {
			p.applied.Store(uint64(seq))
		}
		if _, head, err := p.cfg.Source.Stream(ctx); err == nil {
			p.head.Store(head)
		}
		return nil
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, p.cfg.LockKey)
	p.active.Store(true)
	defer p.active.Store(false)
	return p.project(ctx, conn.Conn())
}

// project consumes from the checkpoint + 1 and commits batches.
func (p *Projector) project(ctx context.Context, conn *pgx.Conn) error {
	ck, err := p.checkpoint(ctx, conn)
	if err != nil {
		return err
	}
	created, head, err := p.cfg.Source.Stream(ctx)
	if err != nil {
		return err
	}
	p.head.Store(head)
	// PostgreSQL keeps microseconds; the stream's time has nanoseconds.
	created = created.UTC().Truncate(time.Microsecond)
	if ck.created != nil && !ck.created.Equal(created) {
		return fmt.Errorf("%w (checkpoint: stream created %s; now %s)", ErrStreamRecreated, ck.created.UTC().Format(time.RFC3339Nano), created.UTC().Format(time.RFC3339Nano))
	}
	p.applied.Store(ck.seq)
	// Every org's state at the checkpoint, in two queries rather than two
	// per org on first touch: a takeover resumes at full speed.
	trust := projection.Trust{Ring: p.cfg.Keys.Ring(), InstallID: p.cfg.InstallID()}
	snap, err := ReadSnapshot(ctx, p.cfg.Pool, p.cfg.Name, trust, PendingGraceFrom(p.cfg.Source))
	if err != nil {
		return fmt.Errorf("load the read model: %w", err)
	}
	if snap.Checkpoint != ck.seq {
		return fmt.Errorf("%w: checkpoint %d read as %d", ErrFenced, ck.seq, snap.Checkpoint)
	}
	states := make(map[string]*license.OrgState, len(snap.States))
	for _, st := range snap.States {
		states[st.Org] = st
	}
	tree, err := loadTree(ctx, conn, p.cfg.Name, ck.seq, p.cfg.Logger)
	if err != nil {
		return err
	}
	b := &batcher{conn: conn, name: p.cfg.Name, trust: p.trust, log: p.cfg.Logger, created: created,
		seq: ck.seq, chain: ck.hash, tree: tree, skipTree: p.cfg.SkipTree, states: states, fence: ck.updated}
	p.cfg.Logger.Info("projector active", "checkpoint", ck.seq, "stream_head", head)

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs := make(chan *events.Message, p.cfg.BatchSize)
	consumeErr := make(chan error, 1)
	feed := &feed{ctx: cctx, from: ck.seq, msgs: msgs}
	t := tail.New(tail.Config{Stream: p.cfg.Source, Reader: feed, Logger: p.cfg.Logger})
	p.tail.Store(t)
	go func() { consumeErr <- t.Run(cctx) }()
	return b.run(ctx, msgs, consumeErr, p.cfg.BatchSize, p.cfg.BatchWait, nil, func(r batchResult) {
		p.applied.Store(r.seq)
		p.batches.Inc()
		p.events.Add(float64(r.records))
	})
}

// feed hands the stream to the batcher: from the checkpoint, resuming
// after the last message handed over when the consumer restarts. The
// stream changing under it stops the projector (ErrStreamRecreated).
type feed struct {
	ctx  context.Context // the projector's session
	from uint64
	msgs chan<- *events.Message
}

// Start implements tail.Reader.
func (f *feed) Start(_ context.Context, s tail.Session) (uint64, error) {
	switch {
	case s.Resync:
		return 0, tail.Stop(fmt.Errorf("%w (the stream changed while projecting)", ErrStreamRecreated))
	case s.Applied == 0:
		return f.from, nil
	}
	return s.Applied, nil
}

// Apply implements tail.Reader.
func (f *feed) Apply(m *events.Message) error {
	select {
	case f.msgs <- m:
		return nil
	case <-f.ctx.Done():
		return f.ctx.Err()
	}
}

type checkpointRow struct {
	seq     uint64
	created *time.Time
	updated *time.Time // the fence (see batcher.fence)
	hash    audit.Hash
}

// checkpoint reads (creating if absent) the checkpoint and the chain head
// at it.
func (p *Projector) checkpoint(ctx context.Context, conn *pgx.Conn) (checkpointRow, error) {
	var ck checkpointRow
	if _, err := conn.Exec(ctx, `INSERT INTO projection_checkpoints (name, last_seq, updated_at) VALUES ($1, 0, now())
		ON CONFLICT (name) DO NOTHING`, p.cfg.Name); err != nil {
		return ck, err
	}
	var seq int64
	if err := conn.QueryRow(ctx, `SELECT last_seq, stream_created, updated_at FROM projection_checkpoints WHERE name = $1`,
		p.cfg.Name).Scan(&seq, &ck.created, &ck.updated); err != nil {
		return ck, err
	}
	ck.seq = uint64(seq)
	if ck.seq == 0 {
		return ck, nil
	}
	var h []byte
	if err := conn.QueryRow(ctx, `SELECT hash FROM license_audit WHERE seq = $1`, seq).Scan(&h); err != nil {
		return ck, fmt.Errorf("the audit row at checkpoint %d: %w", seq, err)
	}
	copy(ck.hash[:], h)
	return ck, nil
}
