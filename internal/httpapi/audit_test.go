package httpapi_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/httpapi"
	"github.com/licenseledger/ledger/internal/testenv/openapitest"
)

var base = time.Date(2026, 11, 29, 13, 0, 0, 0, time.UTC)

// trail holds n records cycling through acme, globex and _instance (every
// seventh an invalid message, seq 11 not even UTF-8), one minute apart.
func trail(t *testing.T, n int) (*audit.Memory, []*events.Message) {
	t.Helper()
	var msgs audit.Messages
	for seq := uint64(1); seq <= uint64(n); seq++ {
		org := []string{"acme", "globex", "_instance"}[seq%3]
		var m *events.Message
		switch {
		case seq == 11:
			m = events.Decode(events.AuditSubject(org), seq, []byte("\xff{not utf-8}"))
		case seq%7 == 0:
			m = events.Decode(events.OrgSubject(org), seq, []byte(fmt.Sprintf(`forged, "%d"`, seq)))
		default:
			env, err := events.New(events.TypeRejected, org, base.Add(time.Duration(seq)*time.Minute),
				events.Actor{Kind: events.ActorOrgAdmin, ID: org + "-admin"}, 0, events.Rejected{Code: "license_malformed", Source: "api"})
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := env.Encode()
			m = events.Decode(events.AuditSubject(org), seq, raw)
		}
		msgs = append(msgs, m)
	}
	mem := audit.NewMemory(msgs)
	for _, m := range msgs {
		if err := mem.Append(m, base); err != nil {
			t.Fatal(err)
		}
	}
	return mem, msgs
}

func orgOfSeq(seq uint64) string { return []string{"acme", "globex", "_instance"}[seq%3] }

// Tokens of the audit tests, by who holds them.
const (
	tokOperator     = "operator-token-000000000000000000000000"
	tokAuditorAll   = "auditor-all-token-000000000000000000000"
	tokAuditorAcme  = "auditor-acme-token-00000000000000000000"
	tokAuditorOther = "auditor-globex-instance-token-000000000"
	tokAdminAcme    = "org-admin-acme-token-000000000000000000"
)

type apiServer struct {
	url string
}

func startAPI(t *testing.T, cfg httpapi.Config) *apiServer {
	t.Helper()
	var entries []auth.Entry
	for _, e := range []struct {
		tok  string
		role auth.Role
		orgs []string
	}{
		{tokAuditorAll, auth.RoleAuditor, []string{"*"}},
		{tokAuditorAcme, auth.RoleAuditor, []string{"acme"}},
		{tokAuditorOther, auth.RoleAuditor, []string{"globex", "_instance"}},
		{tokAdminAcme, auth.RoleOrgAdmin, []string{"acme"}},
	} {
		entry, err := auth.NewEntry(e.tok, e.role, e.orgs, strings.SplitN(e.tok, "-token", 2)[0])
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, entry)
	}
	admin, err := auth.AdminSet(tokOperator)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Tokens = auth.NewTokens(auth.Union(admin, auth.NewSet(entries)))
	cfg.Registry = prometheus.NewRegistry()
	cfg.Logger = slog.New(slog.DiscardHandler)
	oa := openapitest.New(t) // before the server: it stops reporting after the server stopped
	srv := httptest.NewServer(oa.Wrap(httpapi.New(cfg).Handler()))
	t.Cleanup(srv.Close)
	return &apiServer{url: srv.URL}
}

type answer struct {
	code   int
	header http.Header
	body   []byte
	err    error // reading the body
}

func (s *apiServer) get(t *testing.T, tok, path string, hdr ...string) answer {
	t.Helper()
	req, _ := http.NewRequest("GET", s.url+path, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, body, err}
}

type page struct {
	Events     []audit.RecordJSON `json:"events"`
	NextCursor *string            `json:"next_cursor"`
	PrevCursor *string            `json:"prev_cursor"`
}

func (s *apiServer) page(t *testing.T, tok, query string) page {
	t.Helper()
	a := s.get(t, tok, "/api/audit?"+query)
	var p page
	if a.code != 200 || json.Unmarshal(a.body, &p) != nil {
		t.Fatalf("%s: %d %s", query, a.code, a.body)
	}
	return p
}

// all pages through /api/audit with limit and returns every seq.
func (s *apiServer) all(t *testing.T, tok string, q url.Values, limit int) []uint64 {
	t.Helper()
	var seqs []uint64
	q.Set("limit", fmt.Sprint(limit))
	for pages := 0; ; pages++ {
		p := s.page(t, tok, q.Encode())
		if len(p.Events) > limit || pages > 1000 {
			t.Fatalf("page of %d records with limit %d", len(p.Events), limit)
		}
		for _, e := range p.Events {
			seqs = append(seqs, e.Seq)
		}
		if p.NextCursor == nil {
			return seqs
		}
		q.Set("cursor", *p.NextCursor)
	}
}

func encoded(t *testing.T, mem *audit.Memory, q audit.Query, format string) []byte {
	t.Helper()
	var b bytes.Buffer
	enc, _ := audit.NewEncoder(&b, format)
	if err := mem.Scan(context.Background(), q, enc.Encode); err != nil {
		t.Fatal(err)
	}
	enc.Close()
	return b.Bytes()
}

func seqsWhere(n int, keep func(uint64) bool) []uint64 {
	var out []uint64
	for s := uint64(1); s <= uint64(n); s++ {
		if keep(s) {
			out = append(out, s)
		}
	}
	return out
}

func TestAuditFormats(t *testing.T) {
	mem, msgs := trail(t, 40)
	api := startAPI(t, httpapi.Config{Audit: mem})

	p := api.page(t, tokAuditorAll, "limit=3")
	if len(p.Events) != 3 || p.NextCursor == nil {
		t.Fatalf("first page: %+v", p)
	}
	first := api.get(t, tokAuditorAll, "/api/audit?limit=1")
	var raw map[string]json.RawMessage
	json.Unmarshal(first.body, &raw)
	var rec map[string]any
	json.Unmarshal(bytes.TrimSuffix(bytes.TrimPrefix(raw["events"], []byte("[")), []byte("]")), &rec)
	keys := []string{"seq", "event_id", "subject", "org", "type", "actor", "at", "envelope", "hash", "prev_hash"}
	for _, k := range keys {
		if _, ok := rec[k]; !ok || len(rec) != len(keys) {
			t.Fatalf("record keys: %v", rec)
		}
	}
	if rec["envelope"] != string(msgs[0].Raw) || rec["org"] != "globex" || rec["at"] != "2026-11-29T13:01:00.000000Z" {
		t.Fatalf("record: %v", rec)
	}
	if ct := first.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("json content type %q", ct)
	}
	empty := api.get(t, tokAuditorAll, "/api/audit?type=license.uploaded")
	if strings.TrimSpace(string(empty.body)) != `{"events":[],"next_cursor":null,"prev_cursor":null}` {
		t.Fatalf("no records: %s", empty.body)
	}

	jsonl := api.get(t, tokAuditorAll, "/api/audit?format=jsonl&limit=2")
	if jsonl.code != 200 || jsonl.err != nil || !bytes.Equal(jsonl.body, encoded(t, mem, audit.Query{}, audit.FormatJSONL)) {
		t.Fatalf("jsonl: %d %v\n%s", jsonl.code, jsonl.err, jsonl.body)
	}
	if ct, _, _ := mime.ParseMediaType(jsonl.header.Get("Content-Type")); ct != "application/x-ndjson" {
		t.Fatalf("jsonl content type %q", ct)
	}
	if n := bytes.Count(jsonl.body, []byte("\n")); n != 40 {
		t.Fatalf("jsonl: %d lines; the limit must not apply", n)
	}

	csvA := api.get(t, tokAuditorAll, "/api/audit?format=csv&org=globex&since=2026-11-29T13:10:00Z&until=2026-11-29T13:30:00Z")
	if ct, _, _ := mime.ParseMediaType(csvA.header.Get("Content-Type")); ct != "text/csv" || csvA.code != 200 {
		t.Fatalf("csv: %d %q", csvA.code, csvA.header.Get("Content-Type"))
	}
	q := audit.Query{Org: "globex", Since: base.Add(10 * time.Minute), Until: base.Add(30 * time.Minute)}
	if !bytes.Equal(csvA.body, encoded(t, mem, q, audit.FormatCSV)) {
		t.Fatalf("csv body:\n%s", csvA.body)
	}
	if !bytes.HasPrefix(csvA.body, []byte("seq,event_id,subject,org,type,actor_kind,actor_id,at,envelope,hash,prev_hash\r\n")) {
		t.Fatalf("csv header: %q", csvA.body[:80])
	}
	rows, err := csv.NewReader(bytes.NewReader(csvA.body)).ReadAll()
	if err != nil || len(rows) != 1+len(seqsWhere(29, func(s uint64) bool { return s >= 10 && orgOfSeq(s) == "globex" && s%7 != 0 })) {
		t.Fatalf("csv rows %d: %v", len(rows), err)
	}
	for _, row := range rows[1:] {
		var seq uint64
		fmt.Sscan(row[0], &seq)
		if r, _ := audit.CSVRaw(row[8]); !bytes.Equal(r, msgs[seq-1].Raw) || row[3] != "globex" || !strings.Contains(row[8], `"org":"globex"`) {
			t.Fatalf("csv row %v", row)
		}
	}
}

func TestAuditFiltersAndPaging(t *testing.T) {
	const n = 40
	mem, _ := trail(t, n)
	api := startAPI(t, httpapi.Config{Audit: mem})
	every := seqsWhere(n, func(uint64) bool { return true })
	for _, limit := range []int{1, 7, 40, 5000} {
		if got := api.all(t, tokOperator, url.Values{}, limit); !slices.Equal(got, every) {
			t.Fatalf("limit %d: %v", limit, got)
		}
	}
	if got := api.all(t, tokOperator, url.Values{"org": {"_instance"}}, 4); !slices.Equal(got, seqsWhere(n, func(s uint64) bool { return s%3 == 2 })) {
		t.Fatalf("org=_instance: %v", got)
	}
	if got := api.all(t, tokOperator, url.Values{"type": {"invalid"}}, 2); !slices.Equal(got, []uint64{7, 11, 14, 21, 28, 35}) {
		t.Fatalf("type=invalid: %v", got)
	}
	got := api.all(t, tokOperator, url.Values{"since": {"2026-11-29T13:05:00Z"}, "until": {"2026-11-29T13:09:00Z"}}, 2)
	if !slices.Equal(got, []uint64{5, 6, 8}) {
		t.Fatalf("since/until: %v", got)
	}
	if p := api.page(t, tokOperator, ""); len(p.Events) != n || p.NextCursor != nil {
		t.Fatalf("default limit: %d records", len(p.Events))
	}
	if got := api.all(t, tokOperator, url.Values{"order": {"asc"}}, 9); !slices.Equal(got, every) {
		t.Fatalf("order=asc: %v", got)
	}
	// Newest first, every page; and from any page both ways.
	newest := slices.Clone(every)
	slices.Reverse(newest)
	for _, limit := range []int{1, 7, 40} {
		if got := api.all(t, tokOperator, url.Values{"order": {"desc"}}, limit); !slices.Equal(got, newest) {
			t.Fatalf("order=desc, limit %d: %v", limit, got)
		}
	}
	if got := api.all(t, tokOperator, url.Values{"order": {"desc"}, "org": {"_instance"}}, 4); !slices.Equal(got, []uint64{38, 35, 32, 29, 26, 23, 20, 17, 14, 11, 8, 5, 2}) {
		t.Fatalf("order=desc&org=_instance: %v", got)
	}
	first := api.page(t, tokOperator, "order=desc&limit=10")
	if first.Events[0].Seq != 40 || first.NextCursor == nil || first.PrevCursor == nil {
		t.Fatalf("newest page: %d… next %v prev %v", first.Events[0].Seq, first.NextCursor, first.PrevCursor)
	}
	if p := api.page(t, tokOperator, "order=asc&limit=10&cursor="+*first.PrevCursor); len(p.Events) != 0 || p.PrevCursor != nil {
		t.Fatalf("newer than the newest: %d records", len(p.Events))
	}
	second := api.page(t, tokOperator, "order=desc&limit=10&cursor="+*first.NextCursor)
	if len(second.Events) != 10 || second.Events[0].Seq != 30 || second.Events[9].Seq != 21 {
		t.Fatalf("second page: %d records from %d", len(second.Events), second.Events[0].Seq)
	}
	back := api.page(t, tokOperator, "order=asc&limit=10&cursor="+*second.PrevCursor)
	if len(back.Events) != 10 || back.Events[0].Seq != 31 || back.Events[9].Seq != 40 || back.NextCursor != nil {
		t.Fatalf("back to the newest: %d records from %d, next %v", len(back.Events), back.Events[0].Seq, back.NextCursor)
	}
	older := api.page(t, tokOperator, "order=desc&limit=10&cursor="+*back.PrevCursor)
	if len(older.Events) != 10 || older.Events[0].Seq != 30 {
		t.Fatalf("older again: %d records from %d", len(older.Events), older.Events[0].Seq)
	}
	for _, q := range []string{"limit=0", "limit=5001", "limit=ten", "cursor=nonsense", "cursor=c2VxOng",
		"order=newest", "order=DESC", "format=xml", "since=yesterday", "until=2026-11-29", "type=License", "type=" + strings.Repeat("a", 65)} {
		a := api.get(t, tokOperator, "/api/audit?"+q)
		if a.code != 400 || !strings.Contains(string(a.body), `"error":"bad_request"`) {
			t.Errorf("%s: %d %s", q, a.code, a.body)
		}
	}
	for q, code := range map[string]string{"org=Acme": "org_invalid", "org=acme&format=csv": "", "org=": ""} {
		a := api.get(t, tokOperator, "/api/audit?"+q)
		if (code == "" && a.code != 200) || (code != "" && (a.code != 400 || !strings.Contains(string(a.body), code))) {
			t.Errorf("%s: %d %s", q, a.code, a.body)
		}
	}
	if a := api.get(t, tokOperator, "/api/audit?org=acme", "X-Org-Slug", "globex"); a.code != 400 || !strings.Contains(string(a.body), "org_ambiguous") {
		t.Errorf("ambiguous org: %d %s", a.code, a.body)
	}
}

// An auditor of acme never sees globex or _instance: not by org=, not
// without it, not through a cursor taken elsewhere, not in jsonl or csv.
// An org_admin never sees _instance.
func TestAuditScope(t *testing.T) {
	const n = 40
	mem, _ := trail(t, n)
	api := startAPI(t, httpapi.Config{Audit: mem})
	acme := seqsWhere(n, func(s uint64) bool { return orgOfSeq(s) == "acme" })

	for _, tok := range []string{tokAuditorAcme, tokAdminAcme} {
		for _, path := range []string{"/api/audit?org=globex", "/api/audit?org=_instance", "/api/audit?org=globex&format=jsonl",
			"/api/audit?org=globex&format=csv", "/api/audit?org=initech"} {
			if a := api.get(t, tok, path); a.code != 403 || !strings.Contains(string(a.body), `"error":"forbidden"`) {
				t.Errorf("%s %s: %d %.200s", tok[:12], path, a.code, a.body)
			}
		}
		if a := api.get(t, tok, "/api/audit", "X-Org-Slug", "globex"); a.code != 403 {
			t.Errorf("X-Org-Slug: globex: %d", a.code)
		}
		if got := api.all(t, tok, url.Values{}, 3); !slices.Equal(got, acme) {
			t.Errorf("%s without org: %v", tok[:12], got)
		}
		if got := api.all(t, tok, url.Values{"org": {"acme"}}, 100); !slices.Equal(got, acme) {
			t.Errorf("%s org=acme: %v", tok[:12], got)
		}
		newest := slices.Clone(acme)
		slices.Reverse(newest)
		if got := api.all(t, tok, url.Values{"order": {"desc"}}, 3); !slices.Equal(got, newest) {
			t.Errorf("%s newest first: %v", tok[:12], got)
		}
		// A cursor from someone who sees everything moves the start, never the scope.
		p := api.page(t, tokOperator, "limit=2&org=globex")
		if got := api.all(t, tok, url.Values{"cursor": {*p.NextCursor}}, 5); !slices.Equal(got, acme[1:]) {
			t.Errorf("%s with a globex cursor: %v", tok[:12], got)
		}
		for _, format := range []string{"jsonl", "csv"} {
			a := api.get(t, tok, "/api/audit?format="+format)
			if a.code != 200 || !bytes.Equal(a.body, encoded(t, mem, audit.Query{Org: "acme"}, format)) {
				t.Errorf("%s %s: %d\n%s", tok[:12], format, a.code, a.body)
			}
			if bytes.Contains(a.body, []byte("globex")) || bytes.Contains(a.body, []byte("_instance")) {
				t.Errorf("%s %s leaks another org", tok[:12], format)
			}
		}
	}
	other := seqsWhere(n, func(s uint64) bool { return orgOfSeq(s) != "acme" })
	if got := api.all(t, tokAuditorOther, url.Values{}, 10); !slices.Equal(got, other) {
		t.Errorf("auditor of globex and _instance: %v", got)
	}
	if got := api.all(t, tokAuditorAll, url.Values{"org": {"_instance"}}, 10); len(got) != n/3 {
		t.Errorf("auditor of every org, _instance: %v", got)
	}
	if a := api.get(t, "", "/api/audit"); a.code != 401 {
		t.Errorf("no token: %d", a.code)
	}
}

// tampered serves a trail with one record changed on the way out.
type tampered struct {
	audit.Reader
	change func(*audit.Record)
}

func (r tampered) Scan(ctx context.Context, q audit.Query, fn func(*audit.Record) error) error {
	return r.Reader.Scan(ctx, q, func(rec *audit.Record) error {
		c := *rec
		r.change(&c)
		return fn(&c)
	})
}

func TestAuditVerifyEndpoint(t *testing.T) {
	mem, msgs := trail(t, 40)
	api := startAPI(t, httpapi.Config{Audit: mem})
	seq, h, _ := mem.Head(context.Background())
	digest := audit.Digest(seq, h)
	for _, tok := range []string{tokOperator, tokAuditorAll} {
		a := api.get(t, tok, "/api/audit/verify")
		if a.code != 200 || strings.TrimSpace(string(a.body)) != fmt.Sprintf(`{"ok":true,"rows_checked":40,"first_bad_seq":null,"column":null,"digest":%q}`, digest) {
			t.Fatalf("verify: %d %s", a.code, a.body)
		}
	}
	var res audit.Result
	a := api.get(t, tokOperator, "/api/audit/verify?digest="+digest)
	if json.Unmarshal(a.body, &res); !res.OK {
		t.Fatalf("with its own digest: %s", a.body)
	}
	a = api.get(t, tokOperator, "/api/audit/verify?digest=50:"+h.Hex())
	if json.Unmarshal(a.body, &res); res.OK || res.BadSeq != 50 || res.Column != audit.ColDigest {
		t.Fatalf("digest past the head: %s", a.body)
	}
	if a := api.get(t, tokOperator, "/api/audit/verify?digest=12:beef"); a.code != 400 {
		t.Fatalf("malformed digest: %d", a.code)
	}

	broken := startAPI(t, httpapi.Config{Audit: tampered{mem, func(r *audit.Record) {
		if r.Seq == 17 {
			r.Org = "acme"
		}
	}}})
	a = broken.get(t, tokAuditorAll, "/api/audit/verify")
	if json.Unmarshal(a.body, &res); a.code != 200 || res.OK || res.BadSeq != 17 || res.Column != audit.ColOrg || res.Rows != 16 {
		t.Fatalf("tampered: %d %s", a.code, a.body)
	}

	stream := func(_ context.Context, seq uint64) (string, []byte, error) {
		if seq > uint64(len(msgs)) {
			return "", nil, nil
		}
		m := msgs[seq-1]
		if seq == 23 {
			return m.Subject, append(bytes.Clone(m.Raw), ' '), nil
		}
		return m.Subject, m.Raw, nil
	}
	var opened, released atomic.Int32
	withStream := startAPI(t, httpapi.Config{Audit: mem, StreamMsg: func() (audit.StreamLookup, func()) {
		opened.Add(1)
		return stream, func() { released.Add(1) }
	}})
	a = withStream.get(t, tokAuditorAll, "/api/audit/verify")
	if json.Unmarshal(a.body, &res); res.OK || res.BadSeq != 23 || res.Column != audit.ColEnvelopeRaw || opened.Load() != 1 || released.Load() != 1 {
		t.Fatalf("against the stream: %s (opened %d, released %d)", a.body, opened.Load(), released.Load())
	}
}

// A caller scoped to some orgs verifies their records only, and the
// answer says nothing of the others: no global count, no digest, no bad
// seq of another org.
func TestAuditVerifyScoped(t *testing.T) {
	const n = 40
	mem, _ := trail(t, n)
	api := startAPI(t, httpapi.Config{Audit: mem})
	acme := len(seqsWhere(n, func(s uint64) bool { return orgOfSeq(s) == "acme" }))
	want := func(ok bool, rows, bad int, col, scope string) string {
		if ok {
			return fmt.Sprintf(`{"ok":true,"rows_checked":%d,"first_bad_seq":null,"column":null,"digest":null,"scope":%s}`, rows, scope)
		}
		return fmt.Sprintf(`{"ok":false,"rows_checked":%d,"first_bad_seq":%d,"column":%q,"digest":null,"scope":%s}`, rows, bad, col, scope)
	}
	check := func(api *apiServer, tok, want string) {
		t.Helper()
		a := api.get(t, tok, "/api/audit/verify")
		if a.code != 200 || strings.TrimSpace(string(a.body)) != want {
			t.Errorf("%s: %d %s\nwant %s", tok[:14], a.code, a.body, want)
		}
	}
	check(api, tokAuditorAcme, want(true, acme, 0, "", `["acme"]`))
	check(api, tokAdminAcme, want(true, acme, 0, "", `["acme"]`))
	check(api, tokAuditorOther, want(true, n-acme, 0, "", `["globex","_instance"]`))
	seq, h, _ := mem.Head(context.Background())
	for _, tok := range []string{tokAuditorAcme, tokAdminAcme} {
		a := api.get(t, tok, "/api/audit/verify?digest="+audit.Digest(seq, h))
		if a.code != 403 || !strings.Contains(string(a.body), `"error":"forbidden"`) {
			t.Errorf("%s with a digest: %d %s", tok[:14], a.code, a.body)
		}
		if a := api.get(t, tok, "/api/audit/verify"); bytes.Contains(a.body, []byte(h.Hex())) || bytes.Contains(a.body, []byte(`"rows_checked":40`)) {
			t.Errorf("%s learns a figure of the whole trail: %s", tok[:14], a.body)
		}
	}

	// acme's seq 18 changed: its auditor and admin find it, the auditor of
	// the other orgs does not, an auditor of every org does.
	ownChanged := startAPI(t, httpapi.Config{Audit: tampered{mem, func(r *audit.Record) {
		if r.Seq == 18 {
			r.ActorID = "someone-else"
		}
	}}})
	before18 := len(seqsWhere(17, func(s uint64) bool { return orgOfSeq(s) == "acme" }))
	check(ownChanged, tokAuditorAcme, want(false, before18, 18, audit.ColActorID, `["acme"]`))
	check(ownChanged, tokAdminAcme, want(false, before18, 18, audit.ColActorID, `["acme"]`))
	check(ownChanged, tokAuditorOther, want(true, n-acme, 0, "", `["globex","_instance"]`))
	var res audit.Result
	a := ownChanged.get(t, tokAuditorAll, "/api/audit/verify")
	if json.Unmarshal(a.body, &res); res.OK || res.BadSeq != 18 || res.Column != audit.ColActorID || res.Rows != 17 {
		t.Errorf("auditor of every org: %s", a.body)
	}

	// globex's seq 19 changed: the acme auditor is told nothing of it;
	// globex's auditor and an auditor of every org see it.
	otherChanged := startAPI(t, httpapi.Config{Audit: tampered{mem, func(r *audit.Record) {
		if r.Seq == 19 {
			r.ActorID = "someone-else"
		}
	}}})
	check(otherChanged, tokAuditorAcme, want(true, acme, 0, "", `["acme"]`))
	before19 := len(seqsWhere(18, func(s uint64) bool { return orgOfSeq(s) != "acme" }))
	check(otherChanged, tokAuditorOther, want(false, before19, 19, audit.ColActorID, `["globex","_instance"]`))
	a = otherChanged.get(t, tokAuditorAll, "/api/audit/verify")
	if json.Unmarshal(a.body, &res); res.OK || res.BadSeq != 19 || res.Column != audit.ColActorID {
		t.Errorf("auditor of every org: %s", a.body)
	}
}

// failing fails every scan after n records.
type failing struct {
	audit.Reader
	n int
}

var errStore = errors.New("store down")

func (r failing) Scan(ctx context.Context, q audit.Query, fn func(*audit.Record) error) error {
	i := 0
	err := r.Reader.Scan(ctx, q, func(rec *audit.Record) error {
		if i++; i > r.n {
			return errStore
		}
		return fn(rec)
	})
	return err
}

func TestAuditUnavailable(t *testing.T) {
	none := startAPI(t, httpapi.Config{})
	for _, p := range []string{"/api/audit", "/api/audit/verify"} {
		if a := none.get(t, tokOperator, p); a.code != 503 {
			t.Errorf("no trail, %s: %d", p, a.code)
		}
	}
	mem, _ := trail(t, 3000)
	early := startAPI(t, httpapi.Config{Audit: failing{mem, 5}})
	for _, p := range []string{"/api/audit", "/api/audit?format=jsonl", "/api/audit?format=csv", "/api/audit/verify"} {
		if a := early.get(t, tokOperator, p); a.code != 503 || !strings.Contains(string(a.body), "event_store_unavailable") {
			t.Errorf("failing early, %s: %d %s", p, a.code, a.body)
		}
	}
	// Past the first 32 KiB the answer has started: it is cut short, and
	// the client sees an error rather than a complete-looking export.
	late := startAPI(t, httpapi.Config{Audit: failing{mem, 2000}})
	for _, f := range []string{"jsonl", "csv"} {
		a := late.get(t, tokOperator, "/api/audit?format="+f)
		if a.code != 200 || a.err == nil {
			t.Errorf("failing late, %s: %d, read error %v after %d bytes", f, a.code, a.err, len(a.body))
		}
	}
}

// unreachable is a stream that does not answer.
type unreachable struct{}

func (unreachable) ReadRange(context.Context, uint64, uint64, func(string, uint64, []byte) error) error {
	return fmt.Errorf("%w: no route to the stream", events.ErrUnavailable)
}

// The in-memory trail reads its records' bytes from the stream: when the
// stream does not answer, so does the trail (503), while its head, which
// it keeps, is still known.
func TestAuditInMemoryStreamUnreachable(t *testing.T) {
	_, msgs := trail(t, 10)
	mem := audit.NewMemory(unreachable{})
	for _, m := range msgs {
		if err := mem.Append(m, base); err != nil {
			t.Fatal(err)
		}
	}
	api := startAPI(t, httpapi.Config{Audit: mem})
	for _, p := range []string{"/api/audit", "/api/audit?format=jsonl", "/api/audit/verify"} {
		if a := api.get(t, tokOperator, p); a.code != 503 || !strings.Contains(string(a.body), "event_store_unavailable") {
			t.Errorf("%s: %d %s", p, a.code, a.body)
		}
	}
	if seq, _, err := mem.Head(context.Background()); seq != 10 || err != nil {
		t.Errorf("head %d, %v", seq, err)
	}
}
