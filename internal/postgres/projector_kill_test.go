package postgres_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/postgres"
	"github.com/licenseledger/ledger/internal/testenv/licensetest"
)

// killEvents is the catch-up size of the kill -9 test.
const killEvents = 100_000

// TestProjectorChild is the projector process the kill -9 test starts and
// kills; it does nothing in a normal run.
func TestProjectorChild(t *testing.T) {
	if os.Getenv("PROJECTOR_CHILD_DSN") == "" {
		t.Skip("run by TestProjectorSurvivesKill9")
	}
	ctx := context.Background()
	nc, err := natsbus.Connect(natsbus.ConnConfig{URL: os.Getenv("PROJECTOR_CHILD_NATS"), NKeyFile: os.Getenv("PROJECTOR_CHILD_SEED")})
	if err != nil {
		t.Fatal(err)
	}
	src, _, err := natsbus.Open(ctx, nc, "LICENSES", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, os.Getenv("PROJECTOR_CHILD_DSN"))
	if err != nil {
		t.Fatal(err)
	}
	p := postgres.NewProjector(postgres.ProjectorConfig{Pool: pool, Source: src, Keys: keys(t), BatchSize: 500})
	t.Fatal(p.Run(ctx)) // runs until killed
}

// kill -9 of the projector at 20 random points of a 100,000-event catch-up:
// exactly one audit row per event, the rows equal the fold, the chain
// verifies.
func TestProjectorSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	e := newEnv(t)
	pool, dsn := migrated(t)
	began := time.Now()
	publishMany(t, e, killEvents)
	t.Logf("published %d events in %v", killEvents, time.Since(began).Round(time.Millisecond))
	began = time.Now()
	ctx := context.Background()
	_, head, _ := e.bus.Stream(ctx)

	seed := filepath.Join(t.TempDir(), "reader.nk")
	os.WriteFile(seed, e.srv.ReaderSeed, 0o600)
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestProjectorChild$", "-test.v")
		cmd.Env = append(os.Environ(), "PROJECTOR_CHILD_DSN="+dsn, "PROJECTOR_CHILD_NATS="+e.srv.URL(), "PROJECTOR_CHILD_SEED="+seed)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	checkpoint := func() uint64 {
		var n int64
		pool.QueryRow(ctx, `SELECT coalesce(max(last_seq), 0) FROM projection_checkpoints`).Scan(&n)
		return uint64(n)
	}
	// Kill points spread over the whole catch-up: wait for the checkpoint to
	// pass a random point in each twentieth, then SIGKILL at once (often
	// mid-transaction).
	kills := 0
	for i := range 20 {
		target := head*uint64(i)/20 + uint64(rand.IntN(int(head/20)))
		cmd := start()
		deadline := time.Now().Add(2 * time.Minute)
		for checkpoint() < target && time.Now().Before(deadline) {
			time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
		}
		cmd.Process.Kill() // SIGKILL: no cleanup
		cmd.Wait()
		kills++
	}
	t.Logf("%d kills, checkpoint %d of %d before the last run", kills, checkpoint(), head)
	cmd := start()
	deadline := time.Now().Add(3 * time.Minute)
	for checkpoint() < head {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("stuck at %d of %d", checkpoint(), head)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	t.Logf("caught up through 20 kills in %v", time.Since(began).Round(time.Millisecond))

	// Exactly one row per event, gapless, chained.
	var count, minSeq, maxSeq int64
	pool.QueryRow(ctx, `SELECT count(*), min(seq), max(seq) FROM license_audit`).Scan(&count, &minSeq, &maxSeq)
	if uint64(count) != head || minSeq != 1 || uint64(maxSeq) != head {
		t.Fatalf("%d rows, seq %d..%d, stream head %d", count, minSeq, maxSeq, head)
	}
	rows, err := pool.Query(ctx, `SELECT seq, envelope_raw, prev_hash, hash FROM license_audit ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	var prev audit.Hash
	for rows.Next() {
		var seq int64
		var raw, ph, h []byte
		rows.Scan(&seq, &raw, &ph, &h)
		next := audit.Next(prev, uint64(seq), raw)
		if string(ph) != string(prev[:]) || string(h) != string(next[:]) {
			t.Fatalf("chain broken at seq %d", seq)
		}
		prev = next
	}
	rows.Close()
	memRows, _ := memoryModel(t, e)
	sameRows(t, memRows, pgRows(t, pool))
}

// publishMany appends n events quickly: one license per org for 1,000
// orgs, then pre-emptive revocations, each with the right prev_seq.
func publishMany(t *testing.T, e *env, n int) {
	t.Helper()
	ctx := context.Background()
	_, base, _ := e.bus.Stream(ctx)
	seq := base
	last := map[string]uint64{}
	op := events.Actor{Kind: events.ActorOperator, ID: "bulk"}
	var futures []jetstream.PubAckFuture
	for i := 0; i < n; i++ {
		org := "org-" + strconv.Itoa(i%1000)
		var env *events.Envelope
		if i < 1000 {
			id := fmt.Sprintf("0193a5b0-7e1a-7c3d-8f00-%012d", i)
			l := licensetest.Sign(t, "k1", payload(org, id, nil))
			env, _ = events.New(events.TypeUploaded, org, time.Now(), op, last[org], events.Uploaded{LicenseID: id,
				Fingerprint: l.Fingerprint, Key: l.Key, Slot: events.SlotCurrent, GraceDaysEffective: 7, Source: events.SourceAPI})
		} else {
			env, _ = events.New(events.TypeInvalidated, org, time.Now(), op, last[org],
				events.Invalidated{LicenseID: fmt.Sprintf("0193a5b0-7e1a-7c3d-8f01-%012d", i), Note: "bulk"})
		}
		raw, _ := env.Encode()
		f, err := e.js.PublishAsync(events.OrgSubject(org), raw)
		if err != nil {
			t.Fatal(err)
		}
		futures = append(futures, f)
		seq++
		last[org] = seq
		if len(futures) == 4000 {
			waitAcks(t, e, futures)
			futures = futures[:0]
		}
	}
	waitAcks(t, e, futures)
	if _, head, _ := e.bus.Stream(ctx); head != seq {
		t.Fatalf("head %d, expected %d", head, seq)
	}
}

func waitAcks(t *testing.T, e *env, futures []jetstream.PubAckFuture) {
	t.Helper()
	select {
	case <-e.js.PublishAsyncComplete():
	case <-time.After(60 * time.Second):
		t.Fatal("async publish did not complete")
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			t.Fatal(err)
		}
	}
}
