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
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/licenseledger/ledger/gatekeeper/follow"
	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/natsbus"
)

// NoServers reports whether err (from Connect) says that no NATS server
// answered at the URL.
func NoServers(err error) bool { return errors.Is(err, nats.ErrNoServers) }

// DefaultStream is the stream's default name (LICENSE_STREAM).
const DefaultStream = natsbus.DefaultStream

// Dial says how to reach NATS as the reader. Exactly one of NKeyFile,
// CredsFile or User is normally set (the embedded default: NKeyFile
// $DATA_DIR/nats/reader.nk).
type Dial struct {
	URL       string // comma-separated for a cluster
	NKeyFile  string // an nkey user seed file
	CredsFile string // a JWT credentials file
	User      string
	Password  string
	TLSCA     string // CA bundle verifying the servers
	TLSCert   string // client certificate
	TLSKey    string
	Name      string // the client's name in server monitoring
	// MaxStaleness is the follower's (its ping interval follows:
	// follow.PingInterval).
	MaxStaleness time.Duration
	Logger       *slog.Logger
}

// Connect opens a connection for a follower: with the reader role's
// inbox, pings within the staleness bound, reconnecting forever
// (disconnects and reconnects logged). It returns once the server has
// accepted a subscription to the reader's inbox, so credentials of another
// role are an error here rather than a silent stall later.
func Connect(d Dial) (*nats.Conn, error) {
	return natsbus.Connect(natsbus.ConnConfig{URL: d.URL, NKeyFile: d.NKeyFile, CredsFile: d.CredsFile,
		User: d.User, Password: d.Password, TLSCA: d.TLSCA, TLSCert: d.TLSCert, TLSKey: d.TLSKey, Name: d.Name,
		Role: natsauth.RoleReader, PingInterval: follow.PingInterval(d.MaxStaleness), Logger: d.Logger})
}

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
// needs besides the reader's credentials: replies on the reader role's
// inbox (the only one it may subscribe to), a ping every
// follow.PingInterval(maxStaleness), and two unanswered pings closing the
// connection, so that a black-holed connection reconnects within the
// staleness bound.
func ConnOptions(maxStaleness time.Duration) []nats.Option {
	return []nats.Option{nats.CustomInboxPrefix(natsauth.InboxPrefix(natsauth.RoleReader)),
		nats.PingInterval(follow.PingInterval(maxStaleness)), nats.MaxPingsOutstanding(2), nats.MaxReconnects(-1)}
}
