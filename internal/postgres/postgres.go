// Package postgres keeps the ledger's PostgreSQL side: the schema and its
// migrations (embedded from migrations/, applied with goose), the NOLOGIN
// roles and their grants, the privilege check a serving ledger runs on its
// own connection, the projector that folds the stream into the read model
// and the append-only, hash-chained audit trail, reads of both, and the
// Replayer (ledger replay) that rebuilds them into the ledger_shadow
// schema, compares them with the live tables and swaps them in.
//
// Two kinds of connection are used:
//
//   - the owner of the schema (LEDGER_MIGRATE_DATABASE_URL), for ledger
//     migrate, replay and stream reseed: it creates and alters tables and
//     grants the roles;
//   - a login user granted the app role (DATABASE_URL), for ledger serve and
//     everything else: it may INSERT and SELECT the audit trail, never
//     UPDATE, DELETE or TRUNCATE it. CheckPrivileges refuses anything more.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrUnavailable marks a failure to reach the server: network errors,
// timeouts, a server starting up or out of connection slots. A refused
// login or a missing database is a configuration error, not this.
var ErrUnavailable = errors.New("postgres: database unavailable")

// Pool settings used unless the DSN sets them (pool_max_conn_lifetime and
// the like, or connect_timeout, application_name).
const (
	defaultConnectTimeout    = 10 * time.Second
	defaultMaxConnLifetime   = 30 * time.Minute
	defaultLifetimeJitter    = 2 * time.Minute
	defaultMaxConnIdleTime   = 5 * time.Minute
	defaultHealthCheckPeriod = 30 * time.Second
	defaultApplicationName   = "ledger"
)

// Open connects a pool to dsn (URL or keyword/value form) and pings it, so a
// wrong address or credential fails here rather than on first use. Settings
// the DSN leaves out get defaults fit for a long-running service: a 10 s
// connect timeout, connections recycled after about 30 minutes and closed
// after 5 idle minutes, a health check every 30 s, and application_name
// "ledger". The pool size is pgx's (pool_max_conns, default the larger of 4
// and the number of CPUs). A DSN that does not parse wraps ErrInvalidDSN;
// errors reaching the server wrap ErrUnavailable.
func Open(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	pool, err := newPool(ctx, dsn)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, classifyConnectError(err)
	}
	return pool, nil
}

// newPool is Open without the ping: the pool connects on first use.
func newPool(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgconn redacts the password from parse errors.
		return nil, fmt.Errorf("%w: %w", ErrInvalidDSN, err)
	}
	applyPoolDefaults(cfg, dsn)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return pool, nil
}

// applyPoolDefaults fills in what dsn does not set. pgxpool cannot tell a
// default from an explicit value, so the DSN's own keys are looked at.
func applyPoolDefaults(cfg *pgxpool.Config, dsn string) {
	set := dsnKeys(dsn)
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = defaultApplicationName
	}
	if !set["pool_max_conn_lifetime"] {
		cfg.MaxConnLifetime = defaultMaxConnLifetime
	}
	if !set["pool_max_conn_lifetime_jitter"] {
		cfg.MaxConnLifetimeJitter = defaultLifetimeJitter
	}
	if !set["pool_max_conn_idle_time"] {
		cfg.MaxConnIdleTime = defaultMaxConnIdleTime
	}
	if !set["pool_health_check_period"] {
		cfg.HealthCheckPeriod = defaultHealthCheckPeriod
	}
}

// classifyConnectError wraps err with ErrUnavailable unless the server
// answered with a definite refusal (authentication, unknown database or
// role), which retrying will not fix.
func classifyConnectError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "57P03", // cannot_connect_now: starting up or shutting down
			pgErr.Code == "53300", // too_many_connections
			pgErr.Code == "53000": // insufficient_resources
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return fmt.Errorf("postgres: connect: %w", err)
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// dsnKeys returns the parameter names a DSN sets, in either form. It only
// needs to be right for well-formed DSNs: pgxpool.ParseConfig has already
// accepted dsn when it is called.
func dsnKeys(dsn string) map[string]bool {
	keys := make(map[string]bool)
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return keys
		}
		for k := range u.Query() {
			keys[k] = true
		}
		return keys
	}
	s := dsn
	for {
		s = strings.TrimLeft(s, " \t\n\r\v\f")
		if s == "" {
			return keys
		}
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			return keys
		}
		keys[strings.TrimRight(s[:eq], " \t\n\r\v\f")] = true
		s = strings.TrimLeft(s[eq+1:], " \t\n\r\v\f")
		s = skipDSNValue(s)
	}
}

// skipDSNValue returns s after the keyword/value value it starts with:
// single-quoted, or up to the next unescaped space.
func skipDSNValue(s string) string {
	quoted := strings.HasPrefix(s, "'")
	i := 0
	if quoted {
		i = 1
	}
	for i < len(s) {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s):
			i += 2
			continue
		case quoted && c == '\'':
			return s[i+1:]
		case !quoted && (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'):
			return s[i:]
		}
		i++
	}
	return ""
}
