package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/licenseledger/ledger/migrations"
)

// VersionTable is where goose records the applied migrations.
const VersionTable = "ledger_schema_migrations"

// Commands of Migrate.
const (
	MigrateUp     = "up"     // apply every pending migration, then create and grant the roles
	MigrateDown   = "down"   // roll back the newest applied migration
	MigrateStatus = "status" // list the migrations and whether each is applied
)

// ErrAuditNotEmpty is returned by a down migration while license_audit has
// rows: the audit trail is never dropped nor stripped of its protection.
var ErrAuditNotEmpty = errors.New("postgres: license_audit has rows: down migrations refuse to drop the audit trail or remove its append-only protection")

// ErrInvalidDSN is returned for a connection string that does not parse.
var ErrInvalidDSN = errors.New("postgres: invalid connection string")

// migrateLockID is the session advisory lock that serialises concurrent
// migrators on one database ("ledger-mg").
const migrateLockID int64 = 0x6c65646765722d6d

// migrateLockWait bounds how long Migrate waits for another migrator.
const migrateLockWait = 5 * time.Minute

// LatestVersion is the newest migration this build embeds.
func LatestVersion() int64 {
	names, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil {
		panic(err) // the pattern is constant and valid
	}
	var latest int64
	for _, name := range names {
		if v, err := goose.NumericComponent(name); err == nil && v > latest {
			latest = v
		}
	}
	return latest
}

// Migrate runs one migration command against dsn, which must connect as the
// owner of the schema (LEDGER_MIGRATE_DATABASE_URL), and reports on out:
//
//   - up applies every pending migration, each in its own transaction, then
//     creates roles.App and roles.Auditor NOLOGIN if absent and grants them
//     exactly their privileges. Running it again changes nothing; running
//     it with other role names creates and grants those too.
//   - down rolls back the newest applied migration, and returns
//     ErrAuditNotEmpty without changing anything while license_audit has
//     rows.
//   - status prints each migration and whether it is applied; it changes
//     nothing.
//
// Concurrent migrators on one database wait for each other. Empty role
// names mean the defaults; roles only matter to up. A DSN that does not
// parse wraps ErrInvalidDSN; a server that cannot be reached wraps
// ErrUnavailable.
func Migrate(ctx context.Context, dsn, cmd string, roles Roles, out io.Writer) error {
	switch cmd {
	case MigrateUp, MigrateDown, MigrateStatus:
	default:
		return fmt.Errorf("postgres: unknown migrate command %q: want up, down or status", cmd)
	}
	roles = roles.WithDefaults()
	if cmd == MigrateUp {
		if err := roles.Validate(); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
	}
	db, err := openMigrateDB(ctx, dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	p, err := newMigrationProvider(db)
	if err != nil {
		return err
	}
	defer p.Close()
	switch cmd {
	case MigrateUp:
		return migrateUp(ctx, db, p, roles, out)
	case MigrateDown:
		return migrateDown(ctx, db, p, out)
	default:
		return migrateStatus(ctx, db, p, out)
	}
}

// openMigrateDB opens and pings a database/sql handle on dsn for goose.
func openMigrateDB(ctx context.Context, dsn string) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgconn redacts the password from parse errors.
		return nil, fmt.Errorf("%w: %w", ErrInvalidDSN, err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = defaultConnectTimeout
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = "ledger migrate"
	}
	db := stdlib.OpenDB(*cfg)
	// One connection holds the migration lock; one more serves the checks.
	db.SetMaxOpenConns(3)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, classifyConnectError(err)
	}
	return db, nil
}

func newMigrationProvider(db *sql.DB) (*goose.Provider, error) {
	locker, err := lock.NewPostgresSessionLocker(
		lock.WithLockID(migrateLockID),
		lock.WithLockTimeout(1, uint64(migrateLockWait/time.Second)),
	)
	if err != nil {
		return nil, fmt.Errorf("postgres: migration lock: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS,
		goose.WithTableName(VersionTable),
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		return nil, fmt.Errorf("postgres: migrations: %w", err)
	}
	return p, nil
}

func migrateUp(ctx context.Context, db *sql.DB, p *goose.Provider, roles Roles, out io.Writer) error {
	results, err := p.Up(ctx)
	var partial *goose.PartialError
	if errors.As(err, &partial) {
		results = partial.Applied
	}
	for _, r := range results {
		fmt.Fprintf(out, "applied %s (%s)\n", path.Base(r.Source.Path), roundDuration(r.Duration))
	}
	if partial != nil {
		return fmt.Errorf("postgres: migration %s failed, nothing of it was applied: %w",
			path.Base(partial.Failed.Source.Path), partial.Err)
	}
	if err != nil {
		return fmt.Errorf("postgres: migrate up: %w", err)
	}
	if len(results) == 0 {
		fmt.Fprintln(out, "no migrations to apply")
	}
	version, err := p.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("postgres: schema version: %w", err)
	}
	fmt.Fprintf(out, "schema at version %d\n", version)
	if err := ensureRoles(ctx, db, roles); err != nil {
		return fmt.Errorf("postgres: roles: %w", err)
	}
	fmt.Fprintf(out, "roles %s (app) and %s (auditor) granted; give them to login users: GRANT %s TO <user>\n",
		roles.App, roles.Auditor, roles.App)
	return nil
}

func migrateDown(ctx context.Context, db *sql.DB, p *goose.Provider, out io.Writer) error {
	exists, err := relationExists(ctx, db, VersionTable)
	if err != nil {
		return err
	}
	if !exists {
		fmt.Fprintln(out, "nothing to roll back: no migration applied")
		return nil
	}
	// The down SQL refuses too, inside the migration's transaction; asking
	// first gives the same answer without taking the lock.
	if err := refuseNonEmptyAudit(ctx, db); err != nil {
		return err
	}
	r, err := p.Down(ctx)
	if errors.Is(err, goose.ErrNoNextVersion) {
		fmt.Fprintln(out, "nothing to roll back: no migration applied")
		return nil
	}
	if err != nil {
		return downError(err)
	}
	fmt.Fprintf(out, "rolled back %s (%s)\n", path.Base(r.Source.Path), roundDuration(r.Duration))
	version, err := p.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("postgres: schema version: %w", err)
	}
	fmt.Fprintf(out, "schema at version %d\n", version)
	return nil
}

// refuseNonEmptyAudit returns ErrAuditNotEmpty when license_audit exists
// and has a row.
func refuseNonEmptyAudit(ctx context.Context, db *sql.DB) error {
	exists, err := relationExists(ctx, db, tableAudit)
	if err != nil || !exists {
		return err
	}
	var rows bool
	if err := db.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM "+quoteIdentifier(tableAudit)+")").Scan(&rows); err != nil {
		return fmt.Errorf("postgres: look at %s: %w", tableAudit, err)
	}
	if rows {
		return ErrAuditNotEmpty
	}
	return nil
}

// downError maps the down SQL's own refusal to ErrAuditNotEmpty.
func downError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "P0001" && strings.HasPrefix(pgErr.Message, "license_audit has rows") {
		return fmt.Errorf("%w (%s)", ErrAuditNotEmpty, pgErr.Message)
	}
	var partial *goose.PartialError
	if errors.As(err, &partial) {
		return fmt.Errorf("postgres: rolling back %s failed, nothing was changed: %w",
			path.Base(partial.Failed.Source.Path), partial.Err)
	}
	return fmt.Errorf("postgres: migrate down: %w", err)
}

// MigrationRow is one migration as migrate status lists it.
type MigrationRow struct {
	Version   int64      `json:"version"`
	State     string     `json:"state"` // applied or pending
	AppliedAt *time.Time `json:"applied_at"`
	Migration string     `json:"migration"` // the file's name
}

// MigrationStatus lists the migrations and whether each is applied, as
// migrate status prints them; it changes nothing. Errors are Migrate's.
func MigrationStatus(ctx context.Context, dsn string) ([]MigrationRow, error) {
	db, err := openMigrateDB(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	p, err := newMigrationProvider(db)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	return migrationRows(ctx, db, p)
}

func migrationRows(ctx context.Context, db *sql.DB, p *goose.Provider) ([]MigrationRow, error) {
	exists, err := relationExists(ctx, db, VersionTable)
	if err != nil {
		return nil, err
	}
	var statuses []*goose.MigrationStatus
	if exists {
		if statuses, err = p.Status(ctx); err != nil {
			return nil, fmt.Errorf("postgres: migration status: %w", err)
		}
	} else {
		// Asking goose would create its table: status changes nothing.
		for _, s := range p.ListSources() {
			statuses = append(statuses, &goose.MigrationStatus{Source: s, State: goose.StatePending})
		}
	}
	rows := make([]MigrationRow, 0, len(statuses))
	for _, s := range statuses {
		r := MigrationRow{Version: s.Source.Version, State: string(s.State), Migration: path.Base(s.Source.Path)}
		if s.State == goose.StateApplied {
			at := s.AppliedAt
			r.AppliedAt = &at
		}
		rows = append(rows, r)
	}
	return rows, nil
}

func migrateStatus(ctx context.Context, db *sql.DB, p *goose.Provider, out io.Writer) error {
	rows, err := migrationRows(ctx, db, p)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tSTATE\tAPPLIED AT\tMIGRATION")
	var version int64
	pending := 0
	for _, r := range rows {
		applied := "-"
		if r.AppliedAt != nil {
			applied = r.AppliedAt.Format(time.DateTime)
			version = max(version, r.Version)
		} else {
			pending++
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", r.Version, r.State, applied, r.Migration)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "schema at version %d; %d pending\n", version, pending)
	return nil
}

// relationExists tells whether name resolves through the search path.
func relationExists(ctx context.Context, db *sql.DB, name string) (bool, error) {
	var exists bool
	if err := db.QueryRowContext(ctx, "SELECT to_regclass($1) IS NOT NULL", name).Scan(&exists); err != nil {
		return false, fmt.Errorf("postgres: look up %s: %w", name, err)
	}
	return exists, nil
}

func roundDuration(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return d.Round(time.Microsecond)
	}
	return d.Round(time.Millisecond)
}
