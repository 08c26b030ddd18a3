package main

import (
	"testing"

	"github.com/alecthomas/kong"

	"github.com/licenseledger/ledger/internal/cli"
	"github.com/licenseledger/ledger/internal/cli/clitest"
)

// TestConformance classifies every licensegen command: none reaches
// NATS; version prints data (-o json|table); keygen and sign print what
// they make (a public key line, a license), completion a shell script.
func TestConformance(t *testing.T) {
	p, err := cli.Parser("licensegen", description, &grammar{}, cli.OSEnv(), kong.Vars{"version": "licensegen test"})
	if err != nil {
		t.Fatal(err)
	}
	clitest.Check(t, p.Model, []clitest.Command{
		{Path: "version", Output: clitest.Data},
		{Path: "keygen", Output: clitest.Artifact},
		{Path: "sign", Output: clitest.Artifact},
		{Path: "completion", Output: clitest.Artifact},
	})
	clitest.CheckHelpAndVersion(t, p.Model, run)
	if code, _, errOut := clitest.Exec(run, "sing"); code != cli.ExitUsage || errOut == "" {
		t.Fatalf("licensegen sing: exit %d %q", code, errOut)
	}
}
