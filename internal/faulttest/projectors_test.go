package faulttest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/postgres"
	"github.com/licenseledger/ledger/internal/testenv"
	"github.com/licenseledger/ledger/internal/testenv/licensetest"
	"github.com/licenseledger/ledger/internal/testenv/natstest"
	"github.com/licenseledger/ledger/internal/testenv/pgtest"
	"github.com/licenseledger/ledger/internal/testenv/proctest"
	"github.com/licenseledger/ledger/license"
)

// Environment of TestProjectorProcess, the projector process the racing
// test starts and kills.
const (
	envProjectorDSN  = "FAULTTEST_PROJECTOR_DSN"
	envProjectorNATS = "FAULTTEST_PROJECTOR_NATS"
	envProjectorSeed = "FAULTTEST_PROJECTOR_SEED"
)

// TestProjectorProcess is a projector process (the one `ledger serve`
// runs) that TestProjectorsRacing starts and kills with SIGKILL; it does
// nothing in a normal run.
func TestProjectorProcess(t *testing.T) {
	dsn := os.Getenv(envProjectorDSN)
	if dsn == "" {
		t.Skip("a child process of TestProjectorsRacing")
	}
	ctx := context.Background()
	bus := openReader(t, os.Getenv(envProjectorNATS), os.Getenv(envProjectorSeed))
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	p := postgres.NewProjector(postgres.ProjectorConfig{Pool: pool, Source: bus, Keys: keys(t), Logger: log})
	t.Fatal(p.Run(ctx)) // runs until killed
}

func keys(t testing.TB) *license.Keys {
	t.Helper()
	return licensetest.Keys(t, "k1")
}

// Projectors racing on one database while uploads go on:
//
//  1. two projectors with the advisory lock bypassed both think they are
//     active: every batch of the one behind is refused, and exactly one row
//     per event lands;
//  2. the checkpoint moved under an active projector fences its next
//     batch (ErrFenced): nothing of it is committed; once the checkpoint
//     is back, it goes on;
//  3. the active projector process is killed with SIGKILL while a standby
//     process waits for the lock: the standby takes over from the
//     checkpoint, again and again.
func TestProjectorsRacing(t *testing.T) {
	srv := natstest.Start(t, natstest.WithSyncAlways())
	publishBulk(t, srv, bulkEvents)
	super := pgtest.NewDatabase(t)
	app := ledgerAppDSN(t, super)
	pool := pgtest.NewPool(t, super)
	readerSeed := seedFile(t, srv.ReaderSeed)
	bus := openReader(t, srv.URL(), readerSeed)
	l := startLedger(t, "ledger", map[string]string{"NATS_URL": srv.URL(), "NATS_NKEY": seedFile(t, srv.LedgerSeed)})
	began := time.Now()
	ld := startLoad(t, l, orgNames("race", 6), 3)

	// 1. The lock bypassed: two active projectors, one checkpoint.
	var logs testenv.Buffer
	a := startProjector(t, app, bus, 1, &logs)
	b := startProjector(t, app, bus, 2, &logs)
	ld.waitAcks(acksPerStep, stepTimeout, l.p)
	ld.stopLoad()
	_, head, _ := bus.Stream(context.Background())
	waitProjected(t, pool, head, l.p)
	a.stop()
	b.stop()
	refusedDup := logLines(logs.String(), "projector interrupted", "duplicate key")
	refusedFenced := logLines(logs.String(), "projector interrupted", "checkpoint moved")
	if refusedDup+refusedFenced == 0 {
		t.Fatalf("two projectors without the lock never refused each other's batches:\n%s", logs.String())
	}
	checkAudit(t, pool, readStream(t, bus))
	t.Logf("lock bypassed: done after %s", time.Since(began).Round(time.Millisecond))

	// 2. The checkpoint moved under the active projector.
	logs.Reset()
	c := startProjector(t, app, bus, 0, &logs)
	_, head, _ = bus.Stream(context.Background())
	proctest.WaitFor(t, "the projector to be active at the head", readyTimeout, []*proctest.Process{l.p}, func() error {
		if !c.p.Active() || c.p.Applied() < head {
			return fmt.Errorf("active %v at %d", c.p.Active(), c.p.Applied())
		}
		return nil
	})
	execSQL(t, pool, `UPDATE projection_checkpoints SET last_seq = $1 WHERE name = 'org_licenses'`, int64(head-1))
	fenced := ld.uploadOne(t, "race-fenced")
	proctest.WaitFor(t, "the projector to be fenced", readyTimeout, []*proctest.Process{l.p}, func() error {
		if logLines(logs.String(), "checkpoint moved under this projector") == 0 {
			return fmt.Errorf("projector log:\n%s", logs.String())
		}
		return nil
	})
	var rows int64
	pool.QueryRow(context.Background(), `SELECT count(*) FROM license_audit WHERE seq >= $1`, int64(fenced.seq)).Scan(&rows)
	if rows != 0 {
		t.Fatalf("a fenced batch committed %d audit rows", rows)
	}
	if n := count(t, pool, `SELECT count(*) FROM org_licenses WHERE org_slug = 'race-fenced'`); n != 0 {
		t.Fatalf("a fenced batch committed the row of race-fenced")
	}
	execSQL(t, pool, `UPDATE projection_checkpoints SET last_seq = $1 WHERE name = 'org_licenses'`, int64(head))
	waitProjected(t, pool, fenced.seq, l.p)
	c.stop()
	t.Logf("checkpoint moved: done after %s", time.Since(began).Round(time.Millisecond))

	// 3. kill -9 of the active projector process; a standby takes over.
	acks, statuses := ld.results()
	ld = startLoad(t, l, orgNames("race", 6), 3)
	children := map[string]*proctest.Process{}
	next := 0
	spawn := func() {
		next++
		name := "projector-" + strconv.Itoa(next)
		children[name] = proctest.Start(t, name, os.Args[0], []string{"-test.run=^TestProjectorProcess$", "-test.v"}, map[string]string{
			envProjectorDSN: app + "&application_name=" + name, envProjectorNATS: srv.URL(), envProjectorSeed: readerSeed,
		})
	}
	spawn()
	spawn()
	kills := 0
	for range projectorKills {
		var active string
		proctest.WaitFor(t, "an active projector process", readyTimeout, []*proctest.Process{l.p}, func() error {
			active = lockHolder(pool)
			if children[active] == nil {
				return fmt.Errorf("lock held by %q", active)
			}
			return nil
		})
		ld.waitAcks(acksPerStep, stepTimeout, l.p)
		children[active].Kill()
		delete(children, active)
		kills++
		spawn()
		// The standby takes over and projects what came since.
		_, head, _ := bus.Stream(context.Background())
		waitProjected(t, pool, head, l.p)
		t.Logf("killed %s: handed over after %s", active, time.Since(began).Round(time.Millisecond))
	}
	ld.waitAcks(acksPerStep, stepTimeout, l.p)
	ld.stopLoad()
	more, moreStatuses := ld.results()
	acks = append(append(acks, more...), *fenced)
	for k, v := range moreStatuses {
		statuses[k] += v
	}
	checkEverything(t, bus, pool, acks, l.p)
	report(t, began, acks, statuses, fmt.Sprintf("%d bulk events; lock bypassed: %d batches refused by the audit key, %d by the checkpoint; checkpoint moved once (fenced); %d projector processes killed",
		bulkEvents, refusedDup, refusedFenced, kills))
}

type projectorRun struct {
	p    *postgres.Projector
	stop func()
}

// startProjector runs a projector in this process; lockKey 0 is the
// default lock, others bypass it.
func startProjector(t *testing.T, dsn string, bus *natsbus.Bus, lockKey int64, logs *testenv.Buffer) *projectorRun {
	t.Helper()
	pool := pgtest.NewPool(t, dsn)
	p := postgres.NewProjector(postgres.ProjectorConfig{Pool: pool, Source: bus, Keys: keys(t), LockKey: lockKey,
		BatchSize: 50, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := p.Run(ctx); err != nil {
			t.Errorf("projector stopped: %v", err)
		}
	}()
	var once sync.Once
	r := &projectorRun{p: p, stop: func() { once.Do(func() { cancel(); <-done }) }}
	t.Cleanup(r.stop)
	return r
}

// lockHolder is the application name of the session holding the
// projector's advisory lock, "" if none.
func lockHolder(pool *pgxpool.Pool) string {
	var name string
	pool.QueryRow(context.Background(), `SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&name)
	return name
}

func execSQL(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatal(err)
	}
}

func count(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// uploadOne uploads one license to org, retrying 503s, and returns its ack.
func (ld *load) uploadOne(t *testing.T, org string) *ack {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for time.Now().Before(deadline) {
		key, id, err := ld.newKey(org)
		if err != nil {
			t.Fatal(err)
		}
		before := ld.acked()
		ld.httpUpload(org, key, id)
		ld.mu.Lock()
		n, bad := len(ld.acks), ld.bad
		ld.mu.Unlock()
		if len(bad) > 0 {
			t.Fatalf("upload to %s: %v", org, bad)
		}
		if n > before {
			ld.mu.Lock()
			defer ld.mu.Unlock()
			a := ld.acks[n-1]
			ld.acks = ld.acks[:n-1] // the caller records it
			return &a
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no upload to %s acknowledged within %s", org, readyTimeout)
	return nil
}

// publishBulk creates the stream and appends n events quickly with the
// ledger's identity: one license per org for up to 1,000 orgs, then
// pre-emptive revocations, each with the right prev_seq.
func publishBulk(t *testing.T, srv *natstest.Server, n int) {
	t.Helper()
	ctx := context.Background()
	srv.CreateStream(t)
	nc := srv.Connect(t, natsauth.RoleLedger)
	if _, _, err := natsbus.Open(ctx, nc, natsbus.DefaultStream, 1, false); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4000))
	if err != nil {
		t.Fatal(err)
	}
	last := map[string]uint64{}
	var seq uint64
	op := events.Actor{Kind: events.ActorOperator, ID: "bulk"}
	for i := range n {
		org := "bulk-" + strconv.Itoa(i%1000)
		var env *events.Envelope
		if i < 1000 {
			id := fmt.Sprintf("0193a5b0-7e1a-7c3d-8f00-%012d", i)
			l := licensetest.Sign(t, "k1", map[string]any{"license_id": id, "customer": "Bulk", "org_slug": org,
				"tier": "starter", "issued_at": "2026-11-01T00:00:00Z", "expires": time.Now().Add(90 * 24 * time.Hour).UTC().Format(time.RFC3339)})
			env, err = events.New(events.TypeUploaded, org, time.Now(), op, last[org], events.Uploaded{LicenseID: id,
				Fingerprint: l.Fingerprint, Key: l.Key, Slot: events.SlotCurrent, GraceDaysEffective: 7, Source: events.SourceAPI})
		} else {
			env, err = events.New(events.TypeInvalidated, org, time.Now(), op, last[org],
				events.Invalidated{LicenseID: fmt.Sprintf("0193a5b0-7e1a-7c3d-8f01-%012d", i), Note: "bulk"})
		}
		if err != nil {
			t.Fatal(err)
		}
		raw, err := env.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishAsync(events.OrgSubject(org), raw, jetstream.WithExpectLastSequencePerSubject(last[org])); err != nil {
			t.Fatal(err)
		}
		seq++
		last[org] = seq
		if seq%4000 == 0 {
			waitPublished(t, js)
		}
	}
	waitPublished(t, js)
}

func waitPublished(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(2 * time.Minute):
		t.Fatal("async publish did not complete")
	}
}
