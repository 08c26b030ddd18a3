package audit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/events"
)

// sliceReader is a trail whose records a test may tamper with.
type sliceReader []audit.Record

func (s sliceReader) Scan(ctx context.Context, q audit.Query, fn func(*audit.Record) error) error {
	n := 0
	for i := range s {
		r := s[i]
		if !q.Match(&r) {
			continue
		}
		if err := fn(&r); err != nil {
			return err
		}
		if n++; q.Limit > 0 && n == q.Limit {
			break
		}
	}
	return nil
}

func (s sliceReader) Head(context.Context) (uint64, audit.Hash, error) {
	if len(s) == 0 {
		return 0, audit.Zero, nil
	}
	return s[len(s)-1].Seq, s[len(s)-1].Hash, nil
}

// chain builds the records of msgs, each with its own copy of the bytes.
func chain(msgs []*events.Message) sliceReader {
	var out sliceReader
	c := audit.NewChain()
	for _, m := range msgs {
		m := events.Decode(m.Subject, m.Seq, bytes.Clone(m.Raw))
		out = append(out, c.Append(m, base))
	}
	return out
}

func verify(t *testing.T, r audit.Reader, opts audit.VerifyOptions) audit.Result {
	t.Helper()
	res, err := audit.Verify(context.Background(), r, opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func flip(b []byte, i int) []byte {
	b = bytes.Clone(b)
	b[i] ^= 0x01
	return b
}

func TestVerifyIntactTrail(t *testing.T) {
	msgs := fixture(t)
	for name, r := range map[string]audit.Reader{"memory": memoryOf(t, msgs), "records": chain(msgs)} {
		res := verify(t, r, audit.VerifyOptions{})
		seq, h, _ := r.Head(context.Background())
		if !res.OK || res.Rows != 8 || res.Digest != audit.Digest(seq, h) || res.Column != "" {
			t.Fatalf("%s: %+v", name, res)
		}
		if got := res.String(); got != "ok 8 "+audit.Digest(seq, h) {
			t.Fatalf("%s: %q", name, got)
		}
	}
	empty := verify(t, audit.NewMemory(nil), audit.VerifyOptions{})
	if !empty.OK || empty.Rows != 0 || empty.Digest != "0:"+strings.Repeat("0", 64) {
		t.Fatalf("empty trail: %+v", empty)
	}
}

// Every kind of change is found, at its seq, with its column.
func TestVerifyFindsTampering(t *testing.T) {
	otherID := uuid.NewString()
	cases := []struct {
		name   string
		tamper func(s sliceReader) sliceReader
		seq    uint64
		col    string
	}{
		{"a byte of envelope_raw", func(s sliceReader) sliceReader { s[3].Raw = flip(s[3].Raw, 40); return s }, 4, audit.ColEnvelopeRaw},
		{"a byte of an invalid message", func(s sliceReader) sliceReader { s[4].Raw = flip(s[4].Raw, 0); return s }, 5, audit.ColEnvelopeRaw},
		{"a byte of the last record", func(s sliceReader) sliceReader { s[7].Raw = flip(s[7].Raw, 40); return s }, 8, audit.ColHash},
		{"the hash column", func(s sliceReader) sliceReader { s[3].Hash[0] ^= 1; return s }, 4, audit.ColHash},
		{"prev_hash", func(s sliceReader) sliceReader { s[5].PrevHash[31] ^= 1; return s }, 6, audit.ColPrevHash},
		{"a gap", func(s sliceReader) sliceReader { return slices.Delete(s, 4, 5) }, 5, audit.ColSeq},
		{"the first records gone", func(s sliceReader) sliceReader { return s[2:] }, 1, audit.ColSeq},
		{"org", func(s sliceReader) sliceReader { s[1].Org = "globex"; return s }, 2, audit.ColOrg},
		{"org of an invalid message", func(s sliceReader) sliceReader { s[4].Org = "globex"; return s }, 5, audit.ColOrg},
		{"type", func(s sliceReader) sliceReader { s[1].Type = events.TypeRemoved; return s }, 2, audit.ColType},
		{"type of an invalid message", func(s sliceReader) sliceReader { s[5].Type = events.TypeRejected; return s }, 6, audit.ColType},
		{"actor kind", func(s sliceReader) sliceReader { s[2].ActorKind = events.ActorOperator; return s }, 3, audit.ColActorKind},
		{"actor id", func(s sliceReader) sliceReader { s[6].ActorID = "someone-else"; return s }, 7, audit.ColActorID},
		{"event id", func(s sliceReader) sliceReader { s[1].EventID = otherID; return s }, 2, audit.ColEventID},
		{"event id of an invalid message", func(s sliceReader) sliceReader { s[4].EventID = otherID; return s }, 5, audit.ColEventID},
		{"occurred_at", func(s sliceReader) sliceReader { s[7].At = s[7].At.Add(time.Second); return s }, 8, audit.ColOccurredAt},
		{"occurred_at of an invalid message", func(s sliceReader) sliceReader { s[4].At = base; return s }, 5, audit.ColOccurredAt},
		{"an unreadable column", func(s sliceReader) sliceReader { s[2].Unreadable = audit.ColPrevHash; return s }, 3, audit.ColPrevHash},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := verify(t, c.tamper(chain(fixture(t))), audit.VerifyOptions{})
			if res.OK || res.BadSeq != c.seq || res.Column != c.col {
				t.Fatalf("got %+v, want mismatch at seq %d (%s)", res, c.seq, c.col)
			}
			if res.Rows != c.seq-1 {
				t.Fatalf("%d rows verified before seq %d", res.Rows, c.seq)
			}
			if want := "mismatch at seq "; !strings.HasPrefix(res.String(), want) || !strings.HasSuffix(res.String(), "("+c.col+")") {
				t.Fatalf("String() = %q", res.String())
			}
		})
	}
}

// What a column legitimately does to a value is not a change: a uuid
// column's canonical case, a timestamptz's microseconds.
func TestVerifyToleratesColumnForms(t *testing.T) {
	s := chain(fixture(t))
	s[1].EventID = strings.ToUpper(s[1].EventID)
	s[2].At = s[2].At.Add(400 * time.Nanosecond)
	if res := verify(t, s, audit.VerifyOptions{}); !res.OK {
		t.Fatalf("%+v", res)
	}
}

func TestVerifyDigest(t *testing.T) {
	s := chain(fixture(t))
	at4 := audit.Digest(4, s[3].Hash)
	final := audit.Digest(8, s[7].Hash)
	zero := "0:" + strings.Repeat("0", 64)
	for _, c := range []struct {
		digest string
		ok     bool
		seq    uint64
	}{
		{at4, true, 0},
		{final, true, 0},
		{zero, true, 0},
		{audit.Digest(4, s[4].Hash), false, 4},
		{audit.Digest(9, s[7].Hash), false, 9},
		{"0:" + strings.Repeat("1", 64), false, 0},
	} {
		res := verify(t, s, audit.VerifyOptions{Digest: c.digest})
		if res.OK != c.ok || (!c.ok && (res.BadSeq != c.seq || res.Column != audit.ColDigest)) {
			t.Errorf("digest %s: %+v", c.digest, res)
		}
		if c.ok && res.Digest != final {
			t.Errorf("digest %s: final digest %s", c.digest, res.Digest)
		}
	}
	if _, err := audit.Verify(context.Background(), s, audit.VerifyOptions{Digest: "4:abc"}); err == nil {
		t.Error("a malformed digest was accepted")
	}
	// A trail cut after seq 5 no longer reaches a digest taken at 8.
	if res := verify(t, s[:5], audit.VerifyOptions{Digest: final}); res.OK || res.BadSeq != 8 || res.Column != audit.ColDigest {
		t.Errorf("truncated trail: %+v", res)
	}
}

// streamOf serves msgs as the stream, with changes.
func streamOf(msgs []*events.Message, change func(seq uint64, subject string, raw []byte) (string, []byte)) audit.StreamLookup {
	return func(_ context.Context, seq uint64) (string, []byte, error) {
		for _, m := range msgs {
			if m.Seq == seq {
				if change != nil {
					s, r := change(seq, m.Subject, m.Raw)
					return s, r, nil
				}
				return m.Subject, m.Raw, nil
			}
		}
		return "", nil, nil
	}
}

// A chain rewritten consistently from some record on verifies by itself;
// only the stream shows it.
func TestVerifyAgainstStream(t *testing.T) {
	msgs := fixture(t)
	rewritten := slices.Clone(msgs)
	raw := bytes.Replace(msgs[2].Raw, []byte(`"globex"`), []byte(`"globez"`), 1)
	rewritten[2] = events.Decode(msgs[2].Subject, 3, raw)
	forged := chain(rewritten)
	if res := verify(t, forged, audit.VerifyOptions{}); !res.OK {
		t.Fatalf("a consistent rewrite: %+v", res)
	}
	if res := verify(t, forged, audit.VerifyOptions{Stream: streamOf(msgs, nil)}); res.OK || res.BadSeq != 3 || res.Column != audit.ColEnvelopeRaw {
		t.Fatalf("against the stream: %+v", res)
	}
	if res := verify(t, chain(msgs), audit.VerifyOptions{Stream: streamOf(msgs, nil)}); !res.OK || res.Rows != 8 {
		t.Fatalf("intact: %+v", res)
	}
	moved := streamOf(msgs, func(seq uint64, subject string, raw []byte) (string, []byte) {
		if seq == 5 {
			return "licenses.org.globex", raw
		}
		return subject, raw
	})
	if res := verify(t, chain(msgs), audit.VerifyOptions{Stream: moved}); res.OK || res.BadSeq != 5 || res.Column != audit.ColSubject {
		t.Fatalf("another subject: %+v", res)
	}
	if res := verify(t, chain(msgs), audit.VerifyOptions{Stream: streamOf(msgs[:6], nil)}); res.OK || res.BadSeq != 7 || res.Column != audit.ColEnvelopeRaw {
		t.Fatalf("missing from the stream: %+v", res)
	}
	down := errors.New("stream down")
	_, err := audit.Verify(context.Background(), chain(msgs), audit.VerifyOptions{Stream: func(context.Context, uint64) (string, []byte, error) {
		return "", nil, down
	}})
	if !errors.Is(err, down) {
		t.Fatalf("stream error: %v", err)
	}
}

// keptEnvelopes gives records the parsed envelope column PostgreSQL keeps:
// the same JSON value, re-encoded, or NULL where jsonb cannot hold it.
func keptEnvelopes(t *testing.T, s sliceReader) sliceReader {
	for i := range s {
		s[i].EnvelopeKept = true
		if !audit.JSONBStorable(s[i].Raw) {
			continue
		}
		var v any
		if err := json.Unmarshal(s[i].Raw, &v); err != nil {
			t.Fatal(err)
		}
		s[i].Envelope, _ = json.MarshalIndent(v, "", " ")
	}
	return s
}

func TestVerifyEnvelopeColumn(t *testing.T) {
	msgs := fixture(t)
	s := keptEnvelopes(t, chain(msgs))
	if s[4].Envelope != nil || s[5].Envelope != nil || s[1].Envelope == nil {
		t.Fatal("fixture: invalid messages are not JSON; valid ones are")
	}
	s[1].Envelope = bytes.Replace(s[1].Envelope, []byte(`"prev_seq": 0`), []byte(`"prev_seq": 0.0e3`), 1)
	if res := verify(t, s, audit.VerifyOptions{}); !res.OK {
		t.Fatalf("re-encoded envelopes: %+v", res)
	}
	for name, c := range map[string]struct {
		i      int
		change func([]byte) []byte
	}{
		"another value":  {2, func(b []byte) []byte { return bytes.Replace(b, []byte(`"globex"`), []byte(`"acme"`), 1) }},
		"another number": {3, func(b []byte) []byte { return bytes.Replace(b, []byte(`"prev_seq": 0`), []byte(`"prev_seq": 1`), 1) }},
		"NULL":           {6, func([]byte) []byte { return nil }},
		"not NULL":       {5, func([]byte) []byte { return []byte(`{"org":"globex"}`) }},
	} {
		s := keptEnvelopes(t, chain(msgs))
		s[c.i].Envelope = c.change(s[c.i].Envelope)
		if res := verify(t, s, audit.VerifyOptions{}); res.OK || res.BadSeq != uint64(c.i+1) || res.Column != audit.ColEnvelope {
			t.Errorf("%s: %+v", name, res)
		}
	}
}

func TestResultJSON(t *testing.T) {
	for _, c := range []struct {
		r    audit.Result
		json string
		line string
	}{
		{audit.Result{OK: true, Rows: 8, Digest: "8:ab"},
			`{"ok":true,"rows_checked":8,"first_bad_seq":null,"column":null,"digest":"8:ab"}`, "ok 8 8:ab"},
		{audit.Result{Rows: 3, BadSeq: 4, Column: audit.ColHash, Digest: "3:cd"},
			`{"ok":false,"rows_checked":3,"first_bad_seq":4,"column":"hash","digest":"3:cd"}`, "mismatch at seq 4 (hash)"},
		{audit.Result{OK: true, Rows: 2, Scope: []string{"acme", "globex"}},
			`{"ok":true,"rows_checked":2,"first_bad_seq":null,"column":null,"digest":null,"scope":["acme","globex"]}`, "ok 2 scope=acme,globex"},
		{audit.Result{Rows: 1, BadSeq: 7, Column: audit.ColOrg, Scope: []string{"acme"}},
			`{"ok":false,"rows_checked":1,"first_bad_seq":7,"column":"org_slug","digest":null,"scope":["acme"]}`, "mismatch at seq 7 (org_slug)"},
	} {
		b, err := json.Marshal(c.r)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != c.json || c.r.String() != c.line {
			t.Errorf("%+v: %s, %q", c.r, b, c.r)
		}
		var back audit.Result
		if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, c.r) {
			t.Errorf("%s: back %+v, %v", b, back, err)
		}
	}
}
