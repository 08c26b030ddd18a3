package postgres_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/internal/audit"
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

// migrated returns a pool on a fresh, migrated database.
func migrated(t *testing.T) (*pgxpool.Pool, string) {
	t.Helper()
	dsn := pgtest.NewDatabase(t)
	if err := postgres.Migrate(context.Background(), dsn, "up", postgres.Roles{}, io.Discard); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool, dsn
}

func keys(t testing.TB) *license.Keys {
	t.Helper()
	return licensetest.Keys(t, "k1")
}

type env struct {
	srv *natstest.Server
	bus *natsbus.Bus
	js  jetstream.JetStream
	svc *ledger.Service
	now time.Time
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := natstest.Start(t)
	srv.CreateStream(t)
	nc := srv.Connect(t, natsauth.RoleLedger)
	bus, _, err := natsbus.Open(context.Background(), nc, "LICENSES", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	e := &env{srv: srv, bus: bus, js: js, now: time.Now()}
	e.svc = ledger.New(ledger.Config{Store: bus, Keys: keys(t), DefaultGraceDays: 7, Now: func() time.Time { return e.now }})
	if err := e.svc.Start(context.Background(), events.LedgerStarted{}); err != nil {
		t.Fatal(err)
	}
	return e
}

func payload(org, id string, mod func(map[string]any)) map[string]any {
	p := map[string]any{"license_id": id, "customer": "Customer " + org, "org_slug": org, "tier": "professional",
		"products": []string{"hub"}, "features": []string{"sso", "audit"}, "issued_at": "2026-11-01T00:00:00Z",
		"expires": time.Now().Add(90 * 24 * time.Hour).UTC().Format(time.RFC3339), "users_limit": 25}
	if mod != nil {
		mod(p)
	}
	return p
}

// scenario appends every kind of event and a few hand-made messages.
func (e *env) scenario(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	op := events.Actor{Kind: events.ActorOperator, ID: "op"}
	up := func(org string, p map[string]any) {
		t.Helper()
		if _, err := e.svc.Upload(ctx, ledger.Upload{Org: org, Body: []byte(licensetest.Sign(t, "k1", p).Key), Actor: op, Source: events.SourceAPI}); err != nil {
			t.Fatalf("upload %s: %v", org, err)
		}
	}
	up("acme", payload("acme", "0193a5b0-7e1a-7c3d-8f00-00000000a001", nil))
	up("acme", payload("acme", "0193a5b0-7e1a-7c3d-8f00-00000000a002", func(p map[string]any) {
		p["issued_at"] = "2026-11-20T00:00:00Z"
		p["not_before"] = time.Now().Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339)
		p["grace_days"] = 3
	}))
	up("globex", payload("globex", "0193a5b0-7e1a-7c3d-8f00-00000000b001", func(p map[string]any) { p["grace_days"] = 0 }))
	e.svc.Invalidate(ctx, "globex", op, "0193a5b0-7e1a-7c3d-8f00-00000000b001", "chargeback")
	up("initech", payload("initech", "0193a5b0-7e1a-7c3d-8f00-00000000c001", nil))
	e.svc.Remove(ctx, "initech", op)
	up(license.InstanceOrg, payload("*", "0193a5b0-7e1a-7c3d-8f00-00000000d001", nil))
	e.svc.SetEnforcement(ctx, op, "off")
	e.svc.Upload(ctx, ledger.Upload{Org: "acme", Body: []byte("garbage"), Actor: op, Source: events.SourceCLI})
	// Hand-made: garbage on an org subject, a forged upload, bytes that are
	// not UTF-8, JSON with a NUL escape.
	head, _ := e.bus.Head(ctx, events.OrgSubject("acme"))
	e.publish(t, events.OrgSubject("acme"), []byte("not an envelope"))
	forged := licensetest.SignAs(t, "k9", "k1", payload("hooli", "0193a5b0-7e1a-7c3d-8f00-00000000e001", nil))
	env, _ := events.New(events.TypeUploaded, "hooli", time.Now(), op, 0, events.Uploaded{LicenseID: "0193a5b0-7e1a-7c3d-8f00-00000000e001",
		Fingerprint: forged.Fingerprint, Key: forged.Key, Slot: events.SlotCurrent, GraceDaysEffective: 7, Source: events.SourceAPI})
	raw, _ := env.Encode()
	e.publish(t, events.OrgSubject("hooli"), raw)
	e.publish(t, events.AuditSubject("acme"), []byte{0xff, 0xfe, '{'})
	e.publish(t, events.AuditSubject("acme"), []byte(`{"note":"\u0000"}`))
	// The chain continues after the garbage.
	if _, err := e.svc.Invalidate(ctx, "acme", op, "0193a5b0-7e1a-7c3d-8f00-00000000a0ff", "pre-emptive"); err != nil {
		t.Fatal(err)
	}
	_ = head
}

func (e *env) publish(t *testing.T, subject string, data []byte) {
	t.Helper()
	if _, err := e.js.Publish(context.Background(), subject, data); err != nil {
		t.Fatal(err)
	}
}

// readerSource is the stream as the projector's reader role sees it.
func (e *env) readerSource(t *testing.T) *natsbus.Bus {
	t.Helper()
	b, _, err := natsbus.Open(context.Background(), e.srv.Connect(t, natsauth.RoleReader), "LICENSES", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// memoryModel folds the whole stream in memory: the embedded default's
// read model and audit trail.
func memoryModel(t *testing.T, e *env) (map[string]projection.Row, []audit.Record) {
	t.Helper()
	ctx := context.Background()
	_, head, _ := e.bus.Stream(ctx)
	trust := projection.Trust{Ring: keys(t).Ring(), InstallID: e.svc.InstallID()}
	states := projection.States{}
	trail := audit.NewMemory(e.bus)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	err := e.bus.Consume(cctx, 1, time.Second, func(m *events.Message) error {
		trail.Append(m, time.Now())
		states.Apply(trust, m)
		if m.Seq >= head {
			cancel()
		}
		return nil
	}, nil)
	if err != nil && cctx.Err() == nil {
		t.Fatal(err)
	}
	var records []audit.Record
	err = trail.Scan(ctx, audit.Query{}, func(r *audit.Record) error {
		records = append(records, *r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return states.Rows(), records
}

func pgAudit(t *testing.T, pool *pgxpool.Pool) []audit.Record {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT seq, coalesce(event_id::text, ''), subject, coalesce(org_slug, ''), type,
		coalesce(actor_kind, ''), coalesce(actor_id, ''), occurred_at, envelope_raw, prev_hash, hash, tree_hashes FROM license_audit ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []audit.Record
	for rows.Next() {
		var r audit.Record
		var seq int64
		var at *time.Time
		var prev, hash []byte
		if err := rows.Scan(&seq, &r.EventID, &r.Subject, &r.Org, &r.Type, &r.ActorKind, &r.ActorID, &at, &r.Raw, &prev, &hash, &r.Tree); err != nil {
			t.Fatal(err)
		}
		r.Seq = uint64(seq)
		if at != nil {
			r.At = at.UTC()
		}
		copy(r.PrevHash[:], prev)
		copy(r.Hash[:], hash)
		out = append(out, r)
	}
	return out
}

func pgRows(t *testing.T, pool *pgxpool.Pool) map[string]projection.Row {
	t.Helper()
	out := map[string]projection.Row{}
	if err := postgres.ReadRows(context.Background(), pool, func(r projection.Row) error { out[r.OrgSlug] = r; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// sameRecords compares every audit column but recorded_at.
func sameRecords(t *testing.T, mem, pg []audit.Record) {
	t.Helper()
	if len(mem) != len(pg) {
		t.Fatalf("%d records in memory, %d in PostgreSQL", len(mem), len(pg))
	}
	for i := range mem {
		a, b := mem[i], pg[i]
		a.RecordedAt, b.RecordedAt = time.Time{}, time.Time{}
		if !a.At.Equal(b.At) {
			t.Fatalf("seq %d: at %v vs %v", a.Seq, a.At, b.At)
		}
		a.At, b.At = time.Time{}, time.Time{}
		if fmt.Sprintf("%+v", a) != fmt.Sprintf("%+v", b) {
			t.Fatalf("seq %d differs:\nmemory %+v\npg     %+v", a.Seq, a, b)
		}
	}
}

func sameRows(t *testing.T, mem, pg map[string]projection.Row) {
	t.Helper()
	if len(mem) != len(pg) {
		t.Fatalf("%d rows in memory, %d in PostgreSQL", len(mem), len(pg))
	}
	for org, a := range mem {
		b, ok := pg[org]
		if !ok {
			t.Fatalf("no PostgreSQL row for %s", org)
		}
		ja, _ := json.Marshal(normal(a))
		jb, _ := json.Marshal(normal(b))
		if !bytes.Equal(ja, jb) {
			t.Fatalf("%s differs:\nmemory %s\npg     %s", org, ja, jb)
		}
	}
}

// normal makes times comparable (UTC, microseconds).
func normal(r projection.Row) projection.Row {
	for _, p := range []**time.Time{&r.IssuedAt, &r.NotBefore, &r.ExpiresAt, &r.PendingNotBefore} {
		if *p != nil {
			u := (*p).UTC().Truncate(time.Microsecond)
			*p = &u
		}
	}
	r.UpdatedAt = r.UpdatedAt.UTC().Truncate(time.Microsecond)
	return r
}

// The conformance suite: the same event sequence projected in memory and
// into PostgreSQL gives the same rows and audit records.
func TestConformanceMemoryAndPostgres(t *testing.T) {
	e := newEnv(t)
	e.scenario(t)
	pool, _ := migrated(t)
	startProjector(t, e, pool, nil)
	memRows, memAudit := memoryModel(t, e)
	sameRows(t, memRows, pgRows(t, pool))
	sameRecords(t, memAudit, pgAudit(t, pool))
	pg := pgRows(t, pool)
	if r := pg["globex"]; !r.Revoked || r.RevokedNote == nil || *r.RevokedNote != "chargeback" {
		t.Fatalf("globex row %+v", r)
	}
	if r := pg["initech"]; r.LicenseID != nil || len(r.Features) != 0 || r.Features == nil {
		t.Fatalf("removed row %+v", r)
	}
	if r := pg["acme"]; r.PendingLicenseID == nil || *r.PendingLicenseID != "0193a5b0-7e1a-7c3d-8f00-00000000a002" {
		t.Fatalf("pending row %+v", r)
	}
	// Invalid messages are audited, with their raw bytes, as type invalid.
	var invalid int
	for _, r := range pgAudit(t, pool) {
		if r.Type == events.TypeInvalid {
			invalid++
		}
	}
	if invalid != 3 {
		t.Fatalf("%d invalid records, want 3", invalid)
	}
}

// Two projectors race: exactly one is active; killing it hands over, and
// the other resumes from the checkpoint: no duplicate, no gap, the chain
// continues.
func TestProjectorHandOver(t *testing.T) {
	e := newEnv(t)
	e.scenario(t)
	pool, _ := migrated(t)
	type run struct {
		p    *postgres.Projector
		stop func() error
	}
	start := func() *run {
		ctx, cancel := context.WithCancel(context.Background())
		r := &run{p: postgres.NewProjector(postgres.ProjectorConfig{Pool: pool, Source: e.readerSource(t), Keys: keys(t),
			InstallID: e.svc.InstallID, BatchSize: 3})}
		done := make(chan error, 1)
		go func() { done <- r.p.Run(ctx) }()
		var once sync.Once
		var err error
		r.stop = func() error { once.Do(func() { cancel(); err = <-done }); return err }
		t.Cleanup(func() { r.stop() })
		return r
	}
	a, b := start(), start()
	waitApplied := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (a at %d active %v, b at %d active %v)", what,
					a.p.Applied(), a.p.Active(), b.p.Applied(), b.p.Active())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	_, head, _ := e.bus.Stream(context.Background())
	waitApplied("catch-up", func() bool { return max(a.p.Applied(), b.p.Applied()) >= head })
	if a.p.Active() == b.p.Active() {
		t.Fatalf("both or neither active: %v %v", a.p.Active(), b.p.Active())
	}
	active, standby := a, b
	if b.p.Active() {
		active, standby = b, a
	}
	if err := active.stop(); err != nil {
		t.Fatalf("the active projector stopped with %v", err)
	}
	if err := standby.p.Stopped(); err != nil {
		t.Fatalf("the standby stopped: %v", err)
	}
	op := events.Actor{Kind: events.ActorOperator, ID: "op"}
	if _, err := e.svc.Invalidate(context.Background(), "acme", op, "0193a5b0-7e1a-7c3d-8f00-00000000a0fe", ""); err != nil {
		t.Fatal(err)
	}
	_, head, _ = e.bus.Stream(context.Background())
	waitApplied("hand-over", func() bool { return standby.p.Active() && standby.p.Applied() >= head })
	memRows, memAudit := memoryModel(t, e)
	sameRows(t, memRows, pgRows(t, pool))
	sameRecords(t, memAudit, pgAudit(t, pool))
}

func TestProjectorStopsOnNewerSchema(t *testing.T) {
	e := newEnv(t)
	pool, _ := migrated(t)
	env, _ := events.New(events.TypeRemoved, "acme", time.Now(), events.Actor{Kind: "operator", ID: "x"}, 0, events.Removed{LicenseID: "y"})
	env.Schema = 2
	raw, _ := env.Encode()
	e.publish(t, events.OrgSubject("acme"), raw)
	p := postgres.NewProjector(postgres.ProjectorConfig{Pool: pool, Source: e.readerSource(t), Keys: keys(t)})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Run(ctx); !errors.Is(err, postgres.ErrSchemaTooNew) || !errors.Is(p.Stopped(), postgres.ErrSchemaTooNew) {
		t.Fatalf("run: %v, stopped: %v", err, p.Stopped())
	}
	var n int
	pool.QueryRow(ctx, `SELECT count(*) FROM license_audit WHERE type <> 'ledger.started'`).Scan(&n)
	if n != 0 {
		t.Fatalf("%d rows written past a too-new schema", n)
	}
}
