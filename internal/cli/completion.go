package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/alecthomas/kong"
	kongcompletion "github.com/jotaen/kong-completion"
)

// Shell completion: the program completes its own command line
// (github.com/jotaen/kong-completion over kong's model: commands, flags,
// enum values). The shell runs the program with COMP_LINE set (bash's
// complete -C), and Run answers with the candidates before parsing
// anything. CompletionCmd prints the line that wires a shell to it.

// CompletionCmd is the completion subcommand: `source <(PROGRAM completion
// bash)`, the same for zsh, `PROGRAM completion fish | source`.
type CompletionCmd struct {
	Shell string `arg:"" enum:"bash,zsh,fish" placeholder:"bash|zsh|fish" help:"The shell: bash, zsh or fish."`
}

// Help says how to install it.
func (c *CompletionCmd) Help() string {
	return `Prints the shell code that makes the shell complete this program's commands, flags and their values by asking the program itself. For the current shell: source <(PROGRAM completion bash) (or zsh), PROGRAM completion fish | source. For good, add that line to ~/.bashrc, ~/.zshrc or ~/.config/fish/config.fish.`
}

// Run prints the shell's code for the program kong runs.
func (c *CompletionCmd) Run(ctx *kong.Context, env *Env) error {
	name := ctx.Model.Name
	bin, err := os.Executable()
	if err == nil {
		bin, err = filepath.Abs(bin)
	}
	if err != nil {
		return fmt.Errorf("the path of this program: %w", err)
	}
	_, err = fmt.Fprint(env.Stdout, CompletionScript(c.Shell, name, bin))
	return err
}

// CompletionScript is the code that wires shell to complete name by
// running bin (kong-completion's own, which it prints with -c).
func CompletionScript(shell, name, bin string) string {
	q := shellQuote(bin)
	switch shell {
	case "zsh":
		return "autoload -U +X bashcompinit && bashcompinit\ncomplete -o default -o bashdefault -C " + q + " " + name + "\n"
	case "fish":
		return "function __complete_" + name + "\n" +
			"    set -lx COMP_LINE (commandline -cp)\n" +
			"    test -z (commandline -ct)\n" +
			"    and set COMP_LINE \"$COMP_LINE \"\n" +
			"    " + q + "\n" +
			"end\n" +
			"complete -f -c " + name + " -a \"(__complete_" + name + ")\"\n"
	}
	return "complete -o default -o bashdefault -C " + q + " " + name + "\n"
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '/' || r == '.' || r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// complete answers a shell's completion request (COMP_LINE set) and exits
// 0; without one it does nothing.
func complete(parser *kong.Kong, exit func(int)) {
	if os.Getenv("COMP_LINE") == "" {
		return
	}
	kongcompletion.Register(parser, kongcompletion.WithExitFunc(exit),
		kongcompletion.WithErrorHandler(func(err error) { fmt.Fprintf(parser.Stderr, "%s: completion: %v\n", parser.Model.Name, err) }))
}
