package natsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/secfile"
)

// ConnConfig says how to reach NATS. Exactly one credential source applies:
// NKeyFile, CredsFile or User/Password (the embedded server uses nkeys).
type ConnConfig struct {
	URL       string // NATS_URL; comma-separated for a cluster
	NKeyFile  string // NATS_NKEY: an nkey user seed file
	CredsFile string // NATS_CREDS: a JWT credentials file
	User      string // NATS_USER
	Password  string // NATS_PASSWORD
	TLSCA     string // NATS_TLS_CA
	TLSCert   string // NATS_TLS_CERT
	TLSKey    string // NATS_TLS_KEY
	// Name identifies the client in server monitoring.
	Name string
	// Role is the identity the client expects its credentials to be. Each
	// identity receives replies only below its own inbox prefix
	// (natsauth.InboxPrefix), so Connect uses Role's prefix, and when the
	// server refuses the credentials a subscription there, tries the other
	// identities' prefixes before giving up. Empty tries them all, the
	// ledger's first.
	Role natsauth.Role
	// PingInterval detects a dead connection. Defaults to 10 s (nats.go's
	// 2 minutes would let a black-holed connection look alive for minutes).
	PingInterval time.Duration
	// InProcess connects to an embedded server without TCP (a
	// *server.Server, see package natsembed).
	InProcess nats.InProcessConnProvider
	Logger    *slog.Logger
}

// Connect opens a connection that reconnects forever; disconnects and
// reconnects are logged. It returns once the server has accepted a
// subscription to the connection's inbox (see ConnConfig.Role): credentials
// that may receive replies on no identity's inbox are an error.
func Connect(cfg ConnConfig) (*nats.Conn, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	creds, err := credentialOptions(cfg)
	if err != nil {
		return nil, err
	}
	var tried []string
	for _, role := range inboxRoles(cfg.Role) {
		nc, err := connectAs(cfg, role, creds, log)
		if err == nil || !errors.Is(err, errInboxDenied) {
			return nc, err
		}
		tried = append(tried, natsauth.InboxSubjects(role))
	}
	return nil, fmt.Errorf("connect to NATS %s: these credentials may not subscribe to any identity's inbox (%s): "+
		"check NATS_NKEY/NATS_CREDS/NATS_USER, and that the server grants each user the subscribe permission of docs/design.md §3.1",
		redact(cfg), strings.Join(tried, ", "))
}

// Conn is a connection to NATS as the ledger's commands hold it: they open
// the stream on it (Open) and administer the stream (ApplyStream,
// StreamExists, CreateSeedStream, …). It is safe for concurrent use.
type Conn struct{ nc *nats.Conn }

// NewConn wraps a connection opened elsewhere (an in-process one, a test's).
func NewConn(nc *nats.Conn) *Conn { return &Conn{nc: nc} }

// Dial is Connect, returning a Conn.
func Dial(cfg ConnConfig) (*Conn, error) {
	nc, err := Connect(cfg)
	if err != nil {
		return nil, err
	}
	return NewConn(nc), nil
}

// NATS returns the underlying connection, for the other NATS adapters
// (package natsbackup).
func (c *Conn) NATS() *nats.Conn { return c.nc }

// Close closes the connection.
func (c *Conn) Close() { c.nc.Close() }

// Connected reports whether the connection is up now: not reconnecting,
// not closed.
func (c *Conn) Connected() bool { return c.nc.Status() == nats.CONNECTED }

// Open binds to stream name on c (see the function Open).
func (c *Conn) Open(ctx context.Context, name string, replicas int, create bool, opts ...OpenOption) (*Bus, StreamInfo, error) {
	return Open(ctx, c.nc, name, replicas, create, opts...)
}

// ErrPermissionViolation is the server refusing these credentials an
// operation (a publish, a stream create or update): errors.Is matches the
// errors of Connect, Append, Open and ApplyStream that say so.
var ErrPermissionViolation = nats.ErrPermissionViolation

// inboxRoles is the order in which Connect tries the identities' inbox
// prefixes: preferred first.
func inboxRoles(preferred natsauth.Role) []natsauth.Role {
	roles := natsauth.Roles()
	if i := slices.Index(roles, preferred); i > 0 {
		roles = append([]natsauth.Role{preferred}, slices.Delete(roles, i, i+1)...)
	}
	return roles
}

// errInboxDenied reports a server refusing a subscription to the
// connection's inbox prefix.
var errInboxDenied = errors.New("inbox subscription refused")

// connectAs connects with role's inbox prefix and checks that the server
// lets the connection receive replies there.
func connectAs(cfg ConnConfig, role natsauth.Role, creds []nats.Option, log *slog.Logger) (*nats.Conn, error) {
	ping := cfg.PingInterval
	if ping <= 0 {
		ping = 10 * time.Second
	}
	// While the inbox is probed, its refusal is an answer, not an error
	// worth logging.
	var probing atomic.Bool
	probing.Store(true)
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.CustomInboxPrefix(natsauth.InboxPrefix(role)),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.PingInterval(ping),
		nats.MaxPingsOutstanding(2),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if !probing.Load() {
				log.Error("nats error", "err", err)
			}
		}),
	}
	opts = append(opts, creds...)
	if cfg.InProcess != nil {
		opts = append(opts, nats.InProcessServer(cfg.InProcess))
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS %s: %w", redact(cfg), err)
	}
	if err := probeInbox(nc); err != nil {
		nc.Close()
		if errors.Is(err, errInboxDenied) {
			return nil, err
		}
		return nil, fmt.Errorf("connect to NATS %s: %w", redact(cfg), err)
	}
	probing.Store(false)
	return nc, nil
}

// probeInbox subscribes below the connection's inbox prefix and waits for
// the server to have processed it: a refusal (-ERR Permissions Violation)
// arrives before the flush's PONG.
func probeInbox(nc *nats.Conn) error {
	sub, err := nc.SubscribeSync(nc.NewInbox())
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()
	if err := nc.FlushTimeout(10 * time.Second); err != nil {
		return err
	}
	if le := nc.LastError(); le != nil && errors.Is(le, nats.ErrPermissionViolation) && strings.Contains(le.Error(), sub.Subject) {
		return errInboxDenied
	}
	return nil
}

func credentialOptions(cfg ConnConfig) ([]nats.Option, error) {
	var opts []nats.Option
	n := 0
	if cfg.NKeyFile != "" {
		n++
		id, err := natsauth.LoadIdentity(cfg.NKeyFile, "")
		if err != nil {
			return nil, fmt.Errorf("NATS_NKEY: %w", err)
		}
		opt, err := natsauth.ConnectOption(id.Seed)
		if err != nil {
			return nil, fmt.Errorf("NATS_NKEY %s: %w", cfg.NKeyFile, err)
		}
		opts = append(opts, opt)
	}
	if cfg.CredsFile != "" {
		n++
		// nats.go reads the file at each connect; a file others may read
		// is refused now, as a seed is.
		f, err := secfile.Open(cfg.CredsFile)
		if err != nil {
			return nil, fmt.Errorf("NATS_CREDS: %w", err)
		}
		f.Close()
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.User != "" {
		n++
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	}
	if n > 1 {
		return nil, fmt.Errorf("set only one of NATS_NKEY, NATS_CREDS and NATS_USER")
	}
	if cfg.TLSCA != "" {
		opts = append(opts, nats.RootCAs(cfg.TLSCA))
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, fmt.Errorf("NATS_TLS_CERT and NATS_TLS_KEY go together")
	}
	if cfg.TLSCert != "" {
		opts = append(opts, nats.ClientCert(cfg.TLSCert, cfg.TLSKey))
	}
	return opts, nil
}

func redact(cfg ConnConfig) string {
	if cfg.InProcess != nil {
		return "(embedded)"
	}
	return cfg.URL
}
