package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/licenseledger/ledger/internal/cli"
	"github.com/licenseledger/ledger/internal/postgres"
	"github.com/licenseledger/ledger/internal/testenv/pgtest"
)

// A ledger with DATABASE_URL projects into PostgreSQL, restarts from the
// rows at the checkpoint, and refuses an over-privileged user.
func TestServeWithPostgres(t *testing.T) {
	super := pgtest.NewDatabase(t)
	if err := postgres.Migrate(context.Background(), super, "up", postgres.Roles{}, io.Discard); err != nil {
		t.Fatal(err)
	}
	app := pgtest.LoginRole(t, super, "ledger_app")
	dir := t.TempDir()
	withPG := func(c *serveCmd) {
		c.DatabaseURL, c.CheckpointInterval = app, 100*time.Millisecond
		c.noticeDays = nil // license.expiring at the default thresholds
	}
	l := startLedgerWith(t, dir, withPG)
	// Far from expiry: no license.expiring moves acme's subject on.
	key := signed(t, "k1", func(p map[string]any) { p["expires"] = future(365 * 24 * time.Hour) })
	code, up := l.call("POST", "/api/license?org=acme", key)
	if code != 200 {
		t.Fatalf("upload: %d %v", code, up)
	}
	pool, err := pgxpool.New(context.Background(), super)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	waitRow := func(seq float64) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			var last int64
			pool.QueryRow(context.Background(), `SELECT last_seq FROM org_licenses WHERE org_slug = 'acme'`).Scan(&last)
			if float64(last) == seq {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("row at %d, want %v", last, seq)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// A license that expires at once (grace 0): the scheduler appends its
	// two due events; enforcement is set off explicitly.
	soon := signed(t, "k1", func(p map[string]any) {
		p["org_slug"], p["license_id"] = "soon", "0193a5b0-7e1a-7c3d-8f00-0000000000f1"
		p["expires"], p["grace_days"] = time.Now().Add(1500*time.Millisecond).UTC().Format(time.RFC3339), 0
	})
	if code, m := l.call("POST", "/api/license?org=soon", soon); code != 200 {
		t.Fatalf("upload soon: %d %v", code, m)
	}
	if code, m := l.call("PUT", "/api/enforcement", `{"mode":"off"}`); code != 200 {
		t.Fatalf("enforcement: %d %v", code, m)
	}
	// Ten days from expiry: the 14-day license.expiring notice.
	notice := signed(t, "k1", func(p map[string]any) {
		p["org_slug"], p["license_id"] = "notice", "0193a5b0-7e1a-7c3d-8f00-0000000000f2"
		p["expires"] = future(10 * 24 * time.Hour)
	})
	if code, m := l.call("POST", "/api/license?org=notice", notice); code != 200 {
		t.Fatalf("upload notice: %d %v", code, m)
	}
	dueEvents := func() int {
		var n int
		pool.QueryRow(context.Background(), `SELECT count(*) FROM license_audit WHERE org_slug = 'soon'
			AND type IN ('license.grace_started', 'license.expired')`).Scan(&n)
		return n
	}
	notices := func() int {
		var n int
		pool.QueryRow(context.Background(), `SELECT count(*) FROM license_audit WHERE org_slug = 'notice'
			AND type = 'license.expiring'`).Scan(&n)
		return n
	}
	deadline := time.Now().Add(15 * time.Second)
	for (dueEvents() < 2 || notices() < 1) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if dueEvents() != 2 || notices() != 1 {
		t.Fatalf("%d due events and %d notices before the restart", dueEvents(), notices())
	}
	waitRow(up["seq"].(float64))
	if code, rd := l.call("GET", "/readyz", ""); code != 200 || rd["store"] != "postgres" {
		t.Fatalf("readyz %d %v", code, rd)
	}
	// Checkpoints signed over the PostgreSQL trail and kept there; a
	// record's bundle, from the API and read from the database by an
	// auditor's login, verifies offline.
	var signed int64
	deadline = time.Now().Add(15 * time.Second)
	for pool.QueryRow(context.Background(), `SELECT coalesce(max(tree_size), 0) FROM audit_checkpoints`).Scan(&signed); signed < int64(up["seq"].(float64)); {
		if time.Now().After(deadline) {
			t.Fatalf("checkpoints up to %d, want %v", signed, up["seq"])
		}
		time.Sleep(50 * time.Millisecond)
		pool.QueryRow(context.Background(), `SELECT coalesce(max(tree_size), 0) FROM audit_checkpoints`).Scan(&signed)
	}
	_, vkey := l.get(l.token, "/api/audit/checkpoint/key")
	seq := fmt.Sprint(up["seq"])
	_, bundle, _ := l.client(t, "", "audit", "prove", "--seq", seq)
	auditor := pgtest.LoginRole(t, super, "ledger_auditor")
	code, fromDB, errOut := cliRun(t, "", "audit", "prove", "--seq", seq, "--database-url", auditor)
	if code != 0 {
		t.Fatalf("audit prove --database-url: %d %s", code, errOut)
	}
	for _, b := range []string{bundle, fromDB} {
		if code, out, _ := cliRun(t, b, "audit", "verify-proof", "-", "--key", strings.TrimSpace(string(vkey))); code != 0 || !strings.HasPrefix(out, "ok seq="+seq+" ") {
			t.Fatalf("verify-proof: %d %q\n%s", code, out, b)
		}
	}
	if code, note, _ := cliRun(t, "", "audit", "checkpoint", "--database-url", auditor); code != 0 || !strings.HasPrefix(note, "license-ledger/") {
		t.Fatalf("audit checkpoint --database-url: %d %q", code, note)
	}
	l.stop()

	// Restart: state comes from the rows, newer events from the stream.
	l = startLedgerWith(t, dir, withPG)
	if _, m := l.call("GET", "/api/license?org=acme", ""); m["status"] != "valid" || m["seq"] != up["seq"] || m["enforcement"] != "off" {
		t.Fatalf("after restart: %v", m)
	}
	time.Sleep(2500 * time.Millisecond) // two scheduler ticks on seeded states
	if n := dueEvents(); n != 2 {
		t.Fatalf("%d due events after a restart from PostgreSQL, want 2 (appended once)", n)
	}
	if n := notices(); n != 1 {
		t.Fatalf("%d notices after a restart from PostgreSQL, want 1 (appended once)", n)
	}
	code, rm := l.call("DELETE", "/api/license?org=acme", "")
	if code != 200 {
		t.Fatalf("remove: %d %v", code, rm)
	}
	waitRow(rm["seq"].(float64))
	var n int
	pool.QueryRow(context.Background(), `SELECT count(*) FROM license_audit`).Scan(&n)
	var head int64
	pool.QueryRow(context.Background(), `SELECT last_seq FROM projection_checkpoints`).Scan(&head)
	if int64(n) != head {
		t.Fatalf("%d audit rows for checkpoint %d", n, head)
	}
	l.stop()

	// The owner (a superuser) may rewrite the audit: refused, exit 2.
	cmd := &serveCmd{Listen: "127.0.0.1:0", DataDir: t.TempDir(), NATSListen: "off", NATSSync: "always", Replicas: 1,
		GraceDays: 7, RejectAudit: 10, UsageRate: 60, ShutdownWait: time.Second, DatabaseURL: super}
	cmd.Stream, cmd.LogFormat, cmd.LogLevel = "LICENSES", "text", "error"
	log, _ := cmd.Logger(io.Discard)
	err = cmd.serve(context.Background(), &cli.Env{Stdout: io.Discard, Stderr: io.Discard, Now: time.Now}, log, nil)
	if code := cli.ExitCode(io.Discard, "ledger", err); code != cli.ExitUsage || !strings.Contains(err.Error(), "allow-owner") {
		t.Fatalf("owner DATABASE_URL: exit %d, %v", code, err)
	}
}
