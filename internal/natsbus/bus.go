package natsbus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/internal/events"
)

// Bus reads and appends license events on one stream. It is safe for
// concurrent use.
type Bus struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	name   string
	log    *slog.Logger
	// PublishTimeout bounds one publish attempt. Defaults to 2 s.
	PublishTimeout time.Duration
}

// OpenOption configures Open.
type OpenOption func(*Bus)

// WithLogger logs what the bus waits for and retries. Defaults to no
// logging.
func WithLogger(log *slog.Logger) OpenOption { return func(b *Bus) { b.log = log } }

// Open binds to stream name on nc. With create (the stream administrator's
// credentials) it provisions the stream (EnsureStream); without (the
// ledger, readers) the stream must exist and pass CheckConfig. Either way it returns once the stream answers reads:
// a stream that was just created, or whose leader just changed, may have
// no direct-get responder for a moment.
func Open(ctx context.Context, nc *nats.Conn, name string, replicas int, create bool, opts ...OpenOption) (*Bus, StreamInfo, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, StreamInfo{}, err
	}
	b := &Bus{nc: nc, js: js, name: name, log: slog.New(slog.DiscardHandler), PublishTimeout: 2 * time.Second}
	for _, o := range opts {
		o(b)
	}
	if create {
		s, info, err := b.ensure(ctx, replicas)
		if err != nil {
			return nil, StreamInfo{}, err
		}
		b.stream = s
		if _, err := b.Head(ctx, readProbeSubject); err != nil {
			return nil, StreamInfo{}, fmt.Errorf("stream %s: %w", name, err)
		}
		return b, info, nil
	}
	s, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, StreamInfo{}, fmt.Errorf("stream %s: %w (%s)", name, err, createHint)
	}
	if err != nil {
		return nil, StreamInfo{}, fmt.Errorf("stream %s: %w", name, wrapUnavailable(err))
	}
	b.stream = s
	info, err := b.Info(ctx)
	if err != nil {
		return nil, StreamInfo{}, err
	}
	si := s.CachedInfo()
	if err := CheckConfig(si.Config); err != nil {
		return nil, StreamInfo{}, err
	}
	if _, err := b.Head(ctx, readProbeSubject); err != nil {
		return nil, StreamInfo{}, fmt.Errorf("stream %s: %w", name, err)
	}
	return b, info, nil
}

// createAttempt bounds one attempt to create or find the stream: a
// cluster busy with several processes creating the same stream at once may
// leave a request unanswered, and the next attempt finds the stream.
const createAttempt = 5 * time.Second

// ensure runs EnsureStream until it succeeds, fails for good (a stream
// that is not safe to use, a permission), or ctx ends. Processes
// provisioning a new cluster's stream at once race to create it: the
// losers may find it not yet there ("already in use", then "not found") or
// get no answer; each retry is logged.
func (b *Bus) ensure(ctx context.Context, replicas int) (jetstream.Stream, StreamInfo, error) {
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, createAttempt)
		s, info, err := EnsureStream(actx, b.js, b.name, replicas)
		cancel()
		if err == nil || ctx.Err() != nil || !(errors.Is(err, events.ErrUnavailable) || errors.Is(err, jetstream.ErrStreamNotFound)) {
			return s, info, err
		}
		wait := min(50*time.Millisecond<<min(attempt, 5), time.Second) + rand.N(50*time.Millisecond)
		b.log.Warn("stream not ready yet; retrying", "stream", b.name, "attempt", attempt+1, "retry_in", wait, "err", err)
		select {
		case <-ctx.Done():
			return s, info, err
		case <-time.After(wait):
		}
	}
}

// readProbeSubject is read once by Open: the install's own audit subject,
// which the ledger reads first anyway.
var readProbeSubject = events.AuditSubject("_instance")

// noResponderPatience bounds how long a read retries while the stream has
// no responder for it. A new replicated stream's direct-get subscriptions
// reach the other servers' routes shortly after the create is
// acknowledged; a client on such a server sees "no responders" meanwhile.
const noResponderPatience = 5 * time.Second

// getMsg reads one message (get), retrying with backoff while nobody
// answers the request, for at most noResponderPatience; each retry is
// logged.
func (b *Bus) getMsg(ctx context.Context, what string, get func(context.Context) (*jetstream.RawStreamMsg, error)) (*jetstream.RawStreamMsg, error) {
	deadline := time.Now().Add(noResponderPatience)
	for attempt := 0; ; attempt++ {
		m, err := get(ctx)
		if !errors.Is(err, nats.ErrNoResponders) || !time.Now().Before(deadline) {
			return m, err
		}
		wait := min(25*time.Millisecond<<min(attempt, 6), time.Second)
		b.log.Warn("no responder for a stream read yet (a new stream or a leader change); retrying",
			"stream", b.name, "read", what, "attempt", attempt+1, "retry_in", wait)
		select {
		case <-ctx.Done():
			return m, err
		case <-time.After(wait):
		}
	}
}

// Conn returns the underlying connection.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// PingInterval is the connection's ping interval: how soon a dead
// connection is noticed.
func (b *Bus) PingInterval() time.Duration { return b.nc.Opts.PingInterval }

// Name returns the stream name.
func (b *Bus) Name() string { return b.name }

// Info returns the stream's current state.
func (b *Bus) Info(ctx context.Context) (StreamInfo, error) {
	si, err := b.stream.Info(ctx)
	if err != nil {
		return StreamInfo{}, wrapUnavailable(err)
	}
	return infoOf(si), nil
}

// Head returns the sequence of the last message on subject, 0 if none.
func (b *Bus) Head(ctx context.Context, subject string) (uint64, error) {
	m, err := b.getMsg(ctx, "last of "+subject, func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
		return b.stream.GetLastMsgForSubject(ctx, subject)
	})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, wrapUnavailable(err)
	}
	return m.Sequence, nil
}

// Next returns the first message on subject at or after seq, or nil.
func (b *Bus) Next(ctx context.Context, subject string, seq uint64) (*events.Message, error) {
	m, err := b.getMsg(ctx, "next on "+subject, func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
		return b.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
	})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, wrapUnavailable(err)
	}
	return events.Decode(m.Subject, m.Sequence, m.Data), nil
}

// Get returns the message at seq, or nil if there is none.
func (b *Bus) Get(ctx context.Context, seq uint64) (*events.Message, error) {
	m, err := b.getMsg(ctx, "by sequence", func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
		return b.stream.GetMsg(ctx, seq)
	})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, wrapUnavailable(err)
	}
	return events.Decode(m.Subject, m.Sequence, m.Data), nil
}

// Newest returns the stream's last message, or nil when it is empty.
func (b *Bus) Newest(ctx context.Context) (*events.Message, error) {
	info, err := b.Info(ctx)
	if err != nil || info.LastSeq == 0 {
		return nil, err
	}
	return b.Get(ctx, info.LastSeq)
}

// ReadSubject calls fn for each message on subject with a sequence in
// (after, upTo], in order.
func (b *Bus) ReadSubject(ctx context.Context, subject string, after, upTo uint64, fn func(*events.Message) error) error {
	return events.ReadRange(ctx, b.Next, subject, after, upTo, fn)
}

// Append publishes env on subject, expecting the subject's last sequence to
// be expected (0: no message yet), with Nats-Msg-Id = env.ID. It returns
// the stream sequence of the event.
//
// Errors: events.ErrConflict when the subject moved on (JetStream 10071 or
// 10164); events.ErrUnavailable when no attempt's outcome could be learned
// before ctx ended. After an attempt with an unknown outcome (timeout,
// disconnect) a retry that meets a wrong-sequence reply looks for its own
// event id on the subject: single-replica streams answer such retries with
// 10071 rather than a duplicate ack.
func (b *Bus) Append(ctx context.Context, subject string, env *events.Envelope, expected uint64) (uint64, error) {
	data, err := env.Encode()
	if err != nil {
		return 0, err
	}
	uncertain := false
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, b.PublishTimeout)
		ack, err := b.js.Publish(actx, subject, data, jetstream.WithMsgID(env.ID),
			jetstream.WithExpectLastSequencePerSubject(expected), jetstream.WithExpectStream(b.name))
		cancel()
		switch {
		case err == nil && ack.Duplicate:
			return b.checkDuplicate(ctx, ack.Sequence, data)
		case err == nil:
			return ack.Sequence, nil
		case isWrongSequence(err):
			if uncertain {
				if seq, ok := b.findOwn(ctx, subject, expected, env.ID); ok {
					return seq, nil
				}
			}
			return 0, events.ErrConflict
		case !isRetryable(err):
			return 0, fmt.Errorf("append to %s: %w", subject, err)
		case b.publishDenied(subject):
			// The server refused the publish (the reply never comes): the
			// credentials are a reader's. Retrying cannot help.
			return 0, fmt.Errorf("append to %s: %w: these NATS credentials may not publish there (the ledger's are needed)", subject, nats.ErrPermissionViolation)
		}
		uncertain = true
		backoff := time.Duration(50<<min(attempt, 5))*time.Millisecond + rand.N(50*time.Millisecond)
		select {
		case <-ctx.Done():
			if seq, ok := b.findOwn(context.Background(), subject, expected, env.ID); ok {
				return seq, nil
			}
			return 0, fmt.Errorf("%w: append to %s: %v", events.ErrUnavailable, subject, err)
		case <-time.After(backoff):
		}
	}
}

// checkDuplicate handles a duplicate ack: the id was already stored at seq.
// If those are our bytes (a retry of our own publish) the append
// succeeded; if another writer stored different bytes under the same id (a
// deterministic scheduler id), ours was not stored: a conflict.
func (b *Bus) checkDuplicate(ctx context.Context, seq uint64, data []byte) (uint64, error) {
	m, err := b.stream.GetMsg(ctx, seq)
	if err != nil {
		return 0, wrapUnavailable(err)
	}
	if !bytes.Equal(m.Data, data) {
		return 0, events.ErrConflict
	}
	return seq, nil
}

// findOwn looks for event id as the message right after expected on
// subject: the expected-sequence check allows no other position.
func (b *Bus) findOwn(ctx context.Context, subject string, expected uint64, id string) (uint64, bool) {
	ctx, cancel := context.WithTimeout(ctx, b.PublishTimeout)
	defer cancel()
	m, err := b.stream.GetMsg(ctx, expected+1, jetstream.WithGetMsgSubject(subject))
	if err != nil || m.Header.Get(jetstream.MsgIDHeader) != id {
		return 0, false
	}
	return m.Sequence, true
}

func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// publishDenied reports whether the connection's last error is the
// server refusing a publish to subject.
func (b *Bus) publishDenied(subject string) bool { return denied(b.nc, subject) }

// isRetryable reports errors whose publish may or may not have landed, or
// that a moment's wait can cure (leader election, reconnect).
func isRetryable(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Code == 503 || apiErr.ErrorCode == 10163
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, nats.ErrDisconnected) || errors.Is(err, nats.ErrConnectionDraining)
}

// Stream returns the stream's created time and head (for readers that
// remember the stream they follow).
func (b *Bus) Stream(ctx context.Context) (time.Time, uint64, error) {
	info, err := b.Info(ctx)
	return info.Created, info.LastSeq, err
}
