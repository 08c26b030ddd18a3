// Package natstest runs embedded NATS JetStream servers for tests, configured
// like production: nkey authentication is required and clients connect as
// the ledger, reader or admin identity of package natsauth, with the same
// permissions and inbox prefixes. A new server holds no stream: the stream
// administrator creates it (Server.CreateStream), as in production. Servers bind to loopback on random ports and keep their
// JetStream store in the test's temporary directory, so tests can run in
// parallel.
package natstest

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/natsembed"
	"github.com/licenseledger/ledger/internal/testenv"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startTimeout bounds how long a server may take to accept clients.
// JetStream recovery of a small store takes milliseconds; a cluster node
// has taken over 10 s on a 2-core machine running the race-enabled suite
// beside other load, so the bound is generous and hitting it still means
// a hang.
const startTimeout = 30 * time.Second

// Option configures Start and StartCluster.
type Option func(*config)

type config struct {
	stream     string
	syncAlways bool
}

// WithStream sets the stream the identities are granted access to
// (default natsauth.DefaultStream).
func WithStream(name string) Option { return func(c *config) { c.stream = name } }

// WithSyncAlways makes JetStream fsync every write, as durability tests need.
func WithSyncAlways() Option { return func(c *config) { c.syncAlways = true } }

// identities holds the users shared by every node of a server or cluster.
type identities struct {
	cfg    config
	ledger natsauth.Identity
	reader natsauth.Identity
	admin  natsauth.Identity
}

func newIdentities(t testing.TB, opts []Option) *identities {
	t.Helper()
	ids := &identities{cfg: config{stream: natsauth.DefaultStream}}
	for _, o := range opts {
		o(&ids.cfg)
	}
	var err error
	if ids.ledger, err = natsauth.GenerateIdentity(natsauth.RoleLedger); err != nil {
		t.Fatal(err)
	}
	if ids.reader, err = natsauth.GenerateIdentity(natsauth.RoleReader); err != nil {
		t.Fatal(err)
	}
	if ids.admin, err = natsauth.GenerateIdentity(natsauth.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	// Fail early on a bad stream name instead of at every (re)start.
	if _, err := ids.users(); err != nil {
		t.Fatal(err)
	}
	return ids
}

func (ids *identities) users() ([]*server.NkeyUser, error) {
	return natsembed.ServerUsers(ids.cfg.stream, ids.ledger, ids.reader, ids.admin)
}

func (ids *identities) seed(t testing.TB, role natsauth.Role) []byte {
	t.Helper()
	switch role {
	case natsauth.RoleLedger:
		return ids.ledger.Seed
	case natsauth.RoleReader:
		return ids.reader.Seed
	case natsauth.RoleAdmin:
		return ids.admin.Seed
	}
	t.Fatalf("natstest: unknown role %q", role)
	return nil
}

// connect opens a connection as role, with role's inbox prefix.
// Reconnection is unlimited and fast so tests that restart servers see
// clients come back within milliseconds.
func (ids *identities) connect(t testing.TB, urls string, role natsauth.Role, extra []nats.Option) *nats.Conn {
	t.Helper()
	auth, err := natsauth.ConnectOption(ids.seed(t, role))
	if err != nil {
		t.Fatal(err)
	}
	opts := append([]nats.Option{
		auth,
		nats.CustomInboxPrefix(natsauth.InboxPrefix(role)),
		nats.Name("natstest-" + string(role)),
		nats.Timeout(2 * time.Second),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50 * time.Millisecond),
	}, extra...)
	nc, err := nats.Connect(urls, opts...)
	if err != nil {
		t.Fatalf("natstest: connect as %s to %s: %v", role, urls, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func newJetStream(t testing.TB, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("natstest: jetstream: %v", err)
	}
	return js
}

// node is one embedded server whose identity (store, ports, name) survives
// restarts.
type node struct {
	ids         *identities
	name        string
	storeDir    string
	clusterPort int    // 0 for a standalone server
	routes      string // comma-separated nats-route:// URLs of every node

	mu         sync.Mutex
	clientPort int            // -1 until the first start picked a port
	srv        *server.Server // nil while stopped
}

// options builds fresh options for every start: the server keeps pointers
// into the options it was given, so they must not be shared across restarts.
func (n *node) options() (*server.Options, error) {
	n.mu.Lock()
	port := n.clientPort
	n.mu.Unlock()
	users, err := n.ids.users()
	if err != nil {
		return nil, err
	}
	o := &server.Options{
		ServerName:         n.name,
		Host:               "127.0.0.1",
		Port:               port,
		NoLog:              true,
		NoSigs:             true,
		Nkeys:              users,
		JetStream:          true,
		StoreDir:           n.storeDir,
		JetStreamMaxMemory: 64 << 20,
		JetStreamMaxStore:  1 << 30,
		SyncAlways:         n.ids.cfg.syncAlways,
	}
	if n.clusterPort != 0 {
		o.Cluster = server.ClusterOpts{Name: "natstest", Host: "127.0.0.1", Port: n.clusterPort}
		o.Routes = server.RoutesFromStr(n.routes)
	}
	return o, nil
}

func (n *node) start() error {
	o, err := n.options()
	if err != nil {
		return err
	}
	srv, err := server.NewServer(o)
	if err != nil {
		return fmt.Errorf("natstest: %s: %w", n.name, err)
	}
	srv.Start()
	if !srv.ReadyForConnections(startTimeout) {
		shutdown(srv)
		return fmt.Errorf("natstest: %s not ready after %s", n.name, startTimeout)
	}
	n.mu.Lock()
	n.clientPort = srv.Addr().(*net.TCPAddr).Port
	n.srv = srv
	n.mu.Unlock()
	return nil
}

func (n *node) stop() {
	n.mu.Lock()
	srv := n.srv
	n.srv = nil
	n.mu.Unlock()
	shutdown(srv)
}

func (n *node) server() *server.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv
}

func (n *node) url() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return fmt.Sprintf("nats://127.0.0.1:%d", n.clientPort)
}

// shutdown waits for the server to finish so its store directory can be
// removed and its ports reused.
func shutdown(srv *server.Server) {
	if srv == nil {
		return
	}
	srv.Shutdown()
	srv.WaitForShutdown()
}

// freePorts reserves n distinct loopback ports below the ephemeral
// range (testenv.FixedPorts): a node stopped and started again binds its
// cluster port a second time, which no outgoing connection can have taken.
func freePorts(n int) ([]int, error) { return testenv.FixedPorts(n) }

func joinURLs(nodes []*node) string {
	urls := make([]string, 0, len(nodes))
	for _, n := range nodes {
		urls = append(urls, n.url())
	}
	return strings.Join(urls, ",")
}

// createStream creates the stream the users are granted access to with the
// contract's configuration, as the stream administrator does (ledger stream
// apply), over a connection of its own.
func (ids *identities) createStream(t testing.TB, urls string, replicas int) {
	t.Helper()
	nc := ids.connect(t, urls, natsauth.RoleAdmin, nil)
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	res, err := natsbus.NewConn(nc).ApplyStream(ctx, ids.cfg.stream, replicas, false)
	if err != nil {
		t.Fatalf("natstest: create stream %s: %v", ids.cfg.stream, err)
	}
	if !res.Created {
		t.Fatalf("natstest: stream %s existed already", ids.cfg.stream)
	}
}
