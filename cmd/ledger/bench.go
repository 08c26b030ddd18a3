package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"

	"github.com/licenseledger/ledger/internal/bench"
	"github.com/licenseledger/ledger/internal/cli"
	"github.com/licenseledger/ledger/internal/secfile"
)

// benchCmd measures the performance figures of design §9, each beside its
// reference from the same run. Missing a target is reported, not an
// error: it exits non-zero only when a figure could not be measured (the
// replay figure without a PostgreSQL to use is reported "not measured").
type benchCmd struct {
	Quick       bool     `help:"Shorter runs and smaller data sets (under a minute; what CI runs)."`
	Full        bool     `help:"Replay 1,000,000 events instead of 100,000; start replicas and the ledger on 1,000,000 orgs instead of 100,000."`
	Orgs        int      `placeholder:"N" help:"Licensed orgs of the start and restart figures (default 100,000; 1,000,000 with --full), for a point of the growth curve."`
	Output      string   `short:"o" enum:"table,json,markdown,csv" default:"table" placeholder:"table|json|markdown|csv" help:"table (default), json: an array of rows, markdown, or csv with a header line."`
	JSON        bool     `name:"json" help:"The same as -o json (kept for scripts)."`
	Markdown    bool     `help:"The same as -o markdown (kept for scripts)."`
	Only        []string `placeholder:"FIGURE" help:"Run only these figures: decision, authz, proxy, propagation, append, replay, tree, memory, start, restart."`
	DatabaseURL string   `name:"database-url" placeholder:"URL" help:"PostgreSQL for the replay and start figures, as a user allowed to CREATE DATABASE. Defaults to $LEDGER_TEST_DATABASE_URL, else 127.0.0.1:5432 as user postgres or the OS user; bench never starts one."`
	Gatekeeper  string   `placeholder:"FILE" type:"path" help:"The gatekeeper binary the start figure measures as its replica. Defaults to gatekeeper beside this binary, else on PATH; without one, this binary's hidden bench-replica (the same packages in the larger ledger binary)."`
	CPUProfile  string   `name:"cpuprofile" placeholder:"FILE" type:"path" help:"Write a CPU profile of the whole run to FILE, mode 0600 (go tool pprof FILE); the replica processes of the start figure write theirs, and a heap profile, beside it (FILE.replica-*.pprof)."`
}

func (c *benchCmd) Run(env *cli.Env) error {
	if c.JSON && c.Markdown {
		return cli.Usage("--json and --markdown exclude each other")
	}
	switch {
	case (c.JSON || c.Markdown) && c.Output != "table":
		return cli.Usage("-o %s with --json or --markdown: give one", c.Output)
	case c.JSON:
		c.Output = outJSON
	case c.Markdown:
		c.Output = "markdown"
	}
	if c.Orgs < 0 {
		return cli.Usage("--orgs %d: want a number of orgs (1 or more)", c.Orgs)
	}
	for _, o := range c.Only {
		known := false
		for _, f := range bench.Figures {
			known = known || f == o
		}
		if !known {
			return cli.Usage("--only %q: want one of %v", o, bench.Figures)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	exe, _ := os.Executable()
	if c.CPUProfile != "" {
		f, err := secfile.Create(c.CPUProfile)
		if err != nil {
			return cli.Usage("--cpuprofile: %v", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	gk := c.Gatekeeper
	if gk == "" {
		gk = findGatekeeper(exe)
	} else if _, err := os.Stat(gk); err != nil {
		return cli.Usage("--gatekeeper: %v", err)
	}
	rows, err := bench.Run(ctx, bench.Config{Quick: c.Quick, Full: c.Full, Orgs: c.Orgs, Only: c.Only, DatabaseURL: c.DatabaseURL,
		Progress: env.Stderr, Executable: exe, Gatekeeper: gk, ProfilePrefix: c.CPUProfile})
	var werr error
	switch c.Output {
	case outJSON:
		werr = bench.WriteJSON(env.Stdout, rows)
	case "markdown":
		werr = bench.WriteMarkdown(env.Stdout, rows)
	case outCSV:
		werr = writeRows(env.Stdout, outCSV, []string{"figure", "value", "reference", "ratio", "target", "result", "note"}, rows)
	default:
		werr = bench.WriteTable(env.Stdout, rows)
	}
	if err != nil {
		return &cli.Error{Code: cli.ExitUnavailable, Err: fmt.Errorf("bench: %w", err)}
	}
	return werr
}

// findGatekeeper is the gatekeeper binary beside the ledger's (as releases
// and the image install them), else on PATH; "" if neither.
func findGatekeeper(exe string) string {
	if exe != "" {
		beside := filepath.Join(filepath.Dir(exe), "gatekeeper")
		if fi, err := os.Stat(beside); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return beside
		}
	}
	if p, err := exec.LookPath("gatekeeper"); err == nil {
		return p
	}
	return ""
}
