//go:build soak

package postgres_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/licenseledger/ledger/internal/postgres"
)

// soakEvents is the stream length of the soak test (LEDGER_SOAK_EVENTS
// overrides it).
func soakEvents() int {
	if v, err := strconv.Atoi(os.Getenv("LEDGER_SOAK_EVENTS")); err == nil && v > 0 {
		return v
	}
	return 1_000_000
}

// A million events replayed into the shadow in bounded memory, with the
// throughput beside a raw COPY of the same license_audit rows:
//
//	go test -tags soak -run TestSoakReplay -timeout 60m -v ./internal/postgres/
func TestSoakReplay(t *testing.T) {
	n := soakEvents()
	s := newBulkStream(t, n)
	_, dsn := migratedTB(t)
	r, err := postgres.OpenReplay(context.Background(), postgres.ReplayConfig{DSN: dsn, Source: s.bus, Keys: keys(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var peakHeap atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peakHeap.Load() {
				peakHeap.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	start := time.Now()
	res, err := r.Build(context.Background(), postgres.Rebuild, 0)
	elapsed := time.Since(start)
	close(stop)
	<-sampled
	if err != nil || res.Checkpoint != uint64(n) {
		t.Fatalf("build: %+v %v", res, err)
	}
	replayRate := float64(n) / elapsed.Seconds()

	// The reference: the same rows, dumped from the shadow, copied into
	// an empty migrated license_audit.
	ctx := context.Background()
	dump := filepath.Join(t.TempDir(), "audit.copy")
	f, err := os.Create(dump)
	if err != nil {
		t.Fatal(err)
	}
	src, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close(ctx)
	if _, err := src.PgConn().CopyTo(ctx, f, `COPY ledger_shadow.license_audit TO STDOUT (FORMAT binary)`); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, target := migratedTB(t)
	dst, err := pgx.Connect(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close(ctx)
	in, err := os.Open(dump)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	start = time.Now()
	tag, err := dst.PgConn().CopyFrom(ctx, in, `COPY license_audit FROM STDIN (FORMAT binary)`)
	copyElapsed := time.Since(start)
	if err != nil || tag.RowsAffected() != int64(n) {
		t.Fatalf("raw copy: %v %v", tag, err)
	}
	copyRate := float64(n) / copyElapsed.Seconds()
	rss := vmHWM()
	// The process also runs the embedded NATS server holding the stream.
	t.Logf("replay %d events (%d orgs): %s, %.0f events/s; raw COPY of the same rows: %s, %.0f rows/s; ratio %.2f; "+
		"heap in use %d MiB before the replay, peak %d MiB during it; peak RSS of the process %s",
		n, max(n/50, 1), elapsed.Round(time.Millisecond), replayRate, copyElapsed.Round(time.Millisecond), copyRate,
		replayRate/copyRate, before.HeapInuse>>20, peakHeap.Load()>>20, rss)
	// Bounded: a few batches and the per-org states, not the stream.
	if grown := peakHeap.Load() - min(peakHeap.Load(), before.HeapInuse); grown > 512<<20 {
		t.Fatalf("the heap grew by %d MiB during the replay", grown>>20)
	}
}

// vmHWM is the process's peak resident set size.
func vmHWM() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
