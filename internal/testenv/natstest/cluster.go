package natstest

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// clusterTimeout bounds waits for leader elections. Elections after a clean
// shutdown take tens of milliseconds; a missing leader after this long means
// the cluster is broken.
const clusterTimeout = 20 * time.Second

// A new meta group usually elects its first leader within 200-700 ms. When
// its first campaign fails (in about one start in fifteen, seemingly when
// candidates overlap), raft falls back to its 4-9 s election timeout, which
// cannot be tuned from outside the server package; starting over with a
// fresh cluster is quicker. The last attempt waits up to clusterTimeout.
const (
	bootstrapPatience = 2 * time.Second
	bootstrapAttempts = 3
)

// Cluster is an in-process JetStream cluster on loopback.
type Cluster struct {
	// LedgerSeed, ReaderSeed and AdminSeed are the nkey seeds valid on
	// every node.
	LedgerSeed []byte
	ReaderSeed []byte
	AdminSeed  []byte

	ids   *identities
	nodes []*node
}

// StartCluster runs an n-node JetStream cluster (n >= 2; a lone node refuses
// clustered JetStream) and waits for a meta leader that sees every node.
func StartCluster(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	if n < 2 {
		t.Fatalf("natstest: a cluster needs at least 2 nodes, got %d", n)
	}
	ids := newIdentities(t, opts)
	for attempt := 1; ; attempt++ {
		c := newCluster(t, ids, n)
		t.Cleanup(c.stopAll)
		for i, nd := range c.nodes {
			if err := nd.start(); err != nil {
				t.Fatalf("natstest: start node %d: %v", i, err)
			}
		}
		if attempt == bootstrapAttempts {
			c.waitMetaLeader(t)
			return c
		}
		if poll(bootstrapPatience, c.hasFullMetaLeader) {
			return c
		}
		c.stopAll()
	}
}

// newCluster lays out the nodes. Cluster ports are fixed up front because
// every node needs the full route list, and a restarted node must come back
// at the address the others know.
func newCluster(t testing.TB, ids *identities, n int) *Cluster {
	t.Helper()
	ports, err := freePorts(n)
	if err != nil {
		t.Fatal(err)
	}
	routes := make([]string, n)
	for i, p := range ports {
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", p)
	}
	base := t.TempDir()
	c := &Cluster{LedgerSeed: ids.ledger.Seed, ReaderSeed: ids.reader.Seed, AdminSeed: ids.admin.Seed, ids: ids}
	for i := range n {
		c.nodes = append(c.nodes, &node{
			ids:         ids,
			name:        fmt.Sprintf("natstest-%d", i),
			storeDir:    filepath.Join(base, fmt.Sprintf("n%d", i)),
			clientPort:  -1,
			clusterPort: ports[i],
			routes:      strings.Join(routes, ","),
		})
	}
	return c
}

func (c *Cluster) stopAll() {
	for _, n := range c.nodes {
		n.stop()
	}
}

// URLs is the comma-separated client URL list of all nodes.
func (c *Cluster) URLs() string { return joinURLs(c.nodes) }

// Stream is the stream name the users are granted access to.
func (c *Cluster) Stream() string { return c.ids.cfg.stream }

// Connect opens a connection as role that may use any node, closed when t ends.
func (c *Cluster) Connect(t testing.TB, role natsauth.Role, opts ...nats.Option) *nats.Conn {
	t.Helper()
	return c.ids.connect(t, c.URLs(), role, opts)
}

// CreateStream creates the stream with the contract's configuration
// (natsbus.StreamConfig) and replicas as the stream administrator.
func (c *Cluster) CreateStream(t testing.TB, replicas int) {
	t.Helper()
	c.ids.createStream(t, c.URLs(), replicas)
}

// JetStream returns a JetStream context on a new connection as role.
func (c *Cluster) JetStream(t testing.TB, role natsauth.Role) jetstream.JetStream {
	t.Helper()
	return newJetStream(t, c.Connect(t, role))
}

// Servers returns the nodes by index; stopped nodes are nil.
func (c *Cluster) Servers() []*server.Server {
	out := make([]*server.Server, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.server()
	}
	return out
}

// IndexOf returns the index of srv in the cluster, or -1.
func (c *Cluster) IndexOf(srv *server.Server) int {
	for i, n := range c.nodes {
		if srv != nil && n.server() == srv {
			return i
		}
	}
	return -1
}

// StreamLeader returns the running node leading stream, or nil if there is
// none right now (for example during an election).
func (c *Cluster) StreamLeader(stream string) *server.Server {
	for _, srv := range c.Servers() {
		if srv != nil && srv.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return srv
		}
	}
	return nil
}

// WaitStreamLeader polls until stream has a leader and returns it.
func (c *Cluster) WaitStreamLeader(t testing.TB, stream string) *server.Server {
	t.Helper()
	var leader *server.Server
	waitFor(t, "a leader for stream "+stream, func() bool {
		leader = c.StreamLeader(stream)
		return leader != nil
	})
	return leader
}

// StopServer shuts node i down and waits for it.
func (c *Cluster) StopServer(i int) { c.nodes[i].stop() }

// RestartServer starts node i again with its store and ports, then waits
// until the cluster has a meta leader seeing all nodes and node i has caught
// up with the meta group.
func (c *Cluster) RestartServer(t testing.TB, i int) {
	t.Helper()
	n := c.nodes[i]
	n.stop()
	if err := n.start(); err != nil {
		t.Fatalf("natstest: restart node %d: %v", i, err)
	}
	c.waitMetaLeader(t)
	waitFor(t, n.name+" to catch up", func() bool {
		srv := n.server()
		return srv != nil && srv.JetStreamIsCurrent()
	})
}

// waitMetaLeader waits for a meta leader that counts every node as a peer;
// before that, stream creation may be refused or placed on fewer nodes.
func (c *Cluster) waitMetaLeader(t testing.TB) {
	t.Helper()
	waitFor(t, "a JetStream meta leader with all peers", c.hasFullMetaLeader)
}

func (c *Cluster) hasFullMetaLeader() bool {
	for _, srv := range c.Servers() {
		if srv != nil && srv.JetStreamIsLeader() {
			return len(srv.JetStreamClusterPeers()) == len(c.nodes)
		}
	}
	return false
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if !poll(clusterTimeout, cond) {
		t.Fatalf("natstest: timed out after %s waiting for %s", clusterTimeout, what)
	}
}

// poll checks cond every 10 ms until it holds or timeout passes.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}
