// Package natsroletest checks, from outside, what each NATS identity of the
// ledger may do on a running server: the real nats CLI and nats.go, as
// independent clients, try what the identities must be refused, and the
// test looks at the stream afterwards. The same checks run against the
// ledger's embedded server, the shipped cluster configuration and a server
// configured from the Kubernetes values.
package natsroletest

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/testenv/proctest"
)

// Target is a server (or cluster) holding the stream, and the identities'
// seed files.
type Target struct {
	// URL is the server's client URL, or several separated by commas.
	URL string
	// Stream defaults to natsauth.DefaultStream.
	Stream string
	// LedgerSeed, ReaderSeed and AdminSeed are nkey seed files (mode 0600).
	LedgerSeed, ReaderSeed, AdminSeed string
	// NATSCLI is the nats CLI binary (proctest.NATSCLI).
	NATSCLI string
	// Subject holds at least two messages of the stream: the history a
	// per-subject limit of one would drop.
	Subject string
	// Replicas is the stream's replica count in the contract, which the
	// admin restores after its edit.
	Replicas int
}

func (tg Target) stream() string {
	if tg.Stream == "" {
		return natsauth.DefaultStream
	}
	return tg.Stream
}

// deniedWait bounds how long a refused request waits for the answer that
// never comes; the refusal itself is reported at once.
const deniedWait = "3s"

// Check runs every check as a subtest of t.
func Check(t *testing.T, tg Target) {
	t.Run("ledger cannot change the stream", func(t *testing.T) { ledgerCannotEdit(t, tg) })
	t.Run("reader subscribes only to its own inbox", func(t *testing.T) { readerOwnInboxOnly(t, tg) })
	t.Run("reader leaves no consumer behind", func(t *testing.T) { readerLeavesNoConsumer(t, tg) })
	t.Run("admin can edit the stream", func(t *testing.T) { adminCanEdit(t, tg) })
}

// cli runs the nats CLI as the identity of seed, with role's inbox prefix
// (without it the server refuses the CLI's reply subscription).
func (tg Target) cli(t *testing.T, seed string, role natsauth.Role, args ...string) (string, error) {
	t.Helper()
	base := []string{"--server", tg.URL, "--nkey", seed, "--inbox-prefix", natsauth.InboxPrefix(role)}
	return proctest.RunNATSCLI(t, tg.NATSCLI, append(base, args...)...)
}

// ledgerCannotEdit: `nats stream edit --max-msgs-per-subject 1` with the
// ledger's seed would make JetStream drop all but the last message of
// every subject. The server refuses it and the history stays.
func ledgerCannotEdit(t *testing.T, tg Target) {
	admin := tg.connect(t, tg.AdminSeed, natsauth.RoleAdmin, nil)
	before := tg.history(t, admin)
	if before.onSubject < 2 {
		t.Fatalf("%s holds %d messages: the check needs history to lose", tg.Subject, before.onSubject)
	}
	out, err := tg.cli(t, tg.LedgerSeed, natsauth.RoleLedger, "stream", "edit", tg.stream(),
		"--max-msgs-per-subject", "1", "-f", "--timeout", deniedWait)
	update := `Permissions Violation for Publish to "$JS.API.STREAM.UPDATE.` + tg.stream() + `"`
	if err == nil || !strings.Contains(out, update) {
		t.Errorf("nats stream edit with the ledger's seed: %v, want the server to refuse it (%s):\n%s", err, update, out)
	}
	after := tg.history(t, admin)
	if after != before {
		t.Errorf("history changed: %+v before, %+v after", before, after)
	}
	if cfg := tg.config(t, admin); cfg.MaxMsgsPerSubject > 0 {
		t.Errorf("max_msgs_per_subject is %d", cfg.MaxMsgsPerSubject)
	}
}

// readerOwnInboxOnly: the reader, shared by every gatekeeper, may not
// subscribe to the replies of other identities (the ledger's publish
// acknowledgements) or to every inbox, but does get its own replies.
func readerOwnInboxOnly(t *testing.T, tg Target) {
	nc := tg.connect(t, tg.ReaderSeed, natsauth.RoleReader, nats.PermissionErrOnSubscribe(true))
	refused := []string{"_INBOX.>", "_INBOX.*", natsauth.InboxSubjects(natsauth.RoleLedger), natsauth.InboxSubjects(natsauth.RoleAdmin)}
	subs := make([]*nats.Subscription, len(refused))
	for i, subject := range refused {
		var err error
		if subs[i], err = nc.SubscribeSync(subject); err != nil {
			t.Fatal(err)
		}
	}
	// The server answers each SUB before the flush's PONG, and nats.go
	// records a refusal on the subscription as it reads it.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for i, sub := range subs {
		if _, err := sub.NextMsg(10 * time.Millisecond); !errors.Is(err, nats.ErrPermissionViolation) {
			t.Errorf("the reader may subscribe to %s (%v)", refused[i], err)
		}
	}
	// Its own inbox works: a JetStream request gets its answer.
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.Stream(ctx, tg.stream()); err != nil {
		t.Errorf("the reader cannot read stream info through its inbox: %v", err)
	}
}

// readerLeavesNoConsumer: the legacy durable API is refused; a durable
// created through the current API (which ephemeral consumers share) gets
// the stream's inactivity limit, cannot ask for a longer one, and is
// removed by the server once unused.
func readerLeavesNoConsumer(t *testing.T, tg Target) {
	nc := tg.connect(t, tg.ReaderSeed, natsauth.RoleReader, nil)
	legacy := "$JS.API.CONSUMER.DURABLE.CREATE." + tg.stream() + ".probe"
	req, _ := json.Marshal(map[string]any{"stream_name": tg.stream(), "config": map[string]any{"durable_name": "probe", "ack_policy": "explicit"}})
	if err := nc.PublishRequest(legacy, nc.NewInbox(), req); err != nil {
		t.Fatal(err)
	}
	// A refused publish is answered with -ERR before the flush's PONG.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if le := nc.LastError(); le == nil || !strings.Contains(le.Error(), `Permissions Violation for Publish to "`+legacy+`"`) {
		t.Errorf("the reader may use %s (last error: %v)", legacy, le)
	}

	admin := tg.connect(t, tg.AdminSeed, natsauth.RoleAdmin, nil)
	out, err := tg.cli(t, tg.ReaderSeed, natsauth.RoleReader, "consumer", "add", tg.stream(), "reader-durable", "--pull", "--defaults")
	if err != nil {
		t.Fatalf("nats consumer add as the reader: %v\n%s", err, out)
	}
	info := tg.consumer(t, admin, "reader-durable")
	if info == nil || info.Config.Durable != "reader-durable" || info.Config.InactiveThreshold != natsbus.ConsumerInactiveThreshold {
		t.Errorf("the reader's durable: %+v, want inactive_threshold %s", info, natsbus.ConsumerInactiveThreshold)
	}
	tg.deleteConsumer(t, admin, "reader-durable")

	out, err = tg.cli(t, tg.ReaderSeed, natsauth.RoleReader, "consumer", "add", tg.stream(), "reader-forever", "--pull", "--defaults",
		"--inactive-threshold", "8760h")
	if err == nil || !strings.Contains(out, "10153") {
		t.Errorf("a consumer kept for a year: %v, want the server's refusal (10153):\n%s", err, out)
	}
	if tg.consumer(t, admin, "reader-forever") != nil {
		t.Error("the consumer kept for a year exists")
	}

	// An unused consumer goes: the server removes it after its threshold.
	out, err = tg.cli(t, tg.ReaderSeed, natsauth.RoleReader, "consumer", "add", tg.stream(), "reader-brief", "--pull", "--defaults",
		"--inactive-threshold", "1s")
	if err != nil {
		t.Fatalf("nats consumer add --inactive-threshold 1s: %v\n%s", err, out)
	}
	deadline := time.Now().Add(time.Minute)
	for tg.consumer(t, admin, "reader-brief") != nil {
		if time.Now().After(deadline) {
			t.Fatal("the reader's unused consumer is still there a minute after its 1s threshold")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// adminCanEdit: the stream administrator changes the configuration (a
// maximum age of ten years, which drops nothing today), then restores the
// contract's.
func adminCanEdit(t *testing.T, tg Target) {
	admin := tg.connect(t, tg.AdminSeed, natsauth.RoleAdmin, nil)
	before := tg.history(t, admin)
	out, err := tg.cli(t, tg.AdminSeed, natsauth.RoleAdmin, "stream", "edit", tg.stream(), "--max-age", "10y", "-f")
	if err != nil {
		t.Fatalf("nats stream edit with the admin's seed: %v\n%s", err, out)
	}
	if cfg := tg.config(t, admin); cfg.MaxAge != 10*365*24*time.Hour {
		t.Errorf("max_age after the admin's edit: %s", cfg.MaxAge)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := natsbus.NewConn(admin).ApplyStream(ctx, tg.stream(), tg.Replicas, false)
	if err != nil {
		t.Fatalf("restore the contract's configuration: %v", err)
	}
	if len(res.Left) != 0 || len(res.Changed) != 1 || res.Changed[0].Field != "max_age" {
		t.Errorf("restoring changed %v, left %v; want max_age changed only", res.Changed, res.Left)
	}
	if after := tg.history(t, admin); after != before {
		t.Errorf("history changed: %+v before, %+v after", before, after)
	}
}

// history is what a limit would shrink.
type history struct{ total, onSubject uint64 }

func (tg Target) history(t *testing.T, nc *nats.Conn) history {
	t.Helper()
	ctx, s := tg.streamOf(t, nc)
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(tg.Subject))
	if err != nil {
		t.Fatal(err)
	}
	return history{total: info.State.Msgs, onSubject: info.State.Subjects[tg.Subject]}
}

func (tg Target) config(t *testing.T, nc *nats.Conn) jetstream.StreamConfig {
	t.Helper()
	_, s := tg.streamOf(t, nc)
	return s.CachedInfo().Config
}

// streamOf looks the stream up as nc's user, with a context bounded for
// the rest of the test's call.
func (tg Target) streamOf(t *testing.T, nc *nats.Conn) (context.Context, jetstream.Stream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, tg.stream())
	if err != nil {
		t.Fatal(err)
	}
	return ctx, s
}

// consumer returns the consumer's info, or nil when it does not exist.
func (tg Target) consumer(t *testing.T, nc *nats.Conn, name string) *jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	c, err := js.Consumer(ctx, tg.stream(), name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return c.CachedInfo()
}

func (tg Target) deleteConsumer(t *testing.T, nc *nats.Conn, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteConsumer(ctx, tg.stream(), name); err != nil {
		t.Fatal(err)
	}
}

// connect opens a nats.go connection as the identity of seed with role's
// inbox prefix, closed when the test ends.
func (tg Target) connect(t *testing.T, seed string, role natsauth.Role, extra nats.Option) *nats.Conn {
	t.Helper()
	id, err := natsauth.LoadIdentity(seed, role)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := natsauth.ConnectOption(id.Seed)
	if err != nil {
		t.Fatal(err)
	}
	opts := []nats.Option{auth, nats.CustomInboxPrefix(natsauth.InboxPrefix(role)), nats.Name("natsroletest-" + string(role)),
		nats.Timeout(5 * time.Second),
		// The refusals are what the checks provoke; they read them from the
		// connection and its subscriptions.
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})}
	if extra != nil {
		opts = append(opts, extra)
	}
	nc, err := nats.Connect(tg.URL, opts...)
	if err != nil {
		t.Fatalf("connect as %s: %v", role, err)
	}
	t.Cleanup(nc.Close)
	return nc
}
