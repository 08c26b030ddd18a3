package postgres

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/testenv/pgtest"
)

// checkAs runs CheckPrivileges on a pool connected with dsn.
func checkAs(t *testing.T, dsn string) error {
	t.Helper()
	pool, err := Open(testContext(t), dsn)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer pool.Close()
	return CheckPrivileges(testContext(t), pool)
}

func wantCheckError(t *testing.T, who string, err, kind error, mentions ...string) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Errorf("%s: CheckPrivileges = %v, want %v", who, err, kind)
		return
	}
	for _, m := range mentions {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("%s: error does not mention %q: %v", who, m, err)
		}
	}
}

func TestCheckPrivilegesAcceptsTheAppUser(t *testing.T) {
	t.Parallel()
	dsn, _ := migratedDB(t)
	_, appDSN := newLoginRole(t, dsn, DefaultAppRole)
	if err := checkAs(t, appDSN); err != nil {
		t.Fatalf("app user: %v", err)
	}
	// A user granted custom role names is just as fine.
	app, auditor := randomName(t, "ledger_t_app_"), randomName(t, "ledger_t_aud_")
	dropRolesAtEnd(t, dsn, app, auditor)
	if out, err := runMigrate(t, dsn, MigrateUp, Roles{App: app, Auditor: auditor}); err != nil {
		t.Fatalf("up: %v\n%s", err, out)
	}
	_, customDSN := newLoginRole(t, dsn, app)
	if err := checkAs(t, customDSN); err != nil {
		t.Errorf("user granted %s: %v", app, err)
	}
}

func TestCheckPrivilegesRefusesTheOwner(t *testing.T) {
	t.Parallel()
	dsn, _ := migratedDB(t)
	// The test connects as the superuser that ran the migrations.
	wantCheckError(t, "owner", checkAs(t, dsn), ErrOverPrivileged,
		"owns license_audit", "UPDATE, DELETE, TRUNCATE", "ledger_app", "not the owner", "--allow-owner")

	// A non-superuser owner, and a member of the owner's role.
	owner, ownerDSN := newLoginRole(t, dsn)
	mustExecSQL(t, dsn, "ALTER TABLE license_audit OWNER TO "+owner)
	mustExecSQL(t, dsn, "GRANT ledger_app TO "+owner)
	err := checkAs(t, ownerDSN)
	wantCheckError(t, "non-superuser owner", err, ErrOverPrivileged, "owns license_audit")
	if err != nil && strings.Contains(err.Error(), "superuser") {
		t.Errorf("a non-superuser is called a superuser: %v", err)
	}
	_, memberDSN := newLoginRole(t, dsn, DefaultAppRole, owner)
	wantCheckError(t, "member of the owner", checkAs(t, memberDSN), ErrOverPrivileged, "is a member of", owner)

	// A superuser that owns nothing, and a user that may SET ROLE to one.
	var super bool
	if err := execSQL(t, dsn, "DO $$ BEGIN IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN RAISE EXCEPTION 'no'; END IF; END $$"); err == nil {
		super = true
	}
	if !super {
		t.Skip("the test user is not a superuser: cannot create one")
	}
	superUser, superDSN := newLoginRole(t, dsn, DefaultAppRole)
	mustExecSQL(t, dsn, "ALTER ROLE "+superUser+" SUPERUSER")
	wantCheckError(t, "superuser", checkAs(t, superDSN), ErrOverPrivileged, "is a superuser")
	_, viaDSN := newLoginRole(t, dsn, DefaultAppRole, superUser)
	err = checkAs(t, viaDSN)
	wantCheckError(t, "member of a superuser", err, ErrOverPrivileged, "may SET ROLE to superuser "+superUser)
	if err != nil && strings.Contains(err.Error(), "may UPDATE") {
		t.Errorf("a member of a superuser role holds UPDATE itself? %v", err)
	}
}

func TestCheckPrivilegesRefusesAnAppUserWithMore(t *testing.T) {
	t.Parallel()
	dsn, _ := migratedDB(t)
	for _, extra := range []string{"UPDATE", "DELETE", "TRUNCATE"} {
		user, appDSN := newLoginRole(t, dsn, DefaultAppRole)
		mustExecSQL(t, dsn, "GRANT "+extra+" ON license_audit TO "+user)
		wantCheckError(t, "app user with "+extra, checkAs(t, appDSN), ErrOverPrivileged, "may "+extra+" license_audit")
	}
}

func TestCheckPrivilegesRefusesAnUnderPrivilegedUser(t *testing.T) {
	t.Parallel()
	dsn, _ := migratedDB(t)
	user, plainDSN := newLoginRole(t, dsn)
	wantCheckError(t, "user with no role", checkAs(t, plainDSN), ErrUnderPrivileged,
		"SELECT, INSERT on license_audit;", "SELECT, INSERT, UPDATE, DELETE on org_licenses", "GRANT ledger_app TO", user)
	_, audDSN := newLoginRole(t, dsn, DefaultAuditorRole)
	err := checkAs(t, audDSN)
	wantCheckError(t, "auditor user", err, ErrUnderPrivileged, "lacks INSERT on license_audit;")
	if err != nil && strings.Contains(err.Error(), "SELECT, INSERT on license_audit") {
		t.Errorf("the auditor can SELECT license_audit: %v", err)
	}
}

func TestCheckPrivilegesRefusesAnUnmigratedDatabase(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	wantCheckError(t, "empty database", checkAs(t, dsn), ErrNotMigrated, "ledger migrate up", "license_audit")

	// One migration behind: the append-only triggers are missing.
	if out, err := runMigrate(t, dsn, MigrateUp, Roles{}); err != nil {
		t.Fatalf("up: %v\n%s", err, out)
	}
	_, appDSN := newLoginRole(t, dsn, DefaultAppRole)
	if err := checkAs(t, appDSN); err != nil {
		t.Fatalf("app user after up: %v", err)
	}
	if out, err := runMigrate(t, dsn, MigrateDown, Roles{}); err != nil {
		t.Fatalf("down: %v\n%s", err, out)
	}
	wantCheckError(t, "version 3", checkAs(t, appDSN), ErrNotMigrated, "version 3", "needs 4", "ledger migrate up")
	if out, err := runMigrate(t, dsn, MigrateUp, Roles{}); err != nil {
		t.Fatalf("up: %v\n%s", err, out)
	}

	// A disabled trigger is no protection.
	mustExecSQL(t, dsn, "ALTER TABLE license_audit DISABLE TRIGGER license_audit_no_truncate")
	wantCheckError(t, "disabled trigger", checkAs(t, appDSN), ErrNotMigrated, "license_audit_no_truncate", "disabled", "ENABLE ALWAYS TRIGGER")
	mustExecSQL(t, dsn, "ALTER TABLE license_audit ENABLE ALWAYS TRIGGER license_audit_no_truncate")
	if err := checkAs(t, appDSN); err != nil {
		t.Errorf("after re-enabling: %v", err)
	}
	// The tree's tables are append-only too.
	mustExecSQL(t, dsn, "ALTER TABLE license_audit_tree DISABLE TRIGGER license_audit_tree_no_update_delete")
	wantCheckError(t, "disabled tree trigger", checkAs(t, appDSN), ErrNotMigrated, "license_audit_tree_no_update_delete", "disabled")
	mustExecSQL(t, dsn, "ALTER TABLE license_audit_tree ENABLE ALWAYS TRIGGER license_audit_tree_no_update_delete")
	// Not migrated wins over over-privileged, so --allow-owner cannot hide it.
	mustExecSQL(t, dsn, "DROP TRIGGER license_audit_no_update_delete ON license_audit")
	wantCheckError(t, "owner, trigger missing", checkAs(t, dsn), ErrNotMigrated, "license_audit_no_update_delete", "missing")
}

func TestOpen(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	if _, err := Open(ctx, "postgres://x:secret@127.0.0.1:1/x?sslmode=disable&connect_timeout=5"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("closed port: %v, want ErrUnavailable", err)
	} else if strings.Contains(err.Error(), "secret") {
		t.Errorf("the error shows the password: %v", err)
	}
	if _, err := Open(ctx, "host=127.0.0.1 port=notaport"); !errors.Is(err, ErrInvalidDSN) {
		t.Errorf("bad DSN: %v, want ErrInvalidDSN", err)
	}
	dsn := pgtest.NewDatabase(t)
	if _, err := Open(ctx, dsnAsUser(t, dsn, randomName(t, "nobody_"), "x")); err == nil || errors.Is(err, ErrUnavailable) {
		t.Errorf("unknown user: %v, want a refusal that is not ErrUnavailable", err)
	}

	pool, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	cfg := pool.Config()
	if cfg.MaxConnLifetime != defaultMaxConnLifetime || cfg.MaxConnIdleTime != defaultMaxConnIdleTime ||
		cfg.HealthCheckPeriod != defaultHealthCheckPeriod || cfg.ConnConfig.ConnectTimeout != defaultConnectTimeout {
		t.Errorf("pool defaults not applied: lifetime %v idle %v health %v connect %v", cfg.MaxConnLifetime,
			cfg.MaxConnIdleTime, cfg.HealthCheckPeriod, cfg.ConnConfig.ConnectTimeout)
	}
	var app string
	if err := pool.QueryRow(ctx, "SELECT current_setting('application_name')").Scan(&app); err != nil || app != "ledger" {
		t.Errorf("application_name %q, %v", app, err)
	}

	// What the DSN says wins.
	ownDSN := dsn + " pool_max_conn_lifetime=7m pool_max_conn_idle_time=3m application_name=mine connect_timeout=3"
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		sep := "?"
		if strings.Contains(dsn, "?") {
			sep = "&"
		}
		ownDSN = dsn + sep + "pool_max_conn_lifetime=7m&pool_max_conn_idle_time=3m&application_name=mine&connect_timeout=3"
	}
	own, err := Open(ctx, ownDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	cfg = own.Config()
	if cfg.MaxConnLifetime != 7*time.Minute || cfg.MaxConnIdleTime != 3*time.Minute || cfg.ConnConfig.ConnectTimeout != 3*time.Second ||
		cfg.ConnConfig.RuntimeParams["application_name"] != "mine" {
		t.Errorf("DSN settings overridden: lifetime %v idle %v connect %v app %q", cfg.MaxConnLifetime,
			cfg.MaxConnIdleTime, cfg.ConnConfig.ConnectTimeout, cfg.ConnConfig.RuntimeParams["application_name"])
	}
}

func TestDSNKeys(t *testing.T) {
	t.Parallel()
	for dsn, want := range map[string]string{
		"postgres://u:p@h/db?pool_max_conns=3&sslmode=disable":                  "pool_max_conns sslmode",
		"host=h user=u pool_max_conn_lifetime=5m":                               "host pool_max_conn_lifetime user",
		"host = h password='a b\\' pool_health_check_period=1s' dbname=x":       "dbname host password",
		"  host=h\tpassword=a\\ pool_max_conn_idle_time=1s   application_name=": "application_name host password",
	} {
		keys := dsnKeys(dsn)
		var got []string
		for k := range keys {
			got = append(got, k)
		}
		slices.Sort(got)
		if strings.Join(got, " ") != want {
			t.Errorf("dsnKeys(%q) = %v, want %s", dsn, got, want)
		}
	}
}
