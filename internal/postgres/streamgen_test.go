package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/postgres"
	"github.com/licenseledger/ledger/internal/testenv/licensetest"
	"github.com/licenseledger/ledger/internal/testenv/natstest"
	"github.com/licenseledger/ledger/license"
)

// bulkStream is a stream of n generated events, as replay meets them in
// an install that has run for a while: per org, in turn, an upload of its
// license, a rejected upload (audit subject), grace started, a
// pre-emptive invalidation and a removal. A fifth of the events carry a
// signed license the fold verifies.
type bulkStream struct {
	srv *natstest.Server
	bus *natsbus.Bus // ledger role
	n   int
}

// newBulkStream publishes n events (asynchronously, in order) to a fresh
// stream and returns once they are stored.
func newBulkStream(tb testing.TB, n int) *bulkStream {
	tb.Helper()
	ctx := context.Background()
	srv := natstest.Start(tb)
	srv.CreateStream(tb)
	nc := srv.Connect(tb, natsauth.RoleLedger)
	bus, _, err := natsbus.Open(ctx, nc, "LICENSES", 1, false)
	if err != nil {
		tb.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	orgs := max(n/50, 1)
	keys := make([]string, orgs)
	ids := make([]string, orgs)
	for i := range orgs {
		ids[i] = fmt.Sprintf("0193a5b0-7e1a-7c3d-8f00-%012x", i)
		keys[i] = licensetest.Sign(tb, "k1", payload(orgName(i), ids[i], nil)).Key
	}
	heads := map[string]uint64{}
	op := events.Actor{Kind: events.ActorOperator, ID: "op"}
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	pending := 0
	for i := range n {
		o := i % orgs
		org := orgName(o)
		var subject, typ string
		var data any
		switch (i / orgs) % 5 {
		case 0:
			subject, typ = events.OrgSubject(org), events.TypeUploaded
			data = events.Uploaded{LicenseID: ids[o], Fingerprint: fingerprint(keys[o]), Key: keys[o],
				Slot: events.SlotCurrent, GraceDaysEffective: 7, Source: events.SourceAPI}
		case 1:
			subject, typ = events.AuditSubject(org), events.TypeRejected
			data = map[string]any{"code": "license_older_than_current", "source": "api"}
		case 2:
			subject, typ = events.OrgSubject(org), events.TypeGraceStarted
			data = events.Due{LicenseID: ids[o], DueAt: events.Time{Time: at}}
		case 3:
			subject, typ = events.OrgSubject(org), events.TypeInvalidated
			data = events.Invalidated{LicenseID: fmt.Sprintf("0193a5b0-7e1a-7c3d-9f00-%012x", i), Note: "bulk"}
		default:
			subject, typ = events.OrgSubject(org), events.TypeRemoved
			data = events.Removed{LicenseID: ids[o]}
		}
		env, err := events.New(typ, org, at.Add(time.Duration(i)*time.Millisecond), op, heads[subject], data)
		if err != nil {
			tb.Fatal(err)
		}
		raw, _ := env.Encode()
		if _, err := js.PublishAsync(subject, raw); err != nil {
			tb.Fatal(err)
		}
		heads[subject] = uint64(i + 1)
		if pending++; pending == 2000 || i == n-1 {
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(30 * time.Second):
				tb.Fatal("publish stalled")
			}
			pending = 0
		}
	}
	if _, head, _ := bus.Stream(ctx); head != uint64(n) {
		tb.Fatalf("stream head %d after publishing %d events", head, n)
	}
	return &bulkStream{srv: srv, bus: bus, n: n}
}

func orgName(i int) string { return fmt.Sprintf("org-%05d", i) }

func fingerprint(key string) string { return license.Fingerprint(key) }

// auditRows reads the stream once and returns the license_audit rows
// replay writes for it (the raw COPY reference).
func (s *bulkStream) auditRows(tb testing.TB) [][]any {
	tb.Helper()
	rows := make([][]any, 0, s.n)
	chain := audit.Zero
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	now := time.Now().UTC()
	err := s.bus.Consume(ctx, 1, time.Second, func(m *events.Message) error {
		r := audit.NewRecord(m, chain, now)
		chain = r.Hash
		rows = append(rows, postgres.AuditRow(r))
		if len(rows) == s.n {
			cancel()
		}
		return nil
	}, nil)
	if len(rows) != s.n {
		tb.Fatalf("read %d of %d messages: %v", len(rows), s.n, err)
	}
	return rows
}
