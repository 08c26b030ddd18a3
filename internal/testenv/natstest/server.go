package natstest

import (
	"testing"

	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Server is a standalone embedded JetStream server.
type Server struct {
	// LedgerSeed, ReaderSeed and AdminSeed are the nkey seeds of the users.
	LedgerSeed []byte
	ReaderSeed []byte
	AdminSeed  []byte

	ids  *identities
	node *node
}

// Start runs a standalone server on 127.0.0.1 with a random port, shut down
// when the test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	ids := newIdentities(t, opts)
	n := &node{ids: ids, name: "natstest", storeDir: t.TempDir(), clientPort: -1}
	if err := n.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.stop)
	return &Server{LedgerSeed: ids.ledger.Seed, ReaderSeed: ids.reader.Seed, AdminSeed: ids.admin.Seed, ids: ids, node: n}
}

// URL is the client URL; it does not change across Restart.
func (s *Server) URL() string { return s.node.url() }

// Stream is the stream name the users are granted access to.
func (s *Server) Stream() string { return s.ids.cfg.stream }

// Server returns the running server, or nil after Shutdown.
func (s *Server) Server() *server.Server { return s.node.server() }

// Connect opens a connection authenticated as role, closed when t ends.
// Extra options (error handlers, names) are applied last.
func (s *Server) Connect(t testing.TB, role natsauth.Role, opts ...nats.Option) *nats.Conn {
	t.Helper()
	return s.ids.connect(t, s.URL(), role, opts)
}

// JetStream returns a JetStream context on a new connection as role.
func (s *Server) JetStream(t testing.TB, role natsauth.Role) jetstream.JetStream {
	t.Helper()
	return newJetStream(t, s.Connect(t, role))
}

// CreateStream creates the stream with the contract's configuration
// (natsbus.StreamConfig, one replica) as the stream administrator.
func (s *Server) CreateStream(t testing.TB) {
	t.Helper()
	s.ids.createStream(t, s.URL(), 1)
}

// Shutdown stops the server and waits for it; calling it twice is harmless.
func (s *Server) Shutdown() { s.node.stop() }

// Restart stops the server if it runs and starts it again on the same port
// with the same store and users, so existing clients reconnect and JetStream
// recovers its data.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.node.stop()
	if err := s.node.start(); err != nil {
		t.Fatal(err)
	}
}
