package natsbus_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/testenv/faultproxy"
	"github.com/licenseledger/ledger/internal/testenv/natstest"
)

func event(t *testing.T, prev uint64) *events.Envelope {
	t.Helper()
	env, err := events.New(events.TypeRemoved, "acme", time.Now(), events.Actor{Kind: "operator", ID: "t"}, prev, events.Removed{LicenseID: "x"})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// openBus binds to the stream as the ledger does (it must exist).
func openBus(t *testing.T, nc *nats.Conn) *natsbus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, _, err := natsbus.Open(ctx, nc, "LICENSES", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The stream administrator provisions the stream with the contract's
// configuration; the ledger binds to it and may not create it.
func TestStreamProvisioning(t *testing.T) {
	srv := natstest.Start(t)
	ctx := context.Background()
	ledgerNC := srv.Connect(t, natsauth.RoleLedger)
	if _, _, err := natsbus.Open(ctx, ledgerNC, "LICENSES", 1, false); !errors.Is(err, jetstream.ErrStreamNotFound) ||
		!strings.Contains(err.Error(), "ledger stream apply") {
		t.Fatalf("the ledger on a missing stream: %v", err)
	}
	// Asked to create it, the ledger's credentials are refused at once
	// (not retried until the context ends).
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, _, err := natsbus.Open(cctx, ledgerNC, "LICENSES", 1, true)
	if !errors.Is(err, nats.ErrPermissionViolation) || cctx.Err() != nil {
		t.Fatalf("the ledger creating the stream: %v (context: %v)", err, cctx.Err())
	}
	nc := srv.Connect(t, natsauth.RoleAdmin)
	b, _, err := natsbus.Open(ctx, nc, "LICENSES", 1, true)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	s, _ := js.Stream(ctx, "LICENSES")
	cfg := s.CachedInfo().Config
	want := natsbus.StreamConfig("LICENSES", 1)
	if cfg.Storage != jetstream.FileStorage || cfg.Retention != jetstream.LimitsPolicy || cfg.MaxAge != 0 ||
		cfg.MaxMsgs != -1 || cfg.MaxBytes != -1 || cfg.MaxMsgsPerSubject != -1 || cfg.Discard != jetstream.DiscardNew ||
		cfg.Duplicates != 2*time.Minute || !cfg.DenyDelete || !cfg.DenyPurge || !cfg.AllowDirect ||
		strings.Join(cfg.Subjects, ",") != strings.Join(want.Subjects, ",") || cfg.MaxConsumers != natsbus.MaxConsumers ||
		cfg.ConsumerLimits.InactiveThreshold != natsbus.ConsumerInactiveThreshold {
		t.Fatalf("stream config %+v", cfg)
	}
	if d := natsbus.Drift(cfg, 1); len(d) != 0 {
		t.Fatalf("a new stream drifts: %v", d)
	}
	if _, _, err := natsbus.Open(ctx, ledgerNC, "LICENSES", 1, false); err != nil {
		t.Fatalf("the ledger on the provisioned stream: %v", err)
	}
	// Idempotent: opening again changes nothing.
	info1, _ := b.Info(ctx)
	_, info2, err := natsbus.Open(ctx, nc, "LICENSES", 1, true)
	if err != nil || !info2.Created.Equal(info1.Created) {
		t.Fatalf("reopen: %v %v %v", err, info1.Created, info2.Created)
	}

	// A stream with a limit or a protection off is refused.
	for name, mod := range map[string]func(*jetstream.StreamConfig){
		"max age":     func(c *jetstream.StreamConfig) { c.MaxAge = time.Hour },
		"max msgs":    func(c *jetstream.StreamConfig) { c.MaxMsgs = 1000 },
		"per subject": func(c *jetstream.StreamConfig) { c.MaxMsgsPerSubject = 1 },
		"purge":       func(c *jetstream.StreamConfig) { c.DenyPurge = false },
		"delete":      func(c *jetstream.StreamConfig) { c.DenyDelete = false },
		"discard old": func(c *jetstream.StreamConfig) { c.Discard = jetstream.DiscardOld },
	} {
		t.Run(name, func(t *testing.T) {
			bad := natsbus.StreamConfig("BAD", 1)
			bad.Subjects = []string{"licenses.org.*", "licenses.audit.*"}
			mod(&bad)
			if err := natsbus.CheckConfig(bad); err == nil {
				t.Fatalf("CheckConfig accepted %s", name)
			}
		})
	}
	srv2 := natstest.Start(t)
	js2 := srv2.JetStream(t, natsauth.RoleAdmin)
	bad := natsbus.StreamConfig("LICENSES", 1)
	bad.MaxAge = 24 * time.Hour
	if _, err := js2.CreateStream(ctx, bad); err != nil {
		t.Fatal(err)
	}
	_, _, err = natsbus.Open(ctx, srv2.Connect(t, natsauth.RoleLedger), "LICENSES", 1, false)
	if err == nil || !strings.Contains(err.Error(), "max_age") || !strings.Contains(err.Error(), "ledger stream apply") {
		t.Fatalf("existing stream with max_age: %v", err)
	}
	_, _, err = natsbus.Open(ctx, srv2.Connect(t, natsauth.RoleReader), "LICENSES", 1, false)
	if err == nil {
		t.Fatal("a reader accepted a stream with max_age")
	}
}

func TestAppendConcurrencyR1(t *testing.T) {
	srv := natstest.Start(t)
	srv.CreateStream(t)
	testAppendConcurrency(t, srv.Connect(t, natsauth.RoleLedger))
}

func TestAppendConcurrencyR3(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	c.CreateStream(t, 3)
	testAppendConcurrency(t, c.Connect(t, natsauth.RoleLedger))
}

func testAppendConcurrency(t *testing.T, nc *nats.Conn) {
	b := openBus(t, nc)
	ctx := context.Background()
	subj := events.OrgSubject("acme")
	s1, err := b.Append(ctx, subj, event(t, 0), 0)
	if err != nil {
		t.Fatal(err)
	}
	// Expecting an old head is a conflict, whatever the replica count.
	if _, err := b.Append(ctx, subj, event(t, 0), 0); !errors.Is(err, events.ErrConflict) {
		t.Fatalf("stale expectation: %v", err)
	}
	// Other subjects are independent.
	if _, err := b.Append(ctx, events.OrgSubject("globex"), event(t, 0), 0); err != nil {
		t.Fatal(err)
	}
	if h, _ := b.Head(ctx, subj); h != s1 {
		t.Fatalf("head %d, want %d", h, s1)
	}
	if h, _ := b.Head(ctx, events.OrgSubject("initech")); h != 0 {
		t.Fatalf("empty subject head %d", h)
	}
}

// A publish that lands but whose ack is lost: the retry finds its own
// event instead of reporting a conflict, and the event is stored once.
func TestAppendUnknownOutcomeR1(t *testing.T) {
	srv := natstest.Start(t)
	srv.CreateStream(t)
	testUnknownOutcome(t, srv.URL(), srv.LedgerSeed)
}

func TestAppendUnknownOutcomeR3(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	c.CreateStream(t, 3)
	testUnknownOutcome(t, strings.Split(c.URLs(), ",")[0], c.LedgerSeed)
}

func testUnknownOutcome(t *testing.T, target string, seed []byte) {
	u, _ := url.Parse(target)
	proxy := faultproxy.Start(t, u.Host)
	auth, err := natsauth.ConnectOption(seed)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect("nats://"+proxy.Addr(), auth, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.DontRandomize(), nats.IgnoreDiscoveredServers(), nats.CustomInboxPrefix(natsauth.InboxPrefix(natsauth.RoleLedger)))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	b := openBus(t, nc)
	b.PublishTimeout = 300 * time.Millisecond
	ctx := context.Background()
	subj := events.OrgSubject("acme")
	first, err := b.Append(ctx, subj, event(t, 0), 0)
	if err != nil {
		t.Fatal(err)
	}
	env := event(t, first)
	proxy.DropReplies(true)
	go func() {
		time.Sleep(700 * time.Millisecond)
		proxy.DropReplies(false)
	}()
	actx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	seq, err := b.Append(actx, subj, env, first)
	if err != nil {
		t.Fatalf("append with a lost ack: %v", err)
	}
	m, err := b.Next(ctx, subj, first+1)
	if err != nil || m == nil || m.Seq != seq || m.Envelope.ID != env.ID {
		t.Fatalf("stored %+v, want id %s at %d (%v)", m, env.ID, seq, err)
	}
	if h, _ := b.Head(ctx, subj); h != seq {
		t.Fatalf("the event was stored more than once: head %d, ours %d", h, seq)
	}
}

// A reader's credentials may not publish: Append says so at once instead
// of retrying an answer that never comes until the context ends.
func TestAppendWithReaderCredentialsFails(t *testing.T) {
	srv := natstest.Start(t)
	srv.CreateStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, _, err := natsbus.Open(ctx, srv.Connect(t, natsauth.RoleReader), "LICENSES", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	b.PublishTimeout = 200 * time.Millisecond
	_, err = b.Append(ctx, events.OrgSubject("acme"), event(t, 0), 0)
	if !errors.Is(err, nats.ErrPermissionViolation) || errors.Is(err, events.ErrUnavailable) || ctx.Err() != nil {
		t.Fatalf("append with reader credentials: %v (context: %v)", err, ctx.Err())
	}
}

// ReadRange on a stream that does not answer fails with ErrUnavailable
// within its wait, whatever the caller's context allows.
func TestReadRangeUnavailable(t *testing.T) {
	srv := natstest.Start(t)
	srv.CreateStream(t)
	b := openBus(t, srv.Connect(t, natsauth.RoleLedger, nats.MaxReconnects(-1)))
	ctx := context.Background()
	if _, err := b.Append(ctx, events.OrgSubject("acme"), event(t, 0), 0); err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()
	began := time.Now()
	err := b.ReadRange(ctx, 1, 1, func(string, uint64, []byte) error { return nil })
	if !errors.Is(err, events.ErrUnavailable) || time.Since(began) > 30*time.Second {
		t.Fatalf("stream down: %v after %v", err, time.Since(began))
	}
}
