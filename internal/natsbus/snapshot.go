package natsbus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamExists reports whether stream exists, and its info when it does.
func (c *Conn) StreamExists(ctx context.Context, stream string) (bool, StreamInfo, error) {
	js, err := jetstream.New(c.nc)
	if err != nil {
		return false, StreamInfo{}, err
	}
	s, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return false, StreamInfo{}, nil
	}
	if err != nil {
		return false, StreamInfo{}, fmt.Errorf("stream %s: %w", stream, wrapUnavailable(err))
	}
	return true, infoOf(s.CachedInfo()), nil
}

// DeleteEmptyStream deletes stream if it holds no message (a stream a
// ledger created and never wrote to, in the way of a restore). It needs
// stream delete permission, which only the offline server grants.
func (c *Conn) DeleteEmptyStream(ctx context.Context, stream string) error {
	js, err := jetstream.New(c.nc)
	if err != nil {
		return err
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, wrapUnavailable(err))
	}
	if n := s.CachedInfo().State.Msgs; n > 0 {
		return fmt.Errorf("stream %s holds %d messages: not deleting it", stream, n)
	}
	if err := js.DeleteStream(ctx, stream); err != nil {
		return fmt.Errorf("delete empty stream %s: %w", stream, wrapUnavailable(err))
	}
	return nil
}
