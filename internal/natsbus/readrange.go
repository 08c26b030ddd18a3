package natsbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/internal/events"
)

// rangeBatch is how many messages one direct get of ReadRange asks for:
// about 1 MiB of envelopes, well under a client's pending limits.
const rangeBatch = 1024

// rangeWait bounds the wait for each message of a batch.
const rangeWait = 5 * time.Second

// ReadRange calls fn, in order, for every message of the stream with a
// sequence in [from, to], with its subject and bytes (its own: fn may keep
// them); a sequence the stream does not hold is skipped. It stops at fn's
// first error, which it returns. It reads with JetStream's batched direct
// get (one request per 1,024 messages, no consumer); a server too old to
// batch answers one message per request, which ReadRange follows.
//
// Errors: fn's; ctx's; events.ErrUnavailable when the stream does not
// answer.
func (b *Bus) ReadRange(ctx context.Context, from, to uint64, fn func(subject string, seq uint64, data []byte) error) error {
	deadline := time.Now().Add(noResponderPatience)
	for from = max(from, 1); from <= to; {
		next, err := b.readBatch(ctx, from, to, fn)
		switch {
		case errors.Is(err, nats.ErrNoResponders) && time.Now().Before(deadline):
			// A new stream or a leader change: wait for a responder.
			select {
			case <-ctx.Done():
				return fmt.Errorf("%w: %v", events.ErrUnavailable, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
			from = max(from, next)
			continue
		case errors.Is(err, nats.ErrNoResponders):
			return fmt.Errorf("%w: stream %s: %v", events.ErrUnavailable, b.name, err)
		case err != nil || next <= from:
			return err
		}
		from = next
	}
	return nil
}

// readBatch asks for up to rangeBatch messages from seq from on and
// delivers those up to to. It returns the sequence to ask for next: from
// (or less) when the stream holds nothing more.
func (b *Bus) readBatch(ctx context.Context, from, to uint64, fn func(string, uint64, []byte) error) (uint64, error) {
	sub, err := b.nc.SubscribeSync(b.nc.NewInbox())
	if err != nil {
		return from, wrapUnavailable(err)
	}
	defer sub.Unsubscribe()
	req, _ := json.Marshal(struct {
		Seq   uint64 `json:"seq"`
		Batch int    `json:"batch"`
	}{from, int(min(to-from+1, rangeBatch))})
	if err := b.nc.PublishRequest("$JS.API.DIRECT.GET."+b.name, sub.Subject, req); err != nil {
		return from, wrapUnavailable(err)
	}
	next := from
	for {
		wctx, cancel := context.WithTimeout(ctx, rangeWait)
		msg, err := sub.NextMsgWithContext(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return next, ctx.Err()
		case err != nil:
			return next, fmt.Errorf("%w: read from %d: %v", events.ErrUnavailable, next, err)
		}
		more, err := deliver(msg, to, &next, fn)
		if err != nil || !more {
			return next, err
		}
	}
}

// deliver handles one answer of a batch: a message, passed to fn when at
// most to, or the batch's end. It advances *next past the message, and
// reports whether more answers follow.
func deliver(msg *nats.Msg, to uint64, next *uint64, fn func(string, uint64, []byte) error) (bool, error) {
	switch status := msg.Header.Get("Status"); status {
	case "":
	case "204", "404": // the batch's end; nothing (more) from here on
		return false, nil
	case "503":
		return false, nats.ErrNoResponders
	default:
		return false, fmt.Errorf("%w: read from %d: %s %s", events.ErrUnavailable, *next, status, msg.Header.Get("Description"))
	}
	seq, err := strconv.ParseUint(msg.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return false, fmt.Errorf("read from %d: a direct get answer without its sequence", *next)
	}
	if seq < *next {
		return true, nil // never twice
	}
	*next = seq + 1
	if seq <= to {
		if err := fn(msg.Header.Get(jetstream.SubjectHeader), seq, msg.Data); err != nil {
			return false, err
		}
	}
	// A server that does not batch answers one message, without the
	// batch's headers.
	return msg.Header.Get("Nats-Num-Pending") != "", nil
}
