package natstest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

func licensesConfig(replicas int) jetstream.StreamConfig {
	return natsbus.StreamConfig(natsauth.DefaultStream, replicas)
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// violations records the permission errors a connection reports
// asynchronously, so a test can both assert them and stop waiting for a
// reply that the server will never send.
type violations struct {
	mu      sync.Mutex
	seen    []string
	changed chan struct{}
}

func newViolations() *violations { return &violations{changed: make(chan struct{})} }

func (v *violations) handler() nats.Option {
	return nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if !errors.Is(err, nats.ErrPermissionViolation) {
			return
		}
		v.mu.Lock()
		defer v.mu.Unlock()
		v.seen = append(v.seen, err.Error())
		close(v.changed)
		v.changed = make(chan struct{})
	})
}

// wait blocks until a violation for subject is reported or ctx ends.
func (v *violations) wait(ctx context.Context, subject string) bool {
	for {
		v.mu.Lock()
		changed := v.changed
		found := v.has(subject)
		v.mu.Unlock()
		if found {
			return true
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		}
	}
}

func (v *violations) has(subject string) bool {
	for _, msg := range v.seen {
		if strings.Contains(msg, `"`+subject+`"`) {
			return true
		}
	}
	return false
}

// expectDenied runs op, which publishes to subject, and requires both that
// op fails and that the server reported a permissions violation for subject.
// The server drops a denied request without replying, so op is cancelled as
// soon as the violation arrives instead of waiting for its timeout.
func expectDenied(t *testing.T, v *violations, subject string, op func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	go func() {
		if v.wait(ctx, subject) {
			cancel()
		}
	}()
	if err := op(ctx); err == nil {
		t.Errorf("publishing to %s succeeded", subject)
	}
	waitCtx, waitCancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer waitCancel()
	if !v.wait(waitCtx, subject) {
		t.Errorf("no permissions violation reported for %s", subject)
	}
}

func TestUnauthenticatedClientRejected(t *testing.T) {
	s := Start(t)
	_, err := nats.Connect(s.URL(), nats.NoReconnect())
	if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("anonymous connect: err = %v, want authorization violation", err)
	}

	stranger, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := stranger.Seed()
	opt, err := natsauth.ConnectOption(seed)
	if err != nil {
		t.Fatal(err)
	}
	_, err = nats.Connect(s.URL(), opt, nats.NoReconnect())
	if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("unknown nkey: err = %v, want authorization violation", err)
	}
}

// setupLicenses creates the stream as the admin and appends two events as
// the ledger.
func setupLicenses(t *testing.T, s *Server) jetstream.JetStream {
	t.Helper()
	ctx := testContext(t)
	s.CreateStream(t)
	js := s.JetStream(t, natsauth.RoleLedger)
	for _, subj := range []string{"licenses.org.acme", "licenses.audit.acme"} {
		if _, err := js.Publish(ctx, subj, []byte(subj)); err != nil {
			t.Fatalf("ledger publish %s: %v", subj, err)
		}
	}
	return js
}

func TestReaderReadsStream(t *testing.T) {
	s := Start(t)
	setupLicenses(t, s)
	ctx := testContext(t)
	js := s.JetStream(t, natsauth.RoleReader)

	stream, err := js.Stream(ctx, natsauth.DefaultStream)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	if n := stream.CachedInfo().State.Msgs; n != 2 {
		t.Fatalf("stream has %d messages, want 2", n)
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		t.Errorf("account info: %v", err)
	}
	readOrdered(t, stream)
	readEphemeral(t, stream)

	msg, err := stream.GetMsg(ctx, 1)
	if err != nil {
		t.Fatalf("get msg: %v", err)
	}
	if string(msg.Data) != "licenses.org.acme" {
		t.Fatalf("get msg returned %q", msg.Data)
	}

	// Direct get is served by a different API subject.
	readDirect(t, s.Connect(t, natsauth.RoleReader))
}

func readOrdered(t *testing.T, stream jetstream.Stream) {
	t.Helper()
	cons, err := stream.OrderedConsumer(testContext(t), jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("ordered consumer: %v", err)
	}
	batch, err := cons.Fetch(2, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	var got []string
	for m := range batch.Messages() {
		got = append(got, m.Subject())
	}
	if batch.Error() != nil || len(got) != 2 || got[1] != "licenses.audit.acme" {
		t.Fatalf("ordered consumer read %v (err %v)", got, batch.Error())
	}
}

// readEphemeral exercises a named consumer with a filter, acks and
// deletion.
func readEphemeral(t *testing.T, stream jetstream.Stream) {
	t.Helper()
	ctx := testContext(t)
	cons, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		Name:          "projector",
		FilterSubject: "licenses.org.*",
		AckPolicy:     jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatalf("create durable: %v", err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatalf("next: %v", err)
	}
	if err := msg.DoubleAck(ctx); err != nil {
		t.Fatalf("ack: %v", err)
	}
	info, err := cons.Info(ctx)
	if err != nil || info.AckFloor.Stream != 1 {
		t.Fatalf("consumer info after ack: %v %+v", err, info)
	}
	if err := stream.DeleteConsumer(ctx, "projector"); err != nil {
		t.Fatalf("delete consumer: %v", err)
	}
}

func readDirect(t *testing.T, nc *nats.Conn) {
	t.Helper()
	msg, err := nc.Request("$JS.API.DIRECT.GET.LICENSES", []byte(`{"seq":2}`), 2*time.Second)
	if err != nil || msg.Header.Get("Nats-Subject") != "licenses.audit.acme" {
		t.Fatalf("direct get: %v %+v", err, msg)
	}
	msg, err = nc.Request("$JS.API.DIRECT.GET.LICENSES.licenses.org.acme", nil, 2*time.Second)
	if err != nil || msg.Header.Get("Nats-Sequence") != "1" {
		t.Fatalf("direct get last for subject: %v %+v", err, msg)
	}
}

func TestReaderCannotPublish(t *testing.T) {
	s := Start(t)
	setupLicenses(t, s)
	v := newViolations()
	nc := s.Connect(t, natsauth.RoleReader, v.handler())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	expectDenied(t, v, "licenses.org.acme", func(ctx context.Context) error {
		_, err := js.Publish(ctx, "licenses.org.acme", []byte("forged"))
		return err
	})
	expectDenied(t, v, "licenses.audit.acme", func(context.Context) error {
		if err := nc.Publish("licenses.audit.acme", []byte("forged")); err != nil {
			return err
		}
		// A core publish only fails asynchronously.
		if err := nc.Flush(); err != nil {
			return err
		}
		return nc.LastError()
	})
	assertMessages(t, s, 2)
}

func TestReaderCannotAlterStream(t *testing.T) {
	s := Start(t)
	setupLicenses(t, s)
	v := newViolations()
	js, err := jetstream.New(s.Connect(t, natsauth.RoleReader, v.handler()))
	if err != nil {
		t.Fatal(err)
	}
	cfg := licensesConfig(1)
	cfg.MaxMsgs = 1
	denied := map[string]func(context.Context) error{
		"$JS.API.STREAM.UPDATE.LICENSES": func(ctx context.Context) error {
			_, err := js.UpdateStream(ctx, cfg)
			return err
		},
		"$JS.API.STREAM.PURGE.LICENSES": func(ctx context.Context) error {
			stream, err := js.Stream(ctx, natsauth.DefaultStream)
			if err != nil {
				return err
			}
			return stream.Purge(ctx)
		},
		"$JS.API.STREAM.MSG.DELETE.LICENSES": func(ctx context.Context) error {
			stream, err := js.Stream(ctx, natsauth.DefaultStream)
			if err != nil {
				return err
			}
			return stream.DeleteMsg(ctx, 1)
		},
		"$JS.API.STREAM.DELETE.LICENSES": func(ctx context.Context) error {
			return js.DeleteStream(ctx, natsauth.DefaultStream)
		},
	}
	for subject, op := range denied {
		expectDenied(t, v, subject, op)
	}
	assertMessages(t, s, 2)
}

func TestLedgerCannotDestroyStream(t *testing.T) {
	s := Start(t)
	setupLicenses(t, s)
	v := newViolations()
	js, err := jetstream.New(s.Connect(t, natsauth.RoleLedger, v.handler()))
	if err != nil {
		t.Fatal(err)
	}
	expectDenied(t, v, "$JS.API.STREAM.DELETE.LICENSES", func(ctx context.Context) error {
		return js.DeleteStream(ctx, natsauth.DefaultStream)
	})
	expectDenied(t, v, "$JS.API.STREAM.PURGE.LICENSES", func(ctx context.Context) error {
		stream, err := js.Stream(ctx, natsauth.DefaultStream)
		if err != nil {
			return err
		}
		return stream.Purge(ctx)
	})
	assertMessages(t, s, 2)
}

// assertMessages checks the stream through the reader, which proves it still
// exists and that nothing was added or removed.
func assertMessages(t *testing.T, s *Server, want uint64) {
	t.Helper()
	js := s.JetStream(t, natsauth.RoleReader)
	info, err := js.Stream(testContext(t), natsauth.DefaultStream)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	if got := info.CachedInfo().State.Msgs; got != want {
		t.Fatalf("stream has %d messages, want %d", got, want)
	}
}

func TestWithStreamScopesPermissions(t *testing.T) {
	s := Start(t, WithStream("ORDERS"))
	v := newViolations()
	js, err := jetstream.New(s.Connect(t, natsauth.RoleAdmin, v.handler()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"licenses.orders.*"}}); err != nil {
		t.Fatalf("create ORDERS: %v", err)
	}
	expectDenied(t, v, "$JS.API.STREAM.CREATE.LICENSES", func(ctx context.Context) error {
		_, err := js.CreateStream(ctx, licensesConfig(1))
		return err
	})
}

func TestRestartKeepsDataAndPort(t *testing.T) {
	s := Start(t, WithSyncAlways())
	js := setupLicenses(t, s)
	url := s.URL()
	before := s.Server()

	s.Restart(t)
	if s.URL() != url || s.Server() == before {
		t.Fatalf("restart: url %s -> %s, same server %v", url, s.URL(), s.Server() == before)
	}
	assertMessages(t, s, 2)
	// The connection made before the restart reconnects by itself.
	if _, err := js.Publish(testContext(t), "licenses.org.acme", []byte("after restart")); err != nil {
		t.Fatalf("publish after restart: %v", err)
	}
	assertMessages(t, s, 3)

	s.Shutdown()
	s.Shutdown()
	if s.Server() != nil {
		t.Fatal("Server() after Shutdown is not nil")
	}
}
