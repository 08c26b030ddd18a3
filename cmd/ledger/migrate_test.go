package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/licenseledger/ledger/internal/postgres"
	"github.com/licenseledger/ledger/internal/testenv/openapitest"
	"github.com/licenseledger/ledger/internal/testenv/pgtest"
)

// TestMain is the package's only one: pgtest.Run drops the package's test
// databases, and stops a throwaway PostgreSQL cluster, when the tests end;
// it then says how many requests the OpenAPI validator checked.
func TestMain(m *testing.M) {
	code := pgtest.Run(m)
	fmt.Println(openapitest.Summary())
	os.Exit(code)
}

func TestMigrateUsage(t *testing.T) {
	env := map[string]string{"LEDGER_MIGRATE_DATABASE_URL": "", "LEDGER_DB_APP_ROLE": "", "LEDGER_DB_AUDITOR_ROLE": ""}
	code, _, errOut := runCmd(t, env, "migrate")
	if code != 2 || !strings.Contains(errOut, "LEDGER_MIGRATE_DATABASE_URL") {
		t.Errorf("no database URL: exit %d, stderr %q; want 2 naming LEDGER_MIGRATE_DATABASE_URL", code, errOut)
	}
	code, _, errOut = runCmd(t, env, "migrate", "sideways", "--database-url", "postgres://127.0.0.1:1/x")
	if code != 2 {
		t.Errorf("unknown command: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = runCmd(t, env, "migrate", "--database-url", "postgres://127.0.0.1:1/x", "--app-role", "Robert'); DROP")
	if code != 2 || !strings.Contains(errOut, "invalid role name") {
		t.Errorf("bad role name: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = runCmd(t, map[string]string{"LEDGER_DB_AUDITOR_ROLE": "ledger_app"}, "migrate", "--database-url", "postgres://127.0.0.1:1/x")
	if code != 2 || !strings.Contains(errOut, "must differ") {
		t.Errorf("same role twice: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = runCmd(t, nil, "migrate", "--database-url", "postgres://u:pw@[::1")
	if code != 2 || strings.Contains(errOut, "pw@") {
		t.Errorf("malformed URL: exit %d, stderr %q; want 2 without the password", code, errOut)
	}
}

func TestMigrateUnreachable(t *testing.T) {
	env := map[string]string{"LEDGER_MIGRATE_DATABASE_URL": "postgres://ledger@127.0.0.1:1/ledger?sslmode=disable&connect_timeout=5"}
	for _, cmd := range []string{"up", "down", "status"} {
		code, _, errOut := runCmd(t, env, "migrate", cmd)
		if code != 4 || !strings.Contains(errOut, "unavailable") {
			t.Errorf("migrate %s on a closed port: exit %d, stderr %q; want 4", cmd, code, errOut)
		}
	}
}

func TestMigrateCommand(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	env := map[string]string{"LEDGER_MIGRATE_DATABASE_URL": dsn, "LEDGER_DB_APP_ROLE": "", "LEDGER_DB_AUDITOR_ROLE": ""}

	code, out, errOut := runCmd(t, env, "migrate", "status")
	if code != 0 || !strings.Contains(out, "schema at version 0; 4 pending") {
		t.Fatalf("status: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCmd(t, env, "migrate") // up is the default
	if code != 0 || !strings.Contains(out, "applied 00004_seat_usage.sql") || !strings.Contains(out, "roles ledger_app (app) and ledger_auditor (auditor) granted") {
		t.Fatalf("up: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCmd(t, env, "migrate", "up")
	if code != 0 || !strings.Contains(out, "no migrations to apply") {
		t.Errorf("second up: exit %d\n%s%s", code, out, errOut)
	}

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO license_audit (seq, subject, type, envelope_raw, prev_hash, hash)
		VALUES (1, 'licenses.audit._instance', 'ledger.started', '{}', '\x00', '\x01')`); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCmd(t, env, "migrate", "down")
	if code != 1 || !strings.Contains(errOut, "license_audit has rows") {
		t.Errorf("down with an audit row: exit %d, stdout %q, stderr %q; want 1 and the reason", code, out, errOut)
	}
	var version int64
	if err := conn.QueryRow(ctx, "SELECT max(version_id) FROM ledger_schema_migrations").Scan(&version); err != nil || version != 4 {
		t.Errorf("after the refused down: version %d, %v", version, err)
	}
	code, out, errOut = runCmd(t, env, "migrate", "status")
	if code != 0 || !strings.Contains(out, "schema at version 4; 0 pending") {
		t.Errorf("status: exit %d\n%s%s", code, out, errOut)
	}

	// -o: the same rows as JSON and CSV; up and down print text only.
	code, out, errOut = runCmd(t, env, "migrate", "status", "-o", "json")
	var rows []postgres.MigrationRow
	if err := json.Unmarshal([]byte(out), &rows); code != 0 || err != nil || len(rows) != 4 ||
		rows[3].Version != 4 || rows[3].State != "applied" || rows[3].AppliedAt == nil || rows[3].Migration != "00004_seat_usage.sql" {
		t.Errorf("status -o json: exit %d %v\n%s%s", code, err, out, errOut)
	}
	code, out, errOut = runCmd(t, env, "migrate", "status", "-o", "csv")
	if code != 0 || !strings.HasPrefix(out, "version,state,applied_at,migration\n1,applied,") || strings.Count(out, "\n") != 5 {
		t.Errorf("status -o csv: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut = runCmd(t, env, "migrate", "up", "-o", "json"); code != 2 || !strings.Contains(errOut, "only migrate status") {
		t.Errorf("up -o json: exit %d %q", code, errOut)
	}
}
