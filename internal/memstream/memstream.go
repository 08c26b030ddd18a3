// Package memstream is the license event stream in memory: the surface of
// natsbus.Bus that the command layer (ledger.Store), the followers and the
// maintenance readers use, with JetStream's semantics as the conformance
// suite of package streamtest pins them down. Appends on a subject are
// checked against the subject's last sequence, an event id is stored once
// within the duplicate window, the stream holds licenses.org.<org> and
// licenses.audit.<org> only, a message is at most the server's payload,
// and every read decodes with events.Decode.
//
// It keeps nothing on disk and serves one process: tests that need a store
// but not a server use it.
package memstream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/licenseledger/ledger/internal/events"
)

// Config configures a Stream. The zero value is the contract's stream.
type Config struct {
	// Name is the stream's name, as Info reports it. Defaults to
	// "LICENSES".
	Name string
	// MaxPayload bounds a message: its bytes and the headers a JetStream
	// publish carries. Defaults to 1 MiB, the server's max_payload.
	MaxPayload int
	// DuplicateWindow is how long an event id is remembered. Defaults to
	// 2 minutes, the contract's.
	DuplicateWindow time.Duration
	// Now is the clock of the created time and the duplicate window.
	// Defaults to time.Now.
	Now func() time.Time
}

// ErrMaxPayload is an append of a message larger than Config.MaxPayload.
var ErrMaxPayload = errors.New("memstream: maximum payload exceeded")

// Stream is an in-memory stream. It is safe for concurrent use.
type Stream struct {
	cfg     Config
	created time.Time

	mu        sync.Mutex
	msgs      []stored            // msgs[i] has sequence i+1
	bySubject map[string][]uint64 // each subject's sequences, ascending
	ids       map[string]uint64   // event id → sequence, within the window
	idOrder   []idSeen            // ids by time stored, oldest first
	appended  chan struct{}       // closed by the next append
}

type stored struct {
	subject string
	data    []byte
}

type idSeen struct {
	id string
	at time.Time
}

// New returns an empty stream created now.
func New(cfg Config) *Stream {
	cfg.Name = cmp.Or(cfg.Name, "LICENSES")
	cfg.MaxPayload = cmp.Or(cfg.MaxPayload, 1<<20)
	cfg.DuplicateWindow = cmp.Or(cfg.DuplicateWindow, 2*time.Minute)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Stream{cfg: cfg, created: cfg.Now().UTC(), bySubject: map[string][]uint64{},
		ids: map[string]uint64{}, appended: make(chan struct{})}
}

// Name returns the stream name.
func (s *Stream) Name() string { return s.cfg.Name }

// unavailable is what a read under an ended context returns, as natsbus
// does.
func unavailable(err error) error { return fmt.Errorf("%w: %v", events.ErrUnavailable, err) }

// Info returns the stream's current state.
func (s *Stream) Info(ctx context.Context) (events.StreamInfo, error) {
	if err := ctx.Err(); err != nil {
		return events.StreamInfo{}, unavailable(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	info := events.StreamInfo{Name: s.cfg.Name, Created: s.created, LastSeq: uint64(len(s.msgs)), Replicas: 1}
	if len(s.msgs) > 0 {
		info.FirstSeq = 1
	}
	return info, nil
}

// Stream returns the stream's created time and head.
func (s *Stream) Stream(ctx context.Context) (time.Time, uint64, error) {
	info, err := s.Info(ctx)
	return info.Created, info.LastSeq, err
}

// Head returns the sequence of the last message on subject, 0 if none.
func (s *Stream) Head(ctx context.Context, subject string) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, unavailable(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.headLocked(subject), nil
}

func (s *Stream) headLocked(subject string) uint64 {
	if seqs := s.bySubject[subject]; len(seqs) > 0 {
		return seqs[len(seqs)-1]
	}
	return 0
}

// Next returns the first message on subject at or after seq, or nil.
func (s *Stream) Next(ctx context.Context, subject string, seq uint64) (*events.Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, unavailable(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	seqs := s.bySubject[subject]
	i, _ := slices.BinarySearch(seqs, seq)
	if i == len(seqs) {
		return nil, nil
	}
	return s.messageLocked(seqs[i]), nil
}

// Get returns the message at seq, or nil if there is none.
func (s *Stream) Get(ctx context.Context, seq uint64) (*events.Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, unavailable(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq == 0 || seq > uint64(len(s.msgs)) {
		return nil, nil
	}
	return s.messageLocked(seq), nil
}

// messageLocked decodes the message at seq, on bytes of its own.
func (s *Stream) messageLocked(seq uint64) *events.Message {
	m := s.msgs[seq-1]
	return events.Decode(m.subject, seq, slices.Clone(m.data))
}

// Newest returns the stream's last message, or nil when it is empty.
func (s *Stream) Newest(ctx context.Context) (*events.Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, unavailable(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.msgs) == 0 {
		return nil, nil
	}
	return s.messageLocked(uint64(len(s.msgs))), nil
}

// ReadSubject calls fn for each message on subject with a sequence in
// (after, upTo], in order, and stops at fn's first error.
func (s *Stream) ReadSubject(ctx context.Context, subject string, after, upTo uint64, fn func(*events.Message) error) error {
	return events.ReadRange(ctx, s.Next, subject, after, upTo, fn)
}

// Append stores env on subject when the subject's last sequence is
// expected (0: no message yet), and returns the event's sequence.
//
// Errors, as natsbus.Bus.Append: events.ErrConflict when the subject moved
// on, or when another event was stored under env.ID within the duplicate
// window (the same event again returns the sequence it was stored at);
// events.ErrUnavailable for a subject outside the stream (at once: a
// JetStream publish there goes unanswered until ctx ends); ErrMaxPayload
// for a message the server would refuse; ctx's error when it has ended.
func (s *Stream) Append(ctx context.Context, subject string, env *events.Envelope, expected uint64) (uint64, error) {
	data, err := env.Encode()
	if err != nil {
		return 0, err
	}
	if !inStream(subject) {
		return 0, fmt.Errorf("%w: append to %s: no stream holds the subject", events.ErrUnavailable, subject)
	}
	if len(data)+s.headerLen(env.ID, expected) > s.cfg.MaxPayload {
		return 0, fmt.Errorf("append to %s: %w", subject, ErrMaxPayload)
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("append to %s: %w", subject, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// A single-replica JetStream stream checks the expected sequence
	// before the duplicate: the same event again under the expectation it
	// was stored with is a conflict there (a replicated stream answers
	// with the stored sequence; natsbus handles both).
	if s.headLocked(subject) != expected {
		return 0, events.ErrConflict
	}
	now := s.cfg.Now()
	s.forgetIDsLocked(now)
	if seq, ok := s.ids[env.ID]; ok {
		if string(s.msgs[seq-1].data) != string(data) {
			return 0, events.ErrConflict
		}
		return seq, nil
	}
	s.msgs = append(s.msgs, stored{subject: subject, data: data})
	seq := uint64(len(s.msgs))
	s.bySubject[subject] = append(s.bySubject[subject], seq)
	s.ids[env.ID] = seq
	s.idOrder = append(s.idOrder, idSeen{id: env.ID, at: now})
	close(s.appended)
	s.appended = make(chan struct{})
	return seq, nil
}

// forgetIDsLocked drops the ids stored longer ago than the window.
func (s *Stream) forgetIDsLocked(now time.Time) {
	n := 0
	for n < len(s.idOrder) && now.Sub(s.idOrder[n].at) > s.cfg.DuplicateWindow {
		delete(s.ids, s.idOrder[n].id)
		n++
	}
	s.idOrder = s.idOrder[n:]
}

// inStream reports whether subject is licenses.org.<token> or
// licenses.audit.<token>, the stream's subjects.
func inStream(subject string) bool {
	for _, prefix := range []string{events.OrgPrefix, events.AuditPrefix} {
		if token, ok := strings.CutPrefix(subject, prefix); ok {
			return token != "" && !strings.ContainsAny(token, ".*> \t\r\n")
		}
	}
	return false
}

// headerLen is the size of the headers natsbus publishes an event with:
// its id, the expected subject sequence and the stream name.
func (s *Stream) headerLen(id string, expected uint64) int {
	return len("NATS/1.0\r\n") +
		len("Nats-Msg-Id: \r\n") + len(id) +
		len("Nats-Expected-Last-Subject-Sequence: \r\n") + len(strconv.FormatUint(expected, 10)) +
		len("Nats-Expected-Stream: \r\n") + len(s.cfg.Name) +
		len("\r\n")
}

// consumeBatch bounds the messages Consume copies out at once.
const consumeBatch = 256

// Consume delivers every message of the stream from start on (0: the
// first), in order, to fn until ctx ends (then it returns ctx's error) or
// fn returns an error (returned as is). At the head it waits for the next
// append. onIdle, if set, runs after each period of three heartbeats (0:
// 1 s) that brought no message.
func (s *Stream) Consume(ctx context.Context, start uint64, heartbeat time.Duration, fn func(*events.Message) error, onIdle func()) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("consumer: %w", unavailable(err))
	}
	next := max(start, 1)
	idle := 3 * cmp.Or(max(heartbeat, 0), time.Second)
	for {
		batch, appended := s.from(next)
		for _, m := range batch {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(m); err != nil {
				return err
			}
			next = m.Seq + 1
		}
		if len(batch) > 0 {
			continue
		}
		timer := time.NewTimer(idle)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-appended:
			timer.Stop()
		case <-timer.C:
			if onIdle != nil {
				onIdle()
			}
		}
	}
}

// from returns up to consumeBatch messages from seq on, and a channel that
// the next append closes.
func (s *Stream) from(seq uint64) ([]*events.Message, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*events.Message
	for ; seq <= uint64(len(s.msgs)) && len(out) < consumeBatch; seq++ {
		out = append(out, s.messageLocked(seq))
	}
	return out, s.appended
}

// ReadRange calls fn, in order, for every message with a sequence in
// [from, to], with its subject and bytes (its own), and stops at fn's
// first error, which it returns.
func (s *Stream) ReadRange(ctx context.Context, from, to uint64, fn func(subject string, seq uint64, data []byte) error) error {
	for seq := max(from, 1); seq <= to; {
		if err := ctx.Err(); err != nil {
			return unavailable(err)
		}
		batch, _ := s.from(seq)
		if len(batch) == 0 {
			return nil
		}
		for _, m := range batch {
			if m.Seq > to {
				return nil
			}
			if err := fn(m.Subject, m.Seq, m.Raw); err != nil {
				return err
			}
			seq = m.Seq + 1
		}
	}
	return nil
}
