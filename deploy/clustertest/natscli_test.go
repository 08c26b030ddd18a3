package clustertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/testenv/licensetest"
	"github.com/licenseledger/ledger/internal/testenv/pgtest"
	"github.com/licenseledger/ledger/internal/testenv/proctest"
)

// The cluster commands of docs/operations.md (Backup, Restore), run with
// the real nats CLI on the shipped three-node cluster with the optional
// break-glass user enabled: `nats stream backup LICENSES DIR --check` with
// the ledger's credentials while the ledger serves, then, with the ledger
// stopped and the stream deleted, `nats stream restore DIR` with the
// break-glass credentials, then `ledger stream reseed` as the stream
// administrator. Every message comes back at
// its sequence with the same subject, headers, bytes and time, the stream
// keeps its configuration and 3 replicas, and the restarted ledger serves
// the same statuses from PostgreSQL's read model and appends after the
// restored head, projected as before. `ledger restore DIR` accepts the
// CLI's directory too.
func TestRunbookNATSCLIBackupRestore(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("drives the servers with Unix signals")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := buildBinaries(t)
	l := newLayout(t, withBreakGlass)

	natsProcs, super, logins := startClusterAndDatabase(ctx, t, bin, l)

	keys := t.TempDir()
	ledgerSeed := seedFile(t, keys, l.ledger, "ledger.nk")
	adminSeed := seedFile(t, keys, l.admin, "admin.nk")
	breakGlassSeed := seedFile(t, keys, l.breakGlass, "breakglass.nk")
	adminToken := randomHex(t, 20)
	ring := licensetest.RingEntry("k1")
	server := l.nodes[0].clientURL() // the runbook's --server: one node
	env := map[string]string{
		"NATS_URL": l.clientURLs(), "NATS_NKEY": ledgerSeed, "LICENSE_STREAM_REPLICAS": "3",
		"DATABASE_URL": logins.svcDSN, "LICENSE_PUBLIC_KEYS": ring, "LEDGER_ADMIN_TOKEN": adminToken,
		"LEDGER_LISTEN": fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1)[0]), "DATA_DIR": t.TempDir(), "LOG_LEVEL": "info",
	}
	api := "http://" + env["LEDGER_LISTEN"]
	startLedger := func(name string) *service {
		t.Helper()
		s := &service{name: name, bin: bin.ledger, args: []string{"serve"}, env: env, readyURL: api + "/readyz",
			diag: func() string { return consumerState(l) }}
		s.start(t)
		s.waitReady(t, natsProcs)
		return s
	}
	applyStream(t, bin, l, adminSeed, natsProcs)
	ledger := startLedger("ledger")

	// Events through the ledger's API: three orgs, one of them twice.
	orgs := []string{"acme", "globex", "initech"}
	issued := time.Now().Add(-time.Hour).UTC()
	upload := func(org, licenseID string) float64 {
		t.Helper()
		key := licensetest.Sign(t, "k1", map[string]any{
			"license_id": licenseID, "customer": org + " Corp", "org_slug": org,
			"tier": "enterprise", "features": []string{"sso"}, "issued_at": issued.Format(time.RFC3339),
			"expires": issued.Add(365 * 24 * time.Hour).Format(time.RFC3339), // no license.expiring notice moves the seqs on
		}).Key
		code, st := apiCall(t, "POST", api+"/api/license?org="+org, adminToken, key)
		if code != 200 || st["status"] != "valid" {
			t.Fatalf("upload for %s: %d %v", org, code, st)
		}
		return st["seq"].(float64)
	}
	for i, org := range orgs {
		upload(org, fmt.Sprintf("0193a5b0-7e1a-7c3d-8f00-0000000000%02d", i))
	}
	upload("acme", "0193a5b0-7e1a-7c3d-8f00-000000000010")
	statuses := func() map[string]map[string]any {
		t.Helper()
		out := map[string]map[string]any{}
		for _, org := range orgs {
			code, st := apiCall(t, "GET", api+"/api/license?org="+org, adminToken, "")
			if code != 200 {
				t.Fatalf("status of %s: %d %v", org, code, st)
			}
			out[org] = st
		}
		return out
	}
	before := statuses()

	adminJS := jetstreamFor(t, l, l.admin)
	stream, err := adminJS.Stream(ctx, natsauth.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	infoBefore := stream.CachedInfo()
	msgsBefore := streamMessages(t, ctx, adminJS)
	if len(msgsBefore) < 4 {
		t.Fatalf("%d messages on the stream after four uploads", len(msgsBefore))
	}
	head := infoBefore.State.LastSeq
	// The projector is at the head before the ledgers stop (runbook, Restore
	// step 4 compares the two).
	svcPool := pgtest.NewPool(t, logins.svcDSN)
	waitFor(t, "the projection checkpoint at the stream head", eventTimeout, append([]*process{ledger.p}, natsProcs...), func() error {
		if ck := checkpoint(t, ctx, svcPool); ck != head {
			return fmt.Errorf("checkpoint %d, stream head %d", ck, head)
		}
		return nil
	})

	// Backup, as docs/operations.md shows it, with the ledger's own
	// credentials and inbox prefix, while the ledger serves.
	dir := filepath.Join(t.TempDir(), "licenses-backup")
	out, err := proctest.RunNATSCLI(t, bin.natsCLI, "--server", server, "--nkey", ledgerSeed, "--inbox-prefix", "_INBOX.ledger",
		"stream", "backup", natsauth.DefaultStream, dir, "--check")
	if err != nil {
		t.Fatalf("nats stream backup: %v\n%s", err, out)
	}
	if !strings.Contains(out, `Received`) || !strings.Contains(out, `for stream "LICENSES"`) {
		t.Fatalf("nats stream backup printed no summary:\n%s", out)
	}

	// Restore: stop the ledger, remove the stream with the break-glass
	// user (nobody else may).
	ledger.p.Stop()
	removeStream := func() {
		t.Helper()
		out, err := proctest.RunNATSCLI(t, bin.natsCLI, "--server", server, "--nkey", breakGlassSeed,
			"stream", "rm", natsauth.DefaultStream, "--force")
		if err != nil {
			t.Fatalf("nats stream rm: %v\n%s", err, out)
		}
		waitFor(t, "the stream to be gone", eventTimeout, natsProcs, func() error {
			if _, err := adminJS.Stream(ctx, natsauth.DefaultStream); !errors.Is(err, jetstream.ErrStreamNotFound) {
				return fmt.Errorf("after nats stream rm: %v", err)
			}
			return nil
		})
	}
	removeStream()

	// The ledger's own restore reads the CLI's directory: no manifest, so
	// no digest check, the same messages.
	t.Run("ledger restore reads a nats stream backup", func(t *testing.T) {
		cmd := proctest.Start(t, "ledger restore", bin.ledger, []string{"restore", dir}, map[string]string{
			"NATS_URL": l.clientURLs(), "NATS_NKEY": breakGlassSeed, "DATA_DIR": t.TempDir(),
		})
		<-cmd.Exited()
		if code := cmd.ExitCode(); code != 0 {
			t.Fatalf("ledger restore: exit %d\n%s", code, cmd.Output())
		}
		for _, want := range []string{
			fmt.Sprintf("restored: stream LICENSES seq 1..%d (%d messages)", head, len(msgsBefore)),
			"manifest: none (not a ledger backup)",
		} {
			if !strings.Contains(cmd.Output(), want) {
				t.Errorf("ledger restore did not print %q:\n%s", want, cmd.Output())
			}
		}
		sameMessages(t, msgsBefore, streamMessages(t, ctx, adminJS))
	})
	removeStream()

	// The runbook's restore, with the break-glass credentials.
	out, err = proctest.RunNATSCLI(t, bin.natsCLI, "--server", server, "--nkey", breakGlassSeed,
		"stream", "restore", dir)
	if err != nil {
		t.Fatalf("nats stream restore: %v\n%s", err, out)
	}
	if !strings.Contains(out, `Restored stream "LICENSES"`) {
		t.Fatalf("nats stream restore printed no summary:\n%s", out)
	}
	sameMessages(t, msgsBefore, streamMessages(t, ctx, adminJS))
	stream, err = adminJS.Stream(ctx, natsauth.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	infoAfter := stream.CachedInfo()
	// nats-server gives a stream restored into a cluster the time of the
	// restore as its created time (a single server keeps the old one).
	t.Logf("stream created %s before the backup, %s after the restore", infoBefore.Created, infoAfter.Created)
	if !reflect.DeepEqual(infoAfter.Config, infoBefore.Config) {
		t.Errorf("stream configuration after the restore:\n%+v\nbefore:\n%+v", infoAfter.Config, infoBefore.Config)
	}
	if ck := checkpoint(t, ctx, svcPool); ck > infoAfter.State.LastSeq {
		t.Fatalf("checkpoint %d ahead of the restored head %d", ck, infoAfter.State.LastSeq)
	}
	waitFor(t, "3 current replicas of the restored stream", eventTimeout, natsProcs, func() error {
		info, err := stream.Info(ctx)
		if err != nil {
			return err
		}
		if info.Config.Replicas != 3 || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
			return fmt.Errorf("replicas %d, cluster %+v", info.Config.Replicas, info.Cluster)
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current {
				return fmt.Errorf("replica %s not current", r.Name)
			}
		}
		return nil
	})

	// With PostgreSQL, the runbook's next step: ledger stream reseed, as the
	// schema owner with the stream administrator's credentials. Nothing to
	// append here; it moves the projection checkpoint to the restored
	// stream.
	reseed := proctest.Start(t, "ledger stream reseed", bin.ledger, []string{"stream", "reseed"}, map[string]string{
		"LEDGER_MIGRATE_DATABASE_URL": super, "NATS_URL": l.clientURLs(), "NATS_NKEY": adminSeed,
		"LICENSE_STREAM_REPLICAS": "3", "DATA_DIR": t.TempDir(),
	})
	<-reseed.Exited()
	if code := reseed.ExitCode(); code != 0 {
		t.Fatalf("ledger stream reseed: exit %d\n%s", code, reseed.Output())
	}
	for _, want := range []string{"published: nothing", fmt.Sprintf("compared: ok %d messages", head)} {
		if !strings.Contains(reseed.Output(), want) {
			t.Errorf("ledger stream reseed did not print %q:\n%s", want, reseed.Output())
		}
	}

	// The ledger starts again on the restored stream, from PostgreSQL's
	// read model, and serves what it served before.
	ledger = startLedger("ledger (restarted)")
	if !strings.Contains(ledger.p.Output(), "read model loaded from PostgreSQL") {
		t.Errorf("the restarted ledger did not continue from PostgreSQL:\n%s", proctest.Tail(ledger.p.Output(), 4<<10))
	}
	if after := statuses(); !reflect.DeepEqual(after, before) {
		t.Fatalf("statuses after the restore:\n%v\nbefore:\n%v", after, before)
	}
	// New events follow the restored head, and the projector takes them.
	seq := upload("globex", "0193a5b0-7e1a-7c3d-8f00-000000000011")
	if uint64(seq) <= head {
		t.Fatalf("upload after the restore at seq %v, restored head %d", seq, head)
	}
	waitFor(t, "the projection of the new upload", eventTimeout, append([]*process{ledger.p}, natsProcs...), func() error {
		if ck := checkpoint(t, ctx, svcPool); ck < uint64(seq) {
			return fmt.Errorf("checkpoint %d, upload at seq %v", ck, seq)
		}
		return nil
	})
}

// jetstreamFor is a JetStream context on a connection as id.
func jetstreamFor(t *testing.T, l *layout, id natsauth.Identity) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(connect(t, l.clientURLs(), id))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// streamMessages reads every message of the stream, by sequence.
func streamMessages(t *testing.T, ctx context.Context, js jetstream.JetStream) []*jetstream.RawStreamMsg {
	t.Helper()
	s, err := js.Stream(ctx, natsauth.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	st := s.CachedInfo().State
	if st.Msgs > 0 && st.FirstSeq != 1 {
		t.Fatalf("stream starts at seq %d", st.FirstSeq)
	}
	var out []*jetstream.RawStreamMsg
	for seq := st.FirstSeq; st.Msgs > 0 && seq <= st.LastSeq; seq++ {
		// A direct get can find no responder for a moment after the
		// stream is created or restored, until every replica's direct-get
		// subscription has reached this client's server.
		var m *jetstream.RawStreamMsg
		deadline := time.Now().Add(5 * time.Second)
		for {
			m, err = s.GetMsg(ctx, seq)
			if !errors.Is(err, nats.ErrNoResponders) || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
		out = append(out, m)
	}
	return out
}

// sameMessages compares two reads of the stream: sequence, subject,
// headers, payload and time of every message.
func sameMessages(t *testing.T, want, got []*jetstream.RawStreamMsg) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d messages, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		switch {
		case g.Sequence != w.Sequence || g.Subject != w.Subject:
			t.Fatalf("message %d: seq %d subject %s, want seq %d subject %s", i, g.Sequence, g.Subject, w.Sequence, w.Subject)
		case !bytes.Equal(g.Data, w.Data):
			t.Fatalf("seq %d: payload differs:\n%s\nwant\n%s", w.Sequence, g.Data, w.Data)
		case !sameHeader(g.Header, w.Header):
			t.Fatalf("seq %d: headers %v, want %v", w.Sequence, g.Header, w.Header)
		case !g.Time.Equal(w.Time):
			t.Fatalf("seq %d: time %s, want %s", w.Sequence, g.Time, w.Time)
		}
	}
}

func sameHeader(a, b map[string][]string) bool {
	return len(a) == len(b) && maps.EqualFunc(a, b, slices.Equal)
}

func checkpoint(t *testing.T, ctx context.Context, pool *pgxpool.Pool) uint64 {
	t.Helper()
	var seq int64
	err := pool.QueryRow(ctx, `SELECT coalesce(max(last_seq), 0) FROM projection_checkpoints WHERE name = 'org_licenses'`).Scan(&seq)
	if err != nil {
		t.Fatal(err)
	}
	return uint64(seq)
}
