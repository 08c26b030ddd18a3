package postgres

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/licenseledger/ledger/internal/testenv/pgtest"
)

// Helpers shared by the tests of migrate.go, roles.go and privileges.go.

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// runMigrate runs Migrate and returns what it printed.
func runMigrate(t *testing.T, dsn, cmd string, roles Roles) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := Migrate(testContext(t), dsn, cmd, roles, &out)
	return out.String(), err
}

// migratedDB returns the superuser DSN of a fresh database migrated up with
// the default roles, and a pool on it.
func migratedDB(t *testing.T) (string, *pgxpool.Pool) {
	t.Helper()
	dsn := pgtest.NewDatabase(t)
	if out, err := runMigrate(t, dsn, MigrateUp, Roles{}); err != nil {
		t.Fatalf("migrate up: %v\n%s", err, out)
	}
	return dsn, pgtest.NewPool(t, dsn)
}

func randomName(t *testing.T, prefix string) string {
	t.Helper()
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b[:])
}

// dropRolesAtEnd drops the cluster-wide roles names when the test ends,
// after revoking what they hold in the database at dsn. Register it after
// pgtest.NewDatabase so that it runs before the database is dropped.
func dropRolesAtEnd(t *testing.T, dsn string, names ...string) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("drop roles: %v", err)
			return
		}
		defer conn.Close(ctx)
		for _, name := range names {
			q := quoteIdentifier(name)
			if _, err := conn.Exec(ctx, "DROP OWNED BY "+q+" CASCADE"); err != nil {
				t.Errorf("drop owned by %s: %v", name, err)
			}
			if _, err := conn.Exec(ctx, "DROP ROLE "+q); err != nil {
				t.Errorf("drop role %s: %v", name, err)
			}
		}
	})
}

// newLoginRole creates a LOGIN user granted the roles in grants (none: a
// user with no privileges) and returns its name and a DSN to connect as it.
// The user is dropped when the test ends.
func newLoginRole(t *testing.T, superDSN string, grants ...string) (name, dsn string) {
	t.Helper()
	name = randomName(t, "ledger_test_user_")
	password := randomName(t, "pw")
	ctx := testContext(t)
	conn, err := pgx.Connect(ctx, superDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE ROLE "+quoteIdentifier(name)+" LOGIN PASSWORD '"+password+"'"); err != nil {
		t.Fatal(err)
	}
	dropRolesAtEnd(t, superDSN, name)
	for _, g := range grants {
		if _, err := conn.Exec(ctx, "GRANT "+quoteIdentifier(g)+" TO "+quoteIdentifier(name)); err != nil {
			t.Fatal(err)
		}
	}
	return name, dsnAsUser(t, superDSN, name, password)
}

// dsnAsUser swaps the user and password of dsn, in URL or keyword/value form.
func dsnAsUser(t *testing.T, dsn, user, password string) string {
	t.Helper()
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.UserPassword(user, password)
		return u.String()
	}
	// For keyword/value strings the last occurrence of a key wins.
	return dsn + " user=" + user + " password=" + password
}

// exec runs one statement on its own connection and returns its error.
func execSQL(t *testing.T, dsn, sql string, args ...any) error {
	t.Helper()
	ctx := testContext(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql, args...)
	return err
}

func mustExecSQL(t *testing.T, dsn, sql string, args ...any) {
	t.Helper()
	if err := execSQL(t, dsn, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func errSQLState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// insertAuditRow appends a row to license_audit.
func insertAuditRow(t *testing.T, dsn string, seq int64) error {
	t.Helper()
	return execSQL(t, dsn, `INSERT INTO license_audit (seq, event_id, subject, org_slug, type, envelope_raw, prev_hash, hash)
		VALUES ($1, gen_random_uuid(), 'licenses.org.acme', 'acme', 'license.removed', '{}', '\x00', '\x01')`, seq)
}

func schemaVersion(t *testing.T, pool *pgxpool.Pool) int64 {
	t.Helper()
	var v int64
	if err := pool.QueryRow(testContext(t), "SELECT COALESCE(max(version_id), 0) FROM "+VersionTable).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func relationExistsIn(t *testing.T, pool *pgxpool.Pool, name string) bool {
	t.Helper()
	var ok bool
	if err := pool.QueryRow(testContext(t), "SELECT to_regclass($1) IS NOT NULL", name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// triggerStates maps license_audit's triggers to their tgenabled.
func triggerStates(t *testing.T, pool *pgxpool.Pool) map[string]string {
	t.Helper()
	return triggerStatesOf(t, pool, "license_audit")
}

func triggerStatesOf(t *testing.T, pool *pgxpool.Pool, table string) map[string]string {
	t.Helper()
	rows, err := pool.Query(testContext(t), `SELECT tgname::text, tgenabled::text FROM pg_trigger
		WHERE tgrelid = to_regclass($1) AND NOT tgisinternal`, table)
	if err != nil {
		t.Fatal(err)
	}
	m, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
		var v [2]string
		err := r.Scan(&v[0], &v[1])
		return v, err
	})
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]string)
	for _, v := range m {
		out[v[0]] = v[1]
	}
	return out
}

// The schema of design §4, column by column in order: table.column udt
// [NOT NULL]. Where §4 is silent on NULL the migration is stricter for
// columns every row has (subject, type, recorded_at, checkpoint last_seq).
var wantColumns = []string{
	"audit_checkpoints.tree_size int8 NOT NULL",
	"audit_checkpoints.root_hash bytea NOT NULL",
	"audit_checkpoints.note text NOT NULL",
	"audit_checkpoints.signed_at timestamptz NOT NULL",
	"license_audit.seq int8 NOT NULL",
	"license_audit.event_id uuid",
	"license_audit.subject text NOT NULL",
	"license_audit.org_slug text",
	"license_audit.type text NOT NULL",
	"license_audit.actor_kind text",
	"license_audit.actor_id text",
	"license_audit.occurred_at timestamptz",
	"license_audit.recorded_at timestamptz NOT NULL",
	"license_audit.envelope jsonb",
	"license_audit.envelope_raw bytea NOT NULL",
	"license_audit.prev_hash bytea NOT NULL",
	"license_audit.hash bytea NOT NULL",
	"license_audit.tree_hashes bytea",
	"license_audit_tree.seq int8 NOT NULL",
	"license_audit_tree.tree_hashes bytea NOT NULL",
	"org_licenses.org_slug text NOT NULL",
	"org_licenses.license_id uuid",
	"org_licenses.customer text",
	"org_licenses.tier text",
	"org_licenses.products _text NOT NULL",
	"org_licenses.features _text NOT NULL",
	"org_licenses.issued_at timestamptz",
	"org_licenses.not_before timestamptz",
	"org_licenses.expires_at timestamptz",
	"org_licenses.users_limit int4",
	"org_licenses.grace_days int4",
	"org_licenses.license_key text",
	"org_licenses.fingerprint text",
	"org_licenses.revoked bool NOT NULL",
	"org_licenses.revoked_note text",
	"org_licenses.pending_license_id uuid",
	"org_licenses.pending_not_before timestamptz",
	"org_licenses.pending_license_key text",
	"org_licenses.updated_at timestamptz",
	"org_licenses.last_seq int8 NOT NULL",
	"org_licenses.users_active int4",
	"org_licenses.users_reported_at timestamptz",
	"projection_checkpoints.name text NOT NULL",
	"projection_checkpoints.last_seq int8 NOT NULL",
	"projection_checkpoints.stream_created timestamptz",
	"projection_checkpoints.updated_at timestamptz",
	"projection_checkpoints.tree_size int8 NOT NULL",
	"revoked_licenses.org_slug text NOT NULL",
	"revoked_licenses.license_id uuid NOT NULL",
	"revoked_licenses.seq int8",
}

// wantKeys are the primary and unique keys of §4: table kind (columns).
var wantKeys = []string{
	"audit_checkpoints PRIMARY KEY (tree_size,root_hash)",
	"license_audit PRIMARY KEY (seq)",
	"license_audit UNIQUE (event_id)",
	"license_audit_tree PRIMARY KEY (seq)",
	"org_licenses PRIMARY KEY (org_slug)",
	"projection_checkpoints PRIMARY KEY (name)",
	"revoked_licenses PRIMARY KEY (org_slug,license_id)",
}

func schemaColumns(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(testContext(t), `SELECT table_name || '.' || column_name || ' ' || udt_name ||
			CASE WHEN is_nullable = 'NO' THEN ' NOT NULL' ELSE '' END
		FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name <> $1
		ORDER BY table_name, ordinal_position`, VersionTable)
	if err != nil {
		t.Fatal(err)
	}
	cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return cols
}

func schemaKeys(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(testContext(t), `SELECT tc.table_name || ' ' || tc.constraint_type || ' (' ||
			string_agg(k.column_name, ',' ORDER BY k.ordinal_position) || ')'
		FROM information_schema.table_constraints tc
		JOIN information_schema.key_column_usage k
			ON k.constraint_schema = tc.constraint_schema AND k.constraint_name = tc.constraint_name
		WHERE tc.table_schema = current_schema() AND tc.constraint_type IN ('PRIMARY KEY', 'UNIQUE')
			AND tc.table_name <> $1
		GROUP BY tc.table_name, tc.constraint_type, tc.constraint_name
		ORDER BY 1`, VersionTable)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func schemaTables(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(testContext(t), `SELECT table_name::text FROM information_schema.tables
		WHERE table_schema = current_schema() ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return tables
}

func diffLists(t *testing.T, what string, got, want []string) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("%s: missing %q", what, w)
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			t.Errorf("%s: unexpected %q", what, g)
		}
	}
	t.Errorf("%s:\n got %q\nwant %q", what, got, want)
}

func TestMigrateUpCreatesTheContractSchema(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	out, err := runMigrate(t, dsn, MigrateUp, Roles{})
	if err != nil {
		t.Fatalf("migrate up: %v\n%s", err, out)
	}
	for _, want := range []string{"applied 00001_read_model.sql", "applied 00002_audit_append_only.sql", "applied 00003_audit_tree.sql",
		fmt.Sprintf("schema at version %d", LatestVersion()), "GRANT ledger_app TO <user>"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	pool := pgtest.NewPool(t, dsn)
	diffLists(t, "tables", schemaTables(t, pool),
		[]string{"audit_checkpoints", "ledger_schema_migrations", "license_audit", "license_audit_tree", "org_licenses", "projection_checkpoints", "revoked_licenses"})
	diffLists(t, "columns", schemaColumns(t, pool), wantColumns)
	diffLists(t, "keys", schemaKeys(t, pool), wantKeys)
	if got, want := triggerStates(t, pool), map[string]string{
		"license_audit_no_update_delete": "A", "license_audit_no_truncate": "A",
	}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("license_audit triggers (name: tgenabled) = %v, want %v (enabled ALWAYS)", got, want)
	}
	for _, table := range []string{"license_audit_tree", "audit_checkpoints"} {
		if got, want := triggerStatesOf(t, pool, table), map[string]string{
			table + "_no_update_delete": "A", table + "_no_truncate": "A",
		}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s triggers (name: tgenabled) = %v, want %v (enabled ALWAYS)", table, got, want)
		}
	}
	if got := schemaVersion(t, pool); got != 4 || LatestVersion() != 4 {
		t.Errorf("schema version %d, LatestVersion %d; want 4", got, LatestVersion())
	}

	// Arrays are never NULL and revoked defaults to false.
	mustExecSQL(t, dsn, "INSERT INTO org_licenses (org_slug, last_seq) VALUES ('acme', 1)")
	var products, features []string
	var revoked bool
	if err := pool.QueryRow(testContext(t), "SELECT products, features, revoked FROM org_licenses").Scan(&products, &features, &revoked); err != nil {
		t.Fatal(err)
	}
	if products == nil || features == nil || len(products)+len(features) != 0 || revoked {
		t.Errorf("defaults: products %#v features %#v revoked %v", products, features, revoked)
	}
	if err := execSQL(t, dsn, "INSERT INTO org_licenses (org_slug, last_seq, products) VALUES ('b', 1, NULL)"); errSQLState(err) != "23502" {
		t.Errorf("NULL products: err %v, want not_null_violation", err)
	}
}

// catalogSnapshot is what a second `up` must leave as it was.
func catalogSnapshot(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	var acl, versions string
	if err := pool.QueryRow(testContext(t), `SELECT string_agg(relname || '=' || COALESCE(relacl::text, ''), ' ' ORDER BY relname)
		FROM pg_class WHERE relnamespace = current_schema()::regnamespace`).Scan(&acl); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(testContext(t), `SELECT string_agg(version_id || ':' || is_applied || ':' || tstamp, ' ' ORDER BY id)
		FROM `+VersionTable).Scan(&versions); err != nil {
		t.Fatal(err)
	}
	return strings.Join(schemaColumns(t, pool), "\n") + "\n" + acl + "\n" + versions + "\n" + fmt.Sprint(triggerStates(t, pool))
}

func TestMigrateUpTwiceIsANoOp(t *testing.T) {
	t.Parallel()
	dsn, pool := migratedDB(t)
	before := catalogSnapshot(t, pool)
	out, err := runMigrate(t, dsn, MigrateUp, Roles{})
	if err != nil {
		t.Fatalf("second up: %v\n%s", err, out)
	}
	if !strings.Contains(out, "no migrations to apply") || strings.Contains(out, "applied 0") {
		t.Errorf("second up output:\n%s", out)
	}
	if after := catalogSnapshot(t, pool); after != before {
		t.Errorf("second up changed the catalog:\nbefore %s\nafter  %s", before, after)
	}
}

func TestMigrateStatus(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	pool := pgtest.NewPool(t, dsn)
	out, err := runMigrate(t, dsn, MigrateStatus, Roles{})
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []string{
		`^VERSION\s+STATE\s+APPLIED AT\s+MIGRATION$`,
		`^1\s+pending\s+-\s+00001_read_model\.sql$`,
		`^2\s+pending\s+-\s+00002_audit_append_only\.sql$`,
		`^3\s+pending\s+-\s+00003_audit_tree\.sql$`,
		`^4\s+pending\s+-\s+00004_seat_usage\.sql$`,
		`^schema at version 0; 4 pending$`,
	}
	matchLines(t, "status before up", lines, want)
	if relationExistsIn(t, pool, VersionTable) {
		t.Errorf("status created %s", VersionTable)
	}

	if out, err := runMigrate(t, dsn, MigrateUp, Roles{}); err != nil {
		t.Fatalf("up: %v\n%s", err, out)
	}
	out, err = runMigrate(t, dsn, MigrateStatus, Roles{})
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	want = []string{
		`^VERSION\s+STATE\s+APPLIED AT\s+MIGRATION$`,
		`^1\s+applied\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+00001_read_model\.sql$`,
		`^2\s+applied\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+00002_audit_append_only\.sql$`,
		`^3\s+applied\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+00003_audit_tree\.sql$`,
		`^4\s+applied\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+00004_seat_usage\.sql$`,
		`^schema at version 4; 0 pending$`,
	}
	matchLines(t, "status after up", strings.Split(strings.TrimSpace(out), "\n"), want)
}

func matchLines(t *testing.T, what string, lines, patterns []string) {
	t.Helper()
	if len(lines) != len(patterns) {
		t.Errorf("%s: %d lines, want %d:\n%s", what, len(lines), len(patterns), strings.Join(lines, "\n"))
		return
	}
	for i, p := range patterns {
		if !regexpMatch(p, lines[i]) {
			t.Errorf("%s: line %d %q does not match %s", what, i+1, lines[i], p)
		}
	}
}

func TestMigrateDownAndUpAgainWithAnEmptyAudit(t *testing.T) {
	t.Parallel()
	dsn, pool := migratedDB(t)

	out, err := runMigrate(t, dsn, MigrateDown, Roles{})
	if err != nil || !strings.Contains(out, "rolled back 00004_seat_usage.sql") || schemaVersion(t, pool) != 3 {
		t.Fatalf("down from 4: %v, version %d\n%s", err, schemaVersion(t, pool), out)
	}
	if cols := strings.Join(schemaColumns(t, pool), " "); strings.Contains(cols, "users_active") || strings.Contains(cols, "users_reported_at") {
		t.Error("the seat usage columns are left after their down migration")
	}
	out, err = runMigrate(t, dsn, MigrateDown, Roles{})
	if err != nil || !strings.Contains(out, "rolled back 00003_audit_tree.sql") || schemaVersion(t, pool) != 2 {
		t.Fatalf("down from 3: %v, version %d\n%s", err, schemaVersion(t, pool), out)
	}
	if relationExistsIn(t, pool, "license_audit_tree") || relationExistsIn(t, pool, "audit_checkpoints") {
		t.Error("the tree's tables are left after its down migration")
	}
	out, err = runMigrate(t, dsn, MigrateDown, Roles{})
	if err != nil {
		t.Fatalf("down: %v\n%s", err, out)
	}
	if !strings.Contains(out, "rolled back 00002_audit_append_only.sql") || schemaVersion(t, pool) != 1 {
		t.Fatalf("first down: version %d, output:\n%s", schemaVersion(t, pool), out)
	}
	if len(triggerStates(t, pool)) != 0 || !relationExistsIn(t, pool, "license_audit") {
		t.Errorf("after the first down: triggers %v, license_audit exists %v", triggerStates(t, pool), relationExistsIn(t, pool, "license_audit"))
	}

	out, err = runMigrate(t, dsn, MigrateDown, Roles{})
	if err != nil || !strings.Contains(out, "rolled back 00001_read_model.sql") || schemaVersion(t, pool) != 0 {
		t.Fatalf("second down: %v, version %d\n%s", err, schemaVersion(t, pool), out)
	}
	if got := schemaTables(t, pool); !slices.Equal(got, []string{VersionTable}) {
		t.Errorf("tables after downs: %v", got)
	}
	out, err = runMigrate(t, dsn, MigrateDown, Roles{})
	if err != nil || !strings.Contains(out, "nothing to roll back") {
		t.Errorf("down at version 0: %v\n%s", err, out)
	}

	out, err = runMigrate(t, dsn, MigrateUp, Roles{})
	if err != nil || schemaVersion(t, pool) != 4 {
		t.Fatalf("up again: %v, version %d\n%s", err, schemaVersion(t, pool), out)
	}
	diffLists(t, "columns after down and up", schemaColumns(t, pool), wantColumns)
	// The new tables are granted again.
	_, appDSN := newLoginRole(t, dsn, DefaultAppRole)
	if err := insertAuditRow(t, appDSN, 1); err != nil {
		t.Errorf("app role INSERT after down and up: %v", err)
	}
}

func TestMigrateDownRefusesWhileTheAuditHasRows(t *testing.T) {
	t.Parallel()
	dsn, pool := migratedDB(t)
	if err := insertAuditRow(t, dsn, 1); err != nil {
		t.Fatal(err)
	}
	before := catalogSnapshot(t, pool)

	out, err := runMigrate(t, dsn, MigrateDown, Roles{})
	if !errors.Is(err, ErrAuditNotEmpty) {
		t.Fatalf("down with an audit row: err %v, want ErrAuditNotEmpty\n%s", err, out)
	}
	if !strings.Contains(err.Error(), "license_audit has rows") {
		t.Errorf("error does not say why: %v", err)
	}

	// The down SQL refuses by itself too, inside the migration's
	// transaction, for both migrations: bypass the check in Go.
	db, err := openMigrateDB(testContext(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p, err := newMigrationProvider(db)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Down(testContext(t)); !errors.Is(downError(err), ErrAuditNotEmpty) {
		t.Errorf("down SQL of migration 2 with a row: %v, want the refusal", err)
	}
	if after := catalogSnapshot(t, pool); after != before {
		t.Errorf("refused down changed the catalog:\nbefore %s\nafter  %s", before, after)
	}
	var rows int
	if err := pool.QueryRow(testContext(t), "SELECT count(*) FROM license_audit").Scan(&rows); err != nil || rows != 1 {
		t.Errorf("audit rows after refused down: %d, %v", rows, err)
	}

	// Migration 1's down SQL on a database at version 1 with a row.
	dsn1 := pgtest.NewDatabase(t)
	db1, err := openMigrateDB(testContext(t), dsn1)
	if err != nil {
		t.Fatal(err)
	}
	defer db1.Close()
	p1, err := newMigrationProvider(db1)
	if err != nil {
		t.Fatal(err)
	}
	defer p1.Close()
	if _, err := p1.UpTo(testContext(t), 1); err != nil {
		t.Fatal(err)
	}
	if err := insertAuditRow(t, dsn1, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := p1.Down(testContext(t)); !errors.Is(downError(err), ErrAuditNotEmpty) {
		t.Errorf("down SQL of migration 1 with a row: %v, want the refusal", err)
	}
	pool1 := pgtest.NewPool(t, dsn1)
	if v := schemaVersion(t, pool1); v != 1 || !relationExistsIn(t, pool1, "license_audit") {
		t.Errorf("after refused down of migration 1: version %d, license_audit exists %v", v, relationExistsIn(t, pool1, "license_audit"))
	}
}

func TestMigrateArguments(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	var out bytes.Buffer
	if err := Migrate(ctx, "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=5", MigrateStatus, Roles{}, &out); !errors.Is(err, ErrUnavailable) {
		t.Errorf("closed port: %v, want ErrUnavailable", err)
	}
	if err := Migrate(ctx, "postgres://x:y@[::1", MigrateUp, Roles{}, &out); !errors.Is(err, ErrInvalidDSN) {
		t.Errorf("bad DSN: %v, want ErrInvalidDSN", err)
	} else if strings.Contains(err.Error(), ":y@") {
		t.Errorf("the error shows the password: %v", err)
	}
	if err := Migrate(ctx, "postgres://127.0.0.1:1/x", "sideways", Roles{}, &out); err == nil || !strings.Contains(err.Error(), "up, down or status") {
		t.Errorf("unknown command: %v", err)
	}
	if err := Migrate(ctx, "postgres://127.0.0.1:1/x", MigrateUp, Roles{App: "Bad-Name"}, &out); err == nil || !strings.Contains(err.Error(), "invalid role name") {
		t.Errorf("bad role: %v", err)
	}
}

func TestRoleNames(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"ledger_app", "_x", "a", "a1_b2", strings.Repeat("a", 63)} {
		if err := ValidateRoleName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Ledger", "1app", "app-role", `a"b`, "a b", "a;drop", strings.Repeat("a", 64),
		"pg_app", "public", "none", "current_user", "é"} {
		if err := ValidateRoleName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if err := (Roles{App: "same", Auditor: "same"}).Validate(); err == nil {
		t.Error("identical roles accepted")
	}
	if r := (Roles{}).WithDefaults(); r != DefaultRoles() || r.App != "ledger_app" || r.Auditor != "ledger_auditor" {
		t.Errorf("defaults: %+v", r)
	}
}

// privilegeMatrix returns, per table, the privileges role holds.
func privilegeMatrix(t *testing.T, pool *pgxpool.Pool, role string) map[string]string {
	t.Helper()
	out := make(map[string]string)
	for _, table := range []string{tableAudit, tableAuditTree, tableAuditSigned, tableOrgLicenses, tableRevoked, tableCheckpoints, VersionTable} {
		var held []string
		for _, p := range []string{"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"} {
			var ok bool
			if err := pool.QueryRow(testContext(t), "SELECT has_table_privilege($1, $2, $3)", role, table, p).Scan(&ok); err != nil {
				t.Fatal(err)
			}
			if ok {
				held = append(held, p)
			}
		}
		out[table] = strings.Join(held, ",")
	}
	var usage bool
	if err := pool.QueryRow(testContext(t), "SELECT has_schema_privilege($1, current_schema(), 'USAGE')", role).Scan(&usage); err != nil {
		t.Fatal(err)
	}
	out["schema USAGE"] = fmt.Sprint(usage)
	return out
}

var (
	wantAppPrivileges = map[string]string{
		tableAudit:       "SELECT,INSERT",
		tableAuditTree:   "SELECT,INSERT",
		tableAuditSigned: "SELECT,INSERT",
		tableOrgLicenses: "SELECT,INSERT,UPDATE,DELETE",
		tableRevoked:     "SELECT,INSERT,UPDATE,DELETE",
		tableCheckpoints: "SELECT,INSERT,UPDATE,DELETE",
		VersionTable:     "SELECT",
		"schema USAGE":   "true",
	}
	wantAuditorPrivileges = map[string]string{
		tableAudit:       "SELECT",
		tableAuditTree:   "SELECT",
		tableAuditSigned: "SELECT",
		tableOrgLicenses: "SELECT",
		tableRevoked:     "SELECT",
		tableCheckpoints: "SELECT",
		VersionTable:     "SELECT",
		"schema USAGE":   "true",
	}
)

func checkMatrix(t *testing.T, pool *pgxpool.Pool, role string, want map[string]string) {
	t.Helper()
	got := privilegeMatrix(t, pool, role)
	for k, w := range want {
		if got[k] != w {
			t.Errorf("role %s on %s: %q, want %q", role, k, got[k], w)
		}
	}
}

func roleAttributes(t *testing.T, pool *pgxpool.Pool, role string) (exists, login, super bool) {
	t.Helper()
	err := pool.QueryRow(testContext(t), "SELECT true, rolcanlogin, rolsuper FROM pg_roles WHERE rolname = $1", role).Scan(&exists, &login, &super)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, false, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return exists, login, super
}

func TestRolesAreCreatedNoLoginAndGrantedExactly(t *testing.T) {
	t.Parallel()
	dsn, pool := migratedDB(t)
	for _, role := range []string{DefaultAppRole, DefaultAuditorRole} {
		if exists, login, super := roleAttributes(t, pool, role); !exists || login || super {
			t.Errorf("role %s: exists %v login %v super %v; want a NOLOGIN role", role, exists, login, super)
		}
	}
	checkMatrix(t, pool, DefaultAppRole, wantAppPrivileges)
	checkMatrix(t, pool, DefaultAuditorRole, wantAuditorPrivileges)

	// Other role names: created and granted too; the defaults keep theirs.
	app, auditor := randomName(t, "ledger_t_app_"), randomName(t, "ledger_t_aud_")
	dropRolesAtEnd(t, dsn, app, auditor)
	out, err := runMigrate(t, dsn, MigrateUp, Roles{App: app, Auditor: auditor})
	if err != nil {
		t.Fatalf("up with custom roles: %v\n%s", err, out)
	}
	if !strings.Contains(out, "roles "+app+" (app) and "+auditor+" (auditor) granted") {
		t.Errorf("output:\n%s", out)
	}
	for _, role := range []string{app, auditor} {
		if exists, login, _ := roleAttributes(t, pool, role); !exists || login {
			t.Errorf("role %s: exists %v login %v", role, exists, login)
		}
	}
	checkMatrix(t, pool, app, wantAppPrivileges)
	checkMatrix(t, pool, auditor, wantAuditorPrivileges)
	checkMatrix(t, pool, DefaultAppRole, wantAppPrivileges)

	// Extra privileges someone granted are taken back by the next up; a
	// role that already exists is kept as it is.
	mustExecSQL(t, dsn, "GRANT UPDATE, DELETE, TRUNCATE ON license_audit TO "+app)
	mustExecSQL(t, dsn, "GRANT INSERT, TRIGGER ON org_licenses TO "+auditor)
	if out, err := runMigrate(t, dsn, MigrateUp, Roles{App: app, Auditor: auditor}); err != nil {
		t.Fatalf("up again: %v\n%s", err, out)
	}
	checkMatrix(t, pool, app, wantAppPrivileges)
	checkMatrix(t, pool, auditor, wantAuditorPrivileges)
}

func TestRolesRefuseOwnerAndSuperuser(t *testing.T) {
	t.Parallel()
	dsn, pool := migratedDB(t)
	var current string
	if err := pool.QueryRow(testContext(t), "SELECT current_user::text").Scan(&current); err != nil {
		t.Fatal(err)
	}
	if ValidateRoleName(current) != nil {
		t.Skipf("test user %q is not a valid ledger role name", current)
	}
	out, err := runMigrate(t, dsn, MigrateUp, Roles{App: current, Auditor: DefaultAuditorRole})
	if err == nil || !(strings.Contains(err.Error(), "owns license_audit") || strings.Contains(err.Error(), "superuser")) {
		t.Errorf("up with the owner as app role: %v\n%s", err, out)
	}
}

func TestConcurrentMigrateUp(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	app, auditor := randomName(t, "ledger_t_app_"), randomName(t, "ledger_t_aud_")
	dropRolesAtEnd(t, dsn, app, auditor)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			var out bytes.Buffer
			errs[i] = Migrate(testContext(t), dsn, MigrateUp, Roles{App: app, Auditor: auditor}, &out)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("migrator %d: %v", i, err)
		}
	}
	pool := pgtest.NewPool(t, dsn)
	if v := schemaVersion(t, pool); v != 4 {
		t.Errorf("version %d", v)
	}
	var applied int
	if err := pool.QueryRow(testContext(t), "SELECT count(*) FROM "+VersionTable+" WHERE version_id > 0").Scan(&applied); err != nil || applied != 4 {
		t.Errorf("%d version rows, %v; want each migration once", applied, err)
	}
	checkMatrix(t, pool, app, wantAppPrivileges)
	checkMatrix(t, pool, auditor, wantAuditorPrivileges)
}

func TestAppRoleCannotRewriteTheAudit(t *testing.T) {
	t.Parallel()
	dsn, _ := migratedDB(t)
	_, appDSN := newLoginRole(t, dsn, DefaultAppRole)

	if err := insertAuditRow(t, appDSN, 1); err != nil {
		t.Fatalf("app INSERT: %v", err)
	}
	appPool := pgtest.NewPool(t, appDSN)
	var n int
	if err := appPool.QueryRow(testContext(t), "SELECT count(*) FROM license_audit").Scan(&n); err != nil || n != 1 {
		t.Fatalf("app SELECT: %d rows, %v", n, err)
	}
	for _, stmt := range []string{
		"UPDATE license_audit SET type = 'forged'",
		"DELETE FROM license_audit",
		"TRUNCATE license_audit",
	} {
		// Refused by the grants already, before the triggers.
		if err := execSQL(t, appDSN, stmt); errSQLState(err) != "42501" || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("app %s: err %v, want permission denied", stmt, err)
		}
	}
	// The read model and checkpoint are the app's to write.
	for _, stmt := range []string{
		"INSERT INTO org_licenses (org_slug, last_seq) VALUES ('acme', 1)",
		"UPDATE org_licenses SET last_seq = 2",
		"INSERT INTO revoked_licenses VALUES ('acme', gen_random_uuid(), 2)",
		"DELETE FROM revoked_licenses",
		"INSERT INTO projection_checkpoints (name, last_seq) VALUES ('p', 1)",
		"UPDATE projection_checkpoints SET last_seq = 2 WHERE name = 'p' AND last_seq = 1",
	} {
		if err := execSQL(t, appDSN, stmt); err != nil {
			t.Errorf("app %s: %v", stmt, err)
		}
	}
	// Nor can it disable the protection.
	if err := execSQL(t, appDSN, "ALTER TABLE license_audit DISABLE TRIGGER ALL"); errSQLState(err) != "42501" {
		t.Errorf("app ALTER TABLE: %v, want insufficient_privilege", err)
	}
	if err := appPool.QueryRow(testContext(t), "SELECT count(*) FROM license_audit WHERE type = 'license.removed'").Scan(&n); err != nil || n != 1 {
		t.Errorf("audit after the attempts: %d rows, %v", n, err)
	}
}

func TestOwnerCannotRewriteTheAuditEither(t *testing.T) {
	t.Parallel()
	dsn, pool := migratedDB(t)
	if err := insertAuditRow(t, dsn, 1); err != nil {
		t.Fatal(err)
	}
	var super bool
	if err := pool.QueryRow(testContext(t), "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&super); err != nil {
		t.Fatal(err)
	}
	stmts := []string{
		"UPDATE license_audit SET type = 'forged'",
		"DELETE FROM license_audit",
		"TRUNCATE license_audit",
	}
	for _, stmt := range stmts {
		err := execSQL(t, dsn, stmt)
		if errSQLState(err) != "42501" || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("owner %s: err %v, want the append-only trigger's refusal", stmt, err)
		}
	}
	if super {
		// A superuser session in replica mode skips ordinary triggers, not
		// ALWAYS ones.
		for _, stmt := range stmts {
			err := execSQL(t, dsn, "SET session_replication_role = replica; "+stmt)
			if !strings.Contains(fmt.Sprint(err), "append-only") {
				t.Errorf("superuser in replica mode, %s: err %v, want the trigger's refusal", stmt, err)
			}
		}
	}
	var n int
	if err := pool.QueryRow(testContext(t), "SELECT count(*) FROM license_audit WHERE type = 'license.removed'").Scan(&n); err != nil || n != 1 {
		t.Errorf("audit after the attempts: %d rows, %v", n, err)
	}
}

func TestAuditorRoleOnlyReads(t *testing.T) {
	t.Parallel()
	dsn, _ := migratedDB(t)
	if err := insertAuditRow(t, dsn, 1); err != nil {
		t.Fatal(err)
	}
	mustExecSQL(t, dsn, "INSERT INTO org_licenses (org_slug, last_seq) VALUES ('acme', 1)")
	_, audDSN := newLoginRole(t, dsn, DefaultAuditorRole)
	audPool := pgtest.NewPool(t, audDSN)
	for _, q := range []string{
		"SELECT count(*) FROM license_audit",
		"SELECT count(*) FROM org_licenses",
		"SELECT count(*) FROM revoked_licenses",
		"SELECT count(*) FROM projection_checkpoints",
	} {
		var n int
		if err := audPool.QueryRow(testContext(t), q).Scan(&n); err != nil {
			t.Errorf("auditor %s: %v", q, err)
		}
	}
	if err := insertAuditRow(t, audDSN, 2); errSQLState(err) != "42501" {
		t.Errorf("auditor INSERT into license_audit: %v, want insufficient_privilege", err)
	}
	for _, stmt := range []string{
		"INSERT INTO org_licenses (org_slug, last_seq) VALUES ('x', 1)",
		"UPDATE org_licenses SET last_seq = 5",
		"DELETE FROM org_licenses",
		"INSERT INTO projection_checkpoints (name, last_seq) VALUES ('p', 1)",
		"DELETE FROM revoked_licenses",
		"UPDATE license_audit SET type = 'x'",
	} {
		if err := execSQL(t, audDSN, stmt); errSQLState(err) != "42501" {
			t.Errorf("auditor %s: %v, want insufficient_privilege", stmt, err)
		}
	}
}

func regexpMatch(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }

func TestCreateRoleToleratesConcurrentCreation(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	db, err := openMigrateDB(testContext(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(16)
	for range 3 {
		name := randomName(t, "ledger_t_race_")
		dropRolesAtEnd(t, dsn, name)
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		start := make(chan struct{})
		for range 16 {
			wg.Go(func() {
				<-start
				if err := createRoleIfAbsent(testContext(t), db, name); err != nil {
					errs <- err
				}
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("concurrent CREATE ROLE %s: %v", name, err)
		}
	}
}
