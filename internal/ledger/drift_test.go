package ledger_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/licenseledger/ledger/internal/events"
)

// driftEvents returns the ledger.stream_config_drift events on
// licenses.audit._instance, oldest first.
func driftEvents(t *testing.T, f *fixture) []events.StreamConfigDrift {
	t.Helper()
	ctx := context.Background()
	subject := events.AuditSubject("_instance")
	head, err := f.store.Head(ctx, subject)
	if err != nil {
		t.Fatal(err)
	}
	var out []events.StreamConfigDrift
	err = f.store.ReadSubject(ctx, subject, 0, head, func(m *events.Message) error {
		if m.Type() == events.TypeStreamConfigDrift {
			var d events.StreamConfigDrift
			if err := m.Envelope.DecodeData(&d); err != nil {
				t.Fatal(err)
			}
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A drift is recorded once per change: not at every check, not again by a
// restarted ledger or another one, and its end is recorded too.
func TestStreamDriftRecordedOncePerChange(t *testing.T) {
	f := newFixture()
	ctx := context.Background()
	maxAge := []events.ConfigField{{Field: "max_age", Expected: "0s", Actual: "1h0m0s"}}
	perSubject := []events.ConfigField{{Field: "max_msgs_per_subject", Expected: "-1", Actual: "1"}}

	svc := f.service(t)
	record := func(svc interface {
		RecordStreamDrift(context.Context, string, []events.ConfigField) (bool, error)
	}, fields []events.ConfigField, want bool) {
		t.Helper()
		got, err := svc.RecordStreamDrift(ctx, "LICENSES", fields)
		if err != nil || got != want {
			t.Fatalf("record %v: appended %v (%v), want %v", fields, got, err, want)
		}
	}
	record(svc, nil, false) // the stream matches: nothing to say
	record(svc, maxAge, true)
	record(svc, maxAge, false) // the next check
	restarted := f.service(t)
	record(restarted, maxAge, false) // a restarted or another ledger
	record(restarted, perSubject, true)
	record(svc, perSubject, false) // the first ledger sees the other's event
	record(svc, nil, true)         // back to the contract
	record(restarted, nil, false)

	got := driftEvents(t, f)
	want := []events.StreamConfigDrift{{Stream: "LICENSES", Fields: maxAge}, {Stream: "LICENSES", Fields: perSubject},
		{Stream: "LICENSES", Fields: []events.ConfigField{}}}
	if !slices.EqualFunc(got, want, func(a, b events.StreamConfigDrift) bool {
		return a.Stream == b.Stream && slices.Equal(a.Fields, b.Fields) && a.Fields != nil
	}) {
		t.Fatalf("drift events %+v, want %+v", got, want)
	}
}

// Ledgers that notice the same drift at once record it once.
func TestStreamDriftRecordedOnceByConcurrentLedgers(t *testing.T) {
	onEachStore(t, testStreamDriftRecordedOnceByConcurrentLedgers)
}

func testStreamDriftRecordedOnceByConcurrentLedgers(t *testing.T, f *fixture) {
	fields := []events.ConfigField{{Field: "num_replicas", Expected: "3", Actual: "1"}}
	var wg sync.WaitGroup
	appended := make(chan bool, 8)
	for range 8 {
		svc := f.service(t)
		wg.Go(func() {
			ok, err := svc.RecordStreamDrift(context.Background(), "LICENSES", fields)
			if err != nil {
				t.Error(err)
			}
			appended <- ok
		})
	}
	wg.Wait()
	close(appended)
	n := 0
	for ok := range appended {
		if ok {
			n++
		}
	}
	if got := driftEvents(t, f); n != 1 || len(got) != 1 {
		t.Fatalf("%d ledgers appended, %d events on the stream; want 1", n, len(got))
	}
}
