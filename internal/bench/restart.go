package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/natsembed"
)

// restartTargets are the design's targets for the ledger's restart on
// the embedded default at 100,000 orgs.
const (
	restartTarget    = 2 * time.Second
	restartRSSTarget = 300 << 20
)

// ledgerRun is what one start of ledger serve measured.
type ledgerRun struct {
	ready           time.Duration // process created → /readyz 200
	atReady, steady memStatus
	verified        time.Duration // ready → every license verified (orgs_unverified 0)
}

// restartFigure: ledger serve on the embedded default restarted on a data
// directory whose stream holds one license upload per org: time from
// creating the process to /readyz answering 200, and its resident memory
// then and steadyAfter later. The data directory is the ledger's own (its
// first start creates the stream, credentials and install id); the
// uploads are appended with the ledger stopped, on its store opened
// offline as ledger stream reseed does. The reference is a restart of the
// same directory before the uploads.
func (r *runner) restartFigure(ctx context.Context) error {
	if r.cfg.Executable == "" {
		return errNoExecutable
	}
	n := r.startOrgs()
	v, err := newVendor()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "ledger-bench-restart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	r.progress("restart: first start on a new data directory")
	if _, err := r.ledgerProcess(ctx, dir, v, ""); err != nil {
		return fmt.Errorf("first start: %w", err)
	}
	r.progress("restart: restarting with no org (reference)")
	empty, err := r.ledgerProcess(ctx, dir, v, "")
	if err != nil {
		return fmt.Errorf("restart with no org: %w", err)
	}
	r.progress("restart: appending %d licensed orgs to the stopped ledger's store", n)
	if err := fillOffline(ctx, dir, v, n); err != nil {
		return err
	}
	r.progress("restart: restarting with %d orgs", n)
	run, err := r.ledgerProcess(ctx, dir, v, "org-"+strconv.Itoa(n-1))
	if err != nil {
		return fmt.Errorf("restart with %d orgs: %w", n, err)
	}
	what := fmt.Sprintf("embedded default, %s orgs", fmtCount(n))
	r.add("ledger restart → /readyz 200, "+what, fmtDur(run.ready), "no org "+fmtDur(empty.ready),
		float64(run.ready)/float64(empty.ready), "≤ 2.00 s (at 100k)", ptr(run.ready <= restartTarget))
	r.add("ledger RSS once ready after restart, "+what, fmtBytes(float64(run.atReady.RSS)),
		fmt.Sprintf("no org %s; peak (VmHWM) %s", fmtBytes(float64(empty.atReady.RSS)), fmtBytes(float64(run.atReady.HWM))),
		float64(run.atReady.RSS)/float64(empty.atReady.RSS), "≤ 300.0 MiB (at 100k)", ptr(run.atReady.RSS <= restartRSSTarget))
	r.add(fmt.Sprintf("ledger RSS steady (%s after every license was verified), %s", fmtDur(r.steadyAfter()), what), fmtBytes(float64(run.steady.RSS)),
		fmt.Sprintf("no org %s; peak (VmHWM) %s; every license verified %s after ready", fmtBytes(float64(empty.steady.RSS)), fmtBytes(float64(run.steady.HWM)), fmtDur(run.verified)),
		float64(run.steady.RSS)/float64(empty.steady.RSS), "≤ 300.0 MiB (at 100k)", ptr(run.steady.RSS <= restartRSSTarget))
	return nil
}

// fillOffline appends n uploads to the ledger's stream in dir, the ledger
// stopped.
func fillOffline(ctx context.Context, dir string, v *vendor, n int) error {
	o, err := natsembed.StartOffline(dir)
	if err != nil {
		return err
	}
	nc, err := o.Connect("bench")
	if err != nil {
		o.Close()
		return err
	}
	err = fill(ctx, nc.NATS(), natsbus.DefaultStream, v, n, n)
	nc.Close()
	if cerr := o.Close(); err == nil {
		err = cerr
	}
	return err
}

// ledgerProcess runs ledger serve on dir (the embedded default, loopback
// ports free at the time), waits until /readyz answers 200, reads its
// memory then and steadyAfter later, checks that org (when given) holds a
// license, and stops it with SIGTERM.
func (r *runner) ledgerProcess(ctx context.Context, dir string, v *vendor, org string) (ledgerRun, error) {
	api, err := freePort()
	if err != nil {
		return ledgerRun{}, err
	}
	natsPort, err := freePort()
	if err != nil {
		return ledgerRun{}, err
	}
	base := "http://127.0.0.1:" + strconv.Itoa(api)
	p, err := startProc(r.cfg.Executable, []string{"serve"}, []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "DATA_DIR=" + dir,
		"LEDGER_LISTEN=127.0.0.1:" + strconv.Itoa(api), "LEDGER_NATS_LISTEN=127.0.0.1:" + strconv.Itoa(natsPort),
		"LICENSE_PUBLIC_KEYS=" + v.env, "LOG_FORMAT=json"})
	if err != nil {
		return ledgerRun{}, err
	}
	defer p.stop(30 * time.Second)
	readyAt, err := pollOK(ctx, p, base+"/readyz", 5*time.Millisecond, 30*time.Minute)
	if err != nil {
		return ledgerRun{}, err
	}
	run := ledgerRun{ready: readyAt.Sub(p.started)}
	if run.atReady, err = p.memory(); err != nil {
		return run, err
	}
	if org != "" {
		if err := checkLicensed(ctx, base, dir, org); err != nil {
			return run, err
		}
	}
	if run.verified, err = r.awaitSteady(ctx, base+"/readyz", readyAt); err != nil {
		return run, err
	}
	if run.steady, err = p.memory(); err != nil {
		return run, err
	}
	if err := p.stop(30 * time.Second); err != nil {
		return run, fmt.Errorf("stop: %w", err)
	}
	r.progress("restart: ready in %s, RSS %s → %s", fmtDur(run.ready), fmtBytes(float64(run.atReady.RSS)), fmtBytes(float64(run.steady.RSS)))
	return run, nil
}

// checkLicensed asks the ledger's API for org's license status, as an
// operator (the generated $DATA_DIR/admin.token): the uploads must count
// as the ledger's own.
func checkLicensed(ctx context.Context, base, dir, org string) error {
	tok, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/license?org="+org, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var st struct {
		Status string `json:"status"`
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /api/license?org=%s: %s", org, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return err
	}
	if st.Status != "valid" {
		return fmt.Errorf("%s: status %q after restart, want valid", org, st.Status)
	}
	return nil
}
