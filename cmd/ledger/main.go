// Command ledger runs and administers the license ledger. This build holds
// the offline license commands; every command shares the exit codes of the
// contract (0 ok, 1 not valid/failed, 2 usage, 3 API 4xx, 4 unavailable).
package main

import (
	"os"

	"github.com/alecthomas/kong"

	"github.com/licenseledger/ledger/internal/cli"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

type grammar struct {
	Version kong.VersionFlag `help:"Print the version and exit."`
	Serve   serveCmd         `cmd:"" help:"Run the ledger: API, event stream (embedded NATS unless NATS_URL), read model."`
	License licenseCmd       `cmd:"" help:"Inspect or verify a license file offline."`
}

const description = `License ledger: event-sourced, multi-tenant license enforcement.`

func run(args []string, env *cli.Env) int {
	return cli.Run("ledger", description, &grammar{}, args, env, kong.Vars{"version": version})
}

func main() { os.Exit(run(os.Args[1:], cli.OSEnv())) }
