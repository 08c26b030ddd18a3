package projection_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/projection"
	"github.com/licenseledger/ledger/license"
)

// unreachable is a stream that cannot be read: NATS is down.
type unreachable struct{ reads int }

func (u *unreachable) Next(context.Context, string, uint64) (*events.Message, error) {
	u.reads++
	return nil, events.ErrUnavailable
}

func (u *unreachable) ReadSubject(context.Context, string, uint64, uint64, func(*events.Message) error) error {
	u.reads++
	return events.ErrUnavailable
}

// A compact state holds no key text. Verified again under a ring that no
// longer trusts its kid, it is unknown_key without reading the stream, so
// a withdrawn vendor key takes effect while NATS is down; under a ring
// that still trusts it, the key must be read back, and an unreachable
// stream is an error, never a verdict.
func TestReverifyFromWithdrawsKeysWithoutTheStream(t *testing.T) {
	tr := trustOf(t, "k1")
	t0 := time.Now()
	st := step(t, tr, license.NewOrgState("acme"), 1, events.TypeUploaded, t0, uploadOf(sign(t, "k1", basePayload()), events.SlotCurrent), projection.Applied)
	compact := projection.Compact(st)
	if !projection.Keyless(compact.Current) || compact.Current.Err != nil {
		t.Fatalf("compact state: keyless %v, err %v", projection.Keyless(compact.Current), compact.Current.Err)
	}
	src := &unreachable{}
	got, err := projection.ReverifyFrom(context.Background(), src, trustOf(t, "k2"), compact)
	if err != nil || src.reads != 0 {
		t.Fatalf("k1 withdrawn: %v after %d reads", err, src.reads)
	}
	if reasonOf(got.Current) != license.ReasonUnknownKey || compact.Current.Err != nil {
		t.Fatalf("k1 withdrawn: reason %q (the original state: %v)", reasonOf(got.Current), compact.Current.Err)
	}
	if r := license.ReportOf("acme", got, nil, t0); r.Status != license.StatusInvalid {
		t.Fatalf("k1 withdrawn: status %s", r.Status)
	}
	if _, err := projection.ReverifyFrom(context.Background(), src, trustOf(t, "k1", "k2"), compact); !errors.Is(err, events.ErrUnavailable) || src.reads == 0 {
		t.Fatalf("k1 still trusted, the stream down: %v after %d reads", err, src.reads)
	}
}
