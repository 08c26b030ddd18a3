package main

import (
	"testing"

	"github.com/alecthomas/kong"

	"github.com/licenseledger/ledger/internal/cli"
	"github.com/licenseledger/ledger/internal/cli/clitest"
)

// TestConformance: the gatekeeper reaches NATS with the grammar's
// connection flags (the embedded default at --nats-listen with
// $DATA_DIR/nats/reader.nk), and --version and --help work.
func TestConformance(t *testing.T) {
	p, err := cli.Parser("gatekeeper", description, &gatekeeperCmd{}, cli.OSEnv(), kong.Vars{"version": "gatekeeper test"})
	if err != nil {
		t.Fatal(err)
	}
	clitest.Check(t, p.Model, []clitest.Command{{Path: "", NATS: true, Output: clitest.Action}})
	clitest.CheckHelpAndVersion(t, p.Model, run)
}
