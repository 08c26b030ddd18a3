package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/licenseledger/ledger/internal/pgserver"
)

// EnvDatabaseURL is the variable the test suite reads too: a PostgreSQL
// user allowed to CREATE DATABASE.
const EnvDatabaseURL = "LEDGER_TEST_DATABASE_URL"

// localServer is where bench looks when neither Config.DatabaseURL nor
// EnvDatabaseURL is set.
const localServer = "127.0.0.1:5432"

// errNoPostgres marks a figure that needs PostgreSQL when none answered:
// bench never starts a server of its own.
var errNoPostgres = errors.New("no PostgreSQL")

// pgServer is a PostgreSQL server on which the bench creates a database
// of its own per figure.
type pgServer struct{ adminDSN string }

// pgServer finds PostgreSQL once per run: Config.DatabaseURL, else
// EnvDatabaseURL, else 127.0.0.1:5432 as user postgres or the OS user,
// without a password.
func (r *runner) pgServer(ctx context.Context) (*pgServer, error) {
	if r.pg != nil {
		return r.pg, nil
	}
	if r.pgErr != nil {
		return nil, r.pgErr
	}
	r.progress("finding PostgreSQL (--database-url, %s, else %s)", EnvDatabaseURL, localServer)
	r.pg, r.pgErr = findPostgres(ctx, r.cfg.DatabaseURL)
	return r.pg, r.pgErr
}

func findPostgres(ctx context.Context, given string) (*pgServer, error) {
	from, dsns := "--database-url", []string{given}
	if given == "" {
		from, dsns = EnvDatabaseURL, []string{os.Getenv(EnvDatabaseURL)}
	}
	if dsns[0] == "" {
		from, dsns = localServer, nil
		for _, u := range pgserver.LocalUsers() {
			dsns = append(dsns, pgserver.LocalDSN(localServer, u))
		}
	}
	var tried []string
	for _, dsn := range dsns {
		err := ping(ctx, dsn)
		if err == nil {
			return &pgServer{adminDSN: dsn}, nil
		}
		tried = append(tried, err.Error())
	}
	return nil, fmt.Errorf("%w at %s (%s): start one, or pass --database-url or set %s to a user allowed to CREATE DATABASE",
		errNoPostgres, from, strings.Join(tried, "; "), EnvDatabaseURL)
}

func ping(ctx context.Context, dsn string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return pgserver.Ping(ctx, dsn)
}

// CreateDatabase creates an empty database, ledger_bench_<random>, and
// returns its DSN and a function that drops it.
func (s *pgServer) CreateDatabase() (dsn string, drop func() error, err error) {
	b := make([]byte, 6)
	rand.Read(b)
	name := "ledger_bench_" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if dsn, err = pgserver.CreateDatabase(ctx, s.adminDSN, name); err != nil {
		return "", nil, err
	}
	drop = func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return pgserver.DropDatabase(ctx, s.adminDSN, name)
	}
	return dsn, drop, nil
}
