package audit_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/testenv"
)

func export(t *testing.T, r audit.Reader, q audit.Query, format string) string {
	t.Helper()
	var out bytes.Buffer
	enc, err := audit.NewEncoder(&out, format)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Scan(context.Background(), q, enc.Encode); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestJSONLRecords(t *testing.T) {
	msgs := fixture(t)
	m := memoryOf(t, msgs)
	lines := strings.Split(strings.TrimSuffix(export(t, m, audit.Query{}, audit.FormatJSONL), "\n"), "\n")
	if len(lines) != 8 {
		t.Fatalf("%d lines", len(lines))
	}
	var recs []audit.Record
	m.Scan(context.Background(), audit.Query{}, func(r *audit.Record) error { recs = append(recs, *r); return nil })

	envelope, _ := json.Marshal(string(msgs[1].Raw))
	want := fmt.Sprintf(`{"seq":2,"event_id":%q,"subject":"licenses.org.acme","org":"acme","type":"license.uploaded",`+
		`"actor":{"kind":"operator","id":"deploy-bot"},"at":"2026-11-29T13:01:00.123456Z","envelope":%s,"hash":%q,"prev_hash":%q}`,
		msgs[1].Envelope.ID, envelope, recs[1].Hash.Hex(), recs[0].Hash.Hex())
	if lines[1] != want {
		t.Errorf("valid event:\n got %s\nwant %s", lines[1], want)
	}
	want = fmt.Sprintf(`{"seq":5,"event_id":null,"subject":"licenses.org.acme","org":"acme","type":"invalid",`+
		`"actor":null,"at":null,"envelope":"not json, \"quoted\", <html>","hash":%q,"prev_hash":%q}`, recs[4].Hash.Hex(), recs[3].Hash.Hex())
	if lines[4] != want {
		t.Errorf("invalid message:\n got %s\nwant %s", lines[4], want)
	}
	want = fmt.Sprintf(`{"seq":6,"event_id":null,"subject":"licenses.audit.globex","org":"globex","type":"invalid",`+
		`"actor":null,"at":null,"envelope":null,"envelope_b64":%q,"hash":%q,"prev_hash":%q}`,
		base64.StdEncoding.EncodeToString(msgs[5].Raw), recs[5].Hash.Hex(), recs[4].Hash.Hex())
	if lines[5] != want {
		t.Errorf("not UTF-8:\n got %s\nwant %s", lines[5], want)
	}
	for i, line := range lines {
		var j audit.RecordJSON
		if err := json.Unmarshal([]byte(line), &j); err != nil {
			t.Fatal(err)
		}
		if raw, err := j.Raw(); err != nil || !bytes.Equal(raw, msgs[i].Raw) {
			t.Errorf("seq %d: envelope does not hold the bytes exactly: %q", j.Seq, raw)
		}
	}
}

func TestJSONArray(t *testing.T) {
	m := memoryOf(t, fixture(t))
	for q, n := range map[*audit.Query]int{{}: 8, {Org: "globex"}: 2, {Org: "nobody"}: 0} {
		out := export(t, m, *q, audit.FormatJSON)
		var recs []audit.RecordJSON
		if err := json.Unmarshal([]byte(out), &recs); err != nil || len(recs) != n {
			t.Fatalf("%+v: %d records, %v\n%s", q, len(recs), err, out)
		}
	}
	if _, err := audit.NewEncoder(&bytes.Buffer{}, "xml"); err == nil {
		t.Fatal("format xml accepted")
	}
}

func TestCSV(t *testing.T) {
	msgs := append(fixture(t),
		events.Decode("licenses.org.acme", 9, []byte("two\r\nlines")),
		events.Decode("licenses.org.acme", 10, []byte("base64:looks encoded")),
		events.Decode("licenses.org.acme", 11, nil))
	m := memoryOf(t, msgs)
	out := export(t, m, audit.Query{}, audit.FormatCSV)
	const header = "seq,event_id,subject,org,type,actor_kind,actor_id,at,envelope,hash,prev_hash\r\n"
	if !strings.HasPrefix(out, header) {
		t.Fatalf("header: %q", out[:min(len(out), 120)])
	}
	var recs []audit.Record
	m.Scan(context.Background(), audit.Query{}, func(r *audit.Record) error { recs = append(recs, *r); return nil })
	line5 := fmt.Sprintf("5,,licenses.org.acme,acme,invalid,,,,\"not json, \"\"quoted\"\", <html>\",%s,%s\r\n", recs[4].Hash.Hex(), recs[3].Hash.Hex())
	line6 := fmt.Sprintf("6,,licenses.audit.globex,globex,invalid,,,,base64:%s,%s,%s\r\n",
		base64.StdEncoding.EncodeToString(msgs[5].Raw), recs[5].Hash.Hex(), recs[4].Hash.Hex())
	line2 := fmt.Sprintf("2,%s,licenses.org.acme,acme,license.uploaded,operator,deploy-bot,2026-11-29T13:01:00.123456Z,\"%s\",",
		msgs[1].Envelope.ID, strings.ReplaceAll(string(msgs[1].Raw), `"`, `""`))
	for _, want := range []string{line5, line6, line2} {
		if !strings.Contains(out, want) {
			t.Errorf("missing line %q in\n%s", want, out)
		}
	}
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(rows) != len(msgs)+1 {
		t.Fatalf("%d rows, %v", len(rows), err)
	}
	for i, row := range rows[1:] {
		raw, err := audit.CSVRaw(row[8])
		if err != nil || !bytes.Equal(raw, msgs[i].Raw) {
			t.Errorf("seq %s: envelope cell %q does not give the bytes back", row[0], row[8])
		}
		if i >= 8 && !strings.HasPrefix(row[8], audit.CSVBase64Prefix) && len(msgs[i].Raw) > 0 {
			t.Errorf("seq %s: %q should be base64", row[0], row[8])
		}
	}
	if empty := export(t, m, audit.Query{Org: "nobody"}, audit.FormatCSV); empty != header {
		t.Errorf("no records: %q", empty)
	}
}

func TestLogDigests(t *testing.T) {
	m := memoryOf(t, fixture(t))
	var logs testenv.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		audit.LogDigests(ctx, m, 5*time.Millisecond, slog.New(slog.NewTextHandler(&logs, nil)))
		close(done)
	}()
	seq, h, _ := m.Head(ctx)
	want := fmt.Sprintf(`msg="audit digest" digest=%s rows=8`, audit.Digest(seq, h))
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(logs.String(), want) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no two digest lines:\n%s", logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	audit.LogDigests(context.Background(), m, 0, slog.New(slog.NewTextHandler(&logs, nil))) // off: returns at once
}
