package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/licenseledger/ledger/internal/pgserver"
)

// localServer is probed before falling back to a throwaway cluster, for
// about a second so that an absent or firewalled server costs little. It is
// a variable so tests can point it at a closed port.
var localServer = "127.0.0.1:5432"

const localPingTimeout = time.Second

// server is a PostgreSQL server where tests may create databases.
type server struct {
	adminDSN string   // a maintenance database of a user allowed to CREATE DATABASE
	cluster  *cluster // set when pgtest started the server itself
}

type database struct {
	name string
	dsn  string
}

// discover finds a server as described in the package documentation and,
// when none works, explains every attempt and how to fix it.
func discover(envURL string) (*server, error) {
	if envURL != "" {
		if err := ping(envURL, adminTimeout); err != nil {
			return nil, fmt.Errorf("pgtest: %s is set but unusable: %w", EnvDatabaseURL, err)
		}
		return &server{adminDSN: envURL}, nil
	}
	var tried []string
	for _, u := range pgserver.LocalUsers() {
		dsn := pgserver.LocalDSN(localServer, u)
		err := ping(dsn, localPingTimeout)
		if err == nil {
			return &server{adminDSN: dsn}, nil
		}
		tried = append(tried, fmt.Sprintf("%s as user %s: %v", localServer, u, err))
	}
	c, err := startCluster()
	if err == nil {
		return &server{adminDSN: c.dsn(), cluster: c}, nil
	}
	tried = append(tried, "throwaway cluster: "+err.Error())
	return nil, noServerError(tried)
}

func noServerError(tried []string) error {
	return fmt.Errorf("pgtest: no PostgreSQL server for tests.\nTried:\n  - %s not set\n  - %s\n"+
		"Fix: install the PostgreSQL server (apt-get install postgresql), "+
		"or set %s to a server whose user may CREATE DATABASE",
		EnvDatabaseURL, strings.Join(tried, "\n  - "), EnvDatabaseURL)
}

func ping(dsn string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return pgserver.Ping(ctx, dsn)
}

func (s *server) createDatabase() (*database, error) {
	name, err := databaseName(packageName())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	dsn, err := pgserver.CreateDatabase(ctx, s.adminDSN, name)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	return &database{name: name, dsn: dsn}, nil
}

func (s *server) dropDatabase(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	return pgserver.DropDatabase(ctx, s.adminDSN, name)
}

// packageName guesses the package under test from the binary go test
// builds, which is named <package>.test.
func packageName() string {
	base := filepath.Base(os.Args[0])
	base = strings.TrimSuffix(base, ".exe")
	return strings.TrimSuffix(base, ".test")
}

var unsafeChars = regexp.MustCompile(`[^a-z0-9_]+`)

// maxIdentifier is PostgreSQL's NAMEDATALEN-1; longer names are truncated
// silently, which would make two random suffixes collide.
const maxIdentifier = 63

// databaseName builds ledger_test_<pkg>_<random> from characters that need
// no quoting anywhere.
func databaseName(pkg string) (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("pgtest: random name: %w", err)
	}
	suffix := "_" + hex.EncodeToString(b[:])
	pkg = strings.Trim(unsafeChars.ReplaceAllString(strings.ToLower(pkg), "_"), "_")
	if pkg == "" {
		pkg = "pkg"
	}
	name := "ledger_test_" + pkg
	if room := maxIdentifier - len(suffix); len(name) > room {
		name = name[:room]
	}
	return name + suffix, nil
}
