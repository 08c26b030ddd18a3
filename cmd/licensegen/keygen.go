package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/licenseledger/ledger/internal/cli"
	"github.com/licenseledger/ledger/internal/secfile"
	"github.com/licenseledger/ledger/license"
)

type keygenCmd struct {
	Kid   string `required:"" help:"Key id, [A-Za-z0-9_-]{1,64}; installs look keys up by it."`
	Out   string `required:"" placeholder:"DIR" help:"Directory to write KID.key and KID.pub into (created 0700 if absent); outside any git checkout, or in a directory it ignores (a warning says otherwise)."`
	Force bool   `help:"Overwrite an existing key pair of the same kid."`
}

func (c *keygenCmd) Run(env *cli.Env) error {
	if !license.ValidKid(c.Kid) {
		return cli.Usage("--kid %q must match [A-Za-z0-9_-]{1,64}", c.Kid)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	if err := secfile.MkdirAll(c.Out); err != nil {
		return err
	}
	keyPath := filepath.Join(c.Out, c.Kid+".key")
	pubPath := filepath.Join(c.Out, c.Kid+".pub")
	pubLine := c.Kid + ":" + base64.StdEncoding.EncodeToString(pub) + "\n"
	if err := writeNew(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600, c.Force); err != nil {
		return err
	}
	if err := writeNew(pubPath, []byte(pubLine), 0o644, c.Force); err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "wrote %s (private, keep it safe) and %s (give it to installs)\n", keyPath, pubPath)
	// The key is written; what follows only warns (exit 0).
	if perm, exposed, err := secfile.Exposed(c.Out); err == nil && exposed {
		fmt.Fprintf(env.Stderr, "licensegen: warning: %s is mode %04o: other users can see the key files' names; chmod 700 %s\n",
			c.Out, perm, secfile.Quote(c.Out))
	}
	if why := keyExposure(keyPath); why != "" {
		fmt.Fprintf(env.Stderr, "licensegen: warning: %s\n", why)
	}
	fmt.Fprint(env.Stdout, pubLine)
	return nil
}

// writeNew writes a file with exactly mode, refusing to replace one unless
// force: losing a signing key is not something to do by accident.
func writeNew(path string, data []byte, mode os.FileMode, force bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, mode)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists; pass --force to replace it", path)
	}
	if err != nil {
		return err
	}
	if err := f.Chmod(mode); err != nil { // the umask must not loosen or tighten it
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
