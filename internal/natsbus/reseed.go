package natsbus

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// SeedMessage is one message to put back on a recreated stream at its
// original sequence.
type SeedMessage struct {
	Seq     uint64
	Subject string
	Data    []byte
	// ID becomes Nats-Msg-Id; "" for a message that carried no event id
	// (an invalid envelope).
	ID string
}

// ErrStreamExists is returned by CreateSeedStream for an existing stream.
var ErrStreamExists = errors.New("the stream exists")

// CreateSeedStream creates stream name with the contract's configuration
// (StreamConfig) starting at sequence first, for a reseed. An existing
// stream is left as it is and reported with ErrStreamExists, after the
// configuration check EnsureStream makes, so that an interrupted reseed can
// continue on it.
func (c *Conn) CreateSeedStream(ctx context.Context, name string, replicas int, first uint64) (StreamInfo, error) {
	js, err := jetstream.New(c.nc)
	if err != nil {
		return StreamInfo{}, err
	}
	s, err := js.Stream(ctx, name)
	existed := err == nil
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		cfg := StreamConfig(name, replicas)
		if first > 1 {
			cfg.FirstSeq = first
		}
		s, err = js.CreateStream(ctx, cfg)
	}
	if err != nil {
		return StreamInfo{}, fmt.Errorf("stream %s: %w", name, wrapUnavailable(err))
	}
	si, err := s.Info(ctx)
	if err != nil {
		return StreamInfo{}, fmt.Errorf("stream %s: %w", name, wrapUnavailable(err))
	}
	if err := CheckConfig(si.Config); err != nil {
		return StreamInfo{}, err
	}
	if existed {
		return infoOf(si), ErrStreamExists
	}
	return infoOf(si), nil
}

// SeedPublisher publishes messages back onto a stream at their original
// sequences, with up to Window acknowledgements outstanding. Each publish
// carries Nats-Expected-Last-Sequence = Seq − 1, so the server stores a
// message only right after its predecessor: however the acks interleave,
// the stream never holds a message out of place, and after the first
// failure every later message of the window fails too. Not safe for
// concurrent use.
type SeedPublisher struct {
	js      jetstream.JetStream
	stream  string
	window  int
	pending []pendingSeed
	// Acked is the last sequence the server acknowledged.
	Acked uint64
}

type pendingSeed struct {
	seq uint64
	ack jetstream.PubAckFuture
}

// NewSeedPublisher publishes onto stream through c with window (≥ 1)
// acknowledgements outstanding.
func (c *Conn) NewSeedPublisher(stream string, window int) (*SeedPublisher, error) {
	window = max(window, 1)
	js, err := jetstream.New(c.nc, jetstream.WithPublishAsyncMaxPending(window+1))
	if err != nil {
		return nil, err
	}
	return &SeedPublisher{js: js, stream: stream, window: window}, nil
}

// Publish sends m once fewer than Window acknowledgements are
// outstanding. It returns the first failure among the messages whose
// acknowledgement it waited for.
func (p *SeedPublisher) Publish(ctx context.Context, m SeedMessage) error {
	for len(p.pending) >= p.window {
		if err := p.waitOldest(ctx); err != nil {
			return err
		}
	}
	msg := nats.NewMsg(m.Subject)
	msg.Data = m.Data
	msg.Header.Set(jetstream.ExpectedLastSeqHeader, strconv.FormatUint(m.Seq-1, 10))
	msg.Header.Set(jetstream.ExpectedStreamHeader, p.stream)
	if m.ID != "" {
		msg.Header.Set(jetstream.MsgIDHeader, m.ID)
	}
	ack, err := p.js.PublishMsgAsync(msg)
	if err != nil {
		return fmt.Errorf("publish seq %d: %w", m.Seq, wrapUnavailable(err))
	}
	p.pending = append(p.pending, pendingSeed{seq: m.Seq, ack: ack})
	return nil
}

// Flush waits for every outstanding acknowledgement.
func (p *SeedPublisher) Flush(ctx context.Context) error {
	for len(p.pending) > 0 {
		if err := p.waitOldest(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (p *SeedPublisher) waitOldest(ctx context.Context) error {
	ps := p.pending[0]
	p.pending = p.pending[1:]
	select {
	case ack := <-ps.ack.Ok():
		if ack.Sequence != ps.seq {
			return fmt.Errorf("seq %d was stored at %d", ps.seq, ack.Sequence)
		}
		p.Acked = ps.seq
		return nil
	case err := <-ps.ack.Err():
		return fmt.Errorf("publish seq %d: %w", ps.seq, wrapUnavailable(err))
	case <-ctx.Done():
		return ctx.Err()
	}
}
