package postgres_test

import (
	"context"
	"io"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/licenseledger/ledger/internal/postgres"
	"github.com/licenseledger/ledger/internal/testenv/pgtest"
)

// benchEvents is the stream length of BenchmarkReplay
// (LEDGER_BENCH_EVENTS overrides it).
func benchEvents(b *testing.B) int {
	if v, err := strconv.Atoi(os.Getenv("LEDGER_BENCH_EVENTS")); err == nil && v > 0 {
		return v
	}
	return 100_000
}

// migratedTB is migrated for benchmarks.
func migratedTB(tb testing.TB) (*pgxpool.Pool, string) {
	tb.Helper()
	dsn := pgtest.NewDatabase(tb)
	if err := postgres.Migrate(context.Background(), dsn, "up", postgres.Roles{}, io.Discard); err != nil {
		tb.Fatal(err)
	}
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	return pool, dsn
}

// BenchmarkReplay measures folding a stream of generated events into
// PostgreSQL — by ledger replay into the shadow schema, and by the live
// projector catching up — beside their reference, a raw COPY (pgx
// CopyFrom) of the same license_audit rows into an empty migrated table,
// in a session with the settings of the path it is compared to: replay
// commits with synchronous_commit off (its shadow is disposable), the
// projector with the server's default (on: its acks must be durable).
// Each iteration runs the four in turn, each into a fresh database
// (created untimed), so a machine's load affects them alike:
//
//	go test -run '^$' -bench BenchmarkReplay -benchtime 3x ./internal/postgres/
//
// It reports events/s of each and the ratios to their raw COPY.
func BenchmarkReplay(b *testing.B) {
	n := benchEvents(b)
	s := newBulkStream(b, n)
	rows := s.auditRows(b)
	ctx := context.Background()
	var copyTime, copyAsyncTime, replayTime, projectorTime time.Duration
	b.ResetTimer()
	for range b.N {
		copyTime += rawCopy(b, rows, "")
		copyAsyncTime += rawCopy(b, rows, "off")

		_, dsn := migratedTB(b)
		r, err := postgres.OpenReplay(ctx, postgres.ReplayConfig{DSN: dsn, Source: s.bus, Keys: keys(b)})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		res, err := r.Build(ctx, postgres.Rebuild, 0)
		replayTime += time.Since(start)
		r.Close()
		if err != nil || res.Checkpoint != uint64(n) {
			b.Fatalf("replay: %+v %v", res, err)
		}

		pool, _ := migratedTB(b)
		p := postgres.NewProjector(postgres.ProjectorConfig{Pool: pool, Source: s.bus, Keys: keys(b)})
		pctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		start = time.Now()
		go func() { done <- p.Run(pctx) }()
		for p.Applied() < uint64(n) {
			if err := p.Stopped(); err != nil {
				b.Fatal(err)
			}
			time.Sleep(time.Millisecond)
		}
		projectorTime += time.Since(start)
		cancel()
		<-done
	}
	rate := func(d time.Duration) float64 { return float64(n*b.N) / d.Seconds() }
	b.ReportMetric(rate(copyTime), "copy_events/s")
	b.ReportMetric(rate(copyAsyncTime), "copy_async_events/s")
	b.ReportMetric(rate(replayTime), "replay_events/s")
	b.ReportMetric(rate(projectorTime), "projector_events/s")
	b.ReportMetric(copyAsyncTime.Seconds()/replayTime.Seconds(), "replay/copy")
	b.ReportMetric(copyTime.Seconds()/projectorTime.Seconds(), "projector/copy")
}

// rawCopy times a COPY of rows into the license_audit of a fresh migrated
// database, in a session with synchronous_commit set to syncCommit (""
// leaves the server's default).
func rawCopy(b *testing.B, rows [][]any, syncCommit string) time.Duration {
	b.Helper()
	ctx := context.Background()
	_, dsn := migratedTB(b)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		b.Fatal(err)
	}
	if syncCommit != "" {
		cfg.RuntimeParams["synchronous_commit"] = syncCommit
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	start := time.Now()
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"license_audit"}, postgres.AuditColumns(), pgx.CopyFromRows(rows)); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}
