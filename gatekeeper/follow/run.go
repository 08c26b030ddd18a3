package follow

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/tick"
)

// Run loads the initial state and follows the stream until ctx ends
// (returning nil). Transient failures (NATS down, a consumer lost) are
// logged and retried; after a reconnect the consumer resumes after the
// last applied sequence. A recreated stream (another created time) is
// loaded again from scratch while the old cache keeps answering.
func (f *Follower) Run(ctx context.Context) error {
	if !f.running.CompareAndSwap(false, true) {
		return errors.New("follow: Run called twice")
	}
	if f.pool != nil {
		// In the background: a connection to a server out of reach takes
		// its timeout to close.
		defer func() { go f.pool.Close() }()
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); f.watch(ctx) }()
	go func() { defer wg.Done(); f.tickStale(ctx) }()
	if f.cfg.OnChange != nil {
		wg.Add(1)
		go func() { defer wg.Done(); f.deliverChanges(ctx) }()
	}
	defer wg.Wait()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		began := time.Now()
		err := f.session(ctx)
		if ctx.Err() != nil {
			break
		}
		if time.Since(began) > 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		f.log.Warn("stream follower interrupted; retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
	return nil
}

// session runs the start protocol (first run, or a recreated stream) or
// resumes the consumer, and follows until the consumer fails or the
// watcher cancels it.
func (f *Follower) session(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	began := time.Now()
	created, h, err := f.bus.Stream(ctx)
	if err != nil {
		return fmt.Errorf("stream info: %w", err)
	}
	f.sessMu.Lock()
	f.sessCancel, f.sessCreated = cancel, created
	f.sessMu.Unlock()
	if f.loaded.Load() && f.createdTime().Equal(created) {
		return f.bus.Consume(ctx, f.applied.Load()+1, f.cfg.Heartbeat, func(m *events.Message) error {
			f.apply(m, true)
			return nil
		}, nil)
	}
	resync := f.loaded.Load()
	if resync {
		f.log.Error("the stream was recreated: loading every org again", "was_created", f.createdTime(), "created", created)
	}
	if id, _, err := events.InstallID(ctx, f.bus); err != nil {
		return fmt.Errorf("install id: %w", err)
	} else if id != "" {
		f.adoptInstallID(id)
	}

	// Subscribe from h + 1 first, buffering, so nothing after h is missed
	// while the state up to h loads.
	buf := &buffer{}
	consumed := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	defer func() { cancel(); wg.Wait() }() // never two consumers applying at once
	go func() {
		defer wg.Done()
		consumed <- f.bus.Consume(ctx, h+1, f.cfg.Heartbeat, func(m *events.Message) error {
			if buf.hold(m) {
				return nil
			}
			f.apply(m, true)
			return nil
		}, nil)
	}()
	if hook := f.hookBeforeLoad; hook != nil {
		hook()
	}
	trust := f.trust()
	states, source, err := f.loadAll(ctx, created, h, trust)
	if err != nil {
		return err
	}
	f.install(states, trust, resync)
	f.created.Store(&created)
	f.applied.Store(h)
	f.pendHead.Store(0)
	buf.release(func(m *events.Message) { f.apply(m, true) })
	f.confirm(began.UnixNano())
	f.loaded.Store(true)
	f.gen.Add(1)
	f.loadedOnce.Do(func() { close(f.loadedCh) })
	f.checkKeyring()
	f.log.Info("license state loaded", "orgs", f.orgs.Load().len(), "from", source, "stream_head", h,
		"applied", f.applied.Load(), "took", time.Since(began).Round(time.Millisecond))
	select {
	case err := <-consumed:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// buffer holds consumed messages until the initial load is installed.
type buffer struct {
	mu   sync.Mutex
	live bool
	msgs []*events.Message
}

// hold keeps m if the load is not installed yet.
func (b *buffer) hold(m *events.Message) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.live {
		return false
	}
	b.msgs = append(b.msgs, m)
	return true
}

// release applies the held messages in order and lets later ones through.
func (b *buffer) release(apply func(*events.Message)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.msgs {
		apply(m)
	}
	b.msgs, b.live = nil, true
}

// watch compares the stream head with what was applied, every
// CheckInterval: an up-to-date follower is confirmed current as of the
// check's start; a behind one is confirmed once it applies that head. A
// consumer that stays behind without progress is restarted, and a
// recreated stream is loaded again.
func (f *Follower) watch(ctx context.Context) {
	tick.Every(ctx, f.cfg.CheckInterval, func() { f.check(ctx) })
}

func (f *Follower) check(ctx context.Context) {
	at := time.Now()
	cctx, cancel := context.WithTimeout(ctx, max(f.cfg.CheckInterval, 250*time.Millisecond))
	created, head, err := f.bus.Stream(cctx)
	cancel()
	f.natsOK.Store(err == nil)
	if err != nil {
		return
	}
	f.head.Store(head)
	f.sessMu.Lock()
	following, stop := f.sessCreated, f.sessCancel
	f.sessMu.Unlock()
	if stop != nil && !following.IsZero() && !created.Equal(following) {
		stop() // a recreated stream: the next session loads it
		return
	}
	if !f.loaded.Load() || !f.createdTime().Equal(created) {
		return
	}
	applied := f.applied.Load()
	if applied >= head {
		f.confirm(at.UnixNano())
		f.stalled = 0
		return
	}
	f.pendMu.Lock()
	if f.pendHead.Load() == 0 {
		f.pendAt = at.UnixNano()
		f.pendHead.Store(head)
	}
	f.pendMu.Unlock()
	// Behind at three checks in a row with no progress: the consumer is
	// stuck (the ordered consumer recovers from gaps and reconnects by
	// itself; this is the backstop).
	if f.stalled == 0 || f.stallSeq != applied {
		f.stallSeq, f.stalled = applied, 1
		return
	}
	if f.stalled++; f.stalled >= 3 && stop != nil {
		f.log.Warn("stream consumer made no progress; restarting it", "applied", applied, "stream_head", head)
		f.stalled = 0
		stop()
	}
}

// createdTime is the created time of the stream the cache was loaded from
// (zero before the first load).
func (f *Follower) createdTime() time.Time {
	if t := f.created.Load(); t != nil {
		return *t
	}
	return time.Time{}
}

// tickStale recomputes the stale flag State reads.
func (f *Follower) tickStale(ctx context.Context) {
	tick.Every(ctx, staleTick, func() {
		if f.loaded.Load() {
			f.setStale(f.Staleness() > f.cfg.MaxStaleness)
		}
	})
}
