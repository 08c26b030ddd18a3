// Package bench measures the performance figures of design §9, each
// beside a reference measured in the same run on the same machine:
// decision cost, /authz and reverse-proxy throughput under load,
// propagation to gatekeeper replicas, append throughput, replay into
// PostgreSQL and memory per cached org. ledger bench prints the table.
//
// Every figure runs against real components: an in-process nats-server
// with a JetStream file store on loopback TCP, followers (gatekeeper/follow),
// gatekeeper gates and front ends, the ledger's command layer, and a
// PostgreSQL server that is given (Config.DatabaseURL) or found: bench
// never starts one, and without one the figures that need it are not
// measured. Timings are bench's own loop (measure), not Go's testing
// package, which a production binary does not link.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"runtime/pprof"
	"strings"
	"text/tabwriter"
	"time"
)

// Config says how much to measure.
type Config struct {
	// Quick shortens every figure (CI: under a minute in all).
	Quick bool
	// Full replays 1,000,000 events instead of 100,000, and starts
	// replicas and the ledger on 1,000,000 orgs.
	Full bool
	// Orgs, if set, is how many licensed orgs the start and restart
	// figures hold (a point of the growth curve), whatever Quick and Full
	// say.
	Orgs int
	// Only restricts the run to figures whose name starts with one of
	// these (Figures); empty runs all.
	Only []string
	// Progress receives one line per step (stderr).
	Progress io.Writer
	// DatabaseURL is a PostgreSQL server whose user may CREATE DATABASE.
	// Defaults to $LEDGER_TEST_DATABASE_URL, else 127.0.0.1:5432 as user
	// postgres or the OS user.
	DatabaseURL string
	// Executable is the ledger binary, started as `serve` for the idle
	// RSS and restart figures and as `bench-replica` for the start
	// figure ("": those are not measured).
	Executable string
	// Gatekeeper, if set, is the gatekeeper binary the start figure
	// starts as its replica, measured as operators run it; else the
	// start figure runs Executable's bench-replica (the same packages, in
	// the larger ledger binary: about 16 MiB more resident at rest).
	Gatekeeper string
	// ProfilePrefix, if set, has each replica process the start figure
	// starts write a CPU profile of its life and a heap profile at its
	// steady reading: PREFIX.replica-<variant>.cpu.pprof and .heap.pprof.
	ProfilePrefix string
}

// Row is one line of the table.
type Row struct {
	Figure    string   `json:"figure"`
	Value     string   `json:"value"`
	Reference string   `json:"reference"`
	Ratio     *float64 `json:"ratio"`
	Target    string   `json:"target"`
	// Result is pass, miss, or "" for a figure reported without a target.
	Result string `json:"result"`
	// Note qualifies the measurement (what may distort it).
	Note string `json:"note,omitempty"`
}

// Figures lists the figures in the order they run.
var Figures = []string{"decision", "authz", "proxy", "propagation", "append", "replay", "tree", "memory", "start", "restart"}

// Run measures the selected figures. It returns the rows measured so far
// and an error when a figure could not be measured at all. A figure that
// needs PostgreSQL when none answers gets a "not measured" row and the
// others still run; the error then says so.
func Run(ctx context.Context, cfg Config) ([]Row, error) {
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	r := &runner{cfg: cfg, log: slog.New(slog.DiscardHandler)}
	defer r.close()
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"decision", r.decisionFigure},
		{"authz", r.authzFigure},
		{"proxy", r.proxyFigure},
		{"propagation", r.propagationFigure},
		{"append", r.appendFigure},
		{"replay", r.replayFigure},
		{"tree", r.treeFigure},
		{"memory", r.memoryFigure},
		{"start", r.startFigure},
		{"restart", r.restartFigure},
	}
	var notMeasured []error
	for _, s := range steps {
		if !cfg.selected(s.name) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return r.rows, err
		}
		start := time.Now()
		r.progress("%s: measuring", s.name)
		// Samples of a CPU profile (ledger bench --cpuprofile) carry the
		// figure, and the step within it: go tool pprof -tagfocus.
		var err error
		pprof.Do(ctx, pprof.Labels("figure", s.name), func(ctx context.Context) { err = s.fn(ctx) })
		if errors.Is(err, errNoPostgres) || errors.Is(err, errNoExecutable) {
			r.add(s.name, "not measured", notMeasuredReason(err), -1, "", nil)
			r.progress("%s: not measured: %v", s.name, err)
			notMeasured = append(notMeasured, fmt.Errorf("%s: not measured: %w", s.name, err))
			continue
		}
		if err != nil {
			return r.rows, fmt.Errorf("%s: %w", s.name, err)
		}
		r.progress("%s: done in %s", s.name, time.Since(start).Round(time.Millisecond))
	}
	return r.rows, errors.Join(notMeasured...)
}

func notMeasuredReason(err error) string {
	if errors.Is(err, errNoExecutable) {
		return "no ledger executable"
	}
	return "no PostgreSQL (see stderr)"
}

func (c Config) selected(name string) bool {
	if len(c.Only) == 0 {
		return true
	}
	for _, o := range c.Only {
		if o != "" && strings.HasPrefix(name, o) {
			return true
		}
	}
	return false
}

// runner carries what figures share.
type runner struct {
	cfg     Config
	pg      *pgServer
	pgErr   error
	log     *slog.Logger
	rows    []Row
	closers []func()
	// fleetGC: the propagation figure's run with the collector paced as
	// separate replica processes would pace theirs.
	fleetGC bool
}

func (r *runner) close() {
	for i := len(r.closers) - 1; i >= 0; i-- {
		r.closers[i]()
	}
}

func (r *runner) defer_(fn func()) { r.closers = append(r.closers, fn) }

func (r *runner) progress(format string, args ...any) {
	fmt.Fprintf(r.cfg.Progress, "bench: "+format+"\n", args...)
}

// add appends a row. ratio < 0 means none; pass says whether the target
// is met (nil: no target).
func (r *runner) add(figure, value, reference string, ratio float64, target string, pass *bool) {
	row := Row{Figure: figure, Value: value, Reference: reference, Target: target}
	if ratio >= 0 && !math.IsNaN(ratio) && !math.IsInf(ratio, 0) {
		v := math.Round(ratio*1000) / 1000
		row.Ratio = &v
	}
	if pass != nil {
		row.Result = "miss"
		if *pass {
			row.Result = "pass"
		}
	}
	r.rows = append(r.rows, row)
}

func ptr[T any](v T) *T { return &v }

// WriteTable prints rows as an aligned table.
func WriteTable(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tvalue\treference\tratio\ttarget\tresult\tnote")
	for _, r := range rows {
		ratio := "-"
		if r.Ratio != nil {
			ratio = fmt.Sprintf("%.2f", *r.Ratio)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Figure, dash(r.Value), dash(r.Reference), ratio, dash(r.Target), dash(r.Result), r.Note)
	}
	return tw.Flush()
}

// WriteMarkdown prints rows as a Markdown table (docs/performance.md's).
func WriteMarkdown(w io.Writer, rows []Row) error {
	fmt.Fprintln(w, "| figure | value | reference | ratio | target | result | note |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, r := range rows {
		ratio := "-"
		if r.Ratio != nil {
			ratio = fmt.Sprintf("%.2f", *r.Ratio)
		}
		_, err := fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", r.Figure, dash(r.Value), dash(r.Reference), ratio, dash(r.Target), dash(r.Result), r.Note)
		if err != nil {
			return err
		}
	}
	return nil
}

// WriteJSON prints rows as a JSON array.
func WriteJSON(w io.Writer, rows []Row) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rows)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Formatting helpers.
func fmtRate(perSec float64, unit string) string {
	switch {
	case perSec >= 1e6:
		return fmt.Sprintf("%.2fM %s/s", perSec/1e6, unit)
	case perSec >= 1e3:
		return fmt.Sprintf("%.1fk %s/s", perSec/1e3, unit)
	}
	return fmt.Sprintf("%.0f %s/s", perSec, unit)
}

func fmtDur(d time.Duration) string {
	if d < 0 {
		return "−" + fmtDur(-d)
	}
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	case d >= time.Microsecond:
		return fmt.Sprintf("%.0f µs", float64(d)/1e3)
	}
	return fmt.Sprintf("%d ns", d.Nanoseconds())
}

func fmtBytes(b float64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GiB", b/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.2f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}
