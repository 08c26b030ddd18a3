package events_test

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/licenseledger/ledger/internal/events"
)

var atPattern = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$`)

var operator = events.Actor{Kind: events.ActorOperator, ID: "deploy-bot"}

func mustNew(t *testing.T, typ, org string, at time.Time, prev uint64, data any) *events.Envelope {
	t.Helper()
	e, err := events.New(typ, org, at, operator, prev, data)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

func mustEncode(t *testing.T, e *events.Envelope) []byte {
	t.Helper()
	raw, err := e.Encode()
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return raw
}

// encodedFields returns the top-level members of an encoded envelope,
// each as its raw JSON.
func encodedFields(t *testing.T, raw []byte) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("encoded envelope is not a JSON object: %v\n%s", err, raw)
	}
	return m
}

func TestEncodeEnvelope(t *testing.T) {
	// 15:01:02.123456789 at +02:00 is 13:01:02.123456789 UTC.
	at := time.Date(2026, 11, 29, 15, 1, 2, 123456789, time.FixedZone("CEST", 2*3600))
	replaces := "0193a5b0-7e1a-7c3d-8f00-0000000000aa"
	data := events.Uploaded{LicenseID: "0193a5b0-7e1a-7c3d-8f00-1234567890ab", Fingerprint: strings.Repeat("ab", 32),
		Key: "hfl1.k1.x.y", Slot: events.SlotCurrent, GraceDaysEffective: 14, Source: events.SourceAPI, Replaces: &replaces}
	e := mustNew(t, events.TypeUploaded, "acme", at, 41, data)
	raw := mustEncode(t, e)
	m := encodedFields(t, raw)

	want := map[string]string{
		"type":     `"license.uploaded"`,
		"schema":   `1`,
		"org":      `"acme"`,
		"at":       `"2026-11-29T13:01:02.123456Z"`,
		"actor":    `{"kind":"operator","id":"deploy-bot"}`,
		"prev_seq": `41`,
		"id":       `"` + e.ID + `"`,
	}
	for k, v := range want {
		if got := string(m[k]); got != v {
			t.Errorf("%s = %s, want %s", k, got, v)
		}
	}
	if len(m) != 8 {
		t.Errorf("envelope has %d members, want 8 (id type schema org at actor prev_seq data): %s", len(m), raw)
	}
	var d map[string]any
	if err := json.Unmarshal(m["data"], &d); err != nil {
		t.Fatalf("data: %v", err)
	}
	wantData := map[string]any{"license_id": data.LicenseID, "fingerprint": data.Fingerprint, "key": "hfl1.k1.x.y",
		"slot": "current", "grace_days_effective": 14.0, "source": "api", "replaces": replaces}
	if len(d) != len(wantData) {
		t.Errorf("data members %v, want %v", d, wantData)
	}
	for k, v := range wantData {
		if d[k] != v {
			t.Errorf("data.%s = %v, want %v", k, d[k], v)
		}
	}

	// The in-memory envelope holds what was written: UTC, microseconds.
	if !e.At.Equal(time.Date(2026, 11, 29, 13, 1, 2, 123456000, time.UTC)) || e.At.Location() != time.UTC {
		t.Errorf("envelope At = %v, want 13:01:02.123456 UTC", e.At.Time)
	}
	if e.Schema != events.Schema || events.Schema != 1 {
		t.Errorf("schema %d, want 1", e.Schema)
	}
}

func TestEncodeNullReplaces(t *testing.T) {
	e := mustNew(t, events.TypeUploaded, "acme", time.Now(), 0, events.Uploaded{Slot: events.SlotCurrent})
	m := encodedFields(t, mustEncode(t, e))
	var d map[string]json.RawMessage
	if err := json.Unmarshal(m["data"], &d); err != nil {
		t.Fatal(err)
	}
	if string(d["replaces"]) != "null" {
		t.Fatalf("replaces with nothing replaced = %s, want null", d["replaces"])
	}
	if string(m["prev_seq"]) != "0" {
		t.Fatalf("first event prev_seq = %s, want 0", m["prev_seq"])
	}
}

func TestEventTimeHasSixFractionalDigitsInUTC(t *testing.T) {
	west := time.FixedZone("UTC-07:30", -(7*3600 + 1800))
	cases := []struct {
		in   time.Time
		want string
	}{
		{time.Date(2026, 11, 29, 13, 1, 2, 0, time.UTC), "2026-11-29T13:01:02.000000Z"},
		{time.Date(2026, 11, 29, 13, 1, 2, 999, time.UTC), "2026-11-29T13:01:02.000000Z"},
		{time.Date(2026, 11, 29, 13, 1, 2, 1000, time.UTC), "2026-11-29T13:01:02.000001Z"},
		{time.Date(2026, 11, 29, 13, 1, 2, 120000000, time.UTC), "2026-11-29T13:01:02.120000Z"},
		{time.Date(2026, 11, 29, 13, 1, 2, 999999999, time.UTC), "2026-11-29T13:01:02.999999Z"},
		{time.Date(2026, 11, 29, 5, 31, 2, 0, west), "2026-11-29T13:01:02.000000Z"},
		{time.Date(2026, 12, 31, 20, 0, 0, 500, west), "2027-01-01T03:30:00.000000Z"},
		{time.Date(2026, 11, 29, 14, 1, 2, 123456000, time.FixedZone("", 3600)), "2026-11-29T13:01:02.123456Z"},
	}
	for _, c := range cases {
		e := mustNew(t, events.TypeRemoved, "acme", c.in, 0, events.Removed{})
		m := encodedFields(t, mustEncode(t, e))
		got := string(m["at"])
		if got != `"`+c.want+`"` {
			t.Errorf("at for %v = %s, want %q", c.in, got, c.want)
		}
		if !atPattern.MatchString(strings.Trim(got, `"`)) {
			t.Errorf("at %s does not have exactly 6 fractional digits in UTC", got)
		}
		// Time marshals the same way on its own (data fields such as due_at).
		b, err := json.Marshal(events.Time{Time: c.in})
		if err != nil || !atPattern.Match(bytes.Trim(b, `"`)) {
			t.Errorf("Time %v marshals as %s (%v)", c.in, b, err)
		}
	}
	// A monotonic clock reading is dropped: the decoded time equals the written one.
	now := time.Now()
	e := mustNew(t, events.TypeRemoved, "acme", now, 0, events.Removed{})
	m := events.Decode(events.OrgSubject("acme"), 1, mustEncode(t, e))
	if m.Envelope == nil {
		t.Fatalf("Decode: %v", m.Err)
	}
	if m.Envelope.At != e.At || !e.At.Equal(now.Truncate(time.Microsecond)) {
		t.Fatalf("at round trip: wrote %v, read %v, from %v", e.At, m.Envelope.At, now)
	}
}

func TestTimeUnmarshalIsLiberal(t *testing.T) {
	cases := map[string]time.Time{
		`"2026-11-29T13:01:02Z"`:                time.Date(2026, 11, 29, 13, 1, 2, 0, time.UTC),
		`"2026-11-29T15:01:02.123456789+02:00"`: time.Date(2026, 11, 29, 13, 1, 2, 123456789, time.UTC),
		`"2026-11-29T13:01:02.1Z"`:              time.Date(2026, 11, 29, 13, 1, 2, 100000000, time.UTC),
		`"2026-11-29T13:01:02.123456Z"`:         time.Date(2026, 11, 29, 13, 1, 2, 123456000, time.UTC),
		`"2026-11-28T23:01:02.000000-14:00"`:    time.Date(2026, 11, 29, 13, 1, 2, 0, time.UTC),
	}
	for in, want := range cases {
		var got events.Time
		if err := json.Unmarshal([]byte(in), &got); err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("%s = %v, want %v in UTC", in, got.Time, want)
		}
	}
	for _, in := range []string{`"2026-11-29"`, `"2026-11-29 13:01:02Z"`, `"yesterday"`, `1764421262`, `""`, `{}`} {
		var got events.Time
		if err := json.Unmarshal([]byte(in), &got); err == nil {
			t.Errorf("%s parsed as %v", in, got.Time)
		}
	}
}

func TestNewGivesUUIDv7Ids(t *testing.T) {
	before := time.Now().Add(-time.Second)
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		e := mustNew(t, events.TypeRemoved, "acme", time.Now(), 0, events.Removed{})
		u, err := uuid.Parse(e.ID)
		if err != nil {
			t.Fatalf("id %q: %v", e.ID, err)
		}
		if u.Version() != 7 || u.Variant() != uuid.RFC4122 {
			t.Fatalf("id %s is version %d variant %v, want a version 7 RFC 4122 UUID", e.ID, u.Version(), u.Variant())
		}
		if e.ID != u.String() {
			t.Fatalf("id %q is not in the canonical lowercase form %q", e.ID, u.String())
		}
		sec, nsec := u.Time().UnixTime()
		if ts := time.Unix(sec, nsec); ts.Before(before) || ts.After(time.Now().Add(time.Second)) {
			t.Fatalf("id %s carries time %v, not now", e.ID, ts)
		}
		if seen[e.ID] {
			t.Fatalf("id %s issued twice", e.ID)
		}
		seen[e.ID] = true
	}
	e, err := events.NewWithID("6f1c3a52-0000-5000-8000-000000000001", events.TypeExpired, "acme", time.Now(), operator, 3,
		events.Due{LicenseID: "x"})
	if err != nil || e.ID != "6f1c3a52-0000-5000-8000-000000000001" || e.PrevSeq != 3 || e.Schema != events.Schema {
		t.Fatalf("NewWithID: %+v, %v", e, err)
	}
	if _, err := events.New(events.TypeRemoved, "acme", time.Now(), operator, 0, func() {}); err == nil {
		t.Fatal("New with data that cannot be marshalled succeeded")
	}
}

func TestSubjects(t *testing.T) {
	if got := events.OrgSubject("acme"); got != "licenses.org.acme" {
		t.Errorf("OrgSubject = %q", got)
	}
	if got := events.AuditSubject("_instance"); got != "licenses.audit._instance" {
		t.Errorf("AuditSubject = %q", got)
	}
	cases := []struct {
		subject string
		org     string
		isOrg   bool
	}{
		{"licenses.org.acme", "acme", true},
		{"licenses.org._instance", "_instance", true},
		{"licenses.audit.acme", "acme", false},
		{"licenses.audit._instance", "_instance", false},
		{"acme", "", false},
		{"other.org.acme", "", false},
		{"licenses.orgs.acme", "", false},
		{"", "", false},
	}
	for _, c := range cases {
		m := &events.Message{Subject: c.subject}
		if m.Org() != c.org || m.IsOrgSubject() != c.isOrg {
			t.Errorf("%q: Org %q IsOrgSubject %v, want %q %v", c.subject, m.Org(), m.IsOrgSubject(), c.org, c.isOrg)
		}
	}
}

func TestTypesAndOrgs(t *testing.T) {
	for _, typ := range []string{events.TypeUploaded, events.TypeInvalidated, events.TypeRemoved,
		events.TypeGraceStarted, events.TypeExpired, events.TypeEnforcementChanged} {
		if !events.IsOrgType(typ) {
			t.Errorf("%s is an org type", typ)
		}
	}
	for _, typ := range []string{events.TypeRejected, events.TypeRejectedSuppressed, events.TypeLedgerStarted,
		events.TypeStreamConfigDrift, events.TypeInvalid, "license.future", ""} {
		if events.IsOrgType(typ) {
			t.Errorf("%s is not an org type", typ)
		}
	}
	for _, org := range []string{"acme", "a", "0rg-1", "_instance", strings.Repeat("a", 63)} {
		if !events.ValidOrg(org) {
			t.Errorf("%q is a valid org", org)
		}
	}
	for _, org := range []string{"", "Acme", "-acme", "_acme", "instance_", "*", "acme.x", "acme ", strings.Repeat("a", 64), "_INSTANCE"} {
		if events.ValidOrg(org) {
			t.Errorf("%q is not a valid org", org)
		}
	}
}

func TestDecodeRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 29, 13, 1, 2, 123456000, time.UTC)
	cases := []struct {
		subject string
		typ     string
		org     string
		data    any
	}{
		{events.OrgSubject("acme"), events.TypeUploaded, "acme", events.Uploaded{LicenseID: "l", Slot: events.SlotPending}},
		{events.OrgSubject("acme"), events.TypeInvalidated, "acme", events.Invalidated{LicenseID: "l", Note: "fraud"}},
		{events.OrgSubject("acme"), events.TypeRemoved, "acme", events.Removed{LicenseID: "l"}},
		{events.OrgSubject("acme"), events.TypeGraceStarted, "acme", events.Due{LicenseID: "l", DueAt: events.Time{Time: at}}},
		{events.OrgSubject("acme"), events.TypeExpired, "acme", events.Due{LicenseID: "l", DueAt: events.Time{Time: at}}},
		{events.OrgSubject("_instance"), events.TypeEnforcementChanged, "_instance", events.EnforcementChanged{Mode: events.EnforceOn}},
		{events.OrgSubject("_instance"), events.TypeUploaded, "_instance", events.Uploaded{Slot: events.SlotCurrent}},
		{events.AuditSubject("acme"), events.TypeRejected, "acme", events.Rejected{Code: "license_malformed", Source: "api"}},
		{events.AuditSubject("acme"), events.TypeRejectedSuppressed, "acme", events.RejectedSuppressed{Count: 3, Since: events.Time{Time: at}}},
		{events.AuditSubject("_instance"), events.TypeLedgerStarted, "_instance", events.LedgerStarted{InstallID: "i", Clock: events.Time{Time: at}}},
		{events.AuditSubject("_instance"), events.TypeStreamConfigDrift, "_instance", events.StreamConfigDrift{Stream: "LICENSES",
			Fields: []events.ConfigField{{Field: "max_age", Expected: "0s", Actual: "8760h0m0s"}}}},
		{events.AuditSubject("_instance"), events.TypeStreamConfigDrift, "_instance", events.StreamConfigDrift{Stream: "LICENSES", Fields: []events.ConfigField{}}},
	}
	for _, c := range cases {
		t.Run(c.typ+" on "+c.subject, func(t *testing.T) {
			e := mustNew(t, c.typ, c.org, at, 7, c.data)
			raw := mustEncode(t, e)
			m := events.Decode(c.subject, 12, raw)
			if m.Envelope == nil || m.Err != nil {
				t.Fatalf("Decode: %v", m.Err)
			}
			if m.Seq != 12 || m.Subject != c.subject || !bytes.Equal(m.Raw, raw) {
				t.Fatalf("message %d %q %q", m.Seq, m.Subject, m.Raw)
			}
			got := m.Envelope
			if got.ID != e.ID || got.Type != c.typ || got.Schema != 1 || got.Org != c.org || got.At != e.At ||
				got.Actor != operator || got.PrevSeq != 7 || !bytes.Equal(got.Data, e.Data) {
				t.Fatalf("decoded %+v, wrote %+v", got, e)
			}
			if m.Type() != c.typ || m.Org() != c.org {
				t.Fatalf("Type %q Org %q", m.Type(), m.Org())
			}
			// The data decodes back into its type.
			back := newOfSameType(c.data)
			if err := got.DecodeData(back); err != nil {
				t.Fatalf("DecodeData: %v", err)
			}
			want, _ := json.Marshal(c.data)
			have, _ := json.Marshal(back)
			if !bytes.Equal(want, have) {
				t.Fatalf("data %s, want %s", have, want)
			}
		})
	}
}

func newOfSameType(v any) any {
	switch v.(type) {
	case events.Uploaded:
		return &events.Uploaded{}
	case events.Invalidated:
		return &events.Invalidated{}
	case events.Removed:
		return &events.Removed{}
	case events.Due:
		return &events.Due{}
	case events.EnforcementChanged:
		return &events.EnforcementChanged{}
	case events.Rejected:
		return &events.Rejected{}
	case events.RejectedSuppressed:
		return &events.RejectedSuppressed{}
	case events.LedgerStarted:
		return &events.LedgerStarted{}
	case events.StreamConfigDrift:
		return &events.StreamConfigDrift{}
	}
	panic("unknown data type")
}

func TestRejectedNeverHoldsTheKeyAndOmitsAnEmptyFingerprint(t *testing.T) {
	b, err := json.Marshal(events.Rejected{Code: "license_malformed", Source: "ui"})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"code":"license_malformed","source":"ui"}` {
		t.Fatalf("rejected data %s", b)
	}
}

// envelope returns a valid envelope as a map, for tests to bend.
func envelope() map[string]any {
	return map[string]any{
		"id":       "01938c7e-2f3a-7b4c-9d5e-6f708192a3b4",
		"type":     events.TypeRemoved,
		"schema":   1,
		"org":      "acme",
		"at":       "2026-11-29T13:01:02.123456Z",
		"actor":    map[string]any{"kind": "operator", "id": "deploy-bot"},
		"prev_seq": 41,
		"data":     map[string]any{"license_id": "0193a5b0-7e1a-7c3d-8f00-1234567890ab"},
	}
}

func marshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func bent(t *testing.T, mod func(map[string]any)) []byte {
	t.Helper()
	e := envelope()
	mod(e)
	return marshal(t, e)
}

func TestDecodeAcceptsUnknownFieldsAndTypes(t *testing.T) {
	cases := map[string]struct {
		subject string
		raw     []byte
		typ     string
	}{
		"unknown top-level fields": {"licenses.org.acme", bent(t, func(e map[string]any) {
			e["trace"] = map[string]any{"span": "x", "n": []int{1, 2}}
			e["zzz"] = nil
		}), events.TypeRemoved},
		"unknown actor and data fields": {"licenses.org.acme", bent(t, func(e map[string]any) {
			e["actor"] = map[string]any{"kind": "operator", "id": "x", "ip": "10.0.0.1"}
			e["data"] = map[string]any{"license_id": "l", "new_field": true}
		}), events.TypeRemoved},
		"unknown type on an org subject": {"licenses.org.acme", bent(t, func(e map[string]any) {
			e["type"] = "license.transferred"
		}), "license.transferred"},
		"unknown type on an audit subject": {"licenses.audit.acme", bent(t, func(e map[string]any) {
			e["type"] = "ledger.noted"
		}), "ledger.noted"},
		"unknown type on _instance": {"licenses.org._instance", bent(t, func(e map[string]any) {
			e["type"] = "install.renamed"
			e["org"] = "_instance"
		}), "install.renamed"},
		"empty data object": {"licenses.org.acme", bent(t, func(e map[string]any) {
			e["data"] = map[string]any{}
		}), events.TypeRemoved},
		"no prev_seq": {"licenses.audit.acme", bent(t, func(e map[string]any) {
			delete(e, "prev_seq")
			e["type"] = events.TypeRejected
		}), events.TypeRejected},
		"newer schema": {"licenses.org.acme", bent(t, func(e map[string]any) {
			e["schema"] = 2
		}), events.TypeRemoved},
		"at with an offset and nanoseconds": {"licenses.org.acme", bent(t, func(e map[string]any) {
			e["at"] = "2026-11-29T15:01:02.123456789+02:00"
		}), events.TypeRemoved},
		"whitespace around": {"licenses.org.acme", append(append([]byte(" \n\t"), marshal(t, envelope())...), "\r\n "...), events.TypeRemoved},
		"enforcement on _instance": {"licenses.org._instance", bent(t, func(e map[string]any) {
			e["type"] = events.TypeEnforcementChanged
			e["org"] = "_instance"
			e["data"] = map[string]any{"mode": "on"}
		}), events.TypeEnforcementChanged},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			m := events.Decode(c.subject, 5, c.raw)
			if m.Envelope == nil || m.Err != nil {
				t.Fatalf("rejected: %v\n%s", m.Err, c.raw)
			}
			if m.Type() != c.typ {
				t.Fatalf("type %q, want %q", m.Type(), c.typ)
			}
			if m.Envelope.Org != m.Org() {
				t.Fatalf("org %q on %s", m.Envelope.Org, c.subject)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	valid := marshal(t, envelope())
	// A valid envelope whose actor id holds a byte that is not UTF-8.
	notUTF8 := bytes.Replace(valid, []byte("deploy-bot"), []byte("deploy-\xffbot"), 1)
	if bytes.Equal(notUTF8, valid) {
		t.Fatal("test setup: actor id not found")
	}
	without := func(key string) []byte { return bent(t, func(e map[string]any) { delete(e, key) }) }
	set := func(key string, v any) []byte { return bent(t, func(e map[string]any) { e[key] = v }) }
	on := func(org, typ string) []byte {
		return bent(t, func(e map[string]any) { e["org"], e["type"] = org, typ })
	}
	cases := []struct {
		name    string
		subject string
		raw     []byte
	}{
		{"empty", "licenses.org.acme", nil},
		{"not json", "licenses.org.acme", []byte("hello")},
		{"truncated", "licenses.org.acme", valid[:len(valid)-1]},
		{"json array", "licenses.org.acme", []byte(`[1,2]`)},
		{"json null", "licenses.org.acme", []byte(`null`)},
		{"json string", "licenses.org.acme", []byte(`"license.removed"`)},
		{"binary garbage", "licenses.org.acme", []byte("\xff\xfe\x00\x01garbage")},
		{"not utf-8 inside a string", "licenses.org.acme", notUTF8},
		{"not utf-8 after the object", "licenses.org.acme", append(bytes.Clone(valid), 0xff)},
		{"trailing object", "licenses.org.acme", append(bytes.Clone(valid), "{}"...)},
		{"trailing text", "licenses.org.acme", append(bytes.Clone(valid), " x"...)},
		{"trailing brace", "licenses.org.acme", append(bytes.Clone(valid), '}')},
		{"trailing bracket", "licenses.org.acme", append(bytes.Clone(valid), " ]"...)},
		{"two envelopes", "licenses.org.acme", append(bytes.Clone(valid), valid...)},
		{"missing id", "licenses.org.acme", without("id")},
		{"empty id", "licenses.org.acme", set("id", "")},
		{"id not a uuid", "licenses.org.acme", set("id", "event-1")},
		{"id wrong type", "licenses.org.acme", set("id", 7)},
		{"missing type", "licenses.org.acme", without("type")},
		{"empty type", "licenses.org.acme", set("type", "")},
		{"type invalid", "licenses.org.acme", set("type", events.TypeInvalid)},
		{"missing schema", "licenses.org.acme", without("schema")},
		{"schema 0", "licenses.org.acme", set("schema", 0)},
		{"schema negative", "licenses.org.acme", set("schema", -1)},
		{"schema string", "licenses.org.acme", set("schema", "1")},
		{"schema fraction", "licenses.org.acme", set("schema", 1.5)},
		{"missing at", "licenses.org.acme", without("at")},
		{"null at", "licenses.org.acme", set("at", nil)},
		{"at not rfc 3339", "licenses.org.acme", set("at", "29/11/2026 13:01")},
		{"zero at", "licenses.org.acme", set("at", "0001-01-01T00:00:00Z")},
		{"missing actor", "licenses.org.acme", without("actor")},
		{"actor without kind", "licenses.org.acme", set("actor", map[string]any{"id": "deploy-bot"})},
		{"actor not an object", "licenses.org.acme", set("actor", "operator")},
		{"missing data", "licenses.org.acme", without("data")},
		{"null data", "licenses.org.acme", set("data", nil)},
		{"array data", "licenses.org.acme", set("data", []any{})},
		{"string data", "licenses.org.acme", set("data", "{}")},
		{"number data", "licenses.org.acme", set("data", 1)},
		{"prev_seq negative", "licenses.org.acme", set("prev_seq", -1)},
		{"org not matching the subject", "licenses.org.acme", set("org", "globex")},
		{"org not matching an audit subject", "licenses.audit.acme", on("globex", events.TypeRejected)},
		{"missing org", "licenses.org.acme", without("org")},
		{"empty org on an empty subject org", "licenses.org.", set("org", "")},
		{"invalid slug", "licenses.org.Acme", set("org", "Acme")},
		{"slug starting with a dash", "licenses.org.-acme", set("org", "-acme")},
		{"slug too long", "licenses.org." + strings.Repeat("a", 64), set("org", strings.Repeat("a", 64))},
		{"org with a dot", "licenses.org.acme.eu", set("org", "acme.eu")},
		{"wildcard org", "licenses.org.*", set("org", "*")},
		{"subject not ours", "acme", set("type", events.TypeRejected)},
		{"subject of another stream", "orders.org.acme", valid},
		{"org type on an audit subject", "licenses.audit.acme", on("acme", events.TypeUploaded)},
		{"removed on an audit subject", "licenses.audit.acme", on("acme", events.TypeRemoved)},
		{"enforcement on the audit subject", "licenses.audit._instance", on("_instance", events.TypeEnforcementChanged)},
		{"rejected on an org subject", "licenses.org.acme", on("acme", events.TypeRejected)},
		{"suppressed on an org subject", "licenses.org.acme", on("acme", events.TypeRejectedSuppressed)},
		{"ledger.started on an org subject", "licenses.org._instance", on("_instance", events.TypeLedgerStarted)},
		{"stream drift on an org subject", "licenses.org._instance", on("_instance", events.TypeStreamConfigDrift)},
		{"enforcement outside _instance", "licenses.org.acme", on("acme", events.TypeEnforcementChanged)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := events.Decode(c.subject, 9, c.raw)
			if m.Envelope != nil || m.Err == nil {
				t.Fatalf("accepted: envelope %+v, err %v\n%q", m.Envelope, m.Err, c.raw)
			}
			if m.Type() != events.TypeInvalid {
				t.Fatalf("type %q, want invalid", m.Type())
			}
			if m.Seq != 9 || m.Subject != c.subject || !bytes.Equal(m.Raw, c.raw) {
				t.Fatalf("message does not keep what it was given: %d %q %q", m.Seq, m.Subject, m.Raw)
			}
		})
	}
}

func TestDecodeDataIsStrictAboutTypes(t *testing.T) {
	raw := bent(t, func(e map[string]any) {
		e["type"] = events.TypeUploaded
		e["data"] = map[string]any{"slot": 3}
	})
	m := events.Decode("licenses.org.acme", 1, raw)
	if m.Envelope == nil {
		t.Fatalf("an envelope whose data has the wrong shape is still an envelope: %v", m.Err)
	}
	var d events.Uploaded
	if err := m.Envelope.DecodeData(&d); err == nil {
		t.Fatalf("slot 3 decoded as %+v", d)
	}
}
