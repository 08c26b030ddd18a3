package natsbus_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/natsembed"
	"github.com/licenseledger/ledger/internal/testenv/natsroletest"
	"github.com/licenseledger/ledger/internal/testenv/natstest"
	"github.com/licenseledger/ledger/internal/testenv/proctest"
)

// The ledger's embedded server, seen from outside with the nats CLI and
// nats.go: the ledger's seed cannot edit the stream, the reader's reads
// only its own inbox and leaves no consumer behind, the admin's edits.
func TestEmbeddedIdentitiesFromOutside(t *testing.T) {
	dir := t.TempDir()
	e := startEmbedded(t, dir)
	ctx := context.Background()
	if res, err := e.Bootstrap(ctx, "LICENSES", 1); err != nil || !res.Created {
		t.Fatalf("bootstrap: %+v %v", res, err)
	}
	b := openBus(t, connect(t, e, e.LedgerSeedFile))
	subject := events.OrgSubject("acme")
	for seq := uint64(0); seq < 3; seq++ {
		if _, err := b.Append(ctx, subject, event(t, seq), seq); err != nil {
			t.Fatal(err)
		}
	}
	natsroletest.Check(t, natsroletest.Target{
		URL: e.ClientURL, LedgerSeed: e.LedgerSeedFile, ReaderSeed: e.ReaderSeedFile, AdminSeed: e.AdminSeedFile,
		NATSCLI: proctest.Build(t, t.TempDir(), proctest.NATSCLI)["nats"], Subject: subject, Replicas: 1,
	})
}

// previousReleaseStore writes what a data directory of the release before
// the admin identity holds: ledger.nk and reader.nk, and a stream with that
// release's configuration (no consumer bounds) holding n events.
func previousReleaseStore(t *testing.T, dataDir string, n int) {
	t.Helper()
	dir := filepath.Join(dataDir, "nats")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, role := range []natsauth.Role{natsauth.RoleLedger, natsauth.RoleReader} {
		id, err := natsauth.GenerateIdentity(role)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(natsauth.SeedPath(dir, role), append(id.Seed, '\n'), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	off, err := natsembed.StartOffline(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := off.Connect("previous-release")
	if err != nil {
		t.Fatal(err)
	}
	nc := conn.NATS()
	js, _ := jetstream.New(nc)
	old := natsbus.StreamConfig("LICENSES", 1)
	old.MaxConsumers, old.ConsumerLimits = -1, jetstream.StreamConsumerLimits{}
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	b, _, err := natsbus.Open(ctx, nc, "LICENSES", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	for seq := range uint64(n) {
		if _, err := b.Append(ctx, events.OrgSubject("acme"), event(t, seq), seq); err != nil {
			t.Fatal(err)
		}
	}
	nc.Close()
	if err := off.Close(); err != nil {
		t.Fatal(err)
	}
}

// A data directory of the previous release starts: it gains admin.nk, the
// stream gets the consumer bounds it lacked, and nothing else changes — the
// events, the stream's identity, the ledger's and reader's keys.
func TestBootstrapUpgradesAPreviousReleasesStore(t *testing.T) {
	dataDir := t.TempDir()
	previousReleaseStore(t, dataDir, 3)
	readerBefore, _ := os.ReadFile(filepath.Join(dataDir, "nats", "reader.nk"))
	ledgerBefore, _ := os.ReadFile(filepath.Join(dataDir, "nats", "ledger.nk"))

	e := startEmbedded(t, dataDir)
	fi, err := os.Stat(e.AdminSeedFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin.nk: %v %v", fi, err)
	}
	ctx := context.Background()
	res, err := e.Bootstrap(ctx, "LICENSES", 1)
	if err != nil {
		t.Fatal(err)
	}
	var changed []string
	for _, f := range res.Changed {
		changed = append(changed, f.Field)
	}
	if res.Created || len(res.Left) != 0 || !slices.Equal(changed, []string{"max_consumers", "consumer_limits.inactive_threshold"}) {
		t.Fatalf("bootstrap on the previous release's stream: %+v", res)
	}
	if res.Info.LastSeq != 3 {
		t.Fatalf("after the upgrade the stream ends at seq %d, want 3", res.Info.LastSeq)
	}
	readerAfter, _ := os.ReadFile(e.ReaderSeedFile)
	ledgerAfter, _ := os.ReadFile(e.LedgerSeedFile)
	if string(readerAfter) != string(readerBefore) || string(ledgerAfter) != string(ledgerBefore) {
		t.Fatal("the upgrade replaced the ledger's or the reader's seed")
	}
	// The gatekeepers' credentials still read every event.
	reader := openBus(t, connect(t, e, e.ReaderSeedFile))
	for seq := uint64(1); seq <= 3; seq++ {
		if m, err := reader.Get(ctx, seq); err != nil || m == nil || m.Envelope == nil {
			t.Fatalf("event %d after the upgrade: %v %v", seq, m, err)
		}
	}
	// Done once: a second start changes nothing.
	if res, err := e.Bootstrap(ctx, "LICENSES", 1); err != nil || res.Created || len(res.Changed)+len(res.Left) != 0 {
		t.Fatalf("second bootstrap: %+v %v", res, err)
	}
}

// What is not a previous release's configuration is not put right behind
// the operator's back: the bootstrap leaves it, and reports it.
func TestBootstrapLeavesOtherDrift(t *testing.T) {
	dataDir := t.TempDir()
	e := startEmbedded(t, dataDir)
	ctx := context.Background()
	if _, err := e.Bootstrap(ctx, "LICENSES", 1); err != nil {
		t.Fatal(err)
	}
	admin := connectAs(t, e, e.AdminSeedFile, natsauth.RoleAdmin)
	js, _ := jetstream.New(admin)
	cfg := natsbus.StreamConfig("LICENSES", 1)
	cfg.MaxAge, cfg.MaxConsumers = 87600*time.Hour, -1
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	res, err := e.Bootstrap(ctx, "LICENSES", 1)
	if err != nil {
		t.Fatal(err)
	}
	want := []events.ConfigField{{Field: "max_age", Expected: "0s", Actual: "87600h0m0s"}, {Field: "max_consumers", Expected: "1000", Actual: "-1"}}
	if len(res.Changed) != 0 || !slices.Equal(res.Left, want) {
		t.Fatalf("bootstrap with max_age set: changed %v, left %v; want left %v", res.Changed, res.Left, want)
	}
	// ApplyStream without upgradeOnly (ledger stream apply) restores it.
	res, err = natsbus.NewConn(admin).ApplyStream(ctx, "LICENSES", 1, false)
	if err != nil || !slices.Equal(res.Changed, want) || len(res.Left) != 0 {
		t.Fatalf("apply: %+v %v", res, err)
	}
}

// ApplyStream with the ledger's credentials is refused by the server, and
// says whose credentials are needed.
func TestApplyStreamNeedsTheAdmin(t *testing.T) {
	e := startEmbedded(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := e.Bootstrap(ctx, "LICENSES", 1); err != nil {
		t.Fatal(err)
	}
	admin := connectAs(t, e, e.AdminSeedFile, natsauth.RoleAdmin)
	js, _ := jetstream.New(admin)
	cfg := natsbus.StreamConfig("LICENSES", 1)
	cfg.MaxAge = time.Hour
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	// The refused update is never answered: it ends with the context.
	dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
	defer dcancel()
	_, err := natsbus.NewConn(connectAs(t, e, e.LedgerSeedFile, natsauth.RoleLedger)).ApplyStream(dctx, "LICENSES", 1, false)
	if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), "admin.nk") {
		t.Fatalf("apply with the ledger's seed: %v", err)
	}
}

func connectAs(t *testing.T, e *natsembed.Embedded, seedFile string, role natsauth.Role) *nats.Conn {
	t.Helper()
	nc, err := natsbus.Connect(natsbus.ConnConfig{URL: e.ClientURL, NKeyFile: seedFile, Role: role})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Connect finds the inbox the credentials may use whatever identity the
// caller expects, and credentials that may use none are an error that
// says so.
func TestConnectFindsTheInboxOfItsCredentials(t *testing.T) {
	e := startEmbedded(t, t.TempDir())
	for _, seed := range []string{e.LedgerSeedFile, e.ReaderSeedFile, e.AdminSeedFile} {
		for _, expect := range append(natsauth.Roles(), "") {
			nc, err := natsbus.Connect(natsbus.ConnConfig{URL: e.ClientURL, NKeyFile: seed, Role: expect})
			if err != nil {
				t.Fatalf("%s expecting %q: %v", filepath.Base(seed), expect, err)
			}
			// A JetStream request gets its reply.
			js, _ := jetstream.New(nc)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err = js.AccountInfo(ctx)
			cancel()
			nc.Close()
			if err != nil {
				t.Fatalf("%s expecting %q: account info: %v", filepath.Base(seed), expect, err)
			}
		}
	}

	// A server whose only user may subscribe to no inbox at all.
	id, err := natsauth.GenerateIdentity(natsauth.RoleReader)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		Nkeys: []*server.NkeyUser{{Nkey: id.PublicKey, Permissions: &server.Permissions{
			Subscribe: &server.SubjectPermission{Allow: []string{"elsewhere.>"}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	seed := filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(seed, id.Seed, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = natsbus.Connect(natsbus.ConnConfig{URL: srv.ClientURL(), NKeyFile: seed, Role: natsauth.RoleReader})
	if err == nil || !strings.Contains(err.Error(), "_INBOX.reader.>") || !strings.Contains(err.Error(), "_INBOX.ledger.>") {
		t.Fatalf("credentials without an inbox: %v", err)
	}
}

// Off loopback the embedded server speaks TLS only.
func TestCheckListen(t *testing.T) {
	for _, c := range []struct {
		listen, cert, key string
		want              string
	}{
		{"127.0.0.1:4223", "", "", ""},
		{"[::1]:4223", "", "", ""},
		{"localhost:4223", "", "", ""},
		{"off", "", "", ""},
		{"0.0.0.0:4223", "c.pem", "k.pem", ""},
		{"0.0.0.0:4223", "", "", "--nats-listen 0.0.0.0:4223 is not loopback: serve TLS (--nats-listen-tls-cert/--nats-listen-tls-key)"},
		{":4223", "", "", "is not loopback"},
		{"10.1.2.3:4223", "", "", "is not loopback"},
		{"127.0.0.1:4223", "c.pem", "", "go together"},
	} {
		err := natsembed.CheckListen(c.listen, c.cert, c.key)
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("CheckListen(%q, %q, %q) = %v, want %q", c.listen, c.cert, c.key, err, c.want)
		}
	}
	_, err := natsembed.Start(natsembed.Config{DataDir: t.TempDir(), Listen: "0.0.0.0:0", Stream: "LICENSES"})
	if err == nil || !strings.Contains(err.Error(), "is not loopback") {
		t.Fatalf("embedded on 0.0.0.0 without TLS: %v", err)
	}
}

// A replicated stream cannot be placed while its peers are offline to the
// metadata leader, as to a leader just elected that has not heard from
// them yet; ledger stream apply (and restore) ask again until they are
// back instead of failing at the first refusal.
func TestApplyStreamWaitsForPeersToReturn(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	var down []int
	for i, srv := range c.Servers() {
		if !srv.JetStreamIsLeader() {
			down = append(down, i)
		}
	}
	for _, i := range down {
		c.StopServer(i)
	}
	// Until the metadata leader counts the nodes as offline it places on them.
	deadline := time.Now().Add(20 * time.Second)
	for !metaLeaderSees(c, 1) {
		if time.Now().After(deadline) {
			t.Fatal("the metadata leader still counts the stopped nodes as peers")
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin := c.Connect(t, natsauth.RoleAdmin)
	js, _ := jetstream.New(admin)

	// What the cluster answers meanwhile: a placement refusal.
	_, err := js.CreateStream(ctx, natsbus.StreamConfig("LICENSES", 3))
	if !natsbus.PlacementPending(err) {
		t.Fatalf("creating an R3 stream with two peers offline: %v, want a placement refusal", err)
	}
	t.Logf("refused: %v", err)

	var restarted sync.WaitGroup
	for _, i := range down {
		restarted.Go(func() {
			time.Sleep(time.Second)
			c.RestartServer(t, i)
		})
	}
	start := time.Now()
	res, err := natsbus.NewConn(admin).ApplyStream(ctx, "LICENSES", 3, false)
	restarted.Wait()
	if err != nil || !res.Created {
		t.Fatalf("apply while the peers come back: %+v, %v", res, err)
	}
	if res.Info.Replicas != 3 {
		t.Fatalf("created with %d replicas, want 3", res.Info.Replicas)
	}
	t.Logf("created %s after the refusal, once the peers were back", time.Since(start).Round(time.Millisecond))
}

func metaLeaderSees(c *natstest.Cluster, peers int) bool {
	for _, srv := range c.Servers() {
		if srv != nil && srv.JetStreamIsLeader() {
			return len(srv.JetStreamClusterPeers()) == peers
		}
	}
	return false
}

func TestPlacementPending(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&jetstream.APIError{Code: 503, ErrorCode: 10005, Description: "no suitable peers for placement"}, true},
		{fmt.Errorf("restore: %w", &jetstream.APIError{Code: 503, ErrorCode: 10008}), true},
		{&jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamNameInUse}, false},
		{codedError(10005), true},
		{codedError(10059), false},
		{nats.ErrTimeout, false},
		{nil, false},
	} {
		if got := natsbus.PlacementPending(tc.err); got != tc.want {
			t.Errorf("PlacementPending(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// codedError reports its code as jsm.go's API errors do.
type codedError uint16

func (e codedError) Error() string         { return fmt.Sprintf("nats error %d", uint16(e)) }
func (e codedError) NatsErrorCode() uint16 { return uint16(e) }
