package memstream_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/ledger"
	"github.com/licenseledger/ledger/internal/memstream"
	"github.com/licenseledger/ledger/internal/streamtest"
)

var _ ledger.Store = (*memstream.Stream)(nil)

// The in-memory stream passes the conformance suite the bus passes on
// JetStream.
func TestConformance(t *testing.T) {
	streamtest.Run(t, func(*testing.T) streamtest.Store { return memstream.New(memstream.Config{}) })
}

var acme = events.OrgSubject("acme")

// withOneEvent returns a stream created with cfg holding one event on
// acme's subject, and the event.
func withOneEvent(t *testing.T, cfg memstream.Config) (*memstream.Stream, *events.Envelope) {
	t.Helper()
	s := memstream.New(cfg)
	env, err := events.New(events.TypeRemoved, "acme", time.Now(), events.Actor{Kind: events.ActorOperator, ID: "t"}, 0, events.Removed{LicenseID: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if seq, err := s.Append(context.Background(), acme, env, 0); err != nil || seq != 1 {
		t.Fatalf("append: %d, %v", seq, err)
	}
	return s, env
}

// An event id is remembered for the duplicate window only, as JetStream's
// Nats-Msg-Id is: past it, the same id is a new event.
func TestDuplicateWindow(t *testing.T) {
	var now atomic.Pointer[time.Time]
	start := time.Now()
	now.Store(&start)
	s, env := withOneEvent(t, memstream.Config{DuplicateWindow: time.Minute, Now: func() time.Time { return *now.Load() }})
	ctx := context.Background()
	within := start.Add(time.Minute)
	now.Store(&within)
	if seq, err := s.Append(ctx, acme, env, 1); err != nil || seq != 1 {
		t.Fatalf("within the window: %d, %v; want the stored seq 1", seq, err)
	}
	past := start.Add(time.Minute + time.Second)
	now.Store(&past)
	if seq, err := s.Append(ctx, acme, env, 1); err != nil || seq != 2 {
		t.Fatalf("past the window: %d, %v; want a new seq 2", seq, err)
	}
	if _, err := s.Append(ctx, acme, env, 1); !errors.Is(err, events.ErrConflict) {
		t.Fatalf("a stale expectation: %v", err)
	}
}

// The same event again under the expectation it was stored with is a
// conflict, as on a single-replica JetStream stream (the expected
// sequence is checked first).
func TestStaleDuplicateIsAConflict(t *testing.T) {
	s, env := withOneEvent(t, memstream.Config{})
	if seq, err := s.Append(context.Background(), acme, env, 0); !errors.Is(err, events.ErrConflict) {
		t.Fatalf("the same event under its first expectation: %d, %v; want a conflict", seq, err)
	}
}

// Messages read are the reader's own: changing one leaves the stream as
// it was.
func TestReadsDoNotShareBytes(t *testing.T) {
	s, _ := withOneEvent(t, memstream.Config{})
	ctx := context.Background()
	m, _ := s.Get(ctx, 1)
	want := string(m.Raw)
	for i := range m.Raw {
		m.Raw[i] = 'x'
	}
	if again, _ := s.Get(ctx, 1); string(again.Raw) != want {
		t.Fatalf("the stream changed with a reader's copy: %s", again.Raw)
	}
}
