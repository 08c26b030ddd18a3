package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"

	"github.com/licenseledger/ledger/internal/cli"
	"github.com/licenseledger/ledger/internal/postgres"
)

// migrateCmd applies, rolls back or lists the PostgreSQL migrations as the
// owner of the schema, and on up creates and grants the ledger's roles.
// Exit codes: 0 ok; 1 failed (a down refused while license_audit has rows,
// a failing migration, missing privileges to create roles); 2 usage
// (no database URL, bad role name); 4 database unreachable.
type migrateCmd struct {
	Command     string `arg:"" optional:"" enum:"up,down,status" default:"up" help:"up (default): apply every pending migration, then create and grant the roles; down: roll back the newest migration (refused while license_audit has rows); status: list migrations."`
	DatabaseURL string `name:"database-url" env:"LEDGER_MIGRATE_DATABASE_URL" placeholder:"URL" help:"PostgreSQL as the owner of the schema (a user allowed to create tables and roles). Required."`
	AppRole     string `name:"app-role" env:"LEDGER_DB_APP_ROLE" default:"ledger_app" help:"NOLOGIN role for ledger serve's DATABASE_URL user: INSERT and SELECT on the audit, read/write on the read model."`
	AuditorRole string `name:"auditor-role" env:"LEDGER_DB_AUDITOR_ROLE" default:"ledger_auditor" help:"NOLOGIN role for compliance users: SELECT on the audit and the read model."`
	Output      string `short:"o" enum:"text,json,table,csv" default:"text" placeholder:"text|json|table|csv" help:"For status: text (default: the table and a summary line); json: an array of {version, state, applied_at, migration}; table: the rows alone; csv: with a header line. up and down print text only."`
}

func (c *migrateCmd) Run(env *cli.Env) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return c.run(ctx, env)
}

func (c *migrateCmd) run(ctx context.Context, env *cli.Env) error {
	if c.DatabaseURL == "" {
		return cli.Usage("migrate needs the owner's database URL: set LEDGER_MIGRATE_DATABASE_URL or pass --database-url")
	}
	roles := postgres.Roles{App: c.AppRole, Auditor: c.AuditorRole}
	if err := roles.Validate(); err != nil {
		return cli.Usage("%v", err)
	}
	var err error
	switch {
	case c.Output != outText && c.Command != postgres.MigrateStatus:
		return cli.Usage("-o %s: only migrate status prints data; up and down print what they did", c.Output)
	case c.Output != outText:
		var rows []postgres.MigrationRow
		if rows, err = postgres.MigrationStatus(ctx, c.DatabaseURL); err == nil {
			err = writeRows(env.Stdout, c.Output, []string{"version", "state", "applied_at", "migration"}, rows)
		}
	default:
		err = postgres.Migrate(ctx, c.DatabaseURL, c.Command, roles, env.Stdout)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, postgres.ErrInvalidDSN):
		return &cli.Error{Code: cli.ExitUsage, Err: err}
	case errors.Is(err, postgres.ErrUnavailable):
		return &cli.Error{Code: cli.ExitUnavailable, Err: err}
	}
	return err
}
