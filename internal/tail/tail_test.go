package tail_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/tail"
)

// stream is a stream in memory whose consumers can be made to fail or to
// hang.
type stream struct {
	mu      sync.Mutex
	created time.Time
	msgs    []*events.Message // msgs[i].Seq == first+i
	first   uint64
	grew    chan struct{}
	failIn  int  // the consumer fails after this many more deliveries (0: never)
	hang    bool // consumers deliver nothing
	starts  []uint64
}

func newStream() *stream {
	return &stream{created: time.Unix(1_800_000_000, 0), first: 1, grew: make(chan struct{})}
}

func (s *stream) append(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		seq := s.first + uint64(len(s.msgs))
		s.msgs = append(s.msgs, &events.Message{Seq: seq, Subject: "lic.org.acme"})
	}
	close(s.grew)
	s.grew = make(chan struct{})
}

// recreate replaces the stream by a new one holding n messages.
func (s *stream) recreate(n int) {
	s.mu.Lock()
	s.created = s.created.Add(time.Hour)
	s.msgs = nil
	s.mu.Unlock()
	s.append(n)
}

func (s *stream) Stream(context.Context) (time.Time, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.created, s.first + uint64(len(s.msgs)) - 1, nil
}

func (s *stream) Consume(ctx context.Context, start uint64, _ time.Duration, fn func(*events.Message) error, _ func()) error {
	s.mu.Lock()
	s.starts = append(s.starts, start)
	s.mu.Unlock()
	next := start
	for {
		s.mu.Lock()
		var m *events.Message
		if i := int(next - s.first); !s.hang && i < len(s.msgs) {
			m = s.msgs[i]
		}
		fail := false
		if m != nil && s.failIn > 0 {
			s.failIn--
			fail = s.failIn == 0
		}
		grew := s.grew
		s.mu.Unlock()
		if fail {
			return errors.New("consumer lost")
		}
		if m == nil {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-grew:
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		if err := fn(m); err != nil {
			return err
		}
		next++
	}
}

// reader records what a tail feeds it.
type reader struct {
	mu       sync.Mutex
	sessions []tail.Session
	seqs     []uint64
	hold     uint64 // what Start returns on a first or resync session
	startErr error
}

func (r *reader) Start(_ context.Context, s tail.Session) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sessions = append(r.sessions, s)
	if r.startErr != nil {
		return 0, r.startErr
	}
	if len(r.sessions) == 1 {
		return r.hold, nil
	}
	if s.Resync {
		r.seqs = nil
		return 0, nil
	}
	return s.Applied, nil
}

func (r *reader) Apply(m *events.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seqs = append(r.seqs, m.Seq)
	return nil
}

func (r *reader) snapshot() ([]tail.Session, []uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.sessions), slices.Clone(r.seqs)
}

func run(t *testing.T, s *stream, r *reader) *tail.Tail {
	t.Helper()
	tl := tail.New(tail.Config{Stream: s, Reader: r, CheckInterval: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tl.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return tl
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func seqs(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func TestFollowsFromWhatTheReaderHolds(t *testing.T) {
	s := newStream()
	s.append(10)
	r := &reader{hold: 4}
	tl := run(t, s, r)
	eventually(t, "the head", func() bool { return tl.Applied() == 10 })
	s.append(5)
	eventually(t, "live messages", func() bool { return tl.Applied() == 15 && tl.Lag() == 0 })
	sessions, got := r.snapshot()
	if want := seqs(5, 15); !slices.Equal(got, want) {
		t.Fatalf("applied %v, want %v", got, want)
	}
	if len(sessions) != 1 || sessions[0].Head != 10 || sessions[0].Resync || sessions[0].Applied != 0 {
		t.Fatalf("sessions %+v", sessions)
	}
	if !tl.Reachable() || tl.Head() != 15 {
		t.Fatalf("reachable %v head %d", tl.Reachable(), tl.Head())
	}
}

func TestResumesAfterTheConsumerFailsWithoutGapOrRepeat(t *testing.T) {
	s := newStream()
	s.append(20)
	s.failIn = 7
	r := &reader{}
	tl := run(t, s, r)
	eventually(t, "the head", func() bool { return tl.Applied() == 20 })
	sessions, got := r.snapshot()
	if want := seqs(1, 20); !slices.Equal(got, want) {
		t.Fatalf("applied %v, want %v", got, want)
	}
	if len(sessions) != 2 || sessions[1].Resync || sessions[1].Applied != 6 {
		t.Fatalf("sessions %+v", sessions)
	}
}

func TestARecreatedStreamStartsASessionMarkedResync(t *testing.T) {
	s := newStream()
	s.append(8)
	r := &reader{}
	tl := run(t, s, r)
	eventually(t, "the head", func() bool { return tl.Applied() == 8 })
	s.recreate(3)
	eventually(t, "the new stream", func() bool {
		_, got := r.snapshot()
		return slices.Equal(got, seqs(1, 3)) && tl.Applied() == 3
	})
	sessions, _ := r.snapshot()
	if last := sessions[len(sessions)-1]; !last.Resync || last.Head != 3 || last.Applied != 8 {
		t.Fatalf("sessions %+v", sessions)
	}
}

func TestARewoundStreamStartsASessionMarkedResync(t *testing.T) {
	s := newStream()
	s.append(8)
	r := &reader{}
	tl := run(t, s, r)
	eventually(t, "the head", func() bool { return tl.Applied() == 8 })
	s.mu.Lock()
	s.msgs = s.msgs[:5] // restored from an older copy, same created time
	s.mu.Unlock()
	eventually(t, "a resync", func() bool {
		sessions, _ := r.snapshot()
		return len(sessions) > 1 && sessions[len(sessions)-1].Resync
	})
	eventually(t, "the stream again", func() bool {
		_, got := r.snapshot()
		return slices.Equal(got, seqs(1, 5))
	})
}

func TestAStalledConsumerIsRestarted(t *testing.T) {
	s := newStream()
	s.append(3)
	r := &reader{}
	tl := run(t, s, r)
	eventually(t, "the head", func() bool { return tl.Applied() == 3 })
	s.mu.Lock()
	s.hang = true
	s.mu.Unlock()
	s.append(2)
	eventually(t, "a restarted consumer", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.starts) >= 2
	})
	s.mu.Lock()
	s.hang = false
	starts := slices.Clone(s.starts)
	s.mu.Unlock()
	if starts[len(starts)-1] != 4 {
		t.Fatalf("consumers started at %v: the restart must resume after 3", starts)
	}
	eventually(t, "the head", func() bool { return tl.Applied() == 5 })
}

func TestStopEndsRunAndOtherErrorsAreRetried(t *testing.T) {
	s := newStream()
	s.append(1)
	r := &reader{startErr: errors.New("database down")}
	tl := tail.New(tail.Config{Stream: s, Reader: r, CheckInterval: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- tl.Run(ctx) }()
	eventually(t, "retries", func() bool {
		sessions, _ := r.snapshot()
		return len(sessions) >= 3
	})
	r.mu.Lock()
	r.startErr = tail.Stop(fmt.Errorf("schema too new"))
	r.mu.Unlock()
	select {
	case err := <-done:
		if !errors.Is(err, tail.ErrStop) || err.Error() != "stop following the stream: schema too new" {
			t.Fatalf("Run returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop")
	}
}
