package faulttest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/postgres"
	"github.com/licenseledger/ledger/internal/projection"
	"github.com/licenseledger/ledger/internal/testenv/pgtest"
	"github.com/licenseledger/ledger/internal/testenv/proctest"
	"github.com/licenseledger/ledger/license"
)

// openReader opens the stream as the reader role (projectors,
// gatekeepers and these checks read with it).
func openReader(t testing.TB, url, seedFile string) *natsbus.Bus {
	t.Helper()
	nc, err := natsbus.Connect(natsbus.ConnConfig{URL: url, NKeyFile: seedFile, Name: "faulttest-check"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bus, _, err := natsbus.Open(ctx, nc, natsbus.DefaultStream, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	return bus
}

// streamMsg is what the checks keep of one stream message: enough to
// check an acknowledgement and the audit row, not the bytes, so a soak
// run's million messages fit in memory.
type streamMsg struct {
	subject, typ string
	licenseID    string // of an upload
	hash         [sha256.Size]byte
}

// streamState is the stream read once, 1 to the head, in order, and
// folded in memory with the shared fold, as the embedded default does.
type streamState struct {
	msgs []streamMsg // msgs[i] is seq i+1
	rows map[string]projection.Row
}

func (s *streamState) head() uint64 { return uint64(len(s.msgs)) }

// readStream reads and folds the whole stream.
func readStream(t testing.TB, bus *natsbus.Bus) *streamState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), catchUpTimeout)
	defer cancel()
	_, head, err := bus.Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st := &streamState{msgs: make([]streamMsg, 0, head), rows: map[string]projection.Row{}}
	if head == 0 {
		return st
	}
	trust := projection.Trust{Ring: ring(t)}
	states := projection.States{}
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	var foldErr error
	err = bus.Consume(cctx, 1, time.Second, func(m *events.Message) error {
		if m.Seq != uint64(len(st.msgs)+1) {
			foldErr = fmt.Errorf("stream message %d has seq %d: the stream has a gap", len(st.msgs)+1, m.Seq)
			return foldErr
		}
		sm := streamMsg{subject: m.Subject, typ: m.Type(), hash: sha256.Sum256(m.Raw)}
		var d events.Uploaded
		if sm.typ == events.TypeUploaded && m.Envelope.DecodeData(&d) == nil {
			sm.licenseID = d.LicenseID
		}
		var started events.LedgerStarted
		if sm.typ == events.TypeLedgerStarted && trust.InstallID == "" && m.Envelope.DecodeData(&started) == nil {
			trust.InstallID = started.InstallID
		}
		st.msgs = append(st.msgs, sm)
		states.Apply(trust, m)
		if m.Seq >= head {
			stop()
		}
		return nil
	}, nil)
	if foldErr != nil {
		t.Fatal(foldErr)
	}
	if ctx.Err() != nil {
		t.Fatalf("read the stream: %d of %d messages: %v", len(st.msgs), head, ctx.Err())
	}
	if err != nil && cctx.Err() == nil {
		t.Fatal(err)
	}
	st.rows = states.Rows()
	return st
}

// checkAcked checks that every acknowledged upload is on the stream at
// the seq it was acknowledged with, and that no license was appended twice.
func checkAcked(t testing.TB, st *streamState, acks []ack) {
	t.Helper()
	uploads := map[string][]uint64{} // license id → seqs of its upload events
	for i, m := range st.msgs {
		if m.licenseID != "" {
			uploads[m.licenseID] = append(uploads[m.licenseID], uint64(i+1))
		}
	}
	for id, seqs := range uploads {
		if len(seqs) > 1 {
			t.Errorf("license %s appended %d times, at %v", id, len(seqs), seqs)
		}
	}
	for _, a := range acks {
		if a.seq < 1 || a.seq > st.head() {
			t.Errorf("upload of %s to %s acknowledged at seq %d, beyond the stream head %d", a.licenseID, a.org, a.seq, st.head())
			continue
		}
		m := st.msgs[a.seq-1]
		if m.subject != events.OrgSubject(a.org) || m.typ != events.TypeUploaded || m.licenseID != a.licenseID {
			t.Errorf("upload of %s to %s acknowledged at seq %d, which holds %s %s of license %q", a.licenseID, a.org, a.seq, m.subject, m.typ, m.licenseID)
		}
	}
}

// waitProjected waits until the projector's checkpoint reaches head.
func waitProjected(t testing.TB, pool *pgxpool.Pool, head uint64, procs ...*proctest.Process) {
	t.Helper()
	proctest.WaitFor(t, fmt.Sprintf("the projector's checkpoint at %d", head), catchUpTimeout, procs, func() error {
		var seq int64
		err := pool.QueryRow(context.Background(), `SELECT last_seq FROM projection_checkpoints WHERE name = 'org_licenses'`).Scan(&seq)
		if err == nil && uint64(seq) < head {
			err = fmt.Errorf("checkpoint %d", seq)
		}
		return err
	})
}

// checkAudit checks license_audit: exactly one row per stream message,
// gapless, the chain verified (internal/audit Verify), and every row's
// subject and bytes those of the stream message at its seq.
func checkAudit(t testing.TB, pool *pgxpool.Pool, st *streamState) {
	t.Helper()
	ctx := context.Background()
	var rows, distinct, minSeq, maxSeq int64
	err := pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT seq), coalesce(min(seq), 0), coalesce(max(seq), 0) FROM license_audit`).
		Scan(&rows, &distinct, &minSeq, &maxSeq)
	if err != nil {
		t.Fatal(err)
	}
	n := int64(st.head())
	if rows != n || distinct != n || (n > 0 && (minSeq != 1 || maxSeq != n)) {
		t.Fatalf("license_audit: %d rows (%d distinct seqs) from %d to %d; the stream has %d messages", rows, distinct, minSeq, maxSeq, n)
	}
	res, err := audit.Verify(ctx, postgres.NewAuditReader(pool), audit.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK || res.Rows != uint64(n) {
		t.Fatalf("audit verify: %s (%d rows)", res, res.Rows)
	}
	r, err := pool.Query(ctx, `SELECT seq, subject, sha256(envelope_raw) FROM license_audit ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for r.Next() {
		var seq int64
		var subject string
		var hash []byte
		if err := r.Scan(&seq, &subject, &hash); err != nil {
			t.Fatal(err)
		}
		m := st.msgs[seq-1]
		if subject != m.subject || !bytes.Equal(hash, m.hash[:]) {
			t.Fatalf("license_audit seq %d (%s) is not the stream's message (%s)", seq, subject, m.subject)
		}
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
}

// checkRows checks that org_licenses equals the in-memory fold of the
// stream, row by row, column by column.
func checkRows(t testing.TB, pool *pgxpool.Pool, st *streamState) {
	t.Helper()
	want := st.rows
	got := map[string]projection.Row{}
	if err := postgres.ReadRows(context.Background(), pool, func(r projection.Row) error { got[r.OrgSlug] = r; return nil }); err != nil {
		t.Fatal(err)
	}
	var orgs []string
	for org := range want {
		orgs = append(orgs, org)
	}
	for org := range got {
		if _, ok := want[org]; !ok {
			orgs = append(orgs, org)
		}
	}
	sort.Strings(orgs)
	var diffs []string
	for _, org := range orgs {
		a, okA := want[org]
		b, okB := got[org]
		ja, _ := json.Marshal(normal(a))
		jb, _ := json.Marshal(normal(b))
		if okA != okB || !bytes.Equal(ja, jb) {
			diffs = append(diffs, fmt.Sprintf("%s:\n  fold %v %s\n  pg   %v %s", org, okA, ja, okB, jb))
		}
	}
	if len(diffs) > 0 {
		t.Fatalf("org_licenses differs from the fold of the stream in %d rows:\n%s", len(diffs), strings.Join(diffs[:min(5, len(diffs))], "\n"))
	}
}

func ring(t testing.TB) *license.Ring {
	t.Helper()
	return keys(t).Ring()
}

// normal makes times comparable (UTC, microseconds).
func normal(r projection.Row) projection.Row {
	for _, p := range []**time.Time{&r.IssuedAt, &r.NotBefore, &r.ExpiresAt, &r.PendingNotBefore} {
		if *p != nil {
			u := (*p).UTC().Truncate(time.Microsecond)
			*p = &u
		}
	}
	r.UpdatedAt = r.UpdatedAt.UTC().Truncate(time.Microsecond)
	return r
}

// checkEverything runs every check after the faults: the stream holds each
// acknowledged upload once; the projector reaches the head; the audit
// and the rows are exact. pool may be nil for a ledger without PostgreSQL.
//
// The ledger may still append on its own while the checks run (a
// license.rejected_suppressed once an org's rate bucket refills): a check
// of the read model that fails while the stream grew is run again against
// the longer stream, up to twice; one that fails on a stream that did not
// move fails the test.
func checkEverything(t *testing.T, bus *natsbus.Bus, pool *pgxpool.Pool, acks []ack, procs ...*proctest.Process) {
	t.Helper()
	var prev *streamState
	for attempt := 1; ; attempt++ {
		st := readStream(t, bus)
		if prev != nil {
			t.Logf("the stream grew from %d to %d messages during the checks (%s); checking again",
				prev.head(), st.head(), typesOf(st.msgs[prev.head():]))
		}
		checkAcked(t, st, acks)
		if pool == nil {
			return
		}
		waitProjected(t, pool, st.head(), procs...)
		f := recordFailure(t, func(tb testing.TB) {
			checkAudit(tb, pool, st)
			checkRows(tb, pool, st)
		})
		if !f.failed {
			return
		}
		_, head, err := bus.Stream(context.Background())
		if err != nil || head == st.head() || attempt == 3 {
			t.Fatalf("%s (stream head %d when checked, %d after: %v)", f.msg, st.head(), head, err)
		}
		prev = st
	}
}

// typesOf counts messages by subject and type, for a log line.
func typesOf(msgs []streamMsg) string {
	n := map[string]int{}
	for _, m := range msgs {
		n[m.subject+" "+m.typ]++
	}
	keys := slices.Sorted(maps.Keys(n))
	for i, k := range keys {
		keys[i] = fmt.Sprintf("%d× %s", n[k], k)
	}
	return strings.Join(keys, ", ")
}

// report logs what a scenario did, for the CI log.
func report(t *testing.T, began time.Time, acks []ack, statuses map[string]int, faults string) {
	t.Helper()
	keys := make([]string, 0, len(statuses))
	for k := range statuses {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%d", k, statuses[k])
	}
	cli := 0
	for _, a := range acks {
		if a.via == "cli" {
			cli++
		}
	}
	t.Logf("%s; %d acknowledged uploads (%d by the CLI); answers:%s; %s", faults, len(acks), cli, b.String(),
		time.Since(began).Round(time.Millisecond))
}

// ledgerAppDSN migrates superDSN's database and returns a DSN of a login
// user granted ledger_app, as `ledger serve` runs in production.
func ledgerAppDSN(t *testing.T, superDSN string) string {
	t.Helper()
	if err := postgres.Migrate(context.Background(), superDSN, postgres.MigrateUp, postgres.Roles{}, io.Discard); err != nil {
		t.Fatal(err)
	}
	return pgtest.LoginRole(t, superDSN, "ledger_app")
}

// failRecorder is a testing.TB whose failures are recorded, not
// reported: the checks are run against a broken state to show they fail.
type failRecorder struct {
	testing.TB
	failed bool
	msg    string
}

func (f *failRecorder) Helper() {}

func (f *failRecorder) Errorf(format string, args ...any) {
	f.failed, f.msg = true, fmt.Sprintf(format, args...)
}

func (f *failRecorder) Fatalf(format string, args ...any) {
	f.Errorf(format, args...)
	runtime.Goexit()
}

func (f *failRecorder) Fatal(args ...any) { f.Fatalf("%s", fmt.Sprint(args...)) }

// recordFailure runs check with a testing.TB that records its first
// failure instead of reporting it.
func recordFailure(t testing.TB, check func(testing.TB)) *failRecorder {
	f := &failRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		check(f)
	}()
	<-done
	return f
}

// mustFail runs check against a state known to be broken (what) and fails
// the test if the check does not notice.
func mustFail(t *testing.T, what string, check func(testing.TB)) {
	t.Helper()
	f := recordFailure(t, check)
	if !f.failed {
		t.Errorf("the checks did not notice %s", what)
		return
	}
	t.Logf("noticed %s: %s", what, proctest.Tail(f.msg, 200))
}

// checksCatchDefects shows that the checks fail when an acknowledged
// event is lost or misplaced, the audit misses or duplicates an event, or
// a row departs from the fold. It changes a row of org_licenses.
func checksCatchDefects(t *testing.T, bus *natsbus.Bus, pool *pgxpool.Pool, acks []ack) {
	t.Helper()
	st := readStream(t, bus)
	last := acks[len(acks)-1]
	mustFail(t, "an acknowledged upload missing from the stream", func(tb testing.TB) {
		checkAcked(tb, st, append(acks, ack{org: last.org, licenseID: "0193a5b0-0000-7000-8000-000000000000", seq: st.head() + 1}))
	})
	mustFail(t, "an acknowledged upload at another seq", func(tb testing.TB) {
		checkAcked(tb, st, append(acks, ack{org: last.org, licenseID: last.licenseID, seq: last.seq - 1}))
	})
	longer := &streamState{msgs: append(st.msgs[:len(st.msgs):len(st.msgs)], st.msgs[len(st.msgs)-1]), rows: st.rows}
	mustFail(t, "an event the audit does not have", func(tb testing.TB) { checkAudit(tb, pool, longer) })
	swapped := &streamState{msgs: append([]streamMsg(nil), st.msgs...), rows: st.rows}
	n := len(swapped.msgs)
	swapped.msgs[n-1], swapped.msgs[n-2] = swapped.msgs[n-2], swapped.msgs[n-1]
	mustFail(t, "audit rows out of stream order", func(tb testing.TB) { checkAudit(tb, pool, swapped) })
	execSQL(t, pool, `UPDATE org_licenses SET users_limit = coalesce(users_limit, 0) + 1 WHERE org_slug = $1`, last.org)
	mustFail(t, "a row that is not the fold of the stream", func(tb testing.TB) { checkRows(tb, pool, st) })
}
