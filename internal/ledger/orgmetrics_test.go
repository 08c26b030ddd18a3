package ledger_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/ledger"
	"github.com/licenseledger/ledger/internal/testenv/licensetest"
	"github.com/licenseledger/ledger/license"
)

// scrape reads url's Prometheus text: "name{labels}" → value.
func scrape(t testing.TB, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// The orgs' gauges, scraped after uploads that leave an org in each
// status: counts by status, the orgs expiring within 7 and 30 days (a
// pending renewal that covers the expiry takes the org out), the soonest
// expiry ahead, and enforcement.
func TestOrgsMetrics(t *testing.T) {
	f := newFixture()
	s := time.Now().UTC().Truncate(time.Second)
	at := func(t time.Time) { f.clock.Store(&t) }
	at(s)
	svc := f.service(t)
	reg := prometheus.NewRegistry()
	reg.MustRegister(svc.OrgsCollector())
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()

	n := 0
	put := func(org string, notBefore, expires time.Time) string {
		t.Helper()
		n++
		id := fmt.Sprintf("0193a5b0-7e1a-7c3d-8f00-%012d", n)
		key := sign(t, "k1", func(p map[string]any) {
			p["org_slug"], p["license_id"], p["expires"] = org, id, expires.Format(time.RFC3339)
			if org == license.InstanceOrg {
				p["org_slug"] = "*"
			}
			p["issued_at"] = time.Date(2026, 1, 1, 0, 0, n, 0, time.UTC).Format(time.RFC3339)
			if !notBefore.IsZero() {
				p["not_before"] = notBefore.Format(time.RFC3339)
			}
		})
		if _, err := upload(t, svc, org, key); err != nil {
			t.Fatalf("%s: %v", org, err)
		}
		return id
	}
	got := scrape(t, srv.URL)
	if got[`ledger_orgs{status="missing"}`] != 0 || got["ledger_enforcement_on"] != 0 {
		t.Fatalf("empty install: %v", got)
	}
	if _, ok := got["ledger_license_soonest_expiry_timestamp_seconds"]; ok {
		t.Fatal("a soonest expiry with no license")
	}
	// expired: uploaded 20 days ago, expired 10 days ago, grace (7) over.
	at(s.Add(-20 * day))
	put("expired", time.Time{}, s.Add(-10*day))
	at(s)
	put("valid", time.Time{}, s.Add(365*day))
	put("soon", time.Time{}, s.Add(5*day))
	put("month", time.Time{}, s.Add(20*day))
	put("renewed", time.Time{}, s.Add(10*day))
	put("renewed", s.Add(9*day), s.Add(400*day))
	put("grace", time.Time{}, s.Add(-day))
	ctx := context.Background()
	if _, err := svc.Invalidate(ctx, "revoked", operator, put("revoked", time.Time{}, s.Add(100*day)), "chargeback"); err != nil {
		t.Fatal(err)
	}
	put("removed", time.Time{}, s.Add(100*day))
	if _, err := svc.Remove(ctx, "removed", operator); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		`ledger_orgs{status="valid"}`: 4, `ledger_orgs{status="grace"}`: 1, `ledger_orgs{status="expired"}`: 1,
		`ledger_orgs{status="invalid"}`: 1, `ledger_orgs{status="missing"}`: 1,
		`ledger_orgs_expiring{within="7d"}`: 1, `ledger_orgs_expiring{within="30d"}`: 2,
		"ledger_license_soonest_expiry_timestamp_seconds": float64(s.Add(5 * day).Unix()),
		"ledger_enforcement_on":                           1,
	}
	check := func(want map[string]float64) {
		t.Helper()
		got := scrape(t, srv.URL)
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s = %v, want %v", k, got[k], v)
			}
		}
	}
	check(want)

	// An install-wide license counts _instance, and orgs without their own.
	put(license.InstanceOrg, time.Time{}, s.Add(3*day))
	if _, err := svc.SetEnforcement(ctx, operator, events.EnforceOff); err != nil {
		t.Fatal(err)
	}
	want[`ledger_orgs{status="valid"}`] = 6 // _instance and removed
	want[`ledger_orgs{status="missing"}`] = 0
	want[`ledger_orgs_expiring{within="7d"}`] = 3
	want[`ledger_orgs_expiring{within="30d"}`] = 4
	want["ledger_license_soonest_expiry_timestamp_seconds"] = float64(s.Add(3 * day).Unix())
	want["ledger_enforcement_on"] = 0
	check(want)

	// Eight days on: soon and _instance (and removed, on it) in grace,
	// grace expired, renewed on its renewal.
	at(s.Add(8 * day))
	check(map[string]float64{
		`ledger_orgs{status="valid"}`: 3, `ledger_orgs{status="grace"}`: 3, `ledger_orgs{status="expired"}`: 2,
		`ledger_orgs_expiring{within="7d"}`: 0, `ledger_orgs_expiring{within="30d"}`: 1,
		"ledger_license_soonest_expiry_timestamp_seconds": float64(s.Add(20 * day).Unix()),
	})
}

// seeded is a service holding n orgs, in each status by turns.
func seeded(t testing.TB, n int) (*ledger.Service, time.Time) {
	s := time.Now().UTC().Truncate(time.Second)
	keys := licensetest.Keys(t, "k1")
	ring := keys.Ring()
	var slots []*license.Slot
	for _, exp := range []time.Time{s.Add(365 * day), s.Add(5 * day), s.Add(20 * day), s.Add(-day), s.Add(-30 * day)} {
		key := sign(t, "k1", func(p map[string]any) { p["expires"] = exp.Format(time.RFC3339) })
		slots = append(slots, license.NewSlot(ring, "acme", "", key, 7))
	}
	svc := ledger.New(ledger.Config{Store: newFixture().store, Keys: keys, Now: func() time.Time { return s }})
	states := make([]*license.OrgState, n)
	for i := range states {
		st := license.NewOrgState(fmt.Sprintf("org-%06d", i))
		st.Seq, st.Current = uint64(i+1), slots[i%len(slots)]
		states[i] = st
	}
	svc.Seed(states)
	return svc, s
}

// A scrape of the orgs' gauges at 100,000 orgs: computed at each scrape
// from the orgs in memory, without verifying or reading anything.
func TestOrgsMetricsScrape100k(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 orgs")
	}
	svc, _ := seeded(t, 100_000)
	reg := prometheus.NewRegistry()
	reg.MustRegister(svc.OrgsCollector())
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	scrape(t, srv.URL) // warm
	const runs = 5
	start := time.Now()
	var got map[string]float64
	for range runs {
		got = scrape(t, srv.URL)
	}
	per := time.Since(start) / runs
	t.Logf("scrape at 100,000 orgs: %v", per)
	if got[`ledger_orgs{status="valid"}`] != 60_000 || got[`ledger_orgs{status="grace"}`] != 20_000 ||
		got[`ledger_orgs{status="expired"}`] != 20_000 || got[`ledger_orgs_expiring{within="7d"}`] != 20_000 {
		t.Fatalf("counts %v", got)
	}
	if per > 2*time.Second {
		t.Fatalf("a scrape takes %v at 100,000 orgs", per)
	}
}

func BenchmarkOrgsCount100k(b *testing.B) {
	svc, now := seeded(b, 100_000)
	b.ReportAllocs()
	for b.Loop() {
		svc.CountOrgs(now)
	}
}
