package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/postgres"
	"github.com/licenseledger/ledger/internal/testenv"
	"github.com/licenseledger/ledger/internal/testenv/natstest"
	"github.com/licenseledger/ledger/internal/testenv/pgtest"
)

// checkWithSha256sum checks every JSONL record of an export with coreutils'
// sha256sum alone — hash = sha256(prev_hash ‖ be64(seq) ‖ envelope) — and
// returns the records.
func checkWithSha256sum(t *testing.T, jsonl string) []audit.RecordJSON {
	t.Helper()
	sha256sum := testenv.RequireTool(t, "sha256sum")
	dir := t.TempDir()
	var files []string
	var recs []audit.RecordJSON
	sc := bufio.NewScanner(strings.NewReader(jsonl))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var j audit.RecordJSON
		if err := json.Unmarshal(sc.Bytes(), &j); err != nil {
			t.Fatalf("%v: %s", err, sc.Bytes())
		}
		prev, err := hex.DecodeString(j.PrevHash)
		raw, rerr := j.Raw()
		if err != nil || rerr != nil {
			t.Fatalf("seq %d: %v %v", j.Seq, err, rerr)
		}
		f := filepath.Join(dir, strconv.FormatUint(j.Seq, 10))
		if err := os.WriteFile(f, append(binary.BigEndian.AppendUint64(prev, j.Seq), raw...), 0o600); err != nil {
			t.Fatal(err)
		}
		files, recs = append(files, f), append(recs, j)
	}
	if len(files) == 0 {
		t.Fatal("the export is empty")
	}
	out, err := exec.Command(sha256sum, files...).Output()
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if got, _, _ := strings.Cut(line, " "); got != recs[i].Hash {
			t.Errorf("seq %d: sha256sum %s, record hash %s", recs[i].Seq, got, recs[i].Hash)
		}
	}
	return recs
}

// audited runs an audit command against l.
func (p *ledgerProc) audit(t *testing.T, token string, args ...string) (int, string, string) {
	t.Helper()
	return cliRun(t, "", append(append([]string{"audit"}, args...), "--server", p.url, "--token", token)...)
}

func TestAuditCommandsThroughAPI(t *testing.T) {
	t.Setenv("DATABASE_URL", "")
	dir := t.TempDir()
	l := startLedger(t, dir, nil)
	for _, org := range []string{"acme", "globex"} {
		key := signed(t, "k1", func(p map[string]any) { p["org_slug"], p["expires"] = org, future(48*time.Hour) })
		if code, m := l.call("POST", "/api/license?org="+org, key); code != 200 {
			t.Fatalf("upload %s: %d %v", org, code, m)
		}
	}
	if code, _ := l.call("POST", "/api/license?org=acme", "hfl1.nope"); code != 400 {
		t.Fatalf("a malformed upload: %d", code)
	}
	// ledger.started, two uploads, the enforcement latch, one rejection.
	const total = 5
	var line string
	waitFor(t, "the trail holds every event", func() bool {
		_, line, _ = l.audit(t, l.token, "verify")
		return strings.HasPrefix(line, fmt.Sprintf("ok %d ", total))
	})
	digest := strings.Fields(line)[2]
	if code, out, _ := l.audit(t, l.token, "digest"); code != 0 || strings.TrimSpace(out) != digest {
		t.Fatalf("digest: %d %q, verify said %s", code, out, digest)
	}
	if code, out, _ := l.audit(t, l.token, "verify", "--digest", digest); code != 0 || out != line {
		t.Fatalf("verify --digest: %d %q", code, out)
	}
	seq, h, _ := audit.ParseDigest(digest)
	h[0] ^= 1
	if code, out, _ := l.audit(t, l.token, "verify", "--digest", audit.Digest(seq, h)); code != 1 || out != fmt.Sprintf("mismatch at seq %d (digest)\n", seq) {
		t.Fatalf("verify with a wrong digest: %d %q", code, out)
	}

	code, out, errOut := l.audit(t, l.token, "export", "--org", "acme")
	if code != 0 || errOut != "" {
		t.Fatalf("export: %d %s", code, errOut)
	}
	recs := checkWithSha256sum(t, out)
	types := map[string]bool{}
	for _, r := range recs {
		types[r.Type] = true
		if r.Org != "acme" {
			t.Fatalf("export --org acme holds %s", r.Org)
		}
	}
	if len(recs) != 2 || !types[events.TypeUploaded] || !types[events.TypeRejected] {
		t.Fatalf("acme's records: %+v", recs)
	}
	_, all, _ := l.audit(t, l.token, "export", "--format", "json")
	var arr []audit.RecordJSON
	if err := json.Unmarshal([]byte(all), &arr); err != nil || len(arr) != total || arr[0].Type != events.TypeLedgerStarted {
		t.Fatalf("json: %v\n%s", err, all)
	}
	_, csvOut, _ := l.audit(t, l.token, "export", "--format", "csv", "--type", events.TypeUploaded)
	rows, err := csv.NewReader(strings.NewReader(csvOut)).ReadAll()
	if err != nil || len(rows) != 3 || strings.Join(rows[0], ",") != strings.Join(audit.CSVHeader, ",") {
		t.Fatalf("csv: %v\n%s", err, csvOut)
	}
	if _, none, _ := l.audit(t, l.token, "export", "--format", "json", "--since", future(time.Hour)); none != "[]\n" {
		t.Fatalf("nothing since the future: %q", none)
	}

	// An auditor of acme: its org only; 403 elsewhere. Its verification
	// covers acme's records, and gives neither the trail's size nor its
	// digest.
	auditorTok := createTokenOn(t, l.url, filepath.Join(dir, "tokens"), "--role", "auditor", "--org", "acme", "--name", "acme-audit")
	if code, out, _ := l.audit(t, auditorTok, "export"); code != 0 || len(checkWithSha256sum(t, out)) != 2 {
		t.Fatalf("auditor of acme: %d\n%s", code, out)
	}
	if code, out, errOut := l.audit(t, auditorTok, "export", "--org", "globex"); code != 3 || out != "" || !strings.HasPrefix(errOut, "forbidden: ") {
		t.Fatalf("auditor of acme, --org globex: %d %q %q", code, out, errOut)
	}
	if code, out, errOut := l.audit(t, auditorTok, "verify"); code != 0 || out != "ok 2 scope=acme\n" || errOut != "" {
		t.Fatalf("auditor of acme, verify: %d %q %q", code, out, errOut)
	}
	for _, args := range [][]string{{"digest"}, {"verify", "--digest", digest}} {
		if code, out, errOut := l.audit(t, auditorTok, args...); code != 3 || out != "" || !strings.HasPrefix(errOut, "forbidden: ") || strings.Contains(errOut, digest) {
			t.Fatalf("auditor of acme, %v: %d %q %q", args, code, out, errOut)
		}
	}
	adminTok := createTokenOn(t, l.url, filepath.Join(dir, "tokens"), "--role", "org_admin", "--org", "acme", "--name", "acme-admin")
	if code, out, errOut := l.audit(t, adminTok, "verify"); code != 0 || out != "ok 2 scope=acme\n" {
		t.Fatalf("org_admin verify: %d %q %q", code, out, errOut)
	}

	for _, args := range [][]string{{"export", "--format", "xml"}, {"export", "--since", "yesterday"},
		{"export", "--org", "Acme"}, {"verify", "--digest", "12"}} {
		if code, _, _ := l.audit(t, l.token, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if code, _, _ := cliRun(t, "", "audit", "verify", "--server", closedPort(t), "--token", l.token); code != 4 {
		t.Errorf("no ledger: exit %d", code)
	}
}

// pgTrail is a stream with events and garbage on it, and license_audit
// holding its records, as the projector would.
type pgTrail struct {
	dsn, seedFile, natsURL string
	pool                   *pgxpool.Pool
	bus                    *natsbus.Bus
	msgs                   []*events.Message
}

func newPGTrail(t *testing.T) *pgTrail {
	t.Helper()
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	if err := postgres.Migrate(ctx, dsn, "up", postgres.Roles{}, io.Discard); err != nil {
		t.Fatal(err)
	}
	srv := natstest.Start(t)
	srv.CreateStream(t)
	bus, _, err := natsbus.Open(ctx, srv.Connect(t, natsauth.RoleLedger), "LICENSES", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	js := srv.JetStream(t, natsauth.RoleLedger)
	heads := map[string]uint64{}
	for i, org := range []string{"_instance", "acme", "globex", "acme", "", "globex", "acme"} {
		if org == "" {
			if _, err := js.Publish(ctx, "licenses.org.acme", []byte("\xffnot an envelope")); err != nil {
				t.Fatal(err)
			}
			continue
		}
		typ := events.TypeRejected
		subject := events.AuditSubject(org)
		if i == 3 {
			typ, subject = events.TypeRemoved, events.OrgSubject(org)
		}
		env, _ := events.New(typ, org, time.Now(), events.Actor{Kind: events.ActorOperator, ID: "ops"}, heads[subject],
			map[string]any{"license_id": "0193a5b0-7e1a-7c3d-8f00-1234567890ab", "code": "license_malformed"})
		seq, err := bus.Append(ctx, subject, env, heads[subject])
		if err != nil {
			t.Fatal(err)
		}
		heads[subject] = seq
	}
	p := &pgTrail{dsn: dsn, natsURL: srv.URL(), bus: bus, pool: pgtest.NewPool(t, dsn)}
	for seq := uint64(1); seq <= 7; seq++ {
		m, err := bus.Get(ctx, seq)
		if err != nil || m == nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
		p.msgs = append(p.msgs, m)
	}
	p.insert(t, p.msgs)
	p.seedFile = filepath.Join(t.TempDir(), "reader.nk")
	if err := os.WriteFile(p.seedFile, srv.ReaderSeed, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// insert chains msgs into license_audit after the records of p.msgs
// before them, with the append-only triggers off (rows may be rewritten).
func (p *pgTrail) insert(t *testing.T, msgs []*events.Message) {
	t.Helper()
	c := audit.NewChain()
	for _, m := range p.msgs[:msgs[0].Seq-1] {
		c.Append(m, time.Now())
	}
	var rows [][]any
	for _, m := range msgs {
		rows = append(rows, postgres.AuditRow(c.Append(m, time.Now())))
	}
	ctx := context.Background()
	p.sql(t, "ALTER TABLE license_audit DISABLE TRIGGER USER")
	p.sql(t, "DELETE FROM license_audit WHERE seq >= $1", int64(msgs[0].Seq))
	if _, err := p.pool.CopyFrom(ctx, pgx.Identifier{"license_audit"}, postgres.AuditColumns(), pgx.CopyFromRows(rows)); err != nil {
		t.Fatal(err)
	}
	p.sql(t, "ALTER TABLE license_audit ENABLE TRIGGER USER")
}

func (p *pgTrail) sql(t *testing.T, sql string, args ...any) {
	t.Helper()
	if _, err := p.pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func (p *pgTrail) verify(t *testing.T, natsURL string) (int, string, string) {
	t.Helper()
	return cliRun(t, "", "audit", "verify", "--database-url", p.dsn, "--nats-url", natsURL, "--nats-nkey", p.seedFile)
}

func TestAuditCommandsThroughPostgres(t *testing.T) {
	p := newPGTrail(t)
	code, out, errOut := p.verify(t, p.natsURL)
	var head audit.Hash
	for _, m := range p.msgs {
		head = audit.Next(head, m.Seq, m.Raw)
	}
	digest := audit.Digest(7, head)
	if code != 0 || out != "ok 7 "+digest+"\n" || errOut != "" {
		t.Fatalf("verify: %d %q %q", code, out, errOut)
	}
	if code, out, _ := cliRun(t, "", "audit", "digest", "--database-url", p.dsn); code != 0 || out != digest+"\n" {
		t.Fatalf("digest: %d %q", code, out)
	}
	code, out, _ = cliRun(t, "", "audit", "export", "--database-url", p.dsn, "--org", "acme")
	if recs := checkWithSha256sum(t, out); code != 0 || len(recs) != 4 || recs[2].Type != events.TypeInvalid || recs[2].Envelope != nil {
		t.Fatalf("export --org acme: %d\n%s", code, out)
	}
	code, out, _ = cliRun(t, "", "audit", "export", "--database-url", p.dsn, "--format", "csv", "--type", events.TypeRejected)
	if rows, err := csv.NewReader(strings.NewReader(out)).ReadAll(); code != 0 || err != nil || len(rows) != 6 {
		t.Fatalf("csv: %d %v\n%s", code, err, out)
	}

	// Without the stream, the comparison is skipped with a note.
	code, out, errOut = p.verify(t, "nats://"+strings.TrimPrefix(closedPort(t), "http://"))
	if code != 0 || out != "ok 7 "+digest+"\n" || !strings.Contains(errOut, "not comparing with the stream") {
		t.Fatalf("verify without the stream: %d %q %q", code, out, errOut)
	}

	// A chain rewritten from seq 3 on, hashes and all, verifies by itself;
	// only the stream shows the change.
	forged := append([]*events.Message{}, p.msgs...)
	forged[2] = events.Decode(p.msgs[2].Subject, 3, []byte(strings.Replace(string(p.msgs[2].Raw), "license_malformed", "license_forgotten", 1)))
	p.insert(t, forged[2:])
	if _, out, _ := p.verify(t, "nats://"+strings.TrimPrefix(closedPort(t), "http://")); !strings.HasPrefix(out, "ok 7 ") {
		t.Fatalf("a consistent rewrite, PostgreSQL alone: %q", out)
	}
	if code, out, _ := p.verify(t, p.natsURL); code != 1 || out != "mismatch at seq 3 (envelope_raw)\n" {
		t.Fatalf("a consistent rewrite against the stream: %d %q", code, out)
	}
	p.insert(t, p.msgs[2:])

	// A row PostgreSQL has and the stream never had.
	extra := events.Decode("licenses.org.acme", 8, []byte(`{"not":"on the stream"}`))
	p.insert(t, []*events.Message{extra})
	if code, out, _ := p.verify(t, p.natsURL); code != 1 || out != "mismatch at seq 8 (envelope_raw)\n" {
		t.Fatalf("a row missing from the stream: %d %q", code, out)
	}
	p.sql(t, "ALTER TABLE license_audit DISABLE TRIGGER USER")
	p.sql(t, "DELETE FROM license_audit WHERE seq = 8")
	p.sql(t, "UPDATE license_audit SET org_slug = 'globex' WHERE seq = 4")
	p.sql(t, "ALTER TABLE license_audit ENABLE TRIGGER USER")
	if code, out, _ := p.verify(t, p.natsURL); code != 1 || out != "mismatch at seq 4 (org_slug)\n" {
		t.Fatalf("org_slug changed: %d %q", code, out)
	}

	if code, _, _ := cliRun(t, "", "audit", "digest", "--database-url", "postgres://nobody@"+strings.TrimPrefix(closedPort(t), "http://")+"/x?connect_timeout=2"); code != 4 {
		t.Fatalf("no database: exit %d", code)
	}
	if code, _, _ := cliRun(t, "", "audit", "digest", "--database-url", "postgres://%zz"); code != 2 {
		t.Fatalf("a malformed DATABASE_URL: exit %d", code)
	}
}

// Through the API of a ledger on PostgreSQL, an auditor scoped to one org
// verifies that org's rows only: a changed row of its own is found, one of
// another org is not shown to it, but is to an auditor of every org.
func TestAuditVerifyScopedThroughAPI(t *testing.T) {
	t.Setenv("DATABASE_URL", "")
	super := pgtest.NewDatabase(t)
	if err := postgres.Migrate(context.Background(), super, "up", postgres.Roles{}, io.Discard); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	l := startLedgerWith(t, dir, func(c *serveCmd) { c.DatabaseURL = pgtest.LoginRole(t, super, "ledger_app") })
	for _, org := range []string{"acme", "globex"} {
		key := signed(t, "k1", func(p map[string]any) { p["org_slug"], p["expires"] = org, future(48*time.Hour) })
		if code, m := l.call("POST", "/api/license?org="+org, key); code != 200 {
			t.Fatalf("upload %s: %d %v", org, code, m)
		}
	}
	if code, _ := l.call("POST", "/api/license?org=acme", "hfl1.nope"); code != 400 {
		t.Fatalf("a malformed upload: %d", code)
	}
	file := filepath.Join(dir, "tokens")
	acmeTok := createTokenOn(t, l.url, file, "--role", "auditor", "--org", "acme", "--name", "acme-audit")
	globexTok := createTokenOn(t, l.url, file, "--role", "auditor", "--org", "globex", "--name", "globex-audit")
	allTok := createTokenOn(t, l.url, file, "--role", "auditor", "--name", "audit")
	// ledger.started, two uploads, the enforcement latch, one rejection.
	pool := pgtest.NewPool(t, super)
	waitFor(t, "every row projected", func() bool {
		var n int
		pool.QueryRow(context.Background(), "SELECT count(*) FROM license_audit").Scan(&n)
		return n == 5
	})
	seqOf := func(org, typ string) int64 {
		var seq int64
		if err := pool.QueryRow(context.Background(), "SELECT seq FROM license_audit WHERE org_slug = $1 AND type = $2", org, typ).Scan(&seq); err != nil {
			t.Fatal(err)
		}
		return seq
	}
	acmeRejected, globexUploaded := seqOf("acme", events.TypeRejected), seqOf("globex", events.TypeUploaded)
	verify := func(tok string) (int, string) {
		t.Helper()
		code, out, errOut := l.audit(t, tok, "verify")
		if code != 0 && code != 1 {
			t.Fatalf("verify: %d %q %q", code, out, errOut)
		}
		return code, out
	}
	setActor := func(seq int64, actor string) {
		t.Helper()
		for _, q := range []string{"ALTER TABLE license_audit DISABLE TRIGGER USER",
			fmt.Sprintf("UPDATE license_audit SET actor_id = '%s' WHERE seq = %d", actor, seq),
			"ALTER TABLE license_audit ENABLE TRIGGER USER"} {
			if _, err := pool.Exec(context.Background(), q); err != nil {
				t.Fatal(err)
			}
		}
	}
	if code, out := verify(acmeTok); code != 0 || out != "ok 2 scope=acme\n" {
		t.Fatalf("acme, intact: %d %q", code, out)
	}
	if code, out := verify(allTok); code != 0 || !strings.HasPrefix(out, "ok 5 5:") {
		t.Fatalf("every org, intact: %d %q", code, out)
	}
	// The body of a scoped verification holds no figure of the whole trail.
	req, _ := http.NewRequest("GET", l.url+"/api/audit/verify", nil)
	req.Header.Set("Authorization", "Bearer "+acmeTok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if d, ok := body["digest"]; !ok || d != nil || body["rows_checked"] != 2.0 || body["first_bad_seq"] != nil || fmt.Sprint(body["scope"]) != "[acme]" {
		t.Fatalf("scoped answer: %v", body)
	}

	// Another org's row changed: not shown to acme's auditor.
	var actor string
	pool.QueryRow(context.Background(), "SELECT actor_id FROM license_audit WHERE seq = $1", globexUploaded).Scan(&actor)
	setActor(globexUploaded, "someone-else")
	if code, out := verify(acmeTok); code != 0 || out != "ok 2 scope=acme\n" {
		t.Fatalf("acme, globex's row changed: %d %q", code, out)
	}
	want := fmt.Sprintf("mismatch at seq %d (actor_id)\n", globexUploaded)
	for _, tok := range []string{globexTok, allTok} {
		if code, out := verify(tok); code != 1 || out != want {
			t.Fatalf("globex's row changed: %d %q, want %q", code, out, want)
		}
	}
	setActor(globexUploaded, actor)

	// acme's own row changed: found by its auditor, not by globex's.
	pool.QueryRow(context.Background(), "SELECT actor_id FROM license_audit WHERE seq = $1", acmeRejected).Scan(&actor)
	setActor(acmeRejected, "someone-else")
	want = fmt.Sprintf("mismatch at seq %d (actor_id)\n", acmeRejected)
	for _, tok := range []string{acmeTok, allTok} {
		if code, out := verify(tok); code != 1 || out != want {
			t.Fatalf("acme's row changed: %d %q, want %q", code, out, want)
		}
	}
	if code, out := verify(globexTok); code != 0 || out != "ok 1 scope=globex\n" {
		t.Fatalf("globex, acme's row changed: %d %q", code, out)
	}
}

// ledger serve logs the trail's digest every LEDGER_DIGEST_INTERVAL.
func TestServeLogsAuditDigests(t *testing.T) {
	t.Setenv("DATABASE_URL", "")
	dir := t.TempDir()
	l := serveTokens(t, dir, func(c *serveCmd) { c.DigestInterval = 20 * time.Millisecond })
	tok, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	code, out, _ := cliRun(t, "", "audit", "digest", "--server", l.url, "--token", strings.TrimSpace(string(tok)))
	if code != 0 || !strings.HasPrefix(out, "1:") {
		t.Fatalf("digest: %d %q", code, out)
	}
	line := `msg="audit digest" digest=` + strings.TrimSpace(out) + " rows=1"
	waitFor(t, "the digest log line", func() bool { return l.logged(line) })
}

func TestAuditHelpListsVariables(t *testing.T) {
	for cmd, vars := range map[string][]string{
		"audit export": {"DATABASE_URL", "LEDGER_SERVER", "LEDGER_TOKEN", "DATA_DIR", "LEDGER_TIMEOUT"},
		"audit verify": {"DATABASE_URL", "NATS_URL", "NATS_NKEY", "LICENSE_STREAM", "reader.nk"},
		"serve":        {"LEDGER_DIGEST_INTERVAL"},
	} {
		code, out, _ := cliRun(t, "", append(strings.Fields(cmd), "--help")...)
		for _, v := range vars {
			if code != 0 || !strings.Contains(out, v) {
				t.Errorf("%s --help: exit %d, %s missing", cmd, code, v)
			}
		}
	}
}
