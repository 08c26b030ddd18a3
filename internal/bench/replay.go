package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/postgres"
	"github.com/licenseledger/ledger/license"
)

// replayEvents is how many events the replay figure projects.
func (r *runner) replayEvents() int {
	switch {
	case r.cfg.Full:
		return 1_000_000
	case r.cfg.Quick:
		return 10_000
	}
	return 100_000
}

// replayTarget is the least rebuild rate the replay figure passes with,
// as a fraction of the COPY of the same audit rows.
const replayTarget = 0.7

// replayRounds is how many times the rebuild and its COPY alternate.
func (r *runner) replayRounds() int {
	if r.cfg.Quick || r.cfg.Full {
		return 1
	}
	return 3
}

// median of xs (not empty); xs is sorted in place.
func median(xs []float64) float64 {
	slices.Sort(xs)
	if n := len(xs); n%2 == 0 {
		return (xs[n/2-1] + xs[n/2]) / 2
	}
	return xs[len(xs)/2]
}

// checkpoint asks PostgreSQL to write its dirty pages out now (a
// CHECKPOINT, where the role may), so that a timed step does not pay for
// the previous one's.
func checkpoint(ctx context.Context, pool *pgxpool.Pool) {
	pool.Exec(ctx, `CHECKPOINT`)
}

// replayFigure: events/s rebuilt into PostgreSQL by `ledger replay`'s
// build (postgres.Replayer into the ledger_shadow schema, from sequence 1
// on a freshly migrated database), vs a raw COPY (pgx CopyFrom) of the
// same audit rows into an identical table with the same session settings
// (synchronous_commit off, as the disposable shadow uses). The live
// projector's catch-up (durable commits) is reported beside a COPY with
// the server's default settings.
func (r *runner) replayFigure(ctx context.Context) error {
	n := r.replayEvents()
	pg, err := r.pgServer(ctx)
	if err != nil {
		return err
	}
	v, ne, err := r.filledStream(ctx, "replay", n, max(n/10, 1)) // 10% uploads, 90% invalidations
	if err != nil {
		return err
	}
	defer ne.close()
	dsn, drop, err := pg.CreateDatabase()
	if err != nil {
		return err
	}
	defer drop()
	if err := postgres.Migrate(ctx, dsn, postgres.MigrateUp, postgres.Roles{}, io.Discard); err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()
	bus, closeBus, err := ne.readerBus(ctx, "projector")
	if err != nil {
		return err
	}
	defer closeBus()

	// Rounds alternate the rebuild (a fresh shadow each time) with the
	// COPY, each after a CHECKPOINT so neither pays for the other's dirty
	// pages; the median of each side and of the per-round ratios count.
	rounds := r.replayRounds()
	var rates, copyRates, ratios []float64
	for round := 1; round <= rounds; round++ {
		checkpoint(ctx, pool)
		r.progress("replay: round %d of %d: rebuilding into %s", round, rounds, postgres.ShadowSchema)
		rp, err := postgres.OpenReplay(ctx, postgres.ReplayConfig{DSN: dsn, Source: bus, Keys: v.keys, Logger: r.log})
		if err != nil {
			return err
		}
		start := time.Now()
		var res postgres.BuildResult
		pprof.Do(ctx, pprof.Labels("step", "replay"), func(ctx context.Context) { res, err = rp.Build(ctx, postgres.Rebuild, 0) })
		elapsed := time.Since(start)
		rp.Close()
		if err != nil {
			return err
		}
		if res.Checkpoint != uint64(n) || res.Resumed {
			return fmt.Errorf("replay stopped at %d of %d (resumed: %v)", res.Checkpoint, n, res.Resumed)
		}
		rate := float64(n) / elapsed.Seconds()
		r.progress("replay: %d events in %s; copying the audit rows", n, elapsed.Round(time.Millisecond))
		checkpoint(ctx, pool)
		copyRate, err := copyAudit(ctx, pool, postgres.ShadowSchema+".license_audit", "bench_audit_copy_async", true)
		if err != nil {
			return fmt.Errorf("COPY reference: %w", err)
		}
		rates, copyRates, ratios = append(rates, rate), append(copyRates, copyRate), append(ratios, rate/copyRate)
	}
	rate, copyRate, ratio := median(rates), median(copyRates), median(ratios)
	ref := "COPY of the audit rows " + fmtRate(copyRate, "row")
	if rounds > 1 {
		ref += fmt.Sprintf(" (medians of %d alternating rounds)", rounds)
	}
	r.add(fmt.Sprintf("replay into PostgreSQL, %d events", n), fmtRate(rate, "ev"), ref, ratio, fmt.Sprintf("≥ %g", replayTarget), ptr(ratio >= replayTarget))

	r.progress("replay: live projector catching up from sequence 1")
	checkpoint(ctx, pool)
	var elapsed time.Duration
	pprof.Do(ctx, pprof.Labels("step", "projector"), func(ctx context.Context) {
		elapsed, err = projectAll(ctx, postgres.ProjectorConfig{Pool: pool, Source: bus, Keys: v.keys, InstallID: func() string { return "" }, Logger: r.log}, uint64(n))
	})
	if err != nil {
		return err
	}
	rate = float64(n) / elapsed.Seconds()
	checkpoint(ctx, pool)
	copyRate, err = copyAudit(ctx, pool, "license_audit", "bench_audit_copy", false)
	if err != nil {
		return fmt.Errorf("COPY reference: %w", err)
	}
	r.add("projector catch-up (durable commits)", fmtRate(rate, "ev"), "COPY of the audit rows "+fmtRate(copyRate, "row"),
		rate/copyRate, "-", nil)
	return nil
}

// projectAll runs a projector until it has applied head and returns how
// long that took.
func projectAll(ctx context.Context, cfg postgres.ProjectorConfig, head uint64) (time.Duration, error) {
	p := postgres.NewProjector(cfg)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- p.Run(pctx) }()
	for p.Applied() < head {
		select {
		case err := <-done:
			return 0, fmt.Errorf("projector stopped at %d of %d: %v", p.Applied(), head, err)
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	elapsed := time.Since(start)
	cancel()
	<-done
	return elapsed, nil
}

// fillStream appends n valid events in order after what e's stream
// holds: an upload for each of orgs orgs, then rounds of invalidations
// over them.
func fillStream(ctx context.Context, e *natsEnv, v *vendor, n, orgs int) error {
	return fill(ctx, e.nc, natsbus.DefaultStream, v, n, orgs)
}

// fill appends to stream on nc what fillStream does. Nothing else may
// append meanwhile: each publish expects the stream's last sequence to be
// the previous one's.
func fill(ctx context.Context, nc *nats.Conn, stream string, v *vendor, n, orgs int) error {
	names := make([]string, orgs)
	for i := range names {
		names[i] = "org-" + strconv.Itoa(i)
	}
	uploads, err := signAll(v, names)
	if err != nil {
		return err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return err
	}
	base := info.State.LastSeq
	last := make([]uint64, orgs)
	var futures []jetstream.PubAckFuture
	flush := func() error {
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(time.Minute):
			return errors.New("async publishes never completed")
		}
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return err
			}
		}
		futures = futures[:0]
		return nil
	}
	for k := uint64(1); k <= uint64(n); k++ {
		i, seq := int(k-1)%orgs, base+k
		var env *events.Envelope
		if k <= uint64(orgs) {
			env, err = uploadedEnvelope(uploads[i], names[i], 0)
		} else {
			env, err = events.New(events.TypeInvalidated, names[i], time.Now(), operator, last[i], events.Invalidated{LicenseID: uuid.NewString()})
		}
		if err != nil {
			return err
		}
		data, err := env.Encode()
		if err != nil {
			return err
		}
		f, err := js.PublishAsync(events.OrgSubject(names[i]), data, jetstream.WithExpectLastSequence(seq-1), jetstream.WithMsgID(env.ID))
		if err != nil {
			return err
		}
		futures = append(futures, f)
		last[i] = seq
		if len(futures) >= 2000 {
			if err := flush(); err != nil {
				return err
			}
		}
		if k%10000 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return flush()
}

// signAll signs a license per org on every core.
func signAll(v *vendor, orgs []string) ([]*license.License, error) {
	out := make([]*license.License, len(orgs))
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(orgs); i += workers {
				lic, err := v.sign(orgs[i])
				if err != nil {
					errs[w] = err
					return
				}
				out[i] = lic
			}
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

var auditCols = []string{"seq", "event_id", "subject", "org_slug", "type", "actor_kind", "actor_id",
	"occurred_at", "recorded_at", "envelope", "envelope_raw", "prev_hash", "hash"}

// copyAudit reads the audit rows of table from into memory, then times a
// COPY of them into a new table into, identical to license_audit (LIKE …
// INCLUDING ALL: the same columns, keys and indexes), on a session with
// synchronous_commit off when async.
func copyAudit(ctx context.Context, pool *pgxpool.Pool, from, into string, async bool) (float64, error) {
	if _, err := pool.Exec(ctx, `DROP TABLE IF EXISTS `+into+`; CREATE TABLE `+into+` (LIKE license_audit INCLUDING ALL)`); err != nil {
		return 0, err
	}
	rows, err := pool.Query(ctx, `SELECT seq, event_id, subject, org_slug, type, actor_kind, actor_id, occurred_at, recorded_at,
		envelope::text, envelope_raw, prev_hash, hash FROM `+from+` ORDER BY seq`)
	if err != nil {
		return 0, err
	}
	var all [][]any
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			rows.Close()
			return 0, err
		}
		all = append(all, vals)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if len(all) == 0 {
		return 0, errors.New("no audit rows")
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Release()
	if async {
		if _, err := conn.Exec(ctx, `SET synchronous_commit = off`); err != nil {
			return 0, err
		}
		defer conn.Exec(context.Background(), `RESET synchronous_commit`)
	}
	start := time.Now()
	n, err := conn.CopyFrom(ctx, pgx.Identifier{into}, auditCols, pgx.CopyFromRows(all))
	if err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}
