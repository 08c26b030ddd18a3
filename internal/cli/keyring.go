package cli

import (
	"github.com/licenseledger/ledger/license"
)

// KeyringFlags are the key ring settings every process shares. Embed it in
// a kong command.
type KeyringFlags struct {
	PublicKeys     string `name:"public-keys" env:"LICENSE_PUBLIC_KEYS" placeholder:"KID:BASE64,..." help:"Trusted vendor public keys."`
	PublicKeysFile string `name:"public-keys-file" env:"LICENSE_PUBLIC_KEYS_FILE" placeholder:"FILE" help:"File of trusted keys: '<kid> <base64>' lines or a '<kid>' line before a PEM block; must not be group/other-writable; re-read on SIGHUP."`
}

// Config returns the ring configuration, built-in keys included.
func (f *KeyringFlags) Config() license.RingConfig {
	return license.RingConfig{Env: f.PublicKeys, File: f.PublicKeysFile}
}

// Load builds the key ring.
func (f *KeyringFlags) Load() (*license.Keys, error) {
	return license.NewKeys(f.Config())
}
