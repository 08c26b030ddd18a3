package main

import (
	"context"
	"log/slog"

	"github.com/licenseledger/ledger/gatekeeper"
	"github.com/licenseledger/ledger/gatekeeper/frontend"
	"github.com/licenseledger/ledger/internal/cli"
	"github.com/licenseledger/ledger/internal/sighup"
	"github.com/licenseledger/ledger/license"
)

// limits validates the listener limits.
func (c *gatekeeperCmd) limits() (limits, error) {
	switch {
	case c.ReadTimeout <= 0:
		return limits{}, cli.Usage("--read-timeout %v: must be positive", c.ReadTimeout)
	case c.MaxHeaderBytes <= 0:
		return limits{}, cli.Usage("--max-header-bytes %d: must be positive", c.MaxHeaderBytes)
	case c.MaxConns <= 0:
		return limits{}, cli.Usage("--max-conns %d: must be positive", c.MaxConns)
	}
	return limits{readTimeout: c.ReadTimeout, maxHeaderBytes: c.MaxHeaderBytes, maxConns: c.MaxConns}, nil
}

// authzOptions validates who may ask /authz. The secret, when there is
// one, is returned too, to be reloaded on SIGHUP.
func (c *gatekeeperCmd) authzOptions(log *slog.Logger) ([]frontend.AuthzOption, *frontend.Secret, error) {
	prefixes, err := gatekeeper.ParseTrustedProxies(c.AuthzTrusted)
	if err != nil {
		return nil, nil, cli.Usage("--authz-trusted: %v", err)
	}
	trusted, err := gatekeeper.NewPeers(prefixes)
	if err != nil {
		return nil, nil, cli.Usage("--authz-trusted: %v", err)
	}
	opts := []frontend.AuthzOption{frontend.AuthzTrusted(trusted), frontend.AuthzLogger(log.With("component", "authz"))}
	if c.AuthzSecretFile == "" {
		return opts, nil, nil
	}
	secret, err := frontend.LoadSecret(c.AuthzSecretFile)
	if err != nil {
		return nil, nil, cli.Usage("--authz-secret-file: %v", err)
	}
	return append(opts, frontend.AuthzSecret(secret)), secret, nil
}

// checkKeys refuses an empty key ring unless --allow-no-keys: a
// gatekeeper that trusts no vendor key denies every licensed org, which
// is a deployment mistake far more often than a wish.
func (c *gatekeeperCmd) checkKeys(ring *license.Ring, log *slog.Logger) error {
	if ring.Len() > 0 {
		return nil
	}
	if !c.AllowNoKeys {
		return cli.Usage("no trusted vendor key: set LICENSE_PUBLIC_KEYS or LICENSE_PUBLIC_KEYS_FILE " +
			"(or pass --allow-no-keys to start anyway, denying every licensed org license_invalid)")
	}
	log.Warn("no trusted vendor key (--allow-no-keys): every licensed org is denied license_invalid " +
		"until LICENSE_PUBLIC_KEYS or LICENSE_PUBLIC_KEYS_FILE names one")
	return nil
}

// reloadSecretOnSIGHUP re-reads the /authz secret on every SIGHUP until
// ctx ends; a file that fails keeps the secret in force.
func reloadSecretOnSIGHUP(ctx context.Context, log *slog.Logger, s *frontend.Secret) {
	sighup.Handle(ctx, func() {
		if err := s.Reload(); err != nil {
			log.Error("--authz-secret-file reload failed; keeping the current secret", "err", err)
			return
		}
		log.Info("--authz-secret-file reloaded")
	})
}
