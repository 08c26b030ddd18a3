package follow

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/tail"
	"github.com/licenseledger/ledger/internal/tick"
)

// Run loads the initial state and follows the stream until ctx ends
// (returning nil). Transient failures (NATS down, a consumer lost) are
// logged and retried; after a reconnect the consumer resumes after the
// last applied sequence. A recreated or rewound stream is loaded again
// from scratch while the old cache keeps answering.
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
	go func() { defer wg.Done(); f.tickStale(ctx) }()
	go func() { defer wg.Done(); f.verifyDeferred(ctx) }()
	if f.cfg.OnChange != nil {
		wg.Add(1)
		go func() { defer wg.Done(); f.deliverChanges(ctx) }()
	}
	defer wg.Wait()
	return f.tail.Run(ctx)
}

// reader is the follower as its tail feeds it.
type reader struct{ f *Follower }

// Start resumes after the last applied sequence, or runs the start
// protocol: on the first session, and on a stream that is not the one the
// cache was loaded from (tail.Reader). The protocol loads every org as of
// the session's head H and installs it; the follower is ready once it has
// also applied what was appended during the load (the head read again
// after it), so that ready means current as of the end of the load.
func (r reader) Start(ctx context.Context, s tail.Session) (uint64, error) {
	f := r.f
	if !s.Resync && f.created.Load() != nil {
		return f.applied.Load(), nil
	}
	if s.Resync {
		f.log.Error("the stream is not the one the cache was loaded from: loading every org again", "was_created", f.createdTime(), "created", s.Created)
	}
	began := time.Now()
	if id, _, err := events.InstallID(ctx, f.bus); err != nil {
		return 0, fmt.Errorf("install id: %w", err)
	} else if id != "" {
		f.adoptInstallID(id)
	}
	if hook := f.hookBeforeLoad; hook != nil {
		hook()
	}
	h := s.Head
	// Every org's key is verified after the load, on every core, and
	// before any decision on the org (verified): a forged key is refused
	// as surely, and the replica serves sooner.
	trust := f.trust()
	trust.Defer = true
	states, source, err := f.loadAll(ctx, s.Created, h, trust)
	if err != nil {
		return 0, err
	}
	at := time.Now()
	_, now, err := f.bus.Stream(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream info: %w", err)
	}
	f.install(states, trust, f.loaded.Load())
	clear(states)
	states = nil
	debug.FreeOSMemory()
	select {
	case f.deferred <- struct{}{}:
	default: // already signalled
	}
	f.created.Store(&s.Created)
	f.applied.Store(h)
	f.pendHead.Store(0)
	f.loadInfo = loadInfo{began: began, source: source, head: h}
	if now <= h {
		f.ready(s.At.UnixNano())
	} else {
		f.readyAt.Store(now)
		f.readyConfirm.Store(at.UnixNano())
	}
	return h, nil
}

// loadInfo describes the last load of every org, for its log line.
type loadInfo struct {
	began  time.Time
	source string
	head   uint64
}

// ready marks the follower ready (on a first load) and current as of the
// moment at.
func (f *Follower) ready(at int64) {
	f.readyAt.Store(0)
	f.confirm(at)
	f.loaded.Store(true)
	f.gen.Add(1)
	f.loadedOnce.Do(func() { close(f.loadedCh) })
	f.checkKeyring()
	f.log.Info("license state loaded", "orgs", f.orgs.Load().len(), "from", f.loadInfo.source, "stream_head", f.loadInfo.head,
		"applied", f.applied.Load(), "took", time.Since(f.loadInfo.began).Round(time.Millisecond))
}

// Apply folds a consumed message into the cache (tail.Reader).
func (r reader) Apply(m *events.Message) error {
	f := r.f
	f.apply(m, true)
	if at := f.readyAt.Load(); at != 0 && m.Seq >= at {
		f.ready(f.readyConfirm.Load())
	}
	return nil
}

// checked runs after every read of the head of the stream being followed:
// an up-to-date follower is confirmed current as of the check's start; a
// behind one is confirmed once it applies that head. A cache loaded from
// another stream (a reload in progress) is never confirmed.
func (f *Follower) checked(at, created time.Time, head uint64) {
	if !f.loaded.Load() || !f.createdTime().Equal(created) {
		return
	}
	if f.applied.Load() >= head {
		f.confirm(at.UnixNano())
		return
	}
	f.pendMu.Lock()
	if f.pendHead.Load() == 0 {
		f.pendAt = at.UnixNano()
		f.pendHead.Store(head)
	}
	f.pendMu.Unlock()
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
