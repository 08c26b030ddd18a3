package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/licenseledger/ledger/internal/testenv"
	"github.com/licenseledger/ledger/internal/testenv/pgtest"
	"github.com/licenseledger/ledger/internal/testenv/proctest"
)

// previousRelease is the last commit before the audit trail's Merkle
// tree: its database has no tree_hashes, license_audit_tree,
// audit_checkpoints or tree_size.
const previousRelease = "bdc23bd"

// buildAt builds ./cmd/ledger as it was at commit rev, from a worktree of
// this repository, into dir.
func buildAt(t *testing.T, rev, dir string) string {
	t.Helper()
	testenv.RequireTool(t, "git")
	root := proctest.RepoRoot(t)
	if _, err := os.Stat(filepath.Join(root, ".git")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the upgrade test builds the previous release from this repository's history: %v", err)
		}
		t.Skip("not a git checkout: the previous release cannot be built")
	}
	if err := exec.Command("git", "-C", root, "cat-file", "-e", rev+"^{commit}").Run(); err != nil {
		// A shallow clone holds no history to build it from.
		t.Skipf("commit %s (the previous release) is not in this clone's history", rev)
	}
	wt := filepath.Join(t.TempDir(), "release")
	run := func(dir string, name string, args ...string) {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	run(root, "git", "worktree", "add", "--detach", wt, rev)
	t.Cleanup(func() { exec.Command("git", "-C", root, "worktree", "remove", "--force", wt).Run() })
	start := time.Now()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	run(wt, goTool, "build", "-o", filepath.Join(dir, "ledger-previous"), "./cmd/ledger")
	t.Logf("built the previous release (%s) in %s", rev, time.Since(start).Round(time.Millisecond))
	return filepath.Join(dir, "ledger-previous")
}

// An install of the previous release, on PostgreSQL, upgraded in place:
// migrate up, then the new ledger on the same data directory and
// database. Nothing is lost, the records written before the tree get
// their tree hashes once (no row updated), checkpoints are signed, and a
// record from before the upgrade is proven.
func TestUpgradeFromThePreviousRelease(t *testing.T) {
	bins := t.TempDir()
	previous := buildAt(t, previousRelease, bins)
	current := proctest.Build(t, bins, proctest.Ledger)["ledger"]
	super := pgtest.NewDatabase(t)
	dir := t.TempDir()
	ring, _ := vendorKey("k1")
	migrate := func(bin string) string {
		t.Helper()
		p := proctest.Start(t, "migrate", bin, []string{"migrate", "up"}, map[string]string{"LEDGER_MIGRATE_DATABASE_URL": super})
		<-p.Exited()
		if p.ExitCode() != 0 {
			t.Fatalf("%s migrate up: %s", filepath.Base(bin), p.Output())
		}
		return p.Output()
	}
	migrate(previous)
	app := pgtest.LoginRole(t, super, "ledger_app")
	port := proctest.FreePorts(t, 1)[0]
	env := map[string]string{"DATA_DIR": dir, "DATABASE_URL": app, "LICENSE_PUBLIC_KEYS": ring,
		"LEDGER_LISTEN": fmt.Sprintf("127.0.0.1:%d", port), "LEDGER_NATS_LISTEN": "off", "LEDGER_CHECKPOINT_INTERVAL": "100ms", "LOG_LEVEL": "info"}
	serve := func(bin string) (*proctest.Process, *ledgerProc) {
		t.Helper()
		p := proctest.Start(t, filepath.Base(bin), bin, []string{"serve"}, env)
		l := &ledgerProc{t: t, url: fmt.Sprintf("http://127.0.0.1:%d", port)}
		proctest.WaitFor(t, "ready", 60*time.Second, []*proctest.Process{p}, func() error { return proctest.GetOK(l.url + "/readyz") })
		tok, err := os.ReadFile(filepath.Join(dir, "admin.token"))
		if err != nil {
			t.Fatal(err)
		}
		l.token = strings.TrimSpace(string(tok))
		return p, l
	}
	pool, err := pgxpool.New(context.Background(), super)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	projected := func(p *proctest.Process, head float64) {
		t.Helper()
		proctest.WaitFor(t, "the projector at the head", 30*time.Second, []*proctest.Process{p}, func() error {
			var last int64
			pool.QueryRow(context.Background(), `SELECT last_seq FROM projection_checkpoints`).Scan(&last)
			if float64(last) < head {
				return fmt.Errorf("checkpoint %d, head %v", last, head)
			}
			return nil
		})
	}

	p, l := serve(previous)
	var head float64
	for _, org := range []string{"acme", "globex", "initech"} {
		key := signed(t, "k1", func(p map[string]any) {
			p["org_slug"], p["license_id"] = org, fmt.Sprintf("0193a5b0-7e1a-7c3d-8f00-%012d", len(org))
			p["expires"] = time.Now().Add(365 * 24 * time.Hour).UTC().Format(time.RFC3339)
		})
		code, up := l.call("POST", "/api/license?org="+org, key)
		if code != 200 {
			t.Fatalf("upload to the previous release: %d %v", code, up)
		}
		head = up["seq"].(float64)
	}
	projected(p, head)
	before := map[string]any{}
	for _, org := range []string{"acme", "globex", "initech"} {
		_, st := l.call("GET", "/api/license?org="+org, "")
		before[org] = st["license_id"]
	}
	var rowsBefore int
	pool.QueryRow(context.Background(), `SELECT count(*) FROM license_audit`).Scan(&rowsBefore)
	p.Stop()

	if out := migrate(current); !strings.Contains(out, "applied 00003_audit_tree.sql") || !strings.Contains(out, "applied 00004_seat_usage.sql") {
		t.Fatalf("migrate up to the tree and the seat usage columns:\n%s", out)
	}
	p, l = serve(current)
	for org, id := range before {
		if _, st := l.call("GET", "/api/license?org="+org, ""); st["license_id"] != id || st["status"] != "valid" {
			t.Fatalf("%s after the upgrade: %v, was %v", org, st, id)
		}
	}
	proctest.WaitFor(t, "a checkpoint over the records of the previous release", 30*time.Second, []*proctest.Process{p}, func() error {
		var size int64
		pool.QueryRow(context.Background(), `SELECT coalesce(max(tree_size), 0) FROM audit_checkpoints`).Scan(&size)
		if size < int64(rowsBefore) {
			return fmt.Errorf("checkpoints up to %d, %d records before the upgrade", size, rowsBefore)
		}
		return nil
	})
	// Rows of the previous release have no usage; a report after the
	// upgrade reaches the read model.
	var unreported, all int
	pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE users_active IS NULL AND users_reported_at IS NULL), count(*)
		FROM org_licenses`).Scan(&unreported, &all)
	if unreported != all || all < len(before) {
		t.Fatalf("%d of %d rows of the previous release without usage", unreported, all)
	}
	code, st := l.call("PUT", "/api/usage?org=acme", `{"users": 12}`)
	if code != 200 || st["users_active"] != 12.0 {
		t.Fatalf("a usage report after the upgrade: %d %v", code, st)
	}
	projected(p, st["seq"].(float64))
	var users int
	pool.QueryRow(context.Background(), `SELECT users_active FROM org_licenses WHERE org_slug = 'acme'`).Scan(&users)
	if users != 12 {
		t.Fatalf("org_licenses.users_active of acme after a report: %d", users)
	}
	var kept int
	pool.QueryRow(context.Background(), `SELECT count(*) FROM license_audit_tree`).Scan(&kept)
	if kept < rowsBefore || !strings.Contains(p.Output(), "audit tree: computing the tree hashes") {
		t.Fatalf("%d records' tree hashes kept aside, %d records before the upgrade\n%s", kept, rowsBefore, p.Output())
	}
	if code, out, errOut := cliRun(t, "", "audit", "verify", "--database-url", super, "--nats-url", "nats://127.0.0.1:1"); code != 0 || !strings.HasPrefix(out, "ok ") {
		t.Fatalf("audit verify after the upgrade: %d %q %q", code, out, errOut)
	}
	_, vkey := l.get(l.token, "/api/audit/checkpoint/key")
	_, bundle, errOut := cliRun(t, "", "audit", "prove", "--seq", "2", "--server", l.url, "--token", l.token)
	if code, out, _ := cliRun(t, bundle, "audit", "verify-proof", "-", "--key", strings.TrimSpace(string(vkey))); code != 0 {
		t.Fatalf("a record of the previous release, proven: %d %q %s", code, out, errOut)
	}
}
