package natsbus

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"
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
	// PingInterval detects a dead connection. Defaults to 10 s (nats.go's
	// 2 minutes would let a black-holed connection look alive for minutes).
	PingInterval time.Duration
	// InProcess connects to an embedded server without TCP.
	InProcess *server.Server
	Logger    *slog.Logger
}

// Connect opens a connection that reconnects forever; disconnects and
// reconnects are logged.
func Connect(cfg ConnConfig) (*nats.Conn, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ping := cfg.PingInterval
	if ping <= 0 {
		ping = 10 * time.Second
	}
	opts := []nats.Option{
		nats.Name(cfg.Name),
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
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { log.Error("nats error", "err", err) }),
	}
	creds, err := credentialOptions(cfg)
	if err != nil {
		return nil, err
	}
	opts = append(opts, creds...)
	if cfg.InProcess != nil {
		opts = append(opts, nats.InProcessServer(cfg.InProcess))
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS %s: %w", redact(cfg), err)
	}
	return nc, nil
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
