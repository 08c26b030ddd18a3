// Package clitest checks that a program's command line follows the
// project's one CLI grammar (docs/commands.md, "One grammar"): every
// command that reaches NATS takes the same connection flags
// (cli.NATSConn) with the same variables and defaults, every command that
// prints data takes -o with json and table (and csv where it prints
// rows), and every command is classified, so that a new one cannot skip
// the grammar unnoticed. The conformance tests of cmd/ledger,
// cmd/gatekeeper and cmd/licensegen use it.
package clitest

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/alecthomas/kong"

	"github.com/licenseledger/ledger/internal/cli"
)

// Output is what a command prints, which decides the -o it must take.
type Output int

const (
	// Action: it does something and says what in a line or two (or
	// serves); no -o required.
	Action Output = iota
	// Artifact: it prints a file's content (a token, a key, a signed note,
	// a bundle, a license, a shell script), whose format is the point; no
	// -o required.
	Artifact
	// Data: -o with json and table.
	Data
	// Rows: -o with json, table and csv.
	Rows
)

// Command is one command's classification: its path ("" for a program
// without subcommands), whether it reaches NATS, and its output.
type Command struct {
	Path   string
	NATS   bool
	Output Output
	// Internal: a hidden command that other commands run (ledger
	// bench-replica), exempt from the grammar.
	Internal bool
}

// Leaves returns every runnable command of app, hidden ones included, by
// path: the words after the program's name ("" for the program itself
// when it has no subcommands).
func Leaves(app *kong.Application) map[string]*kong.Node {
	out := map[string]*kong.Node{}
	var walk func(n *kong.Node, path []string)
	walk = func(n *kong.Node, path []string) {
		var cmds []*kong.Node
		for _, c := range n.Children {
			if c.Type == kong.CommandNode {
				cmds = append(cmds, c)
			}
		}
		if len(cmds) == 0 {
			out[strings.Join(path, " ")] = n
			return
		}
		for _, c := range cmds {
			walk(c, append(slices.Clone(path), c.Name))
		}
	}
	walk(app.Node, nil)
	return out
}

// flags are a node's flags with its parents', by name.
func flags(n *kong.Node) map[string]*kong.Flag {
	out := map[string]*kong.Flag{}
	for _, group := range n.AllFlags(true) {
		for _, f := range group {
			out[f.Name] = f
		}
	}
	return out
}

// referenceNATS is the connection flags as cli.NATSConn declares them,
// with --data-dir as every command declares it.
func referenceNATS(t *testing.T) map[string]*kong.Flag {
	t.Helper()
	var ref struct {
		cli.NATSConn
		DataDir string `name:"data-dir" env:"DATA_DIR" default:"./data" placeholder:"DIR" help:"Data directory."`
	}
	p, err := kong.New(&ref, kong.Name("ref"))
	if err != nil {
		t.Fatal(err)
	}
	return flags(p.Model.Node)
}

// Check asserts the grammar over app's commands: each of want is there
// and each command of app is in want; every NATS command has the
// reference connection flags (same names, variables and defaults, and
// -nats-listen) and no other command has them; every data command has
// -o/--output with json and table (and csv for rows).
func Check(t *testing.T, app *kong.Application, want []Command) {
	t.Helper()
	leaves := Leaves(app)
	byPath := map[string]Command{}
	for _, c := range want {
		byPath[c.Path] = c
		if leaves[c.Path] == nil {
			t.Errorf("%s %s: classified, but no such command", app.Name, c.Path)
		}
	}
	ref := referenceNATS(t)
	for path, node := range leaves {
		c, ok := byPath[path]
		if !ok {
			t.Errorf("%s %s: a command the conformance test does not classify: add it to the table "+
				"(reaches NATS? prints data, rows, an artifact, or what it did?)", app.Name, path)
			continue
		}
		if c.Internal {
			if !node.Hidden {
				t.Errorf("%s %s: classified internal but not hidden", app.Name, path)
			}
			continue
		}
		fs := flags(node)
		if !c.NATS {
			if _, has := fs["nats-url"]; has {
				t.Errorf("%s %s: has --nats-url but is not classified as reaching NATS", app.Name, path)
			}
		}
		for name, r := range ref {
			if !c.NATS || name == "help" {
				continue
			}
			f, has := fs[name]
			if !has {
				t.Errorf("%s %s: reaches NATS without --%s", app.Name, path, name)
				continue
			}
			if !slices.Equal(f.Envs, r.Envs) || f.Default != r.Default {
				t.Errorf("%s %s: --%s has variables %v, default %q; the grammar's are %v, %q",
					app.Name, path, name, f.Envs, f.Default, r.Envs, r.Default)
			}
		}
		if c.Output != Data && c.Output != Rows {
			continue
		}
		o, has := fs["output"]
		if !has || o.Short != 'o' {
			t.Errorf("%s %s: prints data without -o/--output", app.Name, path)
			continue
		}
		formats := o.EnumMap()
		need := []string{"json", "table"}
		if c.Output == Rows {
			need = append(need, "csv")
		}
		for _, f := range need {
			if !formats[f] {
				t.Errorf("%s %s: -o lacks %s (has %s)", app.Name, path, f, o.Enum)
			}
		}
	}
}

// Runner runs a program in-process: its run(args, env) function.
type Runner func(args []string, env *cli.Env) int

// Exec runs args and returns the exit code, stdout and stderr.
func Exec(run Runner, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Now: cli.OSEnv().Now})
	return code, out.String(), errb.String()
}

// CheckHelpAndVersion asserts that --version prints "<name> <version>"
// and exits 0, and that --help of the program and of every command exits
// 0 with a usage line.
func CheckHelpAndVersion(t *testing.T, app *kong.Application, run Runner) {
	t.Helper()
	code, out, errOut := Exec(run, "--version")
	if code != 0 || !strings.HasPrefix(out, app.Name+" ") || strings.Count(out, "\n") != 1 {
		t.Errorf("%s --version: exit %d %q %q", app.Name, code, out, errOut)
	}
	for path := range Leaves(app) {
		args := append(strings.Fields(path), "--help")
		code, out, errOut := Exec(run, args...)
		if code != 0 || !strings.Contains(out, "Usage: "+app.Name) {
			t.Errorf("%s %s --help: exit %d %q %q", app.Name, path, code, out, errOut)
		}
	}
}
