package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Errors of CheckPrivileges; test with errors.Is.
var (
	// ErrNotMigrated: the schema is missing, older than this build, or
	// without its append-only triggers. Run `ledger migrate up`.
	ErrNotMigrated = errors.New("postgres: schema not migrated")
	// ErrUnderPrivileged: the user lacks privileges the app role grants.
	ErrUnderPrivileged = errors.New("postgres: database user lacks the app role's privileges")
	// ErrOverPrivileged: the user could rewrite the audit trail (it owns
	// license_audit, is a superuser, or may UPDATE, DELETE or TRUNCATE it).
	ErrOverPrivileged = errors.New("postgres: database user could rewrite the audit trail")
)

// appendOnlyTables are the tables that are only ever appended to: the
// trail, its tree hashes kept aside, and its signed checkpoints. Each has
// the triggers <table>_no_update_delete and <table>_no_truncate
// (migrations 2 and 3).
var appendOnlyTables = []string{tableAudit, tableAuditTree, tableAuditSigned}

// requiredPrivileges are what the ledger does on each table.
var requiredPrivileges = []roleGrant{
	{tableAudit, "SELECT"}, {tableAudit, "INSERT"},
	{tableAuditTree, "SELECT"}, {tableAuditTree, "INSERT"},
	{tableAuditSigned, "SELECT"}, {tableAuditSigned, "INSERT"},
	{tableOrgLicenses, "SELECT"}, {tableOrgLicenses, "INSERT"}, {tableOrgLicenses, "UPDATE"}, {tableOrgLicenses, "DELETE"},
	{tableRevoked, "SELECT"}, {tableRevoked, "INSERT"}, {tableRevoked, "UPDATE"}, {tableRevoked, "DELETE"},
	{tableCheckpoints, "SELECT"}, {tableCheckpoints, "INSERT"}, {tableCheckpoints, "UPDATE"}, {tableCheckpoints, "DELETE"},
	{VersionTable, "SELECT"},
}

// forbiddenAuditPrivileges would let the user rewrite history.
var forbiddenAuditPrivileges = []string{"UPDATE", "DELETE", "TRUNCATE"}

// CheckPrivileges checks the user pool connects as (ledger serve's
// DATABASE_URL) against the contract: a login user granted the app role, on
// a fully migrated schema. It returns, first match wins:
//
//   - ErrNotMigrated when a table is missing (or outside the user's search
//     path or schema privileges), the schema is older than LatestVersion, or
//     an append-only trigger is missing or disabled;
//   - ErrUnderPrivileged when the user lacks a privilege of the app role,
//     such as INSERT or SELECT on license_audit;
//   - ErrOverPrivileged when the user is (or may become) a superuser, owns
//     license_audit (or is a member of its owner), or holds UPDATE, DELETE or
//     TRUNCATE on it.
//
// ErrOverPrivileged is only returned when nothing else is wrong, so a caller
// may downgrade it to a warning (ledger serve --allow-owner, development).
// Every error says what is wrong and how to fix it.
func CheckPrivileges(ctx context.Context, pool *pgxpool.Pool) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return classifyConnectError(err)
	}
	defer conn.Release()

	var user string
	var missing []string
	err = conn.QueryRow(ctx, `SELECT current_user::text,
		ARRAY(SELECT t FROM unnest($1::text[]) AS t WHERE to_regclass(t) IS NULL)`,
		[]string{tableAudit, tableAuditTree, tableAuditSigned, tableOrgLicenses, tableRevoked, tableCheckpoints, VersionTable}).Scan(&user, &missing)
	if err != nil {
		return fmt.Errorf("postgres: check privileges: %w", err)
	}
	if len(missing) > 0 && !slices.Contains(missing, VersionTable) {
		// A schema behind this release lacks its newer tables: say so.
		var version int64
		if err := conn.QueryRow(ctx, "SELECT COALESCE(max(version_id), 0) FROM "+quoteIdentifier(VersionTable)).Scan(&version); err == nil &&
			version > 0 && version < LatestVersion() {
			return fmt.Errorf("%w: schema at version %d, this ledger needs %d: run `ledger migrate up` with "+
				"LEDGER_MIGRATE_DATABASE_URL (the owner)", ErrNotMigrated, version, LatestVersion())
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: user %q finds no table %s (an unmigrated database, a schema outside its search_path, "+
			"or no USAGE on the schema): run `ledger migrate up` with LEDGER_MIGRATE_DATABASE_URL (the owner), "+
			"then connect as a user granted %s", ErrNotMigrated, user, strings.Join(missing, ", "), DefaultAppRole)
	}

	// Privileges, one by one: has_table_privilege with a list is true when
	// any one of them is held.
	tables := make([]string, 0, len(requiredPrivileges)+len(appendOnlyTables)*len(forbiddenAuditPrivileges))
	privs := make([]string, 0, cap(tables))
	for _, g := range requiredPrivileges {
		tables, privs = append(tables, g.table), append(privs, g.privileges)
	}
	for _, t := range appendOnlyTables {
		for _, p := range forbiddenAuditPrivileges {
			tables, privs = append(tables, t), append(privs, p)
		}
	}
	rows, err := conn.Query(ctx, `SELECT has_table_privilege(to_regclass(t), p)
		FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS x(t, p, n) ORDER BY n`, tables, privs)
	if err != nil {
		return fmt.Errorf("postgres: check privileges: %w", err)
	}
	held := make(map[roleGrant]bool, len(tables))
	i := 0
	for rows.Next() {
		var ok bool
		if err := rows.Scan(&ok); err != nil {
			rows.Close()
			return fmt.Errorf("postgres: check privileges: %w", err)
		}
		held[roleGrant{tables[i], privs[i]}] = ok
		i++
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: check privileges: %w", err)
	}

	if held[roleGrant{VersionTable, "SELECT"}] {
		var version int64
		if err := conn.QueryRow(ctx, "SELECT COALESCE(max(version_id), 0) FROM "+quoteIdentifier(VersionTable)).Scan(&version); err != nil {
			return fmt.Errorf("postgres: schema version: %w", err)
		}
		if latest := LatestVersion(); version < latest {
			return fmt.Errorf("%w: schema at version %d, this ledger needs %d: run `ledger migrate up` with "+
				"LEDGER_MIGRATE_DATABASE_URL (the owner)", ErrNotMigrated, version, latest)
		}
	}
	if err := checkAppendOnlyTriggers(ctx, conn); err != nil {
		return err
	}

	var lacking []string
	for i := 0; i < len(requiredPrivileges); {
		table := requiredPrivileges[i].table
		var missing []string
		for ; i < len(requiredPrivileges) && requiredPrivileges[i].table == table; i++ {
			if g := requiredPrivileges[i]; !held[g] {
				missing = append(missing, g.privileges)
			}
		}
		if len(missing) > 0 {
			lacking = append(lacking, strings.Join(missing, ", ")+" on "+table)
		}
	}
	if len(lacking) > 0 {
		return fmt.Errorf("%w: user %q lacks %s: as the owner, run `ledger migrate up` (which grants the roles) "+
			"and GRANT %s TO %s (the app role is LEDGER_DB_APP_ROLE, default %s)",
			ErrUnderPrivileged, user, strings.Join(lacking, "; "), DefaultAppRole, quoteIdentifier(user), DefaultAppRole)
	}

	var owner string
	var super, owns bool
	var superRoles []string
	err = conn.QueryRow(ctx, `SELECT pg_get_userbyid(c.relowner)::text,
		(SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
		ARRAY(SELECT s.rolname::text FROM pg_roles s WHERE s.rolsuper AND s.rolname <> current_user
			AND pg_has_role(current_user, s.oid, 'MEMBER') ORDER BY 1),
		pg_has_role(current_user, c.relowner, 'MEMBER')
		FROM pg_class c WHERE c.oid = to_regclass($1)`, tableAudit).Scan(&owner, &super, &superRoles, &owns)
	if err != nil {
		return fmt.Errorf("postgres: check privileges: %w", err)
	}
	var why []string
	if super {
		why = append(why, "is a superuser")
	}
	if len(superRoles) > 0 {
		why = append(why, fmt.Sprintf("may SET ROLE to superuser %s", strings.Join(superRoles, ", ")))
	}
	if owns {
		if owner == user {
			why = append(why, "owns "+tableAudit)
		} else {
			why = append(why, fmt.Sprintf("is a member of %q, which owns %s", owner, tableAudit))
		}
	}
	for _, t := range appendOnlyTables {
		var may []string
		for _, p := range forbiddenAuditPrivileges {
			if held[roleGrant{t, p}] {
				may = append(may, p)
			}
		}
		if len(may) > 0 {
			why = append(why, "may "+strings.Join(may, ", ")+" "+t)
		}
	}
	if len(why) > 0 {
		return fmt.Errorf("%w: user %q %s. Connect as a user granted %s, not the owner: as the owner, "+
			"CREATE ROLE ledger_svc LOGIN PASSWORD '…'; GRANT %s TO ledger_svc; and put that user in DATABASE_URL "+
			"(or pass --allow-owner, for development only)",
			ErrOverPrivileged, user, strings.Join(why, ", "), DefaultAppRole, DefaultAppRole)
	}
	return nil
}

// checkAppendOnlyTriggers returns ErrNotMigrated unless both triggers exist
// on every append-only table and are enabled.
func checkAppendOnlyTriggers(ctx context.Context, conn *pgxpool.Conn) error {
	for _, table := range appendOnlyTables {
		if err := checkTableTriggers(ctx, conn, table); err != nil {
			return err
		}
	}
	return nil
}

func checkTableTriggers(ctx context.Context, conn *pgxpool.Conn, table string) error {
	rows, err := conn.Query(ctx, `SELECT tgname::text, tgenabled::text FROM pg_trigger
		WHERE tgrelid = to_regclass($1) AND NOT tgisinternal`, table)
	if err != nil {
		return fmt.Errorf("postgres: check triggers: %w", err)
	}
	enabled := make(map[string]string)
	for rows.Next() {
		var name, state string
		if err := rows.Scan(&name, &state); err != nil {
			rows.Close()
			return fmt.Errorf("postgres: check triggers: %w", err)
		}
		enabled[name] = state
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: check triggers: %w", err)
	}
	for _, name := range []string{table + "_no_update_delete", table + "_no_truncate"} {
		switch state, ok := enabled[name]; {
		case !ok:
			return fmt.Errorf("%w: trigger %s on %s is missing, so the audit trail is not append-only: "+
				"run `ledger migrate up` with LEDGER_MIGRATE_DATABASE_URL (the owner)", ErrNotMigrated, name, table)
		case state == "D":
			return fmt.Errorf("%w: trigger %s on %s is disabled, so the audit trail is not append-only: "+
				"as the owner, ALTER TABLE %s ENABLE ALWAYS TRIGGER %s", ErrNotMigrated, name, table, table, name)
		}
	}
	return nil
}
