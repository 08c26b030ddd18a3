package cli

import (
	"log/slog"
	"path/filepath"

	"github.com/licenseledger/ledger/internal/natsauth"
	"github.com/licenseledger/ledger/internal/natsbus"
)

// NATSFlags are how a process reaches NATS. Embed them in a kong command.
type NATSFlags struct {
	NATSURL      string `name:"nats-url" env:"NATS_URL" placeholder:"URL" help:"NATS server URL(s), comma-separated for a cluster."`
	NATSNKey     string `name:"nats-nkey" env:"NATS_NKEY" placeholder:"FILE" help:"NKey seed file for NATS_URL."`
	NATSCreds    string `name:"nats-creds" env:"NATS_CREDS" placeholder:"FILE" help:"Credentials (JWT) file for NATS_URL."`
	NATSUser     string `name:"nats-user" env:"NATS_USER" help:"User for NATS_URL."`
	NATSPassword string `name:"nats-password" env:"NATS_PASSWORD" help:"Password for NATS_USER."`
	NATSTLSCA    string `name:"nats-tls-ca" env:"NATS_TLS_CA" placeholder:"FILE" help:"CA bundle to verify NATS servers."`
	NATSTLSCert  string `name:"nats-tls-cert" env:"NATS_TLS_CERT" placeholder:"FILE" help:"Client certificate for NATS."`
	NATSTLSKey   string `name:"nats-tls-key" env:"NATS_TLS_KEY" placeholder:"FILE" help:"Client key for NATS."`
	Stream       string `name:"stream" env:"LICENSE_STREAM" default:"LICENSES" help:"JetStream stream name."`
}

// ConnConfig is the connection configuration for a client called name that
// expects its credentials to be role's (natsbus.ConnConfig.Role).
func (f *NATSFlags) ConnConfig(name string, role natsauth.Role, log *slog.Logger) natsbus.ConnConfig {
	return natsbus.ConnConfig{URL: f.NATSURL, NKeyFile: f.NATSNKey, CredsFile: f.NATSCreds, User: f.NATSUser,
		Password: f.NATSPassword, TLSCA: f.NATSTLSCA, TLSCert: f.NATSTLSCert, TLSKey: f.NATSTLSKey, Name: name, Role: role, Logger: log}
}

// DefaultNATSListen is where ledger serve's embedded NATS listens unless
// --nats-listen says otherwise, and so where every other command looks for
// it without NATS_URL.
const DefaultNATSListen = "127.0.0.1:4223"

// NATSConn is how every command that reaches NATS finds it, with the same
// flags, variables and defaults everywhere: NATS_URL and its credentials
// when set; else the embedded server of ledger serve at --nats-listen
// (LEDGER_NATS_LISTEN, default 127.0.0.1:4223) with the seed of the
// identity the command needs in $DATA_DIR/nats (<identity>.nk) unless
// credentials are given. The command keeps its own --data-dir (DATA_DIR,
// default ./data), which it also uses for other files. ledger serve listens
// at --nats-listen.
type NATSConn struct {
	NATSFlags
	NATSListen string `name:"nats-listen" env:"LEDGER_NATS_LISTEN" default:"127.0.0.1:4223" placeholder:"HOST:PORT" help:"Where ledger serve's embedded NATS listens (ledger serve: for gatekeepers and the other commands; off: in-process only), and where every other command reaches it without NATS_URL, with $DATA_DIR/nats/<identity>.nk."`
}

// Embedded says whether the connection is the embedded server's (no
// NATS_URL).
func (f *NATSConn) Embedded() bool { return f.NATSURL == "" }

// Reachable says why this command cannot reach NATS as configured: with
// no NATS_URL and --nats-listen off, the ledger keeps its NATS in-process,
// where no other process reaches it. nil otherwise.
func (f *NATSConn) Reachable() error {
	if f.NATSURL == "" && f.NATSListen == "off" {
		return Usage("--nats-listen off (LEDGER_NATS_LISTEN): the ledger then keeps its NATS in-process, out of this process's " +
			"reach; set NATS_URL (and its credentials), or run ledger serve with --nats-listen HOST:PORT and give the same here")
	}
	return nil
}

// Resolve is the connection configuration: NATS_URL with the credentials
// given; else nats://<--nats-listen> with role's seed in dataDir/nats
// unless credentials are given.
func (f *NATSConn) Resolve(dataDir, name string, role natsauth.Role, log *slog.Logger) natsbus.ConnConfig {
	cfg := f.ConnConfig(name, role, log)
	if cfg.URL == "" {
		cfg.URL = "nats://" + f.NATSListen
	}
	if cfg.NKeyFile == "" && cfg.CredsFile == "" && cfg.User == "" {
		cfg.NKeyFile = f.SeedFile(dataDir, role)
	}
	return cfg
}

// ReaderSeedFile is SeedFile of the reader (the gatekeeper's identity).
func (f *NATSConn) ReaderSeedFile(dataDir string) string {
	return f.SeedFile(dataDir, natsauth.RoleReader)
}

// SeedFile is role's seed in the embedded server's credentials:
// $DATA_DIR/nats/<role>.nk.
func (f *NATSConn) SeedFile(dataDir string, role natsauth.Role) string {
	return natsauth.SeedPath(filepath.Join(dataDir, "nats"), role)
}
