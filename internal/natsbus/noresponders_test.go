package natsbus_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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
	"github.com/licenseledger/ledger/internal/testenv"
	"github.com/licenseledger/ledger/internal/testenv/natstest"
)

// fakeJetStream answers the JetStream API requests Open makes (stream
// create and info) on a plain server, and answers direct gets only once
// serveDirectGets is called: the moment a new replicated stream's direct-get
// subscriptions reach the server its client is connected to. Before that
// the server itself replies "no responders", as a cluster does.
type fakeJetStream struct {
	t  *testing.T
	nc *nats.Conn
}

func startFakeJetStream(t *testing.T) (*fakeJetStream, *nats.Conn) {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	api, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(api.Close)
	info, err := json.Marshal(jetstream.StreamInfo{Config: natsbus.StreamConfig("LICENSES", 3), Created: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	for _, subject := range []string{"$JS.API.STREAM.CREATE.LICENSES", "$JS.API.STREAM.INFO.LICENSES"} {
		if _, err := api.Subscribe(subject, func(m *nats.Msg) { m.Respond(info) }); err != nil {
			t.Fatal(err)
		}
	}
	client, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	return &fakeJetStream{t: t, nc: api}, client
}

// serveDirectGets answers every direct get with 404 (no such message), as
// a stream without messages on the subject does.
func (f *fakeJetStream) serveDirectGets() {
	_, err := f.nc.Subscribe("$JS.API.DIRECT.GET.LICENSES.>", func(m *nats.Msg) {
		reply := nats.NewMsg(m.Reply)
		reply.Header.Set("Status", "404")
		reply.Header.Set("Description", "Message Not Found")
		f.nc.PublishMsg(reply)
	})
	if err == nil {
		err = f.nc.Flush()
	}
	if err != nil {
		f.t.Fatal(err)
	}
}

// A ledger that has just created a replicated stream reads it at once; a
// direct get that finds no responder yet is retried (and logged) instead
// of failing the start.
func TestOpenWaitsForDirectGetResponders(t *testing.T) {
	fake, nc := startFakeJetStream(t)
	var logs testenv.Buffer
	time.AfterFunc(300*time.Millisecond, fake.serveDirectGets)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, _, err := natsbus.Open(ctx, nc, "LICENSES", 3, true, natsbus.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatalf("open: %v\nlog:\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), "no responder for a stream read yet") {
		t.Fatalf("the retries were not logged:\n%s", logs.String())
	}
	// The first read the ledger makes now answers.
	if head, err := b.Head(ctx, events.AuditSubject("_instance")); err != nil || head != 0 {
		t.Fatalf("head: %d %v", head, err)
	}
}

// The retry is bounded: a stream nobody answers for is unavailable after
// a few seconds, not a hang.
func TestOpenGivesUpWithoutResponders(t *testing.T) {
	_, nc := startFakeJetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	began := time.Now()
	_, _, err := natsbus.Open(ctx, nc, "LICENSES", 3, true)
	if !errors.Is(err, events.ErrUnavailable) || !strings.Contains(err.Error(), "no responders") {
		t.Fatalf("open without responders: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("open gave up only when the test's context ended (%s)", time.Since(began))
	}
	t.Logf("gave up after %s", time.Since(began).Round(time.Millisecond))
}

// Twenty ledgers start at once against a fresh 3-node cluster, the moment
// the stream administrator has created the R3 stream: all read it at once,
// from connections spread over the nodes. None may fail for want of a
// direct-get responder.
func TestFreshLedgersOnNewReplicatedStream(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var conns []*nats.Conn
	for range 20 {
		conns = append(conns, c.Connect(t, natsauth.RoleLedger))
	}
	c.CreateStream(t, 3)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i, nc := range conns {
		wg.Go(func() {
			b, _, err := natsbus.Open(ctx, nc, "LICENSES", 3, false)
			if err == nil {
				_, err = b.Head(ctx, events.AuditSubject("_instance"))
			}
			if err != nil {
				errs <- fmt.Errorf("ledger %d (connected to %s): %w", i, nc.ConnectedUrl(), err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
