package clustertest

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/licenseledger/ledger/internal/postgres"
	"github.com/licenseledger/ledger/internal/testenv/pgtest"
)

// roles.sql refuses a database that `ledger migrate up` has not prepared,
// is idempotent, and makes ledger_svc a user `ledger serve` accepts and
// ledger_compliance a read-only one.
func TestRolesSQL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	bare := pgtest.NewDatabase(t)
	lg := pgLogins{svc: shippedSvcUser + "_" + randomHex(t, 4), compliance: shippedComplianceUsr + "_" + randomHex(t, 4)}
	t.Cleanup(func() { dropRoles(bare, lg.svc, lg.compliance) })
	conn, err := pgx.Connect(ctx, bare)
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, rolesSQL(t, lg))
	conn.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "run ledger migrate up first") {
		t.Fatalf("roles.sql on a database without migrations: %v", err)
	}

	super := pgtest.NewDatabase(t)
	if err := postgres.Migrate(ctx, super, postgres.MigrateUp, postgres.Roles{}, io.Discard); err != nil {
		t.Fatal(err)
	}
	lg = applyRolesSQL(t, super, 2) // a second run changes nothing and does not fail

	svc := pgtest.NewPool(t, lg.svcDSN)
	if err := postgres.CheckPrivileges(ctx, svc); err != nil {
		t.Fatalf("ledger serve would refuse %s: %v", lg.svc, err)
	}
	if _, err := svc.Exec(ctx, `UPDATE license_audit SET type = type`); !isInsufficientPrivilege(err) {
		t.Fatalf("%s may UPDATE license_audit: %v", lg.svc, err)
	}

	comp := pgtest.NewPool(t, lg.complianceDSN)
	var rows int
	if err := comp.QueryRow(ctx, `SELECT count(*) FROM license_audit`).Scan(&rows); err != nil {
		t.Fatalf("%s cannot read the audit: %v", lg.compliance, err)
	}
	if err := comp.QueryRow(ctx, `SELECT count(*) FROM org_licenses`).Scan(&rows); err != nil {
		t.Fatalf("%s cannot read the read model: %v", lg.compliance, err)
	}
	var readOnly string
	if err := comp.QueryRow(ctx, `SHOW default_transaction_read_only`).Scan(&readOnly); err != nil || readOnly != "on" {
		t.Fatalf("%s: default_transaction_read_only %q, %v", lg.compliance, readOnly, err)
	}
	// Even in a read-write transaction, the grants forbid writing.
	tx, err := comp.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadWrite})
	if err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx, `INSERT INTO projection_checkpoints (name, last_seq) VALUES ('x', 0)`)
	tx.Rollback(ctx)
	if !isInsufficientPrivilege(err) {
		t.Fatalf("%s may write the read model: %v", lg.compliance, err)
	}
	if err := postgres.CheckPrivileges(ctx, comp); !errors.Is(err, postgres.ErrUnderPrivileged) {
		t.Fatalf("ledger serve as %s: %v, want ErrUnderPrivileged", lg.compliance, err)
	}
	for _, role := range []string{lg.svc, lg.compliance} {
		var super, createRole, createDB, login bool
		err := comp.QueryRow(ctx, `SELECT rolsuper, rolcreaterole, rolcreatedb, rolcanlogin FROM pg_roles WHERE rolname = $1`, role).
			Scan(&super, &createRole, &createDB, &login)
		if err != nil || super || createRole || createDB || !login {
			t.Fatalf("%s: superuser %v, createrole %v, createdb %v, login %v, %v", role, super, createRole, createDB, login, err)
		}
	}
}

func isInsufficientPrivilege(err error) bool {
	return err != nil && strings.Contains(err.Error(), "SQLSTATE 42501")
}

// Every setting of postgresql.conf.snippet exists in the server the suite
// runs against, and enumerated or boolean values are among its choices.
func TestPostgresConfSnippet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool := pgtest.NewPool(t, pgtest.NewDatabase(t))
	var settings int
	for line := range strings.SplitSeq(shipped(t, "deploy/postgres/postgresql.conf.snippet"), "\n") {
		line, _, _ = strings.Cut(line, "#")
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			if strings.TrimSpace(line) != "" {
				t.Errorf("not a setting: %q", line)
			}
			continue
		}
		settings++
		name, value = strings.TrimSpace(name), strings.Trim(strings.TrimSpace(value), "'")
		var vartype string
		var enumvals []string
		err := pool.QueryRow(ctx, `SELECT vartype, coalesce(enumvals, '{}') FROM pg_settings WHERE name = $1`, name).Scan(&vartype, &enumvals)
		if err != nil {
			t.Errorf("%s: unknown to the server (%v)", name, err)
			continue
		}
		switch vartype {
		case "enum":
			if !slices.Contains(enumvals, strings.ToLower(value)) {
				t.Errorf("%s = %s: not one of %v", name, value, enumvals)
			}
		case "bool":
			if !slices.Contains([]string{"on", "off", "true", "false"}, strings.ToLower(value)) {
				t.Errorf("%s = %s: not a boolean", name, value)
			}
		}
	}
	if settings < 10 {
		t.Fatalf("only %d settings read from the snippet", settings)
	}
}
