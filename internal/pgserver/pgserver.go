// Package pgserver finds a PostgreSQL server and makes databases of its
// own on it: what the test suite (internal/testenv/pgtest) and `ledger
// bench` share. It never starts a server.
package pgserver

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os/user"
	"strings"

	"github.com/jackc/pgx/v5"
)

// LocalAddr is where a default installation listens.
const LocalAddr = "127.0.0.1:5432"

// LocalUsers are the roles a default or developer installation trusts
// without a password: postgres, and the OS user.
func LocalUsers() []string {
	users := []string{"postgres"}
	if u, err := user.Current(); err == nil && u.Username != "postgres" {
		users = append(users, u.Username)
	}
	return users
}

// LocalDSN is the maintenance database of role at addr, without TLS.
func LocalDSN(addr, role string) string {
	return fmt.Sprintf("postgres://%s@%s/postgres?sslmode=disable", url.PathEscape(role), addr)
}

// Ping connects to dsn and pings it within ctx.
func Ping(ctx context.Context, dsn string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx)
}

// Exec runs sql on its own connection to dsn.
func Exec(ctx context.Context, dsn, sql string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// CreateDatabase creates the empty database name on adminDSN's server
// (a user allowed to CREATE DATABASE) and returns its DSN. template0 never
// carries objects someone added to template1, and nobody connects to it,
// which CREATE DATABASE requires of its template.
func CreateDatabase(ctx context.Context, adminDSN, name string) (string, error) {
	dsn, err := WithDatabase(adminDSN, name)
	if err != nil {
		return "", err
	}
	if err := Exec(ctx, adminDSN, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE template0"); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return dsn, nil
}

// DropDatabase drops name if it exists; FORCE ends the sessions still
// open on it, such as pools not yet closed.
func DropDatabase(ctx context.Context, adminDSN, name string) error {
	if err := Exec(ctx, adminDSN, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// WithDatabase points dsn, in URL or keyword/value form, at database name.
func WithDatabase(dsn, name string) (string, error) {
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		// For keyword/value strings the last occurrence of a key wins.
		return dsn + " dbname=" + name, nil
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "", errors.New("cannot parse the database URL")
	}
	u.Path = "/" + name
	u.RawPath = ""
	return u.String(), nil
}
