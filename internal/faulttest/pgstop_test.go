package faulttest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/postgres"
	"github.com/licenseledger/ledger/internal/testenv/licensetest"
	"github.com/licenseledger/ledger/internal/testenv/natstest"
	"github.com/licenseledger/ledger/internal/testenv/pgtest"
	"github.com/licenseledger/ledger/internal/testenv/proctest"
)

// PostgreSQL stopped during uploads: uploads keep succeeding (the write
// path needs only NATS), a gatekeeper with DATABASE_URL keeps deciding
// correctly throughout, and the projector catches up when PostgreSQL
// returns.
func TestPostgresStoppedDuringUploads(t *testing.T) {
	b := binaries(t)
	pg := pgtest.StartThrowawayCluster(t)
	super := pg.DSN()
	if err := postgres.Migrate(context.Background(), super, postgres.MigrateUp, postgres.Roles{}, io.Discard); err != nil {
		t.Fatal(err)
	}
	app := pgtest.LoginRole(t, super, "ledger_app")
	auditor := pgtest.LoginRole(t, super, "ledger_auditor")
	srv := natstest.Start(t, natstest.WithSyncAlways())
	srv.CreateStream(t)
	l := startLedger(t, "ledger", map[string]string{"NATS_URL": srv.URL(),
		"NATS_NKEY": seedFile(t, srv.LedgerSeed), "DATABASE_URL": app})
	gk := startGatekeeper(t, b["gatekeeper"], srv.URL(), seedFile(t, srv.ReaderSeed), auditor)

	began := time.Now()
	ld := startLoad(t, l, orgNames("pg", 6), 3)
	ld.waitAcks(10, readyTimeout, l.p, gk.p)
	// Enforcement latches on with the first license, in an event of its own.
	pr := &probe{gk: gk}
	proctest.WaitFor(t, "enforcement on at the gatekeeper", readyTimeout, []*proctest.Process{l.p, gk.p}, func() error {
		return pr.decide("unlicensed", 0, "")
	})
	pr = startProbe(t, l, gk)
	for range pgOutages {
		ld.waitAcks(acksPerStep, stepTimeout, l.p, gk.p)
		pr.waitChecks(3, l.p, gk.p)
		pg.Stop(t)
		pr.down.Store(true)
		// Uploads and decisions go on without PostgreSQL.
		ld.waitAcks(acksPerStep, stepTimeout, l.p, gk.p)
		pr.waitChecks(5, l.p, gk.p)
		pr.down.Store(false)
		pg.Start(t)
	}
	ld.waitAcks(acksPerStep, stepTimeout, l.p, gk.p)
	pr.stopProbe()
	ld.stopLoad()
	acks, statuses := ld.results()
	acks = append(acks, pr.acks...)

	bus := openReader(t, srv.URL(), seedFile(t, srv.ReaderSeed))
	checkEverything(t, bus, pgtest.NewPool(t, super), acks, l.p, gk.p)
	report(t, began, acks, statuses, fmt.Sprintf("PostgreSQL stopped %d times; %d gatekeeper decisions checked (%d while PostgreSQL was down)",
		pgOutages, pr.checks.Load(), pr.checksDown.Load()))
}

// gatekeeperProc is a `gatekeeper` process answering /authz.
type gatekeeperProc struct {
	p     *proctest.Process
	authz string
}

func startGatekeeper(t *testing.T, bin, natsURL, readerSeed, databaseURL string) *gatekeeperProc {
	t.Helper()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(upstream.Close)
	ports := proctest.FreePorts(t, 3)
	g := &gatekeeperProc{authz: fmt.Sprintf("http://127.0.0.1:%d/authz", ports[1])}
	admin := fmt.Sprintf("http://127.0.0.1:%d", ports[2])
	g.p = proctest.Start(t, "gatekeeper", bin, nil, map[string]string{
		"NATS_URL": natsURL, "NATS_NKEY": readerSeed, "DATABASE_URL": databaseURL,
		"LICENSE_PUBLIC_KEYS": licensetest.RingEntry("k1"), "DATA_DIR": t.TempDir(),
		"GATEKEEPER_LISTEN": fmt.Sprintf("127.0.0.1:%d", ports[0]), "GATEKEEPER_UPSTREAM": upstream.URL,
		"GATEKEEPER_AUTHZ_LISTEN": fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"GATEKEEPER_ADMIN_LISTEN": fmt.Sprintf("127.0.0.1:%d", ports[2]),
		// A loaded test machine: decisions get more time than in production.
		"GATEKEEPER_DECISION_TIMEOUT": "5s", "LOG_LEVEL": "info",
	})
	proctest.WaitFor(t, "gatekeeper to be ready", readyTimeout, []*proctest.Process{g.p}, func() error {
		return proctest.GetOK(admin + "/readyz")
	})
	return g
}

// probe uploads licenses to one org of its own, one after another, and
// asks the gatekeeper about each with the ledger's consistency token: the
// answer must allow with the new license's users_limit; an org without a
// license must be denied as license_missing.
type probe struct {
	t          *testing.T
	l          *ledgerProc
	gk         *gatekeeperProc
	ld         *load
	stop       atomic.Bool
	done       chan struct{}
	checks     atomic.Int64
	checksDown atomic.Int64 // checks while the test says PostgreSQL is down
	down       atomic.Bool
	mu         sync.Mutex
	acks       []ack
}

func startProbe(t *testing.T, l *ledgerProc, gk *gatekeeperProc) *probe {
	t.Helper()
	pr := &probe{t: t, l: l, gk: gk, done: make(chan struct{}),
		ld: &load{t: t, ledger: l, statuses: map[string]int{}, client: &http.Client{Timeout: uploadTimeout}}}
	go pr.run()
	t.Cleanup(pr.stopProbe)
	return pr
}

func (pr *probe) stopProbe() {
	if !pr.stop.Swap(true) {
		<-pr.done
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.acks = append(pr.acks[:0], pr.ld.acks...)
	for _, b := range pr.ld.bad {
		pr.t.Errorf("probe upload: %s", b)
	}
	pr.ld.bad = nil
}

func (pr *probe) waitChecks(n int, procs ...*proctest.Process) {
	pr.t.Helper()
	target := pr.checks.Load() + int64(n)
	proctest.WaitFor(pr.t, fmt.Sprintf("%d gatekeeper decisions", target), readyTimeout, procs, func() error {
		if pr.checks.Load() < target {
			return fmt.Errorf("%d checked", pr.checks.Load())
		}
		return nil
	})
}

func (pr *probe) run() {
	defer close(pr.done)
	for i := 0; !pr.stop.Load(); i++ {
		before := len(pr.ld.acks)
		key, id, err := pr.ld.newKey("probe")
		if err != nil {
			pr.t.Error(err)
			return
		}
		limit := pr.ld.seq.Load()
		pr.ld.httpUpload("probe", key, id)
		if len(pr.ld.acks) == before {
			time.Sleep(100 * time.Millisecond) // 409 or 503: try again
			continue
		}
		a := pr.ld.acks[len(pr.ld.acks)-1]
		if err := pr.decide("probe", a.seq, strconv.FormatInt(limit, 10)); err != nil {
			pr.t.Errorf("gatekeeper decision %d: %v", i, err)
			return
		}
		if err := pr.decide(fmt.Sprintf("unlicensed-%d", i), 0, ""); err != nil {
			pr.t.Errorf("gatekeeper decision %d: %v", i, err)
			return
		}
		pr.checks.Add(1)
		if pr.down.Load() {
			pr.checksDown.Add(1)
		}
	}
}

// decide asks /authz about org: with usersLimit, it must allow with that
// limit; without, deny as license_missing.
func (pr *probe) decide(org string, minSeq uint64, usersLimit string) error {
	req, _ := http.NewRequest("GET", pr.gk.authz, nil)
	req.Header.Set("X-Org-Slug", org)
	req.Header.Set("X-Original-Method", "GET")
	req.Header.Set("X-Original-URI", "/app/report")
	if minSeq > 0 {
		req.Header.Set("X-License-Min-Seq", strconv.FormatUint(minSeq, 10))
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if usersLimit != "" {
		if resp.StatusCode != 200 || resp.Header.Get("X-License-Users-Limit") != usersLimit || resp.Header.Get("X-License-Status") != "valid" {
			return fmt.Errorf("%s at seq %d: %d users_limit %q (want %s) %v %s", org, minSeq, resp.StatusCode,
				resp.Header.Get("X-License-Users-Limit"), usersLimit, resp.Header, body)
		}
		return nil
	}
	if resp.StatusCode != 403 || resp.Header.Get("X-License-Error") != "license_missing" {
		return fmt.Errorf("%s without a license: %d %s %s", org, resp.StatusCode, resp.Header.Get("X-License-Error"), strings.TrimSpace(string(body)))
	}
	return nil
}
