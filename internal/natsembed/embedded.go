// Package natsembed runs the NATS server inside the ledger: the
// single-node server of ledger serve when no NATS_URL is set (Start), and
// the offline one of the maintenance commands (StartOffline). It is the
// only production package that links nats-server; clients use natsbus.
package natsembed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/natsbus"
)

// Config configures the single-node server the ledger runs when no
// NATS_URL is set.
type Config struct {
	// DataDir holds the JetStream store in DataDir/nats and the nkey seeds
	// in DataDir/nats/ledger.nk, reader.nk and admin.nk (created 0600 when
	// absent).
	DataDir string
	// Listen is host:port for other processes (gatekeepers), or "off" for
	// in-process clients only. Defaults to 127.0.0.1:4223. An address
	// that is not loopback needs TLSCert and TLSKey (CheckListen).
	Listen string
	// TLSCert and TLSKey are PEM files: with them, clients connecting to
	// Listen must use TLS.
	TLSCert, TLSKey string
	// SyncAlways fsyncs every write (the default for the embedded server: an
	// acknowledged event survives a host crash). False syncs on an interval.
	SyncAlways bool
	// Stream is the stream name the permissions are for.
	Stream string
	Logger *slog.Logger
}

// Embedded is a running embedded nats-server.
type Embedded struct {
	Server *server.Server
	// LedgerSeedFile and ReaderSeedFile are the credential files (NATS_NKEY).
	LedgerSeedFile string
	ReaderSeedFile string
	// AdminSeedFile is the stream administrator's, which Bootstrap uses
	// and the long-running ledger connection does not.
	AdminSeedFile  string
	Ledger, Reader natsauth.Identity
	// ClientURL is where external clients connect; "" when Listen is "off".
	ClientURL string
	unlock    func()
}

// Start starts the server and waits until it accepts connections.
// Authentication is always required, and TLS off loopback.
func Start(cfg Config) (*Embedded, error) {
	listen := cfg.Listen
	if listen == "" {
		listen = "127.0.0.1:4223"
	}
	if err := CheckListen(listen, cfg.TLSCert, cfg.TLSKey); err != nil {
		return nil, err
	}
	dir, was, err := storeDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if was != 0 && cfg.Logger != nil {
		cfg.Logger.Warn("the NATS store and seed directory was accessible by group or others: set to 0700",
			"dir", dir, "was", fmt.Sprintf("%04o", was))
	}
	unlock, err := lockStore(dir)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			unlock()
		}
	}()
	seeds, err := natsauth.LoadOrCreateSeeds(dir)
	if err != nil {
		return nil, err
	}
	users, err := ServerUsers(cfg.Stream, seeds.Ledger, seeds.Reader, seeds.Admin)
	if err != nil {
		return nil, err
	}
	opts := &server.Options{
		ServerName:            "ledger-embedded",
		JetStream:             true,
		StoreDir:              dir,
		SyncAlways:            cfg.SyncAlways,
		Nkeys:                 users,
		NoSigs:                true,
		NoLog:                 true,
		MaxPayload:            1 << 20,
		DisableShortFirstPing: true,
	}
	if listen == "off" {
		opts.DontListen = true
	} else {
		host, port, err := splitListen(listen)
		if err != nil {
			return nil, err
		}
		if err := checkFree(listen); err != nil {
			return nil, err
		}
		if port == 0 {
			port = -1 // nats-server reads 0 as its default 4222; -1 picks a free port
		}
		opts.Host, opts.Port = host, port
		if cfg.TLSCert != "" {
			tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey})
			if err != nil {
				return nil, fmt.Errorf("--nats-listen-tls-cert/--nats-listen-tls-key: %w", err)
			}
			opts.TLSConfig, opts.TLS, opts.TLSTimeout = tc, true, 5
		}
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	if cfg.Logger != nil {
		s.SetLoggerV2(&slogAdapter{cfg.Logger.With("component", "nats")}, false, false, false)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, errors.New("embedded NATS did not become ready within 30s")
	}
	e := &Embedded{Server: s, LedgerSeedFile: natsauth.SeedPath(dir, natsauth.RoleLedger),
		ReaderSeedFile: natsauth.SeedPath(dir, natsauth.RoleReader), AdminSeedFile: natsauth.SeedPath(dir, natsauth.RoleAdmin),
		Ledger: seeds.Ledger, Reader: seeds.Reader, unlock: unlock}
	if !opts.DontListen {
		e.ClientURL = s.ClientURL()
	}
	ok = true
	return e, nil
}

// Bootstrap gives the stream the contract's configuration as the stream
// administrator, over an in-process connection it closes before it
// returns: it creates the stream on first start, and applies what a new
// release changes in the configuration (ApplyStream with upgradeOnly). Any
// other difference is left for the ledger to report.
func (e *Embedded) Bootstrap(ctx context.Context, stream string, replicas int) (natsbus.ApplyResult, error) {
	conn, err := natsbus.Dial(natsbus.ConnConfig{InProcess: e.Server, NKeyFile: e.AdminSeedFile, Role: natsauth.RoleAdmin, Name: "ledger-bootstrap"})
	if err != nil {
		return natsbus.ApplyResult{}, err
	}
	defer conn.Close()
	return conn.ApplyStream(ctx, stream, replicas, true)
}

// Shutdown stops the server, waits for it and releases the store.
func (e *Embedded) Shutdown() {
	e.Server.Shutdown()
	e.Server.WaitForShutdown()
	e.unlock()
}

func splitListen(listen string) (string, int, error) {
	host, p, err := net.SplitHostPort(listen)
	if err != nil {
		return "", 0, fmt.Errorf("--nats-listen %q: want host:port or off", listen)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("--nats-listen %q: bad port", listen)
	}
	return host, port, nil
}

// CheckListen refuses an address off loopback without TLS: NATS carries
// license keys and tenants' org names. "off" and loopback addresses
// (127.0.0.0/8, ::1, localhost) may stay plaintext.
func CheckListen(listen, tlsCert, tlsKey string) error {
	if (tlsCert == "") != (tlsKey == "") {
		return errors.New("--nats-listen-tls-cert and --nats-listen-tls-key go together")
	}
	if listen == "" || listen == "off" || tlsCert != "" {
		return nil // "": the default, 127.0.0.1:4223
	}
	host, _, err := splitListen(listen)
	if err != nil {
		return err
	}
	if !IsLoopback(host) {
		return fmt.Errorf("--nats-listen %s is not loopback: serve TLS (--nats-listen-tls-cert/--nats-listen-tls-key)", listen)
	}
	return nil
}

// IsLoopback reports whether host names the loopback interface; "" (every
// interface) does not.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkFree turns a taken port into a clear error before nats-server,
// which would only log it, tries to bind.
func checkFree(listen string) error {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("--nats-listen %s: %w (another NATS server? pick another address with --nats-listen or LEDGER_NATS_LISTEN, or off)", listen, err)
	}
	return l.Close()
}

// slogAdapter routes nats-server logs to slog.
type slogAdapter struct{ log *slog.Logger }

func (a *slogAdapter) Noticef(format string, v ...any) { a.log.Debug(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Warnf(format string, v ...any)   { a.log.Warn(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Fatalf(format string, v ...any)  { a.log.Error(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Errorf(format string, v ...any)  { a.log.Error(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Debugf(format string, v ...any)  { a.log.Debug(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Tracef(format string, v ...any)  { a.log.Debug(fmt.Sprintf(format, v...)) }
