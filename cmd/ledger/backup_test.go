package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/audit"
	"github.com/licenseledger/ledger/internal/natsbackup"
)

// chainOf is the audit chain's digest over msgs (from seq 1).
func chainOf(msgs []storedMsg) string {
	h := audit.Zero
	for _, m := range msgs {
		h = audit.Next(h, m.Seq, m.Data)
	}
	return audit.Digest(uint64(len(msgs)), h)
}

func readManifestFile(t *testing.T, dir string) manifest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, natsbackup.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// backupFiles checks that dir holds a backup readable by its owner only:
// the directory 0700, each file 0600.
func backupFiles(t *testing.T, dir string) {
	t.Helper()
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("backup directory %s: %v %v, want mode 0700", dir, fi.Mode(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Errorf("backup files %v, want backup.json, manifest.json, stream.arc.s2", entries)
	}
	for _, f := range []string{"backup.json", "stream.arc.s2", "manifest.json"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatalf("the backup lacks %s: %v", f, err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s is mode %04o, want 0600", f, fi.Mode().Perm())
		}
	}
}

// A backup taken while ledger serve runs and takes uploads restores into
// a fresh data directory, where ledger serve starts with every event of
// the backup and the audit verifies.
func TestBackupWhileServingRestore(t *testing.T) {
	dir := t.TempDir()
	natsAddr := strings.TrimPrefix(closedPort(t), "http://")
	l := startLedgerWith(t, dir, func(c *serveCmd) { c.NATSListen = natsAddr })
	orgs := []string{"acme", "globex", "initech"}
	for i, org := range orgs {
		key := signed(t, "k1", func(p map[string]any) {
			p["org_slug"], p["license_id"], p["expires"] = org, fmt.Sprintf("0193a5b0-7e1a-7c3d-8f00-%012d", i), future(48*time.Hour)
		})
		if code, m := l.call("POST", "/api/license?org="+org, key); code != 200 {
			t.Fatalf("upload %s: %d %v", org, code, m)
		}
	}
	statuses := map[string]map[string]any{}
	for _, org := range orgs {
		_, statuses[org] = l.call("GET", "/api/license?org="+org, "")
	}
	// Uploads go on during the backup.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 30 {
			org := fmt.Sprintf("busy-%d", i)
			key := signed(t, "k1", func(p map[string]any) {
				p["org_slug"], p["license_id"], p["expires"] = org, fmt.Sprintf("0193a5b0-7e1a-7c3d-8f01-%012d", i), future(48*time.Hour)
			})
			if code, m := l.call("POST", "/api/license?org="+org, key); code != 200 {
				t.Errorf("upload during the backup: %d %v", code, m)
				return
			}
		}
	}()
	bdir := filepath.Join(t.TempDir(), "backup")
	code, out, errOut := cliRun(t, "", "backup", bdir, "--data-dir", dir, "--nats-listen", natsAddr)
	wg.Wait()
	if code != 0 || !strings.Contains(out, "from the running ledger's NATS at nats://"+natsAddr) {
		t.Fatalf("backup while serving: exit %d\n%s\n%s", code, out, errOut)
	}
	backupFiles(t, bdir)
	// Into a directory that holds something: refused.
	if code, _, errOut := cliRun(t, "", "backup", bdir, "--data-dir", dir, "--nats-listen", natsAddr); code != 1 || !strings.Contains(errOut, "not empty") {
		t.Fatalf("backup into a full directory: %d %q", code, errOut)
	}
	// While serve holds the store and its NATS does not answer where the
	// command looks: refused, not a second server on the same store.
	if code, _, errOut := cliRun(t, "", "backup", t.TempDir(), "--data-dir", dir, "--nats-listen", "off"); code != 1 || !strings.Contains(errOut, "in use") {
		t.Fatalf("offline backup of a running ledger's store: %d %q", code, errOut)
	}
	l.stop()

	all := streamContents(t, dir)
	m := readManifestFile(t, bdir)
	if m.Format != manifestFormat || m.Stream != "LICENSES" || m.FirstSeq != 1 || m.LastSeq < uint64(len(orgs)+2) ||
		m.LastSeq > uint64(len(all)) || m.Messages != m.LastSeq || m.StreamCreated.IsZero() || time.Since(m.BackupTime) > time.Minute {
		t.Fatalf("manifest %+v (stream of %d)", m, len(all))
	}
	if want := chainOf(all[:m.LastSeq]); m.Digest != want {
		t.Fatalf("manifest digest %s, the chain over seq 1..%d is %s", m.Digest, m.LastSeq, want)
	}

	// Restore into a fresh data directory.
	fresh := t.TempDir()
	code, out, errOut = cliRun(t, "", "restore", bdir, "--data-dir", fresh, "--nats-listen", "off")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("restored: stream LICENSES seq 1..%d", m.LastSeq)) ||
		!strings.Contains(out, "manifest: ok, last seq "+fmt.Sprint(m.LastSeq)+" digest "+m.Digest) {
		t.Fatalf("restore: exit %d\n%s\n%s", code, out, errOut)
	}
	restored := streamContents(t, fresh)
	sameMessages(t, restored, all[:m.LastSeq])
	// Again: the stream holds messages now; refused, unchanged.
	if code, _, errOut := cliRun(t, "", "restore", bdir, "--data-dir", fresh, "--nats-listen", "off"); code != 1 || !strings.Contains(errOut, "not overwriting it") {
		t.Fatalf("restore over a stream: %d %q", code, errOut)
	}
	sameMessages(t, streamContents(t, fresh), restored)

	l = startLedger(t, fresh, nil)
	for _, org := range orgs {
		if _, st := l.call("GET", "/api/license?org="+org, ""); st["status"] != "valid" || st["seq"] != statuses[org]["seq"] || st["license_id"] != statuses[org]["license_id"] {
			t.Fatalf("%s after the restore: %v, want %v", org, st, statuses[org])
		}
	}
	var v map[string]any
	waitFor(t, "the restored trail verifies with the new ledger.started", func() bool {
		_, v = l.call("GET", "/api/audit/verify", "")
		return v["rows_checked"] == float64(m.LastSeq+1)
	})
	if v["ok"] != true {
		t.Fatalf("audit verify after the restore: %v", v)
	}
	l.stop()

	// With ledger serve stopped, the command starts the store itself. An
	// empty directory made beforehand, open to others, is set to 0700.
	off := filepath.Join(t.TempDir(), "offline")
	if err := os.Mkdir(off, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(off, 0o755)
	code, out, errOut = cliRun(t, "", "backup", off, "--data-dir", fresh, "--nats-listen", natsAddr)
	if code != 0 || !strings.Contains(out, "(ledger serve stopped)") || !strings.Contains(errOut, off+" was mode 0755; set to 0700") {
		t.Fatalf("offline backup: exit %d\n%s\n%s", code, out, errOut)
	}
	backupFiles(t, off)
	if mo := readManifestFile(t, off); mo.LastSeq != m.LastSeq+1 || mo.Digest != chainOf(streamContents(t, fresh)) {
		t.Fatalf("offline manifest %+v", mo)
	}
}

func TestRestoreRefusals(t *testing.T) {
	if code, _, errOut := cliRun(t, "", "restore", t.TempDir(), "--data-dir", t.TempDir(), "--nats-listen", "off"); code != 1 || !strings.Contains(errOut, "is not a stream backup") {
		t.Fatalf("restore of an empty directory: %d %q", code, errOut)
	}
	// A ledger with its NATS listening: stop it first.
	dir := t.TempDir()
	natsAddr := strings.TrimPrefix(closedPort(t), "http://")
	startLedgerWith(t, dir, func(c *serveCmd) { c.NATSListen = natsAddr }).stop()
	bdir := filepath.Join(t.TempDir(), "b")
	if code, out, errOut := cliRun(t, "", "backup", bdir, "--data-dir", dir, "--nats-listen", "off"); code != 0 {
		t.Fatalf("backup: %d %s %s", code, out, errOut)
	}
	l := startLedgerWith(t, t.TempDir(), func(c *serveCmd) { c.NATSListen = natsAddr })
	if code, _, errOut := cliRun(t, "", "restore", bdir, "--data-dir", t.TempDir(), "--nats-listen", natsAddr); code != 1 || !strings.Contains(errOut, "stop it first") {
		t.Fatalf("restore next to a running ledger: %d %q", code, errOut)
	}
	l.stop()
	// Another stream name: JetStream cannot rename on restore.
	if code, _, errOut := cliRun(t, "", "restore", bdir, "--data-dir", t.TempDir(), "--nats-listen", "off", "--stream", "OTHER"); code != 2 || !strings.Contains(errOut, "not OTHER") {
		t.Fatalf("restore under another name: %d %q", code, errOut)
	}
	// A backup without its archive: refused before anything changes.
	partial := t.TempDir()
	b, _ := os.ReadFile(filepath.Join(bdir, "backup.json"))
	writeFile(t, partial, "backup.json", string(b))
	if code, _, errOut := cliRun(t, "", "restore", partial, "--data-dir", t.TempDir(), "--nats-listen", "off"); code != 1 || !strings.Contains(errOut, "is not a stream backup") {
		t.Fatalf("restore without the archive: %d %q", code, errOut)
	}
	// A manifest that does not match the snapshot: the restore says so.
	b, _ = os.ReadFile(filepath.Join(bdir, natsbackup.ManifestFile))
	os.WriteFile(filepath.Join(bdir, natsbackup.ManifestFile), []byte(strings.Replace(string(b), `"digest": "1:`, `"digest": "1:0`, 1)), 0o600)
	if code, out, _ := cliRun(t, "", "restore", bdir, "--data-dir", t.TempDir(), "--nats-listen", "off"); code != 1 || !strings.Contains(out, "manifest: MISMATCH") {
		t.Fatalf("restore against a wrong manifest: %d %q", code, out)
	}
}
