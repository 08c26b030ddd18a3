package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/postgres"
)

// proofTarget is the p99 a proof at a million records must stay under.
const proofTarget = 5 * time.Millisecond

// treeTarget is the least projector rate with the Merkle tree, as a
// fraction of the rate without it.
const treeTarget = 0.9

// treeFigure: what the audit trail's Merkle tree costs and gives. The
// live projector catches up the same stream from sequence 1 with the tree
// and without it (ProjectorConfig.SkipTree), alternating on fresh
// databases; then inclusion and consistency proofs for random records and
// sizes are read from the PostgreSQL trail, beside one record read by its
// primary key.
func (r *runner) treeFigure(ctx context.Context) error {
	n := r.replayEvents()
	pg, err := r.pgServer(ctx)
	if err != nil {
		return err
	}
	v, ne, err := r.filledStream(ctx, "tree", n, max(n/10, 1))
	if err != nil {
		return err
	}
	defer ne.close()
	bus, closeBus, err := ne.readerBus(ctx, "projector")
	if err != nil {
		return err
	}
	defer closeBus()

	var with, without, ratios []float64
	var kept *pgxpool.Pool
	// Both orders at least: the first catch-up on a fresh server pays
	// for what the second finds warm.
	rounds := r.replayRounds()
	if !r.cfg.Quick {
		rounds = max(rounds, 2)
	}
	for round := 1; round <= rounds; round++ {
		order := []bool{false, true}
		if round%2 == 0 {
			order = []bool{true, false}
		}
		rate := map[bool]float64{}
		for _, skip := range order {
			dsn, drop, err := pg.CreateDatabase()
			if err != nil {
				return err
			}
			if err := postgres.Migrate(ctx, dsn, postgres.MigrateUp, postgres.Roles{}, io.Discard); err != nil {
				drop()
				return err
			}
			pool, err := pgxpool.New(ctx, dsn)
			if err != nil {
				drop()
				return err
			}
			checkpoint(ctx, pool)
			what := "with the tree"
			if skip {
				what = "without it"
			}
			r.progress("tree: round %d of %d: the projector %s", round, rounds, what)
			elapsed, err := projectAll(ctx, postgres.ProjectorConfig{Pool: pool, Source: bus, Keys: v.keys,
				InstallID: func() string { return "" }, Logger: r.log, SkipTree: skip}, uint64(n))
			if err != nil {
				pool.Close()
				drop()
				return err
			}
			rate[skip] = float64(n) / elapsed.Seconds()
			if !skip && round == rounds {
				kept = pool
				r.defer_(func() { pool.Close(); drop() })
			} else {
				pool.Close()
				drop()
			}
		}
		with, without, ratios = append(with, rate[false]), append(without, rate[true]), append(ratios, rate[false]/rate[true])
	}
	ratio := median(ratios)
	ref := "without it " + fmtRate(median(without), "ev")
	if rounds > 1 {
		ref += fmt.Sprintf(" (medians of %d alternating rounds)", rounds)
	}
	r.add(fmt.Sprintf("projector with the audit tree, %d events", n), fmtRate(median(with), "ev"), ref, ratio,
		fmt.Sprintf("≥ %g", treeTarget), ptr(ratio >= treeTarget))
	return r.proofFigures(ctx, kept, n)
}

// proofFigures times proofs read from the trail in pool (n records).
func (r *runner) proofFigures(ctx context.Context, pool *pgxpool.Pool, n int) error {
	reader := postgres.NewAuditReader(pool)
	trials := 2000
	if r.cfg.Quick {
		trials = 300
	}
	r.progress("tree: %d inclusion and consistency proofs at %d records", trials, n)
	var incl, cons, read []time.Duration
	size := uint64(n)
	for range trials {
		at := 1 + rand.Uint64N(size)
		seq := 1 + rand.Uint64N(at)
		start := time.Now()
		if _, err := audit.InclusionProof(ctx, reader, seq, at); err != nil {
			return err
		}
		incl = append(incl, time.Since(start))
		from := rand.Uint64N(at)
		start = time.Now()
		if _, err := audit.ConsistencyProof(ctx, reader, from, at); err != nil {
			return err
		}
		cons = append(cons, time.Since(start))
		var raw []byte
		start = time.Now()
		if err := pool.QueryRow(ctx, `SELECT envelope_raw FROM license_audit WHERE seq = $1`, int64(seq)).Scan(&raw); err != nil {
			return err
		}
		read = append(read, time.Since(start))
	}
	slices.Sort(incl)
	slices.Sort(cons)
	slices.Sort(read)
	r99 := quantile(read, 0.99)
	ref := fmt.Sprintf("one record read by key p99 %s", fmtDur(r99))
	for _, f := range []struct {
		what string
		d    []time.Duration
	}{{"inclusion", incl}, {"consistency", cons}} {
		p99 := quantile(f.d, 0.99)
		r.add(fmt.Sprintf("%s proof p99, %d records × %d", f.what, n, trials), fmtDur(p99), ref,
			float64(p99)/float64(max(r99, 1)), "< 5 ms", ptr(p99 < proofTarget))
		r.rows[len(r.rows)-1].Note = fmt.Sprintf("p50 %s", fmtDur(quantile(f.d, 0.5)))
	}
	return nil
}
