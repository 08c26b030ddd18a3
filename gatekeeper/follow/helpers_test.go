package follow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/licenseledger/ledger/gatekeeper"
	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/ledger"
	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/postgres"
	"github.com/licenseledger/ledger/internal/projection"
	"github.com/licenseledger/ledger/internal/testenv/licensetest"
	"github.com/licenseledger/ledger/internal/testenv/natstest"
	"github.com/licenseledger/ledger/internal/testenv/pgtest"
	"github.com/licenseledger/ledger/license"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var op = events.Actor{Kind: events.ActorOperator, ID: "op"}

// testKeys trusts vendor key k1 only.
func testKeys(t testing.TB) *license.Keys {
	t.Helper()
	return licensetest.Keys(t, "k1")
}

// env is a NATS server with the stream and a ledger appending to it.
type env struct {
	srv *natstest.Server
	js  jetstream.JetStream // ledger credentials, for hand-made messages
	svc *ledger.Service
	n   atomic.Int64 // license counter
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := newEnvNotStarted(t)
	if err := e.svc.Start(context.Background(), events.LedgerStarted{}); err != nil {
		t.Fatal(err)
	}
	return e
}

// newEnvNotStarted provisions the stream; no ledger.started is appended.
func newEnvNotStarted(t testing.TB) *env {
	t.Helper()
	srv := natstest.Start(t)
	srv.CreateStream(t)
	nc := srv.Connect(t, natsauth.RoleLedger)
	bus, _, err := natsbus.Open(context.Background(), nc, natsbus.DefaultStream, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	e := &env{srv: srv, js: js}
	// A grace default other than the contract's 7 days, so a reader that
	// guesses a pending license's grace instead of finding it is caught.
	e.svc = ledger.New(ledger.Config{Store: bus, Keys: testKeys(t), DefaultGraceDays: 11})
	return e
}

// payload is a valid license for org (a slug, or "*").
func (e *env) payload(org string) (string, map[string]any) {
	n := e.n.Add(1)
	id := fmt.Sprintf("0193a5b0-7e1a-7c3d-8f00-%012d", n)
	return id, map[string]any{"license_id": id, "customer": "Customer " + org, "org_slug": org, "tier": "professional",
		"features": []string{"sso"}, "issued_at": time.Date(2026, 1, 1, 0, 0, int(n), 0, time.UTC).Format(time.RFC3339),
		"expires": time.Now().Add(90 * 24 * time.Hour).UTC().Format(time.RFC3339)}
}

// upload uploads a fresh license for org and returns its id and the result.
func (e *env) upload(t testing.TB, org string) (string, ledger.Result) {
	t.Helper()
	slug := org
	if org == license.InstanceOrg {
		slug = "*"
	}
	id, p := e.payload(slug)
	res, err := e.svc.Upload(context.Background(), ledger.Upload{Org: org, Body: []byte(licensetest.Sign(t, "k1", p).Key), Actor: op, Source: events.SourceAPI})
	if err != nil {
		t.Fatalf("upload %s: %v", org, err)
	}
	return id, res
}

func (e *env) invalidate(t testing.TB, org, id string) ledger.Result {
	t.Helper()
	res, err := e.svc.Invalidate(context.Background(), org, op, id, "test")
	if err != nil {
		t.Fatalf("invalidate %s: %v", org, err)
	}
	return res
}

// scenario appends every kind of org event.
func (e *env) scenario(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	e.upload(t, "acme")
	e.upload(t, "acme")
	// A pending license without grace_days: its effective grace is only on
	// the stream (rows do not keep it).
	_, p := e.payload("acme")
	p["issued_at"] = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC).Format(time.RFC3339)
	p["not_before"] = time.Now().Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339)
	res, err := e.svc.Upload(ctx, ledger.Upload{Org: "acme", Body: []byte(licensetest.Sign(t, "k1", p).Key), Actor: op, Source: events.SourceAPI})
	if err != nil || !res.Appended {
		t.Fatalf("pending upload: %v", err)
	}
	g, _ := e.upload(t, "globex")
	e.invalidate(t, "globex", g)
	e.upload(t, "initech")
	if _, err := e.svc.Remove(ctx, "initech", op); err != nil {
		t.Fatal(err)
	}
	e.upload(t, license.InstanceOrg)
	if _, err := e.svc.SetEnforcement(ctx, op, "on"); err != nil {
		t.Fatal(err)
	}
	e.svc.Upload(ctx, ledger.Upload{Org: "acme", Body: []byte("garbage"), Actor: op, Source: events.SourceCLI}) // rejected: audit only
}

// publish appends raw bytes on subject with ledger credentials.
func (e *env) publish(t testing.TB, subject string, data []byte) uint64 {
	t.Helper()
	ack, err := e.js.Publish(context.Background(), subject, data)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

// readerBus opens the stream as the reader role on a new connection.
func (e *env) readerBus(t testing.TB, opts ...nats.Option) *natsbus.Bus {
	t.Helper()
	return openReader(t, e.srv.Connect(t, natsauth.RoleReader, opts...))
}

func openReader(t testing.TB, nc *nats.Conn) *natsbus.Bus {
	t.Helper()
	b, _, err := natsbus.Open(context.Background(), nc, natsbus.DefaultStream, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (e *env) head(t testing.TB) uint64 {
	t.Helper()
	s, err := e.js.Stream(context.Background(), natsbus.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

// start runs a follower until the test ends. With wait it also waits for
// the initial load.
func start(t testing.TB, cfg Config, wait bool, setup ...func(*Follower)) *Follower {
	t.Helper()
	if cfg.Keys == nil {
		cfg.Keys = testKeys(t)
	}
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range setup {
		s(f)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("follower did not stop")
		}
	})
	if wait {
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		if err := f.Wait(wctx); err != nil {
			t.Fatalf("follower not loaded: %v", err)
		}
	}
	return f
}

// state calls State with a bounded context.
func state(t testing.TB, f *Follower, org string, minSeq uint64) (own, inst *license.OrgState, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return f.State(ctx, org, minSeq)
}

func mustState(t testing.TB, f *Follower, org string, minSeq uint64) (own, inst *license.OrgState) {
	t.Helper()
	own, inst, err := state(t, f, org, minSeq)
	if err != nil {
		t.Fatalf("State(%s, %d): %v", org, minSeq, err)
	}
	if own == nil || inst == nil {
		t.Fatalf("State(%s): nil state", org)
	}
	return own, inst
}

// eventually polls cond every 2 ms until it holds or d passes, and returns
// how long it took.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	began := time.Now()
	for !cond() {
		if time.Since(began) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(began)
}

// migrated returns a migrated database's DSN and a pool on it.
func migrated(t testing.TB) (string, *pgxpool.Pool) {
	t.Helper()
	dsn := pgtest.NewDatabase(t)
	if err := postgres.Migrate(context.Background(), dsn, "up", postgres.Roles{}, io.Discard); err != nil {
		t.Fatal(err)
	}
	return dsn, pgtest.NewPool(t, dsn)
}

// projector runs a projector from a reader connection; stop ends it.
type projector struct {
	p      *postgres.Projector
	cancel context.CancelFunc
	done   chan error
}

func (e *env) runProjector(t testing.TB, pool *pgxpool.Pool) *projector {
	t.Helper()
	p := postgres.NewProjector(postgres.ProjectorConfig{Pool: pool, Source: e.readerBus(t), Keys: testKeys(t),
		InstallID: e.svc.InstallID, BatchWait: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	pr := &projector{p: p, cancel: cancel, done: make(chan error, 1)}
	go func() { pr.done <- p.Run(ctx) }()
	t.Cleanup(pr.stop)
	return pr
}

// caughtUp waits until the projector has committed the stream head.
func (pr *projector) caughtUp(t testing.TB, e *env) {
	t.Helper()
	h := e.head(t)
	eventually(t, 20*time.Second, "projector at the stream head", func() bool { return pr.p.Applied() >= h })
}

func (pr *projector) stop() {
	if pr.cancel != nil {
		pr.cancel()
		<-pr.done
		pr.cancel = nil
	}
}

// counting counts the follower's calls to the stream.
type counting struct {
	inner    Stream
	calls    atomic.Int64
	mu       sync.Mutex
	consumes []uint64 // start sequences of Consume calls
}

func (c *counting) Stream(ctx context.Context) (time.Time, uint64, error) {
	c.calls.Add(1)
	return c.inner.Stream(ctx)
}

func (c *counting) Head(ctx context.Context, subject string) (uint64, error) {
	c.calls.Add(1)
	return c.inner.Head(ctx, subject)
}

func (c *counting) Next(ctx context.Context, subject string, seq uint64) (*events.Message, error) {
	c.calls.Add(1)
	return c.inner.Next(ctx, subject, seq)
}

func (c *counting) ReadSubject(ctx context.Context, subject string, after, upTo uint64, fn func(*events.Message) error) error {
	c.calls.Add(1)
	return c.inner.ReadSubject(ctx, subject, after, upTo, fn)
}

func (c *counting) Consume(ctx context.Context, start uint64, hb time.Duration, fn func(*events.Message) error, onIdle func()) error {
	c.calls.Add(1)
	c.mu.Lock()
	c.consumes = append(c.consumes, start)
	c.mu.Unlock()
	return c.inner.Consume(ctx, start, hb, fn, onIdle)
}

// countingRaw is counting with ConsumeRaw: a load on it decodes on every
// core.
type countingRaw struct{ *counting }

func (c countingRaw) ConsumeRaw(ctx context.Context, start uint64, hb time.Duration, fn func(string, uint64, []byte) error, onIdle func()) error {
	c.calls.Add(1)
	c.mu.Lock()
	c.consumes = append(c.consumes, start)
	c.mu.Unlock()
	return c.inner.(rawStream).ConsumeRaw(ctx, start, hb, fn, onIdle)
}

func (c *counting) consumeStarts() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]uint64(nil), c.consumes...)
}

// value reads a counter or gauge.
func value(t testing.TB, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		t.Fatal(err)
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	t.Fatal("unsupported metric")
	return 0
}

func isUnavailable(err error) bool { return errors.Is(err, gatekeeper.ErrUnavailable) }

// report is the status payload of org from a follower's states at t.
func report(org string, own, inst *license.OrgState, t time.Time) license.Report {
	return license.ReportOf(org, own, inst, t)
}

// keyFile writes a key ring file trusting kids.
func keyFile(t testing.TB, kids ...string) string {
	t.Helper()
	var lines []string
	for _, k := range kids {
		lines = append(lines, strings.Replace(licensetest.RingEntry(k), ":", " ", 1))
	}
	p := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// keylessRow is st's read-model row without the key text, which a replica
// does not keep (compact): the fingerprints still name the keys.
func keylessRow(st *license.OrgState) projection.Row {
	r := projection.RowOf(st)
	r.LicenseKey, r.PendingLicenseKey = nil, nil
	return r
}
