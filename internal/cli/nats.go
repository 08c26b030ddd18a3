package cli

import (
	"log/slog"

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
