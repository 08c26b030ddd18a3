package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/events"
)

var auditBase = time.Date(2026, 11, 29, 13, 0, 0, 123456000, time.UTC)

// auditMessage encodes an event of typ for org at auditBase + minutes, on
// the subject its type belongs on.
func auditMessage(t *testing.T, seq uint64, id, org, typ string, kind string, minutes int, data any) *events.Message {
	t.Helper()
	subject := events.AuditSubject(org)
	if events.IsOrgType(typ) {
		subject = events.OrgSubject(org)
	}
	if data == nil {
		data = map[string]any{"license_id": "0193a5b0-7e1a-7c3d-8f00-1234567890ab"}
	}
	at := auditBase.Add(time.Duration(minutes) * time.Minute)
	actor := events.Actor{Kind: kind, ID: kind + "-1"}
	env, err := events.New(typ, org, at, actor, 0, data)
	if id != "" {
		env, err = events.NewWithID(id, typ, org, at, actor, 0, data)
	}
	if err != nil {
		t.Fatal(err)
	}
	raw, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return events.Decode(subject, seq, raw)
}

// auditFixture is every kind of record the projector writes: valid events
// of two orgs and _instance, an event id in upper case (the uuid column
// lowers it), an envelope jsonb cannot hold (NUL), and invalid messages
// that are not JSON, not UTF-8, or JSON but not an envelope.
func auditFixture(t *testing.T) []*events.Message {
	return []*events.Message{
		auditMessage(t, 1, "", "_instance", events.TypeLedgerStarted, events.ActorSystem, 0, nil),
		auditMessage(t, 2, "", "acme", events.TypeUploaded, events.ActorOperator, 1, nil),
		auditMessage(t, 3, "", "globex", events.TypeUploaded, events.ActorOrgAdmin, 2, nil),
		auditMessage(t, 4, "", "acme", events.TypeRejected, events.ActorOrgAdmin, 3, map[string]any{"code": "license_malformed", "source": "api"}),
		events.Decode("licenses.org.acme", 5, []byte(`not json`)),
		events.Decode("licenses.audit.globex", 6, []byte("\xff\xfe{}")),
		events.Decode("licenses.org.globex", 7, []byte(`{"hello": "world", "n": 1.50}`)),
		auditMessage(t, 8, "", "acme", events.TypeInvalidated, events.ActorOperator, 5, map[string]any{"license_id": "0193a5b0-7e1a-7c3d-8f00-1234567890ab", "note": "a\x00b"}),
		auditMessage(t, 9, "", "_instance", events.TypeEnforcementChanged, events.ActorOperator, 6, map[string]any{"mode": "on"}),
		auditMessage(t, 10, "0193A5B0-7E1A-7C3D-8F00-1234567890AC", "acme", events.TypeRemoved, events.ActorOperator, 7, nil),
	}
}

// insertAudit writes the records of msgs into license_audit as the
// projector does (AuditRow), as the owner, and returns them.
func insertAudit(t *testing.T, pool *pgxpool.Pool, msgs []*events.Message) []audit.Record {
	t.Helper()
	var recs []audit.Record
	var rows [][]any
	c := audit.NewChain()
	for _, m := range msgs {
		r := c.Append(m, time.Now())
		recs = append(recs, r)
		rows = append(rows, AuditRow(r))
	}
	if _, err := pool.CopyFrom(testContext(t), pgx.Identifier{"license_audit"}, AuditColumns(), pgx.CopyFromRows(rows)); err != nil {
		t.Fatal(err)
	}
	return recs
}

// auditQueries are filters with the seqs they select from auditFixture.
var auditQueries = []struct {
	name string
	q    audit.Query
	want []uint64
}{
	{"all", audit.Query{}, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
	{"org", audit.Query{Org: "acme"}, []uint64{2, 4, 5, 8, 10}},
	{"instance", audit.Query{Org: "_instance"}, []uint64{1, 9}},
	{"type", audit.Query{Type: events.TypeUploaded}, []uint64{2, 3}},
	{"invalid", audit.Query{Type: events.TypeInvalid}, []uint64{5, 6, 7}},
	{"org and type", audit.Query{Org: "globex", Type: events.TypeInvalid}, []uint64{6, 7}},
	{"since inclusive", audit.Query{Since: auditBase.Add(3 * time.Minute)}, []uint64{4, 8, 9, 10}},
	{"until exclusive", audit.Query{Until: auditBase.Add(3 * time.Minute)}, []uint64{1, 2, 3}},
	{"since and until", audit.Query{Since: auditBase.Add(time.Minute), Until: auditBase.Add(6 * time.Minute)}, []uint64{2, 3, 4, 8}},
	{"after", audit.Query{After: 6}, []uint64{7, 8, 9, 10}},
	{"limit", audit.Query{Limit: 4}, []uint64{1, 2, 3, 4}},
	{"after and limit", audit.Query{After: 2, Limit: 3, Org: "acme"}, []uint64{4, 5, 8}},
	{"limit across pages", audit.Query{After: 1, Limit: 7}, []uint64{2, 3, 4, 5, 6, 7, 8}},
	{"scope", audit.Query{Scope: []string{"acme"}}, []uint64{2, 4, 5, 8, 10}},
	{"scope hides another org", audit.Query{Scope: []string{"acme"}, Org: "globex"}, nil},
	{"scope with cursor", audit.Query{Scope: []string{"globex"}, After: 6}, []uint64{7}},
	{"scope and time", audit.Query{Scope: []string{"acme"}, Since: auditBase.Add(4 * time.Minute)}, []uint64{8, 10}},
	{"empty scope", audit.Query{Scope: []string{}}, nil},
	{"before", audit.Query{Before: 4}, []uint64{1, 2, 3}},
	{"desc", audit.Query{Desc: true}, []uint64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}},
	{"desc limit across pages", audit.Query{Desc: true, Before: 10, Limit: 7}, []uint64{9, 8, 7, 6, 5, 4, 3}},
	{"desc org and cursor", audit.Query{Desc: true, Org: "acme", Before: 8, After: 2}, []uint64{5, 4}},
}

func scanAll(t *testing.T, r audit.Reader, q audit.Query) []audit.Record {
	t.Helper()
	var out []audit.Record
	if err := r.Scan(testContext(t), q, func(r *audit.Record) error {
		out = append(out, *r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// The PostgreSQL reader agrees with the in-memory trail, record for
// record, on every filter, whatever its page size.
func TestAuditReaderMatchesMemory(t *testing.T) {
	_, pool := migratedDB(t)
	reader := NewAuditReader(pool)
	if seq, h, err := reader.Head(testContext(t)); seq != 0 || h != audit.Zero || err != nil {
		t.Fatalf("empty head: %d %x %v", seq, h, err)
	}
	msgs := auditFixture(t)
	insertAudit(t, pool, msgs)
	mem := audit.NewMemory(audit.Messages(msgs))
	for _, m := range msgs {
		mem.Append(m, time.Now())
	}
	seq, h, err := reader.Head(testContext(t))
	mseq, mh, _ := mem.Head(testContext(t))
	if err != nil || seq != mseq || h != mh {
		t.Fatalf("head %d %x %v, memory %d %x", seq, h, err, mseq, mh)
	}
	for _, page := range []int{1000, 3, 1} {
		reader.pageSize = page
		for _, c := range auditQueries {
			got, want := scanAll(t, reader, c.q), scanAll(t, mem, c.q)
			var seqs []uint64
			for i := range got {
				seqs = append(seqs, got[i].Seq)
			}
			if !slices.Equal(seqs, c.want) || len(want) != len(got) {
				t.Fatalf("page %d, %s: %v, want %v", page, c.name, seqs, c.want)
			}
			for i := range got {
				if a, b := comparable(got[i]), comparable(want[i]); a != b {
					t.Fatalf("%s: seq %d differs:\npg     %s\nmemory %s", c.name, got[i].Seq, a, b)
				}
			}
		}
	}
	recs := scanAll(t, reader, audit.Query{})
	for i, r := range recs {
		if !r.EnvelopeKept || (r.Envelope == nil) != !audit.JSONBStorable(msgs[i].Raw) {
			t.Errorf("seq %d: envelope column %q (kept %v)", r.Seq, r.Envelope, r.EnvelopeKept)
		}
	}
	if recs[6].Envelope == nil || recs[7].Envelope != nil {
		t.Error("fixture: seq 7 is JSON jsonb holds, seq 8 holds a NUL jsonb refuses")
	}
}

// comparable renders what both readers must agree on (event ids by value:
// the uuid column lowers them).
func comparable(r audit.Record) string {
	return fmt.Sprintf("%d|%s|%s|%s|%s|%s|%s|%s|%q|%x|%x", r.Seq, strings.ToLower(r.EventID), r.Subject, r.Org, r.Type,
		r.ActorKind, r.ActorID, r.At.Format(time.RFC3339Nano), r.Raw, r.PrevHash, r.Hash)
}

// behindTheTriggers runs sql on license_audit with its append-only
// triggers disabled, as an owner or superuser could.
func behindTheTriggers(t *testing.T, pool *pgxpool.Pool, sql string) {
	t.Helper()
	ctx := testContext(t)
	for _, s := range []string{"ALTER TABLE license_audit DISABLE TRIGGER USER", sql, "ALTER TABLE license_audit ENABLE TRIGGER USER"} {
		if _, err := pool.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// A row changed behind the triggers is named by Verify, seq and column.
func TestVerifyPostgresTampering(t *testing.T) {
	dsn, pool := migratedDB(t)
	msgs := auditFixture(t)
	insertAudit(t, pool, msgs)
	ctx := testContext(t)
	if _, err := pool.Exec(ctx, `UPDATE license_audit SET org_slug = 'globex' WHERE seq = 2`); err == nil {
		t.Fatal("the append-only trigger let an UPDATE through")
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE audit_saved AS SELECT * FROM license_audit`); err != nil {
		t.Fatal(err)
	}
	// An auditor's login, SELECT only, verifies the intact trail.
	_, auditorDSN := newLoginRole(t, dsn, DefaultAuditorRole)
	auditor, err := Open(ctx, auditorDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer auditor.Close()
	res, err := audit.Verify(ctx, NewAuditReader(auditor), audit.VerifyOptions{})
	mseq, mh, _ := memoryHead(msgs)
	if err != nil || !res.OK || res.Rows != 10 || res.Digest != audit.Digest(mseq, mh) {
		t.Fatalf("intact: %+v %v", res, err)
	}

	for _, c := range []struct {
		name, sql string
		seq       uint64
		col       string
	}{
		{"envelope_raw", `UPDATE license_audit SET envelope_raw = set_byte(envelope_raw, 29, CASE WHEN get_byte(envelope_raw, 29) = 48 THEN 49 ELSE 48 END) WHERE seq = 4`, 4, audit.ColEnvelopeRaw},
		{"envelope_raw of an invalid message", `UPDATE license_audit SET envelope_raw = 'not JSON' WHERE seq = 5`, 5, audit.ColEnvelopeRaw},
		{"org_slug", `UPDATE license_audit SET org_slug = 'globex' WHERE seq = 2`, 2, audit.ColOrg},
		{"org_slug of an invalid message", `UPDATE license_audit SET org_slug = 'acme' WHERE seq = 6`, 6, audit.ColOrg},
		{"type", `UPDATE license_audit SET type = 'license.removed' WHERE seq = 3`, 3, audit.ColType},
		{"actor_kind", `UPDATE license_audit SET actor_kind = 'operator' WHERE seq = 3`, 3, audit.ColActorKind},
		{"actor_id", `UPDATE license_audit SET actor_id = NULL WHERE seq = 9`, 9, audit.ColActorID},
		{"event_id", `UPDATE license_audit SET event_id = gen_random_uuid() WHERE seq = 10`, 10, audit.ColEventID},
		{"occurred_at", `UPDATE license_audit SET occurred_at = occurred_at - interval '1 day' WHERE seq = 8`, 8, audit.ColOccurredAt},
		{"envelope", `UPDATE license_audit SET envelope = jsonb_set(envelope, '{org}', '"globex"') WHERE seq = 2`, 2, audit.ColEnvelope},
		{"envelope of an invalid message", `UPDATE license_audit SET envelope = '{"hello": "moon", "n": 1.5}' WHERE seq = 7`, 7, audit.ColEnvelope},
		{"hash", `UPDATE license_audit SET hash = sha256(hash) WHERE seq = 6`, 6, audit.ColHash},
		{"a short hash", `UPDATE license_audit SET hash = substring(hash from 1 for 31) WHERE seq = 7`, 7, audit.ColHash},
		{"prev_hash", `UPDATE license_audit SET prev_hash = sha256(prev_hash) WHERE seq = 9`, 9, audit.ColPrevHash},
		{"a deleted row", `DELETE FROM license_audit WHERE seq = 5`, 5, audit.ColSeq},
		{"tree_hashes", `UPDATE license_audit SET tree_hashes = set_byte(tree_hashes, 40, get_byte(tree_hashes, 40) # 1) WHERE seq = 4`, 4, audit.ColTreeHashes},
		{"tree_hashes removed", `UPDATE license_audit SET tree_hashes = NULL WHERE seq = 3`, 3, audit.ColTreeHashes},
	} {
		t.Run(c.name, func(t *testing.T) {
			behindTheTriggers(t, pool, c.sql)
			t.Cleanup(func() {
				behindTheTriggers(t, pool, `DELETE FROM license_audit; INSERT INTO license_audit SELECT * FROM audit_saved`)
			})
			res, err := audit.Verify(ctx, NewAuditReader(auditor), audit.VerifyOptions{})
			if err != nil || res.OK || res.BadSeq != c.seq || res.Column != c.col {
				t.Fatalf("got %v (%v), want mismatch at seq %d (%s)", res, err, c.seq, c.col)
			}
		})
	}
	// The digest of an earlier run catches rows cut off the end.
	digest := audit.Digest(mseq, mh)
	behindTheTriggers(t, pool, `DELETE FROM license_audit WHERE seq > 8`)
	res, err = audit.Verify(ctx, NewAuditReader(pool), audit.VerifyOptions{Digest: digest})
	if err != nil || res.OK || res.BadSeq != 10 || res.Column != audit.ColDigest || res.Rows != 8 {
		t.Fatalf("truncated: %+v %v", res, err)
	}
}

func memoryHead(msgs []*events.Message) (uint64, audit.Hash, error) {
	mem := audit.NewMemory(nil)
	for _, m := range msgs {
		mem.Append(m, time.Now())
	}
	return mem.Head(context.Background())
}

func TestAuditReaderUnavailable(t *testing.T) {
	_, pool := migratedDB(t)
	reader := NewAuditReader(pool)
	pool.Close()
	if err := reader.Scan(context.Background(), audit.Query{}, func(*audit.Record) error { return nil }); err == nil {
		t.Fatal("scan on a closed pool succeeded")
	}
	if _, _, err := reader.Head(context.Background()); err == nil {
		t.Fatal("head on a closed pool succeeded")
	}
}

// Records written by a release without the tree have no tree_hashes: the
// projector computes theirs once, at start, into license_audit_tree (no
// row is updated), and the trail then verifies and proves as if they had
// been written with them.
func TestTreeOfRecordsWrittenBeforeIt(t *testing.T) {
	_, pool := migratedDB(t)
	ctx := testContext(t)
	msgs := auditFixture(t)
	recs := insertAudit(t, pool, msgs[:7])
	behindTheTriggers(t, pool, `UPDATE license_audit SET tree_hashes = NULL`) // as the previous release wrote them
	c := audit.NewChain()
	for _, m := range msgs {
		c.Append(m, time.Now())
	}
	if _, err := pool.Exec(ctx, `INSERT INTO projection_checkpoints (name, last_seq, updated_at) VALUES ('org_licenses', 7, now())`); err != nil {
		t.Fatal(err)
	}
	reader := NewAuditReader(pool)
	if res, err := audit.Verify(ctx, reader, audit.VerifyOptions{}); err != nil || res.OK || res.BadSeq != 1 || res.Column != audit.ColTreeHashes {
		t.Fatalf("before the projector started: %+v %v, want a mismatch at 1 (tree_hashes)", res, err)
	}
	if size, _, err := reader.TreeSize(ctx); size != 0 || err != nil {
		t.Fatalf("tree size before: %d %v", size, err)
	}

	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	tree, err := loadTree(ctx, conn.Conn(), "org_licenses", 7, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	want := audit.NewChain()
	for _, r := range recs {
		want.Append(events.Decode(r.Subject, r.Seq, r.Raw), time.Now())
	}
	if tree.Root() != want.Tree.Root() || tree.Size() != 7 {
		t.Fatalf("tree after the backfill: size %d", tree.Size())
	}
	var kept int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM license_audit_tree`).Scan(&kept); err != nil || kept != 7 {
		t.Fatalf("%d rows kept aside, %v", kept, err)
	}
	// The next records are written with their column.
	rest := audit.NewChain()
	var rows [][]any
	for _, m := range msgs {
		r := rest.Append(m, time.Now())
		if r.Seq > 7 {
			rows = append(rows, AuditRow(r))
		}
	}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"license_audit"}, AuditColumns(), pgx.CopyFromRows(rows)); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE projection_checkpoints SET last_seq = 10, tree_size = 10`); err != nil {
		t.Fatal(err)
	}
	res, err := audit.Verify(ctx, reader, audit.VerifyOptions{})
	if err != nil || !res.OK || res.Rows != 10 {
		t.Fatalf("after the backfill: %+v %v", res, err)
	}
	size, root, err := reader.TreeSize(ctx)
	if err != nil || size != 10 || root != c.Tree.Root() {
		t.Fatalf("tree size %d, root %x, %v", size, root, err)
	}
	p, err := audit.InclusionProof(ctx, reader, 3, 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := audit.VerifyInclusion(msgs[2].Raw, 3, 10, p, root); err != nil {
		t.Fatalf("inclusion of a record from before the tree: %v", err)
	}
	// A second start finds nothing to compute.
	if _, err := loadTree(ctx, conn.Conn(), "org_licenses", 10, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM license_audit_tree`).Scan(&kept); err != nil || kept != 7 {
		t.Fatalf("%d rows kept aside after a second start, %v", kept, err)
	}
	if _, err := pool.Exec(ctx, `DELETE FROM license_audit_tree WHERE seq = 2`); err == nil {
		t.Fatal("a row kept aside was deleted")
	}
}

// Every checkpoint signed is kept: the latest, one by size, none twice,
// and none removed.
func TestCheckpointsAreKept(t *testing.T) {
	_, pool := migratedDB(t)
	ctx := testContext(t)
	store := &Checkpoints{pool: pool}
	if _, err := store.Latest(ctx); !errors.Is(err, audit.ErrNoCheckpoint) {
		t.Fatalf("latest of none: %v", err)
	}
	key, err := audit.ParseCheckpointKey(testCheckpointKey(t))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC().Truncate(time.Microsecond)
	for i, size := range []uint64{3, 5, 5, 9} {
		root := audit.Hash{byte(size)}
		msg, err := key.Sign(size, root)
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Add(ctx, audit.Checkpoint{Size: size, Root: root, Note: msg, SignedAt: at.Add(time.Duration(i) * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	latest, err := store.Latest(ctx)
	if err != nil || latest.Size != 9 {
		t.Fatalf("latest: %+v %v", latest, err)
	}
	if size, root, err := audit.OpenCheckpoint(latest.Note, key.VerifierKey()); err != nil || size != 9 || root != (audit.Hash{9}) {
		t.Fatalf("the kept note: %d %x %v", size, root, err)
	}
	if cp, err := store.BySize(ctx, 5); err != nil || cp.Size != 5 {
		t.Fatalf("by size: %+v %v", cp, err)
	}
	if _, err := store.BySize(ctx, 4); !errors.Is(err, audit.ErrNoCheckpoint) {
		t.Fatalf("a size never signed: %v", err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_checkpoints`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("%d checkpoints kept, %v", n, err)
	}
	if _, err := pool.Exec(ctx, `DELETE FROM audit_checkpoints`); err == nil {
		t.Fatal("checkpoints were deleted")
	}
}

func testCheckpointKey(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "checkpoint.key")
	if _, _, err := audit.LoadCheckpointKey(path, "license-ledger/test"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// The PostgreSQL trail's tree over thousands of records: every proof it
// gives, for random records and sizes, is the one the same records make in
// memory, and verifies against the root.
func TestTreeProofsAtScale(t *testing.T) {
	_, pool := migratedDB(t)
	ctx := testContext(t)
	const n = 3000
	var msgs []*events.Message
	for i := 1; i <= n; i++ {
		msgs = append(msgs, events.Decode(events.AuditSubject("acme"), uint64(i), fmt.Appendf(nil, `{"n":%d,"pad":%q}`, i, strings.Repeat("x", i%97))))
	}
	insertAudit(t, pool, msgs)
	if _, err := pool.Exec(ctx, `INSERT INTO projection_checkpoints (name, last_seq, tree_size, updated_at) VALUES ('org_licenses', $1, $1, now())`, n); err != nil {
		t.Fatal(err)
	}
	reader := NewAuditReader(pool)
	mem := audit.NewMemory(audit.Messages(msgs))
	for _, m := range msgs {
		if err := mem.Append(m, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	size, root, err := reader.TreeSize(ctx)
	if _, memRoot, _ := mem.TreeSize(ctx); err != nil || size != n || root != memRoot {
		t.Fatalf("tree size %d root %x, %v; memory's root %x", size, root, err, memRoot)
	}
	for range 300 {
		at := 1 + rand.Uint64N(n)
		seq := 1 + rand.Uint64N(at)
		p, err := audit.InclusionProof(ctx, reader, seq, at)
		if err != nil {
			t.Fatal(err)
		}
		q, _ := audit.InclusionProof(ctx, mem, seq, at)
		r, _ := audit.RootAt(ctx, reader, at)
		if fmt.Sprint(p) != fmt.Sprint(q) || audit.VerifyInclusion(msgs[seq-1].Raw, seq, at, p, r) != nil {
			t.Fatalf("inclusion of %d in %d", seq, at)
		}
		from := rand.Uint64N(at + 1)
		c, err := audit.ConsistencyProof(ctx, reader, from, at)
		if err != nil {
			t.Fatal(err)
		}
		fr, _ := audit.RootAt(ctx, reader, from)
		if err := audit.VerifyConsistency(from, at, c, fr, r); err != nil {
			t.Fatalf("consistency %d → %d: %v", from, at, err)
		}
	}
}

// A trail rolled back and grown again differently, hashes and tree and
// all: it verifies by itself, but not against a checkpoint signed before
// (the consistency proof fails) nor against the stream.
func TestTreeCatchesARewrittenTrail(t *testing.T) {
	_, pool := migratedDB(t)
	ctx := testContext(t)
	msgs := auditFixture(t)
	insertAudit(t, pool, msgs)
	reader := NewAuditReader(pool)
	root8, err := audit.RootAt(ctx, reader, 8)
	if err != nil {
		t.Fatal(err)
	}
	// Records 6 on rewritten consistently, behind the triggers.
	forged := append([]*events.Message(nil), msgs...)
	for i := 5; i < len(forged); i++ {
		forged[i] = events.Decode(forged[i].Subject, forged[i].Seq, append(bytes.Clone(forged[i].Raw), ' '))
	}
	behindTheTriggers(t, pool, `DELETE FROM license_audit WHERE seq >= 6`)
	c := audit.NewChain()
	var rows [][]any
	for _, m := range forged {
		r := c.Append(m, time.Now())
		if r.Seq >= 6 {
			rows = append(rows, AuditRow(r))
		}
	}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"license_audit"}, AuditColumns(), pgx.CopyFromRows(rows)); err != nil {
		t.Fatal(err)
	}
	if res, err := audit.Verify(ctx, reader, audit.VerifyOptions{}); err != nil || !res.OK {
		t.Fatalf("the rewritten trail by itself: %+v %v", res, err)
	}
	root10, _ := audit.RootAt(ctx, reader, 10)
	proof, err := audit.ConsistencyProof(ctx, reader, 8, 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := audit.VerifyConsistency(8, 10, proof, root8, root10); err == nil {
		t.Fatal("the rewritten trail is consistent with the checkpoint of size 8 signed before")
	}
	stream := func(_ context.Context, seq uint64) (string, []byte, error) {
		return msgs[seq-1].Subject, msgs[seq-1].Raw, nil
	}
	if res, err := audit.Verify(ctx, reader, audit.VerifyOptions{Stream: stream}); err != nil || res.OK || res.BadSeq != 6 || res.Column != audit.ColEnvelopeRaw {
		t.Fatalf("against the stream: %+v %v", res, err)
	}
}
