package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/internal/events"
	"github.com/licenseledger/ledger/internal/natsbus"
	"github.com/licenseledger/ledger/internal/natsembed"
	"github.com/licenseledger/ledger/internal/postgres"
	"github.com/licenseledger/ledger/internal/projection"
	"github.com/licenseledger/ledger/internal/testenv/pgtest"
	"github.com/licenseledger/ledger/license"
)

// storedMsg is a stream message as the server keeps it.
type storedMsg struct {
	Seq     uint64
	Subject string
	Data    []byte
	ID      string // Nats-Msg-Id
}

// offline runs fn with a JetStream context on the embedded store of a
// stopped ledger's data directory, with no permission limits (an
// administrator's connection).
func offline(t *testing.T, dataDir string, fn func(ctx context.Context, js jetstream.JetStream)) {
	t.Helper()
	off, err := natsembed.StartOffline(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := off.Close(); err != nil {
			t.Error(err)
		}
	}()
	conn, err := off.Connect("test-admin")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	js, err := jetstream.New(conn.NATS())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	fn(ctx, js)
}

// streamContents reads every message of the stream in dataDir; nil when
// there is no stream.
func streamContents(t *testing.T, dataDir string) (msgs []storedMsg) {
	t.Helper()
	offline(t, dataDir, func(ctx context.Context, js jetstream.JetStream) {
		s, err := js.Stream(ctx, "LICENSES")
		if err == jetstream.ErrStreamNotFound {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		msgs = []storedMsg{}
		for seq := s.CachedInfo().State.FirstSeq; seq <= s.CachedInfo().State.LastSeq; seq++ {
			m, err := s.GetMsg(ctx, seq)
			if err != nil {
				t.Fatalf("seq %d: %v", seq, err)
			}
			msgs = append(msgs, storedMsg{Seq: m.Sequence, Subject: m.Subject, Data: m.Data, ID: m.Header.Get(jetstream.MsgIDHeader)})
		}
	})
	return msgs
}

// deleteStream deletes the stream of a stopped ledger's data directory.
func deleteStream(t *testing.T, dataDir string) {
	t.Helper()
	offline(t, dataDir, func(ctx context.Context, js jetstream.JetStream) {
		if err := js.DeleteStream(ctx, "LICENSES"); err != nil {
			t.Fatal(err)
		}
	})
}

// reseedFixture is a single-node install with PostgreSQL whose projector
// caught up to checkpoint, after which a ledger without PostgreSQL added
// events up to head that license_audit never received.
type reseedFixture struct {
	dir, owner, app string
	checkpoint      uint64
	head            uint64
	old             []storedMsg    // the stream before it was lost
	status          map[string]any // acme's status payload at the checkpoint
	rows            map[string]projection.Row
}

func newReseedFixture(t *testing.T) *reseedFixture {
	t.Helper()
	ctx := context.Background()
	f := &reseedFixture{dir: t.TempDir(), owner: pgtest.NewDatabase(t)}
	if err := postgres.Migrate(ctx, f.owner, "up", postgres.Roles{}, io.Discard); err != nil {
		t.Fatal(err)
	}
	f.app = pgtest.LoginRole(t, f.owner, "ledger_app")
	withPG := func(c *serveCmd) { c.DatabaseURL = f.app }
	upload := func(l *ledgerProc, org, id string) float64 {
		t.Helper()
		key := signed(t, "k1", func(p map[string]any) {
			p["org_slug"], p["license_id"], p["expires"] = org, id, future(90*24*time.Hour)
		})
		code, m := l.call("POST", "/api/license?org="+org, key)
		if code != 200 {
			t.Fatalf("upload %s: %d %v", org, code, m)
		}
		return m["seq"].(float64)
	}
	l := startLedgerWith(t, f.dir, withPG)
	upload(l, "acme", "0193a5b0-7e1a-7c3d-8f00-00000000000a")
	upload(l, "globex", "0193a5b0-7e1a-7c3d-8f00-00000000000b")
	if code, _ := l.call("POST", "/api/license?org=acme", "hfl1.garbage"); code != 400 {
		t.Fatalf("a malformed upload: %d", code)
	}
	if code, m := l.call("POST", "/api/license/invalidate?org=acme", `{"license_id":"0193a5b0-7e1a-7c3d-8f00-0000000000ff","note":"leaked"}`); code != 200 {
		t.Fatalf("invalidate: %d %v", code, m)
	}
	if code, m := l.call("DELETE", "/api/license?org=globex", ""); code != 200 {
		t.Fatalf("remove: %d %v", code, m)
	}
	l.stop()
	// A message that is no envelope: audited as invalid, raw bytes kept.
	offline(t, f.dir, func(ctx context.Context, js jetstream.JetStream) {
		if _, err := js.Publish(ctx, "licenses.audit.zeta", []byte("\x00not an envelope")); err != nil {
			t.Fatal(err)
		}
	})
	l = startLedgerWith(t, f.dir, withPG)
	last := upload(l, "initech", "0193a5b0-7e1a-7c3d-8f00-00000000000c")
	pool := pgtest.NewPool(t, f.owner)
	waitFor(t, "the projector reaches the last upload", func() bool {
		var seq int64
		pool.QueryRow(ctx, `SELECT last_seq FROM projection_checkpoints`).Scan(&seq)
		return float64(seq) >= last
	})
	_, f.status = l.call("GET", "/api/license?org=acme", "")
	l.stop()
	if err := pool.QueryRow(ctx, `SELECT max(seq) FROM license_audit`).Scan(&f.checkpoint); err != nil {
		t.Fatal(err)
	}
	// PostgreSQL is away: this ledger's events reach the stream only.
	l = startLedger(t, f.dir, nil)
	f.head = uint64(upload(l, "umbrella", "0193a5b0-7e1a-7c3d-8f00-00000000000d"))
	l.stop()
	f.old = streamContents(t, f.dir)
	if uint64(len(f.old)) != f.head || f.head <= f.checkpoint+1 || f.checkpoint < 10 {
		t.Fatalf("stream of %d messages, head %d, checkpoint %d", len(f.old), f.head, f.checkpoint)
	}
	f.rows = fold(t, f.old[:f.checkpoint])
	return f
}

// fold folds the org subjects' messages as every reader (gatekeeper,
// ledger, projector) does, and returns each org's row.
func fold(t *testing.T, msgs []storedMsg) map[string]projection.Row {
	t.Helper()
	ring, _ := vendorKey("k1")
	keys, err := license.NewKeys(license.RingConfig{Env: ring})
	if err != nil {
		t.Fatal(err)
	}
	trust := projection.Trust{Ring: keys.Ring()}
	states := projection.States{}
	for _, sm := range msgs {
		states.Apply(trust, events.Decode(sm.Subject, sm.Seq, sm.Data))
	}
	return states.Rows()
}

// sameMessages compares two runs of messages seq by seq.
func sameMessages(t *testing.T, got, want []storedMsg) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d messages, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Seq != w.Seq || g.Subject != w.Subject || !bytes.Equal(g.Data, w.Data) {
			t.Fatalf("message %d: got seq %d %s %q, want seq %d %s %q", i, g.Seq, g.Subject, g.Data, w.Seq, w.Subject, w.Data)
		}
		if ev := events.Decode(w.Subject, w.Seq, w.Data); ev.Envelope != nil && g.ID != ev.Envelope.ID {
			t.Fatalf("seq %d: Nats-Msg-Id %q, want the event id %s", g.Seq, g.ID, ev.Envelope.ID)
		}
	}
}

func (f *reseedFixture) reseed(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return cliRun(t, "", append([]string{"stream", "reseed", "--data-dir", f.dir, "--database-url", f.owner,
		"--nats-listen", strings.TrimPrefix(closedPort(t), "http://")}, args...)...)
}

// A lost stream comes back from license_audit with the same sequence
// numbers and bytes; ledger serve and the projector carry on on it; a
// second reseed on the live stream is refused and changes nothing.
func TestStreamReseed(t *testing.T) {
	f := newReseedFixture(t)
	deleteStream(t, f.dir)

	code, out, errOut := f.reseed(t, "--old-head", fmt.Sprint(f.head))
	if code != 0 {
		t.Fatalf("reseed: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{
		fmt.Sprintf("audit: ok %d ", f.checkpoint),
		"with 1 replica(s), on the embedded store",
		fmt.Sprintf("published: %d messages, seq 1..%d", f.checkpoint, f.checkpoint),
		fmt.Sprintf("compared: ok %d messages", f.checkpoint),
		fmt.Sprintf("checkpoint: %d (the last seq PostgreSQL holds); 1 projection checkpoint(s) now follow the new stream", f.checkpoint),
		fmt.Sprintf("lost: seq %d..%d (%d events", f.checkpoint+1, f.head, f.head-f.checkpoint),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	now := streamContents(t, f.dir)
	sameMessages(t, now, f.old[:f.checkpoint])
	if got := fold(t, now); !reflect.DeepEqual(got, f.rows) {
		t.Fatalf("folded state differs:\n%+v\nwant\n%+v", got, f.rows)
	}

	// ledger serve starts on it: state from PostgreSQL at the adopted
	// checkpoint, the projector running, the audit verifying against the
	// stream.
	l := startLedgerWith(t, f.dir, func(c *serveCmd) { c.DatabaseURL = f.app })
	if _, m := l.call("GET", "/api/license?org=acme", ""); !reflect.DeepEqual(m, f.status) {
		t.Fatalf("acme after the reseed:\n%v\nwant\n%v", m, f.status)
	}
	if _, m := l.call("GET", "/api/license?org=umbrella", ""); m["status"] != "missing" {
		t.Fatalf("umbrella's upload was after the checkpoint, lost: %v", m)
	}
	// This ledger's ledger.started, at checkpoint + 1, reaches the audit.
	var verify map[string]any
	waitFor(t, "the projector follows the new stream", func() bool {
		_, verify = l.call("GET", "/api/audit/verify", "")
		return verify["rows_checked"] == float64(f.checkpoint+1)
	})
	if _, rd := l.call("GET", "/readyz", ""); verify["ok"] != true || rd["projector"] != nil {
		t.Fatalf("after the reseed: verify %v, readyz %v", verify, rd)
	}
	l.stop()

	// A live stream ahead of the audit (a ledger without PostgreSQL wrote
	// to it): refused, untouched.
	startLedger(t, f.dir, nil).stop()
	before := streamContents(t, f.dir)
	code, out, errOut = f.reseed(t)
	if code != 1 || !strings.Contains(errOut, "not touching it; nothing changed") {
		t.Fatalf("reseed onto the live stream: exit %d\n%s\n%s", code, out, errOut)
	}
	sameMessages(t, streamContents(t, f.dir), before)
}

// A reseed interrupted half-way continues after the messages already put
// back; a stream whose messages are not the audit's is refused.
func TestStreamReseedContinues(t *testing.T) {
	f := newReseedFixture(t)
	deleteStream(t, f.dir)
	put := func(msgs []storedMsg) {
		offline(t, f.dir, func(ctx context.Context, js jetstream.JetStream) {
			if _, err := js.CreateStream(ctx, natsbus.StreamConfig("LICENSES", 1)); err != nil {
				t.Fatal(err)
			}
			for _, m := range msgs {
				if _, err := js.Publish(ctx, m.Subject, m.Data); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	// Not the audit's first message: refused, untouched.
	forged := append([]storedMsg{}, f.old[:2]...)
	forged[1].Data = bytes.Replace(forged[1].Data, []byte("acme"), []byte("acmf"), 1)
	put(forged)
	code, out, errOut := f.reseed(t)
	if code != 1 || !strings.Contains(errOut, "differ from license_audit at seq 2 (envelope_raw)") {
		t.Fatalf("reseed onto a foreign stream: exit %d\n%s\n%s", code, out, errOut)
	}
	if got := streamContents(t, f.dir); len(got) != 2 || !bytes.Equal(got[1].Data, forged[1].Data) {
		t.Fatalf("the refused stream changed: %d messages", len(got))
	}
	deleteStream(t, f.dir)

	// The first five, as a reseed stopped there would have left them.
	put(f.old[:5])
	code, out, errOut = f.reseed(t)
	if code != 0 || !strings.Contains(out, "holds the audit's first 5 messages: continuing at seq 6") ||
		!strings.Contains(out, fmt.Sprintf("published: %d messages, seq 6..%d", f.checkpoint-5, f.checkpoint)) ||
		!strings.Contains(out, fmt.Sprintf("lost: any events the old stream held after seq %d", f.checkpoint)) {
		t.Fatalf("continued reseed: exit %d\n%s\n%s", code, out, errOut)
	}
	got := streamContents(t, f.dir)
	for i := range got[:5] {
		got[i].ID = "" // published above without ids
	}
	want := append([]storedMsg{}, f.old[:f.checkpoint]...)
	for i := range want[:5] {
		want[i].ID = ""
	}
	if len(got) != len(want) {
		t.Fatalf("%d messages after the continued reseed, want %d", len(got), len(want))
	}
	sameMessages(t, got[5:], want[5:])
	for i := range got[:5] {
		if got[i].Seq != want[i].Seq || !bytes.Equal(got[i].Data, want[i].Data) {
			t.Fatalf("seq %d changed", got[i].Seq)
		}
	}

	// Done already: a rerun publishes nothing and still compares.
	code, out, _ = f.reseed(t)
	if code != 0 || !strings.Contains(out, "published: nothing") || !strings.Contains(out, "compared: ok") {
		t.Fatalf("rerun: exit %d\n%s", code, out)
	}
}

func TestStreamReseedUsage(t *testing.T) {
	if code, _, errOut := cliRun(t, "", "stream", "reseed", "--data-dir", t.TempDir()); code != 2 || !strings.Contains(errOut, "LEDGER_MIGRATE_DATABASE_URL") {
		t.Fatalf("no database: %d %q", code, errOut)
	}
	code, out, _ := cliRun(t, "", "stream", "reseed", "--help")
	for _, want := range []string{"--old-head", "stream_head", "LEDGER_MIGRATE_DATABASE_URL", "NATS_URL", "Nats-Expected-Last-Sequence"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("stream reseed --help lacks %q", want)
		}
	}
	// An empty trail: nothing to reseed from, nothing created.
	dsn := pgtest.NewDatabase(t)
	if err := postgres.Migrate(context.Background(), dsn, "up", postgres.Roles{}, io.Discard); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	code, _, errOut := cliRun(t, "", "stream", "reseed", "--data-dir", dir, "--database-url", dsn, "--nats-listen", "off")
	if code != 1 || !strings.Contains(errOut, "license_audit is empty") {
		t.Fatalf("empty audit: %d %q", code, errOut)
	}
	if msgs := streamContents(t, dir); msgs != nil {
		t.Fatal("a stream was created")
	}
}
