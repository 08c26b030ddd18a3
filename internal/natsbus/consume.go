package natsbus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/internal/events"
)

// pullBatch is how many messages a consumer asks for at once.
const pullBatch = 8192

// Consume delivers every message of the stream from start on, in stream
// order, to fn until ctx ends or fn returns an error. It uses an ordered
// consumer, which recreates itself after gaps and reconnects; fn never sees
// a sequence twice or out of order. heartbeat (0: 1 s) is the pull
// heartbeat; onIdle, if set, runs after each period of three heartbeats
// that brought no message.
func (b *Bus) Consume(ctx context.Context, start uint64, heartbeat time.Duration, fn func(*events.Message) error, onIdle func()) error {
	return b.ConsumeRaw(ctx, start, heartbeat, func(subject string, seq uint64, data []byte) error {
		return fn(events.Decode(subject, seq, data))
	}, onIdle)
}

// ConsumeRaw is Consume without decoding: fn gets each message's subject,
// stream sequence and bytes (its own: fn may keep them), for a reader that
// decodes on several cores.
func (b *Bus) ConsumeRaw(ctx context.Context, start uint64, heartbeat time.Duration, fn func(subject string, seq uint64, data []byte) error, onIdle func()) error {
	if start == 0 {
		start = 1
	}
	if heartbeat <= 0 {
		heartbeat = time.Second
	}
	cons, err := b.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   start,
		// The stream refuses a longer threshold; one left behind by a
		// crashed process is removed after it.
		InactiveThreshold: ConsumerInactiveThreshold,
	})
	if err != nil {
		return fmt.Errorf("consumer: %w", wrapUnavailable(err))
	}
	// Large pulls: a reader loading the whole stream (a new replica) waits
	// for one round trip per pull (8,192 measured faster than 4,096, and
	// 4,096 than nats.go's 500, at 100,000 orgs).
	it, err := cons.Messages(jetstream.PullHeartbeat(heartbeat), jetstream.PullExpiry(max(2*heartbeat, time.Second)+heartbeat),
		jetstream.PullMaxMessages(pullBatch))
	if err != nil {
		return fmt.Errorf("consumer: %w", wrapUnavailable(err))
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	next := start
	for {
		// Wait longer than two heartbeats: nats.go notices missing
		// heartbeats (and resets the ordered consumer after a lost pull)
		// only within one Next call. Without onIdle, Next waits as long as
		// it takes (no timer per message: a follower's cost per event).
		var msg jetstream.Msg
		var err error
		if onIdle != nil {
			msg, err = it.Next(jetstream.NextMaxWait(3 * heartbeat))
		} else {
			msg, err = it.Next()
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return ctx.Err()
		}
		if errors.Is(err, nats.ErrTimeout) { // nothing new within a heartbeat
			if onIdle != nil {
				onIdle()
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("consumer: %w", err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("consumer metadata: %w", err)
		}
		seq := md.Sequence.Stream
		if seq < next {
			continue // already delivered: never twice
		}
		next = seq + 1
		if err := fn(msg.Subject(), seq, msg.Data()); err != nil {
			return err
		}
	}
}
