package events_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/license"
)

// FuzzDecode checks that Decode never panics and that whatever it accepts
// is an envelope that belongs on its subject. The seed corpus is in
// testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	at := time.Date(2026, 11, 29, 13, 1, 2, 123456000, time.UTC)
	for _, s := range []struct {
		typ, org string
		audit    bool
		data     any
	}{
		{events.TypeInvalidated, "acme", false, events.Invalidated{LicenseID: "0193a5b0-7e1a-7c3d-8f00-1234567890ab", Note: "n"}},
		{events.TypeExpired, "globex", false, events.Due{LicenseID: "l", DueAt: events.Time{Time: at}}},
		{events.TypeRejectedSuppressed, "acme", true, events.RejectedSuppressed{Count: 2, Since: events.Time{Time: at}}},
	} {
		e, err := events.New(s.typ, s.org, at, events.Actor{Kind: events.ActorSystem, ID: "system"}, 3, s.data)
		if err != nil {
			f.Fatal(err)
		}
		raw, err := e.Encode()
		if err != nil {
			f.Fatal(err)
		}
		subject := events.OrgSubject(s.org)
		if s.audit {
			subject = events.AuditSubject(s.org)
		}
		f.Add(subject, raw)
	}

	f.Fuzz(func(t *testing.T, subject string, raw []byte) {
		in := bytes.Clone(raw)
		m := events.Decode(subject, 77, raw)
		if m == nil {
			t.Fatal("Decode returned nil")
		}
		if m.Seq != 77 || m.Subject != subject || !bytes.Equal(m.Raw, in) {
			t.Fatalf("message does not keep its input: %d %q %q", m.Seq, m.Subject, m.Raw)
		}
		if !bytes.Equal(raw, in) {
			t.Fatal("Decode modified its input")
		}
		if m.Envelope == nil {
			if m.Err == nil || m.Type() != events.TypeInvalid {
				t.Fatalf("rejected with err %v, type %q", m.Err, m.Type())
			}
			return
		}
		checkAccepted(t, m)

		// Decoding is a function of its input.
		again := events.Decode(subject, 77, raw)
		if again.Envelope == nil || !sameEnvelope(again.Envelope, m.Envelope) {
			t.Fatalf("second decode differs: %+v, %v", again.Envelope, again.Err)
		}

		// What a reader accepts, a writer can write back, and a reader then
		// reads the same event (at in microseconds, as writers store it).
		e := m.Envelope
		if y := e.At.Year(); y < 1970 || y > 9998 {
			return
		}
		out, err := e.Encode()
		if err != nil {
			t.Fatalf("Encode of an accepted envelope: %v", err)
		}
		back := events.Decode(subject, 78, out)
		if back.Envelope == nil {
			t.Fatalf("re-encoded envelope rejected: %v\n%s", back.Err, out)
		}
		b := back.Envelope
		if b.ID != e.ID || b.Type != e.Type || b.Schema != e.Schema || b.Org != e.Org || b.Actor != e.Actor ||
			b.PrevSeq != e.PrevSeq || !b.At.Equal(e.At.Truncate(time.Microsecond)) {
			t.Fatalf("re-encoded envelope reads back as %+v, was %+v", b, e)
		}
		if !jsonEqual(t, b.Data, e.Data) {
			t.Fatalf("data reads back as %s, was %s", b.Data, e.Data)
		}
	})
}

func checkAccepted(t *testing.T, m *events.Message) {
	t.Helper()
	e := m.Envelope
	if m.Err != nil {
		t.Fatalf("envelope with an error: %v", m.Err)
	}
	if m.Type() != e.Type || e.Type == "" || e.Type == events.TypeInvalid {
		t.Fatalf("accepted type %q (message type %q)", e.Type, m.Type())
	}
	if e.Org != m.Org() || !events.ValidOrg(e.Org) {
		t.Fatalf("accepted org %q on subject %q", e.Org, m.Subject)
	}
	if m.Subject != events.OrgSubject(e.Org) && m.Subject != events.AuditSubject(e.Org) {
		t.Fatalf("accepted subject %q for org %q", m.Subject, e.Org)
	}
	if !utf8.Valid(m.Raw) {
		t.Fatal("accepted bytes that are not UTF-8")
	}
	if _, err := uuid.Parse(e.ID); err != nil {
		t.Fatalf("accepted id %q", e.ID)
	}
	if e.Schema < 1 || e.At.IsZero() || e.At.Location() != time.UTC || e.Actor.Kind == "" {
		t.Fatalf("accepted schema %d at %v actor %+v", e.Schema, e.At.Time, e.Actor)
	}
	if len(e.Data) == 0 || e.Data[0] != '{' || !json.Valid(e.Data) {
		t.Fatalf("accepted data %q", e.Data)
	}
	if events.IsOrgType(e.Type) && !m.IsOrgSubject() {
		t.Fatalf("org type %s accepted on %s", e.Type, m.Subject)
	}
	switch e.Type {
	case events.TypeRejected, events.TypeRejectedSuppressed, events.TypeLedgerStarted, events.TypeStreamConfigDrift:
		if m.IsOrgSubject() {
			t.Fatalf("audit type %s accepted on %s", e.Type, m.Subject)
		}
	case events.TypeEnforcementChanged:
		if e.Org != license.InstanceOrg {
			t.Fatalf("enforcement.changed accepted on %s", m.Subject)
		}
	}
}

func sameEnvelope(a, b *events.Envelope) bool {
	return a.ID == b.ID && a.Type == b.Type && a.Schema == b.Schema && a.Org == b.Org && a.At == b.At &&
		a.Actor == b.Actor && a.PrevSeq == b.PrevSeq && bytes.Equal(a.Data, b.Data)
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	return reflect.DeepEqual(jsonValue(t, a), jsonValue(t, b))
}

func jsonValue(t *testing.T, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("data %q: %v", b, err)
	}
	return v
}
