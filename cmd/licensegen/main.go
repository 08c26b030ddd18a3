// Command licensegen is the vendor's tool: it creates Ed25519 signing keys
// and signs hfl1 licenses. Installs never need it, nor the private key.
package main

import (
	"os"

	"github.com/alecthomas/kong"

	"github.com/licenseledger/ledger/internal/buildinfo"
	"github.com/licenseledger/ledger/internal/cli"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

type grammar struct {
	Version    kong.VersionFlag  `help:"Print the version and exit."`
	VersionCmd versionCmd        `cmd:"" name:"version" help:"Print the build: version, commit, commit time and Go version."`
	Keygen     keygenCmd         `cmd:"" help:"Create a signing key pair: DIR/KID.key (PKCS#8 PEM, 0600) and DIR/KID.pub (one KID:base64 line)."`
	Sign       signCmd           `cmd:"" help:"Sign a license from a payload file or from flags; prints the compact key (or license.json with --format json)."`
	Completion cli.CompletionCmd `cmd:"" help:"Print the shell code that completes licensegen's commands and flags: source <(licensegen completion bash)."`
}

const description = `Vendor-side license tool for the license ledger.

Installs trust the public half of a key (LICENSE_PUBLIC_KEYS or
LICENSE_PUBLIC_KEYS_FILE); keep the .key file off every install.`

func run(args []string, env *cli.Env) int {
	return cli.Run("licensegen", description, &grammar{}, args, env, kong.Vars{"version": "licensegen " + buildinfo.Read(version).String()})
}

// versionCmd is licensegen version.
type versionCmd struct {
	cli.VersionCmd
}

func (c *versionCmd) Run(env *cli.Env) error {
	return c.Print(env.Stdout, "licensegen", buildinfo.Read(version))
}

func main() { os.Exit(run(os.Args[1:], cli.OSEnv())) }
