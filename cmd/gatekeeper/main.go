// Command gatekeeper enforces licenses on every HTTP request: as a reverse
// proxy (--listen → --upstream), as an /authz endpoint for nginx, Caddy,
// Traefik and Envoy (--authz-listen), with /healthz, /readyz and /metrics
// on --admin-listen. It follows the license stream (reader credentials)
// and, optionally, PostgreSQL; it never embeds a NATS server.
package main

import (
	"os"

	"github.com/alecthomas/kong"

	"github.com/licenseledger/ledger/internal/buildinfo"
	"github.com/licenseledger/ledger/internal/cli"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

const description = `License gatekeeper: allow or deny each request by the org's license.

Every flag has a GATEKEEPER_<FLAG> variable (shared settings keep their
names: NATS_URL, NATS_NKEY, DATABASE_URL, LICENSE_PUBLIC_KEYS…);
repeatable flags take comma lists.`

func run(args []string, env *cli.Env) int {
	return cli.Run("gatekeeper", description, &gatekeeperCmd{}, args, env, kong.Vars{"version": "gatekeeper " + buildinfo.Read(version).String()})
}

func main() { os.Exit(run(os.Args[1:], cli.OSEnv())) }
