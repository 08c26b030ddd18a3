package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Default role names (LEDGER_DB_APP_ROLE, LEDGER_DB_AUDITOR_ROLE).
const (
	DefaultAppRole     = "ledger_app"
	DefaultAuditorRole = "ledger_auditor"
)

// Roles names the two NOLOGIN roles `ledger migrate up` creates and grants.
// Operators grant them to login users:
//
//	CREATE ROLE ledger_svc LOGIN PASSWORD '…';
//	GRANT ledger_app TO ledger_svc;        -- DATABASE_URL of ledger serve
//	CREATE ROLE compliance LOGIN PASSWORD '…';
//	GRANT ledger_auditor TO compliance;    -- read-only queries
//
// An empty field means the default name.
type Roles struct {
	// App may INSERT and SELECT license_audit, license_audit_tree and
	// audit_checkpoints (never UPDATE, DELETE or TRUNCATE them) and read
	// and write org_licenses, revoked_licenses and projection_checkpoints.
	App string
	// Auditor may SELECT license_audit, license_audit_tree,
	// audit_checkpoints, org_licenses, revoked_licenses and
	// projection_checkpoints, and nothing else.
	Auditor string
}

// DefaultRoles returns ledger_app and ledger_auditor.
func DefaultRoles() Roles { return Roles{App: DefaultAppRole, Auditor: DefaultAuditorRole} }

// WithDefaults returns r with empty names replaced by the defaults.
func (r Roles) WithDefaults() Roles {
	if r.App == "" {
		r.App = DefaultAppRole
	}
	if r.Auditor == "" {
		r.Auditor = DefaultAuditorRole
	}
	return r
}

// Validate checks both names (after defaults) and that they differ.
func (r Roles) Validate() error {
	r = r.WithDefaults()
	if err := ValidateRoleName(r.App); err != nil {
		return fmt.Errorf("app role: %w", err)
	}
	if err := ValidateRoleName(r.Auditor); err != nil {
		return fmt.Errorf("auditor role: %w", err)
	}
	if r.App == r.Auditor {
		return fmt.Errorf("the app and auditor roles must differ (both are %q)", r.App)
	}
	return nil
}

var roleNamePattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// reservedRoleNames cannot be created; pg_ is the server's own prefix.
var reservedRoleNames = map[string]bool{
	"public": true, "none": true, "current_role": true, "current_user": true, "session_user": true,
}

// ValidateRoleName accepts ^[a-z_][a-z0-9_]{0,62}$, minus names PostgreSQL
// reserves (pg_*, public, none, current_user, …). Valid names are still
// always quoted as identifiers in SQL.
func ValidateRoleName(name string) error {
	switch {
	case !roleNamePattern.MatchString(name):
		return fmt.Errorf("invalid role name %q: want ^[a-z_][a-z0-9_]{0,62}$", name)
	case strings.HasPrefix(name, "pg_"), reservedRoleNames[name]:
		return fmt.Errorf("invalid role name %q: reserved by PostgreSQL", name)
	}
	return nil
}

// quoteIdentifier quotes one SQL identifier.
func quoteIdentifier(name string) string { return pgx.Identifier{name}.Sanitize() }

// Tables of the schema, as the contract names them.
const (
	tableOrgLicenses    = "org_licenses"
	tableRevoked        = "revoked_licenses"
	tableAudit          = "license_audit"
	tableCheckpoints    = "projection_checkpoints"
	tableAuditTree      = "license_audit_tree"
	tableAuditSigned    = "audit_checkpoints"
	ledgerSchemaTable   = VersionTable
	rolesAdvisoryLockID = 0x6c65646765720001 // serialises concurrent grants in one database
)

// roleGrant is what one role may do on one table.
type roleGrant struct {
	table      string
	privileges string
}

// appGrants and auditorGrants are the whole of what each role may do on the
// ledger's tables: ensureRoles revokes anything else it granted before.
var appGrants = []roleGrant{
	{tableAudit, "SELECT, INSERT"},
	{tableAuditTree, "SELECT, INSERT"},
	{tableAuditSigned, "SELECT, INSERT"},
	{tableOrgLicenses, "SELECT, INSERT, UPDATE, DELETE"},
	{tableRevoked, "SELECT, INSERT, UPDATE, DELETE"},
	{tableCheckpoints, "SELECT, INSERT, UPDATE, DELETE"},
	{ledgerSchemaTable, "SELECT"},
}

var auditorGrants = []roleGrant{
	{tableAudit, "SELECT"},
	{tableAuditTree, "SELECT"},
	{tableAuditSigned, "SELECT"},
	{tableOrgLicenses, "SELECT"},
	{tableRevoked, "SELECT"},
	{tableCheckpoints, "SELECT"},
	{ledgerSchemaTable, "SELECT"},
}

// ensureRoles creates the roles NOLOGIN when absent and sets their grants on
// the migrated tables to exactly appGrants and auditorGrants (plus USAGE on
// the schema). It is idempotent and safe to run concurrently; roles are
// never dropped and other roles' grants are left alone.
func ensureRoles(ctx context.Context, db *sql.DB, roles Roles) error {
	roles = roles.WithDefaults()
	if err := roles.Validate(); err != nil {
		return err
	}
	for _, name := range []string{roles.App, roles.Auditor} {
		if err := createRoleIfAbsent(ctx, db, name); err != nil {
			return err
		}
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }() // a no-op after Commit
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", int64(rolesAdvisoryLockID)); err != nil {
		return fmt.Errorf("lock for grants: %w", err)
	}
	for _, name := range []string{roles.App, roles.Auditor} {
		if err := refuseOwnerRole(ctx, tx, name); err != nil {
			return err
		}
	}
	qualified := make(map[string]string)
	schemas := make(map[string]bool)
	for _, g := range appGrants {
		name, schema, err := qualifiedTable(ctx, tx, g.table)
		if err != nil {
			return err
		}
		qualified[g.table] = name
		schemas[schema] = true
	}
	both := quoteIdentifier(roles.App) + ", " + quoteIdentifier(roles.Auditor)
	var stmts []string
	for schema := range schemas {
		stmts = append(stmts, "GRANT USAGE ON SCHEMA "+quoteIdentifier(schema)+" TO "+both)
	}
	for _, table := range qualified {
		stmts = append(stmts, "REVOKE ALL ON TABLE "+table+" FROM "+both)
	}
	for _, g := range appGrants {
		stmts = append(stmts, "GRANT "+g.privileges+" ON TABLE "+qualified[g.table]+" TO "+quoteIdentifier(roles.App))
	}
	for _, g := range auditorGrants {
		stmts = append(stmts, "GRANT "+g.privileges+" ON TABLE "+qualified[g.table]+" TO "+quoteIdentifier(roles.Auditor))
	}
	// Nobody else gets the audit trail by default either.
	for _, t := range appendOnlyTables {
		stmts = append(stmts, "REVOKE ALL ON TABLE "+qualified[t]+" FROM PUBLIC")
	}
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return tx.Commit()
}

// createRoleIfAbsent creates name NOLOGIN unless it exists, tolerating
// another session creating it at the same time.
func createRoleIfAbsent(ctx context.Context, db *sql.DB, name string) error {
	var exists bool
	if err := db.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("look up role %q: %w", name, err)
	}
	if exists {
		return nil
	}
	_, err := db.ExecContext(ctx, "CREATE ROLE "+quoteIdentifier(name)+" NOLOGIN")
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pgErr) && (pgErr.Code == "42710" || pgErr.Code == "23505"):
		// duplicate_object, or unique_violation when the catalog insert
		// races: created by a concurrent session, which is what we want.
		return nil
	case errors.As(err, &pgErr) && pgErr.Code == "42501":
		return fmt.Errorf("cannot create role %q: %w; give the migrating user CREATEROLE, "+
			"or create the role as a superuser first: CREATE ROLE %s NOLOGIN", name, err, quoteIdentifier(name))
	}
	return fmt.Errorf("create role %q: %w", name, err)
}

// refuseOwnerRole refuses to grant to a role that is a superuser or a
// member of license_audit's owner: it would make every login user granted
// it able to rewrite the audit trail.
func refuseOwnerRole(ctx context.Context, tx *sql.Tx, name string) error {
	var super, owner bool
	err := tx.QueryRowContext(ctx, `SELECT r.rolsuper, pg_has_role(r.oid, c.relowner, 'MEMBER')
		FROM pg_roles r, pg_class c WHERE r.rolname = $1 AND c.oid = to_regclass($2)`, name, tableAudit).Scan(&super, &owner)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%w: table %s or role %q not found", ErrNotMigrated, tableAudit, name)
	case err != nil:
		return fmt.Errorf("inspect role %q: %w", name, err)
	case super:
		return fmt.Errorf("role %q is a superuser: choose another name for the ledger's roles", name)
	case owner:
		return fmt.Errorf("role %q owns %s (or is a member of its owner): choose another name for the ledger's roles", name, tableAudit)
	}
	return nil
}

// qualifiedTable returns the quoted schema-qualified name of table, as found
// through the search path, and its schema.
func qualifiedTable(ctx context.Context, tx *sql.Tx, table string) (qualified, schema string, err error) {
	err = tx.QueryRowContext(ctx, `SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.oid = to_regclass($1)`, table).Scan(&schema)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", fmt.Errorf("%w: table %s not found", ErrNotMigrated, table)
	}
	if err != nil {
		return "", "", fmt.Errorf("find table %s: %w", table, err)
	}
	return pgx.Identifier{schema, table}.Sanitize(), schema, nil
}
