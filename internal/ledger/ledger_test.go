package ledger_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/ledger"
	"github.com/licenseledger/ledger/internal/memstream"
	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/testenv/licensetest"
	"github.com/licenseledger/ledger/internal/testenv/natstest"
	"github.com/licenseledger/ledger/license"
)

func sign(t testing.TB, kid string, mod func(map[string]any)) string {
	t.Helper()
	p := map[string]any{
		"license_id": "0193a5b0-7e1a-7c3d-8f00-1234567890ab", "customer": "Acme", "org_slug": "acme",
		"tier": "starter", "issued_at": "2026-11-01T00:00:00Z", "expires": time.Now().Add(365 * 24 * time.Hour).UTC().Format(time.RFC3339),
	}
	if mod != nil {
		mod(p)
	}
	return licensetest.Sign(t, kid, p).Key
}

// fixture is a stream (in memory, or on a JetStream server) and a clock
// the services under test share.
type fixture struct {
	store ledger.Store
	clock atomic.Pointer[time.Time]
}

func (f *fixture) now() time.Time {
	if p := f.clock.Load(); p != nil {
		return *p
	}
	return time.Now()
}

// newFixture is a fixture on an in-memory stream: the commands' logic
// needs no server.
func newFixture() *fixture { return &fixture{store: memstream.New(memstream.Config{})} }

// newNATSFixture creates the stream on srv as the stream administrator
// does, and binds to it as the ledger.
func newNATSFixture(t *testing.T, srv *natstest.Server) *fixture {
	t.Helper()
	srv.CreateStream(t)
	nc := srv.Connect(t, natsauth.RoleLedger)
	b, _, err := natsbus.Open(context.Background(), nc, "LICENSES", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{store: b}
}

// onEachStore runs test on an in-memory stream and on a JetStream server's:
// what hinges on the store's concurrency control (replicas racing on one
// subject, deterministic event ids) is checked on the real one too.
func onEachStore(t *testing.T, test func(t *testing.T, f *fixture)) {
	t.Run("memstream", func(t *testing.T) { test(t, newFixture()) })
	t.Run("jetstream", func(t *testing.T) { test(t, newNATSFixture(t, natstest.Start(t))) })
}

func keysFor(t *testing.T) *license.Keys {
	t.Helper()
	return licensetest.Keys(t, "k1")
}

func (f *fixture) service(t *testing.T) *ledger.Service {
	t.Helper()
	svc := ledger.New(ledger.Config{Store: f.store, Keys: keysFor(t), DefaultGraceDays: 7, Now: f.now, Version: "test"})
	if err := svc.Start(context.Background(), events.LedgerStarted{}); err != nil {
		t.Fatal(err)
	}
	return svc
}

var operator = events.Actor{Kind: events.ActorOperator, ID: "test-op"}

// 50 concurrent uploads of distinct licenses to one org through two ledger
// replicas: every answer is success or conflict, prev_seq is unbroken, and
// the final license is one that was acknowledged.
func TestConcurrentUploadsOneOrg(t *testing.T) { onEachStore(t, testConcurrentUploadsOneOrg) }

func testConcurrentUploadsOneOrg(t *testing.T, f *fixture) {
	replicas := []*ledger.Service{f.service(t), f.service(t)}
	if replicas[0].InstallID() != replicas[1].InstallID() || replicas[0].InstallID() == "" {
		t.Fatalf("replicas disagree on the install id: %q %q", replicas[0].InstallID(), replicas[1].InstallID())
	}
	const n = 50
	var wg sync.WaitGroup
	acked := sync.Map{}
	var ok, conflicts atomic.Int32
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("0193a5b0-7e1a-7c3d-8f00-%012d", i)
			key := sign(t, "k1", func(p map[string]any) {
				p["license_id"] = id
				p["issued_at"] = time.Date(2026, 11, 1, 0, 0, i, 0, time.UTC).Format(time.RFC3339)
			})
			res, err := replicas[i%2].Upload(context.Background(), ledger.Upload{Org: "acme", Body: []byte(key), Actor: operator, Source: events.SourceAPI, Force: true})
			switch code := ledger.CodeOf(err); {
			case err == nil:
				ok.Add(1)
				acked.Store(id, res.Seq)
			case code == ledger.CodeConflict:
				conflicts.Add(1)
			default:
				t.Errorf("upload %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d acknowledged, %d answered conflict", ok.Load(), conflicts.Load())
	if ok.Load() == 0 {
		t.Fatal("nothing acknowledged")
	}
	// prev_seq is unbroken on the subject and every event is acknowledged.
	ctx := context.Background()
	head, _ := f.store.Head(ctx, events.OrgSubject("acme"))
	var prev uint64
	count := 0
	err := f.store.ReadSubject(ctx, events.OrgSubject("acme"), 0, head, func(m *events.Message) error {
		if m.Envelope == nil || m.Envelope.PrevSeq != prev {
			return fmt.Errorf("seq %d: prev_seq %v, want %d", m.Seq, m.Envelope, prev)
		}
		var d events.Uploaded
		m.Envelope.DecodeData(&d)
		if seq, ok := acked.Load(d.LicenseID); !ok || seq.(uint64) != m.Seq {
			return fmt.Errorf("seq %d holds %s, which no caller saw acknowledged", m.Seq, d.LicenseID)
		}
		prev = m.Seq
		count++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if count != int(ok.Load()) {
		t.Fatalf("%d events for %d acknowledgements", count, ok.Load())
	}
	for _, svc := range replicas {
		r, err := svc.Status(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := acked.Load(*r.LicenseID); !ok || *r.Seq != head {
			t.Fatalf("final license %s at seq %d was not acknowledged (head %d)", *r.LicenseID, *r.Seq, head)
		}
	}
}

// An event appended straight to the stream (as anyone holding the ledger's
// credentials could) with a forged key folds as invalid, never as valid.
func TestForgedEventIsInvalid(t *testing.T) {
	f := newFixture()
	svc := f.service(t)
	ctx := context.Background()
	forged := sign(t, "k9", func(p map[string]any) {}) // k9 is not trusted
	l, _ := license.Decode([]byte(forged))
	// Same kid as a trusted key but another private key.
	_, priv9 := licensetest.Key("k9")
	payload := l.PayloadJSON()
	underK1, _ := license.Sign(priv9, "k1", payload)
	for i, key := range []*license.License{l, underK1} {
		org := []string{"acme", "globex"}[i]
		p := map[string]any{}
		json.Unmarshal(payload, &p)
		if org == "globex" {
			p["org_slug"] = "globex"
			b, _ := json.Marshal(p)
			key, _ = license.Sign(priv9, "k1", b)
		}
		env, _ := events.New(events.TypeUploaded, org, time.Now(), operator, 0, events.Uploaded{
			LicenseID: "0193a5b0-7e1a-7c3d-8f00-1234567890ab", Fingerprint: key.Fingerprint, Key: key.Key,
			Slot: events.SlotCurrent, GraceDaysEffective: 7, Source: events.SourceAPI})
		if _, err := f.store.Append(ctx, events.OrgSubject(org), env, 0); err != nil {
			t.Fatal(err)
		}
		r, err := svc.Status(ctx, org)
		if err != nil {
			t.Fatal(err)
		}
		want := []license.Reason{license.ReasonUnknownKey, license.ReasonSignatureInvalid}[i]
		if r.Status != license.StatusInvalid || r.Reason == nil || *r.Reason != want {
			t.Fatalf("%s: forged event folded as %s/%v, want invalid/%s", org, r.Status, r.Reason, want)
		}
	}
}

// rejecting is a service on a fresh stream with its clock stopped at start,
// and a license key signed by a kid it does not trust.
func rejecting(t *testing.T) (f *fixture, svc *ledger.Service, start time.Time, bad string) {
	t.Helper()
	f = newFixture()
	start = time.Now()
	f.clock.Store(&start)
	return f, f.service(t), start, sign(t, "k2", nil)
}

// Rejections are audited on the audit subject without the key, capped per
// org, and what the cap dropped is summarised once the bucket refills.
func TestRejectionAuditRateLimit(t *testing.T) {
	f, svc, start, bad := rejecting(t)
	ctx := context.Background()
	for range 15 {
		_, err := svc.Upload(ctx, ledger.Upload{Org: "acme", Body: []byte(bad), Actor: operator, Source: events.SourceCLI})
		var e *ledger.Error
		if !errors.As(err, &e) || e.Code != ledger.CodeUnknownKey {
			t.Fatalf("upload: %v", err)
		}
	}
	later := start.Add(time.Minute)
	f.clock.Store(&later)
	svc.Upload(ctx, ledger.Upload{Org: "acme", Body: []byte("garbage"), Actor: operator, Source: events.SourceAPI})

	head, _ := f.store.Head(ctx, events.AuditSubject("acme"))
	var types []string
	var suppressed events.RejectedSuppressed
	f.store.ReadSubject(ctx, events.AuditSubject("acme"), 0, head, func(m *events.Message) error {
		types = append(types, m.Type())
		switch m.Type() {
		case events.TypeRejected:
			var d events.Rejected
			m.Envelope.DecodeData(&d)
			if d.Fingerprint == "" && d.Code != ledger.CodeMalformed || d.Source == "" {
				t.Errorf("rejected event %s", m.Raw)
			}
			if strings.Contains(string(m.Raw), bad[len(bad)-40:]) {
				t.Errorf("a rejected event holds the key")
			}
		case events.TypeRejectedSuppressed:
			m.Envelope.DecodeData(&suppressed)
		}
		return nil
	})
	if len(types) != 12 || types[10] != events.TypeRejectedSuppressed || types[11] != events.TypeRejected {
		t.Fatalf("audit subject: %v", types)
	}
	if suppressed.Count != 5 || !suppressed.Since.Equal(start.UTC().Truncate(time.Microsecond)) {
		t.Fatalf("suppressed %+v", suppressed)
	}
	// Nothing reached the org subject.
	if h, _ := f.store.Head(ctx, events.OrgSubject("acme")); h != 0 {
		t.Fatalf("org subject head %d after rejections", h)
	}
}

// Dropped rejections are reported by the periodic flush once the org's
// bucket has room, and by the shutdown flush (all) at once; each count is
// appended exactly once, and one that could not be appended is kept.
func TestRejectionSuppressedFlush(t *testing.T) {
	f, svc, start, bad := rejecting(t)
	ctx := context.Background()
	reject := func(org string, n int) {
		for range n {
			svc.Upload(ctx, ledger.Upload{Org: org, Body: []byte(bad), Actor: operator, Source: events.SourceAPI})
		}
	}
	suppressedOf := func(org string) []int {
		head, err := f.store.Head(ctx, events.AuditSubject(org))
		if err != nil {
			t.Fatal(err)
		}
		var counts []int
		f.store.ReadSubject(ctx, events.AuditSubject(org), 0, head, func(m *events.Message) error {
			if m.Type() == events.TypeRejectedSuppressed {
				var d events.RejectedSuppressed
				m.Envelope.DecodeData(&d)
				counts = append(counts, d.Count)
			}
			return nil
		})
		return counts
	}
	reject("acme", 13)
	reject("globex", 11)
	svc.FlushSuppressed(ctx, false) // no bucket has room yet
	if c := suppressedOf("acme"); len(c) != 0 {
		t.Fatalf("periodic flush with empty buckets appended %v", c)
	}
	later := start.Add(time.Minute)
	f.clock.Store(&later)
	svc.FlushSuppressed(ctx, false)
	if a, g := suppressedOf("acme"), suppressedOf("globex"); !slices.Equal(a, []int{3}) || !slices.Equal(g, []int{1}) {
		t.Fatalf("periodic flush: acme %v, globex %v; want [3] and [1]", a, g)
	}
	reject("acme", 20) // the refilled bucket takes 10, 10 are dropped
	// A flush that cannot append keeps the count for the next one.
	dead, cancel := context.WithCancel(ctx)
	cancel()
	svc.FlushSuppressed(dead, true)
	if a := suppressedOf("acme"); !slices.Equal(a, []int{3}) {
		t.Fatalf("a flush that could not append: acme %v; want [3]", a)
	}
	svc.FlushSuppressed(ctx, true)
	svc.FlushSuppressed(ctx, true)
	if a, g := suppressedOf("acme"), suppressedOf("globex"); !slices.Equal(a, []int{3, 10}) || !slices.Equal(g, []int{1}) {
		t.Fatalf("shutdown flush: acme %v, globex %v; want [3 10] and [1]", a, g)
	}
}
