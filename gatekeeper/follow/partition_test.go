package follow

import (
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/testenv/faultproxy"
	"github.com/licenseledger/ledger/license"
)

const testMaxStaleness = 1500 * time.Millisecond

// proxiedReader opens the stream as the reader role through a proxy that
// can black-hole the connection, with the connection options a follower
// with testMaxStaleness needs.
func proxiedReader(t *testing.T, e *env) (Stream, *faultproxy.Proxy) {
	t.Helper()
	p := faultproxy.Start(t, strings.TrimPrefix(e.srv.URL(), "nats://"))
	auth, err := natsauth.ConnectOption(e.srv.ReaderSeed)
	if err != nil {
		t.Fatal(err)
	}
	// What natsstream.ConnOptions(testMaxStaleness) sets.
	nc, err := nats.Connect("nats://"+p.Addr(), auth, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.Timeout(500*time.Millisecond), nats.CustomInboxPrefix(natsauth.InboxPrefix(natsauth.RoleReader)),
		nats.PingInterval(PingInterval(testMaxStaleness)), nats.MaxPingsOutstanding(2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if nc.Opts.PingInterval != PingInterval(testMaxStaleness) || PingInterval(testMaxStaleness) != 500*time.Millisecond {
		t.Fatalf("ping interval %s", nc.Opts.PingInterval)
	}
	return openReader(t, nc), p
}

// proxiedDSN returns a DSN reaching dsn's database through a proxy.
func proxiedDSN(t *testing.T, dsn string) (string, *faultproxy.Proxy) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.ConnConfig
	p := faultproxy.Start(t, net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port))))
	host, port, _ := net.SplitHostPort(p.Addr())
	u := url.URL{Scheme: "postgres", User: url.UserPassword(c.User, c.Password), Host: net.JoinHostPort(host, port),
		Path: "/" + c.Database, RawQuery: "sslmode=disable&connect_timeout=1"}
	return u.String(), p
}

// A healthy, idle follower stays confirmed current.
func TestIdleFollowerStaysFresh(t *testing.T) {
	e := newEnv(t)
	e.upload(t, "acme")
	const bound = 300 * time.Millisecond
	f := start(t, Config{Stream: e.readerBus(t), MaxStaleness: bound}, true)
	for range 10 {
		time.Sleep(100 * time.Millisecond)
		if s := f.Staleness(); s > bound || f.Stale() {
			t.Fatalf("idle and healthy, yet staleness %s", s)
		}
	}
	if h := f.Health(); h.StreamHead != h.AppliedSeq || !h.NATS {
		t.Fatalf("health %+v", h)
	}
}

func waitStale(t *testing.T, f *Follower) time.Duration {
	t.Helper()
	return eventually(t, 3*testMaxStaleness, "stale", func() bool { return f.Stale() && f.Staleness() > testMaxStaleness })
}

// Without PostgreSQL: a black-holed connection makes the follower stale
// within the bound; cached orgs keep their answers, uncached ones are
// unavailable; healed, it catches up with what was appended meanwhile.
func TestPartitionWithoutPostgres(t *testing.T) {
	e := newEnv(t)
	acmeID, _ := e.upload(t, "acme")
	bus, proxy := proxiedReader(t, e)
	f := start(t, Config{Stream: bus, MaxStaleness: testMaxStaleness}, true)
	if _, _, err := state(t, f, "newco", 0); err != nil {
		t.Fatalf("before the partition an unknown org is missing, not %v", err)
	}
	eventually(t, 2*time.Second, "fresh", func() bool { return f.Staleness() < testMaxStaleness/2 && !f.Stale() })
	// Cached means verified: a key not verified yet needs the stream.
	eventually(t, 2*time.Second, "every key verified", func() bool { return f.UnverifiedOrgs() == 0 })

	proxy.Blackhole(true)
	cut := time.Now()
	d := waitStale(t, f)
	t.Logf("stale %s after the partition (bound %s)", d.Round(time.Millisecond), testMaxStaleness)
	if d > testMaxStaleness+500*time.Millisecond {
		t.Errorf("stale only after %s", d)
	}
	own, inst := mustState(t, f, "acme", 0)
	if own.Current.LicenseID != acmeID || inst.Org != license.InstanceOrg {
		t.Fatalf("cached acme: %+v", own)
	}
	if _, _, err := state(t, f, "newco", 0); !isUnavailable(err) {
		t.Fatalf("uncached org while stale: err %v, want unavailable", err)
	}
	if _, _, ok := f.CachedState("acme", 0); ok {
		t.Fatal("the fast path answered while stale")
	}
	if h := f.Health(); !h.Loaded || !h.Stale || h.StalenessSeconds <= testMaxStaleness.Seconds() {
		t.Fatalf("health %+v", h)
	}

	// Appended during the partition, which lasts long enough for pings to
	// declare the connection dead and reconnects to fail into the black
	// hole.
	res := e.invalidate(t, "acme", acmeID)
	newcoID, newco := e.upload(t, "newco")
	nc := bus.(interface{ Conn() *nats.Conn }).Conn()
	eventually(t, 5*time.Second, "connection declared dead", func() bool { return !nc.IsConnected() })
	time.Sleep(time.Second)
	if got := seqOf(f.cached("acme")); got >= res.Seq {
		t.Fatal("an event crossed the partition")
	}

	proxy.Blackhole(false)
	healed := time.Now()
	eventually(t, 10*time.Second, "caught up after healing", func() bool {
		return seqOf(f.cached("acme")) >= res.Seq && seqOf(f.cached("newco")) >= newco.Seq
	})
	t.Logf("partition of %s; caught up %s after healing (%d reconnects)", healed.Sub(cut).Round(time.Millisecond),
		time.Since(healed).Round(time.Millisecond), nc.Stats().Reconnects)
	eventually(t, 2*time.Second, "fresh again", func() bool { return !f.Stale() })
	own, _ = mustState(t, f, "acme", 0)
	if !own.IsRevoked(acmeID) {
		t.Fatal("acme's revocation missing after healing")
	}
	own, _ = mustState(t, f, "newco", 0)
	if own.Current.LicenseID != newcoID {
		t.Fatal("newco missing after healing")
	}
	// And the consumer keeps following.
	_, r := e.upload(t, "acme")
	eventually(t, 2*time.Second, "followed after healing", func() bool { return seqOf(f.cached("acme")) >= r.Seq })
}

// With PostgreSQL: while stale, every request reloads the org's row with
// the version guard (a row behind the cache is never used); with both NATS
// and PostgreSQL gone the follower fails static.
func TestPartitionWithPostgres(t *testing.T) {
	e := newEnv(t)
	acmeID, _ := e.upload(t, "acme")
	globexID, _ := e.upload(t, "globex")
	dsn, direct := migrated(t)
	pr := e.runProjector(t, direct)
	pr.caughtUp(t, e)

	bus, natsProxy := proxiedReader(t, e)
	proxied, pgProxy := proxiedDSN(t, dsn)
	f := start(t, Config{Stream: bus, DatabaseURL: proxied, MaxStaleness: testMaxStaleness, PGTimeout: 300 * time.Millisecond}, true)

	// The projector falls behind: acme's newest license reaches only the
	// stream (and this replica).
	pr.stop()
	acme2, res := e.upload(t, "acme")
	eventually(t, 2*time.Second, "acme applied", func() bool { return seqOf(f.cached("acme")) >= res.Seq })

	natsProxy.Blackhole(true)
	cut := time.Now()
	waitStale(t, f)

	// The row is behind the cache: the cache is kept.
	own, _ := mustState(t, f, "acme", 0)
	if own.Seq != res.Seq || own.Current.LicenseID != acme2 {
		t.Fatalf("acme went back to its row: seq %d, want %d", own.Seq, res.Seq)
	}
	if value(t, f.m.staleReloads.WithLabelValues("kept")) < 1 {
		t.Error("no guarded reload counted")
	}

	// Events during the partition reach PostgreSQL through a projector
	// that still sees the stream: newer rows are used, new orgs answered.
	inv := e.invalidate(t, "globex", globexID)
	newcoID, _ := e.upload(t, "newco")
	pr = e.runProjector(t, direct)
	pr.caughtUp(t, e)
	own, _ = mustState(t, f, "globex", inv.Seq) // a token the stream cannot serve now: the row does
	if !own.IsRevoked(globexID) || own.Seq < inv.Seq {
		t.Fatal("globex: the newer row was not used")
	}
	own, _ = mustState(t, f, "newco", 0)
	if own.Current == nil || own.Current.LicenseID != newcoID || own.Current.Err != nil {
		t.Fatalf("newco from its row: %+v", own.Current)
	}
	own, _ = mustState(t, f, "unknown-org", 0)
	if own.Seq != 0 || f.cached("unknown-org") != nil {
		t.Fatalf("an org with no row: %+v (cached: %v)", own, f.cached("unknown-org") != nil)
	}

	// PostgreSQL gone too: fail static, within the timeouts.
	pgProxy.Blackhole(true)
	began := time.Now()
	own, inst := mustState(t, f, "acme", 0)
	if own.Current.LicenseID != acme2 || inst == nil {
		t.Fatalf("acme while everything is gone: %+v", own)
	}
	if _, _, err := state(t, f, "other-org", 0); !isUnavailable(err) {
		t.Fatalf("uncached org with everything gone: err %v", err)
	}
	own, _ = mustState(t, f, "newco", 0) // cached by its reload
	if own.Current.LicenseID != newcoID {
		t.Fatal("newco lost")
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("failing static took %s", d)
	}

	// Healed: caught up from the stream.
	pgProxy.Blackhole(false)
	natsProxy.Blackhole(false)
	healed := time.Now()
	_, r := e.upload(t, "newco")
	eventually(t, 10*time.Second, "caught up after healing", func() bool {
		return seqOf(f.cached("newco")) >= r.Seq && !f.Stale()
	})
	t.Logf("partition of %s; caught up %s after healing", healed.Sub(cut).Round(time.Millisecond), time.Since(healed).Round(time.Millisecond))
	own, _ = mustState(t, f, "acme", 0)
	if own.Current.LicenseID != acme2 {
		t.Fatal("acme after healing")
	}
	_ = acmeID
}
