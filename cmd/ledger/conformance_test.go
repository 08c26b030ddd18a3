package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/alecthomas/kong"

	"github.com/licenseledger/ledger/internal/cli"
	"github.com/licenseledger/ledger/internal/cli/clitest"
)

// ledgerCommands classifies every ledger command for the conformance
// test: a command added without a line here fails it.
var ledgerCommands = []clitest.Command{
	{Path: "version", Output: clitest.Data},
	{Path: "serve", NATS: true, Output: clitest.Action},
	{Path: "license inspect", Output: clitest.Data},
	{Path: "license verify", Output: clitest.Data},
	{Path: "status", Output: clitest.Data},
	{Path: "upload", Output: clitest.Data},
	{Path: "remove", Output: clitest.Data},
	{Path: "invalidate", Output: clitest.Data},
	{Path: "enforcement set", Output: clitest.Data},
	{Path: "usage set", Output: clitest.Data},
	{Path: "usage report", Output: clitest.Rows},
	{Path: "seats enforcement set", Output: clitest.Data},
	{Path: "token create", Output: clitest.Artifact},
	{Path: "token list", Output: clitest.Rows},
	{Path: "token revoke", Output: clitest.Action},
	{Path: "audit verify", NATS: true, Output: clitest.Data},
	{Path: "audit digest", Output: clitest.Data},
	{Path: "audit export", Output: clitest.Rows},
	{Path: "audit checkpoint", Output: clitest.Artifact},
	{Path: "audit checkpoint-key", Output: clitest.Artifact},
	{Path: "audit prove", Output: clitest.Artifact},
	{Path: "audit verify-proof", Output: clitest.Data},
	{Path: "replay", NATS: true, Output: clitest.Rows},
	{Path: "migrate", Output: clitest.Rows},
	{Path: "stream apply", NATS: true, Output: clitest.Action},
	{Path: "stream check", NATS: true, Output: clitest.Data},
	{Path: "stream reseed", NATS: true, Output: clitest.Action},
	{Path: "backup", NATS: true, Output: clitest.Data},
	{Path: "restore", NATS: true, Output: clitest.Action},
	{Path: "bench", Output: clitest.Rows},
	{Path: "bench-replica", Internal: true},
	{Path: "completion", Output: clitest.Artifact},
}

func ledgerModel(t *testing.T) *kong.Application {
	t.Helper()
	p, err := cli.Parser("ledger", description, &grammar{}, cli.OSEnv(), kong.Vars{"version": "ledger test"})
	if err != nil {
		t.Fatal(err)
	}
	return p.Model
}

// TestConformance walks every command of ledger: the same NATS
// connection flags on each that reaches NATS, -o on each that prints
// data, --help and --version.
func TestConformance(t *testing.T) {
	app := ledgerModel(t)
	clitest.Check(t, app, ledgerCommands)
	clitest.CheckHelpAndVersion(t, app, run)
}

// A command typed under the wrong parent gets the right one; kong's own
// suggestion stays for a misspelt word.
func TestMistypedCommand(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"license", "upload", "x.lic"}, `did you mean "ledger upload"?`},
		{[]string{"report", "--from", "2027-01"}, `did you mean "ledger usage report"?`},
		{[]string{"lisence", "inspect"}, `did you mean "license"?`},
		{[]string{"token", "lsit"}, `did you mean "list"?`},
	} {
		code, _, errOut := cliRun(t, "", tc.args...)
		if code != cli.ExitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("ledger %v: exit %d %q, want 2 and %s", tc.args, code, errOut, tc.want)
		}
	}
}

// The shell asks ledger itself (COMP_LINE); ledger completion bash wires
// bash to it.
func TestCompletion(t *testing.T) {
	t.Setenv("COMP_LINE", "ledger lic")
	code, out, errOut := cliRun(t, "")
	if code != 0 || strings.TrimSpace(out) != "license" {
		t.Fatalf("COMP_LINE=%q: exit %d %q %q", "ledger lic", code, out, errOut)
	}
	t.Setenv("COMP_LINE", "ledger usage report -o ")
	if code, out, _ := cliRun(t, ""); code != 0 || !strings.Contains(out, "csv") || !strings.Contains(out, "table") {
		t.Fatalf("-o values: exit %d %q", code, out)
	}
	t.Setenv("COMP_LINE", "")
	os.Unsetenv("COMP_LINE")
	for _, shell := range []string{"bash", "zsh", "fish"} {
		code, out, errOut := cliRun(t, "", "completion", shell)
		if code != 0 || !strings.Contains(out, "ledger") {
			t.Fatalf("completion %s: exit %d %q %q", shell, code, out, errOut)
		}
		if shell != "bash" {
			continue
		}
		if _, err := exec.LookPath("bash"); err != nil {
			t.Log("no bash: the script is not loaded")
			continue
		}
		got, err := exec.Command("bash", "-c", out+"complete -p ledger").CombinedOutput()
		if err != nil || !strings.Contains(string(got), "-C") || !strings.HasSuffix(strings.TrimSpace(string(got)), " ledger") {
			t.Fatalf("bash: complete -p ledger: %v %q", err, got)
		}
	}
	if code, _, _ := cliRun(t, "", "completion", "tcsh"); code != cli.ExitUsage {
		t.Fatalf("completion tcsh: exit %d", code)
	}
}

// -o json and table of the commands that print data without a server.
func TestOutputFormats(t *testing.T) {
	code, out, errOut := cliRun(t, "", "version", "-o", "json")
	var v map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v["name"] != "ledger" || v["version"] != "dev" {
		t.Fatalf("version -o json: %d %q %q", code, out, errOut)
	}
	if code, out, _ := cliRun(t, "", "version", "-o", "table"); code != 0 || !strings.Contains(out, "commit ") {
		t.Fatalf("version -o table: %d %q", code, out)
	}
	if code, out, _ := cliRun(t, "", "version", "-o", "xml"); code != cli.ExitUsage {
		t.Fatalf("version -o xml: %d %q", code, out)
	}

	// Rows: table and csv over the same data.
	rows := []map[string]any{{"a": "x", "b": 1}, {"a": "y,z", "b": nil}}
	var b bytes.Buffer
	if err := writeRows(&b, outCSV, []string{"a", "b"}, rows); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&b).ReadAll()
	if err != nil || len(recs) != 3 || recs[2][0] != "y,z" || recs[2][1] != "" || recs[1][1] != "1" {
		t.Fatalf("csv: %v %q", err, recs)
	}
	b.Reset()
	if err := writeRows(&b, outTable, []string{"a", "b"}, rows); err != nil ||
		!strings.HasPrefix(b.String(), "A    B\nx    1\ny,z  -\n") {
		t.Fatalf("table: %v %q", err, b.String())
	}
	b.Reset()
	if err := csvToTable(strings.NewReader("month,org\n2027-01,acme\n"), &b); err != nil || b.String() != "MONTH    ORG\n2027-01  acme\n" {
		t.Fatalf("csvToTable: %v %q", err, b.String())
	}
}
