package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/ledger"
	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/postgres"
	"github.com/licenseledger/ledger/internal/testenv/natstest"
	"github.com/licenseledger/ledger/internal/testenv/pgtest"
	"github.com/licenseledger/ledger/internal/usage"
	"github.com/licenseledger/ledger/license"
)

// A scripted month of usage reports and a renewal, on a ledger whose clock
// the test moves: the true-up report from the projected audit trail equals
// a table computed by hand, and a database rebuilt from the stream alone
// (ledger replay --swap into an empty one) gives the same report.
func TestUsageTrueUpOverAScriptedMonth(t *testing.T) {
	ctx := context.Background()
	srv := natstest.Start(t)
	srv.CreateStream(t)
	bus, _, err := natsbus.Open(ctx, srv.Connect(t, natsauth.RoleLedger), "LICENSES", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	ring, _ := vendorKey("k1")
	keys, err := license.NewKeys(license.RingConfig{Env: ring, NoBuiltin: true})
	if err != nil {
		t.Fatal(err)
	}
	var clock atomic.Pointer[time.Time]
	at := func(s string) {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		clock.Store(&tm)
	}
	at("2027-02-01T00:00:00Z")
	svc := ledger.New(ledger.Config{Store: bus, Keys: keys, DefaultGraceDays: 7, Now: func() time.Time { return *clock.Load() }})
	if err := svc.Start(ctx, events.LedgerStarted{}); err != nil {
		t.Fatal(err)
	}
	op := events.Actor{Kind: events.ActorOperator, ID: "op"}
	upload := func(org, id, issued string, limit int) {
		t.Helper()
		key := signed(t, "k1", func(p map[string]any) {
			p["org_slug"], p["license_id"], p["issued_at"], p["users_limit"] = org, id, issued, limit
			p["expires"] = "2028-01-01T00:00:00Z"
		})
		if _, err := svc.Upload(ctx, ledger.Upload{Org: org, Body: []byte(key), Actor: op, Source: events.SourceCLI}); err != nil {
			t.Fatal(err)
		}
	}
	report := func(org string, users int, wantAppended bool) {
		t.Helper()
		res, err := svc.ReportUsage(ctx, org, op, users)
		if err != nil {
			t.Fatalf("report %s %d at %s: %v", org, users, clock.Load(), err)
		}
		if res.Appended != wantAppended {
			t.Fatalf("report %s %d: appended %v, want %v", org, users, res.Appended, wantAppended)
		}
	}
	const acmeOld, acmeNew, globexID = "0193a5b0-7e1a-7c3d-8f00-0000000000a1", "0193a5b0-7e1a-7c3d-8f00-0000000000a2", "0193a5b0-7e1a-7c3d-8f00-0000000000b1"

	at("2027-02-20T08:00:00Z")
	upload("acme", acmeOld, "2027-02-19T00:00:00Z", 50)
	upload("globex", globexID, "2027-02-19T00:00:00Z", 0) // unlimited
	upload("initech", "0193a5b0-7e1a-7c3d-8f00-0000000000c1", "2027-02-19T00:00:00Z", 10)
	at("2027-02-25T10:00:00Z")
	report("acme", 40, true)
	at("2027-03-03T12:00:00Z")
	report("acme", 48, true)
	report("globex", 500, true)
	at("2027-03-03T13:00:00Z")
	report("acme", 48, false) // unchanged: nothing appended
	at("2027-03-05T09:00:00Z")
	report("acme", 52, true) // over 50 from the 5th…
	at("2027-03-07T18:00:00Z")
	report("acme", 49, true) // …to the 7th: 3 days
	at("2027-03-10T08:00:00Z")
	upload("acme", acmeNew, "2027-03-10T00:00:00Z", 60) // the renewal raises the limit
	at("2027-03-12T00:00:00Z")
	report("acme", 55, true)
	at("2027-03-20T15:30:00Z")
	report("acme", 61, true) // over 60 from the 20th to the 31st: 12 days
	at("2027-04-02T06:00:00Z")
	report("acme", 58, true) // April: over on the 1st and the 2nd
	at("2027-04-10T00:00:00Z")

	_, pool, proj := startProjector(t, srv, keys, svc.InstallID)
	waitProjected(t, bus, proj)

	q := usage.Query{From: mustTime(t, "2027-03-01T00:00:00Z"), To: mustTime(t, "2027-05-01T00:00:00Z")}
	live, err := usage.Compute(ctx, postgres.NewAuditReader(pool), svc.VerifyingTrust(), q)
	if err != nil {
		t.Fatal(err)
	}
	// By hand. acme: March peaks at 61, ends under the renewal's 60 (a2);
	// over on the 5th–7th (52 > 50) and the 20th–31st (61 > 60): 15 days,
	// the largest excess 2. Five changes were recorded in March (48, 52,
	// 49, 55, 61), one in April (58, on the 2nd, after 61 held the 1st and
	// part of the 2nd). globex is unlimited: never over. initech reported
	// nothing: no rows.
	want := `[` +
		`{"month":"2027-03","org":"acme","max_users":61,"users_limit":60,"license_id":"` + acmeNew + `","days_over":15,"max_overage":2,"reports":5},` +
		`{"month":"2027-04","org":"acme","max_users":61,"users_limit":60,"license_id":"` + acmeNew + `","days_over":2,"max_overage":1,"reports":1},` +
		`{"month":"2027-03","org":"globex","max_users":500,"users_limit":0,"license_id":"` + globexID + `","days_over":0,"max_overage":0,"reports":1},` +
		`{"month":"2027-04","org":"globex","max_users":500,"users_limit":0,"license_id":"` + globexID + `","days_over":0,"max_overage":0,"reports":0}]`
	if got := mustJSON(t, live); got != want {
		t.Fatalf("report:\n got %s\nwant %s", got, want)
	}
	// One org and one month: the same rows.
	one, err := usage.Compute(ctx, postgres.NewAuditReader(pool), svc.VerifyingTrust(),
		usage.Query{From: mustTime(t, "2027-03-01T00:00:00Z"), To: mustTime(t, "2027-04-01T00:00:00Z"), Org: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if got := mustJSON(t, one); got != mustJSON(t, live[:1]) {
		t.Fatalf("acme in March: %s, want %s", got, mustJSON(t, live[:1]))
	}

	// Rebuilt from the stream into an empty database: the same report.
	rebuilt := pgtest.NewDatabase(t)
	if err := postgres.Migrate(ctx, rebuilt, "up", postgres.Roles{}, io.Discard); err != nil {
		t.Fatal(err)
	}
	seed := filepath.Join(t.TempDir(), "ledger.nk")
	if err := os.WriteFile(seed, srv.LedgerSeed, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := cliRun(t, "", "replay", "--swap", "--database-url", rebuilt, "--nats-url", srv.URL(),
		"--nats-nkey", seed, "--public-keys", ring, "--progress", "log")
	if code != 0 {
		t.Fatalf("replay --swap into an empty database: exit %d\n%s\n%s", code, out, errOut)
	}
	rebuiltPool := pgtest.NewPool(t, rebuilt)
	// The replay rebuilds the seat state of the read model too.
	seats := func(pool *pgxpool.Pool) string {
		t.Helper()
		var out string
		if err := pool.QueryRow(ctx, `SELECT string_agg(org_slug || ':' || coalesce(users_active::text, '-') || '@' ||
			coalesce(to_char(users_reported_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS'), '-') || '/' || coalesce(users_limit::text, '-'), ' ' ORDER BY org_slug)
			FROM org_licenses`).Scan(&out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if live, replayed := seats(pool), seats(rebuiltPool); live != replayed ||
		live != "_instance:-@-/- acme:58@2027-04-02T06:00:00/60 globex:500@2027-03-03T12:00:00/0 initech:-@-/10" {
		t.Fatalf("org_licenses seats: live %q, rebuilt %q", live, replayed)
	}
	replayed, err := usage.Compute(ctx, postgres.NewAuditReader(rebuiltPool), svc.VerifyingTrust(), q)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustJSON(t, replayed); got != want {
		t.Fatalf("report after the replay:\n got %s\nwant %s", got, want)
	}
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
