package main

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/ledger"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/tick"
)

// follower consumes the stream into the service's org states and the
// in-memory audit trail (nil with PostgreSQL), from the first message or
// from a read-model snapshot's checkpoint + 1, and keeps following. A
// recreated stream (another created time) resets both and starts over.
type follower struct {
	bus   *natsbus.Bus
	svc   *ledger.Service
	audit *audit.Memory
	log   *slog.Logger

	applied  atomic.Uint64 // last folded sequence
	head     atomic.Uint64 // stream head at the last check
	natsOK   atomic.Bool
	loaded   chan struct{} // closed once the head seen at start is folded
	loadOnce sync.Once
	created  time.Time
}

func newFollower(bus *natsbus.Bus, svc *ledger.Service, trail *audit.Memory, info natsbus.StreamInfo, from uint64, log *slog.Logger) *follower {
	f := &follower{bus: bus, svc: svc, audit: trail, log: log, loaded: make(chan struct{}), created: info.Created}
	f.head.Store(info.LastSeq)
	f.applied.Store(from)
	f.natsOK.Store(true)
	if info.LastSeq <= from {
		f.markLoaded()
	}
	return f
}

func (f *follower) markLoaded() { f.loadOnce.Do(func() { close(f.loaded) }) }

// run follows until ctx ends, restarting the consumer after errors.
func (f *follower) run(ctx context.Context) {
	go f.watch(ctx)
	for ctx.Err() == nil {
		err := f.bus.Consume(ctx, f.applied.Load()+1, time.Second, f.handle, nil)
		if ctx.Err() != nil {
			return
		}
		f.log.Warn("stream consumer stopped; restarting", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (f *follower) handle(m *events.Message) error {
	if f.audit != nil {
		if err := f.audit.Append(m, time.Now()); err != nil {
			return err
		}
	}
	f.svc.Observe(m)
	f.applied.Store(m.Seq)
	if m.Seq >= f.head.Load() {
		f.markLoaded()
	}
	return nil
}

// watch polls stream info every 2 s: the head (for lag and readiness),
// NATS reachability, and the created time (a recreated stream resyncs).
func (f *follower) watch(ctx context.Context) {
	tick.Every(ctx, 2*time.Second, func() { f.check(ctx) })
}

func (f *follower) check(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	info, err := f.bus.Info(cctx)
	cancel()
	f.natsOK.Store(err == nil)
	if err != nil {
		return
	}
	f.head.Store(info.LastSeq)
	if !info.Created.Equal(f.created) {
		f.log.Error("the stream was recreated: rebuilding state from it", "was_created", f.created, "created", info.Created)
		f.created = info.Created
		f.svc.Reset()
		if f.audit != nil {
			f.audit.Reset()
		}
		f.applied.Store(0)
	}
}

// lag is the stream head minus the last folded sequence.
func (f *follower) lag() uint64 {
	h, a := f.head.Load(), f.applied.Load()
	if a >= h {
		return 0
	}
	return h - a
}
