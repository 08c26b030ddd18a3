package events

import (
	"context"
	"time"
)

// StreamInfo is what readers remember of the stream that holds the events,
// whichever store keeps it (natsbus, memstream).
type StreamInfo struct {
	Name     string
	Created  time.Time // a recreated stream has another: readers resync
	LastSeq  uint64
	FirstSeq uint64
	Replicas int
}

// ReadRange calls fn for each message on subject with a sequence in
// (after, upTo], in order, reading them one at a time with next (a
// store's Next: the first message on subject at or after seq, or nil). It
// stops at the first error of next or fn and returns it.
func ReadRange(ctx context.Context, next func(ctx context.Context, subject string, seq uint64) (*Message, error),
	subject string, after, upTo uint64, fn func(*Message) error) error {
	for seq := after + 1; seq <= upTo; {
		m, err := next(ctx, subject, seq)
		if err != nil {
			return err
		}
		if m == nil || m.Seq > upTo {
			return nil
		}
		if err := fn(m); err != nil {
			return err
		}
		seq = m.Seq + 1
	}
	return nil
}
