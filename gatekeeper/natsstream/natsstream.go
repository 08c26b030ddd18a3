// Package natsstream opens the license stream on a NATS connection, for a
// follow.Follower: the public door to the module's JetStream adapter.
//
// The connection needs the reader role's permissions (the ledger's
// reader.nk on the embedded default; see docs/design.md for the subjects).
// A follower notices a dead connection within its staleness bound only if
// the connection pings often enough: connect with ConnOptions.
package natsstream

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/licenseledger/ledger/gatekeeper/follow"
	"github.com/licenseledger/ledger/internal/natsbus"
)

// DefaultStream is the stream's default name (LICENSE_STREAM).
const DefaultStream = natsbus.DefaultStream

// Open binds to stream name ("" = DefaultStream) on nc, read only. The
// stream must exist and carry the configuration the ledger gives it. Open
// returns once the stream answers reads, or when ctx ends.
func Open(ctx context.Context, nc *nats.Conn, name string) (follow.Stream, error) {
	if name == "" {
		name = DefaultStream
	}
	bus, _, err := natsbus.Open(ctx, nc, name, 1, false)
	if err != nil {
		return nil, err
	}
	return bus, nil
}

// ConnOptions are the nats.Connect options a follower with maxStaleness
// needs: a ping every follow.PingInterval(maxStaleness), and two
// unanswered pings closing the connection, so that a black-holed
// connection reconnects within the staleness bound.
func ConnOptions(maxStaleness time.Duration) []nats.Option {
	return []nats.Option{nats.PingInterval(follow.PingInterval(maxStaleness)), nats.MaxPingsOutstanding(2)}
}
