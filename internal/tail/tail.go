// Package tail follows the stream for a reader that folds it: the ledger's
// own model, the PostgreSQL projector and a gatekeeper's follower share
// this one loop. A Tail starts a session (the reader says which sequence
// it holds), consumes from the next one in stream order, and watches the
// stream's head: it reports lag, restarts a consumer that stopped making
// progress, backs off after failures, and starts a new session, marked
// Resync, when the stream is not the one the reader followed (recreated:
// another created time; rewound: a head below what was applied).
package tail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/tick"
)

// Defaults of Config.
const (
	DefaultHeartbeat     = time.Second
	DefaultCheckInterval = 2 * time.Second
	minBackoff           = 100 * time.Millisecond
	maxBackoff           = 2 * time.Second
	// healthySession is how long a session must last for the backoff to
	// start again from its minimum.
	healthySession = 10 * time.Second
	// stallChecks is how many checks in a row may find the reader behind
	// with no message delivered before the consumer is restarted.
	stallChecks = 3
)

// ErrStop, wrapped by an error a Reader returns, ends Run with that error:
// a condition an operator must fix (a newer schema, a recreated stream
// the reader cannot follow). Any other error is retried.
var ErrStop = errors.New("stop following the stream")

// Stop wraps err so that it ends Run.
func Stop(err error) error { return fmt.Errorf("%w: %w", ErrStop, err) }

// Stream is the stream as a tail reads it (*natsbus.Bus).
type Stream interface {
	// Stream returns the stream's created time and head.
	Stream(ctx context.Context) (created time.Time, head uint64, err error)
	// Consume delivers every message from start on, in order, until ctx
	// ends or fn fails.
	Consume(ctx context.Context, start uint64, heartbeat time.Duration, fn func(*events.Message) error, onIdle func()) error
}

// Session describes the stream a session follows.
type Session struct {
	Created time.Time // the stream's created time
	Head    uint64    // its head when the session started ...
	At      time.Time // ... read at this moment
	// Applied is the last sequence the previous session delivered (0 on
	// the first).
	Applied uint64
	// Resync: the stream is not the one the previous session followed
	// (recreated, or rewound below Applied). What the reader holds does
	// not belong to it.
	Resync bool
}

// Reader is what a tail feeds.
type Reader interface {
	// Start begins a session and returns the last sequence the reader
	// holds: the tail consumes from the next one. ctx ends with the
	// session (a long initial load is abandoned when the stream changes
	// under it).
	Start(ctx context.Context, s Session) (applied uint64, err error)
	// Apply folds one message. Messages come in stream order, each once
	// per session, from one goroutine.
	Apply(m *events.Message) error
}

// Config configures a Tail.
type Config struct {
	Stream Stream
	Reader Reader
	// Heartbeat is the consumer's pull heartbeat. Default 1 s.
	Heartbeat time.Duration
	// CheckInterval is how often the head is read. Default 2 s.
	CheckInterval time.Duration
	// Checked, if set, is called after every check that read the head of
	// the stream being followed, with the moment the check began and that
	// stream's created time.
	Checked func(at, created time.Time, head uint64)
	Logger  *slog.Logger
}

// Tail follows the stream for one Reader. Create it with New, run it with
// Run; its accessors are safe for concurrent use.
type Tail struct {
	cfg Config
	log *slog.Logger

	applied   atomic.Uint64 // last sequence delivered to Apply (or held at Start)
	head      atomic.Uint64 // stream head at the last check
	reachable atomic.Bool   // the last check succeeded
	applying  atomic.Bool   // inside Apply: a slow reader is not a stalled consumer
	starting  atomic.Bool   // inside Start: a long load is not a stalled consumer

	mu      sync.Mutex
	cancel  context.CancelFunc // ends the running session
	created time.Time          // the stream the running or last session follows
	started bool               // a session has started
	restart string             // why the running session was ended by a check

	stallSeq uint64 // applied at the checks that found the reader behind ...
	stalled  int    // ... and how many in a row (check goroutine only)
}

// New returns a tail; Run starts it.
func New(cfg Config) *Tail {
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = DefaultCheckInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Tail{cfg: cfg, log: cfg.Logger}
}

// Applied is the last sequence delivered to the reader.
func (t *Tail) Applied() uint64 { return t.applied.Load() }

// Head is the stream head as last seen: at a check, a session start or a
// delivered message.
func (t *Tail) Head() uint64 { return t.head.Load() }

// Lag is Head minus Applied (0 when caught up).
func (t *Tail) Lag() uint64 {
	h, a := t.head.Load(), t.applied.Load()
	if a >= h {
		return 0
	}
	return h - a
}

// Reachable reports whether the last read of the head succeeded.
func (t *Tail) Reachable() bool { return t.reachable.Load() }

// Run follows until ctx ends (returning nil) or the reader returns an
// error wrapping ErrStop (returned). Other failures are logged and
// retried with a backoff from 100 ms to 2 s.
func (t *Tail) Run(ctx context.Context) error {
	watchCtx, stopWatch := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); t.watch(watchCtx) }()
	defer func() { stopWatch(); wg.Wait() }()
	backoff := minBackoff
	for ctx.Err() == nil {
		began := time.Now()
		err := t.session(ctx)
		if ctx.Err() != nil {
			break
		}
		if errors.Is(err, ErrStop) {
			return err
		}
		if time.Since(began) > healthySession {
			backoff = minBackoff
		}
		t.log.Warn("stream consumer interrupted; resuming", "err", err, "applied", t.applied.Load(), "in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
	return nil
}

// session starts the reader on the stream as it is now and consumes until
// the consumer fails or a check ends the session.
func (t *Tail) session(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	at := time.Now()
	created, head, err := t.cfg.Stream.Stream(ctx)
	t.reachable.Store(err == nil)
	if err != nil {
		return fmt.Errorf("stream info: %w", err)
	}
	t.head.Store(head)
	t.mu.Lock()
	s := Session{Created: created, Head: head, At: at, Applied: t.applied.Load()}
	s.Resync = t.started && (!created.Equal(t.created) || head < s.Applied)
	was := t.created
	t.started, t.created, t.cancel, t.restart = true, created, cancel, ""
	t.mu.Unlock()
	if s.Resync {
		t.log.Error("the stream is not the one followed: starting over", "was_created", was, "created", created,
			"stream_head", head, "applied", s.Applied)
	}
	t.starting.Store(true)
	from, err := t.cfg.Reader.Start(ctx, s)
	t.starting.Store(false)
	if err != nil {
		return t.why(err)
	}
	t.applied.Store(from)
	err = t.cfg.Stream.Consume(ctx, from+1, t.cfg.Heartbeat, func(m *events.Message) error {
		t.applying.Store(true)
		err := t.cfg.Reader.Apply(m)
		t.applying.Store(false)
		if err != nil {
			return err
		}
		t.applied.Store(m.Seq)
		if m.Seq > t.head.Load() {
			t.head.Store(m.Seq) // the check goroutine may store an older head: Lag stays 0 either way
		}
		return nil
	}, nil)
	return t.why(err)
}

// why adds to err the reason a check gave for ending the session.
func (t *Tail) why(err error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.restart != "" && !errors.Is(err, ErrStop) {
		return errors.New(t.restart)
	}
	return err
}

// watch reads the head every CheckInterval.
func (t *Tail) watch(ctx context.Context) {
	tick.Every(ctx, t.cfg.CheckInterval, func() { t.check(ctx) })
}

// check reads the head: a stream that is not the one followed ends the
// session (the next one resyncs); a reader behind at stallChecks checks in
// a row with no message delivered gets a new consumer.
func (t *Tail) check(ctx context.Context) {
	at := time.Now()
	cctx, cancel := context.WithTimeout(ctx, max(t.cfg.CheckInterval, 250*time.Millisecond))
	created, head, err := t.cfg.Stream.Stream(cctx)
	cancel()
	t.reachable.Store(err == nil)
	if err != nil {
		return
	}
	t.head.Store(head)
	t.mu.Lock()
	following, stop := t.created, t.cancel
	t.mu.Unlock()
	if stop == nil {
		return // no session yet
	}
	applied := t.applied.Load()
	switch {
	case !created.Equal(following):
		t.end(stop, "the stream was recreated")
		return
	case head < applied:
		t.end(stop, "the stream was rewound")
		return
	}
	if t.cfg.Checked != nil {
		t.cfg.Checked(at, created, head)
	}
	if applied >= head || t.applying.Load() || t.starting.Load() {
		t.stalled = 0
		return
	}
	if t.stalled == 0 || t.stallSeq != applied {
		t.stallSeq, t.stalled = applied, 1
		return
	}
	if t.stalled++; t.stalled >= stallChecks {
		t.stalled = 0
		t.end(stop, fmt.Sprintf("the consumer made no progress at %d with the stream head at %d", applied, head))
	}
}

// end ends the running session for reason.
func (t *Tail) end(stop context.CancelFunc, reason string) {
	t.mu.Lock()
	t.restart = reason
	t.mu.Unlock()
	stop()
}
