// Command ledger runs and administers the license ledger: the server
// (serve), its maintenance commands, the API clients, the offline license
// commands and the performance figures (bench). Every command shares the
// exit codes of the contract (0 ok, 1 not valid/failed, 2 usage, 3 API
// 4xx, 4 unavailable).
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
	Version      kong.VersionFlag  `help:"Print the version and exit."`
	VersionCmd   versionCmd        `cmd:"" name:"version" help:"Print the build: version, commit, commit time and Go version."`
	Serve        serveCmd          `cmd:"" help:"Run the ledger: API, event stream (embedded NATS unless NATS_URL), read model."`
	License      licenseCmd        `cmd:"" help:"Inspect or verify a license file offline."`
	Status       statusCmd         `cmd:"" help:"Print an org's license status from the ledger API (exit 0 whatever the status)."`
	Upload       uploadCmd         `cmd:"" help:"Upload a license for an org through the ledger API."`
	Remove       removeCmd         `cmd:"" help:"Remove an org's own license through the ledger API (operators)."`
	Invalidate   invalidateCmd     `cmd:"" help:"Revoke a license id for an org, for good, through the ledger API (operators)."`
	Enforcement  enforcementCmd    `cmd:"" help:"Set the install-wide enforcement mode through the ledger API (operators)."`
	Usage        usageCmd          `cmd:"" help:"Report an org's active users (usage set) or print the seat true-up (usage report) through the ledger API."`
	Seats        seatsCmd          `cmd:"" help:"Set the install-wide seat enforcement mode (seats enforcement set) through the ledger API (operators)."`
	Token        tokenCmd          `cmd:"" help:"Create, list or revoke API tokens in the tokens file (LEDGER_TOKENS_FILE, default $DATA_DIR/tokens)."`
	Audit        auditCmd          `cmd:"" help:"Verify, digest or export the hash-chained audit trail, from PostgreSQL (DATABASE_URL) or through the ledger API."`
	Replay       replayCmd         `cmd:"" help:"Rebuild the read model and audit trail from the stream into the ledger_shadow schema: --verify prints the differences with the live tables (exit 1 if any), --swap replaces the live read model in one transaction."`
	Migrate      migrateCmd        `cmd:"" help:"Apply (up, default), roll back (down) or list (status) the PostgreSQL migrations as the schema owner (LEDGER_MIGRATE_DATABASE_URL); up also creates and grants the ledger's roles."`
	Stream       streamCmd         `cmd:"" help:"Stream administration: create it or restore its configuration (stream apply), compare it with the contract (stream check), reseed a lost stream from license_audit (stream reseed)."`
	Backup       backupCmd         `cmd:"" help:"Write a consistent snapshot of the stream (embedded default: while ledger serve runs, or offline) into a new directory."`
	Restore      restoreCmd        `cmd:"" help:"Recreate the stream from a ledger backup directory (ledger serve stopped); refuses a stream that holds messages."`
	Bench        benchCmd          `cmd:"" help:"Measure the performance targets (design §9), each beside its reference, and print one table; exits 0 when targets are missed, 4 when a figure could not be measured."`
	BenchReplica benchReplicaCmd   `cmd:"" name:"bench-replica" hidden:"" help:"A gatekeeper replica for ledger bench's start figure (internal)."`
	Completion   cli.CompletionCmd `cmd:"" help:"Print the shell code that completes ledger's commands and flags: source <(ledger completion bash)."`
}

const description = `License ledger: event-sourced, multi-tenant license enforcement.`

func run(args []string, env *cli.Env) int {
	return cli.Run("ledger", description, &grammar{}, args, env, kong.Vars{"version": "ledger " + buildinfo.Read(version).String()})
}

// versionCmd is ledger version.
type versionCmd struct {
	cli.VersionCmd
}

func (c *versionCmd) Run(env *cli.Env) error {
	return c.Print(env.Stdout, "ledger", buildinfo.Read(version))
}

func main() { os.Exit(run(os.Args[1:], cli.OSEnv())) }
