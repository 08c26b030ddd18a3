package audit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/events"
)

// oddFixture is fixture with the messages a compact record cannot hold
// in its fixed fields: an event id in upper case, event times before and
// after int64 nanoseconds' range, and a subject that names no org.
func oddFixture(t testing.TB) []*events.Message {
	msgs := fixture(t)
	raw := func(id, at string) []byte {
		return fmt.Appendf(nil, `{"id":%q,"type":"license.removed","schema":1,"org":"acme","at":%q,`+
			`"actor":{"kind":"operator","id":"deploy-bot"},"prev_seq":0,"data":{"license_id":"x"}}`, id, at)
	}
	for i, r := range [][]byte{
		raw("6F1C3A52-0000-5000-8000-00000000000A", "2026-11-29T13:00:00.5Z"),
		raw("6f1c3a52-0000-5000-8000-00000000000b", "0001-01-01T00:00:01Z"),
		raw("{6f1c3a52-0000-5000-8000-00000000000c}", "2999-12-31T23:59:59.999999999Z"),
	} {
		m := events.Decode(events.OrgSubject("acme"), uint64(9+i), r)
		if m.Envelope == nil {
			t.Fatalf("seq %d: %v", 9+i, m.Err)
		}
		msgs = append(msgs, m)
	}
	return append(msgs, events.Decode("elsewhere", 12, []byte(`{"not":"ours"}`)))
}

func scanned(t testing.TB, r audit.Reader, q audit.Query) []audit.Record {
	t.Helper()
	var out []audit.Record
	if err := r.Scan(context.Background(), q, func(r *audit.Record) error {
		c := *r
		c.Raw = bytes.Clone(r.Raw)
		out = append(out, c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// The compact trail gives back the very records NewRecord makes of the
// messages, bytes read back from the stream included.
func TestMemoryRecordsAreNewRecords(t *testing.T) {
	msgs := oddFixture(t)
	got, want := scanned(t, memoryOf(t, msgs), audit.Query{}), scanned(t, chain(msgs), audit.Query{})
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i := range got {
		a, b := got[i], want[i]
		if !a.At.Equal(b.At) || !a.RecordedAt.Equal(b.RecordedAt) || a.At.Location() != b.At.Location() {
			t.Fatalf("seq %d: at %v recorded %v, want %v %v", a.Seq, a.At, a.RecordedAt, b.At, b.RecordedAt)
		}
		a.At, b.At, a.RecordedAt, b.RecordedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if fmt.Sprintf("%+v", a) != fmt.Sprintf("%+v", b) {
			t.Fatalf("seq %d:\ngot  %+v\nwant %+v", a.Seq, a, b)
		}
	}
	res := verify(t, memoryOf(t, msgs), audit.VerifyOptions{})
	if !res.OK || res.Rows != uint64(len(msgs)) {
		t.Fatalf("verify: %v", res)
	}
}

// stream is a Source that differs from the messages the trail folded.
type stream struct {
	audit.Messages
	change func(subject string, seq uint64, raw []byte) (string, []byte)
	err    error
	read   func()
}

func (s stream) ReadRange(ctx context.Context, from, to uint64, fn func(string, uint64, []byte) error) error {
	if s.read != nil {
		s.read()
	}
	if s.err != nil {
		return s.err
	}
	return s.Messages.ReadRange(ctx, from, to, func(subject string, seq uint64, raw []byte) error {
		if subject, raw = s.change(subject, seq, raw); raw == nil {
			return nil
		}
		return fn(subject, seq, raw)
	})
}

// Verification recomputes the chain from the bytes the stream gives back
// and compares it with the hashes kept at append: a stream that no longer
// holds what was folded is reported, scoped or not.
func TestMemoryVerifiesTheStreamsBytes(t *testing.T) {
	msgs := fixture(t)
	for _, c := range []struct {
		name   string
		change func(string, uint64, []byte) (string, []byte)
		seq    uint64
		org    string
		col    string
	}{
		{"other bytes", func(s string, seq uint64, raw []byte) (string, []byte) {
			if seq == 4 {
				return s, flip(raw, 10)
			}
			return s, raw
		}, 4, "acme", audit.ColEnvelopeRaw},
		{"other bytes at the head", func(s string, seq uint64, raw []byte) (string, []byte) {
			if seq == 8 {
				return s, append(bytes.Clone(raw), ' ')
			}
			return s, raw
		}, 8, "_instance", audit.ColHash},
		{"a message gone", func(s string, seq uint64, raw []byte) (string, []byte) {
			if seq == 7 {
				return s, nil
			}
			return s, raw
		}, 7, "acme", audit.ColEnvelopeRaw},
		{"another subject", func(s string, seq uint64, raw []byte) (string, []byte) {
			if seq == 2 {
				return events.AuditSubject("acme"), raw
			}
			return s, raw
		}, 2, "acme", audit.ColSubject},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := audit.NewMemory(stream{Messages: msgs, change: c.change})
			for _, msg := range msgs {
				if err := m.Append(msg, base); err != nil {
					t.Fatal(err)
				}
			}
			if c.name == "a message gone" {
				t.Parallel() // the trail looks for it again for a moment
			}
			if res := verify(t, m, audit.VerifyOptions{}); res.OK || res.BadSeq != c.seq || res.Column != c.col {
				t.Fatalf("got %v, want mismatch at seq %d (%s)", res, c.seq, c.col)
			}
			if res := verify(t, m, audit.VerifyOptions{Scope: []string{c.org}}); res.OK || res.BadSeq != c.seq || res.Column != c.col {
				t.Fatalf("scoped: got %v, want mismatch at seq %d (%s)", res, c.seq, c.col)
			}
		})
	}
}

// A stream that does not answer fails the scan with its error; a reset
// (the stream recreated) during a scan fails it with ErrReset.
func TestMemoryScanFailures(t *testing.T) {
	msgs := fixture(t)
	down := fmt.Errorf("%w: no route", events.ErrUnavailable)
	m := audit.NewMemory(stream{Messages: msgs, err: down})
	for _, msg := range msgs {
		m.Append(msg, base)
	}
	err := m.Scan(context.Background(), audit.Query{}, func(*audit.Record) error { return nil })
	if !errors.Is(err, events.ErrUnavailable) {
		t.Fatalf("stream down: %v", err)
	}
	if _, err := audit.Verify(context.Background(), m, audit.VerifyOptions{}); !errors.Is(err, events.ErrUnavailable) {
		t.Fatalf("verify with the stream down: %v", err)
	}

	var trail *audit.Memory
	resets := 0
	trail = audit.NewMemory(stream{Messages: msgs, change: func(s string, _ uint64, raw []byte) (string, []byte) { return s, raw },
		read: func() {
			if resets++; resets == 1 {
				trail.Reset()
			}
		}})
	for _, msg := range msgs {
		trail.Append(msg, base)
	}
	err = trail.Scan(context.Background(), audit.Query{}, func(*audit.Record) error { return nil })
	if !errors.Is(err, audit.ErrReset) || trail.Len() != 0 {
		t.Fatalf("reset during the scan: %v (%d records)", err, trail.Len())
	}
}

// A sparse query reads the stream near its records only, not the
// whole range between them.
func TestMemoryScanReadsNearItsRecords(t *testing.T) {
	var msgs audit.Messages
	for seq := uint64(1); seq <= 3000; seq++ {
		org := "acme"
		if seq%1000 == 0 {
			org = "globex"
		}
		msgs = append(msgs, message(t, seq, org, events.TypeRejected, admin, int(seq)))
	}
	read := 0
	m := audit.NewMemory(stream{Messages: msgs, change: func(s string, _ uint64, raw []byte) (string, []byte) {
		read++
		return s, raw
	}})
	for _, msg := range msgs {
		m.Append(msg, base)
	}
	got := scanned(t, m, audit.Query{Org: "globex"})
	if len(got) != 3 || read != 3 || !bytes.Equal(got[2].Raw, msgs[2999].Raw) {
		t.Fatalf("%d records, %d messages read", len(got), read)
	}
}

// The in-memory trail keeps no message bytes and little else: 100,000
// records, each of its own org (the worst case of an install whose every
// org uploaded once), take under 200 bytes each.
func TestMemoryHeapPerRecord(t *testing.T) {
	const n = 100_000
	tmpl := `{"id":"6f1c3a52-0000-5000-8000-%012x","type":"license.uploaded","schema":1,"org":"org-%06d",` +
		`"at":"2026-11-29T13:00:00.000000Z","actor":{"kind":"operator","id":"bench"},"prev_seq":0,` +
		`"data":{"license_id":"0193a5b0-7e1a-7c3d-8f00-1234567890ab","key":"` + strings.Repeat("k", 300) + `"}}`
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m := audit.NewMemory(nil)
	for seq := uint64(1); seq <= n; seq++ {
		org := fmt.Sprintf("org-%06d", seq)
		msg := events.Decode(events.OrgSubject(org), seq, fmt.Appendf(nil, tmpl, seq, seq))
		if msg.Envelope == nil {
			t.Fatal(msg.Err)
		}
		if err := m.Append(msg, base); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perRecord := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n
	t.Logf("%.0f bytes of heap per record", perRecord)
	if perRecord > 200 {
		t.Fatalf("%.0f bytes of heap per record, want under 200", perRecord)
	}
	runtime.KeepAlive(m)
}
