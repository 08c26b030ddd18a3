package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/ledger"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/tail"
)

// follower folds the stream into the service's org states and the
// in-memory audit trail (nil with PostgreSQL), from the first message or
// from a read-model snapshot's checkpoint + 1, and keeps following. A
// recreated or rewound stream resets both and starts over.
type follower struct {
	*tail.Tail
	svc      *ledger.Service
	audit    *audit.Memory
	from     uint64        // what the model holds at the first session
	head     uint64        // the stream head at start: loaded once applied
	loaded   chan struct{} // closed once the head seen at start is folded
	loadOnce sync.Once
}

func newFollower(bus *natsbus.Bus, svc *ledger.Service, trail *audit.Memory, info natsbus.StreamInfo, from uint64, log *slog.Logger) *follower {
	f := &follower{svc: svc, audit: trail, from: from, head: info.LastSeq, loaded: make(chan struct{})}
	f.Tail = tail.New(tail.Config{Stream: bus, Reader: f, Logger: log})
	if info.LastSeq <= from {
		f.markLoaded()
	}
	return f
}

func (f *follower) markLoaded() { f.loadOnce.Do(func() { close(f.loaded) }) }

// Start resumes where the model is, or empties it for a stream that is
// not the one it was built from (tail.Reader).
func (f *follower) Start(_ context.Context, s tail.Session) (uint64, error) {
	switch {
	case s.Resync:
		f.svc.Reset()
		if f.audit != nil {
			f.audit.Reset()
		}
		return 0, nil
	case s.Applied == 0:
		return f.from, nil
	}
	return s.Applied, nil
}

// Apply folds m into the audit trail and the model (tail.Reader).
func (f *follower) Apply(m *events.Message) error {
	if f.audit != nil {
		if err := f.audit.Append(m, time.Now()); err != nil {
			return err
		}
	}
	f.svc.Observe(m)
	if m.Seq >= f.head {
		f.markLoaded()
	}
	return nil
}
